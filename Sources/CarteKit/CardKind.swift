public import CarteApCV
public import CarteCore
import CarteCPS
import CarteVitale

/// What kind of card is in a slot: from its ATR, then by probing when the ATR is not known.
public enum CardKind: Hashable, Sendable, CustomStringConvertible {
    /// A Carte Vitale 1 (B0' memory card).
    case vitale1
    /// A Carte Vitale 2.
    case vitale2
    /// A CPS3 (contact).
    case cps3
    /// A CPS3 over its contactless interface.
    case cps3Contactless
    /// A CPS4.
    case cps4
    /// The smartphone *appli carte Vitale* in a contactless slot (CarteKit's synthetic protocol; see CarteApCV).
    case apcv
    /// A card CarteKit does not know, with its ATR.
    case unknown(atr: [UInt8])

    /// Whether the card is a Carte Vitale (1 or 2).
    public var isVitale: Bool { self == .vitale1 || self == .vitale2 }
    /// Whether the card is a professional's CPx card.
    public var isCPx: Bool { self == .cps3 || self == .cps3Contactless || self == .cps4 }
    /// Whether the slot gives a patient's identity: a Carte Vitale or a phone with the appli carte Vitale.
    public var isPatientIdentity: Bool { isVitale || self == .apcv }

    /// A stable name for logs, JSON and the C API (`vitale1`, `vitale2`, `cps3`, `cps3-contactless`, `cps4`, `apcv`, `unknown`).
    public var name: String {
        switch self {
        case .vitale1: return "vitale1"
        case .vitale2: return "vitale2"
        case .cps3: return "cps3"
        case .cps3Contactless: return "cps3-contactless"
        case .cps4: return "cps4"
        case .apcv: return "apcv"
        case .unknown: return "unknown"
        }
    }

    public var description: String {
        if case .unknown(let atr) = self { return "unknown card (ATR \(atr.hexString()))" }
        return name
    }

    /// The kind an ATR announces (domain-facts §1), or `.unknown` when the ATR alone does not say.
    /// The PC/SC ATR of an ISO 14443-4 target with no historical bytes (`3B 80 80 01 01`), which is
    /// how a phone in card emulation shows, gives `.apcv` as a likely kind (``detect(atr:channel:apcvAID:)``
    /// confirms it by probing).
    public static func fromATR(_ atr: [UInt8]) -> CardKind {
        if atr == ApCVProtocol.phoneATR { return .apcv }
        switch KnownATR.identify(atr).first?.family {
        case .vitale1?: return .vitale1
        case .vitale2?: return .vitale2
        case .cps3?: return .cps3
        case .cps3Contactless?: return .cps3Contactless
        case .cps4?: return .cps4
        default: return .unknown(atr: atr)
        }
    }

    /// The kind of the card behind `channel`: its ATR first; for an unknown ATR, a SELECT of the
    /// Vitale 2 `MF_VITALE` application, then of the CPx IAS application (P2 `0C`: nothing read, no
    /// state changed beyond the current DF). A contactless target (a PC/SC ATR `3B 8x 80 01 …`) is
    /// first probed for the appli carte Vitale's AID (`apcvAID`, synthetic by default).
    public static func detect(atr: [UInt8], channel: CardChannel, apcvAID: [UInt8] = ApCVProtocol.syntheticAID) async throws(CardError) -> CardKind {
        var byATR = fromATR(atr)
        if byATR == .apcv { byATR = .unknown(atr: atr) }  // likely, not sure: probe
        guard case .unknown = byATR else { return byATR }
        var probes: [([UInt8], CardKind)] = [(VitaleReader.mfVitaleAID, .vitale2), (CPSLayout.iasAID, .cps3), (CPSLayout.contactlessAID, .cps3Contactless)]
        if (try? ATR(bytes: atr))?.isPCSCContactless == true { probes.insert((apcvAID, .apcv), at: 0) }
        for (aid, kind) in probes {
            let select: CommandAPDU
            do { select = try CommandAPDU.select(aid: aid, p2: 0x0C, le: nil) } catch { throw .invalidCommand(error) }
            let r = try await channel.transmit(select, policy: .raw)
            if r.statusWord.isSuccess || r.statusWord.sw1 == 0x61 { return kind }
        }
        return byATR
    }
}
