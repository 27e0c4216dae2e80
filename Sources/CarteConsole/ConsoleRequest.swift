import CarteCore
public import CarteEmulator
import Foundation

/// An action the console page asks for (`POST /api/ACTION` with a JSON object), decoded and checked
/// before anything reaches the simulator daemon. Untrusted input: every field is checked for its type
/// and range, and a keypad's digits are never kept in an error or a log.
public enum ConsoleRequest: Sendable, Equatable {
    /// Insert a bundled image (`bundled:PATH`) into the slot named `slot`.
    case insert(slot: String, image: String)
    /// Insert an image the page uploaded (its YAML text, as read from the tester's file `fileName`).
    case upload(slot: String, fileName: String, text: String)
    /// Remove the card of `slot`.
    case remove(slot: String)
    /// Arm a fault (`carte sim fault`'s names, `clear`, or a reader's `unplug`/`plug`).
    case fault(slot: String, name: String, count: Int?, milliseconds: Int?, statusWord: String?)
    /// Type on the slot's PIN pad: digits (validated), cancel or let the prompt time out.
    case keypad(slot: String, entries: [KeypadEntry])

    /// The actions, as the paths name them.
    public static let actions = ["insert", "remove", "fault", "keypad"]
    /// The largest body accepted (an uploaded image is at most 1 MiB of YAML, escaped in JSON).
    public static let maximumBody = 3 * 1024 * 1024
    /// The longest slot name accepted.
    static let maximumName = 512

    /// Decodes the body of `POST /api/<action>`.
    public static func decode(action: String, body: [UInt8]) throws(ConsoleRequestError) -> ConsoleRequest {
        guard actions.contains(action) else { throw .unknownAction(String(action.prefix(64))) }
        guard body.count <= maximumBody else { throw .tooLarge(body.count) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)), let fields = object as? [String: Any] else { throw .notAnObject }
        func text(_ key: String, max: Int = maximumName) throws(ConsoleRequestError) -> String {
            guard let value = fields[key] else { throw .missing(key) }
            guard let s = value as? String, !s.isEmpty else { throw .invalid(key, "a non-empty text") }
            guard s.utf8.count <= max else { throw .invalid(key, "at most \(max) bytes") }
            return s
        }
        func number(_ key: String, _ range: ClosedRange<Int>) throws(ConsoleRequestError) -> Int? {
            guard let value = fields[key], !(value is NSNull) else { return nil }
            // JSON numbers only, whole: "3" and 1.5 are refused.
            guard !(value is String), let whole = value as? Int else { throw .invalid(key, "a whole number") }
            guard range.contains(whole) else { throw .invalid(key, "\(range.lowerBound) to \(range.upperBound)") }
            return whole
        }
        let slot = try text("slot")
        switch action {
        case "insert":
            if fields["upload"] != nil {
                guard let upload = fields["upload"] as? [String: Any] else { throw .invalid("upload", "an object with \"name\" and \"text\"") }
                guard let name = upload["name"] as? String, !name.isEmpty, name.utf8.count <= 255 else { throw .invalid("upload.name", "the file's name (1 to 255 bytes)") }
                guard let content = upload["text"] as? String else { throw .invalid("upload.text", "the file's text") }
                guard content.utf8.count <= 1 << 20 else { throw .invalid("upload.text", "a card image of at most 1 MiB") }
                return .upload(slot: slot, fileName: name, text: content)
            }
            let image = try text("image")
            guard image.hasPrefix("bundled:") else { throw .invalid("image", "a bundled image (bundled:PATH); upload a file with \"upload\"") }
            return .insert(slot: slot, image: image)
        case "remove":
            return .remove(slot: slot)
        case "fault":
            let name = try text("fault", max: 32)
            let count = try number("count", 1...10_000)
            let ms = try number("ms", 1...60_000)
            var sw: String? = nil
            if let value = fields["sw"], !(value is NSNull) {
                guard let s = value as? String, s.count == 4, s.allSatisfy(\.isHexDigit) else { throw .invalid("sw", "a status word in 4 hexadecimal digits (6F00)") }
                sw = s.uppercased()
            }
            let known = SlotFault.names + ["clear", "unplug", "plug"]
            guard known.contains(name) else { throw .invalid("fault", "one of \(known.joined(separator: ", "))") }
            if name == "slow" && ms == nil { throw .missing("ms") }
            if name == "sw" && sw == nil { throw .missing("sw") }
            return .fault(slot: slot, name: name, count: count, milliseconds: ms, statusWord: sw)
        default:  // keypad
            guard let list = fields["entries"] as? [[String: Any]], !list.isEmpty, list.count <= 8 else {
                throw .invalid("entries", "a list of 1 to 8 objects: {\"digits\": \"…\"}, {\"cancel\": true} or {\"timeout\": true}")
            }
            var entries: [KeypadEntry] = []
            for (i, item) in list.enumerated() {
                if let digits = item["digits"] {
                    // The digits are checked, never echoed: an error names the entry, not its content.
                    guard let s = digits as? String, let d = try? KeypadDigits(s) else {
                        throw .invalid("entries[\(i)].digits", "1 to 16 decimal digits")
                    }
                    entries.append(.digits(d, after: .zero))
                } else if item["cancel"] as? Bool == true {
                    entries.append(.cancel(after: .zero))
                } else if item["timeout"] as? Bool == true {
                    entries.append(.timeout)
                } else {
                    throw .invalid("entries[\(i)]", "{\"digits\": \"…\"}, {\"cancel\": true} or {\"timeout\": true}")
                }
            }
            return .keypad(slot: slot, entries: entries)
        }
    }

    /// The slot the action concerns.
    public var slot: String {
        switch self {
        case .insert(let s, _), .upload(let s, _, _), .remove(let s), .fault(let s, _, _, _, _), .keypad(let s, _): return s
        }
    }
}

/// A console request that cannot be decoded: what is wrong, and where.
public enum ConsoleRequestError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The path names no action (`/api/<action>`).
    case unknownAction(String)
    /// The body is larger than ``ConsoleRequest/maximumBody`` bytes.
    case tooLarge(Int)
    /// The body is not a JSON object.
    case notAnObject
    /// A required field is absent.
    case missing(String)
    /// A field has the wrong type or an unacceptable value (`field`, what it must be).
    case invalid(String, String)

    public var description: String {
        switch self {
        case .unknownAction(let a): return "no action \"\(a)\" (\(ConsoleRequest.actions.joined(separator: ", ")))"
        case .tooLarge(let n): return "the request is \(n) bytes, more than the \(ConsoleRequest.maximumBody) accepted"
        case .notAnObject: return "the request body is not a JSON object"
        case .missing(let f): return "\"\(f)\" is missing"
        case .invalid(let f, let what): return "\"\(f)\" must be \(what)"
        }
    }
}
