public import CarteApCV
public import CarteCore
public import CarteCPS
public import CarteVitale
public import Logging
import Synchronization

/// A reader event as an editor's software needs it: which slot of which physical reader, and which
/// kind of card (from its ATR; see ``CardKind``).
public struct CardEvent: Hashable, Sendable, CustomStringConvertible {
    /// What happened.
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case readerAdded = "reader-added"
        case readerRemoved = "reader-removed"
        case cardInserted = "card-inserted"
        case cardRemoved = "card-removed"
        case cardMute = "card-mute"
    }
    /// What happened.
    public var kind: Kind
    /// The slot's reader name (what ``ReaderManager/withSession(on:timeout:_:)`` takes).
    public var reader: String
    /// The physical reader the slot belongs to (the two slots of a bi-fente reader share it), when known.
    public var physicalReader: String?
    /// The slot index in the physical reader, when known.
    public var slot: Int?
    /// The kind of card inserted (card-inserted only).
    public var card: CardKind?
    /// The card's ATR (card-inserted only).
    public var atr: [UInt8]?

    public var description: String {
        "\(kind.rawValue) \"\(reader)\"" + (card.map { " \($0)" } ?? "")
    }
}

/// The two slots that hold a patient's Carte Vitale and a professional's CPx card: the two slots of a
/// bi-fente reader, or two mono-fente readers.
public struct ReaderPair: Hashable, Sendable {
    /// The slot holding (or meant for) the Carte Vitale.
    public var vitale: String
    /// The slot holding (or meant for) the CPx card.
    public var cpx: String
    /// Whether both slots belong to one physical (bi-fente) reader.
    public var sameReader: Bool

    /// A pair of slots.
    public init(vitale: String, cpx: String, sameReader: Bool) {
        self.vitale = vitale
        self.cpx = cpx
        self.sameReader = sameReader
    }
}

/// A Carte Vitale and a CPx card read in one call (see ``ReaderManager/readVitaleAndVerifyPIN(_:timeout:)``).
public struct PatientAndProfessional: Hashable, Sendable {
    /// The slots used.
    public var pair: ReaderPair
    /// The patient's card.
    public var vitale: VitaleCard
    /// The professional's card, read after the PIN was verified (situations included).
    public var professional: ProfessionalCard
}

/// One entry point over any reader backend (PC/SC or the in-memory simulator): slots and what they
/// hold, events, card detection, and typed sessions with exclusive access, timeouts and cancellation.
///
/// ```swift
/// let manager = ReaderManager(backend: PCSCBackend())
/// let both = try await manager.readVitaleAndVerifyPIN(try PINCode(typedPIN))
/// print(both.vitale.beneficiaries.map(\.firstName), both.professional.holder?.surname ?? "")
/// ```
public final class ReaderManager: Sendable {
    /// The backend the manager drives.
    public let backend: any ReaderBackend
    let logger: Logger
    /// The readers seen so far, by name (events after a removal still carry the slot and device).
    let known = Mutex<[String: ReaderInfo]>([:])

    /// How phones with the appli carte Vitale are resolved.
    let apcv: ApCVSettings

    /// A manager over `backend`. `apcvResolver` turns the session tokens of phones (NFC) and QR codes
    /// into identities; without one, a phone is detected but not read.
    public init(backend: any ReaderBackend, apcvResolver: (any ApCVResolver)? = nil, apcvConfiguration: ApCVProtocol.Configuration = .init(),
                logger: Logger = Logger(label: "cartekit", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.backend = backend
        self.apcv = ApCVSettings(resolver: apcvResolver, configuration: apcvConfiguration)
        self.logger = logger
    }

    /// A slot and what it holds.
    public struct Slot: Hashable, Sendable {
        /// The slot (name, physical reader, index, role…).
        public var info: ReaderInfo
        /// Empty, a card with its ATR, or mute.
        public var state: SlotState
        /// The kind of card, from its ATR (`nil` when empty or mute).
        public var card: CardKind?
    }

    /// Every slot with what it holds.
    public func slots() async throws(CarteKitError) -> [Slot] {
        let readers: [ReaderInfo]
        do { readers = try await backend.readers() } catch { throw .card(error) }
        remember(readers)
        var out: [Slot] = []
        for r in readers {
            let state: SlotState
            do { state = try await backend.state(of: r.name) } catch { state = .empty }
            var card: CardKind? = nil
            if case .present(let atr) = state { card = CardKind.fromATR(atr) }
            out.append(Slot(info: r, state: state, card: card))
        }
        return out
    }

    private func remember(_ readers: [ReaderInfo]) {
        known.withLock { map in for r in readers { map[r.name] = r } }
    }

    /// Reader and card events from now on, each with its slot, physical reader and card kind.
    /// Each call returns a new sequence; it ends when the task iterating it is cancelled, or when the
    /// manager is released (the sequence does not keep the manager, nor its backend, alive).
    public func events() -> AsyncStream<CardEvent> {
        let source = backend.events()
        return AsyncStream { continuation in
            // Weak: a cancelled pump that has not run yet must not hold the manager and its backend
            // (a PC/SC context, a simulator) past their owner's release.
            let pump = Task { [weak self] in
                for await event in source {
                    guard let self else { break }
                    continuation.yield(self.cardEvent(event))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in pump.cancel() }
        }
    }

    func cardEvent(_ event: ReaderEvent) -> CardEvent {
        if case .readerAdded(let info) = event { remember([info]) }
        let info = known.withLock { $0[event.readerName] }
        var e = CardEvent(kind: .readerAdded, reader: event.readerName, physicalReader: info?.physicalReader, slot: info?.slot)
        switch event {
        case .readerAdded: e.kind = .readerAdded
        case .readerRemoved: e.kind = .readerRemoved
        case .cardInserted(_, let atr):
            e.kind = .cardInserted
            e.card = CardKind.fromATR(atr)
            e.atr = atr
        case .cardRemoved: e.kind = .cardRemoved
        case .cardMute: e.kind = .cardMute
        }
        return e
    }

    /// Waits until a slot holds a card `matching` (already there counts), and returns that slot's name.
    public func waitForCard(timeout: Duration, matching: @escaping @Sendable (CardKind) -> Bool = { _ in true }) async throws(CarteKitError) -> String {
        let events = self.events()  // subscribe first: an insertion between the check and the wait is not lost
        if let slot = try await slots().first(where: { $0.card.map(matching) ?? false }) { return slot.info.name }
        let found: String?
        do {
            found = try await withDeadline(timeout) {
                for await e in events where e.kind == .cardInserted {
                    if let card = e.card, matching(card) { return e.reader }
                }
                return nil
            }
        } catch let e as CarteKitError {
            throw e
        } catch {
            throw .cancelled
        }
        guard let found else { throw .cancelled }
        return found
    }

    /// The pairs of slots holding a Vitale and a CPx card (a bi-fente reader first, then any two slots).
    public func pairs() async throws(CarteKitError) -> [ReaderPair] {
        let all = try await slots()
        // Cards first: a contactless target is only likely a phone until a session probes it.
        let vitales = all.filter { $0.card?.isVitale == true } + all.filter { $0.card == .apcv }
        let cpxs = all.filter { $0.card?.isCPx == true && $0.card != .cps3Contactless }
        var out: [ReaderPair] = []
        for v in vitales {
            for c in cpxs { out.append(ReaderPair(vitale: v.info.name, cpx: c.info.name, sameReader: v.info.physicalReader == c.info.physicalReader)) }
        }
        return out.sorted { $0.sameReader && !$1.sameReader }
    }

    // MARK: - Sessions

    /// Opens the card in `reader` exclusively, tells its kind, and runs `body` with a typed session.
    /// The card is released when `body` ends, throws, times out or is cancelled.
    ///
    /// - Parameters:
    ///   - reader: the slot's reader name (see ``slots()`` and ``pairs()``).
    ///   - timeout: the whole session's limit. When it passes, ``CarteKitError/timeout(_:)`` is thrown
    ///     once the APDU in flight (bounded by the reader's own timeouts) has returned.
    ///   - body: what to do with the card; the session is valid only inside it.
    /// - Returns: what `body` returns.
    public func withSession<T: Sendable>(on reader: String, timeout: Duration = .seconds(30),
                                         _ body: @escaping @Sendable (CardSession) async throws(CarteKitError) -> T) async throws(CarteKitError) -> T {
        let names: [String]
        do { names = try await backend.readers().map(\.name) } catch { throw .card(error) }
        guard names.contains(reader) else { throw .noSuchReader(reader, available: names) }
        let backend = self.backend
        let logger = self.logger
        let apcv = self.apcv
        do {
            return try await withDeadline(timeout) { () async throws -> T in
                let connection: any CardConnection
                do throws(CardError) { connection = try await backend.connect(to: reader, share: .exclusive, protocols: [.t0, .t1]) } catch { throw CarteKitError.card(error) }
                let channel = CardChannel(transport: connection, trace: Trace(capacity: 512), logger: logger)
                // The session runs on the connection's own thread (when it has one): each APDU then
                // reaches the card without a thread switch, and blocking calls stay off the cooperative pool.
                return try await withTaskExecutorPreference(connection.taskExecutor) { () async throws -> T in
                do {
                    let atr = await connection.atrBytes
                    let kind: CardKind
                    do throws(CardError) { kind = try await CardKind.detect(atr: atr, channel: channel, apcvAID: apcv.configuration.aid) } catch { throw CarteKitError.card(error) }
                    let session = CardSession.make(reader: reader, kind: kind, atr: atr, channel: channel, apcv: apcv, logger: logger)
                    let value = try await body(session)
                    try? await connection.disconnect(.leave)
                    try Task.checkCancellation()  // a cancelled caller gets .cancelled, not a late value
                    return value
                } catch {
                    try? await connection.disconnect(.leave)
                    throw error
                }
                }
            }
        } catch let e as CarteKitError {
            throw e
        } catch is CancellationError {
            throw .cancelled
        } catch {
            throw .card(.backend(code: -1, name: "unexpected", message: "\(error)"))
        }
    }

    /// The slot `requested`, or when it is `nil` the first slot holding a card `matching`
    /// (``CarteKitError/noCard(wanted:)`` names `wanted` when there is none).
    public func slot(_ requested: String?, wanted: String, matching: (CardKind) -> Bool) async throws(CarteKitError) -> String {
        if let requested { return requested }
        guard let slot = try await slots().first(where: { $0.card.map(matching) ?? false }) else { throw .noCard(wanted: wanted) }
        return slot.info.name
    }

    /// Reads the patient's identity in `reader` (default: the first slot holding a Carte Vitale, else
    /// the first holding a phone with the appli carte Vitale): the same model for both, so an editor's
    /// code does not change with the source (a phone needs the manager's `ApCVResolver`).
    public func readVitale(on reader: String? = nil, timeout: Duration = .seconds(30)) async throws(CarteKitError) -> VitaleCard {
        // A card first: a contactless target is only likely a phone until a session probes it.
        let name: String
        if reader == nil, let card = try? await slot(nil, wanted: "a Carte Vitale", matching: { $0.isVitale }) {
            name = card
        } else {
            name = try await slot(reader, wanted: "a Carte Vitale", matching: { $0.isPatientIdentity })
        }
        return try await withSession(on: name, timeout: timeout) { session throws(CarteKitError) in
            switch session {
            case .vitale(let vitale): return try await vitale.read()
            case .apcv(let phone): return try await phone.read()
            default: throw .wrongCard(reader: name, expected: "a Carte Vitale", found: session.kind)
            }
        }
    }

    /// Reads the patient's identity from the text of an appli carte Vitale QR code (as a scanner or a
    /// camera library delivered it), through the manager's `ApCVResolver`: the same model as
    /// ``readVitale(on:timeout:)``.
    public func readVitale(qrPayload: String) async throws(CarteKitError) -> VitaleCard {
        guard let resolver = apcv.resolver else { throw .apcv(.serviceUnavailable("no ApCVResolver was given to the ReaderManager")) }
        do {
            return try await ApCVSource(.qr(qrPayload), resolver: resolver, configuration: apcv.configuration, logger: logger).read()
        } catch {
            throw .apcv(error)
        }
    }

    /// Reads the CPx card in `reader` (default: the first slot holding one), verifying `pin` first when
    /// given (the situations need it). The PIN is sent once.
    public func readCPx(on reader: String? = nil, pin: PINCode? = nil, timeout: Duration = .seconds(30)) async throws(CarteKitError) -> ProfessionalCard {
        try await readCPx(on: reader, entry: pin.map { .host($0) }, timeout: timeout)
    }

    /// Reads the CPx card after the PIN is presented as `entry` says (`nil`: not at all). With
    /// ``PINEntry/pinPad`` the holder types it on the reader's PIN pad (the reader must have one:
    /// otherwise ``CarteKitError/cpx(_:)`` with `CPSError.unsupported`); `timeout` then includes
    /// the time the holder takes, and once the reader's prompt has started it ends only when the
    /// reader answers (its own timeout, the `bTimerOut` of the structure, bounds it).
    public func readCPx(on reader: String? = nil, entry: PINEntry?, timeout: Duration = .seconds(60)) async throws(CarteKitError) -> ProfessionalCard {
        let name = try await slot(reader, wanted: "a CPx card", matching: { $0.isCPx })
        return try await withSession(on: name, timeout: timeout) { session throws(CarteKitError) in
            guard case .cpx(let cpx) = session else { throw .wrongCard(reader: name, expected: "a CPx card", found: session.kind) }
            switch entry {
            case .host(let pin): try await cpx.verifyPIN(pin)
            case .pinPad: try await cpx.verifyPINOnPad()
            case nil: break
            }
            return try await cpx.read()
        }
    }

    /// Whether the reader (slot) holding the CPx card has a PIN pad that takes its PIN; software asks
    /// the holder to type on the reader then, and enters the PIN on the computer only otherwise.
    public func cpxReaderHasPINPad(on reader: String? = nil) async throws(CarteKitError) -> Bool {
        let name = try await slot(reader, wanted: "a CPx card", matching: { $0.isCPx })
        return try await withSession(on: name, timeout: .seconds(10)) { session throws(CarteKitError) in
            guard case .cpx(let cpx) = session else { throw .wrongCard(reader: name, expected: "a CPx card", found: session.kind) }
            return await cpx.pinPad() != nil
        }
    }

    /// Reads the patient's Carte Vitale and checks the professional's PIN on the same bi-fente reader
    /// (or on two mono-fente readers when no bi-fente holds both), in one call: the CPx session
    /// verifies the PIN once and reads the holder, the situations and the certificates; the Vitale is
    /// read in parallel on its own slot.
    public func readVitaleAndVerifyPIN(_ pin: PINCode, timeout: Duration = .seconds(30)) async throws(CarteKitError) -> PatientAndProfessional {
        try await readVitaleAndVerifyPIN(entry: .host(pin), timeout: timeout)
    }

    /// ``readVitaleAndVerifyPIN(_:timeout:)`` with the PIN presented as `entry` says: on the
    /// bi-fente's own PIN pad with ``PINEntry/pinPad`` (the PIN never reaches the computer).
    public func readVitaleAndVerifyPIN(entry: PINEntry, timeout: Duration = .seconds(60)) async throws(CarteKitError) -> PatientAndProfessional {
        guard let pair = try await pairs().first else { throw .noReaderPair }
        async let vitale = readVitaleResult(pair.vitale, timeout)
        let professional: ProfessionalCard
        do {
            professional = try await readCPx(on: pair.cpx, entry: entry, timeout: timeout)
        } catch {
            _ = await vitale
            throw error
        }
        return PatientAndProfessional(pair: pair, vitale: try await vitale.get(), professional: professional)
    }

    private func readVitaleResult(_ reader: String, _ timeout: Duration) async -> Result<VitaleCard, CarteKitError> {
        do { return .success(try await readVitale(on: reader, timeout: timeout)) } catch { return .failure(error) }
    }
}

/// How the professional's PIN is presented to the CPx card.
public enum PINEntry: Sendable {
    /// Typed on the computer (and sent once by CarteKit).
    case host(PINCode)
    /// Typed on the reader's PIN pad (PC/SC part 10): the reader builds the VERIFY itself.
    case pinPad
}

/// Runs `body`, throwing ``CarteKitError/timeout(_:)`` when `limit` passes first.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw CancellationError() }
        guard let value = first else { throw CarteKitError.timeout(limit) }
        return value
    }
}
