/// A card family recognised from its ATR alone (before any probing).
public enum ATRFamily: String, Hashable, Sendable, CaseIterable {
    /// Carte Vitale 1 (Bull CP8 B0' mask, inverse convention).
    case vitale1
    /// Carte Vitale 2 (ISO 7816-4 file system, T=0).
    case vitale2
    /// CPS3 (IAS-ECC) through its contact interface.
    case cps3
    /// CPS3 through a contactless reader (ATR synthesised by the reader).
    case cps3Contactless
    /// CPS4 (ChipDoc).
    case cps4
    /// CNAMTS/CPAM agent single-sign-on card (not a CPx).
    case cnamtsAgent
}

/// One entry of the ATR catalog: a value, a mask, what it identifies and where the fact comes from.
public struct KnownATR: Hashable, Sendable {
    /// The card family.
    public let family: ATRFamily
    /// A short English label.
    public let label: String
    /// The reference ATR bytes (already masked).
    public let value: [UInt8]
    /// The mask applied to a candidate ATR before comparing with ``value``.
    public let mask: [UInt8]
    /// The public source of the fact (see domain-facts §1).
    public let source: String

    /// Whether `atr` matches this entry (same length, equal under the mask).
    public func matches(_ atr: [UInt8]) -> Bool {
        guard atr.count == value.count else { return false }
        for i in atr.indices where atr[i] & mask[i] != value[i] { return false }
        return true
    }

    init(_ family: ATRFamily, _ label: String, _ value: String, mask: String? = nil, source: String) {
        self.family = family
        self.label = label
        let v = try! [UInt8](hex: value)
        let m = try! mask.map { try [UInt8](hex: $0) } ?? [UInt8](repeating: 0xFF, count: v.count)
        precondition(v.count == m.count, "catalog entry \(label): value and mask lengths differ")
        self.value = zip(v, m).map { $0 & $1 }
        self.mask = m
        self.source = source
    }

    /// The ATRs of domain-facts §1 (all [C], from public lists). Matching is by value and mask.
    public static let catalog: [KnownATR] = [
        // Vitale 1: 3F 65 25 00 xx 09 yy 90 00 (SCL patterns 2[2C]/[F6]9, 52/6A, A[34]/6A).
        KnownATR(.vitale1, "Carte Vitale 1 (B0', inverse convention)", "3F 65 25 00 00 09 00 90 00",
                 mask: "FF FF FF FF 00 FF 00 FF FF", source: "pcsc-tools smartcard_list.txt"),
        // Vitale 2: 3B 75 13 00 00 4x 09 EA 90 00, and the 45 09 FA variant.
        KnownATR(.vitale2, "Carte Vitale 2", "3B 75 13 00 00 40 09 EA 90 00",
                 mask: "FF FF FF FF FF F0 FF FF FF FF", source: "pcsc-tools smartcard_list.txt"),
        KnownATR(.vitale2, "Carte Vitale 2 (variant)", "3B 75 13 00 00 45 09 FA 90 00",
                 source: "pcsc-tools smartcard_list.txt"),
        // CPS3 contact: the IAS-ECC mask used by OpenSC and the ANS Cryptolib.
        KnownATR(.cps3, "CPS3 (IAS-ECC, contact)", "3B 00 00 00 00 00 12 25 00 64 80 00 00 00 00 90 00",
                 mask: "FF 00 00 00 00 FF FF FF FF FF FF 00 00 00 FF FF FF",
                 source: "OpenSC card-iasecc.c, ANS card-cps.c"),
        KnownATR(.cps3Contactless, "CPS3 (contactless, ATR synthesised by the reader)",
                 "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E",
                 mask: "FF FF FF FF FF FF FF FF 00 00 FF C0 FF FF FF FF FF FF FF FF",
                 source: "pcsc-tools smartcard_list.txt, ANS card-cps.c"),
        KnownATR(.cps4, "CPS4 (ChipDoc, T=0 and T=1)", "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44",
                 source: "ANS card-cps.c"),
        KnownATR(.cps4, "CPS4 (release candidate)", "3B 9B 18 80 01 00 12 25 00 64 80 00 04 01 00 90 44",
                 source: "ANS card-cps.c"),
        KnownATR(.cps4, "CPS4 (T=0 only)", "3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00",
                 source: "ANS card-cps.c, pcsc-tools smartcard_list.txt"),
        KnownATR(.cnamtsAgent, "CNAMTS/CPAM agent SSO card (not a CPx)", "3B 67 00 00 2D 20 16 01 78 90 00",
                 source: "pcsc-tools smartcard_list.txt"),
    ]

    /// The catalog entries matching `atr`, most specific (fewest masked-out bits) first.
    public static func identify(_ atr: [UInt8]) -> [KnownATR] {
        catalog.filter { $0.matches(atr) }.sorted { a, b in
            a.mask.reduce(0) { $0 + $1.nonzeroBitCount } > b.mask.reduce(0) { $0 + $1.nonzeroBitCount }
        }
    }
}
