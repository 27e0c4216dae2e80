import Foundation
import Synchronization

/// A dedicated thread that runs blocking C calls (PC/SC waits up to its timeout, a reader may take
/// seconds to answer) so they never occupy Swift's cooperative pool, which has only as many threads as
/// cores. Jobs run one at a time, in order; callers await their result.
final class BlockingWorker: @unchecked Sendable {
    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var jobs: [() -> Void] = []
        var stopped = false
    }

    private let queue = Queue()

    /// Starts the thread.
    init(name: String) {
        let queue = self.queue
        PCSCExitGuard.install()
        let thread = Thread {
            while true {
                queue.condition.lock()
                while queue.jobs.isEmpty && !queue.stopped { queue.condition.wait() }
                if queue.jobs.isEmpty && queue.stopped {
                    queue.condition.unlock()
                    return
                }
                var job: (() -> Void)? = queue.jobs.removeFirst()
                guard PCSCExitGuard.begin() else {
                    // The process is exiting: libpcsclite is being torn down, no new call may start.
                    queue.condition.unlock()
                    job = nil
                    while true { sleep(3600) }
                }
                queue.condition.unlock()
                job?()
                // Dropping the job may release the last reference to a context or connection, whose
                // deinit calls into libpcsclite: that is still inside the guarded window.
                job = nil
                PCSCExitGuard.end()
            }
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit { stop() }

    /// Lets queued jobs finish, then ends the thread.
    func stop() {
        queue.condition.lock()
        queue.stopped = true
        queue.condition.signal()
        queue.condition.unlock()
    }

    /// Runs `body` on the worker thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            enqueue { continuation.resume(returning: body()) }
        }
    }

    /// Runs `body` on the worker thread without waiting.
    func enqueue(_ body: @escaping @Sendable () -> Void) {
        queue.condition.lock()
        if queue.stopped {
            queue.condition.unlock()
            body()  // never lose a job: run it here (only happens during teardown)
            return
        }
        queue.jobs.append(body)
        queue.condition.signal()
        queue.condition.unlock()
    }
}

/// Keeps process exit from tearing libpcsclite down under a thread that is still inside it.
///
/// A caller's `await` resumes as soon as a job has produced its result, but the worker thread then
/// drops the job, which can release a context (`SCardReleaseContext`) or a card handle; an event
/// monitor may sit in a one-second `SCardGetStatusChange`. If the program returns from `main` at that
/// moment, the C library's exit handlers (libpcsclite's destructor, the dynamic linker's finalisers)
/// run concurrently with that call, and the process could die of SIGSEGV inside libpcsclite after its
/// work was done (seen about once in a few hundred short `carte` runs). An `atexit` handler, installed
/// with the first worker and therefore run before the libraries' finalisers, marks the process as
/// exiting (event monitors stop their loop and their waits are cancelled; no job starts any more) and
/// waits, at most ``drainLimit``, until no worker is inside a job.
enum PCSCExitGuard {
    private struct State {
        var installed = false
        var busy = 0
        var exiting = false
        var cancellers: [ObjectIdentifier: @Sendable () -> Void] = [:]
    }

    private static let state = Mutex(State())
    /// The longest an exiting process waits for PC/SC calls in flight (a card's answer is bounded by
    /// the reader's own timeouts; the wait is only as long as the call actually takes).
    static let drainLimit: Duration = .seconds(3)

    static func install() {
        let first = state.withLock { s -> Bool in
            defer { s.installed = true }
            return !s.installed
        }
        if first { atexit { PCSCExitGuard.drain() } }
    }

    /// A job starts, unless the process is exiting (`false`: the job must not run).
    static func begin() -> Bool {
        state.withLock { s in
            guard !s.exiting else { return false }
            s.busy += 1
            return true
        }
    }
    static func end() { state.withLock { $0.busy -= 1 } }

    /// Whether the process is exiting (long-running loops end early).
    static var isExiting: Bool { state.withLock { $0.exiting } }

    /// Registers what cancels a long wait on exit (an event monitor's `SCardCancel`).
    static func register(_ owner: AnyObject, cancel: @escaping @Sendable () -> Void) {
        state.withLock { $0.cancellers[ObjectIdentifier(owner)] = cancel }
    }

    static func unregister(_ owner: AnyObject) {
        _ = state.withLock { $0.cancellers.removeValue(forKey: ObjectIdentifier(owner)) }
    }

    /// The exit handler: stop long waits, then wait until no job is running.
    static func drain() {
        let cancels = state.withLock { s -> [@Sendable () -> Void] in
            s.exiting = true
            return Array(s.cancellers.values)
        }
        cancels.forEach { $0() }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: drainLimit)
        while state.withLock({ $0.busy }) > 0 && clock.now < deadline {
            usleep(1_000)
        }
    }
}
