public import CarteCore
public import CarteCrypto

/// Why an appli carte Vitale session could not give an identity. Every case says what and where;
/// none carries personal data. The service (in process or over HTTP) reports the same cases: over
/// HTTP each travels as its ``code``.
public enum ApCVError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The contactless target refused the apCV AID: not a phone with the application (or not open).
    case notAnApCV(StatusWord)
    /// The phone refused the session-token command (`6985`: the holder did not confirm on the phone).
    case phoneRefused(StatusWord)
    /// The token bytes are not a well-formed session token: what is wrong, and where.
    case malformedToken(String)
    /// The scanned text is not a QR payload of the synthetic format: what is wrong, and where.
    case malformedQRPayload(String)
    /// The signature does not verify with the key the token names (the token was altered or forged).
    case badSignature
    /// The token names a signing key the service does not know (a foreign issuer).
    case unknownKey(String)
    /// The token expired at `expiresAt` (seconds since 1970); it is `now`.
    case expired(expiresAt: Int64, now: Int64)
    /// The token's issue time is in the future beyond the tolerated clock skew.
    case notYetValid(issuedAt: Int64, now: Int64)
    /// The token was already redeemed (single use); its id is given in hexadecimal.
    case replayed(tokenID: String)
    /// The token was issued for another professional software.
    case foreignAudience(expected: String, found: String)
    /// The token does not echo the nonce this reader sent (a token from another NFC session).
    case nonceMismatch
    /// The service has no insured person for the token's subject.
    case unknownSubject
    /// The service cannot be reached (connection refused, timeout, closed early): the reason.
    case serviceUnavailable(String)
    /// The service answered with an HTTP status CarteKit does not expect, and its text.
    case serviceFailed(status: Int, String)
    /// The service's answer is not the documented JSON: what is wrong.
    case malformedServiceResponse(String)
    /// The reader or the phone failed at the transport level.
    case card(CardError)
    /// A cryptographic operation failed (key, signature encoding).
    case crypto(CryptoError)

    /// What kind of failure it is, for exit codes and status codes.
    public enum Category: Sendable, Hashable {
        /// The token, the QR text or the service's answer is malformed.
        case malformed
        /// A well-formed token the service (or the reader) refuses: forged, unknown key, foreign,
        /// expired, not yet valid, replayed, wrong nonce, unknown subject.
        case refused
        /// The phone, the reader or the service could not give an answer.
        case unavailable
        /// A local cryptographic failure.
        case `internal`
    }

    /// The case's category.
    public var category: Category {
        switch self {
        case .malformedToken, .malformedQRPayload, .malformedServiceResponse: return .malformed
        case .badSignature, .unknownKey, .expired, .notYetValid, .replayed, .foreignAudience, .nonceMismatch, .unknownSubject: return .refused
        case .notAnApCV, .phoneRefused, .serviceUnavailable, .serviceFailed, .card: return .unavailable
        case .crypto: return .internal
        }
    }

    /// A stable identifier of the case (the `error` field of the service's JSON errors).
    public var code: String {
        switch self {
        case .notAnApCV: return "not-an-apcv"
        case .phoneRefused: return "phone-refused"
        case .malformedToken: return "malformed-token"
        case .malformedQRPayload: return "malformed-qr-payload"
        case .badSignature: return "bad-signature"
        case .unknownKey: return "unknown-key"
        case .expired: return "expired"
        case .notYetValid: return "not-yet-valid"
        case .replayed: return "replayed"
        case .foreignAudience: return "foreign-audience"
        case .nonceMismatch: return "nonce-mismatch"
        case .unknownSubject: return "unknown-subject"
        case .serviceUnavailable: return "service-unavailable"
        case .serviceFailed: return "service-failed"
        case .malformedServiceResponse: return "malformed-service-response"
        case .card: return "card"
        case .crypto: return "crypto"
        }
    }

    public var description: String {
        switch self {
        case .notAnApCV(let sw): return "the contactless target is not an appli carte Vitale (SELECT of the apCV AID: \(sw): \(sw.meaning))"
        case .phoneRefused(let sw):
            let why = sw.rawValue == 0x6985 ? ": the holder declined or did not confirm on the phone" : ""
            return "the phone refused to give a session token\(why) (\(sw): \(sw.meaning))"
        case .malformedToken(let why): return "malformed apCV session token: \(why)"
        case .malformedQRPayload(let why): return "malformed apCV QR payload: \(why)"
        case .badSignature: return "the apCV session token's signature does not verify (altered or forged token)"
        case .unknownKey(let id): return "the apCV session token is signed by an unknown key \"\(id)\""
        case .expired(let at, let now): return "the apCV session token expired \(now - at) s ago"
        case .notYetValid(let at, let now): return "the apCV session token is issued \(at - now) s in the future (clock skew beyond tolerance)"
        case .replayed(let id): return "the apCV session token \(id) was already used (single use)"
        case .foreignAudience(let expected, let found): return "the apCV session token is for software \"\(found)\", not \"\(expected)\""
        case .nonceMismatch: return "the apCV session token does not answer this reader's nonce"
        case .unknownSubject: return "the apCV service knows no insured person for this token"
        case .serviceUnavailable(let why): return "the apCV service cannot be reached: \(why)"
        case .serviceFailed(let status, let text): return "the apCV service answered HTTP \(status): \(text)"
        case .malformedServiceResponse(let why): return "the apCV service's answer is malformed: \(why)"
        case .card(let e): return e.description
        case .crypto(let e): return e.description
        }
    }
}
