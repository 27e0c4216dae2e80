public import CarteCore
import CarteCrypto
public import CarteVitale
public import Logging

/// An appli carte Vitale as a card source: a phone on a contactless slot (NFC) or the text of its QR
/// code. ``read()`` gives the same ``VitaleCard`` model as ``VitaleReader`` (with generation
/// ``VitaleCard/Generation/apcv``), so an editor's code is the same for a card and a phone.
public struct ApCVSource: Sendable {
    /// Where the token comes from.
    public enum Origin: Sendable {
        /// A phone in a contactless slot, reached through `channel`.
        case nfc(CardChannel)
        /// The text a scanner or a camera library delivered.
        case qr(String)
    }

    /// Where the token comes from.
    public let origin: Origin
    /// The service that turns the token into the identity.
    public let resolver: any ApCVResolver
    /// The synthetic protocol's settings (AID).
    public let configuration: ApCVProtocol.Configuration
    let logger: Logger

    /// A source reading `origin` and resolving through `resolver`. The software id sent to the phone
    /// is the resolver's.
    public init(_ origin: Origin, resolver: any ApCVResolver, configuration: ApCVProtocol.Configuration = .init(),
                logger: Logger = Logger(label: "cartekit.apcv", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.origin = origin
        self.resolver = resolver
        self.configuration = configuration
        self.logger = logger
    }

    /// Gets a session token (by NFC or from the QR text) and resolves it into the identity.
    public func read() async throws(ApCVError) -> VitaleCard {
        let token = try await sessionToken()
        logger.debug("apCV session token \(token.idHex) (\(token.channel)), resolving")
        var identity = try await resolver.resolve(token: token.encoded)
        identity.apduCount = token.channel == .nfc ? Self.nfcExchanges : 0
        return identity
    }

    /// The APDUs of an NFC session: SELECT of the AID, GET SESSION TOKEN (T=1: no GET RESPONSE).
    static let nfcExchanges = 2

    /// The session token, decoded and checked for what the reader can check alone: its format, the
    /// audience and (by NFC) the echo of this reader's nonce. The signature, the validity and single
    /// use are the service's to check.
    public func sessionToken() async throws(ApCVError) -> SessionToken {
        switch origin {
        case .qr(let text):
            let token = try SessionToken(bytes: QRPayload.decode(text))
            guard token.channel == .qr else { throw .malformedToken("an NFC token in a QR code") }
            try checkAudience(token)
            return token
        case .nfc(let channel):
            return try await nfcToken(channel)
        }
    }

    private func checkAudience(_ token: SessionToken) throws(ApCVError) {
        guard token.audience == resolver.softwareID else { throw .foreignAudience(expected: resolver.softwareID, found: token.audience) }
    }

    private func nfcToken(_ channel: CardChannel) async throws(ApCVError) -> SessionToken {
        do {
            let select = try await channel.transmit(CommandAPDU.select(aid: configuration.aid))
            guard select.statusWord.isSuccess else { throw ApCVError.notAnApCV(select.statusWord) }
            let nonce: [UInt8]
            do { nonce = try secureRandomBytes(8) } catch { throw ApCVError.crypto(error) }
            let data = TLV(tag: ApCVProtocol.Tag.audience, value: Array(resolver.softwareID.utf8)).encoded()
                + TLV(tag: ApCVProtocol.Tag.nonce, value: nonce).encoded()
            let command = try CommandAPDU(cla: ApCVProtocol.tokenCLA, ins: ApCVProtocol.tokenINS, p1: 0, p2: 0, data: data, le: 256)
            let answer = try await channel.transmit(command)
            guard answer.statusWord.isSuccess else { throw ApCVError.phoneRefused(answer.statusWord) }
            let token = try SessionToken(bytes: answer.data)
            guard token.channel == .nfc else { throw ApCVError.malformedToken("a QR token over NFC") }
            try checkAudience(token)
            guard token.nonce == nonce else { throw ApCVError.nonceMismatch }
            return token
        } catch let e as ApCVError {
            throw e
        } catch let e as CardError {
            throw .card(e)
        } catch let e as APDUError {
            throw .card(.invalidCommand(e))
        } catch {
            throw .card(.unsupported("\(error)"))
        }
    }
}
