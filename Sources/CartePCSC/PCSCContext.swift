import Synchronization

/// One PC/SC context (`SCARDCONTEXT`) and the dedicated thread every call on it runs on.
///
/// pcsc-lite wants one context per thread; here each context has its own thread, so a blocking call
/// (a status wait, a slow card) never holds Swift's cooperative pool. When the service goes away
/// (`SCARD_E_NO_SERVICE`, `SCARD_E_SERVICE_STOPPED`, `SCARD_E_INVALID_HANDLE`: pcscd restarted, or
/// Windows stopping its service with the last reader) the context is dropped and re-established on the
/// next call.
///
/// A task that runs with the context's thread as its task executor (``PCSCConnection/taskExecutor``)
/// makes its calls right there, without a thread switch: that is how a card session sends each APDU.
final class PCSCContext: Sendable {
    let worker: BlockingWorker
    /// The PC/SC library, or why there is none.
    let provider: Result<any PCSCProvider, PCSCUnavailable>
    /// Only touched on the worker thread, except `cancel()` which reads it (SCardCancel may be called from any thread).
    private let handle = Mutex<UInt64?>(nil)

    init(name: String, provider: Result<any PCSCProvider, PCSCUnavailable>) {
        worker = BlockingWorker(name: name)
        self.provider = provider
    }

    deinit {
        // Released here, synchronously: no job can be pending (each holds the context), and a release
        // left queued on the worker could run while the process exits and the PC/SC library tears itself
        // down (a crash seen at exit). The worker's thread ends with the worker (a task may still
        // prefer it as its executor).
        if let h = handle.withLock({ $0 }), case .success(let p) = provider { _ = p.releaseContext(h) }
    }

    /// Establishes the context if needed. Worker thread only.
    func ensure() -> Result<(any PCSCProvider, UInt64), PCSCError> {
        let p: any PCSCProvider
        switch provider {
        case .success(let loaded): p = loaded
        case .failure: return .failure(.notInstalled)
        }
        if let h = handle.withLock({ $0 }) { return .success((p, h)) }
        switch p.establishContext() {
        case .success(let h):
            handle.withLock { $0 = h }
            return .success((p, h))
        case .failure(let e):
            return .failure(e)
        }
    }

    /// Drops the context after the service went away. Worker thread only.
    func drop() {
        if let h = handle.withLock({ s -> UInt64? in
            defer { s = nil }
            return s
        }), case .success(let p) = provider {
            _ = p.releaseContext(h)
        }
    }

    /// Runs `body` with the provider and context: at once when the caller is on the context's thread
    /// (a session running with ``worker`` as its task executor), on that thread otherwise. If the
    /// service went away, the context is re-established and, when `retry` is true (the call is
    /// idempotent), `body` runs once more.
    func call<T: Sendable>(retry: Bool = true, _ body: @escaping @Sendable (any PCSCProvider, UInt64) -> Result<T, PCSCError>) async -> Result<T, PCSCError> {
        if worker.isCurrentThread { return perform(retry: retry, body) }
        return await worker.run { [self] in perform(retry: retry, body) }
    }

    private func perform<T>(retry: Bool, _ body: (any PCSCProvider, UInt64) -> Result<T, PCSCError>) -> Result<T, PCSCError> {
        var attempt = 0
        while true {
            attempt += 1
            let provider: any PCSCProvider
            let context: UInt64
            switch ensure() {
            case .success(let (p, h)): (provider, context) = (p, h)
            case .failure(let e): return .failure(e)
            }
            let result = body(provider, context)
            if case .failure(let e) = result, e.meansServiceGone {
                drop()
                if retry && attempt == 1 { continue }
            }
            return result
        }
    }

    /// Whether the context is currently established (for diagnostics).
    var isEstablished: Bool { handle.withLock { $0 != nil } }

    /// Aborts a blocking `SCardGetStatusChange` on this context (callable from any thread).
    func cancel() {
        if let h = handle.withLock({ $0 }), case .success(let p) = provider { _ = p.cancel(h) }
    }

    /// Releases the context now (the next call establishes a new one).
    func release() async {
        await worker.run { [self] in drop() }
    }
}
