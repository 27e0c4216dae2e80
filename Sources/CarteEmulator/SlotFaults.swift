public import CarteCore

/// A fault a virtual slot plays on the APDUs sent to its card: the faults real readers and cards
/// produce in the field, made repeatable. Injected live (``VirtualSlot/inject(_:)``, `carte sim fault`)
/// or scheduled in a card image (`faults:`, armed at the n-th APDU after the insertion).
public enum SlotFault: Sendable, Hashable, CustomStringConvertible {
    /// The card is pulled out before the next APDU reaches it: that APDU fails, nothing ran.
    case removeBefore
    /// The next APDU reaches the card (its effect applies: a PIN try counted, a record written) but the
    /// card is pulled out before answering: the caller cannot know whether it ran.
    case removeDuring
    /// The next APDU is answered, then the card is pulled out.
    case removeAfter
    /// The next `count` APDUs get no answer at all: through pcscd the driver's timeout fires; in memory
    /// the connection reports ``CardError/cardMute(reader:timeout:)``. The commands do not run.
    case mute(count: Int)
    /// Every APDU is answered after `delay`, until the faults are cleared.
    case slow(Duration)
    /// The next `count` APDUs are answered with this status word alone; the commands do not run.
    case statusWord(StatusWord, count: Int)
    /// The card is warm-reset before the next APDU (an electrical glitch): its volatile state is lost
    /// (selected files, verified PINs, security environment). Connections of the in-memory backend see
    /// ``CardError/cardReset(reader:)`` once; pcscd is not told, so its clients see the reset card's answers.
    case warmReset

    /// The names `carte sim fault` and card images use.
    public static let names = ["remove-before", "remove-during", "remove-after", "mute", "slow", "sw", "reset"]

    /// Builds a fault from its name and parameters (`count` for mute and sw, default 1; `milliseconds`
    /// for slow; `statusWord` for sw). Throws a message naming what is missing or wrong.
    public static func named(_ name: String, count: Int? = nil, milliseconds: Int? = nil, statusWord: StatusWord? = nil) throws(SlotFaultError) -> SlotFault {
        let n = count ?? 1
        guard (1...10_000).contains(n) else { throw SlotFaultError("count must be 1 to 10000, not \(n)") }
        switch name {
        case "remove-before": return .removeBefore
        case "remove-during": return .removeDuring
        case "remove-after": return .removeAfter
        case "mute": return .mute(count: n)
        case "slow":
            guard let ms = milliseconds else { throw SlotFaultError("slow needs a delay in milliseconds") }
            guard (1...60_000).contains(ms) else { throw SlotFaultError("the delay must be 1 to 60000 ms, not \(ms)") }
            return .slow(.milliseconds(ms))
        case "sw":
            guard let sw = statusWord else { throw SlotFaultError("sw needs the status word to answer (e.g. 6F00)") }
            return .statusWord(sw, count: n)
        case "reset": return .warmReset
        default: throw SlotFaultError("unknown fault \"\(name)\" (\(names.joined(separator: ", ")))")
        }
    }

    public var description: String {
        switch self {
        case .removeBefore: return "remove-before"
        case .removeDuring: return "remove-during"
        case .removeAfter: return "remove-after"
        case .mute(let n): return "mute (\(n) APDU\(n == 1 ? "" : "s"))"
        case .slow(let d): return "slow (\(d) per APDU)"
        case .statusWord(let sw, let n): return "sw \(sw.rawValue.hex) (\(n) APDU\(n == 1 ? "" : "s"))"
        case .warmReset: return "reset"
        }
    }
}

/// A fault that cannot be built: what is wrong.
public struct SlotFaultError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ d: String) { description = d }
}

/// The faults armed on a slot, and the APDU count since the insertion (for scheduled faults).
struct SlotFaults {
    var pending: [SlotFault] = []
    var muteLeft = 0
    var statusWordLeft: (StatusWord, Int)?
    var delay: Duration?
    var apdus = 0
    /// Faults of the card image: (APDU number, fault), armed when the count reaches the number.
    var scheduled: [(at: Int, fault: SlotFault)] = []

    mutating func arm(_ fault: SlotFault) {
        switch fault {
        case .mute(let n): muteLeft += n
        case .slow(let d): delay = d
        case .statusWord(let sw, let n): statusWordLeft = (sw, n)
        default: pending.append(fault)
        }
    }

    mutating func take(_ fault: SlotFault) -> Bool {
        guard let i = pending.firstIndex(of: fault) else { return false }
        pending.remove(at: i)
        return true
    }
}

/// What a slot does with one APDU once the faults are applied.
package enum SlotOutcome {
    /// The answer, to give after `delay` (when slow).
    case answer([UInt8], delay: Duration?)
    /// No answer at all (mute): the caller's timeout fires.
    case noAnswer(delay: Duration?)
    /// A failure to report (the card was removed).
    case failure(CardError)
}
