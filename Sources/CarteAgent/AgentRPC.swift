import CarteCore
import CarteCPS
public import CarteKit
import Foundation

/// The errors of protocol `carte.agent/1`: JSON-RPC 2.0's own codes and the agent's, each stable
/// (docs/agent.md lists them). The message is for people; pages act on `code` and `data.kind`.
public struct AgentError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The JSON-RPC error code.
    public var code: Int
    /// A stable name of the case (`no-reader`, `pin-refused`…).
    public var kind: String
    /// What happened, safe to show (never a PIN, a token or a NIR).
    public var message: String
    /// The tries left, for `pin-refused`.
    public var triesLeft: Int?

    public var description: String { "\(kind) (\(code)): \(message)" }

    /// An error with its code, kind and message.
    public init(code: Int, kind: String, message: String, triesLeft: Int? = nil) {
        self.code = code
        self.kind = kind
        self.message = message
        self.triesLeft = triesLeft
    }

    // JSON-RPC 2.0.
    /// The frame is not JSON.
    public static func parse(_ why: String) -> AgentError { AgentError(code: -32700, kind: "parse-error", message: why) }
    /// The JSON is not a JSON-RPC 2.0 request.
    public static func invalidRequest(_ why: String) -> AgentError { AgentError(code: -32600, kind: "invalid-request", message: why) }
    /// No such method.
    public static func methodNotFound(_ name: String) -> AgentError { AgentError(code: -32601, kind: "method-not-found", message: "no method \"\(name.prefix(60))\"") }
    /// The parameters are wrong.
    public static func invalidParams(_ why: String) -> AgentError { AgentError(code: -32602, kind: "invalid-params", message: why) }
    // The agent's.
    /// No reader, or no reader of that name.
    public static func noReader(_ why: String) -> AgentError { AgentError(code: 1001, kind: "no-reader", message: why) }
    /// No card of the kind wanted.
    public static func noCard(_ why: String) -> AgentError { AgentError(code: 1002, kind: "no-card", message: why) }
    /// The card refused the PIN; `triesLeft` tries remain.
    public static func pinRefused(triesLeft: Int) -> AgentError {
        AgentError(code: 1003, kind: "pin-refused", message: "the card refused the PIN: \(triesLeft) tr\(triesLeft == 1 ? "y" : "ies") left", triesLeft: triesLeft)
    }
    /// The PIN (or the PUK) is blocked.
    public static func blocked(_ why: String) -> AgentError { AgentError(code: 1004, kind: "blocked", message: why) }
    /// The operation took too long.
    public static func timeout(_ why: String) -> AgentError { AgentError(code: 1005, kind: "timeout", message: why) }
    /// The holder cancelled on the PIN pad, or the connection went away.
    public static func cancelled(_ why: String) -> AgentError { AgentError(code: 1006, kind: "cancelled", message: why) }
    /// A page on the pairing path asked for more than a pairing code: its origin is not allowed yet.
    public static func notAllowed(_ origin: String) -> AgentError {
        AgentError(code: 1007, kind: "origin-not-allowed", message: "\(origin) is not allowed yet: pair it (pair.request, then carte agent pair CODE)")
    }
    /// Another operation holds that card.
    public static func busy(_ why: String) -> AgentError { AgentError(code: 1008, kind: "busy", message: why) }
    /// The card or the reader failed (removed, mute, unreadable, refused the operation).
    public static func card(_ why: String) -> AgentError { AgentError(code: 1009, kind: "card-error", message: why) }
    /// The appli carte Vitale token was refused.
    public static func apcv(_ why: String) -> AgentError { AgentError(code: 1010, kind: "apcv-refused", message: why) }
    /// Too many messages.
    public static func rateLimited(_ why: String) -> AgentError { AgentError(code: 1011, kind: "rate-limited", message: why) }
    /// The reader or card cannot do it (no PIN pad, a card that does not sign).
    public static func unsupported(_ why: String) -> AgentError { AgentError(code: 1012, kind: "unsupported", message: why) }

    /// The agent's error for a CarteKit failure.
    public init(_ error: CarteKitError) {
        switch error {
        case .noSuchReader: self = .noReader(error.description)
        case .noCard, .wrongCard, .noReaderPair: self = .noCard(error.description)
        case .timeout: self = .timeout(error.description)
        case .cancelled: self = .cancelled(error.description)
        case .card(let e):
            switch e {
            case .noSuchReader, .readerUnavailable: self = .noReader(e.description)
            case .noCard: self = .noCard(e.description)
            case .cancelled: self = .cancelled(e.description)
            case .sharingViolation: self = .busy(e.description)
            default: self = .card(e.description)
            }
        case .vitale: self = .card(error.description)
        case .apcv: self = .apcv(error.description)
        case .cpx(let e):
            switch e {
            case .wrongPIN(_, let tries): self = .pinRefused(triesLeft: tries)
            case .pinBlocked, .pukBlocked: self = .blocked(e.description)
            case .invalidPINFormat: self = .invalidParams(e.description)
            case .unsupported: self = .unsupported(e.description)
            case .pinPad(let status):
                switch status {
                case .cancelled: self = .cancelled(e.description)
                case .timeout: self = .timeout(e.description)
                default: self = .card(e.description)
                }
            default: self = .card(e.description)
            }
        }
    }

    /// The JSON-RPC `error` member.
    var json: [String: Any] {
        var data: [String: Any] = ["kind": kind]
        if let triesLeft { data["triesLeft"] = triesLeft }
        return ["code": code, "message": message, "data": data]
    }
}

/// One JSON-RPC 2.0 request, checked.
package struct AgentRequest: @unchecked Sendable {
    /// The id (a string, a number or null), `nil` for a notification (no answer).
    package var id: Any?
    package var method: String
    package var params: [String: Any]

    /// Parses a text frame. Throws the error to answer with (and the id, when it could be read).
    package static func parse(_ text: String) throws(AgentRequestFailure) -> AgentRequest {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) } catch {
            throw AgentRequestFailure(id: NSNull(), error: .parse("the message is not JSON"))
        }
        if object is [Any] { throw AgentRequestFailure(id: NSNull(), error: .invalidRequest("batches are not supported: send one request per message")) }
        guard let dict = object as? [String: Any] else { throw AgentRequestFailure(id: NSNull(), error: .invalidRequest("a request is a JSON object")) }
        let id = dict["id"]
        if let id, !(id is String || id is NSNull || (id is NSNumber && !isJSONBoolean(id))) {
            throw AgentRequestFailure(id: NSNull(), error: .invalidRequest("id must be a string, a number or null"))
        }
        let answerID: Any = id ?? NSNull()
        guard dict["jsonrpc"] as? String == "2.0" else { throw AgentRequestFailure(id: answerID, error: .invalidRequest("jsonrpc must be \"2.0\"")) }
        guard let method = dict["method"] as? String, !method.isEmpty else { throw AgentRequestFailure(id: answerID, error: .invalidRequest("method must be a non-empty string")) }
        var params: [String: Any] = [:]
        if let p = dict["params"] {
            guard let object = p as? [String: Any] else { throw AgentRequestFailure(id: answerID, error: .invalidParams("params must be an object (by name)")) }
            params = object
        }
        return AgentRequest(id: id, method: method, params: params)
    }

    /// A string parameter, `nil` when absent; a parameter of another type is an error.
    package func string(_ name: String, maxLength: Int = 256) throws(AgentError) -> String? {
        guard let value = params[name], !(value is NSNull) else { return nil }
        guard let s = value as? String else { throw .invalidParams("\(name) must be a string") }
        guard s.utf8.count <= maxLength else { throw .invalidParams("\(name) is longer than \(maxLength) bytes") }
        return s
    }

    /// A boolean parameter, `false` when absent.
    package func bool(_ name: String) throws(AgentError) -> Bool {
        guard let value = params[name], !(value is NSNull) else { return false }
        guard let n = value as? NSNumber, isJSONBoolean(n) else { throw .invalidParams("\(name) must be true or false") }
        return n.boolValue
    }

    /// Refuses parameters the method does not know (a typo must not be ignored).
    package func only(_ names: Set<String>) throws(AgentError) {
        if let unknown = params.keys.sorted().first(where: { !names.contains($0) }) {
            throw .invalidParams("unknown parameter \"\(unknown.prefix(40))\"" + (names.isEmpty ? " (this method takes none)" : " (known: \(names.sorted().joined(separator: ", ")))"))
        }
    }
}

/// Whether a value JSONSerialization produced is `true` or `false` (a boolean NSNumber, whose
/// Objective-C type is `c`; numbers from JSON are `i`, `q` or `d`).
func isJSONBoolean(_ value: Any) -> Bool {
    (value as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false
}

/// A request that cannot be served, with the id to answer.
package struct AgentRequestFailure: Error, @unchecked Sendable {
    package var id: Any
    package var error: AgentError
}

/// JSON-RPC 2.0 messages the agent sends.
package enum AgentMessage {
    /// An answer: `result` is a JSON text (already encoded).
    package static func result(id: Any, json: String) -> String { result(idJSON: encode(id), json: json) }

    /// An answer whose id is already JSON text.
    package static func result(idJSON: String, json: String) -> String {
        "{\"id\":\(idJSON),\"jsonrpc\":\"2.0\",\"result\":\(json)}"
    }

    /// An error answer.
    package static func error(id: Any, _ error: AgentError) -> String { self.error(idJSON: encode(id), error) }

    /// An error answer whose id is already JSON text.
    package static func error(idJSON: String, _ error: AgentError) -> String {
        "{\"error\":\(encode(error.json)),\"id\":\(idJSON),\"jsonrpc\":\"2.0\"}"
    }

    /// A notification (an event).
    package static func notification(method: String, json: String) -> String {
        "{\"jsonrpc\":\"2.0\",\"method\":\(encode(method)),\"params\":\(json)}"
    }

    /// Any JSON value as compact text, keys sorted.
    package static func encode(_ value: Any) -> String {
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "null"
    }
}
