/// The text of the **synthetic** apCV QR code: `APCV1:` followed by the session token in Base32
/// (RFC 4648 alphabet, no padding).
///
/// Base32 keeps to capital letters and the digits 2–7, which a QR code stores in its compact
/// alphanumeric mode and a keyboard-wedge scanner types without a modifier on most layouts. What a
/// scanner actually delivers is repaired before decoding:
/// - spaces, tabs and the CR/LF a scanner appends are dropped; lower case (Caps Lock) is accepted;
/// - a scanner set to a QWERTY layout typing into a French AZERTY session sends `QPCV&M` for `APCV1:`,
///   `é"'(-è` for `234567`, and swaps A/Q, Z/W and `,`/M: this is recognised by the prefix and undone.
public enum QRPayload {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// The text the phone shows for `token`.
    public static func encode(_ token: [UInt8]) -> String {
        ApCVProtocol.qrPrefix + base32(token)
    }

    /// The token bytes in a scanned text.
    public static func decode(_ scanned: String) throws(ApCVError) -> [UInt8] {
        var text = String(scanned.unicodeScalars.filter { !" \t\r\n".unicodeScalars.contains($0) }.map(Character.init))
        guard !text.isEmpty else { throw .malformedQRPayload("empty") }
        guard text.count <= 2048 else { throw .malformedQRPayload("\(text.count) characters, more than 2048") }
        let upper = text.uppercased()
        if upper.hasPrefix(ApCVProtocol.qrPrefix) {
            text = upper
        } else if upper.hasPrefix("QPCV&M") {
            text = String(text.map(fromAZERTY))
        } else {
            throw .malformedQRPayload("does not start with \(ApCVProtocol.qrPrefix) (starts with \"\(String(text.prefix(6)))\")")
        }
        return try base32Decode(Array(text.utf8.dropFirst(ApCVProtocol.qrPrefix.utf8.count)), offset: ApCVProtocol.qrPrefix.count)
    }

    /// What a QWERTY-configured scanner's key presses become in an AZERTY session, undone.
    private static func fromAZERTY(_ c: Character) -> Character {
        switch c {
        case "q", "Q": return "A"
        case "a", "A": return "Q"
        case "w", "W": return "Z"
        case "z", "Z": return "W"
        case ",": return "M"
        case "M", "m": return ":"  // the prefix's colon (Shift + the key where AZERTY has M)
        case "&": return "1"
        case "é": return "2"
        case "\"": return "3"
        case "'": return "4"
        case "(": return "5"
        case "-": return "6"
        case "è": return "7"
        default: return Character(c.uppercased())
        }
    }

    static func base32(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer = 0, bits = 0
        for byte in bytes {
            buffer = buffer << 8 | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
            buffer &= (1 << bits) - 1
        }
        if bits > 0 { out.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func base32Decode(_ text: [UInt8], offset: Int) throws(ApCVError) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = 0, bits = 0
        for (i, c) in text.enumerated() {
            let value: Int
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = Int(c - UInt8(ascii: "A"))
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = Int(c - UInt8(ascii: "2")) + 26
            default:
                throw .malformedQRPayload("character \(i + offset + 1) is not Base32 (A–Z, 2–7)")
            }
            buffer = buffer << 5 | value
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> (bits - 8)) & 0xFF))
                bits -= 8
            }
            buffer &= (1 << bits) - 1
        }
        // What remains must be the zero padding of the last character (fewer than 5 bits).
        guard bits < 5, buffer == 0 else { throw .malformedQRPayload("the Base32 text is truncated or its last character is wrong") }
        return out
    }
}
