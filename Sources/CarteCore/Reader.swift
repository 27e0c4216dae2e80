/// One slot of a reader as applications see it. In PC/SC every slot is a reader of its own, named
/// `<friendly name> NN SS`; ``physicalReader`` groups the slots of one device (the two slots of a
/// *bi-fente* reader share it).
public struct ReaderInfo: Hashable, Sendable, Codable {
    /// The name used to connect (the PC/SC reader name).
    public var name: String
    /// Identifies the physical device the slot belongs to (same value for every slot of one device).
    public var physicalReader: String
    /// The slot index within the physical device (0-based).
    public var slot: Int
    /// How many slots the physical device has.
    public var slotCount: Int
    /// Whether the slot is contactless (ISO 14443).
    public var isContactless: Bool
    /// Vendor name (PC/SC `SCARD_ATTR_VENDOR_NAME`), when known.
    public var vendor: String?
    /// Firmware version (PC/SC `SCARD_ATTR_VENDOR_IFD_VERSION`, shown as `major.minor`), when known.
    public var firmwareVersion: String?
    /// Serial number (PC/SC `SCARD_ATTR_VENDOR_IFD_SERIAL_NO`), when known.
    public var serialNumber: String?
    /// Reader features (`pin-pad`, `extended-apdu`, …), when known.
    public var features: [String]
    /// What the slot is meant for on a health reader (`vitale`, `cpx`, `any`), when the profile says.
    public var role: String?

    /// Describes a slot; only the name and the physical reader are required.
    public init(
        name: String,
        physicalReader: String,
        slot: Int = 0,
        slotCount: Int = 1,
        isContactless: Bool = false,
        vendor: String? = nil,
        firmwareVersion: String? = nil,
        serialNumber: String? = nil,
        features: [String] = [],
        role: String? = nil
    ) {
        self.name = name
        self.physicalReader = physicalReader
        self.slot = slot
        self.slotCount = slotCount
        self.isContactless = isContactless
        self.vendor = vendor
        self.firmwareVersion = firmwareVersion
        self.serialNumber = serialNumber
        self.features = features
        self.role = role
    }
}

/// What is in a slot.
public enum SlotState: Hashable, Sendable {
    /// No card.
    case empty
    /// A card answered the reset with these ATR bytes (not necessarily a valid ATR).
    case present(atr: [UInt8])
    /// A card is inserted but does not answer the reset.
    case mute
}

/// A change seen on a reader backend.
public enum ReaderEvent: Hashable, Sendable {
    /// A reader (slot) appeared.
    case readerAdded(ReaderInfo)
    /// A reader (slot) disappeared.
    case readerRemoved(name: String)
    /// A card was inserted and answered with `atr`.
    case cardInserted(reader: String, atr: [UInt8])
    /// The card was removed.
    case cardRemoved(reader: String)
    /// A card was inserted but stays mute.
    case cardMute(reader: String)

    /// The reader name the event concerns.
    public var readerName: String {
        switch self {
        case .readerAdded(let info): return info.name
        case .readerRemoved(let name), .cardInserted(let name, _), .cardRemoved(let name), .cardMute(let name): return name
        }
    }
}

/// How a connection shares the card with other connections.
public enum ShareMode: String, Hashable, Sendable, CaseIterable {
    /// No other connection may use the card.
    case exclusive
    /// Other connections may use the card between transactions.
    case shared
    /// Talk to the reader without a card (control commands only).
    case direct
}

/// What happens to the card when a connection ends or reconnects.
public enum Disposition: String, Hashable, Sendable, CaseIterable {
    /// Leave the card as it is.
    case leave
    /// Warm reset.
    case reset
    /// Power down (cold reset on next use).
    case unpower
    /// Eject, when the reader can.
    case eject
}

/// An open connection to the card in one slot.
public protocol CardConnection: CardTransport {
    /// The slot's reader name.
    var readerName: String { get }
    /// The ATR bytes the card answered with when connected (or last reset).
    var atrBytes: [UInt8] { get async }
    /// The protocol in use.
    var activeProtocol: TransmissionProtocol { get async }
    /// Resets the card as `disposition` says and keeps the connection.
    func reconnect(share: ShareMode, initialization: Disposition) async throws(CardError)
    /// Ends the connection; further transmits fail with ``CardError/notConnected``.
    func disconnect(_ disposition: Disposition) async throws(CardError)
    /// The executor the connection's blocking calls run on, when it has one of its own (a PC/SC
    /// connection's thread). Code that runs with it as its task executor preference
    /// (`withTaskExecutorPreference`, as CarteKit's sessions do) reaches the card without a thread
    /// switch per APDU. `nil` (the default): no preference helps.
    var taskExecutor: (any TaskExecutor)? { get }
}

extension CardConnection {
    /// No executor of its own.
    public var taskExecutor: (any TaskExecutor)? { nil }
}

/// A source of readers: the PC/SC service, the in-memory simulator.
public protocol ReaderBackend: Sendable {
    /// The slots currently present.
    func readers() async throws(CardError) -> [ReaderInfo]
    /// What is in the slot named `reader`.
    func state(of reader: String) async throws(CardError) -> SlotState
    /// Connects to the card in the slot named `reader`.
    func connect(to reader: String, share: ShareMode, protocols: Set<TransmissionProtocol>) async throws(CardError) -> any CardConnection
    /// Reader and card events from now on. Each call returns a new independent sequence.
    func events() -> AsyncStream<ReaderEvent>
}
