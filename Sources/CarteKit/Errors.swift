public import CarteApCV
public import CarteCore
public import CarteCPS
public import CarteVitale

/// Why a CarteKit session operation failed. Every case is safe to show (none carries a PIN).
public enum CarteKitError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No reader (slot) has this name; `available` lists those that do.
    case noSuchReader(String, available: [String])
    /// No card of the kind wanted is in any reader (`wanted` names it: "a Carte Vitale", "a CPx card").
    case noCard(wanted: String)
    /// The card in `reader` is not of the kind the operation needs.
    case wrongCard(reader: String, expected: String, found: CardKind)
    /// No reader holds a Vitale and a CPx card at once (a bi-fente reader, or two mono-fente readers).
    case noReaderPair
    /// The operation did not finish within `timeout`; the card was released.
    case timeout(Duration)
    /// The task was cancelled; the card was released.
    case cancelled
    /// The reader or the card failed (removed, mute, reset, held by another program, pcscd gone…).
    case card(CardError)
    /// The Carte Vitale could not be read.
    case vitale(VitaleError)
    /// The CPx operation failed (wrong PIN with tries left, blocked PIN, unreadable file…).
    case cpx(CPSError)
    /// The appli carte Vitale session failed (token tampered, expired, replayed, foreign; service
    /// unreachable; phone refused), or no `ApCVResolver` was given to the ``ReaderManager``.
    case apcv(ApCVError)

    public var description: String {
        switch self {
        case .noSuchReader(let name, let available):
            return "no reader named \"\(name)\"" + (available.isEmpty ? " (no reader at all)" : "; readers: " + available.joined(separator: ", "))
        case .noCard(let wanted): return "no reader holds \(wanted)"
        case .wrongCard(let reader, let expected, let found): return "reader \"\(reader)\" holds \(found), not \(expected)"
        case .noReaderPair: return "no reader holds a Carte Vitale and a CPx card at the same time"
        case .timeout(let d): return "the card operation did not finish within \(d)"
        case .cancelled: return "the card operation was cancelled"
        case .card(let e): return e.description
        case .vitale(let e): return e.description
        case .cpx(let e): return e.description
        case .apcv(let e): return e.description
        }
    }
}
