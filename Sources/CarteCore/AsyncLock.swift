import Synchronization

/// A first-come first-served lock for async code: holders may suspend while holding it (unlike `Mutex`),
/// and waiters suspend instead of blocking a thread. It is not re-entrant, and a waiting task is not
/// woken by cancellation (holders keep it for one card exchange sequence, so waits are short). Used to keep one command's automatic exchanges
/// (GET RESPONSE, chaining) from interleaving with another task's command on the same channel.
public final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }

    private let state = Mutex(State())

    /// Creates an unlocked lock.
    public init() {}

    /// Waits until the lock is free, then takes it.
    public func lock() async {
        let acquired = state.withLock { s -> Bool in
            if !s.locked {
                s.locked = true
                return true
            }
            return false
        }
        if acquired { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if !s.locked {
                    s.locked = true
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Releases the lock, handing it to the oldest waiter if any.
    public func unlock() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            precondition(s.locked, "AsyncLock.unlock() without lock()")
            if s.head < s.waiters.count {
                let c = s.waiters[s.head]
                s.head += 1
                if s.head == s.waiters.count {
                    s.waiters.removeAll(keepingCapacity: true)
                    s.head = 0
                }
                return c  // the lock stays taken, now by the waiter
            }
            s.locked = false
            return nil
        }
        next?.resume()
    }

    /// Runs `body` while holding the lock.
    public func withLock<T, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        await lock()
        defer { unlock() }
        return try await body()
    }
}
