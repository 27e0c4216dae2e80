import Foundation

/// Who may call the agent (docs/agent.md, "Who may call"): checked on every WebSocket upgrade, before
/// a single frame is read.
///
/// - The `Host` header must name the agent itself: `127.0.0.1`, `[::1]` or `localhost`, with the
///   agent's port. Any other name is a DNS-rebinding attempt and is refused.
/// - A request with an `Origin` comes from a page: the origin must be on an allow-list (the
///   administrator's file, the user's own, or an origin paired once).
/// - A request without an `Origin` comes from a local program, not a page: it must present the
///   agent's token (a file only the user can read) in `Authorization: Bearer TOKEN`.
public struct AgentAccess: Sendable {
    /// The port the agent listens on (the `Host` header must carry it).
    public var port: Int
    /// The allowed origins, normalised (``normalise(origin:)``).
    public var allowedOrigins: Set<String>
    /// The local programs' token.
    public var token: String
    /// The allow-list files as they are now (read again when they change), beside ``allowedOrigins``.
    public var allowList: AgentAllowList?

    /// Builds the rules for an agent on `port`.
    public init(port: Int, allowedOrigins: some Sequence<String>, token: String, allowList: AgentAllowList? = nil) {
        self.port = port
        self.allowedOrigins = Set(allowedOrigins.compactMap { AgentAccess.normalise(origin: $0) })
        self.token = token
        self.allowList = allowList
    }

    /// Whether a page of `origin` (normalised) may connect.
    public func allows(_ origin: String) -> Bool { allowedOrigins.contains(origin) || allowList?.contains(origin) == true }

    /// Who is calling, once admitted.
    public enum Caller: Hashable, Sendable, CustomStringConvertible {
        /// A page of this origin (normalised).
        case page(origin: String)
        /// A local program that presented the token.
        case localProgram
        /// A page of an origin not allowed, on the pairing path: it may only ask for a pairing code.
        case pairing(origin: String)

        public var description: String {
            switch self {
            case .page(let origin): origin
            case .localProgram: "local program"
            case .pairing(let origin): "\(origin) (pairing)"
            }
        }
    }

    /// Why a connection was refused; safe to log and to send back (it never holds the token).
    public enum Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        /// The `Host` header is missing or names another host or port (DNS rebinding).
        case hostNotAllowed(String?)
        /// The page's origin is on no allow-list and was not paired.
        case originNotAllowed(String)
        /// The `Origin` header is not an origin (`scheme://host[:port]`), or there are several.
        case malformedOrigin(String)
        /// No `Origin` (a local program) and no token, or a wrong one.
        case tokenRequired
        /// The path is not the protocol's (`/carte.agent/1`).
        case wrongPath(String)
        /// Too many connections at once (in all, or from this origin).
        case tooManyConnections(limit: Int)

        public var description: String {
            switch self {
            case .hostNotAllowed(let host): "Host \(host.map { "\"\($0)\"" } ?? "missing") is not this agent's loopback address"
            case .originNotAllowed(let origin): "origin \(origin) is not allowed (carte agent allow \(origin), or pair it)"
            case .malformedOrigin(let text): "Origin \"\(text.prefix(80))\" is not an origin"
            case .tokenRequired: "a local program (no Origin) must present the agent's token (Authorization: Bearer)"
            case .wrongPath(let path): "no protocol at \"\(path.prefix(80))\" (the agent speaks carte.agent/1 at /carte.agent/1, and pairs at /carte.agent/1/pair)"
            case .tooManyConnections(let limit): "too many connections (at most \(limit))"
            }
        }

        /// A stable code for logs and tests.
        public var code: String {
            switch self {
            case .hostNotAllowed: "host-not-allowed"
            case .originNotAllowed: "origin-not-allowed"
            case .malformedOrigin: "malformed-origin"
            case .tokenRequired: "token-required"
            case .wrongPath: "wrong-path"
            case .tooManyConnections: "too-many-connections"
            }
        }
    }

    /// Decides on an upgrade request from its `Host` and `Origin` headers (every value of each) and its
    /// `Authorization` header.
    public func admit(hosts: [String], origins: [String], authorization: [String], pairing: Bool = false) -> Result<Caller, Refusal> {
        guard hosts.count == 1, let host = hosts.first, isOwn(host: host) else { return .failure(.hostNotAllowed(hosts.first)) }
        if origins.isEmpty {
            guard authorization.count == 1, let value = authorization.first, value.hasPrefix("Bearer "),
                  constantTimeEqual(Array(value.dropFirst("Bearer ".count).utf8), Array(token.utf8)) else { return .failure(.tokenRequired) }
            return .success(.localProgram)
        }
        guard origins.count == 1, let raw = origins.first, let origin = AgentAccess.normalise(origin: raw) else {
            return .failure(.malformedOrigin(origins.joined(separator: ", ")))
        }
        if allows(origin) { return .success(.page(origin: origin)) }
        return pairing ? .success(.pairing(origin: origin)) : .failure(.originNotAllowed(origin))
    }

    /// Whether `host` (a `Host` header) is this agent: a loopback name with the agent's port.
    public func isOwn(host: String) -> Bool { AgentAccess.isLoopback(host: host, port: port) }

    /// Whether `host` (a `Host` header) names this machine's loopback (`127.0.0.1`, `[::1]`,
    /// `localhost`) with `port`: what every listener of the agent, the demo page's too, accepts.
    public static func isLoopback(host: String, port: Int) -> Bool {
        ["127.0.0.1:\(port)", "[::1]:\(port)", "localhost:\(port)"].contains(host.lowercased())
    }

    /// `scheme://host[:port]` in lower case, the default port dropped (`https://x:443` = `https://x`);
    /// `nil` for anything else (a path, user info, `null`, a non-http scheme, a bad port).
    public static func normalise(origin text: String) -> String? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let scheme: String
        if t.hasPrefix("http://") { scheme = "http" } else if t.hasPrefix("https://") { scheme = "https" } else { return nil }
        let rest = t.dropFirst(scheme.count + 3)
        guard !rest.isEmpty, !rest.contains(where: { "/?#@ \\".contains($0) }) else { return nil }
        var host = Substring(rest)
        var port: Int? = nil
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[...close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        }
        // A name or IPv4 address: letters, digits, `-` and `.`; an IPv6 address: in brackets, hex digits,
        // `:` and `.` (a `:` anywhere else would be read as the port's on the next normalisation).
        let isIPv6 = host.hasPrefix("[")
        let inner = isIPv6 ? host.dropFirst().dropLast() : host
        guard !inner.isEmpty, inner.allSatisfy({ c in
            c.isASCII && (isIPv6 ? (c.isHexDigit || c == ":" || c == ".") : (c.isLetter || c.isNumber || c == "-" || c == "."))
        }) else { return nil }
        if let p = port, (scheme == "http" && p == 80) || (scheme == "https" && p == 443) { port = nil }
        return "\(scheme)://\(host)" + (port.map { ":\($0)" } ?? "")
    }

    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !b.isEmpty else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
