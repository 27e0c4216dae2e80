public import CarteCore
public import Logging
import Synchronization

/// What a reader says about itself through PC/SC attributes and its feature list.
public struct PCSCReaderAttributes: Hashable, Sendable {
    /// `SCARD_ATTR_VENDOR_NAME`.
    public var vendor: String?
    /// `SCARD_ATTR_VENDOR_IFD_TYPE` (the model).
    public var model: String?
    /// `SCARD_ATTR_VENDOR_IFD_VERSION` as sent (`0xMMmmbbbb`; USB readers: `bcdDevice << 16`).
    public var ifdVersion: UInt32?
    /// `SCARD_ATTR_VENDOR_IFD_SERIAL_NO`.
    public var serialNumber: String?
    /// `SCARD_ATTR_CHANNEL_ID` (`0xDDDDCCCC`: DDDD channel type, 0x0020 = USB).
    public var channelID: UInt32?
    /// `SCARD_ATTR_MAXINPUT`.
    public var maxInput: UInt32?
    /// The features from `CM_IOCTL_GET_FEATURE_REQUEST`: feature tag → control code.
    public var features: [UInt8: UInt32]
    /// `dwMaxAPDUDataSize` from `FEATURE_GET_TLV_PROPERTIES` (0: short APDUs only; 0x10000: extended).
    public var maxAPDUDataSize: UInt32?
    /// `wIdVendor` / `wIdProduct` from `FEATURE_GET_TLV_PROPERTIES` (USB readers).
    public var usbVendorID: UInt16?
    /// See ``usbVendorID``.
    public var usbProductID: UInt16?
    /// The PIN pad the features, `FEATURE_IFD_PIN_PROPERTIES` and TLV properties describe, if any.
    public var pinPad: PINPadCapabilities?

    /// Attributes with only a feature list (the rest filled in as they are read).
    public init(features: [UInt8: UInt32]) { self.features = features }

    /// The firmware version as `major.minor` (`0x01080000` → `1.08`), when the reader reports one.
    public var firmwareVersion: String? {
        guard let v = ifdVersion else { return nil }
        let major = (v >> 24) & 0xFF
        let minor = (v >> 16) & 0xFF
        let bcdLike = minor >> 4 <= 9 && minor & 0x0F <= 9
        let minorText = bcdLike ? String(minor >> 4) + String(minor & 0x0F) : (minor < 10 ? "0\(minor)" : "\(minor)")
        return "\(bcdLike ? String(major, radix: 16) : String(major)).\(minorText)"
    }

    /// Feature names for reports (`pin-verify`, `tlv-properties`, …).
    public var featureNames: [String] {
        features.keys.sorted().map { PCSCFeature.name(of: $0) }
    }
}

/// PC/SC part 10 feature tags (`FEATURE_*`); the codes and decoders live in ``Part10`` (CarteCore).
public enum PCSCFeature {
    /// `FEATURE_VERIFY_PIN_DIRECT`.
    public static let verifyPINDirect = Part10.Feature.verifyPINDirect
    /// `FEATURE_MODIFY_PIN_DIRECT`.
    public static let modifyPINDirect = Part10.Feature.modifyPINDirect
    /// `FEATURE_IFD_PIN_PROPERTIES`.
    public static let ifdPINProperties = Part10.Feature.ifdPINProperties
    /// `FEATURE_GET_TLV_PROPERTIES`.
    public static let getTLVProperties = Part10.Feature.getTLVProperties
    /// `FEATURE_CCID_ESC_COMMAND`.
    public static let ccidEscapeCommand = Part10.Feature.ccidEscapeCommand

    /// `CM_IOCTL_GET_FEATURE_REQUEST` = `SCARD_CTL_CODE(3400)` on pcsc-lite (`0x42000000 + code`).
    public static let getFeatureRequest = Part10.getFeatureRequest

    /// A short name for a feature tag.
    public static func name(of tag: UInt8) -> String {
        switch tag {
        case 0x01: return "verify-pin-start"
        case 0x02: return "verify-pin-finish"
        case 0x03: return "modify-pin-start"
        case 0x04: return "modify-pin-finish"
        case 0x05: return "get-key-pressed"
        case 0x06: return "pin-verify"
        case 0x07: return "pin-modify"
        case 0x08: return "mct-reader-direct"
        case 0x09: return "mct-universal"
        case 0x0A: return "ifd-pin-properties"
        case 0x0B: return "abort"
        case 0x0C: return "set-spe-message"
        case 0x0D: return "verify-pin-direct-app-id"
        case 0x0E: return "modify-pin-direct-app-id"
        case 0x0F: return "write-display"
        case 0x10: return "get-key"
        case 0x11: return "ifd-display-properties"
        case 0x12: return "tlv-properties"
        case 0x13: return "ccid-escape"
        default: return "feature-\(tag.hex)"
        }
    }

    /// Decodes a `FEATURE_GET_TLV_PROPERTIES` answer (see ``Part10/decodeProperties(_:)``).
    public static func decodeTLVProperties(_ bytes: [UInt8]) -> [UInt8: [UInt8]] { Part10.decodeProperties(bytes) }

    /// Decodes a `CM_IOCTL_GET_FEATURE_REQUEST` answer (see ``Part10/decodeFeatureList(_:)``).
    public static func decodeFeatureList(_ bytes: [UInt8]) -> [UInt8: UInt32] { Part10.decodeFeatureList(bytes) }
}

/// PC/SC attribute identifiers used by CarteKit (pcsc-lite `reader.h`).
public enum PCSCAttribute {
    /// `SCARD_ATTR_VENDOR_NAME`.
    public static let vendorName: UInt32 = 0x0001_0100
    /// `SCARD_ATTR_VENDOR_IFD_TYPE`.
    public static let vendorIFDType: UInt32 = 0x0001_0101
    /// `SCARD_ATTR_VENDOR_IFD_VERSION`.
    public static let vendorIFDVersion: UInt32 = 0x0001_0102
    /// `SCARD_ATTR_VENDOR_IFD_SERIAL_NO`.
    public static let vendorIFDSerialNumber: UInt32 = 0x0001_0103
    /// `SCARD_ATTR_CHANNEL_ID`.
    public static let channelID: UInt32 = 0x0002_0110
    /// `SCARD_ATTR_MAXINPUT`.
    public static let maxInput: UInt32 = 0x0007_A007
    /// `SCARD_ATTR_ATR_STRING`.
    public static let atrString: UInt32 = 0x0009_0303
}

/// The PC/SC backend: readers, connections and events through pcscd (libpcsclite).
///
/// Every blocking call runs on a dedicated thread with its own context (see ``PCSCContext``); when pcscd
/// is restarted, contexts are re-established transparently and the event stream re-lists the readers.
public final class PCSCBackend: ReaderBackend {
    /// The pseudo-reader that reports reader arrivals and departures in `SCardGetStatusChange`.
    public static let pnpNotification = "\\\\?PnP?\\Notification"

    private let context: PCSCContext
    private let attributeCache = Mutex<[String: PCSCReaderAttributes]>([:])
    let logger: Logger
    /// The PC/SC library (or why there is none).
    let provider: Result<any PCSCProvider, PCSCUnavailable>

    /// Creates a backend over the platform's PC/SC library (libpcsclite.so.1 on Linux, loaded at run
    /// time on first use; `CARTEKIT_PCSC_LIBRARY` names another file). Nothing touches the service until
    /// the first call; without the library every call fails with ``PCSCUnavailable/cardError``
    /// ("PC/SC is not installed").
    public convenience init(logger: Logger = Logger(label: "cartekit.pcsc", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.init(loaded: PCSCProviders.system, logger: logger)
    }

    /// A backend over `provider` (a scripted one in the tests).
    package convenience init(provider: any PCSCProvider, logger: Logger = Logger(label: "cartekit.pcsc", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.init(loaded: .success(provider), logger: logger)
    }

    package init(loaded: Result<any PCSCProvider, PCSCUnavailable>, logger: Logger) {
        self.provider = loaded
        self.logger = logger
        self.context = PCSCContext(name: "cartekit.pcsc.main", provider: loaded)
    }

    /// Why the PC/SC library could not be loaded, or `nil` when it was (loading it if not done yet).
    public var unavailability: PCSCUnavailable? {
        if case .failure(let e) = provider { return e }
        return nil
    }

    /// The platform description in use (this build's platform when no library could be loaded).
    public var abi: PCSCABI {
        if case .success(let p) = provider { return p.abi }
        return .current
    }

    /// The reader names pcscd knows (an empty list when there is none).
    public func readerNames() async throws(CardError) -> [String] {
        let result = await context.call { p, ctx -> Result<[String], PCSCError> in listReaders(p, ctx) }
        switch result {
        case .success(let names): return names
        case .failure(let e) where (e == .noService || e == .serviceStopped) && (try? provider.get())?.behaviour.serviceStopsWithLastReader == true:
            // Windows stops its service when the last reader leaves: that is "no reader", not an error.
            return []
        case .failure(let e): throw cardError(e, reader: "")
        }
    }

    /// Every reader pcscd knows, with its attributes (read once per reader and cached).
    public func readers() async throws(CardError) -> [ReaderInfo] {
        let names = try await readerNames()
        // A reader that went away may come back under the same name as another model: read again.
        attributeCache.withLock { cache in cache = cache.filter { names.contains($0.key) } }
        var out: [ReaderInfo] = []
        for name in names {
            let attributes = await self.attributes(of: name)
            out.append(PCSCBackend.info(name: name, all: names, attributes: attributes))
        }
        return out
    }

    /// Builds a ``ReaderInfo`` from a pcsc-lite reader name (`<friendly name> NN SS`) and attributes.
    static func info(name: String, all: [String], attributes: PCSCReaderAttributes?) -> ReaderInfo {
        let (physical, slot) = splitReaderName(name)
        let slotCount = max(1, all.filter { splitReaderName($0).physical == physical }.count)
        var features = attributes?.featureNames ?? []
        if let max = attributes?.maxAPDUDataSize, max > 0 { features.append("extended-apdu") }
        features.sort()
        return ReaderInfo(
            name: name, physicalReader: physical, slot: slot, slotCount: slotCount,
            isContactless: name.localizedContactless,
            vendor: attributes?.vendor, firmwareVersion: attributes?.firmwareVersion,
            serialNumber: attributes?.serialNumber, features: features, role: nil)
    }

    /// Splits `Name NN SS` into (`Name NN`, SS).
    static func splitReaderName(_ name: String) -> (physical: String, slot: Int) {
        let parts = name.split(separator: " ")
        if parts.count >= 3, let slot = Int(parts[parts.count - 1], radix: 16), parts[parts.count - 1].count == 2,
            parts[parts.count - 2].count == 2, Int(parts[parts.count - 2], radix: 16) != nil
        {
            return (parts.dropLast().joined(separator: " "), slot)
        }
        return (name, 0)
    }

    /// The reader's attributes and features, read once through a direct connection and cached.
    /// `nil` when the reader cannot be opened (gone, or held exclusively by another program).
    public func attributes(of reader: String) async -> PCSCReaderAttributes? {
        if let cached = attributeCache.withLock({ $0[reader] }) { return cached }
        let result = await context.call { p, ctx in readReaderAttributes(p, ctx, reader) }
        guard case .success(let attributes) = result else { return nil }
        attributeCache.withLock { $0[reader] = attributes }
        return attributes
    }

    /// What is in `reader` now (an immediate `SCardGetStatusChange`).
    public func state(of reader: String) async throws(CardError) -> SlotState {
        try await stateAndEventCount(of: reader).state
    }

    /// What is in `reader` now and pcscd's count of its card events (pcsc-lite counts insertions and
    /// removals in the high 16 bits of the state word): a change of the count says pcscd saw a card
    /// event, even when the state reads the same (a card swapped for one with the same ATR).
    public func stateAndEventCount(of reader: String) async throws(CardError) -> (state: SlotState, eventCount: Int) {
        let result = await context.call { p, ctx -> Result<(UInt32, [UInt8]), PCSCError> in
            readerState(p, ctx, reader)
        }
        switch result {
        case .success(let (state, atr)):
            let count = Int(state >> 16)
            if state & SCard.stateMute != 0 { return (.mute, count) }
            if state & SCard.statePresent != 0 { return (.present(atr: atr), count) }
            return (.empty, count)
        case .failure(let e):
            throw cardError(e, reader: reader)
        }
    }

    /// The reader-neutral error of `e`, with the loader's own words when the library is missing.
    private func cardError(_ e: PCSCError, reader: String) -> CardError {
        if e == .notInstalled, case .failure(let unavailable) = provider { return unavailable.cardError }
        return e.cardError(reader: reader)
    }

    /// Connects to the card in `reader` (see ``open(_:share:protocols:)`` for the concrete connection).
    public func connect(to reader: String, share: ShareMode = .shared, protocols: Set<TransmissionProtocol> = [.t0, .t1]) async throws(CardError) -> any CardConnection {
        try await open(reader, share: share, protocols: protocols)
    }

    /// Connects and returns the concrete PC/SC connection (for `control`, attributes and transactions).
    public func open(_ reader: String, share: ShareMode = .shared, protocols: Set<TransmissionProtocol> = [.t0, .t1]) async throws(CardError) -> PCSCConnection {
        let attributes = await self.attributes(of: reader)
        let extended = (attributes?.maxAPDUDataSize ?? 0) > 0
        let capabilities = extended ? TransportCapabilities.extended : .short
        return try await PCSCConnection.connect(reader: reader, share: share, protocols: protocols, capabilities: capabilities, provider: provider)
    }

    /// Reader and card events from now on (see ``PCSCEventMonitor``); ending the stream stops its thread.
    public func events() -> AsyncStream<ReaderEvent> {
        PCSCEventMonitor.stream(logger: logger, backend: self)
    }

    /// Forgets cached attributes (after a reader was unplugged and another plugged in under its name).
    public func forgetAttributes(of reader: String) {
        attributeCache.withLock { _ = $0.removeValue(forKey: reader) }
    }
}

extension String {
    /// A guess from the name only, used when the reader does not say: contactless readers usually say so.
    fileprivate var localizedContactless: Bool {
        let lower = lowercased()
        return lower.contains("contactless") || lower.contains("cless") || lower.contains("picc") || lower.contains("nfc")
    }
}

func listReaders(_ p: any PCSCProvider, _ ctx: UInt64) -> Result<[String], PCSCError> {
    // A reader plugged in between the two calls makes the buffer too small: ask again.
    for _ in 0..<3 {
        let result = p.listReaders(ctx)
        switch result {
        case .failure(.insufficientBuffer): continue
        case .failure(.noReadersAvailable): return .success([])
        default: return result
        }
    }
    let last = p.listReaders(ctx)
    if case .failure(.noReadersAvailable) = last { return .success([]) }
    return last
}

/// The current state word and ATR of one reader (an immediate `SCardGetStatusChange`).
func readerState(_ p: any PCSCProvider, _ ctx: UInt64, _ reader: String) -> Result<(UInt32, [UInt8]), PCSCError> {
    var states = [PCSCReaderState(reader: reader, currentState: SCard.stateUnaware)]
    if let e = p.getStatusChange(ctx, timeoutMilliseconds: 0, &states), e != .timeout { return .failure(e) }
    if states[0].eventState & SCard.stateUnknown != 0 { return .failure(.unknownReader) }
    return .success((states[0].eventState, ATR.removingPadding(states[0].atr).atr))
}

/// Reads a reader's attributes and features through a direct connection (no card needed).
func readReaderAttributes(_ p: any PCSCProvider, _ ctx: UInt64, _ reader: String) -> Result<PCSCReaderAttributes, PCSCError> {
    let card: UInt64
    switch p.connect(ctx, reader: reader, share: SCard.shareDirect, protocols: SCard.protocolUndefined) {
    case .success(let c): card = c.card
    case .failure(let e): return .failure(e)
    }
    defer { _ = p.disconnect(card, disposition: SCard.leaveCard) }
    func string(_ id: UInt32) -> String? {
        guard case .success(let b) = p.attribute(card, id: id), !b.isEmpty else { return nil }
        let trimmed = b.prefix { $0 != 0 }
        return trimmed.isEmpty ? nil : String(decoding: trimmed, as: UTF8.self)
    }
    func number(_ id: UInt32) -> UInt32? {
        guard case .success(let b) = p.attribute(card, id: id), !b.isEmpty, b.count <= 8 else { return nil }
        return littleEndian(b)
    }
    var a = PCSCReaderAttributes(features: [:])
    a.vendor = string(PCSCAttribute.vendorName)
    a.model = string(PCSCAttribute.vendorIFDType)
    a.ifdVersion = number(PCSCAttribute.vendorIFDVersion)
    a.serialNumber = string(PCSCAttribute.vendorIFDSerialNumber)
    a.channelID = number(PCSCAttribute.channelID)
    a.maxInput = number(PCSCAttribute.maxInput)
    if case .success(let list) = pcscControl(p, card, code: p.abi.getFeatureRequest, data: []) {
        a.features = PCSCFeature.decodeFeatureList(list)
    }
    var properties: [UInt8: [UInt8]] = [:]
    if let code = a.features[PCSCFeature.getTLVProperties], case .success(let tlv) = pcscControl(p, card, code: code, data: []) {
        properties = PCSCFeature.decodeTLVProperties(tlv)
        a.maxAPDUDataSize = properties[0x0A].map(littleEndian)
        a.usbVendorID = properties[0x0B].map { UInt16(truncatingIfNeeded: littleEndian($0)) }
        a.usbProductID = properties[0x0C].map { UInt16(truncatingIfNeeded: littleEndian($0)) }
    }
    var pinProperties: [UInt8]? = nil
    if let code = a.features[PCSCFeature.ifdPINProperties], case .success(let pp) = pcscControl(p, card, code: code, data: []) { pinProperties = pp }
    a.pinPad = PINPadCapabilities(features: a.features, pinProperties: pinProperties, tlvProperties: properties)
    return .success(a)
}

/// A little-endian unsigned value of up to 8 bytes, truncated to 32 bits (DWORD attributes come in host order).
func littleEndian(_ bytes: [UInt8]) -> UInt32 {
    UInt32(truncatingIfNeeded: bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
}
