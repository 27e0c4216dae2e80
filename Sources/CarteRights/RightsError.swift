/// What went wrong reaching, or answering at, the synthetic rights-consultation service
/// (`carte sim rights-service`, `carte rights`). Descriptions say what and where; none ever holds a
/// PIN or key material.
public enum RightsError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An address that is not a loopback `HOST:PORT` (the service and its clients stay on this machine).
    case invalidEndpoint(String)
    /// A NIR that is not 13 characters plus a 2-digit key (the text says what is wrong).
    case invalidNIR(String)
    /// A rights date that is not a calendar date written `YYYY-MM-DD`.
    case invalidDate(String)
    /// The service cannot be set up: its certificate, its key, its trust list or its socket.
    case setup(String)
    /// Nothing answers at the address (connection refused, closed during the handshake, or no complete
    /// handshake within the client's timeout).
    case serviceUnavailable(String)
    /// The TLS handshake failed on the client's side before the service decided anything (the
    /// service's certificate is not trusted or does not name the address, the protocol versions do not
    /// match…).
    case untrustedService(String)
    /// The service refused the client's certificate; the TLS alert it sent is given (no certificate,
    /// unknown CA, expired certificate…).
    case refusedByService(alert: String)
    /// The card could not sign the handshake (the PIN is not verified, the key refuses, the card was
    /// removed); the card's own error is given.
    case cardSignature(String)
    /// The exchange broke after the handshake: no complete answer in time, a malformed or oversized one.
    case protocolError(String)
    /// The service knows nobody with this NIR.
    case unknownNIR(String)
    /// The service answered with an error document (`carte.rights-error/1`): HTTP status, its
    /// `error` code (empty when the answer had no document) and message.
    case serviceError(status: Int, error: String, message: String)

    public var description: String {
        switch self {
        case .invalidEndpoint(let s): return "invalid service address: \(s)"
        case .invalidNIR(let s): return "invalid NIR: \(s)"
        case .invalidDate(let s): return "invalid date \"\(s)\": YYYY-MM-DD"
        case .setup(let s): return "rights service set-up: \(s)"
        case .serviceUnavailable(let s): return "rights service unavailable: \(s)"
        case .untrustedService(let s): return "TLS handshake with the rights service failed: \(s)"
        case .refusedByService(let alert): return "the rights service refused the client certificate (TLS alert: \(alert))"
        case .cardSignature(let s): return "the card could not sign the TLS handshake: \(s)"
        case .protocolError(let s): return "rights service exchange: \(s)"
        case .unknownNIR(let nir): return "the rights service knows no one with NIR \(nir)"
        case .serviceError(let status, _, let message): return "the rights service answered HTTP \(status): \(message)"
        }
    }
}
