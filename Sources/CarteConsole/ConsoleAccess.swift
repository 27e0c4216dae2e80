import CarteAgent
import Foundation

/// Who may use the console: the agent's loopback rules (docs/agent.md) plus a per-run key.
///
/// - The listener binds 127.0.0.1 only, and every request's `Host` must be a loopback name with the
///   console's port (a DNS-rebinding page carries its own name: 403).
/// - Loopback is shared by every user of the machine, so the API (`/api/…`) also wants the run's key
///   in the ``header`` header. The address `carte sim console` prints carries it in its fragment
///   (`/#key=…`), which browsers never send to a server; the page keeps it in its tab's session
///   storage. No cookie: cookies are shared by every port of a host, so another local server (another
///   user's) would receive one.
/// - An action (`POST`) must also come from the console's own origin (`Origin` header) with a JSON
///   body; a custom header and JSON make any other page's request need a CORS preflight, which the
///   console never grants.
/// - The page's own files (HTML, CSS, script) hold no data and are served to any request with the
///   right `Host`.
public struct ConsoleAccess: Sendable {
    /// The port the console listens on.
    public let port: Int
    /// The key (32 hexadecimal digits, random per run unless given).
    public let key: String
    /// The request header that carries the key.
    public static let header = "X-CarteKit-Console-Key"

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
        /// An API request without the run's key.
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
            case .noKey: return "this console wants its key: open the address carte sim console printed (it ends with #key=…)"
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

    /// Whether the ``header`` header(s) carry the key (exactly one, equal to it).
    public func hasKey(_ values: [String]) -> Bool {
        values.count == 1 && ConsoleAccess.equal(values[0].trimmingCharacters(in: .whitespaces), key)
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

    /// Compares in a time that does not depend on where the texts differ.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
