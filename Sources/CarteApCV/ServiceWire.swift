package import CarteVitale
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The wire of the simulated apCV service (docs/apcv.md): one endpoint, `POST /apcv/v1/identity` with
// `{"token": "<Base64>", "software-id": "<id>"}`, answering `carte.apcv-identity/1` or a
// `carte.apcv-error/1` document, on a loopback address. The HTTP server and client over SwiftNIO and
// AsyncHTTPClient are in CarteApCVHTTP; the real insurer's service is another ApCVResolver.

/// The endpoint's path.
package let identityPath = "/apcv/v1/identity"

/// A loopback address and port: `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`.
public struct LoopbackEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// `127.0.0.1`, `::1` (checked: only a loopback address can be set).
    public private(set) var host: String
    /// The TCP port (0 to let the system choose when listening).
    public private(set) var port: UInt16

    /// The same host with another port.
    package func with(port: UInt16) -> LoopbackEndpoint {
        var copy = self
        copy.port = port
        return copy
    }

    /// Parses `HOST:PORT`, refusing any host that is not a loopback address.
    public init(_ text: String) throws(ApCVError) {
        var t = text
        if t.hasPrefix("http://") { t.removeFirst("http://".count) }
        while t.hasSuffix("/") { t.removeLast() }
        let host: String, portText: Substring
        if t.hasPrefix("["), let close = t.firstIndex(of: "]") {
            host = String(t[t.index(after: t.startIndex)..<close])
            let rest = t[t.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .serviceUnavailable("\"\(text)\" has no port (HOST:PORT)") }
            portText = rest.dropFirst()
        } else {
            guard let colon = t.lastIndex(of: ":") else { throw .serviceUnavailable("\"\(text)\" has no port (HOST:PORT)") }
            host = String(t[..<colon])
            portText = t[t.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { throw .serviceUnavailable("\"\(portText)\" is not a TCP port (0–65535)") }
        let refusal = ApCVError.serviceUnavailable("\"\(host)\" is not a loopback address: the simulated apCV service is reachable on 127.0.0.0/8 or ::1 only")
        switch host {
        case "localhost": self.host = "127.0.0.1"
        case "::1": self.host = "::1"
        default:
            // Dotted decimal in its strict form (no sign, no leading zero), first byte 127, and what
            // inet_pton accepts: the address bound or reached is exactly the one checked.
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4, parts[0] == "127",
                  parts.allSatisfy({ p in !p.isEmpty && p.count <= 3 && p.allSatisfy { $0.isASCII && $0.isNumber } && (p == "0" || p.first != "0") && Int(p)! <= 255 })
            else { throw refusal }
            var address = in_addr()
            guard inet_pton(AF_INET, host, &address) == 1 else { throw refusal }
            self.host = host
        }
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

// MARK: - Wire documents

/// `carte.apcv-identity/1`: the service's answer.
package struct IdentityDocument: Codable {
    package var schema = "carte.apcv-identity/1"
    package var identity: VitaleCard
    package init(identity: VitaleCard) { self.identity = identity }
}

/// `carte.apcv-error/1`: a refusal, with the error's code and its data.
package struct ErrorDocument: Codable {
    package var schema = "carte.apcv-error/1"
    package var error: String
    package var message: String
    package var expiresAt: Int64?
    package var issuedAt: Int64?
    package var now: Int64?
    package var keyID: String?
    package var tokenID: String?
    package var expected: String?
    package var found: String?

    enum CodingKeys: String, CodingKey {
        case schema, error, message, now, expected, found
        case expiresAt = "expires-at", issuedAt = "issued-at", keyID = "key-id", tokenID = "token-id"
    }

    package init(_ e: ApCVError) {
        error = e.code
        message = e.description
        switch e {
        case .expired(let at, let n): expiresAt = at; now = n
        case .notYetValid(let at, let n): issuedAt = at; now = n
        case .unknownKey(let id): keyID = id
        case .replayed(let id): tokenID = id
        case .foreignAudience(let x, let f): expected = x; found = f
        default: break
        }
    }

    /// The HTTP status of each refusal.
    package static func status(of e: ApCVError) -> Int {
        switch e {
        case .malformedToken, .malformedQRPayload: return 400
        case .badSignature, .unknownKey: return 401
        case .foreignAudience: return 403
        case .unknownSubject: return 404
        case .replayed: return 409
        case .expired, .notYetValid: return 410
        default: return 500
        }
    }

    /// The typed error back, when the code is one the service sends.
    package var apcvError: ApCVError? {
        switch error {
        case "malformed-token":
            let prefix = "malformed apCV session token: "
            return .malformedToken(message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message)
        case "bad-signature": return .badSignature
        case "unknown-key": return keyID.map { .unknownKey($0) }
        case "foreign-audience": return expected.flatMap { x in found.map { .foreignAudience(expected: x, found: $0) } }
        case "unknown-subject": return .unknownSubject
        case "replayed": return tokenID.map { .replayed(tokenID: $0) }
        case "expired": return expiresAt.flatMap { at in now.map { .expired(expiresAt: at, now: $0) } }
        case "not-yet-valid": return issuedAt.flatMap { at in now.map { .notYetValid(issuedAt: at, now: $0) } }
        default: return nil
        }
    }
}

/// The request body.
package struct IdentityRequest: Codable {
    package var token: String
    package var softwareID: String
    package init(token: String, softwareID: String) {
        self.token = token
        self.softwareID = softwareID
    }
    enum CodingKeys: String, CodingKey {
        case token
        case softwareID = "software-id"
    }
}

package let reasonPhrases = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                     409: "Conflict", 410: "Gone", 413: "Content Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error"]

package func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? Array(encoder.encode(value))) ?? Array(#"{"schema":"carte.apcv-error/1","error":"internal","message":"encoding failed"}"#.utf8)
}
