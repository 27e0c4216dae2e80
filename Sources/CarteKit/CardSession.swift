import CarteApCV
public import CarteCore
public import CarteCPS
import CarteCrypto
public import CarteVitale
import Logging

/// A typed session on the card of one slot, valid inside ``ReaderManager/withSession(on:timeout:_:)``.
public enum CardSession: Sendable {
    /// A Carte Vitale.
    case vitale(VitaleSession)
    /// A professional's CPx card.
    case cpx(CPxSession)
    /// A phone with the appli carte Vitale (synthetic protocol).
    case apcv(ApCVSession)
    /// A card CarteKit does not read; its raw channel stays available.
    case other(OtherCardSession)

    /// The kind of card.
    public var kind: CardKind {
        switch self {
        case .vitale(let s): return s.kind
        case .cpx(let s): return s.kind
        case .apcv: return .apcv
        case .other(let s): return s.kind
        }
    }

    static func make(reader: String, kind: CardKind, atr: [UInt8], channel: CardChannel, apcv: ApCVSettings, logger: Logger) -> CardSession {
        switch kind {
        case .vitale1, .vitale2:
            return .vitale(VitaleSession(reader: reader, kind: kind, atr: atr, channel: channel, logger: logger))
        case .cps3, .cps4, .cps3Contactless:
            let generation: CPSGeneration = kind == .cps4 ? .cps4 : kind == .cps3Contactless ? .cps3Contactless : .cps3
            return .cpx(CPxSession(reader: reader, kind: kind, cps: CPSReader(channel: channel, generation: generation, logger: logger)))
        case .apcv:
            return .apcv(ApCVSession(reader: reader, channel: channel, settings: apcv, logger: logger))
        case .unknown:
            return .other(OtherCardSession(reader: reader, kind: kind, atr: atr, channel: channel))
        }
    }
}

/// A session on a Carte Vitale.
public struct VitaleSession: Sendable {
    /// The slot.
    public let reader: String
    /// `.vitale1` or `.vitale2`.
    public let kind: CardKind
    let atr: [UInt8]
    let channel: CardChannel
    let logger: Logger

    /// Reads the card (people, NIR, rights…) with the fewest APDUs.
    public func read() async throws(CarteKitError) -> VitaleCard {
        do {
            return try await VitaleReader(channel: channel, logger: logger).read(atr: atr)
        } catch {
            throw .vitale(error)
        }
    }
}

/// How a ``ReaderManager`` resolves appli carte Vitale tokens.
struct ApCVSettings: Sendable {
    var resolver: (any ApCVResolver)?
    var configuration: ApCVProtocol.Configuration
}

/// A session on a phone with the appli carte Vitale in a contactless slot.
public struct ApCVSession: Sendable {
    /// The slot.
    public let reader: String
    let channel: CardChannel
    let settings: ApCVSettings
    let logger: Logger

    /// Gets a session token from the phone and resolves it into the identity, the same model as a
    /// Carte Vitale read (generation `.apcv`). Needs the manager's `ApCVResolver`.
    public func read() async throws(CarteKitError) -> VitaleCard {
        guard let resolver = settings.resolver else { throw .apcv(.serviceUnavailable("no ApCVResolver was given to the ReaderManager")) }
        do {
            return try await ApCVSource(.nfc(channel), resolver: resolver, configuration: settings.configuration, logger: logger).read()
        } catch {
            throw .apcv(error)
        }
    }
}

/// A session on a CPx card. Every method sends a PIN at most once.
public struct CPxSession: Sendable {
    /// The slot.
    public let reader: String
    /// `.cps3`, `.cps4` or `.cps3Contactless`.
    public let kind: CardKind
    /// The card application, for what this session does not wrap.
    public let cps: CPSReader

    private func run<T>(_ body: () async throws(CPSError) -> T) async throws(CarteKitError) -> T {
        do { return try await body() } catch { throw .cpx(error) }
    }

    /// Holder, situations (when the PIN was verified), certificates.
    public func read() async throws(CarteKitError) -> ProfessionalCard { try await run { () throws(CPSError) in try await cps.read() } }
    /// Tries left, without using one.
    public func pinStatus() async throws(CarteKitError) -> PINStatus { try await run { () throws(CPSError) in try await cps.pinStatus() } }
    /// Presents the PIN once.
    public func verifyPIN(_ pin: PINCode) async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.verifyPIN(pin) } }
    /// Changes the PIN.
    public func changePIN(current: PINCode, new: PINCode) async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.changePIN(current: current, new: new) } }
    /// Unblocks the PIN with the PUK and sets a new one.
    public func unblockPIN(puk: PINCode, newPIN: PINCode) async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.unblockPIN(puk: puk, newPIN: newPIN) } }
    /// The reader's PIN pad when it can take this card's PIN (see `CPSReader.pinPad()`).
    public func pinPad() async -> PINPadCapabilities? { await cps.pinPad() }
    /// Has the holder type the PIN on the reader's PIN pad (see `CPSReader.verifyPINOnPad()`).
    public func verifyPINOnPad() async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.verifyPINOnPad() } }
    /// Changes the PIN on the reader's PIN pad (see `CPSReader.changePINOnPad()`).
    public func changePINOnPad() async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.changePINOnPad() } }
    /// Unblocks the PIN on the reader's PIN pad (see `CPSReader.unblockPINOnPad()`).
    public func unblockPINOnPad() async throws(CarteKitError) { try await run { () throws(CPSError) in try await cps.unblockPINOnPad() } }
    /// Both certificates.
    public func certificates() async throws(CarteKitError) -> [CPSCertificate] { try await run { () throws(CPSError) in try await cps.certificates() } }
    /// Signs `data` (SHA-256, PKCS#1 v1.5) with the signature key; the PIN must be verified.
    public func sign(_ data: [UInt8]) async throws(CarteKitError) -> [UInt8] { try await run { () throws(CPSError) in try await cps.sign(data) } }
    /// Signs a SHA-256 digest computed elsewhere (a CPS4 only: a CPS3 finishes the hash itself).
    public func sign(digest: [UInt8]) async throws(CarteKitError) -> [UInt8] { try await run { () throws(CPSError) in try await cps.sign(digest: digest) } }
    /// INTERNAL AUTHENTICATE of a challenge.
    public func authenticate(challenge: [UInt8]) async throws(CarteKitError) -> [UInt8] { try await run { () throws(CPSError) in try await cps.authenticate(challenge: challenge) } }
}

/// A session on a card CarteKit does not read: its raw channel.
public struct OtherCardSession: Sendable {
    /// The slot.
    public let reader: String
    /// `.unknown(atr:)`.
    public let kind: CardKind
    /// The ATR.
    public let atr: [UInt8]
    /// The channel, held exclusively for the session.
    public let channel: CardChannel
}
