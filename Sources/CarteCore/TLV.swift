/// A malformed BER-TLV encoding. Every case names the absolute byte offset of the problem.
public enum TLVError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A multi-byte tag is cut short at `offset`.
    case truncatedTag(offset: Int)
    /// A tag longer than 4 bytes starts at `offset`.
    case tagTooLong(offset: Int)
    /// The length field at `offset` is cut short.
    case truncatedLength(offset: Int)
    /// The length byte `80` (indefinite form) at `offset`: not allowed in ISO/IEC 7816-4 BER-TLV.
    case indefiniteLength(offset: Int)
    /// A long-form length with more than 4 length bytes (or more than the platform can hold) at `offset`.
    case lengthTooLong(offset: Int)
    /// The value announced by the length at `offset` needs `declared` bytes, only `available` remain
    /// (inside the enclosing object, for nested ones).
    case truncatedValue(offset: Int, declared: Int, available: Int)
    /// Nesting deeper than the decoder allows, at `offset` (protects against hostile input).
    case nestingTooDeep(offset: Int)
    /// An invalid tag (`00` or `FF` as first byte where padding is not allowed) at `offset`.
    case invalidTag(offset: Int)

    public var description: String {
        switch self {
        case .truncatedTag(let o): return "TLV tag truncated at offset \(o)"
        case .tagTooLong(let o): return "TLV tag at offset \(o) is longer than 4 bytes"
        case .truncatedLength(let o): return "TLV length truncated at offset \(o)"
        case .indefiniteLength(let o): return "TLV indefinite length (80) at offset \(o) is not allowed"
        case .lengthTooLong(let o): return "TLV length at offset \(o) uses more than 4 length bytes"
        case .truncatedValue(let o, let d, let a):
            return "TLV value at offset \(o) needs \(d) byte(s) but only \(a) remain"
        case .nestingTooDeep(let o): return "TLV nesting too deep at offset \(o)"
        case .invalidTag(let o): return "invalid TLV tag at offset \(o)"
        }
    }

    /// The absolute byte offset of the problem.
    public var offset: Int {
        switch self {
        case .truncatedTag(let o), .tagTooLong(let o), .truncatedLength(let o), .indefiniteLength(let o),
            .lengthTooLong(let o), .truncatedValue(let o, _, _), .nestingTooDeep(let o), .invalidTag(let o):
            return o
        }
    }
}

/// A BER-TLV tag (ISO/IEC 7816-4 §6.3, ITU-T X.690), up to 4 bytes, stored big-endian in `rawValue`
/// (so `5F37` is `0x5F37` and `65` is `0x65`).
public struct TLVTag: RawRepresentable, Hashable, Sendable, Comparable, ExpressibleByIntegerLiteral {
    /// The tag bytes, big-endian (`0x5F37`).
    public let rawValue: UInt32
    /// Creates a tag from its big-endian value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Creates a tag from a literal such as `0x5F37`.
    public init(integerLiteral value: UInt32) { self.rawValue = value }

    /// The tag bytes as encoded.
    public var bytes: [UInt8] {
        var v = rawValue
        var out: [UInt8] = []
        repeat {
            out.insert(UInt8(v & 0xFF), at: 0)
            v >>= 8
        } while v != 0
        return out
    }

    /// Whether the tag's first byte has the constructed bit (`b6`) set.
    public var isConstructed: Bool { bytes[0] & 0x20 != 0 }

    /// The class bits of the first byte: 0 universal, 1 application, 2 context-specific, 3 private.
    public var tagClass: Int { Int(bytes[0] >> 6) }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// Whether `bytes` form a valid tag encoding (continuation bits consistent with the length).
    public static func isValidEncoding(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first, !bytes.isEmpty, bytes.count <= 4 else { return false }
        if first & 0x1F != 0x1F { return bytes.count == 1 }
        guard bytes.count >= 2 else { return false }
        for (i, b) in bytes.dropFirst().enumerated() {
            let last = i == bytes.count - 2
            if last != (b & 0x80 == 0) { return false }
        }
        return true
    }
}

extension TLVTag: CustomStringConvertible {
    public var description: String { bytes.hexString(separator: "") }
}

/// A BER-TLV data object: a tag, and either a primitive value or nested objects.
///
/// Decoding is eager and keeps each object's absolute ``offset`` so errors and reports can point at
/// the bytes. ``decode(_:allowPadding:)`` tolerates `00` (and `FF`) padding between and after
/// objects, as found in Carte Vitale files.
public struct TLV: Hashable, Sendable {
    /// The tag.
    public var tag: TLVTag
    /// The value bytes, shared with the buffer the object was decoded from: decoding copies nothing
    /// per object (a card file's hundreds of objects were as many allocations), ``value`` copies on demand.
    private var storage: ArraySlice<UInt8>
    /// The value bytes (for constructed objects, the encoding of ``children``).
    public var value: [UInt8] { Array(storage) }
    /// The number of value bytes (without copying them).
    public var valueCount: Int { storage.count }
    /// The value bytes without a copy (a slice of the decoded buffer: its indices are not 0-based).
    public var valueBytes: ArraySlice<UInt8> { storage }
    /// The nested objects of a constructed tag (`nil` for a primitive one).
    public private(set) var children: [TLV]?
    /// The absolute offset of the tag's first byte in the decoded buffer (0 for built objects).
    public var offset: Int

    /// A primitive object.
    public init(tag: TLVTag, value: [UInt8]) {
        self.tag = tag
        self.storage = value[...]
        self.children = nil
        self.offset = 0
    }

    /// A constructed object built from its children.
    public init(tag: TLVTag, children: [TLV]) {
        self.tag = tag
        self.children = children
        self.storage = children.flatMap { $0.encoded() }[...]
        self.offset = 0
    }

    /// A decoded object whose value is `storage`, a slice of the decoded buffer.
    private init(tag: TLVTag, storage: ArraySlice<UInt8>, offset: Int) {
        self.tag = tag
        self.storage = storage
        self.children = nil
        self.offset = offset
    }

    /// Objects are equal when their tags, values and children are; ``offset`` is ignored.
    public static func == (a: TLV, b: TLV) -> Bool { a.tag == b.tag && a.storage.elementsEqual(b.storage) && a.children == b.children }

    /// Hashes the tag and value (consistent with ``==(_:_:)``).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(tag)
        hasher.combine(storage.count)
        for byte in storage { hasher.combine(byte) }
    }

    /// The maximum nesting depth accepted by the decoder.
    public static let maximumDepth = 32

    /// Decodes a sequence of BER-TLV objects.
    ///
    /// - Parameters:
    ///   - allowPadding: skip `00` and `FF` bytes between and after objects (ISO 7816-4 §6.3 allows
    ///     them before, between and after objects). With `false`, they are ``TLVError/invalidTag(offset:)``.
    ///   - baseOffset: added to every reported offset (when `bytes` is part of a larger buffer).
    /// - Throws: ``TLVError`` with the absolute offset.
    public static func decode(_ bytes: [UInt8], allowPadding: Bool = true, baseOffset: Int = 0) throws(TLVError) -> [TLV] {
        try decode(bytes, range: 0..<bytes.count, allowPadding: allowPadding, baseOffset: baseOffset, depth: 0)
    }

    /// Decodes exactly one object that fills `bytes` (padding allowed after it when `allowPadding`).
    public static func decodeSingle(_ bytes: [UInt8], allowPadding: Bool = true) throws(TLVError) -> TLV? {
        try decode(bytes, allowPadding: allowPadding).first
    }

    private static func decode(_ b: [UInt8], range: Range<Int>, allowPadding: Bool, baseOffset: Int, depth: Int) throws(TLVError) -> [TLV] {
        guard depth <= maximumDepth else { throw .nestingTooDeep(offset: baseOffset + range.lowerBound) }
        var result: [TLV] = []
        // Room for the usual object count (a card file's templates hold a few small objects each), so
        // the array does not grow object by object.
        result.reserveCapacity(min(16, range.count / 3 + 1))
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            if b[i] == 0x00 || b[i] == 0xFF {
                if allowPadding { i += 1; continue }
                throw .invalidTag(offset: baseOffset + i)
            }
            let start = i
            // Tag
            var tag = UInt32(b[i])
            i += 1
            if b[start] & 0x1F == 0x1F {
                var count = 1
                while true {
                    guard i < end else { throw .truncatedTag(offset: baseOffset + i) }
                    count += 1
                    guard count <= 4 else { throw .tagTooLong(offset: baseOffset + start) }
                    tag = tag << 8 | UInt32(b[i])
                    let more = b[i] & 0x80 != 0
                    i += 1
                    if !more { break }
                }
            }
            // Length
            guard i < end else { throw .truncatedLength(offset: baseOffset + i) }
            let lengthOffset = i
            var length = 0
            let first = b[i]
            i += 1
            if first < 0x80 {
                length = Int(first)
            } else if first == 0x80 {
                throw .indefiniteLength(offset: baseOffset + lengthOffset)
            } else {
                let n = Int(first & 0x7F)
                guard n <= 4 else { throw .lengthTooLong(offset: baseOffset + lengthOffset) }
                guard i + n <= end else { throw .truncatedLength(offset: baseOffset + lengthOffset) }
                for _ in 0..<n {
                    length = length << 8 | Int(b[i])
                    i += 1
                }
            }
            guard length <= end - i else {
                throw .truncatedValue(offset: baseOffset + lengthOffset, declared: length, available: end - i)
            }
            let valueRange = i..<(i + length)
            var object = TLV(tag: TLVTag(rawValue: tag), storage: b[valueRange], offset: baseOffset + start)
            if b[start] & 0x20 != 0 {
                object.children = try decode(b, range: valueRange, allowPadding: allowPadding, baseOffset: baseOffset, depth: depth + 1)
            }
            result.append(object)
            i = valueRange.upperBound
        }
        return result
    }

    /// The encoded object: tag, minimal-length length field, value.
    public func encoded() -> [UInt8] {
        var out = tag.bytes
        out += TLV.encodeLength(storage.count)
        out += storage
        return out
    }

    /// The minimal BER length encoding of `length`.
    public static func encodeLength(_ length: Int) -> [UInt8] {
        precondition(length >= 0)
        if length < 0x80 { return [UInt8(length)] }
        var bytes: [UInt8] = []
        var v = length
        while v > 0 {
            bytes.insert(UInt8(v & 0xFF), at: 0)
            v >>= 8
        }
        return [0x80 | UInt8(bytes.count)] + bytes
    }

    /// The first direct child with tag `tag`.
    public subscript(tag: TLVTag) -> TLV? { childIndex(tag).map { children![$0] } }

    /// The value bytes of the first direct child with tag `tag`, without copying the child (what a
    /// decoder reading a template's fields needs: no retain of the child's own children).
    public func childValue(_ tag: TLVTag) -> ArraySlice<UInt8>? { childIndex(tag).map { children![$0].storage } }

    /// Where the first direct child with tag `tag` is in ``children``.
    private func childIndex(_ tag: TLVTag) -> Int? {
        guard let children else { return nil }
        for i in children.indices where children[i].tag == tag { return i }
        return nil
    }

    /// Every direct child with tag `tag`.
    public func all(_ tag: TLVTag) -> [TLV] { children?.filter { $0.tag == tag } ?? [] }

    /// Follows a path of tags through nested objects (`[0x65, 0x80]`).
    public func find(path: [TLVTag]) -> TLV? {
        guard let first = path.first else { return self }
        return self[first]?.find(path: Array(path.dropFirst()))
    }

    /// An indented, human-readable dump (one object per line; printable ASCII values shown as text too).
    public func dump(indent: String = "") -> String {
        let value = self.value
        var line = indent + tag.description + " (" + String(value.count) + ")"
        if let children {
            line += "\n" + children.map { $0.dump(indent: indent + "  ") }.joined(separator: "\n")
        } else {
            line += " " + value.hexString()
            if !value.isEmpty, value.allSatisfy({ (0x20...0x7E).contains($0) }) {
                line += "  \"" + String(decoding: value, as: UTF8.self) + "\""
            }
        }
        return line
    }
}
