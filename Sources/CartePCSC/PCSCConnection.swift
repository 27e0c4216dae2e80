public import CarteCore
internal import CPCSCLite
import Synchronization

/// An open connection to the card in one PC/SC reader (one slot), with its own context and thread.
///
/// Recovery policy (documented in docs/pcsc.md):
/// - `SCARD_W_RESET_CARD` (another program reset the card): the connection reconnects by itself
///   (disposition *leave*) and the command fails with ``CardError/cardReset(reader:)``, because the card
///   lost its state (selected files, verified PIN). The caller redoes its sequence;
///   ``withTransaction(redoOnReset:_:)`` does that for one sequence automatically.
/// - `SCARD_W_REMOVED_CARD` / `SCARD_E_NO_SMARTCARD`: ``CardError/cardRemoved(reader:)``; the connection is
///   dead and the event stream reports the removal.
/// - pcscd gone: ``CardError/backend(code:name:message:)`` with `SCARD_E_SERVICE_STOPPED` /
///   `SCARD_E_NO_SERVICE`; connect again once pcscd is back.
public final class PCSCConnection: CardConnection {
    /// The reader (slot) name.
    public let readerName: String
    private let context: PCSCContext
    private struct State {
        var card: SCARDHANDLE
        var proto: DWORD
        var share: DWORD
        var atr: [UInt8]
        var open = true
    }
    private let state: Mutex<State>
    /// The receive buffer of ``transmit(_:)``, allocated once rather than per APDU.
    private let receive = ReceiveBuffer()
    /// Whether the reader takes extended APDUs (from its `dwMaxAPDUDataSize`, when known).
    public let capabilities: TransportCapabilities
    /// The reader's part 10 features, read on first use.
    let padCache = Mutex<PadFeatures?>(nil)

    init(readerName: String, context: PCSCContext, card: SCARDHANDLE, proto: DWORD, share: DWORD, atr: [UInt8], capabilities: TransportCapabilities) {
        self.readerName = readerName
        self.context = context
        self.state = Mutex(State(card: card, proto: proto, share: share, atr: atr))
        self.capabilities = capabilities
    }

    deinit {
        // Synchronous, for the same reason as PCSCContext's release: nothing may be left queued at exit.
        let (card, open) = state.withLock { ($0.card, $0.open) }
        if open { _ = SCardDisconnect(card, DWORD(SCARD_LEAVE_CARD)) }
    }

    /// Connects to `reader`. Runs the blocking call on a new dedicated thread.
    static func connect(reader: String, share: ShareMode, protocols: Set<TransmissionProtocol>, capabilities: TransportCapabilities) async throws(CardError) -> PCSCConnection {
        let context = PCSCContext(name: "cartekit.pcsc.card")
        let shareValue: DWORD
        switch share {
        case .exclusive: shareValue = DWORD(SCARD_SHARE_EXCLUSIVE)
        case .shared: shareValue = DWORD(SCARD_SHARE_SHARED)
        case .direct: shareValue = DWORD(SCARD_SHARE_DIRECT)
        }
        var requested: DWORD = 0
        if share != .direct {
            if protocols.contains(.t0) { requested |= DWORD(SCARD_PROTOCOL_T0) }
            if protocols.contains(.t1) { requested |= DWORD(SCARD_PROTOCOL_T1) }
        }
        let mask = requested
        let result = await context.call(retry: true) { ctx -> Result<(SCARDHANDLE, DWORD, [UInt8]), PCSCError> in
            var card: SCARDHANDLE = 0
            var active: DWORD = 0
            // A connection made while pcscd had not yet seen a card swap gets the previous card's ATR
            // padded to 33 bytes (pcsc-lite's on-demand power-up in SCardConnect): it is stale. Wait for
            // pcscd to report the reader's change, then connect again (twice at most).
            for attempt in 0...2 {
                if let e = check(SCardConnect(ctx, reader, shareValue, mask, &card, &active)) { return .failure(e) }
                let (atr, padded) = ATR.removingPadding(readATR(card) ?? [])
                if !padded || attempt == 2 { return .success((card, active, atr)) }
                _ = SCardDisconnect(card, DWORD(SCARD_LEAVE_CARD))
                waitForStateChange(ctx, reader, milliseconds: 1_500)
            }
            return .failure(.noSmartcard)
        }
        switch result {
        case .success(let (card, active, atr)):
            // T=0 carries no extended APDU (ISO 7816-3 §12.2): long data then goes by command chaining.
            let usable = active == DWORD(SCARD_PROTOCOL_T0) ? TransportCapabilities.short : capabilities
            return PCSCConnection(readerName: reader, context: context, card: card, proto: active, share: shareValue, atr: atr, capabilities: usable)
        case .failure(let e):
            throw e.cardError(reader: reader)
        }
    }

    /// The ATR of the card, as pcscd reported it at connection (or the last reconnection).
    public var atrBytes: [UInt8] { state.withLock { $0.atr } }

    /// The protocol pcscd negotiated (T=0 or T=1).
    public var activeProtocol: TransmissionProtocol {
        state.withLock { $0.proto == DWORD(SCARD_PROTOCOL_T0) ? .t0 : .t1 }
    }

    /// Sends one APDU (no processing: ``CardChannel`` applies the transmit policy).
    public func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        let (card, proto, open) = state.withLock { ($0.card, $0.proto, $0.open) }
        guard open else { throw .notConnected }
        let receive = self.receive
        let result = await context.call(retry: false) { _ -> Result<[UInt8], PCSCError> in
            var pci = SCARD_IO_REQUEST(dwProtocol: proto, cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
            // A receive PCI although PC/SC allows NULL: pcsc-lite's spy library (pcsc-spy, what field
            // technicians use) dereferences it and would crash the program it spies on.
            var receivePCI = SCARD_IO_REQUEST(dwProtocol: proto, cbPciLength: DWORD(MemoryLayout<SCARD_IO_REQUEST>.size))
            let response = receive.bytes
            var length = DWORD(response.count)
            let rv = command.withUnsafeBufferPointer { tx in
                SCardTransmit(card, &pci, tx.baseAddress, DWORD(tx.count), &receivePCI, response.baseAddress, &length)
            }
            if let e = check(rv) { return .failure(e) }
            return .success(Array(response[..<Int(length)]))
        }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            markDeadIfServiceGone(e)
            if e == .resetCard {
                // Keep the connection usable, then tell the caller the card lost its state.
                try? await reconnect(share: currentShare, initialization: .leave)
            }
            // On a connection that was working, "no card" means the card was pulled out during the
            // exchange, and a failed exchange (the reader's timeout fired: the driver reports a
            // communication error, pcscd SCARD_E_NOT_TRANSACTED) means the card did not answer.
            if e == .noSmartcard { throw .cardRemoved(reader: readerName) }
            if e == .notTransacted { throw .cardMute(reader: readerName, timeout: .zero) }
            throw e.connectionError(reader: readerName)
        }
    }

    /// When pcscd went away, the context (and the card handle with it) is gone: the connection is
    /// closed for good, and later calls say ``CardError/notConnected`` instead of failing on a stale handle.
    private func markDeadIfServiceGone(_ e: PCSCError) {
        if e.meansServiceGone { state.withLock { $0.open = false } }
    }

    private var currentShare: ShareMode {
        state.withLock { s in
            s.share == DWORD(SCARD_SHARE_EXCLUSIVE) ? .exclusive : s.share == DWORD(SCARD_SHARE_DIRECT) ? .direct : .shared
        }
    }

    /// Sends a reader control command (`SCardControl`) and returns the reader's answer.
    public func control(code: UInt32, data: [UInt8] = []) async throws(CardError) -> [UInt8] {
        let (card, open) = state.withLock { ($0.card, $0.open) }
        guard open else { throw .notConnected }
        let result = await context.call(retry: false) { _ in pcscControl(card, code: code, data: data) }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            markDeadIfServiceGone(e)
            throw e.connectionError(reader: readerName)
        }
    }

    /// Reads a reader attribute (`SCardGetAttrib`).
    public func attribute(_ id: UInt32) async throws(CardError) -> [UInt8] {
        let (card, open) = state.withLock { ($0.card, $0.open) }
        guard open else { throw .notConnected }
        let result = await context.call(retry: false) { _ in readAttribute(card, id) }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            markDeadIfServiceGone(e)
            throw e.connectionError(reader: readerName)
        }
    }

    /// `SCardReconnect`: changes the share mode and resets the card as `initialization` says.
    public func reconnect(share: ShareMode = .shared, initialization: Disposition = .leave) async throws(CardError) {
        let (card, open, proto) = state.withLock { ($0.card, $0.open, $0.proto) }
        guard open else { throw .notConnected }
        let shareValue: DWORD = share == .exclusive ? DWORD(SCARD_SHARE_EXCLUSIVE) : share == .direct ? DWORD(SCARD_SHARE_DIRECT) : DWORD(SCARD_SHARE_SHARED)
        let init_ = dispositionValue(initialization)
        let mask = proto == 0 ? DWORD(SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1) : proto
        let result = await context.call(retry: false) { _ -> Result<(DWORD, [UInt8]), PCSCError> in
            var active: DWORD = 0
            if let e = check(SCardReconnect(card, shareValue, mask, init_, &active)) { return .failure(e) }
            return .success((active, readATR(card) ?? []))
        }
        switch result {
        case .success(let (active, atr)):
            state.withLock { s in
                s.proto = active
                s.share = shareValue
                if !atr.isEmpty { s.atr = atr }
            }
        case .failure(let e):
            throw e.connectionError(reader: readerName)
        }
    }

    /// `SCardDisconnect` with `disposition`; later calls fail with ``CardError/notConnected``.
    public func disconnect(_ disposition: Disposition = .leave) async throws(CardError) {
        let (card, wasOpen) = state.withLock { s -> (SCARDHANDLE, Bool) in
            defer { s.open = false }
            return (s.card, s.open)
        }
        guard wasOpen else { return }
        let value = dispositionValue(disposition)
        let result = await context.call(retry: false) { _ -> Result<Void, PCSCError> in
            if let e = check(SCardDisconnect(card, value)) { return .failure(e) }
            return .success(())
        }
        if case .failure(let e) = result, !e.meansServiceGone, e != .removedCard {
            throw e.connectionError(reader: readerName)
        }
    }

    // MARK: Transactions

    /// Runs `body` inside a PC/SC transaction (`SCardBeginTransaction` … `SCardEndTransaction`), so no
    /// other program can interleave commands. The transaction always ends, whatever `body` does.
    ///
    /// - Parameter redoOnReset: when the card is reset by someone else during `body`
    ///   (``CardError/cardReset(reader:)``), reconnect and run `body` once more from the start, inside a
    ///   new transaction. A second reset is reported. Never half-applied silently.
    public func withTransaction<T: Sendable>(
        redoOnReset: Bool = true,
        _ body: () async throws(CardError) -> T
    ) async throws(CardError) -> T {
        var attempt = 0
        while true {
            attempt += 1
            try await beginTransaction()
            let outcome: Result<T, CardError>
            do {
                outcome = .success(try await body())
            } catch {
                outcome = .failure(error)
            }
            let endError = await endTransaction()
            switch outcome {
            case .success(let value):
                if let endError, endError != .cardReset(reader: readerName) { throw endError }
                return value
            case .failure(.cardReset) where redoOnReset && attempt == 1:
                continue
            case .failure(let error):
                throw error
            }
        }
    }

    private func beginTransaction() async throws(CardError) {
        for attempt in 1...2 {
            let card = state.withLock { $0.card }
            let result = await context.call(retry: false) { _ -> Result<Void, PCSCError> in
                if let e = check(SCardBeginTransaction(card)) { return .failure(e) }
                return .success(())
            }
            switch result {
            case .success: return
            case .failure(.resetCard) where attempt == 1:
                try await reconnect(share: currentShare, initialization: .leave)
            case .failure(let e):
                throw e.connectionError(reader: readerName)
            }
        }
    }

    private func endTransaction() async -> CardError? {
        let card = state.withLock { $0.card }
        let result = await context.call(retry: false) { _ -> Result<Void, PCSCError> in
            if let e = check(SCardEndTransaction(card, DWORD(SCARD_LEAVE_CARD))) { return .failure(e) }
            return .success(())
        }
        if case .failure(let e) = result { return e.connectionError(reader: readerName) }
        return nil
    }
}

func dispositionValue(_ d: Disposition) -> DWORD {
    switch d {
    case .leave: return DWORD(SCARD_LEAVE_CARD)
    case .reset: return DWORD(SCARD_RESET_CARD)
    case .unpower: return DWORD(SCARD_UNPOWER_CARD)
    case .eject: return DWORD(SCARD_EJECT_CARD)
    }
}

/// A `maxBufferSizeExtended`-byte receive buffer, allocated and zeroed once. Only the owning
/// connection's worker thread (one ``PCSCContext``, one call at a time) touches it.
final class ReceiveBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableBufferPointer<UInt8>

    init() {
        bytes = .allocate(capacity: maxBufferSizeExtended)
        bytes.initialize(repeating: 0)
    }

    deinit { bytes.deallocate() }
}

/// Waits (at most `milliseconds`) until pcscd reports a change of `reader`'s state from the one it
/// reports now.
func waitForStateChange(_ ctx: SCARDCONTEXT, _ reader: String, milliseconds: DWORD) {
    guard case .success(let (current, _)) = readerState(ctx, reader) else { return }
    reader.withCString { name in
        var state = SCARD_READERSTATE()
        state.szReader = name
        state.dwCurrentState = current & ~DWORD(SCARD_STATE_CHANGED)
        _ = SCardGetStatusChange(ctx, milliseconds, &state, 1)
    }
}

func readATR(_ card: SCARDHANDLE) -> [UInt8]? {
    var atr = [UInt8](repeating: 0, count: Int(MAX_ATR_SIZE))
    var atrLength = DWORD(atr.count)
    var state: DWORD = 0
    var proto: DWORD = 0
    var nameLength: DWORD = 0
    guard SCardStatus(card, nil, &nameLength, &state, &proto, &atr, &atrLength) == SCARD_S_SUCCESS else { return nil }
    return Array(atr[..<Int(atrLength)])
}

func readAttribute(_ card: SCARDHANDLE, _ id: UInt32) -> Result<[UInt8], PCSCError> {
    var length: DWORD = 0
    if let e = check(SCardGetAttrib(card, DWORD(id), nil, &length)) { return .failure(e) }
    var buffer = [UInt8](repeating: 0, count: Int(length))
    if let e = check(SCardGetAttrib(card, DWORD(id), &buffer, &length)) { return .failure(e) }
    return .success(Array(buffer[..<Int(length)]))
}

func pcscControl(_ card: SCARDHANDLE, code: UInt32, data: [UInt8]) -> Result<[UInt8], PCSCError> {
    var out = [UInt8](repeating: 0, count: maxBufferSizeExtended)
    var returned: DWORD = 0
    let rv = data.withUnsafeBufferPointer { tx in
        SCardControl(card, DWORD(code), tx.baseAddress, DWORD(tx.count), &out, DWORD(out.count), &returned)
    }
    if let e = check(rv) { return .failure(e) }
    return .success(Array(out[..<Int(returned)]))
}

/// `MAX_BUFFER_SIZE_EXTENDED` (4 + 3 + 65536 + 3 + 2): the C macro is an expression and does not import.
/// pcsc-lite 1.9.x refuses larger receive buffers, so this is the exact size to pass.
let maxBufferSizeExtended = 4 + 3 + (1 << 16) + 3 + 2

extension PCSCConnection: PINPadTransport {
    /// The reader's PIN pad from its feature list (`CM_IOCTL_GET_FEATURE_REQUEST`), PIN properties and
    /// TLV properties; `nil` when the reader announces neither `FEATURE_VERIFY_PIN_DIRECT` nor
    /// `FEATURE_MODIFY_PIN_DIRECT`. Read once per connection.
    public func pinPadCapabilities() async throws(CardError) -> PINPadCapabilities? {
        try await padFeatures().capabilities
    }

    /// `SCardControl(FEATURE_VERIFY_PIN_DIRECT)`: the reader takes the PIN on its keypad. Blocks the
    /// connection's own thread (not the cooperative pool) for as long as the keypad waits.
    public func verifyPINOnPad(_ structure: PINVerifyStructure) async throws(CardError) -> [UInt8] {
        guard let code = try await padFeatures().codes[Part10.Feature.verifyPINDirect] else { throw .unsupported("reader \"\(readerName)\" announces no FEATURE_VERIFY_PIN_DIRECT") }
        return try await control(code: code, data: structure.encoded)
    }

    /// `SCardControl(FEATURE_MODIFY_PIN_DIRECT)`.
    public func modifyPINOnPad(_ structure: PINModifyStructure) async throws(CardError) -> [UInt8] {
        guard let code = try await padFeatures().codes[Part10.Feature.modifyPINDirect] else { throw .unsupported("reader \"\(readerName)\" announces no FEATURE_MODIFY_PIN_DIRECT") }
        return try await control(code: code, data: structure.encoded)
    }

    private func padFeatures() async throws(CardError) -> PadFeatures {
        if let cached = padCache.withLock({ $0 }) { return cached }
        let list: [UInt8]
        do { list = try await control(code: Part10.getFeatureRequest) } catch {
            // A driver without part 10 features refuses the request: no pad, not a failure.
            guard case .backend(let code, _, _) = error, UInt32(truncatingIfNeeded: code) == PCSCError.unsupportedFeature.rawValue else { throw error }
            list = []
        }
        let codes = Part10.decodeFeatureList(list)
        var pinProperties: [UInt8]? = nil
        var tlv: [UInt8: [UInt8]] = [:]
        if let c = codes[Part10.Feature.ifdPINProperties] { pinProperties = try? await control(code: c) }
        if let c = codes[Part10.Feature.getTLVProperties], let t = try? await control(code: c) { tlv = Part10.decodeProperties(t) }
        let features = PadFeatures(codes: codes, capabilities: PINPadCapabilities(features: codes, pinProperties: pinProperties, tlvProperties: tlv))
        padCache.withLock { $0 = features }
        return features
    }
}

/// A reader's feature codes and what they say of its PIN pad.
struct PadFeatures: Sendable {
    var codes: [UInt8: UInt32]
    var capabilities: PINPadCapabilities?
}
