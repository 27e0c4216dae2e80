import Foundation

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
        let thread = Thread {
            while true {
                queue.condition.lock()
                while queue.jobs.isEmpty && !queue.stopped { queue.condition.wait() }
                if queue.jobs.isEmpty && queue.stopped {
                    queue.condition.unlock()
                    return
                }
                let job = queue.jobs.removeFirst()
                queue.condition.unlock()
                job()
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
