/// How one PC/SC implementation lays out its types and names its functions: pcsc-lite on Linux,
/// WinSCard on Windows, PCSC.framework on macOS.
///
/// Everything CartePCSC hands to or reads from the PC/SC library goes through this description (the
/// marshalling in ``PCSCMarshal`` writes and reads the C structures byte by byte from it), so the three
/// platforms differ by data, not by code, and all three layouts are tested on Linux. The values come
/// from each platform's public header (pcsc-lite `winscard.h`/`pcsclite.h`/`reader.h`, Apple's
/// SmartCardServices `PCSC/*.h`, mingw-w64's `winscard.h`/`winsmcrd.h`/`scarderr.h`); docs/platforms.md
/// says which were checked against a real library (Linux only) and which were not.
public struct PCSCABI: Hashable, Sendable {
    /// The platform described.
    public var platform: PCSCPlatform
    /// `sizeof(DWORD)` and `sizeof(LONG)`: 8 on 64-bit Linux (`unsigned long`), 4 on Windows and macOS.
    public var wordSize: Int
    /// `sizeof(SCARDCONTEXT)` and `sizeof(SCARDHANDLE)`: 8 on Linux and Windows x64, 4 on macOS (`int32_t`).
    public var handleSize: Int
    /// `sizeof(void *)`.
    public var pointerSize: Int
    /// The layout of `SCARD_READERSTATE`.
    public var readerState: ReaderStateLayout
    /// The layout of `SCARD_IO_REQUEST`.
    public var ioRequest: IORequestLayout
    /// `SCARD_PROTOCOL_RAW` (`0x4`, Windows `0x10000`); T=0 and T=1 are 1 and 2 everywhere.
    public var protocolRaw: UInt32
    /// The value this platform uses for `SCARD_E_UNSUPPORTED_FEATURE` (Windows `0x80100022`).
    public var unsupportedFeatureCode: UInt32
    /// Whether `SCardStatus` reports the card's state as an enumeration 0…6 (Windows) rather than a bit mask.
    public var statusIsEnumeration: Bool
    /// How strings (reader names) are passed.
    public var encoding: StringEncoding
    /// The exported name of each function used.
    public var symbols: [PCSCFunction: String]
    /// Where the library is looked for, in order.
    public var libraryCandidates: [String]
    /// What to install when none is found.
    public var installHint: String

    /// The character type of PC/SC strings.
    public enum StringEncoding: String, Hashable, Sendable {
        /// `char *`, UTF-8 (pcsc-lite, PCSC.framework).
        case utf8
        /// `WCHAR *`, UTF-16 little-endian (the Windows `…W` functions; counts are in `WCHAR`s).
        case utf16LittleEndian

        /// Bytes per character unit.
        public var unitSize: Int { self == .utf8 ? 1 : 2 }
    }

    /// Field offsets and size of `SCARD_READERSTATE` (an array's stride is ``size``).
    public struct ReaderStateLayout: Hashable, Sendable {
        /// `sizeof(SCARD_READERSTATE)`.
        public var size: Int
        /// The alignment of the structure (1 when packed).
        public var alignment: Int
        /// `szReader`.
        public var readerOffset: Int
        /// `pvUserData`.
        public var userDataOffset: Int
        /// `dwCurrentState`.
        public var currentStateOffset: Int
        /// `dwEventState`.
        public var eventStateOffset: Int
        /// `cbAtr`.
        public var atrLengthOffset: Int
        /// `rgbAtr`.
        public var atrOffset: Int
        /// The capacity of `rgbAtr` (33, Windows 36).
        public var atrCapacity: Int
    }

    /// Field offsets and size of `SCARD_IO_REQUEST`.
    public struct IORequestLayout: Hashable, Sendable {
        /// `sizeof(SCARD_IO_REQUEST)`.
        public var size: Int
        /// `dwProtocol`.
        public var protocolOffset: Int
        /// `cbPciLength`.
        public var lengthOffset: Int
    }

    /// `SCARD_CTL_CODE(function)`: `0x42000000 + function` (pcsc-lite, macOS), Windows
    /// `CTL_CODE(FILE_DEVICE_SMARTCARD, function, METHOD_BUFFERED, FILE_ANY_ACCESS)` = `0x00310000 | function << 2`.
    public func controlCode(_ function: UInt32) -> UInt32 {
        platform == .windows ? 0x0031_0000 | (function << 2) : 0x4200_0000 &+ function
    }

    /// `CM_IOCTL_GET_FEATURE_REQUEST` (`SCARD_CTL_CODE(3400)`).
    public var getFeatureRequest: UInt32 { controlCode(3400) }

    /// A returned `LONG` as CarteKit's canonical code: the 32-bit pattern (`0x8010001D` whether the
    /// platform's `LONG` is a positive 64-bit value or a negative `Int32`), with this platform's own
    /// numbering mapped onto pcsc-lite's where they differ (Windows `SCARD_E_UNSUPPORTED_FEATURE`).
    public func normalise(_ returned: Int64) -> UInt32 {
        let code = UInt32(truncatingIfNeeded: returned)
        if code == unsupportedFeatureCode { return PCSCError.unsupportedFeature.rawValue }
        return code
    }

    /// The canonical card state of an `SCardStatus` `dwState`, as pcsc-lite's bit mask
    /// (`SCARD_ABSENT` 0x2 … `SCARD_SPECIFIC` 0x40): Windows's enumeration 0…6 becomes the bit of the same rank.
    public func normaliseCardStatus(_ state: UInt32) -> UInt32 {
        guard statusIsEnumeration else { return state }
        return state <= 6 ? 1 << state : 0
    }

    /// pcsc-lite on 64-bit Linux (the only platform run here).
    public static let linux = PCSCABI(
        platform: .linux, wordSize: 8, handleSize: 8, pointerSize: 8,
        readerState: ReaderStateLayout(size: 80, alignment: 8, readerOffset: 0, userDataOffset: 8, currentStateOffset: 16,
                                       eventStateOffset: 24, atrLengthOffset: 32, atrOffset: 40, atrCapacity: 33),
        ioRequest: IORequestLayout(size: 16, protocolOffset: 0, lengthOffset: 8),
        protocolRaw: 0x4, unsupportedFeatureCode: 0x8010_001F, statusIsEnumeration: false, encoding: .utf8,
        symbols: PCSCFunction.plainNames, libraryCandidates: ["libpcsclite.so.1", "libpcsclite.so"],
        installHint: "install pcsc-lite (Debian/Ubuntu: apt-get install libpcsclite1 pcscd; Fedora: dnf install pcsc-lite)")

    /// WinSCard on 64-bit Windows (written from the headers, not run).
    public static let windows = PCSCABI(
        platform: .windows, wordSize: 4, handleSize: 8, pointerSize: 8,
        readerState: ReaderStateLayout(size: 64, alignment: 8, readerOffset: 0, userDataOffset: 8, currentStateOffset: 16,
                                       eventStateOffset: 20, atrLengthOffset: 24, atrOffset: 28, atrCapacity: 36),
        ioRequest: IORequestLayout(size: 8, protocolOffset: 0, lengthOffset: 4),
        protocolRaw: 0x10000, unsupportedFeatureCode: 0x8010_0022, statusIsEnumeration: true, encoding: .utf16LittleEndian,
        symbols: PCSCFunction.plainNames.merging([
            .listReaders: "SCardListReadersW", .getStatusChange: "SCardGetStatusChangeW",
            .connect: "SCardConnectW", .status: "SCardStatusW",
        ]) { $1 },
        libraryCandidates: ["winscard.dll"],
        installHint: "winscard.dll ships with Windows: check that the Smart Card service (SCardSvr) is not disabled")

    /// PCSC.framework on 64-bit macOS (written from the headers, not run).
    public static let macOS = PCSCABI(
        platform: .macOS, wordSize: 4, handleSize: 4, pointerSize: 8,
        readerState: ReaderStateLayout(size: 61, alignment: 1, readerOffset: 0, userDataOffset: 8, currentStateOffset: 16,
                                       eventStateOffset: 20, atrLengthOffset: 24, atrOffset: 28, atrCapacity: 33),
        ioRequest: IORequestLayout(size: 8, protocolOffset: 0, lengthOffset: 4),
        protocolRaw: 0x4, unsupportedFeatureCode: 0x8010_001F, statusIsEnumeration: false, encoding: .utf8,
        symbols: PCSCFunction.plainNames.merging([.control: "SCardControl132"]) { $1 },
        libraryCandidates: ["/System/Library/Frameworks/PCSC.framework/PCSC"],
        installHint: "PCSC.framework ships with macOS")

    /// The description of the platform this build runs on.
    public static var current: PCSCABI {
        #if os(Windows)
        return .windows
        #elseif canImport(Darwin)
        return .macOS
        #else
        return .linux
        #endif
    }
}

/// The three PC/SC implementations.
public enum PCSCPlatform: String, Hashable, Sendable, CaseIterable {
    /// pcsc-lite (libpcsclite.so.1 talking to pcscd).
    case linux
    /// WinSCard (winscard.dll talking to the Smart Card service).
    case windows
    /// PCSC.framework (a layer over CryptoTokenKit).
    case macOS

    /// The platform's ABI description.
    public var abi: PCSCABI {
        switch self {
        case .linux: return .linux
        case .windows: return .windows
        case .macOS: return .macOS
        }
    }

    /// The platform's behaviour description.
    public var behaviour: PCSCBehaviour {
        switch self {
        case .linux: return .linux
        case .windows: return .windows
        case .macOS: return .macOS
        }
    }
}

/// The PC/SC functions CartePCSC calls.
public enum PCSCFunction: String, Hashable, Sendable, CaseIterable {
    /// `SCardEstablishContext`.
    case establishContext
    /// `SCardReleaseContext`.
    case releaseContext
    /// `SCardCancel`.
    case cancel
    /// `SCardListReaders` (Windows: `SCardListReadersW`).
    case listReaders
    /// `SCardGetStatusChange` (Windows: `SCardGetStatusChangeW`).
    case getStatusChange
    /// `SCardConnect` (Windows: `SCardConnectW`).
    case connect
    /// `SCardReconnect`.
    case reconnect
    /// `SCardDisconnect`.
    case disconnect
    /// `SCardBeginTransaction`.
    case beginTransaction
    /// `SCardEndTransaction`.
    case endTransaction
    /// `SCardTransmit`.
    case transmit
    /// `SCardControl` (macOS: `SCardControl132`).
    case control
    /// `SCardStatus` (Windows: `SCardStatusW`).
    case status
    /// `SCardGetAttrib`.
    case getAttrib

    /// The names pcsc-lite exports (`SCardConnect`, …).
    public static let plainNames: [PCSCFunction: String] = Dictionary(uniqueKeysWithValues: allCases.map { f in
        let name = f.rawValue
        return (f, "SCard" + name.prefix(1).uppercased() + name.dropFirst())
    })
}

/// How one PC/SC implementation behaves where the standard leaves room, and what CartePCSC does about it.
public struct PCSCBehaviour: Hashable, Sendable {
    /// How reader arrivals and departures are learnt.
    public var plugAndPlay: PlugAndPlay
    /// Whether the service stops when the last reader leaves (Windows 8 and later): existing contexts
    /// then get `SCARD_E_SERVICE_STOPPED`, new ones `SCARD_E_NO_SERVICE` until a reader arrives. CartePCSC
    /// releases and re-establishes its contexts, and reports "no reader" rather than an error.
    public var serviceStopsWithLastReader: Bool
    /// Whether `SCARD_W_RESET_CARD` may mean the card was swapped (macOS reports a swap so): a
    /// connection then treats it as a removal (its session ends) instead of reconnecting to a card that
    /// may be another one.
    public var resetMayMeanSwap: Bool
    /// Whether `SCardTransmit` silently truncates a response longer than the buffer (macOS) instead of
    /// failing with `SCARD_E_INSUFFICIENT_BUFFER`: a response filling the whole buffer is then refused.
    public var truncatesLongResponses: Bool
    /// How many times a connection refused with `SCARD_E_SHARING_VIOLATION` is tried again (macOS
    /// reports it while CryptoTokenKit briefly holds a new card; eid-mw tries three times).
    public var sharingViolationRetries: Int
    /// How long the event monitor waits per round (and sleeps when there is nothing to wait on), in milliseconds.
    public var waitMilliseconds: UInt32

    /// The ways of learning about readers.
    public enum PlugAndPlay: String, Hashable, Sendable {
        /// `\\?PnP?\Notification` with pcsc-lite's rule: the previous `dwEventState` is passed back
        /// (its upper 16 bits count the reader events).
        case eventCounter
        /// `\\?PnP?\Notification` with Windows's rule: the upper 16 bits of `dwCurrentState` must hold
        /// the number of readers, or the call returns at once.
        case readerCount
        /// No notification reader (macOS): `SCardListReaders` is polled every round.
        case polling
    }

    /// pcsc-lite.
    public static let linux = PCSCBehaviour(plugAndPlay: .eventCounter, serviceStopsWithLastReader: false, resetMayMeanSwap: false,
                                            truncatesLongResponses: false, sharingViolationRetries: 0, waitMilliseconds: 1_000)
    /// Windows (not run).
    public static let windows = PCSCBehaviour(plugAndPlay: .readerCount, serviceStopsWithLastReader: true, resetMayMeanSwap: false,
                                              truncatesLongResponses: false, sharingViolationRetries: 0, waitMilliseconds: 1_000)
    /// macOS (not run).
    public static let macOS = PCSCBehaviour(plugAndPlay: .polling, serviceStopsWithLastReader: false, resetMayMeanSwap: true,
                                            truncatesLongResponses: true, sharingViolationRetries: 3, waitMilliseconds: 1_000)
}
