/// PC/SC part 10 secure PIN entry: the feature list a reader answers to `CM_IOCTL_GET_FEATURE_REQUEST`,
/// its TLV and PIN properties, and the `PIN_VERIFY_STRUCTURE` / `PIN_MODIFY_STRUCTURE` a host sends
/// so that the reader's own keypad takes the PIN and the reader builds the command APDU.
///
/// Byte layouts follow pcsc-lite's `reader.h` (packed structures, multi-byte fields little-endian)
/// and the CCID specification's PIN fields (`bmFormatString`, `bmPINBlockString`,
/// `bmPINLengthFormat`). Both sides live here: the host builds structures, the virtual reader
/// parses them and formats the digits typed on its keypad into the APDU template.
public enum Part10 {
    /// `SCARD_CTL_CODE(code)` on pcsc-lite: `0x42000000 + code`.
    public static func controlCode(_ code: UInt32) -> UInt32 { 0x4200_0000 &+ code }

    /// `CM_IOCTL_GET_FEATURE_REQUEST` = `SCARD_CTL_CODE(3400)`.
    public static let getFeatureRequest: UInt32 = controlCode(3400)

    /// The control code a CCID-style driver gives a feature: `SCARD_CTL_CODE(0x330000 + feature)`
    /// (libccid's `CLASS2_IOCTL_MAGIC`).
    public static func featureControlCode(_ feature: UInt8) -> UInt32 { controlCode(0x33_0000 + UInt32(feature)) }

    /// `FEATURE_*` tags.
    public enum Feature {
        /// `FEATURE_VERIFY_PIN_DIRECT`.
        public static let verifyPINDirect: UInt8 = 0x06
        /// `FEATURE_MODIFY_PIN_DIRECT`.
        public static let modifyPINDirect: UInt8 = 0x07
        /// `FEATURE_IFD_PIN_PROPERTIES`.
        public static let ifdPINProperties: UInt8 = 0x0A
        /// `FEATURE_GET_TLV_PROPERTIES`.
        public static let getTLVProperties: UInt8 = 0x12
        /// `FEATURE_CCID_ESC_COMMAND`.
        public static let ccidEscapeCommand: UInt8 = 0x13
    }

    /// `PCSCv2_PART10_PROPERTY_*` tags of a `FEATURE_GET_TLV_PROPERTIES` answer.
    public enum Property {
        /// `wLcdLayout` (2 bytes): `0xLLCC` lines and characters per line; 0 without a display.
        public static let lcdLayout: UInt8 = 0x01
        /// `bEntryValidationCondition` (1 byte).
        public static let entryValidationCondition: UInt8 = 0x02
        /// `bTimeOut2` (1 byte).
        public static let timeOut2: UInt8 = 0x03
        /// `wLcdMaxCharacters` (2 bytes).
        public static let lcdMaxCharacters: UInt8 = 0x04
        /// `wLcdMaxLines` (2 bytes).
        public static let lcdMaxLines: UInt8 = 0x05
        /// `bMinPINSize` (1 byte).
        public static let minPINSize: UInt8 = 0x06
        /// `bMaxPINSize` (1 byte).
        public static let maxPINSize: UInt8 = 0x07
        /// `sFirmwareID` (text).
        public static let firmwareID: UInt8 = 0x08
        /// `bPPDUSupport` (1 byte).
        public static let ppduSupport: UInt8 = 0x09
        /// `dwMaxAPDUDataSize` (4 bytes).
        public static let maxAPDUDataSize: UInt8 = 0x0A
        /// `wIdVendor` (2 bytes).
        public static let idVendor: UInt8 = 0x0B
        /// `wIdProduct` (2 bytes).
        public static let idProduct: UInt8 = 0x0C
    }

    /// Encodes a feature list: for each feature, tag (1), length 4, control code (4, big-endian).
    public static func encodeFeatureList(_ features: [(tag: UInt8, code: UInt32)]) -> [UInt8] {
        var out: [UInt8] = []
        for f in features { out += [f.tag, 4, UInt8(f.code >> 24 & 0xFF), UInt8(f.code >> 16 & 0xFF), UInt8(f.code >> 8 & 0xFF), UInt8(f.code & 0xFF)] }
        return out
    }

    /// Decodes a `CM_IOCTL_GET_FEATURE_REQUEST` answer into feature tag → control code. Entries
    /// whose length is not 4 are skipped; decoding stops at the first truncated entry.
    public static func decodeFeatureList(_ bytes: [UInt8]) -> [UInt8: UInt32] {
        var out: [UInt8: UInt32] = [:]
        forEachShortTLV(bytes) { tag, value in
            if value.count == 4 { out[tag] = value.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        }
        return out
    }

    /// Encodes TLV properties: tag (1), length (1), value little-endian on `size` bytes (1 to 4; other
    /// sizes are brought into that range).
    public static func encodeProperties(_ properties: [(tag: UInt8, value: UInt32, size: Int)]) -> [UInt8] {
        var out: [UInt8] = []
        for p in properties {
            let size = min(max(p.size, 1), 4)
            out += [p.tag, UInt8(size)]
            out += littleEndianBytes(p.value, size)
        }
        return out
    }

    /// Decodes a `FEATURE_GET_TLV_PROPERTIES` answer: tag → raw value bytes (little-endian numbers).
    /// Decoding stops at the first truncated entry.
    public static func decodeProperties(_ bytes: [UInt8]) -> [UInt8: [UInt8]] {
        var out: [UInt8: [UInt8]] = [:]
        forEachShortTLV(bytes) { tag, value in out[tag] = Array(value) }
        return out
    }

    /// A little-endian number of up to 4 bytes.
    public static func littleEndianValue(_ bytes: [UInt8]) -> UInt32 {
        bytes.prefix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }

    static func littleEndianBytes(_ v: UInt32, _ n: Int) -> [UInt8] {
        (0..<max(0, min(n, 4))).map { UInt8(v >> (8 * UInt32($0)) & 0xFF) }
    }

    /// Walks the TLVs with a 1-byte tag and a 1-byte length that part 10 answers use.
    static func forEachShortTLV(_ bytes: [UInt8], _ body: (UInt8, ArraySlice<UInt8>) -> Void) {
        var i = 0
        while i + 2 <= bytes.count {
            let length = Int(bytes[i + 1])
            guard i + 2 + length <= bytes.count else { return }
            body(bytes[i], bytes[(i + 2)..<(i + 2 + length)])
            i += 2 + length
        }
    }
}

/// Why a part 10 structure is malformed or cannot be executed. Every case names the field.
public enum PINPadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the structure's fixed fields (`needed`).
    case truncated(structure: String, needed: Int, got: Int)
    /// `ulDataLength` does not match the bytes that follow it.
    case dataLengthMismatch(structure: String, declared: Int, actual: Int)
    /// The APDU template is not a command with a data field (`CLA INS P1 P2 Lc data`).
    case invalidTemplate(String)
    /// A PIN field (position, block, length, format) does not fit the template.
    case invalidField(field: String, reason: String)

    public var description: String {
        switch self {
        case .truncated(let s, let needed, let got): return "\(s): \(got) bytes, the fixed fields need \(needed)"
        case .dataLengthMismatch(let s, let declared, let actual): return "\(s): ulDataLength says \(declared) bytes of APDU, \(actual) follow"
        case .invalidTemplate(let why): return "APDU template: \(why)"
        case .invalidField(let field, let reason): return "\(field): \(reason)"
        }
    }
}

/// How the reader formats the PIN into the APDU (`bmFormatString`, `bmPINBlockString`,
/// `bmPINLengthFormat`, CCID §6.1.11). Positions count from the first byte of the APDU data field.
public struct PINFormat: Hashable, Sendable {
    /// The digit encoding.
    public enum Encoding: UInt8, Hashable, Sendable {
        /// One byte per digit holding its value 0–9 (CCID "binary").
        case binary = 0
        /// Two digits per byte, 4 bits each.
        case bcd = 1
        /// One ASCII byte per digit (`0x30`–`0x39`).
        case ascii = 2
    }

    /// `bmFormatString`: bit 7 unit (1 = bytes, 0 = bits), bits 6–3 PIN position, bit 2 right
    /// justification, bits 1–0 encoding.
    public var formatString: UInt8
    /// `bmPINBlockString`: bits 7–4 size in bits of the PIN length field, bits 3–0 PIN block size in bytes.
    public var blockString: UInt8
    /// `bmPINLengthFormat`: bit 4 unit (1 = bytes, 0 = bits), bits 3–0 position of the PIN length.
    public var lengthFormat: UInt8

    /// A format from its three bytes.
    public init(formatString: UInt8, blockString: UInt8, lengthFormat: UInt8) {
        self.formatString = formatString
        self.blockString = blockString
        self.lengthFormat = lengthFormat
    }

    /// ASCII digits from the first data byte, left-justified, in a block of `blockSize` bytes that the
    /// template pads (the CPx VERIFY: 8 bytes padded with `FF`).
    public static func ascii(blockSize: Int) -> PINFormat {
        PINFormat(formatString: 0x82, blockString: UInt8(min(max(blockSize, 0), 15)), lengthFormat: 0x00)
    }

    /// The encoding (a reserved value `3` is an error when the PIN is formatted).
    public var encoding: Encoding? { Encoding(rawValue: formatString & 0x03) }
    /// Position of the PIN in bits from the start of the data field.
    public var pinPositionBits: Int { Int(formatString >> 3 & 0x0F) * (formatString & 0x80 != 0 ? 8 : 1) }
    /// Whether the PIN is right-justified in its block.
    public var rightJustified: Bool { formatString & 0x04 != 0 }
    /// The PIN block size in bytes (0: the block is exactly as long as the formatted PIN).
    public var blockSize: Int { Int(blockString & 0x0F) }
    /// Size in bits of the PIN length field (0: no length is inserted).
    public var lengthFieldBits: Int { Int(blockString >> 4) }
    /// Position of the PIN length field in bits from the start of the data field.
    public var lengthPositionBits: Int { Int(lengthFormat & 0x0F) * (lengthFormat & 0x10 != 0 ? 8 : 1) }

    /// Writes `digits` (ASCII `0`–`9`) into `data`, the data field of the template, starting at byte
    /// `offset` (the insertion offset of a modify structure), as the reader does.
    public func insert(_ digits: [UInt8], into data: inout [UInt8], at offset: Int = 0, field: String = "PIN") throws(PINPadError) {
        guard let encoding else { throw .invalidField(field: "bmFormatString", reason: "PIN format 3 is reserved") }
        guard digits.allSatisfy({ (0x30...0x39).contains($0) }) else { throw .invalidField(field: field, reason: "only digits 0-9 can be typed") }
        let bitsPerDigit = encoding == .bcd ? 4 : 8
        let pinBits = digits.count * bitsPerDigit
        // The block starts at the insertion offset and holds the format bits before the PIN (ISO 9564
        // format 2: control and length nibbles, then the digits): the PIN starts at its position in it.
        let blockStart = offset * 8
        let start = blockStart + pinPositionBits
        if blockSize == 0 {
            // The data field ends with the PIN: it grows or shrinks to hold it exactly.
            let needed = (start + pinBits + 7) / 8
            if data.count < needed { data += [UInt8](repeating: 0xFF, count: needed - data.count) } else if data.count > needed && offset == 0 { data.removeLast(data.count - needed) }
        }
        let blockBits = blockSize == 0 ? pinPositionBits + pinBits : blockSize * 8
        guard pinPositionBits + pinBits <= blockBits else {
            throw .invalidField(field: field, reason: "\(digits.count) digits at bit \(pinPositionBits) do not fit a \(blockSize)-byte PIN block")
        }
        guard blockStart + blockBits <= data.count * 8 else {
            throw .invalidField(field: "bmPINBlockString", reason: "a \(blockBits / 8)-byte PIN block at byte \(offset) passes the \(data.count)-byte data field")
        }
        var bit = start + (rightJustified ? blockBits - pinPositionBits - pinBits : 0)
        for d in digits {
            let value = d - 0x30
            switch encoding {
            case .ascii: Self.write(UInt32(d), bits: 8, at: bit, in: &data)
            case .binary: Self.write(UInt32(value), bits: 8, at: bit, in: &data)
            case .bcd: Self.write(UInt32(value), bits: 4, at: bit, in: &data)
            }
            bit += bitsPerDigit
        }
        if lengthFieldBits > 0 {
            let at = offset * 8 + lengthPositionBits
            guard at + lengthFieldBits <= data.count * 8 else {
                throw .invalidField(field: "bmPINLengthFormat", reason: "a \(lengthFieldBits)-bit PIN length at bit \(at) passes the \(data.count)-byte data field")
            }
            guard lengthFieldBits >= 32 || digits.count < 1 << lengthFieldBits else {
                throw .invalidField(field: "bmPINBlockString", reason: "a \(lengthFieldBits)-bit length field cannot hold \(digits.count)")
            }
            Self.write(UInt32(digits.count), bits: min(lengthFieldBits, 32), at: at, in: &data)
        }
    }

    /// Writes the `bits` low bits of `value`, most significant first, at bit `position` (bit 0 is the
    /// most significant bit of byte 0).
    static func write(_ value: UInt32, bits: Int, at position: Int, in data: inout [UInt8]) {
        for i in 0..<bits {
            let bitValue = value >> UInt32(bits - 1 - i) & 1
            let p = position + i
            let mask = UInt8(0x80) >> UInt8(p % 8)
            if bitValue == 1 { data[p / 8] |= mask } else { data[p / 8] &= ~mask }
        }
    }
}

/// The APDU template of a structure: `CLA INS P1 P2 Lc data` (short form; an optional trailing Le).
public struct PINCommandTemplate: Hashable, Sendable {
    /// `CLA INS P1 P2`.
    public var header: [UInt8]
    /// The data field, with the padding the PIN overwrites.
    public var data: [UInt8]
    /// A trailing Le byte, if the template has one.
    public var le: UInt8?

    /// Parses a template (a short command APDU with a data field, Lc consistent with the bytes).
    public init(bytes: [UInt8]) throws(PINPadError) {
        guard bytes.count >= 5 else { throw .invalidTemplate("\(bytes.count) bytes; a command with a data field has at least 5 (CLA INS P1 P2 Lc)") }
        header = Array(bytes[0..<4])
        let lc = Int(bytes[4])
        if bytes.count == 5 && lc == 0 {
            // `Lc` 0 with no data: the reader sizes the data field from the PIN (block size 0).
            data = []
            le = nil
            return
        }
        guard lc > 0 else { throw .invalidTemplate("Lc 00 in a short APDU with data (extended lengths are not used by PIN pads)") }
        guard bytes.count == 5 + lc || bytes.count == 6 + lc else {
            throw .invalidTemplate("Lc \(lc) but \(bytes.count - 5) bytes follow the header")
        }
        data = Array(bytes[5..<(5 + lc)])
        le = bytes.count == 6 + lc ? bytes[5 + lc] : nil
    }

    /// A template from its parts: a 4-byte header and at most 255 data bytes (a short APDU).
    public init(header: [UInt8], data: [UInt8], le: UInt8? = nil) throws(PINPadError) {
        guard header.count == 4 else { throw .invalidTemplate("the header is CLA INS P1 P2 (4 bytes), not \(header.count)") }
        guard data.count <= 255 else { throw .invalidTemplate("\(data.count) data bytes; a PIN pad takes short APDUs (at most 255)") }
        self.header = header
        self.data = data
        self.le = le
    }

    /// The APDU with `data` as its data field (Lc recomputed).
    public func command(data: [UInt8]) throws(PINPadError) -> [UInt8] {
        guard (1...255).contains(data.count) else { throw .invalidTemplate("the formatted data field has \(data.count) bytes (1…255)") }
        return header + [UInt8(data.count)] + data + (le.map { [$0] } ?? [])
    }

    /// The encoded template (the initialisers keep the data within 255 bytes).
    public var encoded: [UInt8] { header + [UInt8(truncatingIfNeeded: data.count)] + data + (le.map { [$0] } ?? []) }
}

/// `PIN_VERIFY_STRUCTURE` (pcsc-lite `reader.h`): 19 bytes of fields, then the APDU template.
public struct PINVerifyStructure: Hashable, Sendable {
    /// `bTimerOut`: seconds to wait for the first key (0: the reader's default).
    public var timeout: UInt8
    /// `bTimerOut2`: seconds to wait after a key (0: the reader's default).
    public var timeout2: UInt8
    /// `bmFormatString`, `bmPINBlockString`, `bmPINLengthFormat`.
    public var format: PINFormat
    /// Fewest digits the reader accepts (`wPINMaxExtraDigit` high byte).
    public var minimumLength: UInt8
    /// Most digits the reader accepts (`wPINMaxExtraDigit` low byte).
    public var maximumLength: UInt8
    /// `bEntryValidationCondition`: 1 maximum size reached, 2 validation key, 4 timeout.
    public var entryValidationCondition: UInt8
    /// `bNumberMessage`.
    public var numberOfMessages: UInt8
    /// `wLangId`.
    public var languageID: UInt16
    /// `bMsgIndex`.
    public var messageIndex: UInt8
    /// `bTeoPrologue` (T=1 block prologue; zeros otherwise).
    public var teoPrologue: [UInt8]
    /// The command the reader completes with the PIN (`abData`).
    public var template: PINCommandTemplate

    /// The size of the fixed fields before `abData`.
    public static let fixedSize = 19

    /// A structure; the defaults are what host software usually sends (one message, English, validation key).
    public init(timeout: UInt8 = 30, timeout2: UInt8 = 0, format: PINFormat, minimumLength: UInt8, maximumLength: UInt8, entryValidationCondition: UInt8 = 0x02,
                numberOfMessages: UInt8 = 1, languageID: UInt16 = 0x0409, messageIndex: UInt8 = 0, teoPrologue: [UInt8] = [0, 0, 0], template: PINCommandTemplate) {
        self.timeout = timeout
        self.timeout2 = timeout2
        self.format = format
        self.minimumLength = minimumLength
        self.maximumLength = maximumLength
        self.entryValidationCondition = entryValidationCondition
        self.numberOfMessages = numberOfMessages
        self.languageID = languageID
        self.messageIndex = messageIndex
        self.teoPrologue = teoPrologue
        self.template = template
    }

    /// Parses the bytes a host passes to `SCardControl(FEATURE_VERIFY_PIN_DIRECT)`.
    public init(bytes: [UInt8]) throws(PINPadError) {
        let name = "PIN_VERIFY_STRUCTURE"
        guard bytes.count >= Self.fixedSize else { throw .truncated(structure: name, needed: Self.fixedSize, got: bytes.count) }
        let declared = Int(Part10.littleEndianValue(Array(bytes[15..<19])))
        guard declared == bytes.count - Self.fixedSize else { throw .dataLengthMismatch(structure: name, declared: declared, actual: bytes.count - Self.fixedSize) }
        timeout = bytes[0]
        timeout2 = bytes[1]
        format = PINFormat(formatString: bytes[2], blockString: bytes[3], lengthFormat: bytes[4])
        maximumLength = bytes[5]
        minimumLength = bytes[6]
        entryValidationCondition = bytes[7]
        numberOfMessages = bytes[8]
        languageID = UInt16(bytes[9]) | UInt16(bytes[10]) << 8
        messageIndex = bytes[11]
        teoPrologue = Array(bytes[12..<15])
        template = try PINCommandTemplate(bytes: Array(bytes[19...]))
    }

    /// The bytes for `SCardControl`.
    public var encoded: [UInt8] {
        let apdu = template.encoded
        var out: [UInt8] = [timeout, timeout2, format.formatString, format.blockString, format.lengthFormat, maximumLength, minimumLength,
                            entryValidationCondition, numberOfMessages, UInt8(languageID & 0xFF), UInt8(languageID >> 8), messageIndex]
        out += (teoPrologue + [0, 0, 0]).prefix(3)
        out += Part10.littleEndianBytes(UInt32(apdu.count), 4)
        return out + apdu
    }

    /// The APDU the reader sends once `digits` were typed (ASCII digits).
    public func command(digits: [UInt8]) throws(PINPadError) -> [UInt8] {
        var data = template.data
        try format.insert(digits, into: &data)
        return try template.command(data: data)
    }
}

/// `PIN_MODIFY_STRUCTURE` (pcsc-lite `reader.h`): 24 bytes of fields, then the APDU template.
public struct PINModifyStructure: Hashable, Sendable {
    /// `bTimerOut`.
    public var timeout: UInt8
    /// `bTimerOut2`.
    public var timeout2: UInt8
    /// The PIN format (applies to the current and the new PIN).
    public var format: PINFormat
    /// `bInsertionOffsetOld`: byte offset in the data field of the current PIN's block.
    public var insertionOffsetOld: UInt8
    /// `bInsertionOffsetNew`: byte offset in the data field of the new PIN's block.
    public var insertionOffsetNew: UInt8
    /// Fewest digits.
    public var minimumLength: UInt8
    /// Most digits.
    public var maximumLength: UInt8
    /// `bConfirmPIN`: bit 0 the new PIN is typed twice, bit 1 the current PIN is typed first.
    public var confirmPIN: UInt8
    /// `bEntryValidationCondition`.
    public var entryValidationCondition: UInt8
    /// `bNumberMessage`.
    public var numberOfMessages: UInt8
    /// `wLangId`.
    public var languageID: UInt16
    /// `bMsgIndex1`, `bMsgIndex2`, `bMsgIndex3`.
    public var messageIndexes: [UInt8]
    /// `bTeoPrologue`.
    public var teoPrologue: [UInt8]
    /// The command the reader completes (`abData`).
    public var template: PINCommandTemplate

    /// The size of the fixed fields before `abData`.
    public static let fixedSize = 24

    /// Whether the current PIN is typed first.
    public var asksCurrentPIN: Bool { confirmPIN & 0x02 != 0 }
    /// Whether the new PIN is typed twice.
    public var asksConfirmation: Bool { confirmPIN & 0x01 != 0 }

    /// A structure; see the properties.
    public init(timeout: UInt8 = 30, timeout2: UInt8 = 0, format: PINFormat, insertionOffsetOld: UInt8, insertionOffsetNew: UInt8, minimumLength: UInt8, maximumLength: UInt8,
                confirmPIN: UInt8, entryValidationCondition: UInt8 = 0x02, numberOfMessages: UInt8 = 3, languageID: UInt16 = 0x0409, messageIndexes: [UInt8] = [0, 1, 2],
                teoPrologue: [UInt8] = [0, 0, 0], template: PINCommandTemplate) {
        self.timeout = timeout
        self.timeout2 = timeout2
        self.format = format
        self.insertionOffsetOld = insertionOffsetOld
        self.insertionOffsetNew = insertionOffsetNew
        self.minimumLength = minimumLength
        self.maximumLength = maximumLength
        self.confirmPIN = confirmPIN
        self.entryValidationCondition = entryValidationCondition
        self.numberOfMessages = numberOfMessages
        self.languageID = languageID
        self.messageIndexes = messageIndexes
        self.teoPrologue = teoPrologue
        self.template = template
    }

    /// Parses the bytes a host passes to `SCardControl(FEATURE_MODIFY_PIN_DIRECT)`.
    public init(bytes: [UInt8]) throws(PINPadError) {
        let name = "PIN_MODIFY_STRUCTURE"
        guard bytes.count >= Self.fixedSize else { throw .truncated(structure: name, needed: Self.fixedSize, got: bytes.count) }
        let declared = Int(Part10.littleEndianValue(Array(bytes[20..<24])))
        guard declared == bytes.count - Self.fixedSize else { throw .dataLengthMismatch(structure: name, declared: declared, actual: bytes.count - Self.fixedSize) }
        timeout = bytes[0]
        timeout2 = bytes[1]
        format = PINFormat(formatString: bytes[2], blockString: bytes[3], lengthFormat: bytes[4])
        insertionOffsetOld = bytes[5]
        insertionOffsetNew = bytes[6]
        maximumLength = bytes[7]
        minimumLength = bytes[8]
        confirmPIN = bytes[9]
        entryValidationCondition = bytes[10]
        numberOfMessages = bytes[11]
        languageID = UInt16(bytes[12]) | UInt16(bytes[13]) << 8
        messageIndexes = Array(bytes[14..<17])
        teoPrologue = Array(bytes[17..<20])
        template = try PINCommandTemplate(bytes: Array(bytes[24...]))
    }

    /// The bytes for `SCardControl`.
    public var encoded: [UInt8] {
        let apdu = template.encoded
        var out: [UInt8] = [timeout, timeout2, format.formatString, format.blockString, format.lengthFormat, insertionOffsetOld, insertionOffsetNew,
                            maximumLength, minimumLength, confirmPIN, entryValidationCondition, numberOfMessages, UInt8(languageID & 0xFF), UInt8(languageID >> 8)]
        out += (messageIndexes + [0, 0, 0]).prefix(3)
        out += (teoPrologue + [0, 0, 0]).prefix(3)
        out += Part10.littleEndianBytes(UInt32(apdu.count), 4)
        return out + apdu
    }

    /// The APDU the reader sends: the current PIN (when asked) and the new one formatted at their offsets.
    public func command(current: [UInt8]?, new: [UInt8]) throws(PINPadError) -> [UInt8] {
        guard format.blockSize > 0 || !asksCurrentPIN else {
            throw .invalidField(field: "bmPINBlockString", reason: "a modify structure needs a fixed PIN block size to place two PINs")
        }
        var data = template.data
        if asksCurrentPIN {
            guard let current else { throw .invalidField(field: "bConfirmPIN", reason: "the current PIN is asked but was not typed") }
            try format.insert(current, into: &data, at: Int(insertionOffsetOld), field: "current PIN")
        }
        try format.insert(new, into: &data, at: Int(insertionOffsetNew), field: "new PIN")
        return try template.command(data: data)
    }
}

/// What a reader's PIN pad offers, from its feature list, `FEATURE_IFD_PIN_PROPERTIES` and TLV
/// properties. Nothing here is secret.
public struct PINPadCapabilities: Hashable, Sendable, Codable {
    /// `FEATURE_VERIFY_PIN_DIRECT` is announced.
    public var verify: Bool
    /// `FEATURE_MODIFY_PIN_DIRECT` is announced.
    public var modify: Bool
    /// `wLcdLayout`: `0xLLCC` (lines, characters per line); 0 without a display.
    public var lcdLayout: UInt16
    /// `bEntryValidationCondition` the reader supports.
    public var entryValidationCondition: UInt8
    /// `bTimeOut2` (seconds after the first key).
    public var timeout2: UInt8
    /// `bMinPINSize` / `bMaxPINSize`, when the reader says.
    public var minimumPINLength: Int?
    /// See ``minimumPINLength``.
    public var maximumPINLength: Int?

    /// Capabilities; see the properties.
    public init(verify: Bool, modify: Bool, lcdLayout: UInt16 = 0, entryValidationCondition: UInt8 = 0x02, timeout2: UInt8 = 0, minimumPINLength: Int? = nil, maximumPINLength: Int? = nil) {
        self.verify = verify
        self.modify = modify
        self.lcdLayout = lcdLayout
        self.entryValidationCondition = entryValidationCondition
        self.timeout2 = timeout2
        self.minimumPINLength = minimumPINLength
        self.maximumPINLength = maximumPINLength
    }

    /// `PIN_PROPERTIES_STRUCTURE`: `wLcdLayout` (2, little-endian), `bEntryValidationCondition`, `bTimeOut2`.
    public var pinPropertiesStructure: [UInt8] {
        [UInt8(lcdLayout & 0xFF), UInt8(lcdLayout >> 8), entryValidationCondition, timeout2]
    }

    /// Reads a feature list and, when present, the PIN properties structure and TLV properties;
    /// `nil` when the reader announces neither verification nor modification.
    public init?(features: [UInt8: UInt32], pinProperties: [UInt8]?, tlvProperties: [UInt8: [UInt8]]) {
        let verify = features[Part10.Feature.verifyPINDirect] != nil
        let modify = features[Part10.Feature.modifyPINDirect] != nil
        guard verify || modify else { return nil }
        self.init(verify: verify, modify: modify)
        if let p = pinProperties, p.count >= 4 {
            lcdLayout = UInt16(p[0]) | UInt16(p[1]) << 8
            entryValidationCondition = p[2]
            timeout2 = p[3]
        }
        if let v = tlvProperties[Part10.Property.lcdLayout] { lcdLayout = UInt16(truncatingIfNeeded: Part10.littleEndianValue(v)) }
        if let v = tlvProperties[Part10.Property.entryValidationCondition], let b = v.first { entryValidationCondition = b }
        if let v = tlvProperties[Part10.Property.timeOut2], let b = v.first { timeout2 = b }
        minimumPINLength = tlvProperties[Part10.Property.minPINSize]?.first.map(Int.init)
        maximumPINLength = tlvProperties[Part10.Property.maxPINSize]?.first.map(Int.init)
    }
}

/// The status words a PIN pad answers on its own, without the card (PC/SC part 10).
public enum PINPadStatus: Hashable, Sendable, CustomStringConvertible {
    /// `64 00`: nobody typed in time.
    case timeout
    /// `64 01`: the cancel key was pressed.
    case cancelled
    /// `64 02`: the new PIN and its confirmation differ.
    case confirmationMismatch
    /// `64 03`: the PIN typed is shorter or longer than allowed.
    case lengthOutOfRange

    /// The pad's own outcome for `sw`, or `nil` when the card answered.
    public init?(_ sw: StatusWord) {
        guard sw.sw1 == 0x64 else { return nil }
        switch sw.sw2 {
        case 0x00: self = .timeout
        case 0x01: self = .cancelled
        case 0x02: self = .confirmationMismatch
        case 0x03: self = .lengthOutOfRange
        default: return nil
        }
    }

    /// The status word.
    public var statusWord: StatusWord {
        switch self {
        case .timeout: return StatusWord(sw1: 0x64, sw2: 0x00)
        case .cancelled: return StatusWord(sw1: 0x64, sw2: 0x01)
        case .confirmationMismatch: return StatusWord(sw1: 0x64, sw2: 0x02)
        case .lengthOutOfRange: return StatusWord(sw1: 0x64, sw2: 0x03)
        }
    }

    public var description: String {
        switch self {
        case .timeout: return "nobody entered the PIN on the reader in time (64 00)"
        case .cancelled: return "the PIN entry was cancelled on the reader (64 01)"
        case .confirmationMismatch: return "the new PIN and its confirmation typed on the reader differ (64 02)"
        case .lengthOutOfRange: return "the PIN typed on the reader is too short or too long (64 03)"
        }
    }
}

/// A transport whose reader may have a PIN pad (PC/SC part 10 secure PIN entry).
public protocol PINPadTransport: CardTransport {
    /// The reader's PIN pad, or `nil` when it has none.
    func pinPadCapabilities() async throws(CardError) -> PINPadCapabilities?
    /// Has the reader take the PIN on its keypad and send `structure`'s command; returns the response
    /// bytes (the card's, or the pad's own `64 xx`).
    func verifyPINOnPad(_ structure: PINVerifyStructure) async throws(CardError) -> [UInt8]
    /// Same for a PIN change or unblock.
    func modifyPINOnPad(_ structure: PINModifyStructure) async throws(CardError) -> [UInt8]
}
