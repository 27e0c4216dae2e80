public import Logging
import Synchronization

/// Something that carries one command APDU to a card and brings back its response, with no
/// processing: a PC/SC connection, a simulated card, a replayed transcript.
///
/// Implementations must be safe to call from any task; ``CardChannel`` serialises the calls it makes.
public protocol CardTransport: Sendable {
    /// What the transport can carry.
    var capabilities: TransportCapabilities { get }
    /// Sends `command` (an encoded APDU) and returns the response bytes (data + SW1 SW2).
    func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8]
}

/// The channel every card application talks through: it applies a ``TransmitPolicy`` (GET RESPONSE,
/// resend with the right Le, command chaining, extended lengths), serialises commands, records a
/// ``Trace`` and logs each exchange at `trace` level with secrets redacted.
///
/// ```swift
/// let channel = CardChannel(transport: connection, trace: Trace(), logger: logger)
/// let fci = try await channel.transmit(.select(aid: vitaleAID))
/// ```
public final class CardChannel: Sendable {
    /// The transport commands go through.
    public let transport: any CardTransport
    /// The policy applied when a command does not bring its own.
    public let policy: TransmitPolicy
    /// Where exchanges are recorded (`nil`: not recorded).
    public let trace: Trace?
    private let logger: Logger
    private let lock = AsyncLock()

    /// Creates a channel over `transport`.
    /// - Parameters:
    ///   - policy: the default policy for every command.
    ///   - trace: where to record exchanges, or `nil`.
    ///   - logger: receives one `trace`-level line per exchange (secrets redacted).
    public init(transport: any CardTransport, policy: TransmitPolicy = .default, trace: Trace? = nil, logger: Logger) {
        self.transport = transport
        self.policy = policy
        self.trace = trace
        self.logger = logger
    }

    /// Creates a channel that logs nowhere.
    public convenience init(transport: any CardTransport, policy: TransmitPolicy = .default, trace: Trace? = nil) {
        self.init(transport: transport, policy: policy, trace: trace, logger: Logger(label: "cartekit.channel", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Sends `command` under `policy` (or the channel's), performing and recording the automatic
    /// exchanges the policy allows, and returns the final response (data concatenated across GET
    /// RESPONSEs, status word of the last exchange).
    public func transmit(_ command: CommandAPDU, policy: TransmitPolicy? = nil) async throws(CardError) -> ResponseAPDU {
        let policy = policy ?? self.policy
        return try await lock.withLock { () async throws(CardError) -> ResponseAPDU in
            try await self.run(command, policy: policy)
        }
    }

    /// Decodes `bytes` as a command APDU and sends it (see ``transmit(_:policy:)``).
    public func transmit(bytes: [UInt8], policy: TransmitPolicy? = nil) async throws(CardError) -> ResponseAPDU {
        let command: CommandAPDU
        do {
            command = try CommandAPDU(bytes: bytes)
        } catch {
            throw .invalidCommand(error)
        }
        return try await transmit(command, policy: policy)
    }

    /// Runs `body` with this channel held, so no other task's command can slip between the commands
    /// of `body` (a SELECT and its READs, say). Commands inside must use ``transmitLocked(_:policy:)``.
    ///
    /// Inside `body`, call the channel's own ``transmit(_:policy:)`` never (the lock is not re-entrant:
    /// it would wait for itself); use the ``ExclusiveChannel`` given. That view stops working when
    /// `body` returns (``CardError/notConnected``), so keeping it cannot bypass the lock.
    public func withExclusiveAccess<T: Sendable>(_ body: (ExclusiveChannel) async throws(CardError) -> T) async throws(CardError) -> T {
        try await lock.withLock { () async throws(CardError) -> T in
            let view = ExclusiveChannel(channel: self)
            defer { view.valid.withLock { $0 = false } }
            return try await body(view)
        }
    }

    /// ``withExclusiveAccess(_:)`` for a card application with its own typed error: `body` throws `E`,
    /// and a failure of the channel itself becomes `wrap(error)`.
    public func withExclusiveAccess<T: Sendable, E: Error>(wrapping wrap: (CardError) -> E, _ body: (ExclusiveChannel) async throws(E) -> T) async throws(E) -> T {
        // E travels out of the CardError-typed closure through `failure`.
        var failure: E? = nil
        let value: T?
        do throws(CardError) {
            value = try await withExclusiveAccess { held throws(CardError) -> T? in
                do throws(E) {
                    return try await body(held)
                } catch {
                    failure = error
                    return nil
                }
            }
        } catch {
            throw wrap(error)
        }
        if let failure { throw failure }
        return value!
    }

    /// A view of a channel held by ``CardChannel/withExclusiveAccess(_:)``, valid only inside it.
    public final class ExclusiveChannel: Sendable {
        let channel: CardChannel
        let valid = Mutex(true)
        init(channel: CardChannel) { self.channel = channel }
        /// Sends a command while the channel is held.
        public func transmit(_ command: CommandAPDU, policy: TransmitPolicy? = nil) async throws(CardError) -> ResponseAPDU {
            guard valid.withLock({ $0 }) else { throw .notConnected }
            return try await channel.run(command, policy: policy ?? channel.policy)
        }
        /// ``CardChannel/verifyPINOnPad(_:)`` while the channel is held.
        public func verifyPINOnPad(_ structure: PINVerifyStructure) async throws(CardError) -> ResponseAPDU {
            guard valid.withLock({ $0 }) else { throw .notConnected }
            return try await channel.padExchange(structure.template.encoded) { t throws(CardError) in try await t.verifyPINOnPad(structure) }
        }
        /// ``CardChannel/modifyPINOnPad(_:)`` while the channel is held.
        public func modifyPINOnPad(_ structure: PINModifyStructure) async throws(CardError) -> ResponseAPDU {
            guard valid.withLock({ $0 }) else { throw .notConnected }
            return try await channel.padExchange(structure.template.encoded) { t throws(CardError) in try await t.modifyPINOnPad(structure) }
        }
    }

    // MARK: - PIN pad

    /// The PIN pad of the transport's reader, or `nil` when the transport has no reader with one
    /// (or cannot say).
    public func pinPad() async -> PINPadCapabilities? {
        guard let pad = transport as? any PINPadTransport else { return nil }
        return try? await pad.pinPadCapabilities()
    }

    /// Has the reader take the PIN on its keypad and send the VERIFY it builds from `structure`'s
    /// template; returns the card's response or the pad's own (`64 00` timeout, `64 01` cancelled,
    /// `64 03` length; see ``PINPadStatus``). The PIN never passes through the host: the trace and
    /// the log show the template (its data redacted as for any VERIFY) with the marker `pin-pad`.
    /// Sent once, never repeated. Throws ``CardError/unsupported(_:)`` without a PIN pad.
    public func verifyPINOnPad(_ structure: PINVerifyStructure) async throws(CardError) -> ResponseAPDU {
        try await lock.withLock { () async throws(CardError) -> ResponseAPDU in
            try await self.padExchange(structure.template.encoded) { t throws(CardError) in try await t.verifyPINOnPad(structure) }
        }
    }

    /// Same as ``verifyPINOnPad(_:)`` for a change or unblock (`PIN_MODIFY_STRUCTURE`; `64 02` when
    /// the new PIN and its confirmation differ).
    public func modifyPINOnPad(_ structure: PINModifyStructure) async throws(CardError) -> ResponseAPDU {
        try await lock.withLock { () async throws(CardError) -> ResponseAPDU in
            try await self.padExchange(structure.template.encoded) { t throws(CardError) in try await t.modifyPINOnPad(structure) }
        }
    }

    func padExchange(_ template: [UInt8], _ body: (any PINPadTransport) async throws(CardError) -> [UInt8]) async throws(CardError) -> ResponseAPDU {
        guard let pad = transport as? any PINPadTransport else { throw .unsupported("the reader has no PIN pad") }
        let command: CommandAPDU
        do { command = try CommandAPDU(bytes: template) } catch { throw .invalidCommand(error) }
        trace?.recordCommand(command, encoded: template, marker: .pinPad)
        if logger.logLevel <= .trace { logger.trace("> \(command.redactedHex)  [\(TraceEvent.Marker.pinPad.rawValue)]") }
        let responseBytes = try await body(pad)
        trace?.recordResponse(responseBytes, marker: .pinPad)
        if logger.logLevel <= .trace { logger.trace("< \(responseBytes.hexString())") }
        do { return try ResponseAPDU(bytes: responseBytes) } catch { throw .malformedResponse(error) }
    }

    // MARK: - The exchange engine

    private func exchange(_ command: CommandAPDU, marker: TraceEvent.Marker?) async throws(CardError) -> ResponseAPDU {
        let bytes = command.encoded()
        trace?.recordCommand(command, encoded: bytes, marker: marker)
        if logger.logLevel <= .trace {
            logger.trace("> \(command.redactedHex)\(marker.map { "  [\($0.rawValue)]" } ?? "")")
        }
        let responseBytes = try await transport.transmit(bytes)
        trace?.recordResponse(responseBytes, marker: marker)
        if logger.logLevel <= .trace {
            logger.trace("< \(responseBytes.hexString())")
        }
        do {
            return try ResponseAPDU(bytes: responseBytes)
        } catch {
            throw .malformedResponse(error)
        }
    }

    /// The class byte for a GET RESPONSE following a command of class `cla`: the CPS2ter class `A0`
    /// keeps `A0`; inter-industry classes keep their logical channel; other proprietary classes use `00`.
    public static func getResponseClass(for cla: UInt8) -> UInt8 {
        if cla == 0xA0 { return 0xA0 }
        if cla & 0x80 != 0 { return 0x00 }
        if cla & 0x40 == 0 { return cla & 0x03 }
        return cla & 0x4F
    }

    private func run(_ command: CommandAPDU, policy: TransmitPolicy) async throws(CardError) -> ResponseAPDU {
        var automatic = 0
        func countAutomatic() throws(CardError) {
            automatic += 1
            if automatic > policy.maxAutomaticExchanges {
                throw .tooManyAutomaticExchanges(limit: policy.maxAutomaticExchanges)
            }
        }

        var command = command
        let capabilities = transport.capabilities
        let canExtend = capabilities.extendedLength && policy.extendedLength
        if command.isExtended && !canExtend {
            if command.data.count > 255 {
                guard command.cla & 0x80 == 0 else {
                    throw .unsupported("command chaining is defined for inter-industry classes only; class \(command.cla.hex) with \(command.data.count) data bytes needs extended length, which the transport does not offer")
                }
                guard policy.commandChaining else {
                    throw .unsupported("\(command.data.count)-byte command data needs extended length or command chaining; the transport \(capabilities.extendedLength ? "supports extended length but the policy disables it" : "has no extended length") and chaining is disabled")
                }
                // Chain: all segments but the last carry CLA b5, no Le; each must answer 9000.
                let data = command.data
                var start = 0
                while data.count - start > 255 {
                    // The caller's own data: segments do not count against maxAutomaticExchanges.
                    let segment = CommandAPDU(unchecked: command.cla | 0x10, command.ins, command.p1, command.p2, Array(data[start..<(start + 255)]), nil, false)
                    let r = try await exchange(segment, marker: .chainedSegment)
                    if !r.statusWord.isSuccess { return r }
                    start += 255
                }
                let le = command.le.map { min($0, 256) }
                command = CommandAPDU(unchecked: command.cla, command.ins, command.p1, command.p2, Array(data[start...]), le, false)
                let last = try await exchange(command, marker: .chainedSegment)
                return try await followUp(command, last, policy: policy, count: countAutomatic)
            }
            // The data fits a short APDU. A larger Le is asked as 256 (00) and the rest comes through
            // GET RESPONSE, which must then be allowed.
            if let le = command.le, le > 256, !policy.getResponseOn61 {
                throw .unsupported("Ne \(le) needs extended length, which the transport does not offer, and automatic GET RESPONSE is disabled")
            }
            command = CommandAPDU(unchecked: command.cla, command.ins, command.p1, command.p2, command.data, command.le.map { min($0, 256) }, false)
        }
        let first = try await exchange(command, marker: nil)
        return try await followUp(command, first, policy: policy, count: countAutomatic)
    }

    private func followUp(
        _ command: CommandAPDU,
        _ firstResponse: ResponseAPDU,
        policy: TransmitPolicy,
        count: () throws(CardError) -> Void
    ) async throws(CardError) -> ResponseAPDU {
        var response = firstResponse
        var current = command
        var resent = false
        var fetching = false
        var data: [UInt8] = []
        while true {
            let sw = response.statusWord
            if let exact = sw.exactLength, policy.resendOnWrongLe, !resent {
                resent = true
                try count()
                current = CommandAPDU(unchecked: current.cla, current.ins, current.p1, current.p2, current.data, exact, current.isExtended)
                response = try await exchange(current, marker: fetching ? .getResponse : .resendWithCorrectLe)
                continue
            }
            let isGetResponse61 = sw.sw1 == 0x61 && policy.getResponseOn61
            let isGetResponse9F = sw.sw1 == 0x9F && policy.getResponseOn9F && command.cla == 0xA0
            if let available = sw.responseBytesAvailable, isGetResponse61 || isGetResponse9F {
                data += response.data
                try count()
                current = .getResponse(cla: CardChannel.getResponseClass(for: command.cla), length: available)
                resent = false
                fetching = true
                response = try await exchange(current, marker: .getResponse)
                continue
            }
            if data.isEmpty { return response }
            return ResponseAPDU(data: data + response.data, statusWord: sw)
        }
    }
}
