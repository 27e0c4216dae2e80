public import CarteEmulator
import CarteApCV
import CarteCore
public import CarteCrypto
import Foundation
import Yams

/// A phone persona (`carte-apcv-persona/1`): whose appli carte Vitale it is (the card image of the
/// same persona's Vitale, whose identity the simulated service gives), and how the phone behaves.
/// ``ApCVPersonaCompiler/compile(_:key:subject:source:)`` turns it into a phone image with a new
/// P-256 key and subject handle (or the ones of a previous build). Everything is synthetic.
public struct ApCVPersona: Sendable, Hashable {
    /// A name for people.
    public var name: String
    /// Free text.
    public var summary: String?
    /// The Vitale card image (`bundled:PATH` or a path) of the same persona.
    public var identity: String
    /// The id of the phone's signing key.
    public var keyID: String
    /// Seconds a token stays valid.
    public var tokenLifetime: Int = 120
    /// How the holder answers a token request.
    public var consent: CardImage.Phone.Consent = .automatic
    /// The application's AID (synthetic by default).
    public var aid: [UInt8] = ApCVProtocol.syntheticAID
}

/// Reads `carte-apcv-persona/1` and compiles phone images.
public enum ApCVPersonaCompiler {
    /// The persona format's identifier.
    public static let format = "carte-apcv-persona/1"

    /// Whether `text` declares the phone persona format.
    public static func isPersona(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).contains { $0.replacingOccurrences(of: " ", with: "") == "format:\(format)" }
    }

    /// Parses a persona; errors name the file, the line and the field.
    public static func load(text: String, source: String) throws(CardImageError) -> ApCVPersona {
        let root = try CardImageLoader.compose(text, source: source)
        let r = YAMLDocumentReader(source: source)
        let f = try r.fields(root, "", allowed: ["format", "name", "description", "synthetic", "identity", "key-id", "token-lifetime", "consent", "aid"])
        func need(_ key: String) throws(CardImageError) -> Node {
            guard let n = f[key] else { throw r.fail(root, key, .missingField) }
            return n
        }
        let formatText = try r.scalar(try need("format"), "format")
        guard formatText == format else { throw r.fail(f["format"], "format", .unsupportedFormat(formatText)) }
        guard try r.bool(try need("synthetic"), "synthetic") else {
            throw r.fail(f["synthetic"], "synthetic", .invalidValue("the apCV protocol is not public: phone personas are synthetic, say `synthetic: true`"))
        }
        let keyID = try r.scalar(try need("key-id"), "key-id")
        guard (1...32).contains(keyID.utf8.count) else { throw r.fail(f["key-id"], "key-id", .invalidValue("1 to 32 bytes of UTF-8")) }
        var p = ApCVPersona(name: try r.scalar(try need("name"), "name"), identity: try r.scalar(try need("identity"), "identity"), keyID: keyID)
        p.summary = try f["description"].map { n throws(CardImageError) in try r.scalar(n, "description") }
        if let n = f["token-lifetime"] { p.tokenLifetime = try r.int(n, "token-lifetime", in: 1...600) }
        if let n = f["consent"] {
            let t = try r.scalar(n, "consent")
            guard let c = CardImage.Phone.Consent(rawValue: t) else { throw r.fail(n, "consent", .invalidValue("expected automatic or refuse")) }
            p.consent = c
        }
        if let n = f["aid"] {
            p.aid = try r.hex(n, "aid")
            guard (5...16).contains(p.aid.count) else { throw r.fail(n, "aid", .invalidValue("an AID is 5 to 16 bytes")) }
        }
        return p
    }

    /// The phone image of `persona`: a new P-256 key and a random 16-byte subject unless given.
    public static func compile(_ persona: ApCVPersona, key: ECPrivateKey? = nil, subject: [UInt8]? = nil, source: String) throws(CryptoError) -> CardImage {
        let signingKey: ECPrivateKey
        if let key { signingKey = key } else { signingKey = try ECPrivateKey.generateP256() }
        let handle: [UInt8]
        if let subject { handle = subject } else { handle = try secureRandomBytes(16) }
        var behaviour = CardImage.Behaviour(t0Responses: false, classes: [0x00, ApCVProtocol.tokenCLA])
        behaviour.challengeSeed = 0
        var image = CardImage(name: persona.name, summary: persona.summary ?? "SYNTHETIC appli carte Vitale (the real protocol is not public)",
                              synthetic: true, source: source, atr: ApCVProtocol.phoneATR, cardProtocol: .t1, behaviour: behaviour,
                              root: CardImage.DedicatedFile(fid: 0x3F00))
        image.apcv = CardImage.Phone(aid: persona.aid, keyID: persona.keyID, subject: handle, tokenLifetime: persona.tokenLifetime,
                                     identity: persona.identity, consent: persona.consent, privateKeyPEM: signingKey.pem)
        return image
    }
}
