import Foundation
import Synchronization
#if os(Windows)
import WinSDK
#endif

/// A dedicated thread that runs blocking C calls (PC/SC waits up to its timeout, a reader may take
/// seconds to answer) so they never occupy Swift's cooperative pool, which has only as many threads as
/// cores. Jobs run one at a time, in order; callers await their result.
///
/// It is also a `TaskExecutor`: a task that prefers it (`withTaskExecutorPreference`) runs on this
/// thread, so its PC/SC calls are made directly (``isCurrentThread``) instead of being handed over and
/// back — two thread switches saved per APDU of a card session.
final class BlockingWorker: TaskExecutor, @unchecked Sendable {
    private enum Job {
        case closure(() -> Void)
        case task(UnownedJob, UnownedTaskExecutor)
    }

    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var jobs: [Job] = []
        var head = 0
        var stopped = false
        var exited = false
        /// The thread's identity, set by the thread before it takes its first job.
        let thread = Mutex<ThreadIdentity?>(nil)
    }

    private let queue = Queue()
    /// Calls handed to the thread so far (``run(_:)``, ``enqueue(_:)-(()->Void)``), not counting task jobs:
    /// what a session running on the thread must not cause (the tests count them).
    let handedOver = Atomic<Int>(0)

    /// Starts the thread.
    init(name: String) {
        let queue = self.queue
        PCSCExitGuard.install()
        let thread = Thread {
            queue.thread.withLock { $0 = ThreadIdentity.current }
            while true {
                queue.condition.lock()
                while queue.head == queue.jobs.count && !queue.stopped { queue.condition.wait() }
                if queue.head == queue.jobs.count && queue.stopped {
                    queue.exited = true
                    queue.condition.unlock()
                    return
                }
                var job: Job? = queue.jobs[queue.head]
                queue.head += 1
                if queue.head == queue.jobs.count {
                    queue.jobs.removeAll(keepingCapacity: true)
                    queue.head = 0
                }
                guard PCSCExitGuard.begin() else {
                    // The process is exiting: the PC/SC library is being torn down, no new call may start.
                    queue.condition.unlock()
                    job = nil
                    while true { Thread.sleep(forTimeInterval: 3600) }
                }
                queue.condition.unlock()
                switch job {
                case .closure(let body): body()
                case .task(let task, let executor): task.runSynchronously(on: executor)
                case nil: break
                }
                // Dropping the job may release the last reference to a context or connection, whose
                // deinit calls into the PC/SC library: that is still inside the guarded window.
                job = nil
                PCSCExitGuard.end()
            }
        }
        thread.name = name
        // 8 MiB, glibc's default: whole card sessions (decoders, OpenSSL signatures) run here now.
        thread.stackSize = 8 << 20
        thread.start()
    }

    deinit { stop() }

    /// Whether the caller runs on this worker's thread.
    var isCurrentThread: Bool {
        guard let thread = queue.thread.withLock({ $0 }) else { return false }
        return thread.isCurrent
    }

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
        handedOver.add(1, ordering: .relaxed)
        if !push(.closure(body)) { body() }  // never lose a job: run it here (only happens during teardown)
    }

    /// `TaskExecutor`: a job of a task that prefers this worker.
    func enqueue(_ job: consuming ExecutorJob) {
        let task = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        // After the thread ended (its worker is being released), the job goes to the global executor.
        if !push(.task(task, executor)) { globalConcurrentExecutor.enqueue(ExecutorJob(task)) }
    }

    /// Queues a job; `false` when the thread has ended.
    private func push(_ job: Job) -> Bool {
        queue.condition.lock()
        defer { queue.condition.unlock() }
        if queue.exited { return false }
        queue.jobs.append(job)
        queue.condition.signal()
        return true
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
        /// The threads inside a job (one entry per job running).
        var busyThreads: [ThreadIdentity] = []
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
            s.busyThreads.append(.current)
            return true
        }
    }
    static func end() {
        state.withLock { s in
            if let i = s.busyThreads.lastIndex(where: { $0.isCurrent }) { s.busyThreads.remove(at: i) }
        }
    }

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
        // A session runs inside its connection's job: if it is the one exiting, its own job is not waited for.
        while state.withLock({ s in s.busyThreads.filter { !$0.isCurrent }.count }) > 0 && clock.now < deadline {
            Thread.sleep(forTimeInterval: 0.001)
        }
    }
}

/// The identity of a thread, to tell whether the caller runs on a given one.
struct ThreadIdentity: @unchecked Sendable {
    #if os(Windows)
    // Not run: the Win32 thread id.
    let id: DWORD
    static var current: ThreadIdentity { ThreadIdentity(id: GetCurrentThreadId()) }
    var isCurrent: Bool { id == GetCurrentThreadId() }
    #else
    let id: pthread_t
    static var current: ThreadIdentity { ThreadIdentity(id: pthread_self()) }
    var isCurrent: Bool { pthread_equal(id, pthread_self()) != 0 }
    #endif
}
