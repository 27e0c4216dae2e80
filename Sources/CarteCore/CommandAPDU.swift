/// The ISO/IEC 7816-3 §12.1 cases of a command APDU: whether it carries data, expects data, and whether
/// its lengths are short (one byte) or extended (two or three bytes).
public enum APDUCase: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// No data sent, no data expected: `CLA INS P1 P2`.
    case case1 = "1"
    /// No data sent, data expected, short Le: `CLA INS P1 P2 Le`.
    case case2Short = "2S"
    /// No data sent, data expected, extended Le: `CLA INS P1 P2 00 Le1 Le2`.
    case case2Extended = "2E"
    /// Data sent, no data expected, short Lc: `CLA INS P1 P2 Lc Data`.
    case case3Short = "3S"
    /// Data sent, no data expected, extended Lc: `CLA INS P1 P2 00 Lc1 Lc2 Data`.
    case case3Extended = "3E"
    /// Data sent and expected, short: `CLA INS P1 P2 Lc Data Le`.
    case case4Short = "4S"
    /// Data sent and expected, extended: `CLA INS P1 P2 00 Lc1 Lc2 Data Le1 Le2`.
    case case4Extended = "4E"

    public var description: String { "case \(rawValue)" }

    /// Whether the case uses extended length fields.
    public var isExtended: Bool { self == .case2Extended || self == .case3Extended || self == .case4Extended }
}

/// A malformed command APDU, or values that cannot form one. Every case names the byte offset in the
/// encoded APDU where the problem was found, so a script or a log line can point at it.
public enum APDUError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The APDU ends before a required field: `needed` bytes were needed from `offset`, only `available` remain.
    case truncated(field: String, offset: Int, needed: Int, available: Int)
    /// The APDU is longer than its length fields allow: bytes from `offset` on are left over.
    case trailingBytes(offset: Int, count: Int)
    /// The Lc field at `offset` announces `declared` data bytes but `actual` bytes follow (in a way no case fits).
    case lcMismatch(offset: Int, declared: Int, actual: Int)
    /// An extended Lc of zero at `offset`: ISO 7816-3 forbids it (`00 00 00` cannot start a data field).
    case zeroExtendedLc(offset: Int)
    /// The command data is longer than the largest extended Lc (65 535 bytes).
    case dataTooLong(count: Int)
    /// The expected length Ne is outside 1…65 536 (use `nil` for "no data expected").
    case invalidLe(Int)
    /// The APDU needs extended lengths but short encoding was required (`extended: false`).
    case extendedLengthRequired(dataCount: Int, le: Int?)
    /// A parameter of a command builder is out of range (for example a READ BINARY offset above 32 767).
    case parameterOutOfRange(name: String, value: Int, allowed: ClosedRange<Int>)

    public var description: String {
        switch self {
        case .truncated(let field, let offset, let needed, let available):
            return "APDU truncated: \(field) needs \(needed) byte(s) at offset \(offset), only \(available) available"
        case .trailingBytes(let offset, let count):
            return "APDU has \(count) unexpected trailing byte(s) from offset \(offset)"
        case .lcMismatch(let offset, let declared, let actual):
            return "Lc at offset \(offset) announces \(declared) data byte(s) but \(actual) byte(s) follow"
        case .zeroExtendedLc(let offset):
            return "extended Lc at offset \(offset) is zero, which ISO 7816-3 forbids"
        case .dataTooLong(let count):
            return "command data of \(count) bytes exceeds the maximum of 65535"
        case .invalidLe(let le):
            return "expected length \(le) is outside 1...65536"
        case .extendedLengthRequired(let dataCount, let le):
            return "\(dataCount) data byte(s) with Ne \(le.map(String.init) ?? "absent") need extended lengths, but short encoding was required"
        case .parameterOutOfRange(let name, let value, let allowed):
            return "\(name) \(value) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        }
    }

    /// The byte offset the error points at, when it names one.
    public var offset: Int? {
        switch self {
        case .truncated(_, let offset, _, _), .trailingBytes(let offset, _), .lcMismatch(let offset, _, _),
            .zeroExtendedLc(let offset):
            return offset
        case .dataTooLong, .invalidLe, .extendedLengthRequired, .parameterOutOfRange:
            return nil
        }
    }
}

/// An ISO/IEC 7816-4 command APDU.
///
/// `le` is the *expected* length Ne, not its encoding: `nil` means no data expected, `256` is written
/// `00` in a short APDU, and `65536` is written `00 00` in an extended one. Encoding picks short lengths
/// when the values fit, unless ``isExtended`` forces extended lengths.
///
/// ```swift
/// let select = try CommandAPDU(cla: 0x00, ins: 0xA4, p1: 0x04, p2: 0x00, data: aid, le: 256)
/// select.encoded()      // 00 A4 04 00 0B … 00
/// ```
public struct CommandAPDU: Hashable, Sendable {
    /// The class byte (logical channel, secure messaging and chaining bits for the inter-industry classes).
    public var cla: UInt8
    /// The instruction byte.
    public var ins: UInt8
    /// Parameter 1.
    public var p1: UInt8
    /// Parameter 2.
    public var p2: UInt8
    /// The command data (Nc = `data.count` bytes, possibly empty).
    public private(set) var data: [UInt8]
    /// The expected response length Ne (1…65 536), or `nil` when no response data is expected.
    public private(set) var le: Int?
    /// Whether the APDU is encoded with extended length fields.
    public private(set) var isExtended: Bool

    /// Creates a command APDU, checking its lengths.
    ///
    /// - Parameters:
    ///   - extended: `true` forces extended lengths, `false` requires short ones, `nil` (the default)
    ///     picks short lengths when Nc ≤ 255 and Ne ≤ 256.
    /// - Throws: ``APDUError/dataTooLong(count:)``, ``APDUError/invalidLe(_:)`` or
    ///   ``APDUError/extendedLengthRequired(dataCount:le:)``.
    public init(
        cla: UInt8,
        ins: UInt8,
        p1: UInt8,
        p2: UInt8,
        data: [UInt8] = [],
        le: Int? = nil,
        extended: Bool? = nil
    ) throws(APDUError) {
        guard data.count <= 65_535 else { throw .dataTooLong(count: data.count) }
        if let le, !(1...65_536).contains(le) { throw .invalidLe(le) }
        let needsExtended = data.count > 255 || (le ?? 0) > 256
        if extended == false && needsExtended { throw .extendedLengthRequired(dataCount: data.count, le: le) }
        // A case 1 APDU has no length field, so it cannot be extended.
        let hasLengths = !data.isEmpty || le != nil
        self.init(unchecked: cla, ins, p1, p2, data, le, hasLengths && ((extended ?? false) || needsExtended))
    }

    /// Decodes an APDU from its bytes (ISO/IEC 7816-3 §12.1.3).
    ///
    /// - Throws: ``APDUError`` naming the offset of the first inconsistency.
    public init(bytes: some Collection<UInt8>) throws(APDUError) {
        let b = Array(bytes)
        let n = b.count
        guard n >= 4 else {
            throw .truncated(field: n == 0 ? "CLA" : ["CLA", "INS", "P1", "P2"][n], offset: n, needed: 4 - n, available: 0)
        }
        self.cla = b[0]
        self.ins = b[1]
        self.p1 = b[2]
        self.p2 = b[3]
        self.data = []
        self.le = nil
        self.isExtended = false
        if n == 4 { return }  // case 1
        if n == 5 {  // case 2S
            le = b[4] == 0 ? 256 : Int(b[4])
            return
        }
        if b[4] != 0 {  // short Lc
            let lc = Int(b[4])
            if n == 5 + lc {  // case 3S
                data = Array(b[5..<n])
                return
            }
            if n == 6 + lc {  // case 4S
                data = Array(b[5..<(5 + lc)])
                le = b[n - 1] == 0 ? 256 : Int(b[n - 1])
                return
            }
            if n < 5 + lc {
                throw .truncated(field: "data (Lc=\(lc))", offset: 5, needed: lc, available: n - 5)
            }
            throw .trailingBytes(offset: 6 + lc, count: n - 6 - lc)
        }
        // b[4] == 0 and n >= 6: extended
        isExtended = true
        guard n >= 7 else { throw .truncated(field: "extended length", offset: 5, needed: 2, available: n - 5) }
        let value = Int(b[5]) << 8 | Int(b[6])
        if n == 7 {  // case 2E
            le = value == 0 ? 65_536 : value
            return
        }
        guard value != 0 else { throw .zeroExtendedLc(offset: 4) }
        let lc = value
        if n == 7 + lc {  // case 3E
            data = Array(b[7..<n])
            return
        }
        if n == 9 + lc {  // case 4E
            data = Array(b[7..<(7 + lc)])
            let v = Int(b[n - 2]) << 8 | Int(b[n - 1])
            le = v == 0 ? 65_536 : v
            return
        }
        if n < 7 + lc {
            throw .truncated(field: "data (Lc=\(lc))", offset: 7, needed: lc, available: n - 7)
        }
        if n == 8 + lc {
            throw .truncated(field: "extended Le", offset: 7 + lc, needed: 2, available: 1)
        }
        throw .trailingBytes(offset: 9 + lc, count: n - 9 - lc)
    }

    /// Decodes an APDU written in hexadecimal. Throws ``HexError`` or ``APDUError``.
    public init(hex: String) throws {
        try self.init(bytes: [UInt8](hex: hex))
    }

    /// The ISO 7816-3 case of this APDU.
    public var apduCase: APDUCase {
        switch (data.isEmpty, le == nil) {
        case (true, true): return .case1
        case (true, false): return isExtended ? .case2Extended : .case2Short
        case (false, true): return isExtended ? .case3Extended : .case3Short
        case (false, false): return isExtended ? .case4Extended : .case4Short
        }
    }

    /// The APDU bytes as sent to a card.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4 + 3 + data.count + 3)
        out.append(cla)
        out.append(ins)
        out.append(p1)
        out.append(p2)
        encodeBody(into: &out)
        return out
    }

    @inline(__always)
    private func encodeBody(into out: inout [UInt8]) {
        if isExtended {
            if !data.isEmpty {
                out.append(0)
                out.append(UInt8(data.count >> 8))
                out.append(UInt8(data.count & 0xFF))
                out.append(contentsOf: data)
                if let le {
                    let v = le == 65_536 ? 0 : le
                    out.append(UInt8(v >> 8))
                    out.append(UInt8(v & 0xFF))
                }
            } else if let le {
                let v = le == 65_536 ? 0 : le
                out.append(0)
                out.append(UInt8(v >> 8))
                out.append(UInt8(v & 0xFF))
            }
        } else {
            if !data.isEmpty {
                out.append(UInt8(data.count))
                out.append(contentsOf: data)
            }
            if let le { out.append(le == 256 ? 0 : UInt8(le)) }
        }
    }

    /// A copy with another expected length Ne (`nil` for none), re-encoded short when it fits.
    public func with(le newLe: Int?) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: ins, p1: p1, p2: p2, data: data, le: newLe, extended: isExtended && (data.count > 255 || (newLe ?? 0) > 256) ? true : nil)
    }

    /// The logical channel number encoded in an inter-industry class byte (0…19), or `nil` for a proprietary class.
    public var logicalChannel: Int? {
        if cla & 0x80 != 0 { return nil }
        if cla & 0x40 == 0 { return Int(cla & 0x03) }
        return 4 + Int(cla & 0x0F)
    }

    /// Whether the class byte sets the command-chaining bit (`b5` of an inter-industry class).
    public var isChained: Bool { cla & 0x80 == 0 && cla & 0x10 != 0 }

    /// Whether this command carries a secret (a PIN, a PUK or new reference data) in its data field:
    /// VERIFY (`20`/`21`), CHANGE REFERENCE DATA (`24`/`25`), DISABLE / ENABLE VERIFICATION REQUIREMENT
    /// (`26`/`28`), RESET RETRY COUNTER (`2C`/`2D`), and
    /// the card-specific PIN commands under a proprietary class that reuse those instruction codes.
    ///
    /// Such data never reaches a ``Trace``, a log line or an error message.
    public var carriesSecret: Bool { CommandAPDU.secretInstructions.contains(ins) }

    /// The instruction bytes whose data is redacted wherever a command is shown.
    public static let secretInstructions: Set<UInt8> = [0x20, 0x21, 0x24, 0x25, 0x26, 0x28, 0x2C, 0x2D]

    /// The encoded APDU in hexadecimal with the data of a secret-bearing command replaced by
    /// `<redacted N bytes>`. Safe for logs, traces and error messages.
    public var redactedHex: String {
        guard carriesSecret, !data.isEmpty else { return encoded().hexString() }
        var head: [UInt8] = [cla, ins, p1, p2]
        if isExtended { head += [0, UInt8(data.count >> 8), UInt8(data.count & 0xFF)] } else { head.append(UInt8(data.count)) }
        var tail: [UInt8] = []
        if let le {
            let v = isExtended ? (le == 65_536 ? 0 : le) : (le == 256 ? 0 : le)
            tail = isExtended ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v)]
        }
        return head.hexString() + " <redacted \(data.count) bytes>" + (tail.isEmpty ? "" : " " + tail.hexString())
    }
}

extension CommandAPDU: CustomReflectable {
    /// What `dump` and debuggers show: the redacted form, never a secret.
    public var customMirror: Mirror {
        Mirror(self, children: ["apdu": redactedHex], displayStyle: .struct)
    }
}

extension CommandAPDU: CustomStringConvertible, CustomDebugStringConvertible {
    /// The redacted hexadecimal form (see ``redactedHex``).
    public var description: String { redactedHex }
    public var debugDescription: String { "CommandAPDU(\(apduCase): \(redactedHex))" }
}

// MARK: - Well-known commands

extension CommandAPDU {
    /// `GET RESPONSE` (`C0`) asking for `length` bytes (1…256) on the class `cla`.
    public static func getResponse(cla: UInt8 = 0x00, length: Int) -> CommandAPDU {
        // Lengths outside 1...256 are clamped: a GET RESPONSE is always a short case 2 command.
        let ne = min(max(length, 1), 256)
        return CommandAPDU(unchecked: cla, 0xC0, 0x00, 0x00, [], ne, false)
    }

    /// `SELECT` (`A4`) by DF name (application identifier), asking for the FCI (P2 `00`) with Le `00`.
    public static func select(aid: [UInt8], cla: UInt8 = 0x00, p2: UInt8 = 0x00, le: Int? = 256) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0xA4, p1: 0x04, p2: p2, data: aid, le: le)
    }

    /// `SELECT` (`A4`) by file identifier with the given P1 (`00` any, `01` child DF, `02` EF, default `00`).
    public static func select(fid: UInt16, p1: UInt8 = 0x00, p2: UInt8 = 0x0C, cla: UInt8 = 0x00, le: Int? = nil) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0xA4, p1: p1, p2: p2, data: [UInt8(fid >> 8), UInt8(fid & 0xFF)], le: le)
    }

    /// `READ BINARY` (`B0`) at `offset` (0…32 767) of the current EF.
    public static func readBinary(offset: Int, length: Int = 256, cla: UInt8 = 0x00) throws(APDUError) -> CommandAPDU {
        guard (0...0x7FFF).contains(offset) else { throw .parameterOutOfRange(name: "offset", value: offset, allowed: 0...0x7FFF) }
        return try CommandAPDU(cla: cla, ins: 0xB0, p1: UInt8(offset >> 8), p2: UInt8(offset & 0xFF), le: length)
    }

    /// `READ BINARY` (`B0`) of the EF with short identifier `sfi` (1…30), at `offset` (0…255).
    public static func readBinary(sfi: UInt8, offset: UInt8 = 0, length: Int = 256, cla: UInt8 = 0x00) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0xB0, p1: 0x80 | (sfi & 0x1F), p2: offset, le: length)
    }

    /// `READ RECORD` (`B2`) of record `record` in the current EF, or in the EF with short identifier `sfi`.
    public static func readRecord(_ record: UInt8, sfi: UInt8? = nil, length: Int = 256, cla: UInt8 = 0x00) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0xB2, p1: record, p2: ((sfi ?? 0) & 0x1F) << 3 | 0x04, le: length)
    }

    /// `VERIFY` (`20`) of reference data `reference` (P2). With no `pin`, asks for the remaining tries
    /// without presenting anything (case 1).
    public static func verify(reference: UInt8, pin: [UInt8]? = nil, cla: UInt8 = 0x00) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0x20, p1: 0x00, p2: reference, data: pin ?? [])
    }

    /// `GET CHALLENGE` (`84`) for `length` bytes.
    public static func getChallenge(length: Int = 8, cla: UInt8 = 0x00) throws(APDUError) -> CommandAPDU {
        try CommandAPDU(cla: cla, ins: 0x84, p1: 0x00, p2: 0x00, le: length)
    }

    /// Builds an APDU whose values are known to be valid (internal fast path).
    @usableFromInline
    init(unchecked cla: UInt8, _ ins: UInt8, _ p1: UInt8, _ p2: UInt8, _ data: [UInt8], _ le: Int?, _ extended: Bool) {
        self.cla = cla
        self.ins = ins
        self.p1 = p1
        self.p2 = p2
        self.data = data
        self.le = le
        self.isExtended = extended
    }
}
