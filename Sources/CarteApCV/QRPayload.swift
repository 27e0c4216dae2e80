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

    /// The token bytes in a scanned text. Positions in errors count characters from 1.
    public static func decode(_ scanned: String) throws(ApCVError) -> [UInt8] {
        let whitespace: Set<Unicode.Scalar> = [" ", "\t", "\r", "\n"]
        var text: [Unicode.Scalar] = scanned.unicodeScalars.filter { !whitespace.contains($0) }
        guard !text.isEmpty else { throw .malformedQRPayload("empty") }
        guard text.count <= 2048 else { throw .malformedQRPayload("\(text.count) characters, more than 2048") }
        // Upper case for ASCII letters only: other characters stay as they are (and are refused below).
        let upper = text.map { $0.properties.isLowercase && $0.isASCII ? Unicode.Scalar($0.value - 0x20)! : $0 }
        let prefix = Array(ApCVProtocol.qrPrefix.unicodeScalars)
        if upper.starts(with: prefix) {
            text = upper
        } else if upper.starts(with: Array("QPCV&M".unicodeScalars)) {
            text = upper.map(fromAZERTY)
        } else {
            var start = ""
            start.unicodeScalars.append(contentsOf: text.prefix(6))
            throw .malformedQRPayload("does not start with \(ApCVProtocol.qrPrefix) (starts with \"\(start)\")")
        }
        return try base32Decode(Array(text.dropFirst(prefix.count)), offset: prefix.count)
    }

    /// What a QWERTY-configured scanner's key presses become in an AZERTY session, undone (ASCII
    /// letters already upper-cased).
    private static func fromAZERTY(_ c: Unicode.Scalar) -> Unicode.Scalar {
        switch c {
        case "Q": return "A"
        case "A": return "Q"
        case "W": return "Z"
        case "Z": return "W"
        case ",": return "M"
        case "M": return ":"  // the prefix's colon (Shift + the key where AZERTY has M)
        case "&": return "1"
        case "é": return "2"
        case "\"": return "3"
        case "'": return "4"
        case "(": return "5"
        case "-": return "6"
        case "è": return "7"
        default: return c
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

    static func base32Decode(_ text: [Unicode.Scalar], offset: Int) throws(ApCVError) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = 0, bits = 0
        for (i, c) in text.enumerated() {
            let value: Int
            switch c.value {
            case 0x41...0x5A: value = Int(c.value - 0x41)       // A–Z
            case 0x32...0x37: value = Int(c.value - 0x32) + 26  // 2–7
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
