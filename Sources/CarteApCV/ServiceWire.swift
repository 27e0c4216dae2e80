package import CarteVitale
import Foundation
import Synchronization
import CarteJSON

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
    // Compact on the wire; absent values null, as every CarteKit document (docs/json.md).
    (try? Array(NullKeepingJSON.data(value, pretty: false))) ?? Array(#"{"schema":"carte.apcv-error/1","error":"internal","message":"encoding failed"}"#.utf8)
}

// MARK: - Request framing and answers, without the transport

/// What the raw-byte header guard refuses before an HTTP parser sees the request.
package enum HTTPHeaderRefusal: Error, Hashable, CustomStringConvertible {
    /// More header bytes than the limit before the empty line.
    case tooLarge
    /// A header line starting with a space or a tab (obsolete line folding).
    case folded
    /// A space or a tab before a header field's colon.
    case whitespaceInName

    package var description: String {
        switch self {
        case .tooLarge: return "the header is too large"
        case .folded: return "malformed HTTP message: a folded header line"
        case .whitespaceInName: return "malformed HTTP message: whitespace in a header name"
        }
    }
}

/// Reads a request's header bytes one at a time, as they arrive: at most `maximum` of them before the
/// empty line, no folded lines, no whitespace before a field's colon. Empty lines before the request line
/// are skipped (RFC 9112 §2.2); bare LF line endings count like CR LF (as the parser accepts them).
package struct HTTPHeaderScanner {
    /// The scanner's verdict on a byte.
    package enum Verdict: Hashable {
        /// The header goes on.
        case more
        /// This byte ended the header (the LF of the empty line).
        case end
        /// The request is refused.
        case refused(HTTPHeaderRefusal)
    }

    package let maximum: Int
    /// The bytes seen so far.
    package private(set) var seen = 0
    private var last: (UInt8, UInt8) = (0, 0)
    private var atLineStart = true
    private var colonSeen = false
    private var requestLineSeen = false

    package init(maximum: Int) { self.maximum = maximum }

    /// One more header byte.
    package mutating func feed(_ byte: UInt8) -> Verdict {
        seen += 1
        defer { last = (last.1, byte) }
        if byte == 10 {
            let emptyLine = last.1 == 10 || (last.1 == 13 && last.0 == 10)
            if emptyLine, requestLineSeen { return .end }
            if !atLineStart { requestLineSeen = true }
            atLineStart = true
            colonSeen = false
            return .more
        }
        if byte == 13 { return .more }
        if seen > maximum { return .refused(.tooLarge) }
        if requestLineSeen {
            if atLineStart, byte == 32 || byte == 9 { return .refused(.folded) }
            if !colonSeen {
                if byte == 58 { colonSeen = true } else if byte == 32 || byte == 9 { return .refused(.whitespaceInName) }
            }
        }
        atLineStart = false
        return .more
    }
}

extension IdentityDocument {
    /// The identity in an answer of the service with HTTP `status` and `body`: the card of a
    /// `carte.apcv-identity/1` document, or the typed error of a `carte.apcv-error/1` one.
    package static func identity(status: Int, body: [UInt8]) throws(ApCVError) -> VitaleCard {
        let bytes = Data(body)
        let decoder = JSONDecoder()
        if status == 200 {
            let document: IdentityDocument
            do { document = try decoder.decode(IdentityDocument.self, from: bytes) } catch {
                throw .malformedServiceResponse("the identity document does not decode: \(error)")
            }
            guard document.schema == "carte.apcv-identity/1" else {
                throw .malformedServiceResponse("schema \"\(document.schema.prefix(80))\", not carte.apcv-identity/1")
            }
            return document.identity
        }
        if let document = try? decoder.decode(ErrorDocument.self, from: bytes), let typed = document.apcvError {
            throw typed
        }
        throw .serviceFailed(status: status, String(decoding: body.prefix(200), as: UTF8.self))
    }
}

extension IdentityRequest {
    /// The token and software of a request body, or why the body is refused (the 400 message).
    package static func parse(_ body: [UInt8]) -> Result<(token: [UInt8], softwareID: String), HTTPRequestRefusal> {
        guard let request = try? JSONDecoder().decode(IdentityRequest.self, from: Data(body)) else {
            return .failure(HTTPRequestRefusal("the body is not {\"token\": \"<Base64>\", \"software-id\": \"…\"}"))
        }
        guard let token = Data(base64Encoded: request.token) else { return .failure(HTTPRequestRefusal("the token is not Base64")) }
        return .success((Array(token), request.softwareID))
    }
}

/// Why a request body is refused (HTTP 400), in words.
package struct HTTPRequestRefusal: Error, Hashable {
    package var message: String
    package init(_ message: String) { self.message = message }
}
