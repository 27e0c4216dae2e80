import CarteAgent
import Foundation

/// Who may use the console: the agent's loopback rules (docs/agent.md) plus a per-run key.
///
/// - The listener binds 127.0.0.1 only, and every request's `Host` must be a loopback name with the
///   console's port (a DNS-rebinding page carries its own name: 403).
/// - Loopback is shared by every user of the machine, so the console also wants its key: the address
///   `carte sim console` prints carries it once (`/?key=…`), the page then holds it in a cookie that is
///   `HttpOnly` and `SameSite=Strict` (another site's page never sends it).
/// - An action (`POST`) must come from the console's own origin (`Origin` header) with a JSON body, so
///   a form or a script of another page cannot drive the readers even with the cookie.
public struct ConsoleAccess: Sendable {
    /// The port the console listens on.
    public let port: Int
    /// The key (32 hexadecimal digits, random per run unless given).
    public let key: String
    /// The cookie's name.
    public static let cookie = "carte-console"

    /// The rules for a console on `port` with `key`.
    public init(port: Int, key: String) {
        self.port = port
        self.key = key
    }

    /// A new random key.
    public static func randomKey() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Why a request is refused.
    public enum Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        /// The `Host` header is missing, repeated or not this console on loopback.
        case hostNotAllowed(String)
        /// Neither the key nor the cookie.
        case noKey
        /// An action without this console's `Origin`.
        case originNotAllowed(String)
        /// An action whose body is not declared JSON.
        case notJSON

        /// A stable code for logs and pages.
        public var code: String {
            switch self {
            case .hostNotAllowed: return "host-not-allowed"
            case .noKey: return "no-key"
            case .originNotAllowed: return "origin-not-allowed"
            case .notJSON: return "not-json"
            }
        }

        public var description: String {
            switch self {
            case .hostNotAllowed(let h): return "Host \(h.isEmpty ? "(none)" : h) is not this console on loopback"
            case .noKey: return "this console wants its key: open the address carte sim console printed (it ends with ?key=…)"
            case .originNotAllowed(let o): return "actions come from the console's own page, not from \(o.isEmpty ? "a request without Origin" : o)"
            case .notJSON: return "an action's body is JSON (Content-Type: application/json)"
            }
        }
    }

    /// Checks the `Host` header(s).
    public func checkHost(_ hosts: [String]) -> Refusal? {
        guard hosts.count == 1, AgentAccess.isLoopback(host: hosts[0], port: port) else { return .hostNotAllowed(hosts.joined(separator: ", ")) }
        return nil
    }

    /// Whether the `Cookie` header(s) carry the key.
    public func hasKey(cookies: [String]) -> Bool {
        for header in cookies {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if parts.count == 2, parts[0] == ConsoleAccess.cookie, ConsoleAccess.equal(parts[1], key) { return true }
            }
        }
        return false
    }

    /// Whether `query` (the part after `?`) carries `key=<the key>`.
    public func hasKey(query: String) -> Bool {
        query.split(separator: "&").contains { item in
            let parts = item.split(separator: "=", maxSplits: 1)
            return parts.count == 2 && parts[0] == "key" && ConsoleAccess.equal(String(parts[1]), key)
        }
    }

    /// Checks an action's `Origin` (this console on loopback) and `Content-Type` (JSON).
    public func checkAction(origins: [String], contentTypes: [String]) -> Refusal? {
        guard origins.count == 1, let origin = AgentAccess.normalise(origin: origins[0]), origin.hasPrefix("http://"),
              AgentAccess.isLoopback(host: String(origin.dropFirst("http://".count)), port: port) else {
            return .originNotAllowed(origins.joined(separator: ", "))
        }
        guard contentTypes.count == 1, contentTypes[0].lowercased().split(separator: ";").first?.trimmingCharacters(in: .whitespaces) == "application/json" else {
            return .notJSON
        }
        return nil
    }

    /// The `Set-Cookie` value that gives a page the key.
    public var setCookie: String { "\(ConsoleAccess.cookie)=\(key); Path=/; HttpOnly; SameSite=Strict" }

    /// Compares in a time that does not depend on where the texts differ.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
