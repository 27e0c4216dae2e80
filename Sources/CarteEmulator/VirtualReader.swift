public import CarteCore
public import Logging
import Synchronization

/// The shape and identity of a virtual reader: its name, vendor, firmware, serial number and slots.
///
/// The built-in profiles are synthetic: they model the layouts of real SESAM-Vitale readers
/// (mono-fente, bi-fente Vitale + CPx, contactless) without claiming to be a given product.
public struct VirtualReaderProfile: Sendable, Hashable, Codable {
    /// One slot of the profile.
    public struct Slot: Sendable, Hashable, Codable {
        /// What the slot is for: `vitale`, `cpx` or `any`.
        public var role: String
        /// Whether the slot is contactless.
        public var contactless: Bool
        /// Creates a slot description.
        public init(role: String, contactless: Bool = false) {
            self.role = role
            self.contactless = contactless
        }
    }

    /// A short identifier (`mono-fente`, `bi-fente`, `contactless`).
    public var id: String
    /// The friendly name; PC/SC-style slot names append ` NN SS`.
    public var name: String
    /// Vendor name reported as `SCARD_ATTR_VENDOR_NAME`.
    public var vendor: String
    /// Firmware version (`major.minor`) reported as the IFD version.
    public var firmwareVersion: String
    /// Serial number, if the reader reports one.
    public var serialNumber: String?
    /// The slots, in index order.
    public var slots: [Slot]
    /// Features (`pin-pad`, `extended-apdu`, …).
    public var features: [String]
    /// Whether the profile is a synthetic model rather than a real product's identity.
    public var synthetic: Bool
    /// The model (`SCARD_ATTR_VENDOR_IFD_TYPE`), when different from the name.
    public var model: String?
    /// USB vendor and product ids the reader reports (`FEATURE_GET_TLV_PROPERTIES`), if any.
    public var usbVendorID: UInt16?
    /// See ``usbVendorID``.
    public var usbProductID: UInt16?
    /// The reader's PIN pad, if it has one (PC/SC part 10 secure PIN entry).
    public var pinPad: PINPadProfile?

    /// `SCARD_ATTR_VENDOR_IFD_VERSION` as USB readers report it: the BCD firmware version `<< 16`
    /// (`1.08` → `0x01080000`). Versions that are not `digits.digits` give 0.
    public var ifdVersion: UInt32 {
        let parts = firmwareVersion.split(separator: ".")
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.count <= 2 && $0.allSatisfy(\.isNumber) }) else { return 0 }
        func bcd(_ s: Substring) -> UInt32 { s.reduce(UInt32(0)) { $0 << 4 | UInt32($1.wholeNumberValue!) } }
        let minor = parts[1].count == 1 ? bcd(parts[1]) << 4 : bcd(parts[1])
        return (bcd(parts[0]) << 8 | minor) << 16
    }

    /// Creates a profile; see the properties for each parameter.
    public init(id: String, name: String, vendor: String, firmwareVersion: String, serialNumber: String? = nil, slots: [Slot], features: [String] = [], synthetic: Bool = true, model: String? = nil, usbVendorID: UInt16? = nil, usbProductID: UInt16? = nil, pinPad: PINPadProfile? = nil) {
        self.pinPad = pinPad
        self.model = model
        self.usbVendorID = usbVendorID
        self.usbProductID = usbProductID
        self.id = id
        self.name = name
        self.vendor = vendor
        self.firmwareVersion = firmwareVersion
        self.serialNumber = serialNumber
        self.slots = slots
        self.features = features
        self.synthetic = synthetic
    }

}

/// One slot of a virtual reader: holds at most one ``SimulatedCard`` and serialises access to it.
public final class VirtualSlot: Sendable {
    /// The slot as applications see it.
    public let info: ReaderInfo

    struct State: ~Copyable {
        var card: SimulatedCard?
        var mute = false
        /// Bumped on every insertion and removal: a connection made before it changed is stale.
        var insertion = 0
        /// Bumped on every reset: a connection that did not ask for it sees `cardReset` once.
        var resets = 0
        var exclusiveOwner: Int?
        var connections: Set<Int> = []
        var nextConnection = 1
        /// Faults armed on the slot (cleared at each insertion; the image's schedule is loaded then).
        var faults = SlotFaults()
    }

    let state = Mutex(State())
    /// Tells the backend's event streams what the slot did on its own (a fault removing the card).
    let notify: @Sendable ([ReaderEvent]) -> Void
    /// The reader's PIN pad, if it has one (each slot keeps its own queue of keypad entries).
    public let pinPad: PINPadProfile?
    /// The keypad entries scripted for this slot's PIN prompts.
    public let keypad: VirtualKeypad
    /// Who is told what the slot does (the backend's observers).
    let activity: SlotActivityObservers

    /// `scripted`: whether this slot gets the profile's keypad script (the CPx slot, or the first).
    init(notify: @escaping @Sendable ([ReaderEvent]) -> Void = { _ in }, activity: SlotActivityObservers = SlotActivityObservers(), info: ReaderInfo,
         pinPad: PINPadProfile? = nil, scripted: Bool = false) {
        self.info = info
        self.notify = notify
        self.activity = activity
        self.pinPad = pinPad
        self.keypad = VirtualKeypad(script: scripted ? pinPad?.script ?? [] : [])
    }

    // MARK: Faults

    /// Arms `fault` on this slot (see ``SlotFault``). Faults apply to the card inserted now; an
    /// insertion clears them.
    public func inject(_ fault: SlotFault) {
        state.withLock { $0.faults.arm(fault) }
        activity.report(.faultsChanged(slot: info.name))
    }

    /// Disarms every fault (the image's schedule too, until the next insertion).
    public func clearFaults() {
        state.withLock { $0.faults = SlotFaults() }
        activity.report(.faultsChanged(slot: info.name))
    }

    /// The faults armed now, as `carte sim fault` names them (a card image's scheduled faults with the
    /// APDU they wait for).
    public var armedFaults: [String] { state.withLock { $0.faults.descriptions } }

    /// Runs `command` on the card of `s` with the armed faults applied. Called under the slot's lock.
    /// With `stopAtReset`, a warm-reset fault ends there (``CardError/cardReset(reader:)``, the command
    /// not run), as a connection that sees resets reports it; otherwise the command runs on the reset card.
    func process(_ command: [UInt8], in s: inout State, stopAtReset: Bool = false) -> (SlotOutcome, [ReaderEvent]) {
        guard let card = s.card else { return (.failure(.noCard(reader: info.name)), []) }
        s.faults.apdus += 1
        let count = s.faults.apdus
        while let i = s.faults.scheduled.firstIndex(where: { $0.at == count }) {
            s.faults.arm(s.faults.scheduled.remove(at: i).fault)
        }
        let delay = s.faults.delay
        func pullOut() -> [ReaderEvent] {
            s.card = nil
            s.insertion += 1
            s.exclusiveOwner = nil
            s.connections = []
            s.faults = SlotFaults()
            return [.cardRemoved(reader: info.name)]
        }
        if s.faults.take(.warmReset) {
            card.reset()
            s.resets += 1
            if stopAtReset { return (.failure(.cardReset(reader: info.name)), []) }
        }
        if s.faults.take(.removeBefore) { return (.failure(.cardRemoved(reader: info.name)), pullOut()) }
        if s.faults.muteLeft > 0 {
            s.faults.muteLeft -= 1
            return (.noAnswer(delay: delay), [])
        }
        if let (sw, left) = s.faults.statusWordLeft {
            s.faults.statusWordLeft = left > 1 ? (sw, left - 1) : nil
            return (.answer([sw.sw1, sw.sw2], delay: delay), [])
        }
        let response = card.process(command)
        if s.faults.take(.removeDuring) { return (.failure(.cardRemoved(reader: info.name)), pullOut()) }
        if s.faults.take(.removeAfter) { return (.answer(response, delay: delay), pullOut()) }
        return (.answer(response, delay: delay), [])
    }

    // MARK: Reader-level operations (what a pcscd driver does)

    /// Powers the card up (or warm-resets it) and returns its ATR. Fails with
    /// ``CardError/noCard(reader:)`` or ``CardError/cardMute(reader:timeout:)``.
    public func powerUp() -> Result<[UInt8], CardError> {
        let (result, insertion) = state.withLock { s -> (Result<[UInt8], CardError>, Int) in
            guard let card = s.card else { return (.failure(.noCard(reader: info.name)), s.insertion) }
            if s.mute { return (.failure(.cardMute(reader: info.name, timeout: .zero)), s.insertion) }
            card.reset()
            s.resets += 1
            return (.success(card.image.atr), s.insertion)
        }
        if case .success(let atr) = result, activity.isObserved {
            activity.report(.poweredUp(slot: info.name, insertion: insertion, atr: atr))
        }
        return result
    }

    /// Sends one APDU to the card as a reader does (no connection bookkeeping), faults applied; a
    /// mute fault is ``CardError/cardMute(reader:timeout:)`` and delays are not waited for.
    public func transmitRaw(_ command: [UInt8]) -> Result<[UInt8], CardError> {
        switch transmitWithFaults(command) {
        case .answer(let r, _): return .success(r)
        case .noAnswer: return .failure(.cardMute(reader: info.name, timeout: .zero))
        case .failure(let e): return .failure(e)
        }
    }

    /// One APDU as the daemon serves it to the driver: the outcome with its delay and no-answer faults.
    /// `viaPad`: the reader's PIN pad built the command. Observers are told the exchange (secrets removed).
    package func transmitWithFaults(_ command: [UInt8], viaPad: Bool = false) -> SlotOutcome {
        let (outcome, tell) = transmitWithFaultsTellingLater(command, viaPad: viaPad)
        tell()
        return outcome
    }

    /// ``transmitWithFaults(_:viaPad:)``, with what observers are to hear of the exchange (the exchange,
    /// secrets removed; then the reader events it caused) left to the caller: the simulator daemon tells
    /// them once the answer is on its way, so that recording it is not part of the round trip.
    package func transmitWithFaultsTellingLater(_ command: [UInt8], viaPad: Bool = false) -> (SlotOutcome, tell: @Sendable () -> Void) {
        let observed = activity.isObserved
        let started = ContinuousClock.now
        let (outcome, events, insertion, faultsChanged) = state.withLock { s -> (SlotOutcome, [ReaderEvent], Int, Bool) in
            let insertion = s.insertion
            if s.card != nil && s.mute { return (.failure(.cardMute(reader: info.name, timeout: .zero)), [], insertion, false) }
            let before = observed ? s.faults.signature : []
            let (outcome, events) = process(command, in: &s)
            return (outcome, events, insertion, observed && s.faults.signature != before)
        }
        // The card's own time (the delay a slow fault adds before the answer is added when told).
        let cardTime = ContinuousClock.now - started
        let (activity, notify, name) = (self.activity, self.notify, info.name)
        return (outcome, {
            // Observers hear the exchange before what it caused (a card pulled out after its answer).
            defer { if !events.isEmpty { notify(events) } }
            guard observed else { return }
            var response: [UInt8]? = nil
            var failure: String? = nil
            var elapsed = cardTime
            switch outcome {
            case .answer(let r, let d):
                response = r
                elapsed += d ?? .zero
            case .noAnswer(let d):
                failure = "no answer (mute)"
                elapsed += d ?? .zero
            case .failure(let e):
                failure = e.description
            }
            // A command the PIN pad built carries what was typed whatever its instruction (the template
            // comes from the application): everything after its header goes.
            let safe = viaPad ? command.prefix(5).map { $0 } + [UInt8?](repeating: nil, count: max(0, command.count - 5))
                : CardImage.Replay.withoutSecrets(.init(command: command.map { $0 }, response: [])).command
            activity.report(.exchange(SlotExchange(slot: name, insertion: insertion, command: safe, response: response, failure: failure,
                                                   viaPad: viaPad, elapsed: elapsed)))
            if faultsChanged { activity.report(.faultsChanged(slot: name)) }
        })
    }

    /// How many APDUs the card in the slot has been sent since it was inserted (what benchmarks count
    /// for clients they do not trace, such as OpenSC through pcscd).
    public var apduCount: Int { state.withLock { $0.faults.apdus } }

    /// How many times a card was inserted or removed (lets a driver notice a swap between two polls).
    public var insertionCount: Int { state.withLock { $0.insertion } }

    /// The image played by the card in the slot, if any.
    public var image: CardImage? { state.withLock { $0.card?.image } }

    /// What is in the slot.
    public var slotState: SlotState {
        state.withLock { s in
            guard let card = s.card else { return .empty }
            return s.mute ? .mute : .present(atr: card.image.atr)
        }
    }
}

/// The in-memory reader backend: virtual readers with slots, cards inserted and removed at run time,
/// events for both. Implements the same ``ReaderBackend`` abstraction as the PC/SC backend, so card
/// applications and tests run against it unchanged.
public final class SimulatorBackend: ReaderBackend {
    private struct Registry {
        var readers: [(profile: VirtualReaderProfile, slots: [VirtualSlot])] = []
        var nextIndex = 0
    }

    /// The event streams' continuations. A class of its own so a stream's termination handler can
    /// unregister it by a strong reference to this registry alone (no weak reference to the backend:
    /// a weak reference's side table could outlive a process exit racing the handler). The cycle
    /// registry → continuation → handler → registry is broken when the stream ends, and `deinit`
    /// ends every stream.
    private final class Listeners: Sendable {
        private let state = Mutex<(next: Int, continuations: [Int: AsyncStream<ReaderEvent>.Continuation])>((0, [:]))

        func add(_ continuation: AsyncStream<ReaderEvent>.Continuation) -> Int {
            state.withLock { s in
                let id = s.next
                s.next += 1
                s.continuations[id] = continuation
                return id
            }
        }

        func remove(_ id: Int) {
            _ = state.withLock { $0.continuations.removeValue(forKey: id) }
        }

        var all: [AsyncStream<ReaderEvent>.Continuation] { state.withLock { Array($0.continuations.values) } }

        func broadcast(_ events: [ReaderEvent]) {
            let listeners = all
            for event in events {
                for listener in listeners { listener.yield(event) }
            }
        }
    }

    private let registry = Mutex(Registry())
    private let listeners = Listeners()
    private let activity = SlotActivityObservers()

    /// Tells `observer` everything the readers do from now on: each APDU a reader-side caller (the
    /// pcscd driver through the daemon, the PIN pad, a vpcd link) sends and its answer, power-ups,
    /// PIN prompts, insertions and removals, faults armed and used. Called on the thread that did it,
    /// outside the slot's lock; keep it short. Commands arrive with their secrets removed.
    public func observe(_ observer: @escaping @Sendable (SlotActivity) -> Void) {
        activity.add(observer)
    }

    /// Where the simulator's cards report what a log should show (a replay's unexpected commands).
    public let logger: Logger

    /// Creates a backend with no reader.
    public init(logger: Logger = Logger(label: "cartekit.simulator", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.logger = logger
    }

    /// Ends every event stream: their termination handlers run and are released with the backend.
    deinit {
        for listener in listeners.all { listener.finish() }
    }

    /// Creates a backend with one reader per profile.
    public convenience init(profiles: [VirtualReaderProfile], logger: Logger = Logger(label: "cartekit.simulator", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.init(logger: logger)
        for profile in profiles { addReader(profile) }
    }

    /// Plugs in a reader with `profile`; returns its slots. Names follow pcsc-lite:
    /// `<name> NN SS`, NN the reader index and SS the slot, both two hexadecimal digits.
    @discardableResult
    public func addReader(_ profile: VirtualReaderProfile) -> [ReaderInfo] {
        let (slots, events) = registry.withLock { r -> ([VirtualSlot], [ReaderEvent]) in
            let index = r.nextIndex
            r.nextIndex += 1
            let physical = "\(profile.name) \(UInt8(truncatingIfNeeded: index).hex)"
            let listeners = self.listeners
            let activity = self.activity
            let slots = profile.slots.enumerated().map { (i, slot) in
                VirtualSlot(notify: { events in
                    listeners.broadcast(events)
                    for e in events { activity.report(.readerEvent(e)) }
                }, activity: activity, info: ReaderInfo(
                    name: "\(physical) \(UInt8(truncatingIfNeeded: i).hex)",
                    physicalReader: physical,
                    slot: i,
                    slotCount: profile.slots.count,
                    isContactless: slot.contactless,
                    vendor: profile.vendor,
                    firmwareVersion: profile.firmwareVersion,
                    serialNumber: profile.serialNumber,
                    features: (profile.features + (profile.pinPad?.featureNames ?? [])).sorted(),
                    role: slot.role), pinPad: profile.pinPad, scripted: i == (profile.slots.firstIndex { $0.role == "cpx" } ?? 0))
            }
            r.readers.append((profile, slots))
            return (slots, slots.map { .readerAdded($0.info) })
        }
        broadcast(events)
        return slots.map(\.info)
    }

    /// Unplugs the physical reader that owns the slot `name` (all its slots disappear).
    public func removeReader(_ name: String) throws(CardError) {
        let events = try registry.withLock { r throws(CardError) -> [ReaderEvent] in
            guard let i = r.readers.firstIndex(where: { $0.slots.contains { $0.info.name == name } || $0.slots.first?.info.physicalReader == name }) else {
                throw .noSuchReader(name, available: r.readers.flatMap { $0.slots.map(\.info.name) })
            }
            let slots = r.readers.remove(at: i).slots
            var events: [ReaderEvent] = []
            for slot in slots {
                let hadCard = slot.state.withLock { s -> Bool in
                    let had = s.card != nil
                    s.card = nil
                    s.insertion += 1
                    return had
                }
                if hadCard { events.append(.cardRemoved(reader: slot.info.name)) }
                events.append(.readerRemoved(name: slot.info.name))
            }
            return events
        }
        broadcast(events)
    }

    func slot(named name: String) throws(CardError) -> VirtualSlot {
        let found = registry.withLock { r in r.readers.lazy.flatMap(\.slots).first { $0.info.name == name } }
        if let found { return found }
        // Accept a unique prefix or the bare friendly name, as people type them.
        let all = registry.withLock { r in r.readers.flatMap(\.slots) }
        let candidates = all.filter { $0.info.name.hasPrefix(name) }
        if candidates.count == 1 { return candidates[0] }
        throw .noSuchReader(name, available: all.map(\.info.name))
    }

    /// Inserts a card playing `image` into the slot `reader` (replacing any card already there).
    public func insert(_ image: CardImage, into reader: String, mute: Bool = false) throws(CardError) {
        let slot = try slot(named: reader)
        let removed = slot.state.withLock { s -> Bool in
            let had = s.card != nil
            s.card = SimulatedCard(image: image)
            s.card?.logger = logger
            s.mute = mute
            s.insertion += 1
            s.exclusiveOwner = nil
            s.connections = []  // connections to the old card are stale (rejected by the insertion check)
            s.faults = SlotFaults()
            s.faults.scheduled = image.faults.map { ($0.atAPDU, $0.fault) }
            return had
        }
        // A card pulled out (or replaced) ends the typing scripted for it; the new card's own script follows.
        if removed { slot.keypad.clear() }
        if !image.keypad.isEmpty { slot.keypad.type(image.keypad) }
        var events: [ReaderEvent] = []
        if removed { events.append(.cardRemoved(reader: slot.info.name)) }
        events.append(mute ? .cardMute(reader: slot.info.name) : .cardInserted(reader: slot.info.name, atr: image.atr))
        broadcast(events)
    }

    /// Arms `fault` on the slot `reader` (see ``SlotFault``); an insertion clears it.
    public func inject(_ fault: SlotFault, into reader: String) throws(CardError) {
        try slot(named: reader).inject(fault)
    }

    /// Disarms every fault of the slot `reader`.
    public func clearFaults(in reader: String) throws(CardError) {
        try slot(named: reader).clearFaults()
    }

    /// Removes the card from the slot `reader` (nothing happens if it is empty).
    public func remove(from reader: String) throws(CardError) {
        let slot = try slot(named: reader)
        let had = slot.state.withLock { s -> Bool in
            let had = s.card != nil
            s.card = nil
            s.insertion += 1
            s.exclusiveOwner = nil
            s.connections = []
            s.faults = SlotFaults()
            return had
        }
        if had {
            slot.keypad.clear()  // entries scripted for the card that left are not typed for the next one
            broadcast([.cardRemoved(reader: slot.info.name)])
        }
    }

    /// The tries left for the PIN `reference` of the card in the slot `reader` (for tests and the
    /// control interface), or `nil` when the slot is empty or the card has no such PIN.
    public func remainingTries(forPIN reference: UInt8, in reader: String) throws(CardError) -> Int? {
        try slot(named: reader).state.withLock { s in s.card?.remainingTries(forPIN: reference) }
    }

    /// The image played by the card in the slot `reader`, or `nil` when the slot is empty.
    public func image(in reader: String) throws(CardError) -> CardImage? {
        try slot(named: reader).state.withLock { s in s.card?.image }
    }

    /// The physical readers in plug order, each with its profile and its slots.
    public var physicalReaders: [(profile: VirtualReaderProfile, slots: [VirtualSlot])] {
        registry.withLock { r in r.readers }
    }

    /// The names of every slot, in plug order (synchronous form of ``readers()``).
    public var readerNames: [String] {
        registry.withLock { r in r.readers.flatMap { $0.slots.map(\.info.name) } }
    }

    // MARK: ReaderBackend

    /// Every slot of every plugged-in virtual reader.
    public func readers() async throws(CardError) -> [ReaderInfo] {
        registry.withLock { r in r.readers.flatMap { $0.slots.map(\.info) } }
    }

    /// What is in the slot `reader` (a name or a unique prefix).
    public func state(of reader: String) async throws(CardError) -> SlotState {
        try slot(named: reader).slotState
    }

    /// Connects to the card in `reader`; fails with ``CardError/noCard(reader:)``, ``CardError/cardMute(reader:timeout:)``,
    /// ``CardError/sharingViolation(reader:)`` or ``CardError/unsupported(_:)`` (protocol not offered).
    public func connect(to reader: String, share: ShareMode = .shared, protocols: Set<TransmissionProtocol> = [.t0, .t1]) async throws(CardError) -> any CardConnection {
        try connectNow(to: reader, share: share, protocols: protocols)
    }

    /// Synchronous form of ``connect(to:share:protocols:)``.
    public func connectNow(to reader: String, share: ShareMode = .shared, protocols: Set<TransmissionProtocol> = [.t0, .t1]) throws(CardError) -> SimulatedConnection {
        let slot = try slot(named: reader)
        let name = slot.info.name
        return try slot.state.withLock { s throws(CardError) -> SimulatedConnection in
            guard let card = s.card else { throw .noCard(reader: name) }
            if s.mute { throw .cardMute(reader: name, timeout: .zero) }
            if s.exclusiveOwner != nil { throw .sharingViolation(reader: name) }
            if share == .exclusive && !s.connections.isEmpty { throw .sharingViolation(reader: name) }
            let proto = card.image.cardProtocol
            guard protocols.contains(proto) || share == .direct else {
                throw .unsupported("the card in \"\(name)\" runs \(proto), not one of \(protocols.sorted().map(\.description).joined(separator: ", "))")
            }
            let id = s.nextConnection
            s.nextConnection += 1
            s.connections.insert(id)
            if share == .exclusive { s.exclusiveOwner = id }
            return SimulatedConnection(slot: slot, id: id, insertion: s.insertion, resets: s.resets, atr: card.image.atr, cardProtocol: proto)
        }
    }

    /// Reader and card events from now on (buffering the newest 1024 if not consumed).
    public func events() -> AsyncStream<ReaderEvent> {
        let (stream, continuation) = AsyncStream<ReaderEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let listeners = self.listeners
        let id = listeners.add(continuation)
        continuation.onTermination = { _ in listeners.remove(id) }
        return stream
    }

    private func broadcast(_ events: [ReaderEvent]) {
        listeners.broadcast(events)
        for e in events { activity.report(.readerEvent(e)) }
    }
}

/// A connection to a simulated card. Fails with ``CardError/cardRemoved(reader:)`` once the card it
/// was made with is gone (even if another card is inserted), and with ``CardError/cardReset(reader:)``
/// once after another connection reset the card.
public final class SimulatedConnection: CardConnection {
    let slot: VirtualSlot
    let id: Int
    private struct State {
        var insertion: Int
        var resets: Int
        var open = true
        var atr: [UInt8]
        var cardProtocol: TransmissionProtocol
    }
    private let state: Mutex<State>

    init(slot: VirtualSlot, id: Int, insertion: Int, resets: Int, atr: [UInt8], cardProtocol: TransmissionProtocol) {
        self.slot = slot
        self.id = id
        self.state = Mutex(State(insertion: insertion, resets: resets, atr: atr, cardProtocol: cardProtocol))
    }

    /// The slot's name.
    public var readerName: String { slot.info.name }
    /// The ATR the card answered with.
    public var atrBytes: [UInt8] { state.withLock { $0.atr } }
    /// The card's protocol.
    public var activeProtocol: TransmissionProtocol { state.withLock { $0.cardProtocol } }
    /// Extended lengths when the reader profile lists `extended-apdu` and the card runs T=1 (T=0 carries
    /// no extended APDU, ISO 7816-3 §12.2).
    public var capabilities: TransportCapabilities {
        slot.info.features.contains("extended-apdu") && activeProtocol == .t1 ? .extended : .short
    }

    /// Sends one APDU to the simulated card, with the slot's faults (a slow card's delay is waited for).
    public func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        let (result, delay) = exchange(command)
        if let delay { try? await Task.sleep(for: delay) }
        return try result.get()
    }

    /// Synchronous form of ``transmit(_:)`` (used by benchmarks): a slow card's delay is not waited for.
    public func transmitNow(_ command: [UInt8]) throws(CardError) -> [UInt8] {
        try exchange(command).0.get()
    }

    /// Throws when the connection could not send a command now (closed, card gone, reset by another
    /// connection, another owner); returns the insertion the connection belongs to.
    func checkUsable() throws(CardError) -> Int {
        let (insertion, resets, open) = state.withLock { ($0.insertion, $0.resets, $0.open) }
        guard open else { throw .notConnected }
        let name = slot.info.name
        try slot.state.withLock { s throws(CardError) in
            guard s.card != nil, s.insertion == insertion else { throw .cardRemoved(reader: name) }
            if s.mute { throw .cardMute(reader: name, timeout: .zero) }
            if s.resets != resets { throw .cardReset(reader: name) }
            if let owner = s.exclusiveOwner, owner != id { throw .sharingViolation(reader: name) }
        }
        return insertion
    }

    private func exchange(_ command: [UInt8]) -> (Result<[UInt8], CardError>, Duration?) {
        let (insertion, resets, open) = state.withLock { ($0.insertion, $0.resets, $0.open) }
        guard open else { return (.failure(.notConnected), nil) }
        let name = slot.info.name
        let (result, delay, events): (Result<[UInt8], CardError>, Duration?, [ReaderEvent]) = slot.state.withLock { s in
            guard s.card != nil, s.insertion == insertion else { return (.failure(.cardRemoved(reader: name)), nil, []) }
            if s.mute { return (.failure(.cardMute(reader: name, timeout: .zero)), nil, []) }
            if s.resets != resets { return (.failure(.cardReset(reader: name)), nil, []) }
            if let owner = s.exclusiveOwner, owner != id { return (.failure(.sharingViolation(reader: name)), nil, []) }
            let (outcome, events) = slot.process(command, in: &s, stopAtReset: true)
            switch outcome {
            case .answer(let r, let d): return (.success(r), d, events)
            case .noAnswer(let d): return (.failure(.cardMute(reader: name, timeout: d ?? .zero)), d, events)
            case .failure(let e): return (.failure(e), nil, events)
            }
        }
        if !events.isEmpty { slot.notify(events) }
        if case .failure(.cardReset) = result {
            // Reported once; the connection then sees the card in its new state.
            state.withLock { $0.resets = self.slot.state.withLock { $0.resets } }
        }
        return (result, delay)
    }

    /// Changes the share mode and, unless `initialization` is `.leave`, resets the card (other connections then
    /// see ``CardError/cardReset(reader:)`` once).
    public func reconnect(share: ShareMode = .shared, initialization: Disposition = .leave) async throws(CardError) {
        let (insertion, open) = state.withLock { ($0.insertion, $0.open) }
        guard open else { throw .notConnected }
        let name = slot.info.name
        let resets = try slot.state.withLock { s throws(CardError) -> Int in
            guard let card = s.card, s.insertion == insertion else { throw .cardRemoved(reader: name) }
            if let owner = s.exclusiveOwner, owner != id { throw .sharingViolation(reader: name) }
            if share == .exclusive && s.connections.count > 1 { throw .sharingViolation(reader: name) }
            s.exclusiveOwner = share == .exclusive ? id : nil
            if initialization != .leave {
                card.reset()
                s.resets += 1
            }
            return s.resets
        }
        state.withLock { $0.resets = resets }
    }

    /// Closes the connection, resetting the card unless `disposition` is `.leave`.
    public func disconnect(_ disposition: Disposition = .leave) async throws(CardError) {
        let (insertion, wasOpen) = state.withLock { s -> (Int, Bool) in
            let was = s.open
            s.open = false
            return (s.insertion, was)
        }
        guard wasOpen else { return }
        slot.state.withLock { s in
            s.connections.remove(id)
            if s.exclusiveOwner == id { s.exclusiveOwner = nil }
            if disposition != .leave, let card = s.card, s.insertion == insertion {
                card.reset()
                s.resets += 1
            }
        }
    }

    deinit {
        let id = self.id
        slot.state.withLock { s in
            s.connections.remove(id)
            if s.exclusiveOwner == id { s.exclusiveOwner = nil }
        }
    }
}
