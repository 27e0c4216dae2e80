/// A response APDU that is too short to hold a status word.
public enum ResponseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The response has `count` bytes (fewer than the two status bytes).
    case tooShort(count: Int)

    public var description: String {
        switch self {
        case .tooShort(let count): return "response of \(count) byte(s) has no status word (2 bytes needed)"
        }
    }
}

/// An ISO/IEC 7816-4 response APDU: optional data followed by the status word SW1-SW2.
public struct ResponseAPDU: Hashable, Sendable {
    /// The response data (may be empty).
    public var data: [UInt8]
    /// The status word.
    public var statusWord: StatusWord

    /// Creates a response from its parts.
    public init(data: [UInt8] = [], statusWord: StatusWord) {
        self.data = data
        self.statusWord = statusWord
    }

    /// Decodes a response: everything but the last two bytes is data.
    /// - Throws: ``ResponseError/tooShort(count:)`` when fewer than 2 bytes are given.
    public init(bytes: some Collection<UInt8>) throws(ResponseError) {
        let b = Array(bytes)
        guard b.count >= 2 else { throw .tooShort(count: b.count) }
        self.data = Array(b[..<(b.count - 2)])
        self.statusWord = StatusWord(sw1: b[b.count - 2], sw2: b[b.count - 1])
    }

    /// The data followed by SW1 SW2.
    public func encoded() -> [UInt8] {
        var out = data
        out.append(statusWord.sw1)
        out.append(statusWord.sw2)
        return out
    }

    /// Shorthand for `statusWord.isSuccess`.
    public var isSuccess: Bool { statusWord.isSuccess }
}

extension ResponseAPDU: CustomStringConvertible {
    public var description: String {
        data.isEmpty ? statusWord.description : data.hexString() + " " + statusWord.description
    }
}
