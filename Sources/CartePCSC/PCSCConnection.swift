public import CarteCore
import Foundation
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
    let context: PCSCContext
    private let provider: any PCSCProvider
    private struct State {
        var card: UInt64
        var proto: UInt32
        var share: UInt32
        var atr: [UInt8]
        var open = true
        /// Set when the card may have been swapped (macOS's reset): every later exchange reports it.
        var gone: CardError?
    }
    private let state: Mutex<State>
    /// The receive buffer of ``transmit(_:)``, allocated once rather than per APDU.
    private let receive = ReceiveBuffer()
    /// Whether the reader takes extended APDUs (from its `dwMaxAPDUDataSize`, when known).
    public let capabilities: TransportCapabilities
    /// The reader's part 10 features, read on first use.
    let padCache = Mutex<PadFeatures?>(nil)

    init(readerName: String, context: PCSCContext, provider: any PCSCProvider, card: UInt64, proto: UInt32, share: UInt32, atr: [UInt8], capabilities: TransportCapabilities) {
        self.readerName = readerName
        self.context = context
        self.provider = provider
        self.state = Mutex(State(card: card, proto: proto, share: share, atr: atr))
        self.capabilities = capabilities
    }

    deinit {
        // Synchronous, for the same reason as PCSCContext's release: nothing may be left queued at exit.
        let (card, open) = state.withLock { ($0.card, $0.open) }
        if open { _ = provider.disconnect(card, disposition: SCard.leaveCard) }
    }

    /// The connection's own thread as a task executor: a task running with it as its preference
    /// (`withTaskExecutorPreference`, what CarteKit's sessions do) sends each APDU to `SCardTransmit`
    /// on that thread directly, without a thread switch per APDU. Any other caller's calls are handed
    /// to that thread and back, as before.
    public var taskExecutor: (any TaskExecutor)? { context.worker }

    /// Connects to `reader`. Runs the blocking call on a new dedicated thread.
    static func connect(reader: String, share: ShareMode, protocols: Set<TransmissionProtocol>, capabilities: TransportCapabilities,
                        provider loaded: Result<any PCSCProvider, PCSCUnavailable>) async throws(CardError) -> PCSCConnection {
        let provider: any PCSCProvider
        switch loaded {
        case .success(let p): provider = p
        case .failure(let e): throw e.cardError
        }
        let context = PCSCContext(name: "cartekit.pcsc.card", provider: loaded)
        let shareValue = shareModeValue(share)
        var requested: UInt32 = 0
        if share != .direct {
            if protocols.contains(.t0) { requested |= SCard.protocolT0 }
            if protocols.contains(.t1) { requested |= SCard.protocolT1 }
        }
        let mask = requested
        let retries = provider.behaviour.sharingViolationRetries
        let result = await context.call(retry: true) { p, ctx -> Result<(UInt64, UInt32, [UInt8]), PCSCError> in
            // A connection made while pcscd had not yet seen a card swap gets the previous card's ATR
            // padded to 33 bytes (pcsc-lite's on-demand power-up in SCardConnect): it is stale. Wait for
            // pcscd to report the reader's change, then connect again (twice at most).
            var sharingRetries = 0
            var attempt = 0
            while true {
                let card: UInt64
                let active: UInt32
                switch p.connect(ctx, reader: reader, share: shareValue, protocols: mask) {
                case .success(let c): (card, active) = (c.card, c.activeProtocol)
                case .failure(.sharingViolation) where sharingRetries < retries:
                    // The platform holds a new card for a moment (macOS): try again shortly.
                    sharingRetries += 1
                    Thread.sleep(forTimeInterval: 0.100)
                    continue
                case .failure(let e): return .failure(e)
                }
                let (atr, padded) = ATR.removingPadding((try? p.status(card).get())?.atr ?? [])
                if !padded || attempt == 2 { return .success((card, active, atr)) }
                attempt += 1
                _ = p.disconnect(card, disposition: SCard.leaveCard)
                waitForStateChange(p, ctx, reader, milliseconds: 1_500)
            }
        }
        switch result {
        case .success(let (card, active, atr)):
            // T=0 carries no extended APDU (ISO 7816-3 §12.2): long data then goes by command chaining.
            let usable = active == SCard.protocolT0 ? TransportCapabilities.short : capabilities
            return PCSCConnection(readerName: reader, context: context, provider: provider, card: card, proto: active, share: shareValue, atr: atr, capabilities: usable)
        case .failure(let e):
            throw e.cardError(reader: reader)
        }
    }

    /// The ATR of the card, as pcscd reported it at connection (or the last reconnection).
    public var atrBytes: [UInt8] { state.withLock { $0.atr } }

    /// The protocol pcscd negotiated (T=0 or T=1).
    public var activeProtocol: TransmissionProtocol {
        state.withLock { $0.proto == SCard.protocolT0 ? .t0 : .t1 }
    }

    /// The card handle and protocol, or why the connection can no longer be used: closed, or its card
    /// possibly swapped (never a command, least of all a PIN-pad one, to a card that may be another).
    private func usable() throws(CardError) -> (card: UInt64, proto: UInt32) {
        let (card, proto, open, gone) = state.withLock { ($0.card, $0.proto, $0.open, $0.gone) }
        guard open else { throw .notConnected }
        if let gone { throw gone }
        return (card, proto)
    }

    /// Sends one APDU (no processing: ``CardChannel`` applies the transmit policy).
    public func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        let (card, proto) = try usable()
        let receive = self.receive
        let result = await context.call(retry: false) { p, _ -> Result<[UInt8], PCSCError> in
            let response = UnsafeMutableRawBufferPointer(receive.bytes)
            let sent = command.withUnsafeBytes { p.transmit(card, protocol: proto, command: $0, response: response) }
            switch sent {
            case .success(let length):
                // A library that cuts a long response to the buffer without saying so (macOS): a full
                // buffer is refused as pcsc-lite refuses a too-long response.
                if p.behaviour.truncatesLongResponses && length >= response.count { return .failure(.insufficientBuffer) }
                return .success(Array(receive.bytes[..<length]))
            case .failure(let e):
                return .failure(e)
            }
        }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            throw await failure(e)
        }
    }

    /// One raw `SCardTransmit` of `command` on this connection's handle, made right here with nothing of
    /// CarteKit's around it, and its time in microseconds; `nil` off the connection's thread (the call
    /// must not move) or when it fails. `carte bench pcsc` measures its raw rows with it, and the
    /// reference of a session's exchanges, alternating with them on the same thread and handle.
    package func rawRoundTripMicroseconds(_ command: [UInt8]) -> Double? {
        guard context.worker.isCurrentThread else { return nil }
        let (card, proto) = state.withLock { ($0.card, $0.proto) }
        let response = UnsafeMutableRawBufferPointer(receive.bytes)
        let clock = ContinuousClock()
        let start = clock.now
        let result = command.withUnsafeBytes { provider.transmit(card, protocol: proto, command: $0, response: response) }
        let elapsed = clock.now - start
        guard case .success = result else { return nil }
        let (seconds, attoseconds) = elapsed.components
        return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
    }

    /// The error a failed exchange reports, after what the failure implies for the connection.
    private func failure(_ e: PCSCError) async -> CardError {
        markDeadIfServiceGone(e)
        if e == .resetCard {
            if provider.behaviour.resetMayMeanSwap {
                // The platform says "reset" for a swapped card too (macOS): never go on with a card that
                // may be another one. The connection reports the removal from now on, as pcsc-lite's
                // does after a swap; the events report what is in the reader.
                let removed = CardError.cardRemoved(reader: readerName)
                state.withLock { $0.gone = removed }
                return removed
            }
            // Keep the connection usable, then tell the caller the card lost its state.
            try? await reconnect(share: currentShare, initialization: .leave)
        }
        // On a connection that was working, "no card" means the card was pulled out during the
        // exchange, and a failed exchange (the reader's timeout fired: the driver reports a
        // communication error, pcscd SCARD_E_NOT_TRANSACTED) means the card did not answer.
        if e == .noSmartcard { return .cardRemoved(reader: readerName) }
        if e == .notTransacted { return .cardMute(reader: readerName, timeout: .zero) }
        return e.connectionError(reader: readerName)
    }

    /// When pcscd went away, the context (and the card handle with it) is gone: the connection is
    /// closed for good, and later calls say ``CardError/notConnected`` instead of failing on a stale handle.
    private func markDeadIfServiceGone(_ e: PCSCError) {
        if e.meansServiceGone { state.withLock { $0.open = false } }
    }

    private var currentShare: ShareMode {
        state.withLock { s in
            s.share == SCard.shareExclusive ? .exclusive : s.share == SCard.shareDirect ? .direct : .shared
        }
    }

    /// Sends a reader control command (`SCardControl`) and returns the reader's answer.
    public func control(code: UInt32, data: [UInt8] = []) async throws(CardError) -> [UInt8] {
        let card = try usable().card
        let result = await context.call(retry: false) { p, _ in pcscControl(p, card, code: code, data: data) }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            markDeadIfServiceGone(e)
            throw e.connectionError(reader: readerName)
        }
    }

    /// Reads a reader attribute (`SCardGetAttrib`).
    public func attribute(_ id: UInt32) async throws(CardError) -> [UInt8] {
        let card = try usable().card
        let result = await context.call(retry: false) { p, _ in p.attribute(card, id: id) }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let e):
            markDeadIfServiceGone(e)
            throw e.connectionError(reader: readerName)
        }
    }

    /// `SCardReconnect`: changes the share mode and resets the card as `initialization` says.
    public func reconnect(share: ShareMode = .shared, initialization: Disposition = .leave) async throws(CardError) {
        let (card, proto) = try usable()
        let shareValue = shareModeValue(share)
        let init_ = dispositionValue(initialization)
        let mask = proto == SCard.protocolUndefined ? SCard.protocolT0 | SCard.protocolT1 : proto
        let result = await context.call(retry: false) { p, _ -> Result<(UInt32, [UInt8]), PCSCError> in
            switch p.reconnect(card, share: shareValue, protocols: mask, initialization: init_) {
            case .success(let active): return .success((active, (try? p.status(card).get())?.atr ?? []))
            case .failure(let e): return .failure(e)
            }
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
        let (card, wasOpen) = state.withLock { s -> (UInt64, Bool) in
            defer { s.open = false }
            return (s.card, s.open)
        }
        guard wasOpen else { return }
        let value = dispositionValue(disposition)
        let result = await context.call(retry: false) { p, _ -> Result<Void, PCSCError> in
            if let e = p.disconnect(card, disposition: value) { return .failure(e) }
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
            let (card, gone) = state.withLock { ($0.card, $0.gone) }
            if let gone { throw gone }
            let result = await context.call(retry: false) { p, _ -> Result<Void, PCSCError> in
                if let e = p.beginTransaction(card) { return .failure(e) }
                return .success(())
            }
            switch result {
            case .success: return
            case .failure(.resetCard) where provider.behaviour.resetMayMeanSwap:
                throw await failure(.resetCard)  // maybe another card: the connection ends as a removal
            case .failure(.resetCard) where attempt == 1:
                try await reconnect(share: currentShare, initialization: .leave)
            case .failure(let e):
                throw e.connectionError(reader: readerName)
            }
        }
    }

    private func endTransaction() async -> CardError? {
        let card = state.withLock { $0.card }
        let result = await context.call(retry: false) { p, _ -> Result<Void, PCSCError> in
            if let e = p.endTransaction(card, disposition: SCard.leaveCard) { return .failure(e) }
            return .success(())
        }
        if case .failure(let e) = result { return e.connectionError(reader: readerName) }
        return nil
    }
}

func shareModeValue(_ share: ShareMode) -> UInt32 {
    switch share {
    case .exclusive: return SCard.shareExclusive
    case .shared: return SCard.shareShared
    case .direct: return SCard.shareDirect
    }
}

func dispositionValue(_ d: Disposition) -> UInt32 {
    switch d {
    case .leave: return SCard.leaveCard
    case .reset: return SCard.resetCard
    case .unpower: return SCard.unpowerCard
    case .eject: return SCard.ejectCard
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

/// Waits (at most `milliseconds`) until the service reports a change of `reader`'s state from the one
/// it reports now.
func waitForStateChange(_ p: any PCSCProvider, _ ctx: UInt64, _ reader: String, milliseconds: UInt32) {
    guard case .success(let (current, _)) = readerState(p, ctx, reader) else { return }
    var states = [PCSCReaderState(reader: reader, currentState: current & ~SCard.stateChanged)]
    _ = p.getStatusChange(ctx, timeoutMilliseconds: milliseconds, &states)
}

func pcscControl(_ p: any PCSCProvider, _ card: UInt64, code: UInt32, data: [UInt8]) -> Result<[UInt8], PCSCError> {
    var out = [UInt8](repeating: 0, count: maxBufferSizeExtended)
    let result = data.withUnsafeBytes { input in
        out.withUnsafeMutableBytes { output in p.control(card, code: code, input: input, output: output) }
    }
    switch result {
    case .success(let n): return .success(Array(out[..<n]))
    case .failure(let e): return .failure(e)
    }
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
        do { list = try await control(code: provider.abi.getFeatureRequest) } catch {
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
