/// What a ``CardChannel`` does on its own around a command. Every automatic exchange is recorded in the
/// channel's ``Trace`` with a ``TraceEvent/Marker``.
///
/// The default does what a T=0 card needs (GET RESPONSE on `61xx`, resend on `6Cxx`) and splits or
/// extends long commands as the reader allows. Pass ``raw`` (or a modified copy) for one command to see
/// exactly what the card answers.
public struct TransmitPolicy: Hashable, Sendable {
    /// On `61xx`, fetch the remaining bytes with GET RESPONSE and concatenate them.
    public var getResponseOn61: Bool
    /// On `9Fxx` after a command of class `A0` (the CPS2ter volet), fetch the bytes with `A0 C0`.
    public var getResponseOn9F: Bool
    /// On `6Cxx`, resend the same command once with Le = xx.
    public var resendOnWrongLe: Bool
    /// Split command data longer than 255 bytes into chained short APDUs when extended lengths cannot be used.
    public var commandChaining: Bool
    /// Send extended-length APDUs when the command needs them and the transport supports them.
    public var extendedLength: Bool
    /// Upper bound on automatic exchanges for one command (protects against a card that never stops answering `61xx`).
    public var maxAutomaticExchanges: Int

    /// Creates a policy; every automatic behaviour is on by default.
    public init(
        getResponseOn61: Bool = true,
        getResponseOn9F: Bool = true,
        resendOnWrongLe: Bool = true,
        commandChaining: Bool = true,
        extendedLength: Bool = true,
        maxAutomaticExchanges: Int = 256
    ) {
        self.getResponseOn61 = getResponseOn61
        self.getResponseOn9F = getResponseOn9F
        self.resendOnWrongLe = resendOnWrongLe
        self.commandChaining = commandChaining
        self.extendedLength = extendedLength
        self.maxAutomaticExchanges = maxAutomaticExchanges
    }

    /// Every automatic behaviour on.
    public static let `default` = TransmitPolicy()

    /// Nothing automatic: one command, one response, exactly as the card gave it. Commands that need
    /// extended lengths are still sent extended (and fail if the transport cannot).
    public static let raw = TransmitPolicy(
        getResponseOn61: false,
        getResponseOn9F: false,
        resendOnWrongLe: false,
        commandChaining: false,
        extendedLength: true,
        maxAutomaticExchanges: 0
    )
}

/// What a transport can carry.
public struct TransportCapabilities: Hashable, Sendable {
    /// Whether extended-length APDUs reach the card.
    public var extendedLength: Bool
    /// The largest command APDU in bytes.
    public var maxCommandLength: Int
    /// The largest response APDU in bytes (data + SW).
    public var maxResponseLength: Int

    /// Describes a transport; extended support raises the maxima to the extended limits.
    public init(extendedLength: Bool, maxCommandLength: Int = 261, maxResponseLength: Int = 258) {
        self.extendedLength = extendedLength
        self.maxCommandLength = extendedLength ? max(maxCommandLength, 65_544) : maxCommandLength
        self.maxResponseLength = extendedLength ? max(maxResponseLength, 65_538) : maxResponseLength
    }

    /// Short APDUs only (261-byte commands, 258-byte responses).
    public static let short = TransportCapabilities(extendedLength: false)
    /// Short and extended APDUs.
    public static let extended = TransportCapabilities(extendedLength: true)
}
