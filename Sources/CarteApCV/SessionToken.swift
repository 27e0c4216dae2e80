import CarteCore
public import CarteCrypto

/// A **synthetic** apCV session token: what the phone gives the professional's software (by NFC or in
/// a QR code) and the software hands to the insurer's service, which answers with the identity.
///
/// Encoding (BER-TLV, tags in ``ApCVProtocol/Tag``):
/// ```
/// 7F70 { 7F71 { 80 version, 81 token id, 82 key id, 83 audience, 84 issued at, 85 expires at,
///               86 subject, 87 channel, [88 nonce] },
///        5F37 ECDSA P-256 SHA-256 signature (DER) of the whole 7F71 TLV as encoded }
/// ```
/// Short-lived (a few minutes), single use, bound to one professional software (the audience) and,
/// by NFC, to the reader's nonce.
public struct SessionToken: Hashable, Sendable {
    /// How the token reached the software.
    public enum Channel: UInt8, Hashable, Sendable, CaseIterable {
        /// Read from the phone over NFC (a contactless slot).
        case nfc = 1
        /// Scanned from the QR code the phone displays.
        case qr = 2
    }

    /// The format version (1).
    public var version: UInt8 = 1
    /// 16 random bytes: single use is checked on them.
    public var id: [UInt8]
    /// The id of the key that signs.
    public var keyID: String
    /// The professional software the token is for.
    public var audience: String
    /// Issue time, seconds since 1970 (UTC).
    public var issuedAt: Int64
    /// Expiry time, seconds since 1970 (UTC).
    public var expiresAt: Int64
    /// The opaque handle of the insured person (meaningful to the service only).
    public var subject: [UInt8]
    /// NFC or QR.
    public var channel: Channel
    /// The reader's nonce echoed by the phone (NFC only).
    public var nonce: [UInt8]?
    /// The ECDSA signature of ``signedContent`` (empty until signed).
    public var signature: [UInt8] = []

    /// A token to sign.
    public init(id: [UInt8], keyID: String, audience: String, issuedAt: Int64, expiresAt: Int64, subject: [UInt8], channel: Channel, nonce: [UInt8]? = nil) {
        self.id = id
        self.keyID = keyID
        self.audience = audience
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.subject = subject
        self.channel = channel
        self.nonce = nonce
    }

    /// The token id in hexadecimal (for logs and errors; not personal data).
    public var idHex: String { id.hexString(separator: "") }

    /// The encoded `7F71` content: what the signature covers.
    public var signedContent: [UInt8] {
        var fields: [TLV] = [
            TLV(tag: ApCVProtocol.Tag.version, value: [version]),
            TLV(tag: ApCVProtocol.Tag.tokenID, value: id),
            TLV(tag: ApCVProtocol.Tag.keyID, value: Array(keyID.utf8)),
            TLV(tag: ApCVProtocol.Tag.audience, value: Array(audience.utf8)),
            TLV(tag: ApCVProtocol.Tag.issuedAt, value: Self.bigEndian(issuedAt)),
            TLV(tag: ApCVProtocol.Tag.expiresAt, value: Self.bigEndian(expiresAt)),
            TLV(tag: ApCVProtocol.Tag.subject, value: subject),
            TLV(tag: ApCVProtocol.Tag.channel, value: [channel.rawValue]),
        ]
        if let nonce { fields.append(TLV(tag: ApCVProtocol.Tag.nonce, value: nonce)) }
        return TLV(tag: ApCVProtocol.Tag.content, children: fields).encoded()
    }

    /// Signs the content with `key` and returns the token's bytes. Times must fit the format (0 to
    /// 2^32 − 1 seconds since 1970).
    public mutating func sign(with key: ECPrivateKey) throws(CryptoError) -> [UInt8] {
        guard (0...Int64(UInt32.max)).contains(issuedAt), (0...Int64(UInt32.max)).contains(expiresAt) else {
            throw CryptoError(.invalidInput, "token times must be 0 to \(UInt32.max) seconds since 1970")
        }
        signature = try key.sign(signedContent)
        return encoded
    }

    /// The token's bytes (content and signature).
    public var encoded: [UInt8] {
        let content = signedContent
        let signatureTLV = TLV(tag: ApCVProtocol.Tag.signature, value: signature).encoded()
        let body = content + signatureTLV
        return ApCVProtocol.Tag.token.bytes + TLV.encodeLength(body.count) + body
    }

    /// The largest token accepted (a phone's answer fits one short APDU response).
    public static let maximumSize = 512

    /// Decodes a token's bytes strictly: every field present once with its size, no unknown field,
    /// nothing after the token. The signature is *not* checked here (see ``TokenVerifier``).
    public init(bytes: [UInt8]) throws(ApCVError) {
        guard !bytes.isEmpty else { throw .malformedToken("empty") }
        guard bytes.count <= Self.maximumSize else { throw .malformedToken("\(bytes.count) bytes, more than \(Self.maximumSize)") }
        let outer: [TLV]
        do { outer = try TLV.decode(bytes, allowPadding: false) } catch { throw .malformedToken("\(error)") }
        guard outer.count == 1, let token = outer.first, token.tag == ApCVProtocol.Tag.token, let parts = token.children else {
            throw .malformedToken("not one 7F70 template at offset 0")
        }
        guard parts.count == 2, parts[0].tag == ApCVProtocol.Tag.content, let fields = parts[0].children, parts[1].tag == ApCVProtocol.Tag.signature else {
            throw .malformedToken("7F70 must hold 7F71 (content) then 5F37 (signature)")
        }
        var seen: [TLVTag: TLV] = [:]
        for field in fields {
            guard seen[field.tag] == nil else { throw .malformedToken("tag \(field.tag) twice in 7F71 (offset \(field.offset))") }
            seen[field.tag] = field
        }
        func field(_ tag: TLVTag, _ name: String, sizes: ClosedRange<Int>) throws(ApCVError) -> [UInt8] {
            guard let f = seen.removeValue(forKey: tag) else { throw .malformedToken("no \(name) (tag \(tag)) in 7F71") }
            guard sizes.contains(f.value.count) else {
                throw .malformedToken("\(name) (tag \(tag), offset \(f.offset)) is \(f.value.count) bytes, not \(sizes.lowerBound == sizes.upperBound ? "\(sizes.lowerBound)" : "\(sizes.lowerBound)–\(sizes.upperBound)")")
            }
            return f.value
        }
        func text(_ tag: TLVTag, _ name: String) throws(ApCVError) -> String {
            let bytes = try field(tag, name, sizes: 1...32)
            guard let s = String(validating: bytes, as: UTF8.self), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw .malformedToken("\(name) (tag \(tag)) is not printable UTF-8")
            }
            return s
        }
        let version = try field(ApCVProtocol.Tag.version, "version", sizes: 1...1)[0]
        guard version == 1 else { throw .malformedToken("version \(version), only 1 is known") }
        id = try field(ApCVProtocol.Tag.tokenID, "token id", sizes: 16...16)
        keyID = try text(ApCVProtocol.Tag.keyID, "key id")
        audience = try text(ApCVProtocol.Tag.audience, "audience")
        issuedAt = Self.integer(try field(ApCVProtocol.Tag.issuedAt, "issue time", sizes: 4...4))
        expiresAt = Self.integer(try field(ApCVProtocol.Tag.expiresAt, "expiry time", sizes: 4...4))
        subject = try field(ApCVProtocol.Tag.subject, "subject", sizes: 1...32)
        let channelByte = try field(ApCVProtocol.Tag.channel, "channel", sizes: 1...1)[0]
        guard let channel = Channel(rawValue: channelByte) else { throw .malformedToken("channel \(channelByte), not 1 (NFC) or 2 (QR)") }
        self.channel = channel
        nonce = seen[ApCVProtocol.Tag.nonce] == nil ? nil : try field(ApCVProtocol.Tag.nonce, "nonce", sizes: 8...8)
        if let unknown = seen.values.min(by: { $0.offset < $1.offset }) {
            throw .malformedToken("unknown tag \(unknown.tag) in 7F71 (offset \(unknown.offset))")
        }
        guard expiresAt > issuedAt else { throw .malformedToken("expires (\(expiresAt)) before it is issued (\(issuedAt))") }
        guard (channel == .nfc) == (nonce != nil) else { throw .malformedToken(channel == .nfc ? "an NFC token must echo the reader's nonce (tag 88)" : "a QR token has no nonce (tag 88)") }
        signature = parts[1].value
        guard (8...80).contains(signature.count) else { throw .malformedToken("signature (tag 5F37) is \(signature.count) bytes, not an ECDSA P-256 signature") }
        // The content re-encodes to the bytes received (so the signature covers exactly what was sent).
        guard encoded == bytes else { throw .malformedToken("not in the canonical encoding (lengths or field order)") }
    }

    static func bigEndian(_ value: Int64) -> [UInt8] {
        let v = UInt32(truncatingIfNeeded: value)
        return [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    static func integer(_ bytes: [UInt8]) -> Int64 {
        bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) }
    }
}
