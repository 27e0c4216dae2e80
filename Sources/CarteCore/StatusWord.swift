/// The two status bytes SW1-SW2 that end every response APDU.
///
/// Modelled on swift-system's `Errno`: a `RawRepresentable` struct rather than a closed enum, so a word
/// no table knows still round-trips. Named constants cover the usual ISO/IEC 7816-4 words and the
/// CPS2ter (`A0` class) words; ``meaning`` gives an English sentence for any word.
public struct StatusWord: RawRepresentable, Hashable, Sendable, Comparable {
    /// SW1 in the high byte, SW2 in the low byte.
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Builds a status word from its two bytes.
    @inlinable
    public init(sw1: UInt8, sw2: UInt8) { self.rawValue = UInt16(sw1) << 8 | UInt16(sw2) }

    /// The first status byte.
    @inlinable public var sw1: UInt8 { UInt8(rawValue >> 8) }
    /// The second status byte.
    @inlinable public var sw2: UInt8 { UInt8(rawValue & 0xFF) }
    /// The two bytes in transmission order.
    public var bytes: [UInt8] { [sw1, sw2] }

    public static func < (lhs: StatusWord, rhs: StatusWord) -> Bool { lhs.rawValue < rhs.rawValue }

    // MARK: Classification

    /// `90 00`: normal processing.
    public var isSuccess: Bool { rawValue == 0x9000 }

    /// Whether the word means normal processing for a command of class `cla`: `90 00`, and for the
    /// CPS2ter class `A0` any `90 xx` (domain-facts §5.4).
    public func isSuccess(forClass cla: UInt8) -> Bool {
        isSuccess || (cla == 0xA0 && sw1 == 0x90)
    }

    /// A warning (`62xx`, `63xx`): the command ran, with a remark about the result.
    public var isWarning: Bool { sw1 == 0x62 || sw1 == 0x63 }

    /// For `61xx` (ISO) and `9Fxx` (CPS2ter / GSM 11.11 style): how many response bytes wait for a
    /// GET RESPONSE (`xx = 00` means 256).
    public var responseBytesAvailable: Int? {
        guard sw1 == 0x61 || sw1 == 0x9F else { return nil }
        return sw2 == 0 ? 256 : Int(sw2)
    }

    /// For `6Cxx`: the exact length Ne the card wants the command to be resent with (`xx = 00` means 256).
    public var exactLength: Int? {
        guard sw1 == 0x6C else { return nil }
        return sw2 == 0 ? 256 : Int(sw2)
    }

    /// For `63Cx`: the number of tries left (x, 0…15). `63C0` means no try is left.
    public var remainingTries: Int? {
        guard sw1 == 0x63, sw2 & 0xF0 == 0xC0 else { return nil }
        return Int(sw2 & 0x0F)
    }

    // MARK: Normal processing

    /// `90 00` — Normal processing, no further qualification.
    public static let success = StatusWord(rawValue: 0x9000)
    /// `61 xx` — Normal processing; `xx` response bytes are still available (fetch them with GET RESPONSE).
    public static func bytesAvailable(_ count: Int) -> StatusWord { StatusWord(sw1: 0x61, sw2: UInt8(truncatingIfNeeded: count)) }

    // MARK: Warnings

    /// `62 00` — Warning: state of non-volatile memory unchanged, no information given.
    public static let warningNoInformation = StatusWord(rawValue: 0x6200)
    /// `62 81` — Warning: part of the returned data may be corrupted.
    public static let warningDataMayBeCorrupted = StatusWord(rawValue: 0x6281)
    /// `62 82` — Warning: end of file or record reached before reading Ne bytes.
    public static let endOfFileReached = StatusWord(rawValue: 0x6282)
    /// `62 83` — Warning: the selected file is deactivated.
    public static let selectedFileDeactivated = StatusWord(rawValue: 0x6283)
    /// `62 84` — Warning: file control information not formatted according to ISO 7816-4.
    public static let fciNotFormatted = StatusWord(rawValue: 0x6284)
    /// `63 00` — Warning: state of non-volatile memory changed, no information given (often: verification failed).
    public static let verificationFailed = StatusWord(rawValue: 0x6300)
    /// `63 81` — Warning: file filled up by the last write.
    public static let fileFilledUp = StatusWord(rawValue: 0x6381)
    /// `63 Cx` — Warning: counter value `x` (for VERIFY: `x` tries left).
    public static func triesRemaining(_ tries: Int) -> StatusWord { StatusWord(sw1: 0x63, sw2: 0xC0 | UInt8(min(max(tries, 0), 15))) }

    // MARK: Execution errors

    /// `64 00` — Execution error: state of non-volatile memory unchanged.
    public static let executionError = StatusWord(rawValue: 0x6400)
    /// `65 00` — Execution error: state of non-volatile memory changed.
    public static let memoryChanged = StatusWord(rawValue: 0x6500)
    /// `65 81` — Execution error: memory failure.
    public static let memoryFailure = StatusWord(rawValue: 0x6581)

    // MARK: Checking errors

    /// `67 00` — Wrong length (Lc or Le not accepted).
    public static let wrongLength = StatusWord(rawValue: 0x6700)
    /// `68 00` — Functions in CLA not supported.
    public static let claFunctionNotSupported = StatusWord(rawValue: 0x6800)
    /// `68 81` — Logical channel not supported.
    public static let logicalChannelNotSupported = StatusWord(rawValue: 0x6881)
    /// `68 82` — Secure messaging not supported.
    public static let secureMessagingNotSupported = StatusWord(rawValue: 0x6882)
    /// `68 83` — Last command of the chain expected.
    public static let lastCommandOfChainExpected = StatusWord(rawValue: 0x6883)
    /// `68 84` — Command chaining not supported.
    public static let commandChainingNotSupported = StatusWord(rawValue: 0x6884)
    /// `69 00` — Command not allowed, no information given.
    public static let commandNotAllowed = StatusWord(rawValue: 0x6900)
    /// `69 81` — Command incompatible with file structure.
    public static let incompatibleFileStructure = StatusWord(rawValue: 0x6981)
    /// `69 82` — Security status not satisfied (for example a PIN must be verified first).
    public static let securityStatusNotSatisfied = StatusWord(rawValue: 0x6982)
    /// `69 83` — Authentication method blocked (for VERIFY: the PIN is blocked).
    public static let authenticationMethodBlocked = StatusWord(rawValue: 0x6983)
    /// `69 84` — Reference data not usable.
    public static let referenceDataNotUsable = StatusWord(rawValue: 0x6984)
    /// `69 85` — Conditions of use not satisfied.
    public static let conditionsOfUseNotSatisfied = StatusWord(rawValue: 0x6985)
    /// `69 86` — Command not allowed (no current EF).
    public static let noCurrentEF = StatusWord(rawValue: 0x6986)
    /// `69 87` — Expected secure messaging data objects missing.
    public static let secureMessagingObjectsMissing = StatusWord(rawValue: 0x6987)
    /// `69 88` — Incorrect secure messaging data objects.
    public static let incorrectSecureMessagingObjects = StatusWord(rawValue: 0x6988)
    /// `6A 00` — Wrong parameters P1-P2, no information given.
    public static let wrongParametersNoInformation = StatusWord(rawValue: 0x6A00)
    /// `6A 80` — Incorrect parameters in the command data field.
    public static let incorrectData = StatusWord(rawValue: 0x6A80)
    /// `6A 81` — Function not supported.
    public static let functionNotSupported = StatusWord(rawValue: 0x6A81)
    /// `6A 82` — File or application not found.
    public static let fileNotFound = StatusWord(rawValue: 0x6A82)
    /// `6A 83` — Record not found.
    public static let recordNotFound = StatusWord(rawValue: 0x6A83)
    /// `6A 84` — Not enough memory space in the file.
    public static let notEnoughMemory = StatusWord(rawValue: 0x6A84)
    /// `6A 85` — Nc inconsistent with TLV structure.
    public static let ncInconsistentWithTLV = StatusWord(rawValue: 0x6A85)
    /// `6A 86` — Incorrect parameters P1-P2.
    public static let incorrectP1P2 = StatusWord(rawValue: 0x6A86)
    /// `6A 87` — Nc inconsistent with parameters P1-P2.
    public static let ncInconsistentWithP1P2 = StatusWord(rawValue: 0x6A87)
    /// `6A 88` — Referenced data or reference data not found.
    public static let referencedDataNotFound = StatusWord(rawValue: 0x6A88)
    /// `6A 89` — File already exists.
    public static let fileAlreadyExists = StatusWord(rawValue: 0x6A89)
    /// `6A 8A` — DF name already exists.
    public static let dfNameAlreadyExists = StatusWord(rawValue: 0x6A8A)
    /// `6B 00` — Wrong parameters P1-P2 (for READ BINARY: offset outside the EF).
    public static let wrongP1P2 = StatusWord(rawValue: 0x6B00)
    /// `6C xx` — Wrong Le field; `xx` is the exact number of available bytes (resend with Le = xx).
    public static func wrongLe(exact: Int) -> StatusWord { StatusWord(sw1: 0x6C, sw2: UInt8(truncatingIfNeeded: exact)) }
    /// `6D 00` — Instruction code not supported or invalid.
    public static let insNotSupported = StatusWord(rawValue: 0x6D00)
    /// `6E 00` — Class not supported.
    public static let claNotSupported = StatusWord(rawValue: 0x6E00)
    /// `6F 00` — No precise diagnosis.
    public static let noPreciseDiagnosis = StatusWord(rawValue: 0x6F00)

    // MARK: CPS2ter (class A0) — domain-facts §5.4, ANS card-cps.c

    /// `92 40` — CPS2ter: header corrupt (memory problem).
    public static let cps2terHeaderCorrupt = StatusWord(rawValue: 0x9240)
    /// `94 02` — CPS2ter: address or length out of range.
    public static let cps2terBadAddressOrLength = StatusWord(rawValue: 0x9402)
    /// `94 04` — CPS2ter: file not found.
    public static let cps2terFileNotFound = StatusWord(rawValue: 0x9404)
    /// `94 08` — CPS2ter: file incompatible with the command.
    public static let cps2terFileIncompatible = StatusWord(rawValue: 0x9408)
    /// `98 02` — CPS2ter: PIN not activated.
    public static let cps2terPINNotActivated = StatusWord(rawValue: 0x9802)
    /// `98 04` — CPS2ter: PIN incorrect (access condition not fulfilled).
    public static let cps2terPINIncorrect = StatusWord(rawValue: 0x9804)
    /// `98 08` — CPS2ter: PIN invalidated.
    public static let cps2terPINInvalidated = StatusWord(rawValue: 0x9808)
    /// `98 10` — CPS2ter: file invalidated.
    public static let cps2terFileInvalidated = StatusWord(rawValue: 0x9810)
    /// `98 40` — CPS2ter: PIN locked (too many wrong presentations).
    public static let cps2terPINLocked = StatusWord(rawValue: 0x9840)
    /// `9F xx` — CPS2ter: normal processing, `xx` response bytes available (fetch them with `A0 C0`).
    public static func cps2terBytesAvailable(_ count: Int) -> StatusWord { StatusWord(sw1: 0x9F, sw2: UInt8(truncatingIfNeeded: count)) }

    // MARK: Meaning

    /// An English sentence saying what the word means. Words no table knows are described by their
    /// ISO 7816-4 group (for example "checking error").
    public var meaning: String {
        if let known = StatusWord.meanings[rawValue] { return known }
        let x = Int(sw2)
        switch sw1 {
        case 0x61: return "Normal processing: \(x == 0 ? 256 : x) response bytes still available (GET RESPONSE)"
        case 0x9F: return "CPS2ter normal processing: \(x == 0 ? 256 : x) response bytes available (GET RESPONSE, class A0)"
        case 0x90: return "CPS2ter normal processing (90xx)"
        case 0x6C: return "Wrong Le field: resend with Le = \(x == 0 ? 256 : x)"
        case 0x63 where sw2 & 0xF0 == 0xC0:
            let tries = Int(sw2 & 0x0F)
            return tries == 0 ? "Verification failed: no try left (blocked)" : "Verification failed: \(tries) tr\(tries == 1 ? "y" : "ies") left"
        case 0x62: return "Warning: state of non-volatile memory unchanged"
        case 0x63: return "Warning: state of non-volatile memory changed"
        case 0x64: return "Execution error: state of non-volatile memory unchanged"
        case 0x65: return "Execution error: state of non-volatile memory changed"
        case 0x66: return "Execution error: security-related issue"
        case 0x67: return "Wrong length"
        case 0x68: return "Functions in CLA not supported"
        case 0x69: return "Command not allowed"
        case 0x6A: return "Wrong parameters P1-P2"
        case 0x6B: return "Wrong parameters P1-P2"
        case 0x6D: return "Instruction code not supported or invalid"
        case 0x6E: return "Class not supported"
        case 0x6F: return "No precise diagnosis"
        case 0x92, 0x94, 0x98: return "CPS2ter error"
        default: return "Unknown status word"
        }
    }

    private static let meanings: [UInt16: String] = [
        0x9000: "Normal processing",
        0x6200: "Warning: state of non-volatile memory unchanged, no information given",
        0x6281: "Warning: part of the returned data may be corrupted",
        0x6282: "Warning: end of file or record reached before reading Ne bytes",
        0x6283: "Warning: selected file deactivated",
        0x6284: "Warning: file control information not formatted according to ISO 7816-4",
        0x6285: "Warning: selected file in termination state",
        0x6286: "Warning: no input data available from a sensor on the card",
        0x6300: "Warning: state of non-volatile memory changed (verification failed)",
        0x6381: "Warning: file filled up by the last write",
        0x6400: "Execution error: state of non-volatile memory unchanged",
        0x6401: "Execution error: immediate response required by the card",
        0x6500: "Execution error: state of non-volatile memory changed",
        0x6581: "Execution error: memory failure",
        0x6700: "Wrong length",
        0x6800: "Functions in CLA not supported",
        0x6881: "Logical channel not supported",
        0x6882: "Secure messaging not supported",
        0x6883: "Last command of the chain expected",
        0x6884: "Command chaining not supported",
        0x6900: "Command not allowed, no information given",
        0x6981: "Command incompatible with file structure",
        0x6982: "Security status not satisfied",
        0x6983: "Authentication method blocked",
        0x6984: "Reference data not usable",
        0x6985: "Conditions of use not satisfied",
        0x6986: "Command not allowed (no current EF)",
        0x6987: "Expected secure messaging data objects missing",
        0x6988: "Incorrect secure messaging data objects",
        0x6A00: "Wrong parameters P1-P2, no information given",
        0x6A80: "Incorrect parameters in the command data field",
        0x6A81: "Function not supported",
        0x6A82: "File or application not found",
        0x6A83: "Record not found",
        0x6A84: "Not enough memory space in the file",
        0x6A85: "Nc inconsistent with TLV structure",
        0x6A86: "Incorrect parameters P1-P2",
        0x6A87: "Nc inconsistent with parameters P1-P2",
        0x6A88: "Referenced data or reference data not found",
        0x6A89: "File already exists",
        0x6A8A: "DF name already exists",
        0x6B00: "Wrong parameters P1-P2 (offset outside the EF)",
        0x6D00: "Instruction code not supported or invalid",
        0x6E00: "Class not supported",
        0x6F00: "No precise diagnosis",
        0x9240: "CPS2ter: header corrupt",
        0x9402: "CPS2ter: address or length out of range",
        0x9404: "CPS2ter: file not found",
        0x9408: "CPS2ter: file incompatible with the command",
        0x9802: "CPS2ter: PIN not activated",
        0x9804: "CPS2ter: PIN incorrect (access condition not fulfilled)",
        0x9808: "CPS2ter: PIN invalidated",
        0x9810: "CPS2ter: file invalidated",
        0x9840: "CPS2ter: PIN locked",
    ]
}

extension StatusWord: CustomStringConvertible {
    /// `"6A 82"`-style hexadecimal.
    public var description: String { "\(sw1.hex) \(sw2.hex)" }
}
