internal import CPCSCLite
import Synchronization

/// One PC/SC context (`SCARDCONTEXT`) and the dedicated thread every call on it runs on.
///
/// pcsc-lite wants one context per thread; here each context has its own thread, so a blocking call
/// (a status wait, a slow card) never holds Swift's cooperative pool. When pcscd goes away
/// (`SCARD_E_NO_SERVICE`, `SCARD_E_SERVICE_STOPPED`, `SCARD_E_INVALID_HANDLE`) the context is dropped
/// and re-established on the next call, so pcscd can be restarted under a running program.
final class PCSCContext: Sendable {
    let worker: BlockingWorker
    /// Only touched on the worker thread, except `cancel()` which reads it (SCardCancel may be called from any thread).
    private let handle = Mutex<SCARDCONTEXT?>(nil)

    init(name: String) {
        worker = BlockingWorker(name: name)
    }

    deinit {
        // Released here, synchronously: no job can be pending (each holds the context), and a release
        // left queued on the worker could run while the process exits and libpcsclite tears itself
        // down (a crash seen at exit).
        if let h = handle.withLock({ $0 }) { _ = SCardReleaseContext(h) }
        worker.stop()
    }

    /// Establishes the context if needed. Worker thread only.
    func ensure() -> Result<SCARDCONTEXT, PCSCError> {
        if let h = handle.withLock({ $0 }) { return .success(h) }
        var h: SCARDCONTEXT = 0
        let rv = SCardEstablishContext(DWORD(SCARD_SCOPE_SYSTEM), nil, nil, &h)
        guard rv == SCARD_S_SUCCESS else { return .failure(PCSCError(code: rv)) }
        handle.withLock { $0 = h }
        return .success(h)
    }

    /// Drops the context after pcscd went away. Worker thread only.
    func drop() {
        if let h = handle.withLock({ s -> SCARDCONTEXT? in
            defer { s = nil }
            return s
        }) {
            _ = SCardReleaseContext(h)
        }
    }

    /// Runs `body` with the context on the worker thread. If pcscd went away, the context is
    /// re-established and, when `retry` is true (the call is idempotent), `body` runs once more.
    func call<T: Sendable>(retry: Bool = true, _ body: @escaping @Sendable (SCARDCONTEXT) -> Result<T, PCSCError>) async -> Result<T, PCSCError> {
        await worker.run { [self] in
            var attempt = 0
            while true {
                attempt += 1
                let context: SCARDCONTEXT
                switch ensure() {
                case .success(let h): context = h
                case .failure(let e): return .failure(e)
                }
                let result = body(context)
                if case .failure(let e) = result, e.meansServiceGone {
                    drop()
                    if retry && attempt == 1 { continue }
                }
                return result
            }
        }
    }

    /// Whether the context is currently established (for diagnostics).
    var isEstablished: Bool { handle.withLock { $0 != nil } }

    /// Aborts a blocking `SCardGetStatusChange` on this context (callable from any thread).
    func cancel() {
        if let h = handle.withLock({ $0 }) { _ = SCardCancel(h) }
    }

    /// Releases the context now (the next call establishes a new one).
    func release() async {
        await worker.run { [self] in drop() }
    }
}

/// Converts a PC/SC return value.
@inline(__always)
func check(_ rv: LONG) -> PCSCError? {
    rv == SCARD_S_SUCCESS ? nil : PCSCError(code: rv)
}

/// Splits a NUL-separated multi-string (`SCardListReaders`).
func splitMultiString(_ buffer: [CChar]) -> [String] {
    buffer.split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
}
