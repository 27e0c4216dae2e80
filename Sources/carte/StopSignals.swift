import ArgumentParser
import Foundation
import Synchronization

/// SIGINT and SIGTERM for the long-running commands (`carte sim serve`, `carte sim apcv-service`,
/// `carte watch`, `carte sim soak`), caught however the command was started.
///
/// A script's background job (`carte sim serve … &` in a non-interactive shell) starts with SIGINT
/// ignored; `nohup`, `setsid`, a service manager or a parent program may hand it an ignored or blocked
/// SIGINT/SIGTERM too. A dispatch signal source set up after `signal(SIG_IGN)` also lost a signal that
/// arrived before the source was registered. So this installs its own `sigaction` handler (replacing an
/// inherited `SIG_IGN`) before the command does anything else, and runs one thread of its own with both
/// signals unblocked: a signal always has a thread to land on, even when every other thread inherited a
/// mask that blocks it. The handler only writes the signal number to a pipe (async-signal-safe); that
/// thread reads it and runs the command's stop handlers. A second signal while stopping ends the process
/// at once, with the signal's default action.
final class StopSignals: Sendable {
    /// The process-wide instance; ``install()`` sets it up once.
    static let shared = StopSignals()

    private struct State {
        var received: Int32?
        var handlers: [@Sendable (Int32) -> Void] = []
        var waiters: [Int: CheckedContinuation<Int32?, Never>] = [:]
        var nextWaiter = 0
    }
    private let state = Mutex(State())
    private let installed = Atomic<Bool>(false)

    private init() {}

    /// Installs the handler and its thread (idempotent). Call it first thing in a long-running command.
    func install() {
        guard installed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // The handler never blocks: with the pipe full (signals faster than the thread reads), a byte is dropped.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        stopSignalPipe.store(fds[1], ordering: .releasing)
        let reader = fds[0]
        // The handler first, then the thread that unblocks the signals: a signal pending since the
        // parent blocked it is caught, never given its default action.
        for signo in StopSignals.signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = stopSignalHandler
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signo, &action, nil)
        }
        let thread = Thread { [self] in
            var mask = sigset_t()
            sigemptyset(&mask)
            for signo in StopSignals.signals { sigaddset(&mask, signo) }
            pthread_sigmask(SIG_UNBLOCK, &mask, nil)
            // The name tells a supervisor (and the tests) that the command now stops on a signal.
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = "carte-signals".withCString { write(comm, $0, strlen($0)) }
                close(comm)
            }
            var byte: UInt8 = 0
            while true {
                let n = read(reader, &byte, 1)
                if n == 1 { deliver(Int32(byte)) } else if n < 0, errno == EINTR { continue } else { return }
            }
        }
        thread.start()
    }

    /// The signals handled: SIGINT and SIGTERM.
    static let signals: [Int32] = [SIGINT, SIGTERM]

    /// The first signal received, if any.
    var received: Int32? { state.withLock { $0.received } }

    /// Runs `handler` on the signal thread when the first signal arrives (at once if one already has).
    func onStop(_ handler: @escaping @Sendable (Int32) -> Void) {
        let already: Int32? = state.withLock { s in
            if let r = s.received { return r }
            s.handlers.append(handler)
            return nil
        }
        if let already { handler(already) }
    }

    /// Suspends until SIGINT or SIGTERM arrives and returns its number, or until the task is
    /// cancelled (then `nil`).
    func wait() async -> Int32? {
        let id = state.withLock { s -> Int in
            defer { s.nextWaiter += 1 }
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32?, Never>) in
                let resumeNow: Int32?? = state.withLock { s in
                    if let r = s.received { return .some(r) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters[id] = continuation
                    return .none
                }
                if let value = resumeNow { continuation.resume(returning: value) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }

    private func deliver(_ signo: Int32) {
        let taken: ([@Sendable (Int32) -> Void], [CheckedContinuation<Int32?, Never>])? = state.withLock { s in
            if s.received != nil { return nil }
            s.received = signo
            defer { s.handlers = []; s.waiters = [:] }
            return (s.handlers, Array(s.waiters.values))
        }
        guard let (handlers, waiters) = taken else {
            // A second signal: the user or the service manager insists.
            signal(signo, SIG_DFL)
            kill(getpid(), signo)
            return
        }
        for handler in handlers { handler(signo) }
        for waiter in waiters { waiter.resume(returning: signo) }
    }
}

/// The pipe's write end, read by the signal handler (which can capture nothing).
private let stopSignalPipe = Atomic<Int32>(-1)

private func stopSignalHandler(_ signo: Int32) {
    let fd = stopSignalPipe.load(ordering: .acquiring)
    guard fd >= 0 else { return }
    let saved = errno
    var byte = UInt8(truncatingIfNeeded: signo)
    _ = write(fd, &byte, 1)
    errno = saved
}

extension StopSignals {
    /// The commands that run until they are told to stop: SIGINT and SIGTERM end them cleanly.
    static let commands: [any ParsableCommand.Type] = [AgentCommand.Serve.self, SimCommand.Serve.self, SimCommand.ApCVServiceCommand.self, SimCommand.RightsServiceCommand.self, SimCommand.Soak.self, WatchCommand.self]
}
