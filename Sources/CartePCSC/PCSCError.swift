public import CarteCore

/// A PC/SC return code (`SCARD_*`), modelled on swift-system's `Errno`: a `RawRepresentable` struct so
/// that codes no table knows still round-trip. Each known code has its C name, an English meaning and a
/// remedy hint for the person at the keyboard.
public struct PCSCError: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The `LONG` return code as a 32-bit unsigned value (`0x8010001D`).
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Builds an error from the `LONG` value a PC/SC function returned.
    public init(code: Int) { self.rawValue = UInt32(truncatingIfNeeded: code) }

    /// The C constant name (`SCARD_E_NO_SERVICE`), or `SCARD_0x…` for an unknown code.
    public var name: String {
        if self == .notInstalled { return "PCSC_NOT_INSTALLED" }
        return PCSCError.table[rawValue]?.name ?? "SCARD_0x" + String(rawValue, radix: 16, uppercase: true)
    }
    /// What the code means.
    public var meaning: String {
        if self == .notInstalled { return "PC/SC is not installed: the PC/SC library could not be loaded" }
        return PCSCError.table[rawValue]?.meaning ?? "Unknown PC/SC error"
    }
    /// What to do about it.
    public var hint: String? { self == .notInstalled ? PCSCABI.current.installHint : PCSCError.table[rawValue]?.hint }
    /// `0x8010001D`.
    public var hex: String { "0x" + String(rawValue, radix: 16, uppercase: true).leftPadded(to: 8) }

    public var description: String {
        "\(name) (\(hex)): \(meaning)" + (hint.map { " — \($0)" } ?? "")
    }

    /// The reader-neutral ``CardError`` for this code, concerning `reader`.
    public func cardError(reader: String) -> CardError {
        switch self {
        case .noSmartcard: return .noCard(reader: reader)
        case .removedCard: return .cardRemoved(reader: reader)
        case .resetCard: return .cardReset(reader: reader)
        case .unresponsiveCard: return .cardMute(reader: reader, timeout: .zero)
        case .sharingViolation: return .sharingViolation(reader: reader)
        case .unknownReader, .readerUnavailable: return .readerUnavailable(reader: reader)
        case .cancelled: return .cancelled
        case .notInstalled:
            if case .failure(let unavailable) = PCSCProviders.system { return unavailable.cardError }
            return .backend(code: 0, name: "PCSC_NOT_INSTALLED", message: meaning)
        default: return .backend(code: Int(rawValue), name: name, message: meaning + (hint.map { " — \($0)" } ?? ""))
        }
    }

    /// The ``CardError`` for this code returned on an open card handle of `reader`: as ``cardError(reader:)``,
    /// except `SCARD_E_INVALID_VALUE`, which pcscd answers on a handle whose reader was removed (the
    /// handle's reader is no longer found; every parameter CarteKit passes there is valid by construction).
    public func connectionError(reader: String) -> CardError {
        self == .invalidValue ? .readerUnavailable(reader: reader) : cardError(reader: reader)
    }

    private struct Entry {
        let name: String
        let meaning: String
        let hint: String?
    }

    private static let table: [UInt32: Entry] = {
        var t: [UInt32: Entry] = [:]
        func add(_ code: UInt32, _ name: String, _ meaning: String, _ hint: String? = nil) { t[code] = Entry(name: name, meaning: meaning, hint: hint) }
        add(0x0000_0000, "SCARD_S_SUCCESS", "No error was encountered")
        add(0x8010_0001, "SCARD_F_INTERNAL_ERROR", "An internal consistency check failed", "look at the pcscd log (pcscd -f -d)")
        add(0x8010_0002, "SCARD_E_CANCELLED", "The action was cancelled by an SCardCancel request")
        add(0x8010_0003, "SCARD_E_INVALID_HANDLE", "The supplied handle was invalid", "the context or card handle is stale (pcscd restarted?): reconnect")
        add(0x8010_0004, "SCARD_E_INVALID_PARAMETER", "One or more of the supplied parameters could not be properly interpreted")
        add(0x8010_0005, "SCARD_E_INVALID_TARGET", "Registry startup information is missing or invalid")
        add(0x8010_0006, "SCARD_E_NO_MEMORY", "Not enough memory available to complete this command")
        add(0x8010_0007, "SCARD_F_WAITED_TOO_LONG", "An internal consistency timer has expired")
        add(0x8010_0008, "SCARD_E_INSUFFICIENT_BUFFER", "The data buffer to receive returned data is too small for the returned data")
        add(0x8010_0009, "SCARD_E_UNKNOWN_READER", "The specified reader name is not recognized", "list the readers again: it was unplugged or renamed")
        add(0x8010_000A, "SCARD_E_TIMEOUT", "The user-specified timeout value has expired")
        add(0x8010_000B, "SCARD_E_SHARING_VIOLATION", "The smart card cannot be accessed because of other connections outstanding",
            "another program holds the card exclusively (gpg scdaemon, gsd-smartcard, another health application): close it")
        add(0x8010_000C, "SCARD_E_NO_SMARTCARD", "The operation requires a smart card, but no smart card is currently in the device", "insert the card")
        add(0x8010_000D, "SCARD_E_UNKNOWN_CARD", "The specified smart card name is not recognized")
        add(0x8010_000E, "SCARD_E_CANT_DISPOSE", "The system could not dispose of the media in the requested manner")
        add(0x8010_000F, "SCARD_E_PROTO_MISMATCH", "The requested protocols are incompatible with the protocol currently in use with the smart card",
            "another connection fixed a different protocol: ask for T=0 and T=1")
        add(0x8010_0010, "SCARD_E_NOT_READY", "The reader or smart card is not ready to accept commands")
        add(0x8010_0011, "SCARD_E_INVALID_VALUE", "One or more of the supplied parameter values could not be properly interpreted")
        add(0x8010_0012, "SCARD_E_SYSTEM_CANCELLED", "The action was cancelled by the system, presumably to log off or shut down")
        add(0x8010_0013, "SCARD_F_COMM_ERROR", "An internal communications error has been detected", "the reader or its driver failed: unplug and replug the reader")
        add(0x8010_0014, "SCARD_F_UNKNOWN_ERROR", "An internal error has been detected, but the source is unknown")
        add(0x8010_0015, "SCARD_E_INVALID_ATR", "An ATR obtained from the registry is not a valid ATR string")
        add(0x8010_0016, "SCARD_E_NOT_TRANSACTED", "An attempt was made to end a non-existent transaction")
        add(0x8010_0017, "SCARD_E_READER_UNAVAILABLE", "The specified reader is not currently available for use", "the reader was unplugged or its driver stopped")
        add(0x8010_0018, "SCARD_P_SHUTDOWN", "The operation has been aborted to allow the server application to exit")
        add(0x8010_0019, "SCARD_E_PCI_TOO_SMALL", "The PCI receive buffer was too small")
        add(0x8010_001A, "SCARD_E_READER_UNSUPPORTED", "The reader driver does not meet minimal requirements for support")
        add(0x8010_001B, "SCARD_E_DUPLICATE_READER", "The reader driver did not produce a unique reader name")
        add(0x8010_001C, "SCARD_E_CARD_UNSUPPORTED", "The smart card does not meet minimal requirements for support")
        add(0x8010_001D, "SCARD_E_NO_SERVICE", "The smart card resource manager is not running",
            "pcscd is not running: start it (systemctl start pcscd.socket) or install it (apt-get install pcscd)")
        add(0x8010_001E, "SCARD_E_SERVICE_STOPPED", "The smart card resource manager has shut down", "pcscd stopped (auto-exit or crash): CarteKit reconnects when it is back")
        add(0x8010_001F, "SCARD_E_UNSUPPORTED_FEATURE", "This smart card or reader does not support the requested feature")
        add(0x8010_0020, "SCARD_E_ICC_INSTALLATION", "No primary provider can be found for the smart card")
        add(0x8010_0021, "SCARD_E_ICC_CREATEORDER", "The requested order of object creation is not supported")
        add(0x8010_0023, "SCARD_E_DIR_NOT_FOUND", "The identified directory does not exist in the smart card")
        add(0x8010_0024, "SCARD_E_FILE_NOT_FOUND", "The identified file does not exist in the smart card")
        add(0x8010_0025, "SCARD_E_NO_DIR", "The supplied path does not represent a smart card directory")
        add(0x8010_0026, "SCARD_E_NO_FILE", "The supplied path does not represent a smart card file")
        add(0x8010_0027, "SCARD_E_NO_ACCESS", "Access is denied to this file")
        add(0x8010_0028, "SCARD_E_WRITE_TOO_MANY", "The smart card does not have enough memory to store the information")
        add(0x8010_0029, "SCARD_E_BAD_SEEK", "There was an error trying to set the smart card file object pointer")
        add(0x8010_002A, "SCARD_E_INVALID_CHV", "The supplied PIN is incorrect")
        add(0x8010_002B, "SCARD_E_UNKNOWN_RES_MNG", "An unrecognized error code was returned from a layered component")
        add(0x8010_002C, "SCARD_E_NO_SUCH_CERTIFICATE", "The requested certificate does not exist")
        add(0x8010_002D, "SCARD_E_CERTIFICATE_UNAVAILABLE", "The requested certificate could not be obtained")
        add(0x8010_002E, "SCARD_E_NO_READERS_AVAILABLE", "Cannot find a smart card reader",
            "plug in a reader; if it is plugged in, check `carte doctor` (USB id, udev rules, driver)")
        add(0x8010_002F, "SCARD_E_COMM_DATA_LOST", "A communications error with the smart card has been detected", "retry the operation")
        add(0x8010_0030, "SCARD_E_NO_KEY_CONTAINER", "The requested key container does not exist on the smart card")
        add(0x8010_0031, "SCARD_E_SERVER_TOO_BUSY", "The smart card resource manager is too busy to complete this operation", "retry shortly")
        add(0x8010_0065, "SCARD_W_UNSUPPORTED_CARD", "The reader cannot communicate with the card, due to ATR string configuration conflicts")
        add(0x8010_0066, "SCARD_W_UNRESPONSIVE_CARD", "The smart card is not responding to a reset",
            "the card is mute: remove it, check its orientation and contacts, insert it again")
        add(0x8010_0067, "SCARD_W_UNPOWERED_CARD", "Power has been removed from the smart card, so that further communication is not possible", "reconnect")
        add(0x8010_0068, "SCARD_W_RESET_CARD", "The smart card has been reset, so any shared state information is invalid",
            "another program reset the card: reconnect (a verified PIN must be presented again)")
        add(0x8010_0069, "SCARD_W_REMOVED_CARD", "The smart card has been removed, so further communication is not possible", "insert the card again")
        add(0x8010_006A, "SCARD_W_SECURITY_VIOLATION", "Access was denied because of a security violation",
            "polkit refused access to pcscd (\"NOT authorized for action: access_pcsc\"): add a polkit rule for this user or run from a local session")
        add(0x8010_006B, "SCARD_W_WRONG_CHV", "The card cannot be accessed because the wrong PIN was presented")
        add(0x8010_006C, "SCARD_W_CHV_BLOCKED", "The card cannot be accessed because the maximum number of PIN entry attempts has been reached")
        add(0x8010_006D, "SCARD_W_EOF", "The end of the smart card file has been reached")
        add(0x8010_006E, "SCARD_W_CANCELLED_BY_USER", "The user pressed \"Cancel\" on a smart card selection dialog")
        add(0x8010_006F, "SCARD_W_CARD_NOT_AUTHENTICATED", "No PIN was presented to the smart card")
        return t
    }()

    // MARK: Named codes (the C constants)

    /// Not a PC/SC code: CarteKit's own for "the PC/SC library could not be loaded" (libpcsclite.so.1,
    /// winscard.dll or PCSC.framework missing); ``cardError(reader:)`` turns it into
    /// ``CardError/backend(code:name:message:)`` named `PCSC_NOT_INSTALLED` with the loader's messages.
    public static let notInstalled = PCSCError(rawValue: 0x0000_FFFE)
    /// `SCARD_E_CANCELLED`.
    public static let cancelled = PCSCError(rawValue: 0x8010_0002)
    /// `SCARD_E_INVALID_VALUE`.
    public static let invalidValue = PCSCError(rawValue: 0x8010_0011)
    /// `SCARD_E_INVALID_HANDLE`.
    public static let invalidHandle = PCSCError(rawValue: 0x8010_0003)
    /// `SCARD_E_INSUFFICIENT_BUFFER`.
    public static let insufficientBuffer = PCSCError(rawValue: 0x8010_0008)
    /// `SCARD_E_UNKNOWN_READER`.
    public static let unknownReader = PCSCError(rawValue: 0x8010_0009)
    /// `SCARD_E_TIMEOUT`.
    public static let timeout = PCSCError(rawValue: 0x8010_000A)
    /// `SCARD_E_SHARING_VIOLATION`.
    public static let sharingViolation = PCSCError(rawValue: 0x8010_000B)
    /// `SCARD_E_NO_SMARTCARD`.
    public static let noSmartcard = PCSCError(rawValue: 0x8010_000C)
    /// `SCARD_E_PROTO_MISMATCH`.
    public static let protocolMismatch = PCSCError(rawValue: 0x8010_000F)
    /// `SCARD_F_COMM_ERROR`.
    public static let commError = PCSCError(rawValue: 0x8010_0013)
    /// `SCARD_E_NOT_TRANSACTED`.
    public static let notTransacted = PCSCError(rawValue: 0x8010_0016)
    /// `SCARD_E_READER_UNAVAILABLE`.
    public static let readerUnavailable = PCSCError(rawValue: 0x8010_0017)
    /// `SCARD_E_NO_SERVICE`.
    public static let noService = PCSCError(rawValue: 0x8010_001D)
    /// `SCARD_E_SERVICE_STOPPED`.
    public static let serviceStopped = PCSCError(rawValue: 0x8010_001E)
    /// `SCARD_E_UNSUPPORTED_FEATURE`.
    public static let unsupportedFeature = PCSCError(rawValue: 0x8010_001F)
    /// `SCARD_E_NO_READERS_AVAILABLE`.
    public static let noReadersAvailable = PCSCError(rawValue: 0x8010_002E)
    /// `SCARD_W_UNRESPONSIVE_CARD`.
    public static let unresponsiveCard = PCSCError(rawValue: 0x8010_0066)
    /// `SCARD_W_UNPOWERED_CARD`.
    public static let unpoweredCard = PCSCError(rawValue: 0x8010_0067)
    /// `SCARD_W_RESET_CARD`.
    public static let resetCard = PCSCError(rawValue: 0x8010_0068)
    /// `SCARD_W_REMOVED_CARD`.
    public static let removedCard = PCSCError(rawValue: 0x8010_0069)
    /// `SCARD_W_SECURITY_VIOLATION`.
    public static let securityViolation = PCSCError(rawValue: 0x8010_006A)

    /// Whether the code means the resource manager is gone (the context must be re-established).
    /// A passing communication error (`SCARD_F_COMM_ERROR`) does not: it must not tear a live
    /// connection down.
    public var meansServiceGone: Bool { self == .noService || self == .serviceStopped || self == .invalidHandle }

    /// Every code the table knows (for documentation and tests).
    public static var allKnown: [PCSCError] { table.keys.sorted().map(PCSCError.init(rawValue:)) }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
