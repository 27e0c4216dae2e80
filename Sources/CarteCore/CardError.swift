/// Why an exchange with a card, or an operation on a reader, failed.
///
/// Backends (PC/SC, the simulator) map their own failures to these cases; the PC/SC backend keeps
/// the original return code in ``backend(code:name:message:)``.
public enum CardError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No reader has this name. `available` lists the names that exist.
    case noSuchReader(String, available: [String])
    /// The reader exists but holds no card.
    case noCard(reader: String)
    /// The card was removed (before or during the exchange).
    case cardRemoved(reader: String)
    /// The card was reset by another program or by the reader since the connection was made;
    /// the connection must be re-established (any verified PIN is lost).
    case cardReset(reader: String)
    /// The card did not answer within `timeout` (a mute card); `.zero` when the reader gave up on it
    /// after its own timeout (through pcscd: the driver reported a failed exchange).
    case cardMute(reader: String, timeout: Duration)
    /// Another connection holds the card exclusively.
    case sharingViolation(reader: String)
    /// The reader went away (unplugged, driver stopped).
    case readerUnavailable(reader: String)
    /// The connection was closed; no more commands can be sent on it.
    case notConnected
    /// The operation was cancelled by the caller.
    case cancelled
    /// The command could not be built or sent as requested (see the nested error).
    case invalidCommand(APDUError)
    /// The card or reader returned bytes that do not form a response APDU.
    case malformedResponse(ResponseError)
    /// More automatic exchanges (GET RESPONSE, resend) than ``TransmitPolicy/maxAutomaticExchanges`` were
    /// needed: the card keeps answering `61xx`/`9Fxx`/`6Cxx`.
    case tooManyAutomaticExchanges(limit: Int)
    /// The command needs a capability the reader lacks (for example extended lengths with chaining disabled).
    case unsupported(String)
    /// A backend failure with its native code (for PC/SC: the `SCARD_*` value), name and English meaning.
    case backend(code: Int, name: String, message: String)

    public var description: String {
        switch self {
        case .noSuchReader(let name, let available):
            return "no reader named \"\(name)\"" + (available.isEmpty ? " (no reader at all)" : "; readers: " + available.map { "\"\($0)\"" }.joined(separator: ", "))
        case .noCard(let r): return "no card in reader \"\(r)\""
        case .cardRemoved(let r): return "card removed from reader \"\(r)\""
        case .cardReset(let r): return "card in reader \"\(r)\" was reset; reconnect"
        case .cardMute(let r, let t):
            return t == .zero ? "card in reader \"\(r)\" did not answer (the reader gave up on it)" : "card in reader \"\(r)\" did not answer within \(t)"
        case .sharingViolation(let r): return "card in reader \"\(r)\" is held exclusively by another connection"
        case .readerUnavailable(let r): return "reader \"\(r)\" is no longer available"
        case .notConnected: return "connection closed"
        case .cancelled: return "operation cancelled"
        case .invalidCommand(let e): return "invalid command: \(e)"
        case .malformedResponse(let e): return "malformed response: \(e)"
        case .tooManyAutomaticExchanges(let limit): return "more than \(limit) automatic GET RESPONSE/resend exchanges"
        case .unsupported(let what): return "unsupported: \(what)"
        case .backend(let code, let name, let message):
            return "\(name) (0x\(String(UInt32(truncatingIfNeeded: code), radix: 16, uppercase: true))): \(message)"
        }
    }
}
