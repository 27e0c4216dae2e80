package import Foundation

/// Encodes a value to JSON as docs/json.md promises: every field its type declares is written, an
/// absent optional as `null` (`JSONEncoder` leaves such fields out, so a reader could not tell "not
/// known" from "not in this version"). Keys sorted, slashes unescaped; pretty-printed for people
/// (`carte … --json`), compact on the wire (the simulated services).
package enum NullKeepingJSON {
    /// The JSON bytes of `value`.
    package static func data<T: Encodable>(_ value: T, pretty: Bool = true) throws -> Data {
        let root = Node()
        try value.encode(to: TreeEncoder(node: root, path: []))
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]
        if pretty { options.insert(.prettyPrinted) }
        return try JSONSerialization.data(withJSONObject: root.foundation, options: options)
    }

    /// The JSON text of `value`, pretty-printed.
    package static func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try data(value), as: UTF8.self)
    }
}

/// A JSON value being built; containers hold their node and fill it in place.
private final class Node {
    enum Kind {
        case unset, null, bool(Bool), number(NSNumber), string(String), array([Node]), object([String: Node])
    }
    var kind: Kind = .unset

    var foundation: Any {
        switch kind {
        case .unset: return [String: Any]()
        case .null: return NSNull()
        case .bool(let b): return b
        case .number(let n): return n
        case .string(let s): return s
        case .array(let a): return a.map(\.foundation)
        case .object(let o): return o.mapValues(\.foundation)
        }
    }

    /// This node as an object (made one if it is not yet). The members are taken out of `kind`
    /// before the insertion, so it happens in place rather than on a copy (linear, not quadratic).
    func set(_ key: String, _ child: Node) {
        var o: [String: Node] = [:]
        if case .object(let members) = kind { o = members }
        kind = .unset
        o[key] = child
        kind = .object(o)
    }

    /// This node as an array (made one if it is not yet), `child` appended in place.
    func append(_ child: Node) {
        var a: [Node] = []
        if case .array(let elements) = kind { a = elements }
        kind = .unset
        a.append(child)
        kind = .array(a)
    }

    var count: Int {
        if case .array(let a) = kind { return a.count }
        return 0
    }

    /// Writes `value`: a scalar directly, anything else through its own `encode(to:)`.
    func assign<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
        switch value {
        case let v as String: kind = .string(v)
        case let v as Bool: kind = .bool(v)
        case let v as Double: kind = .number(NSNumber(value: v))
        case let v as Float: kind = .number(NSNumber(value: v))
        case let v as Int: kind = .number(NSNumber(value: v))
        case let v as Int8: kind = .number(NSNumber(value: v))
        case let v as Int16: kind = .number(NSNumber(value: v))
        case let v as Int32: kind = .number(NSNumber(value: v))
        case let v as Int64: kind = .number(NSNumber(value: v))
        case let v as UInt: kind = .number(NSNumber(value: v))
        case let v as UInt8: kind = .number(NSNumber(value: v))
        case let v as UInt16: kind = .number(NSNumber(value: v))
        case let v as UInt32: kind = .number(NSNumber(value: v))
        case let v as UInt64: kind = .number(NSNumber(value: v))
        default: try value.encode(to: TreeEncoder(node: self, path: path))
        }
    }
}

private struct TreeEncoder: Encoder {
    let node: Node
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: Any] = [:]

    init(node: Node, path: [any CodingKey]) {
        self.node = node
        self.codingPath = path
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.kind {} else { node.kind = .object([:]) }
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = node.kind {} else { node.kind = .array([]) }
        return UnkeyedContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(node: node, codingPath: codingPath) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [any CodingKey]

    private func child(_ key: Key) -> Node {
        let c = Node()
        node.set(key.stringValue, c)
        return c
    }

    mutating func encodeNil(forKey key: Key) throws { child(key).kind = .null }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(key).assign(value, path: codingPath + [key]) }

    // The point of this encoder: an absent optional is written as null, not left out.
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try encodeIfPresent(value as Bool??, key) }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try encodeIfPresent(value as String??, key) }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try encodeIfPresent(value as Double??, key) }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try encodeIfPresent(value as Float??, key) }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try encodeIfPresent(value as Int??, key) }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try encodeIfPresent(value as Int8??, key) }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try encodeIfPresent(value as Int16??, key) }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try encodeIfPresent(value as Int32??, key) }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try encodeIfPresent(value as Int64??, key) }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try encodeIfPresent(value as UInt??, key) }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try encodeIfPresent(value as UInt8??, key) }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try encodeIfPresent(value as UInt16??, key) }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try encodeIfPresent(value as UInt32??, key) }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try encodeIfPresent(value as UInt64??, key) }

    /// One implementation for the scalar overloads above.
    private mutating func encodeIfPresent<T: Encodable>(_ value: T??, _ key: Key) throws {
        if let inner = value, let value = inner { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let c = child(key)
        c.kind = .object([:])
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: c, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let c = child(key)
        c.kind = .array([])
        return UnkeyedContainer(node: c, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        // JSONEncoder's key for a superclass's fields (no Key case needs to exist for it).
        let c = Node()
        node.set("super", c)
        return TreeEncoder(node: c, path: codingPath)
    }
    mutating func superEncoder(forKey key: Key) -> any Encoder { TreeEncoder(node: child(key), path: codingPath + [key]) }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    var count: Int { node.count }

    private func next() -> Node {
        let c = Node()
        node.append(c)
        return c
    }

    mutating func encodeNil() throws { next().kind = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try next().assign(value, path: codingPath) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let c = next()
        c.kind = .object([:])
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(node: c, codingPath: codingPath))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let c = next()
        c.kind = .array([])
        return UnkeyedContainer(node: c, codingPath: codingPath)
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(node: next(), path: codingPath) }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    mutating func encodeNil() throws { node.kind = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.assign(value, path: codingPath) }
}
