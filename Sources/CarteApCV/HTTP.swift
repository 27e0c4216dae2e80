public import CarteVitale
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The simulated apCV service over HTTP/1.1 on loopback (docs/apcv.md): one endpoint,
// `POST /apcv/v1/identity` with `{"token": "<Base64>", "software-id": "<id>"}`, answering
// `carte.apcv-identity/1` or a `carte.apcv-error/1` document. Plain HTTP, loopback only: this is the
// simulator's service; the real one (over TLS, with its own authentication) is another ApCVResolver.

/// The endpoint's path.
let identityPath = "/apcv/v1/identity"

/// A loopback address and port: `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`.
public struct LoopbackEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// `127.0.0.1`, `::1` (checked: only a loopback address can be set).
    public private(set) var host: String
    /// The TCP port (0 to let the system choose when listening).
    public private(set) var port: UInt16

    /// The same host with another port.
    func with(port: UInt16) -> LoopbackEndpoint {
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

    /// A socket address for this endpoint, and its family (the host was checked by `init`).
    func withAddress<T>(_ body: (UnsafePointer<sockaddr>, socklen_t, Int32) -> T) -> T {
        if host.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &a.sin6_addr)
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6) } }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &a.sin_addr)
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET) } }
    }
}

// MARK: - Messages

/// One HTTP/1.1 message read from a socket: start line, headers (lower-cased names) and body.
struct HTTPMessage {
    var startLine: String
    var headers: [String: String]
    var body: [UInt8]

    static let maximumHeader = 8192
    static let maximumBody = 65536

    enum ReadError: Error, CustomStringConvertible {
        case closed, timedOut, tooLarge(String), malformed(String), system(Int32)
        var description: String {
            switch self {
            case .closed: return "the connection closed before a whole message"
            case .timedOut: return "no complete message within the timeout"
            case .tooLarge(let what): return "\(what) is too large"
            case .malformed(let why): return "malformed HTTP message: \(why)"
            case .system(let e): return String(cString: strerror(e))
            }
        }
        /// The HTTP status a server answers for it.
        var status: Int {
            switch self {
            case .tooLarge: return 413
            default: return 400
            }
        }
    }

    /// Reads one message (Content-Length framing only; no chunked bodies), all of it before
    /// `deadline` (a `ContinuousClock` instant): a peer trickling bytes cannot hold the reader longer.
    static func read(from fd: Int32, deadline: ContinuousClock.Instant) throws(ReadError) -> HTTPMessage {
        var data: [UInt8] = []
        var headerEnd: Int?
        var chunk = [UInt8](repeating: 0, count: 4096)
        func receive(_ limit: Int) throws(ReadError) -> Int {
            while true {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw .timedOut }
                let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, milliseconds)
                if ready < 0 {
                    if errno == EINTR { continue }
                    throw .system(errno)
                }
                if ready == 0 { throw .timedOut }
                let n = recv(fd, &chunk, min(chunk.count, limit), Int32(MSG_DONTWAIT))
                if n == 0 { throw .closed }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                    throw .system(errno)
                }
                return n
            }
        }
        while headerEnd == nil {
            let n = try receive(chunk.count)
            data += chunk[0..<n]
            if let r = find([13, 10, 13, 10], in: data) { headerEnd = r }
            if (headerEnd ?? data.count) > maximumHeader { throw .tooLarge("the header") }
        }
        let head = String(decoding: data[0..<headerEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let start = lines.removeFirst()
        var headers: [String: String] = [:]
        for line in lines {
            // RFC 9112: no folded lines, no whitespace in or after a field name, each field once here.
            guard let first = line.first, first != " ", first != "\t" else { throw .malformed("a folded header line") }
            guard let colon = line.firstIndex(of: ":") else { throw .malformed("header line without a colon") }
            let name = String(line[..<colon])
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { throw .malformed("header name \"\(name.prefix(40))\"") }
            guard headers[name.lowercased()] == nil else { throw .malformed("header \(name.prefix(40)) given twice") }
            headers[name.lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["transfer-encoding"] != nil { throw .malformed("Transfer-Encoding is not supported; send Content-Length") }
        let length: Int
        if let text = headers["content-length"] {
            guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text) else {
                throw text.count > 9 && text.allSatisfy({ $0.isASCII && $0.isNumber }) ? .tooLarge("the body") : .malformed("Content-Length \"\(text.prefix(20))\"")
            }
            length = n
        } else {
            length = 0
        }
        guard length <= maximumBody else { throw .tooLarge("the body (\(length) bytes)") }
        var body = Array(data[(headerEnd! + 4)...])
        while body.count < length {
            let n = try receive(length - body.count)
            body += chunk[0..<n]
        }
        guard body.count == length else { throw .malformed("more bytes than Content-Length") }
        return HTTPMessage(startLine: start, headers: headers, body: body)
    }

    static func find(_ needle: [UInt8], in data: [UInt8]) -> Int? {
        guard data.count >= needle.count else { return nil }
        for i in 0...(data.count - needle.count) where data[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }
}

/// Writes all of `bytes`; false when the peer went away.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        sent += n
    }
    return true
}

func setTimeouts(_ fd: Int32, seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

// MARK: - Wire documents

/// `carte.apcv-identity/1`: the service's answer.
struct IdentityDocument: Codable {
    var schema = "carte.apcv-identity/1"
    var identity: VitaleCard
}

/// `carte.apcv-error/1`: a refusal, with the error's code and its data.
struct ErrorDocument: Codable {
    var schema = "carte.apcv-error/1"
    var error: String
    var message: String
    var expiresAt: Int64?
    var issuedAt: Int64?
    var now: Int64?
    var keyID: String?
    var tokenID: String?
    var expected: String?
    var found: String?

    enum CodingKeys: String, CodingKey {
        case schema, error, message, now, expected, found
        case expiresAt = "expires-at", issuedAt = "issued-at", keyID = "key-id", tokenID = "token-id"
    }

    init(_ e: ApCVError) {
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
    static func status(of e: ApCVError) -> Int {
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
    var apcvError: ApCVError? {
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
struct IdentityRequest: Codable {
    var token: String
    var softwareID: String
    enum CodingKeys: String, CodingKey {
        case token
        case softwareID = "software-id"
    }
}

let reasonPhrases = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                     409: "Conflict", 410: "Gone", 413: "Content Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error"]

func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? Array(encoder.encode(value))) ?? Array(#"{"schema":"carte.apcv-error/1","error":"internal","message":"encoding failed"}"#.utf8)
}

// MARK: - Server

/// The simulated apCV service over HTTP on a loopback address: `carte sim apcv-service`. One
/// dedicated thread accepts and answers connections one at a time, each within
/// `connectionTimeout` (5 s by default) from its acceptance, so a stalled or trickling client
/// delays others by at most that. Call ``stop()`` when done: the serving thread holds the server.
public final class ApCVHTTPServer: Sendable {
    /// The service answering.
    public let service: ApCVService
    /// The address actually bound (the port the system chose when 0 was asked).
    public let endpoint: LoopbackEndpoint
    private let listener: Int32
    private let state = Mutex<(stopping: Bool, thread: Thread?, served: Int)>((false, nil, 0))
    private let stopped = DispatchSemaphore(value: 0)

    /// The longest a connection may take, from acceptance to the answer.
    public let connectionTimeout: Duration

    /// Binds `endpoint` (loopback only) and starts serving. `connectionTimeout` is kept within 0.05…60 s.
    public init(service: ApCVService, endpoint: LoopbackEndpoint, connectionTimeout: Duration = .seconds(5)) throws(ApCVError) {
        self.service = service
        self.connectionTimeout = min(max(connectionTimeout, .milliseconds(50)), .seconds(60))
        let family: Int32 = endpoint.host.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .serviceUnavailable("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = endpoint.withAddress { address, length, _ in bind(fd, address, length) }
        guard bound == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw .serviceUnavailable("cannot listen on \(endpoint): \(String(cString: strerror(e)))")
        }
        var actualPort = endpoint.port
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        if family == AF_INET {
            actualPort = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
        } else {
            actualPort = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        }
        self.endpoint = endpoint.with(port: actualPort)
        listener = fd
        let thread = Thread { [self] in serve() }
        thread.name = "apcv-http"
        state.withLock { $0.thread = thread }
        thread.start()
    }

    /// How many connections were accepted and answered (counted before the answer is sent).
    public var servedCount: Int { state.withLock { $0.served } }

    /// Stops accepting, closes the socket and waits for the serving thread to end.
    public func stop() {
        let first = state.withLock { s -> Bool in
            defer { s.stopping = true }
            return !s.stopping
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        stopped.wait()
        close(listener)
    }

    private func serve() {
        defer { stopped.signal() }
        while true {
            let client = accept(listener, nil, nil)
            if client >= 0 { _ = fcntl(client, F_SETFD, FD_CLOEXEC) }
            if state.withLock({ $0.stopping }) {
                if client >= 0 { close(client) }
                return
            }
            guard client >= 0 else {
                // Transient (a signal, an aborted connection, no descriptor or memory left for now):
                // the service keeps listening; it ends only through stop().
                if errno != EINTR && errno != ECONNABORTED { usleep(50_000) }
                continue
            }
            let deadline = ContinuousClock.now + connectionTimeout
            setTimeouts(client, seconds: Double(connectionTimeout.components.seconds) + Double(connectionTimeout.components.attoseconds) / 1e18)
            state.withLock { $0.served += 1 }
            answer(client, deadline: deadline)
            close(client)
        }
    }

    private func answer(_ fd: Int32, deadline: ContinuousClock.Instant) {
        let (status, body) = respond(fd, deadline: deadline)
        var head = "HTTP/1.1 \(status) \(reasonPhrases[status] ?? "Error")\r\n"
        head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        _ = sendAll(fd, Array(head.utf8) + body)
    }

    private func respond(_ fd: Int32, deadline: ContinuousClock.Instant) -> (Int, [UInt8]) {
        func refuse(_ status: Int, _ message: String) -> (Int, [UInt8]) {
            var doc = ErrorDocument(.malformedToken(message))
            doc.error = "bad-request"
            doc.message = message
            return (status, encodeJSON(doc))
        }
        let request: HTTPMessage
        do { request = try HTTPMessage.read(from: fd, deadline: deadline) } catch { return refuse(error.status, error.description) }
        let parts = request.startLine.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return refuse(400, "request line \"\(request.startLine.prefix(80))\"") }
        guard parts[1] == identityPath else { return refuse(404, "no such endpoint \(parts[1].prefix(80)) (POST \(identityPath))") }
        guard parts[0] == "POST" else { return refuse(405, "\(parts[0]) \(identityPath): only POST") }
        guard request.headers["content-type"]?.lowercased().hasPrefix("application/json") == true else {
            return refuse(415, "the body must be application/json")
        }
        let body: IdentityRequest
        do { body = try JSONDecoder().decode(IdentityRequest.self, from: Data(request.body)) } catch {
            return refuse(400, "the body is not {\"token\": \"<Base64>\", \"software-id\": \"…\"}")
        }
        guard let token = Data(base64Encoded: body.token) else { return refuse(400, "the token is not Base64") }
        do {
            let identity = try service.resolve(token: Array(token), softwareID: body.softwareID)
            return (200, encodeJSON(IdentityDocument(identity: identity)))
        } catch {
            return (ErrorDocument.status(of: error), encodeJSON(ErrorDocument(error)))
        }
    }
}

// MARK: - Client

/// An ``ApCVResolver`` that asks an apCV service over HTTP on loopback (`carte sim apcv-service`).
/// The exchange runs on a thread of its own, never on Swift's concurrency pool, bounded by `timeout`.
public struct HTTPApCVResolver: ApCVResolver {
    /// The service's address.
    public let endpoint: LoopbackEndpoint
    public let softwareID: String
    /// The limit for the whole exchange (connecting, sending, receiving), in seconds.
    public let timeout: Double

    /// A resolver for the software `softwareID` against the service at `endpoint`. `timeout` is kept
    /// within 0.05…300 s (a value that is not a number counts as the default, 5 s).
    public init(endpoint: LoopbackEndpoint, softwareID: String, timeout: Double = 5) {
        self.endpoint = endpoint
        self.softwareID = softwareID
        self.timeout = timeout.isNaN ? 5 : min(max(timeout, 0.05), 300)
    }

    public func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard {
        let request = IdentityRequest(token: Data(token).base64EncodedString(), softwareID: softwareID)
        let endpoint = self.endpoint, timeout = self.timeout
        let result: Result<VitaleCard, ApCVError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Self.exchange(request, endpoint: endpoint, timeout: timeout))
            }
            thread.name = "apcv-http-client"
            thread.start()
        }
        return try result.get()
    }

    static func exchange(_ request: IdentityRequest, endpoint: LoopbackEndpoint, timeout: Double) -> Result<VitaleCard, ApCVError> {
        let family: Int32 = endpoint.host.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.serviceUnavailable("socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        setTimeouts(fd, seconds: timeout)  // bounds connect and send; the answer is read before `deadline`
        guard endpoint.withAddress({ address, length, _ in connect(fd, address, length) }) == 0 else {
            return .failure(.serviceUnavailable("\(endpoint): \(String(cString: strerror(errno)))"))
        }
        let body = encodeJSON(request)
        let head = "POST \(identityPath) HTTP/1.1\r\nHost: \(endpoint)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        guard sendAll(fd, Array(head.utf8) + body) else { return .failure(.serviceUnavailable("\(endpoint) closed the connection")) }
        let response: HTTPMessage
        do { response = try HTTPMessage.read(from: fd, deadline: deadline) } catch {
            switch error {
            case .timedOut: return .failure(.serviceUnavailable("\(endpoint) did not answer within \(timeout) s"))
            case .closed: return .failure(.serviceUnavailable("\(endpoint) closed the connection before answering"))
            default: return .failure(.malformedServiceResponse(error.description))
            }
        }
        let parts = response.startLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            return .failure(.malformedServiceResponse("status line \"\(response.startLine.prefix(80))\""))
        }
        let decoder = JSONDecoder()
        if status == 200 {
            do {
                let doc = try decoder.decode(IdentityDocument.self, from: Data(response.body))
                guard doc.schema == "carte.apcv-identity/1" else { return .failure(.malformedServiceResponse("schema \"\(doc.schema)\", not carte.apcv-identity/1")) }
                return .success(doc.identity)
            } catch {
                return .failure(.malformedServiceResponse("the identity document does not decode: \(error)"))
            }
        }
        if let doc = try? decoder.decode(ErrorDocument.self, from: Data(response.body)), let typed = doc.apcvError {
            return .failure(typed)
        }
        let text = String(decoding: response.body.prefix(200), as: UTF8.self)
        return .failure(.serviceFailed(status: status, text))
    }
}
