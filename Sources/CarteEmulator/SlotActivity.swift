public import CarteCore
import Synchronization

/// One APDU a virtual slot's card was sent by a reader-side caller (the pcscd driver, the PIN pad, a
/// vpcd link), as a console or a bug report shows it. Secrets never enter it: the data of VERIFY,
/// CHANGE REFERENCE DATA, RESET RETRY COUNTER and ENABLE/DISABLE VERIFICATION is replaced by `nil`
/// bytes before the exchange is reported (``CardImage/Replay/withoutSecrets(_:)``), and of a command the
/// PIN pad built everything after its header, whatever its instruction.
public struct SlotExchange: Sendable, Hashable {
    /// The slot's name (`<reader> NN SS`).
    public var slot: String
    /// The slot's insertion counter when the command was sent: which card it went to.
    public var insertion: Int
    /// The command; `nil` bytes are a PIN or PUK that was removed.
    public var command: [UInt8?]
    /// The card's answer (data and status word), or `nil` when there was none.
    public var response: [UInt8]?
    /// Why there was no answer (`card removed`, `no answer (mute)`), or `nil`.
    public var failure: String?
    /// Whether the reader's PIN pad built the command (with the PIN typed on its keypad).
    public var viaPad: Bool
    /// How long the card took to answer (faults' delays included).
    public var elapsed: Duration

    /// Describes one exchange; see the properties.
    public init(slot: String, insertion: Int, command: [UInt8?], response: [UInt8]?, failure: String?, viaPad: Bool, elapsed: Duration) {
        self.slot = slot
        self.insertion = insertion
        self.command = command
        self.response = response
        self.failure = failure
        self.viaPad = viaPad
        self.elapsed = elapsed
    }

    /// Whether part of the command was removed (a secret).
    public var isRedacted: Bool { command.contains(nil) }
}

/// What the virtual readers of a ``SimulatorBackend`` do, reported as it happens to the observers
/// registered with ``SimulatorBackend/observe(_:)`` (the simulator daemon's activity log, its console).
public enum SlotActivity: Sendable, Hashable {
    /// An APDU and its answer (or its failure).
    case exchange(SlotExchange)
    /// The card in `slot` was powered up or warm-reset by the reader and answered `atr`.
    case poweredUp(slot: String, insertion: Int, atr: [UInt8])
    /// The PIN pad of `slot` started (`waiting`) or ended a PIN prompt.
    case padPrompt(slot: String, waiting: Bool)
    /// A reader or card event: a reader plugged or unplugged, a card inserted, removed (also by a
    /// fault) or mute.
    case readerEvent(ReaderEvent)
    /// The faults armed on `slot` changed (armed, cleared, or used up by an APDU).
    case faultsChanged(slot: String)
}

/// The observers of one backend, shared with its slots.
final class SlotActivityObservers: Sendable {
    private let observers = Mutex<[@Sendable (SlotActivity) -> Void]>([])

    func add(_ observer: @escaping @Sendable (SlotActivity) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Whether anybody listens (so nothing is built for nobody).
    var isObserved: Bool { observers.withLock { !$0.isEmpty } }

    func report(_ activity: SlotActivity) {
        for observer in observers.withLock({ $0 }) { observer(activity) }
    }
}

extension SlotFaults {
    /// A cheap summary that changes whenever ``descriptions`` does (a fault armed, used or cleared),
    /// compared around each APDU instead of building the descriptions.
    var signature: [Int] {
        [pending.count, muteLeft, statusWordLeft.map { $0.1 } ?? -1, delay.map { Int($0.components.attoseconds / 1_000_000_000) + Int($0.components.seconds) * 1_000_000_000 } ?? -1, scheduled.count]
    }

    /// The armed faults as `carte sim fault` names them, in the order they act.
    var descriptions: [String] {
        var out = pending.map(\.description)
        if muteLeft > 0 { out.append(SlotFault.mute(count: muteLeft).description) }
        if let (sw, n) = statusWordLeft { out.append(SlotFault.statusWord(sw, count: n).description) }
        if let delay { out.append(SlotFault.slow(delay).description) }
        out += scheduled.sorted { $0.at < $1.at }.map { "\($0.fault) at APDU \($0.at)" }
        return out
    }
}
