internal import COpenSSL

/// A failure of a cryptographic operation, with OpenSSL's own reason when there is one.
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What failed.
    public enum Kind: String, Hashable, Sendable {
        /// A key could not be decoded (bad PEM or DER, not the expected algorithm or curve, encrypted).
        case invalidKey
        /// A certificate could not be decoded (bad DER or PEM).
        case invalidCertificate
        /// The input has the wrong size or shape for the operation (too long for the modulus…).
        case invalidInput
        /// OpenSSL refused the operation (key generation, signing, deciphering…).
        case operationFailed
        /// A signature, a padding or a certificate chain did not verify.
        case verificationFailed
    }

    /// What failed.
    public var kind: Kind
    /// What was being done, and OpenSSL's reason when it gave one.
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// An error carrying the first reason on OpenSSL's error queue (the queue is then emptied).
    static func openSSL(_ kind: Kind, _ what: String) -> CryptoError {
        let code = ERR_get_error()
        var reason = ""
        if code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reason = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        ERR_clear_error()
        return CryptoError(kind, reason.isEmpty ? what : "\(what): \(reason)")
    }
}
