/// A malformed Answer-To-Reset. Every case names the byte offset where decoding stopped.
public enum ATRError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No byte at all.
    case empty
    /// The initial character TS (offset 0) is neither `3B` (direct) nor `3F` (inverse convention).
    /// `03` is what an inverse-convention ATR looks like when its bytes were not decoded by the reader.
    case invalidTS(UInt8)
    /// The ATR ends before an interface or historical byte that T0/TDi announced.
    case truncated(expected: String, offset: Int)
    /// The ATR announces protocols other than T=0, so a check byte TCK is required, but there is none.
    case missingTCK(offset: Int)
    /// The check byte at `offset` does not make the XOR of T0…TCK zero; `expected` is the correct value.
    case tckMismatch(offset: Int, found: UInt8, expected: UInt8)
    /// Bytes are left after the last announced byte (from `offset`, `count` bytes).
    case trailingBytes(offset: Int, count: Int)
    /// The ATR is longer than the 33 bytes ISO/IEC 7816-3 allows.
    case tooLong(count: Int)

    public var description: String {
        switch self {
        case .empty: return "ATR is empty"
        case .invalidTS(let ts):
            let hint = ts == 0x03 ? " (looks like undecoded inverse convention: the reader should report 3F)" : ""
            return "invalid initial character TS \(ts.hex) at offset 0: expected 3B (direct) or 3F (inverse)\(hint)"
        case .truncated(let expected, let offset): return "ATR truncated: \(expected) expected at offset \(offset)"
        case .missingTCK(let offset): return "ATR has no check byte TCK at offset \(offset), required because a protocol other than T=0 is offered"
        case .tckMismatch(let offset, let found, let expected):
            return "ATR check byte TCK at offset \(offset) is \(found.hex), expected \(expected.hex)"
        case .trailingBytes(let offset, let count): return "ATR has \(count) unexpected byte(s) from offset \(offset)"
        case .tooLong(let count): return "ATR of \(count) bytes exceeds the 33 bytes ISO 7816-3 allows"
        }
    }

    /// The byte offset the error points at.
    public var offset: Int {
        switch self {
        case .empty, .invalidTS: return 0
        case .truncated(_, let offset), .missingTCK(let offset), .tckMismatch(let offset, _, _),
            .trailingBytes(let offset, _):
            return offset
        case .tooLong: return 33
        }
    }
}

/// A transmission protocol number `T` announced in an ATR (`T=0`, `T=1`, `T=15` for global bytes…).
public struct TransmissionProtocol: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The protocol number, 0…15.
    public let rawValue: UInt8
    /// Creates a protocol number (only the low nibble is kept).
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x0F }
    /// Half-duplex character protocol T=0.
    public static let t0 = TransmissionProtocol(rawValue: 0)
    /// Half-duplex block protocol T=1.
    public static let t1 = TransmissionProtocol(rawValue: 1)
    /// T=15: not a protocol; qualifies global interface bytes.
    public static let t15 = TransmissionProtocol(rawValue: 15)
    public var description: String { "T=\(rawValue)" }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// An Answer-To-Reset decoded per ISO/IEC 7816-3 §8.
///
/// Decodes the convention (TS), the format byte T0, the TA/TB/TC/TD interface-byte chain, the offered
/// protocols, the historical bytes and the check byte TCK (verified when required).
///
/// ```swift
/// let atr = try ATR(hex: "3B 75 13 00 00 45 09 EA 90 00")   // a Vitale 2
/// atr.convention      // .direct
/// atr.protocols       // [T=0]
/// ```
public struct ATR: Hashable, Sendable {
    /// Bit-level convention announced by TS.
    public enum Convention: String, Hashable, Sendable {
        /// TS = `3B`.
        case direct
        /// TS = `3F`.
        case inverse
    }

    /// One group of interface bytes `TAi TBi TCi TDi` (i ≥ 1).
    public struct InterfaceGroup: Hashable, Sendable {
        /// The group number i (1 for TA1…TD1).
        public var index: Int
        /// The protocol announced by TD(i-1): `nil` for group 1 (global bytes). For group 2 it
        /// qualifies TC2 only (TA2 and TB2 are global whatever it says); from group 3 on it qualifies TA/TB/TC.
        public var qualifier: TransmissionProtocol?
        /// TAi, when present.
        public var ta: UInt8?
        /// TBi, when present.
        public var tb: UInt8?
        /// TCi, when present.
        public var tc: UInt8?
        /// TDi, when present (its low nibble is the protocol T of the next group).
        public var td: UInt8?
    }

    /// The ATR bytes as received.
    public let bytes: [UInt8]
    /// The convention announced by TS.
    public let convention: Convention
    /// The format byte T0 (Y1 in the high nibble, the number K of historical bytes in the low nibble).
    public let t0: UInt8
    /// The interface-byte groups, in order.
    public let interfaceGroups: [InterfaceGroup]
    /// The K historical bytes.
    public let historicalBytes: [UInt8]
    /// The check byte, when present.
    public let tck: UInt8?

    /// Decodes an ATR.
    /// - Throws: ``ATRError`` naming the offset.
    public init(bytes input: some Collection<UInt8>) throws(ATRError) {
        let b = Array(input)
        guard !b.isEmpty else { throw .empty }
        switch b[0] {
        case 0x3B: convention = .direct
        case 0x3F: convention = .inverse
        default: throw .invalidTS(b[0])
        }
        guard b.count >= 2 else { throw .truncated(expected: "T0", offset: 1) }
        t0 = b[1]
        var groups: [InterfaceGroup] = []
        var y = t0 >> 4
        var offset = 2
        var index = 1
        var qualifier: TransmissionProtocol? = nil
        var needsTCK = false
        while true {
            var group = InterfaceGroup(index: index, qualifier: index <= 2 ? nil : qualifier)
            for (bit, name) in [(UInt8(1), "TA"), (2, "TB"), (4, "TC"), (8, "TD")] where y & bit != 0 {
                guard offset < b.count else { throw .truncated(expected: "\(name)\(index)", offset: offset) }
                let v = b[offset]
                switch bit {
                case 1: group.ta = v
                case 2: group.tb = v
                case 4: group.tc = v
                default: group.td = v
                }
                offset += 1
            }
            if index == 2 { group.qualifier = qualifier }  // TC2 is T=0 specific; TA2/TB2 are global
            groups.append(group)
            guard let td = group.td else { break }
            let t = TransmissionProtocol(rawValue: td & 0x0F)
            if t != .t0 { needsTCK = true }
            qualifier = t
            y = td >> 4
            index += 1
        }
        interfaceGroups = groups
        let k = Int(t0 & 0x0F)
        guard offset + k <= b.count else {
            throw .truncated(expected: "historical byte \(b.count - offset + 1) of \(k)", offset: b.count)
        }
        historicalBytes = Array(b[offset..<(offset + k)])
        offset += k
        if needsTCK {
            guard offset < b.count else { throw .missingTCK(offset: offset) }
            var x: UInt8 = 0
            for byte in b[1..<offset] { x ^= byte }
            if x != b[offset] { throw .tckMismatch(offset: offset, found: b[offset], expected: x) }
            tck = b[offset]
            offset += 1
        } else {
            tck = nil
        }
        if offset < b.count {
            if b.count > 33 { throw .tooLong(count: b.count) }
            throw .trailingBytes(offset: offset, count: b.count - offset)
        }
        if b.count > 33 { throw .tooLong(count: b.count) }
        bytes = b
    }

    /// `bytes` without zero bytes after the ATR they start with: pcsc-lite (1.9.9 to 2.5) can report its
    /// whole 33-byte ATR buffer, the ATR of the card it last powered followed by zeros, to a client that
    /// connected while a card was being swapped (its `SCardConnect` powers the card up on demand and
    /// keeps the buffer's length when the power-up fails). `padded` says the bytes were trimmed: the
    /// connection is then stale and should be made again.
    public static func removingPadding(_ bytes: [UInt8]) -> (atr: [UInt8], padded: Bool) {
        do {
            _ = try ATR(bytes: bytes)
            return (bytes, false)
        } catch .trailingBytes(let offset, _) where bytes[offset...].allSatisfy({ $0 == 0 }) {
            return (Array(bytes[..<offset]), true)
        } catch {
            return (bytes, false)
        }
    }

    /// Decodes an ATR written in hexadecimal. Throws ``HexError`` or ``ATRError``.
    public init(hex: String) throws {
        try self.init(bytes: [UInt8](hex: hex))
    }

    // MARK: Protocols

    /// The protocols the card offers, in the order announced (T=15 excluded). A card whose ATR has no
    /// TD1 offers T=0 only.
    public var protocols: [TransmissionProtocol] {
        var result: [TransmissionProtocol] = []
        for group in interfaceGroups {
            guard let td = group.td else { continue }
            let t = TransmissionProtocol(rawValue: td & 0x0F)
            if t != .t15 && !result.contains(t) { result.append(t) }
        }
        return result.isEmpty ? [.t0] : result
    }

    /// Whether this is the ATR a PC/SC contactless reader synthesises for an ISO 14443-4 card
    /// (`3B 8n 80 01 …`, PC/SC part 3 §3.1.3.2.3): the exchange then uses T=1.
    public var isPCSCContactless: Bool {
        bytes.count >= 4 && bytes[0] == 0x3B && bytes[1] & 0xF0 == 0x80 && bytes[2] == 0x80 && bytes[3] == 0x01
    }

    /// The protocol used when no PPS changes it: the one TA2 imposes in specific mode, else the first
    /// offered (T=1 for a PC/SC contactless ATR).
    public var defaultProtocol: TransmissionProtocol {
        if let mode = specificMode { return mode.protocol }
        return isPCSCContactless ? .t1 : protocols[0]
    }

    /// The specific-mode byte TA2, when present: the card then runs in that protocol with no PPS.
    public var specificMode: (protocol: TransmissionProtocol, canChange: Bool, implicitParameters: Bool)? {
        guard interfaceGroups.count >= 2, let ta2 = interfaceGroups[1].ta else { return nil }
        return (TransmissionProtocol(rawValue: ta2 & 0x0F), ta2 & 0x80 == 0, ta2 & 0x10 != 0)
    }

    // MARK: Global parameters

    /// TA1 (or `11` when absent).
    public var ta1: UInt8 { interfaceGroups.first?.ta ?? 0x11 }

    private static let fiTable: [Int?] = [372, 372, 558, 744, 1116, 1488, 1860, nil, nil, 512, 768, 1024, 1536, 2048, nil, nil]
    private static let fMaxTable: [Double?] = [4, 5, 6, 8, 12, 16, 20, nil, nil, 5, 7.5, 10, 15, 20, nil, nil]
    private static let diTable: [Int?] = [nil, 1, 2, 4, 8, 16, 32, 64, 12, 20, nil, nil, nil, nil, nil, nil]

    /// Clock-rate conversion integer Fi from TA1 (`nil` for an RFU value).
    public var fi: Int? { ATR.fiTable[Int(ta1 >> 4)] }
    /// Maximum clock frequency in MHz from TA1 (`nil` for an RFU value).
    public var fMaxMHz: Double? { ATR.fMaxTable[Int(ta1 >> 4)] }
    /// Baud-rate adjustment integer Di from TA1 (`nil` for an RFU value).
    public var di: Int? { ATR.diTable[Int(ta1 & 0x0F)] }

    /// Extra guard time N from TC1 (0 when absent; 255 means the minimum: 12 etu for T=0, 11 for T=1).
    public var extraGuardTime: Int { Int(interfaceGroups.first?.tc ?? 0) }

    /// T=0 waiting integer WI from TC2 (10 when absent).
    public var waitingIntegerT0: Int {
        guard interfaceGroups.count >= 2, let tc2 = interfaceGroups[1].tc else { return 10 }
        return Int(tc2)
    }

    private var firstT1Group: InterfaceGroup? {
        interfaceGroups.first { $0.index >= 3 && $0.qualifier == .t1 }
    }

    /// T=1 information-field size for the card, IFSC, from the first T=1 TA (32 when absent).
    public var ifsc: Int { Int(firstT1Group?.ta ?? 32) }
    /// T=1 block waiting integer BWI from the first T=1 TB (4 when absent).
    public var bwi: Int { Int((firstT1Group?.tb ?? 0x4D) >> 4) }
    /// T=1 character waiting integer CWI from the first T=1 TB (13 when absent).
    public var cwi: Int { Int((firstT1Group?.tb ?? 0x4D) & 0x0F) }
    /// T=1 error detection code from the first T=1 TC: `"CRC"` or `"LRC"` (the default).
    public var t1ErrorDetection: String { (firstT1Group?.tc ?? 0) & 1 == 1 ? "CRC" : "LRC" }

    // MARK: Historical bytes

    /// A COMPACT-TLV data object of the historical bytes (ISO/IEC 7816-4 §12.1.1).
    public struct HistoricalObject: Hashable, Sendable {
        /// The 4-bit tag (1 country code, 2 issuer id, 3 card service data, 4 initial access data,
        /// 5 card issuer data, 6 pre-issuing data, 7 card capabilities, 8 status indicator, F application id).
        public var tag: UInt8
        /// The object's value bytes.
        public var value: [UInt8]
        /// The ISO 7816-4 name of the tag.
        public var name: String {
            switch tag {
            case 0x1: return "country code"
            case 0x2: return "issuer identification number"
            case 0x3: return "card service data"
            case 0x4: return "initial access data"
            case 0x5: return "card issuer's data"
            case 0x6: return "pre-issuing data"
            case 0x7: return "card capabilities"
            case 0x8: return "status indicator"
            case 0xF: return "application identifier"
            default: return "tag \(tag)"
            }
        }
    }

    /// The category indicator (first historical byte), when there are historical bytes.
    public var historicalCategory: UInt8? { historicalBytes.first }

    /// The historical bytes decoded as COMPACT-TLV objects when the category is `00` or `80` and they
    /// are well-formed; `nil` for proprietary content (as on Vitale cards, category `4x`).
    /// For category `00` the last three bytes are the status indicator and are returned as tag 8.
    public var historicalObjects: [HistoricalObject]? {
        guard let category = historicalCategory, category == 0x00 || category == 0x80 else { return nil }
        var end = historicalBytes.count
        var status: HistoricalObject? = nil
        if category == 0x00 {
            guard historicalBytes.count >= 4 else { return nil }
            end -= 3
            status = HistoricalObject(tag: 8, value: Array(historicalBytes[end...]))
        }
        var objects: [HistoricalObject] = []
        var i = 1
        while i < end {
            let tag = historicalBytes[i] >> 4
            let length = Int(historicalBytes[i] & 0x0F)
            guard i + 1 + length <= end else { return nil }
            objects.append(HistoricalObject(tag: tag, value: Array(historicalBytes[(i + 1)..<(i + 1 + length)])))
            i += 1 + length
        }
        if let status { objects.append(status) }
        return objects
    }
}

extension ATR: CustomStringConvertible {
    public var description: String { bytes.hexString() }
}

extension ATR {
    /// Describes one interface byte in English, for reports.
    public static func describe(name: String, value: UInt8, qualifier: TransmissionProtocol?) -> String {
        switch (name, qualifier) {
        case ("TA1", _):
            let fi = fiTable[Int(value >> 4)].map(String.init) ?? "RFU"
            let di = diTable[Int(value & 0x0F)].map(String.init) ?? "RFU"
            let f = fMaxTable[Int(value >> 4)].map { "\($0)" } ?? "RFU"
            return "Fi=\(fi), Di=\(di), fmax=\(f) MHz"
        case ("TB1", _): return "deprecated programming voltage byte"
        case ("TC1", _): return value == 0xFF ? "extra guard time N=255 (minimum guard time)" : "extra guard time N=\(value)"
        case ("TA2", _):
            return "specific mode T=\(value & 0x0F), \(value & 0x80 == 0 ? "can" : "cannot") change, parameters \(value & 0x10 != 0 ? "implicit" : "from TA1")"
        case ("TB2", _): return "deprecated programming voltage byte"
        case ("TC2", _): return "T=0 waiting integer WI=\(value)"
        case (let n, _) where n.hasPrefix("TD"):
            let y = value >> 4
            var next: [String] = []
            if y & 1 != 0 { next.append("TA") }
            if y & 2 != 0 { next.append("TB") }
            if y & 4 != 0 { next.append("TC") }
            if y & 8 != 0 { next.append("TD") }
            return "protocol T=\(value & 0x0F)" + (next.isEmpty ? "" : ", next: " + next.joined(separator: " "))
        case (let n, .some(.t1)) where n.hasPrefix("TA"): return "T=1 IFSC=\(value)"
        case (let n, .some(.t1)) where n.hasPrefix("TB"): return "T=1 BWI=\(value >> 4), CWI=\(value & 0x0F)"
        case (let n, .some(.t1)) where n.hasPrefix("TC"): return "T=1 error detection \(value & 1 == 1 ? "CRC" : "LRC")"
        case (let n, .some(.t15)) where n.hasPrefix("TA"):
            return "clock stop \(["not supported", "state L", "state H", "no preference"][Int(value >> 6)]), class indicator \((value & 0x3F).hex)"
        case (let n, .some(.t15)) where n.hasPrefix("TB"): return "standard or proprietary use of C6 (SPU) \(value.hex)"
        default: return "interface byte"
        }
    }

    /// The interface bytes in order with their names (`TA1`, `TD1`, …) and English meanings.
    public var namedInterfaceBytes: [(name: String, value: UInt8, meaning: String)] {
        var out: [(String, UInt8, String)] = []
        for g in interfaceGroups {
            for (letter, v) in [("A", g.ta), ("B", g.tb), ("C", g.tc), ("D", g.td)] {
                guard let v else { continue }
                let name = "T\(letter)\(g.index)"
                out.append((name, v, ATR.describe(name: name, value: v, qualifier: g.qualifier)))
            }
        }
        return out
    }
}
