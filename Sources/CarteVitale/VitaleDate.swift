/// A date as a Carte Vitale writes it, `YYYYMMDD` in ASCII.
///
/// Birth dates may be "lunar" (date lunaire): a day or a month that no calendar has (00, 31 February,
/// month 13…), used when the real date is unknown. They are kept exactly as written, never "corrected".
public struct VitaleDate: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 8 digits as written.
    public let raw: String
    /// The year as written.
    public let year: Int
    /// The month as written (0 or above 12 in a lunar date).
    public let month: Int
    /// The day as written (0, or past the month's end, in a lunar date).
    public let day: Int

    /// Parses a calendar date written `YYYY-MM-DD` (what `--date` options and the rights service's
    /// `date=` take); `nil` for any other shape and for a day no calendar has.
    public init?(iso text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.map(\.count) == [4, 2, 2], let date = VitaleDate(parts.joined()), !date.isLunar else { return nil }
        self = date
    }

    /// Parses 8 ASCII digits; `nil` for anything else.
    public init?(_ text: String) {
        // Eight ASCII digits, read byte by byte (no Character or Unicode property look-up, no copy).
        var fields = (year: 0, month: 0, day: 0)
        var count = 0
        for b in text.utf8 {
            guard count < 8, b >= 0x30 && b <= 0x39 else { return nil }
            let digit = Int(b - 0x30)
            switch count {
            case 0..<4: fields.year = fields.year * 10 + digit
            case 4..<6: fields.month = fields.month * 10 + digit
            default: fields.day = fields.day * 10 + digit
            }
            count += 1
        }
        guard count == 8 else { return nil }
        raw = text
        (year, month, day) = fields
    }

    /// Whether the date does not exist in the Gregorian calendar (a lunar birth date).
    public var isLunar: Bool {
        guard (1...12).contains(month), day >= 1 else { return true }
        return day > VitaleDate.daysIn(month: month, year: year)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// `DD/MM/YYYY`, as French forms print dates.
    public var description: String { "\(raw.suffix(2))/\(raw.dropFirst(4).prefix(2))/\(raw.prefix(4))" }

    /// `YYYY-MM-DD`.
    public var iso: String { "\(raw.prefix(4))-\(raw.dropFirst(4).prefix(2))-\(raw.suffix(2))" }

    public static func < (a: VitaleDate, b: VitaleDate) -> Bool { a.raw < b.raw }
}

extension VitaleDate: Codable {
    /// Decodes the 8 digits as written (``raw``).
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let date = VitaleDate(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "a Vitale date is 8 digits (YYYYMMDD), not \"\(text)\""))
        }
        self = date
    }

    /// Encodes the 8 digits as written.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(raw)
    }
}
