/// An error found while reading hexadecimal text, such as a command line argument or a script line.
public enum HexError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A character that is neither a hexadecimal digit nor an allowed separator, at `offset`
    /// (a character offset in the text).
    case invalidCharacter(Character, offset: Int)
    /// The text holds an odd number of hexadecimal digits; `offset` is where the lone digit starts.
    case oddNumberOfDigits(offset: Int)

    public var description: String {
        switch self {
        case .invalidCharacter(let character, let offset):
            return "invalid hexadecimal character \"\(character.unicodeScalars.map { $0.escaped(asASCII: true) }.joined())\" at offset \(offset)"
        case .oddNumberOfDigits(let offset):
            return "odd number of hexadecimal digits (lone digit at offset \(offset))"
        }
    }
}

extension Array where Element == UInt8 {
    /// Reads bytes written in hexadecimal, such as `"00 A4 04 00"`, `"00a40400"` or `"00:A4:04:00"`.
    ///
    /// Spaces, tabs, colons, hyphens and newlines separate bytes but are not required; each byte is two digits.
    /// - Throws: ``HexError`` naming the offending character offset.
    public init(hex text: some StringProtocol) throws(HexError) {
        var result: [UInt8] = []
        result.reserveCapacity(text.utf8.count / 2)
        var high: UInt8? = nil
        var highOffset = 0
        var offset = 0
        for character in text {
            defer { offset += 1 }
            if let value = character.hexDigitValue, character.isASCII {
                if let h = high {
                    result.append(h << 4 | UInt8(value))
                    high = nil
                } else {
                    high = UInt8(value)
                    highOffset = offset
                }
                continue
            }
            switch character {
            case " ", "\t", ":", "-", "\n", "\r", "\r\n":
                if high != nil { throw .oddNumberOfDigits(offset: highOffset) }
            default:
                throw .invalidCharacter(character, offset: offset)
            }
        }
        if high != nil { throw .oddNumberOfDigits(offset: highOffset) }
        self = result
    }
}

private let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

extension Sequence where Element == UInt8 {
    /// The bytes as upper-case hexadecimal, separated by `separator` (a space by default).
    public func hexString(separator: String = " ") -> String {
        var out = ""
        var first = true
        for byte in self {
            if !first { out += separator }
            first = false
            out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(byte >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(byte & 0x0F)]))
        }
        return out
    }
}

extension UInt8 {
    /// The byte as two upper-case hexadecimal digits.
    public var hex: String { CollectionOfOne(self).hexString() }
}

extension UInt16 {
    /// The value as four upper-case hexadecimal digits.
    public var hex: String { [UInt8(self >> 8), UInt8(self & 0xFF)].hexString(separator: "") }
}
