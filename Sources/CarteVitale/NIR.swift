/// A French social-security number (NIR, "numéro d'inscription au répertoire") as a Carte Vitale
/// stores it: 13 characters and a 2-digit key (domain-facts §3.4, [C]).
///
/// Layout: sex (1), year (2), month (2), département (2), commune (3), order (3), key (2).
/// The key is 97 − (the 13 first characters as a number, mod 97). For people born in Corsica the
/// département is `2A` or `2B`, replaced by `19` and `18` before the computation (the INSEE rule;
/// [P] in domain-facts, not re-sourced: marked as such here). Born abroad: département `99`.
public struct NIR: Hashable, Sendable, CustomStringConvertible {
    /// The 13 characters before the key.
    public let body: String
    /// The 2-digit key as written on the card.
    public let key: Int
    /// The key the body calls for: 97 − (body mod 97), with 2A → 19 and 2B → 18 ([P], INSEE rule).
    /// Computed once, when the NIR is parsed.
    public let expectedKey: Int

    /// What is wrong with a NIR.
    public enum Problem: Error, Hashable, Sendable, CustomStringConvertible {
        /// Not 15 characters.
        case wrongLength(Int)
        /// A character that cannot be there, at `position` (1-based).
        case invalidCharacter(position: Int)
        /// The key is not 2 digits.
        case invalidKey

        public var description: String {
            switch self {
            case .wrongLength(let n): return "a NIR has 15 characters (13 + a 2-digit key), not \(n)"
            case .invalidCharacter(let p): return "character \(p) of the NIR is not valid there"
            case .invalidKey: return "the NIR key is not 2 digits"
            }
        }
    }

    /// Parses the 15 characters of a NIR (spaces ignored). The key is read, not checked: see ``isKeyValid``.
    public init(_ text: String) throws(Problem) {
        // Fast path: printable ASCII (what cards hold: one byte is one Character), checked byte by byte;
        // anything else by Characters.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(15)
        var ascii = true
        for b in text.utf8 {
            guard b >= 0x20 && b < 0x7F else {
                ascii = false
                break
            }
            if b != 0x20 { bytes.append(b >= 0x61 && b <= 0x7A ? b - 0x20 : b) }
        }
        if ascii {
            guard bytes.count == 15 else { throw .wrongLength(bytes.count) }
            func digit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
            for (i, b) in bytes.enumerated() {
                let ok: Bool
                switch i {
                case 5: ok = digit(b) || b == 0x32
                case 6: ok = digit(b) || ((b == 0x41 || b == 0x42) && bytes[5] == 0x32)
                default: ok = digit(b)
                }
                guard ok else { throw .invalidCharacter(position: i + 1) }
            }
            self.body = String(decoding: bytes[..<13], as: UTF8.self)
            self.key = Int(bytes[13] - 0x30) * 10 + Int(bytes[14] - 0x30)
            self.expectedKey = NIR.expectedKey(of: bytes[..<13])
            return
        }
        let chars = Array(text.filter { $0 != " " }.uppercased())
        guard chars.count == 15 else { throw .wrongLength(chars.count) }
        for (i, c) in chars.enumerated() {
            let ok: Bool
            switch i {
            case 5: ok = c.isASCII && (c.isNumber || c == "2")  // first département character
            case 6: ok = c.isASCII && (c.isNumber || ((c == "A" || c == "B") && chars[5] == "2"))  // 2A / 2B for Corsica
            default: ok = c.isASCII && c.isNumber
            }
            guard ok else { throw .invalidCharacter(position: i + 1) }
        }
        guard let key = Int(String(chars[13...])) else { throw .invalidKey }
        self.body = String(chars[..<13])
        self.key = key
        self.expectedKey = NIR.expectedKey(of: Array(body.utf8)[...])
    }

    /// The 15 characters.
    public var description: String { body + (key < 10 ? "0" : "") + String(key) }

    /// 1 male, 2 female (7 and 8 are provisional numbers).
    public var sex: Int { body.first?.wholeNumberValue ?? 0 }
    /// The two last digits of the birth year.
    public var birthYear: String { String(body.dropFirst(1).prefix(2)) }
    /// The birth month (`01`–`12`, or other values for unknown months).
    public var birthMonth: String { String(body.dropFirst(3).prefix(2)) }
    /// The birth département (`75`, `2A`, `99` for abroad…).
    public var department: String { String(body.dropFirst(5).prefix(2)) }
    /// The commune code, or the country code for people born abroad.
    public var commune: String { String(body.dropFirst(7).prefix(3)) }
    /// The order number of the birth in that commune and month.
    public var order: String { String(body.dropFirst(10).prefix(3)) }

    /// Born abroad (département 99).
    public var bornAbroad: Bool { department == "99" }
    /// Born in Corsica (2A or 2B).
    public var bornInCorsica: Bool { department == "2A" || department == "2B" }

    /// The key of 13 validated characters (digits, or 2A/2B at positions 6-7, which count as 19/18):
    /// the number fits 64 bits, so it is reduced mod 97 once.
    static func expectedKey(of body: ArraySlice<UInt8>) -> Int {
        var number: UInt64 = 0
        var previous: UInt8 = 0
        for (i, b) in zip(0..., body) {
            var digit = UInt64(b < 0x30 ? 0 : min(9, b - 0x30))
            if i == 6 && previous == 0x32 && (b == 0x41 || b == 0x42) {
                number -= 1  // the 2 just counted becomes the 1 of 19 or 18
                digit = b == 0x41 ? 9 : 8
            }
            number = number * 10 + digit
            previous = b
        }
        return 97 - Int(number % 97)
    }

    /// Whether the written key is the expected one.
    public var isKeyValid: Bool { key == expectedKey }

    /// Builds a NIR from its 13 characters, computing the key.
    public static func withComputedKey(_ body: String) throws(Problem) -> NIR {
        let probe = try NIR(body + "00")
        let key = probe.expectedKey
        return try NIR(body + (key < 10 ? "0" : "") + String(key))
    }
}


extension NIR: Codable {
    /// Decodes the 15 characters (as ``description`` writes them).
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid NIR: \(error)"))
        }
    }

    /// Encodes the 15 characters.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
