public import CarteApCV
import CarteCore
public import CarteCrypto
public import CarteVitale

/// A phone in card emulation running the **synthetic** appli carte Vitale (docs/apcv.md): SELECT of
/// its AID, then GET SESSION TOKEN (`80 50 00 00`, data `83` software id and `88` nonce) answered
/// with a fresh token signed by the phone's key. The phone has no file system; anything else gets the
/// status word an HCE application gives for it.
extension SimulatedCard {
    func processPhone(_ c: CommandAPDU, _ phone: CardImage.Phone) -> [UInt8] {
        switch (c.cla, c.ins) {
        case (0x00, 0xA4):
            guard c.p1 == 0x04, c.p2 & 0xF3 == 0x00 else { return sw(.incorrectP1P2) }
            guard c.data == phone.aid else {
                phoneSelected = false
                return sw(.fileNotFound)
            }
            phoneSelected = true
            let fci = TLV(tag: 0x6F, children: [
                TLV(tag: 0x84, value: phone.aid),
                TLV(tag: 0xA5, children: [TLV(tag: 0x50, value: Array("APCV SYNTHETIC".utf8)), TLV(tag: 0x9F08, value: [0x01])]),
            ]).encoded()
            return c.p2 & 0x0C == 0x0C ? sw(.success) : fci + sw(.success)
        case (ApCVProtocol.tokenCLA, ApCVProtocol.tokenINS):
            guard c.p1 == 0, c.p2 == 0 else { return sw(.incorrectP1P2) }
            guard phoneSelected else { return sw(.conditionsOfUseNotSatisfied) }
            guard let fields = try? TLV.decode(c.data, allowPadding: false),
                  let audience = fields.first(where: { $0.tag == ApCVProtocol.Tag.audience })?.value,
                  (1...32).contains(audience.count), let software = String(validating: audience, as: UTF8.self),
                  let nonce = fields.first(where: { $0.tag == ApCVProtocol.Tag.nonce })?.value, nonce.count == 8
            else { return sw(.incorrectData) }
            guard phone.consent == .automatic else { return sw(.conditionsOfUseNotSatisfied) }
            guard let key = phoneKey, let id = try? secureRandomBytes(16) else { return sw(.memoryFailure) }
            let now = currentUnixTime()
            var token = SessionToken(id: id, keyID: phone.keyID, audience: software, issuedAt: now, expiresAt: now + Int64(phone.tokenLifetime),
                                     subject: phone.subject, channel: .nfc, nonce: nonce)
            guard let bytes = try? token.sign(with: key) else { return sw(.memoryFailure) }
            return bytes + sw(.success)
        case (0x00, _), (ApCVProtocol.tokenCLA, _):
            return sw(.insNotSupported)
        default:
            return sw(.claNotSupported)
        }
    }
}

extension CardImage.Phone {
    /// The QR payload the phone shows for the software `softwareID` now (a fresh QR token).
    public func qrPayload(for softwareID: String, now: Int64 = currentUnixTime()) throws(CryptoError) -> String {
        let key = try ECPrivateKey(pem: privateKeyPEM)
        var token = SessionToken(id: try secureRandomBytes(16), keyID: keyID, audience: softwareID, issuedAt: now,
                                 expiresAt: now + Int64(tokenLifetime), subject: subject, channel: .qr)
        return QRPayload.encode(try token.sign(with: key))
    }

    /// What the insurer's service knows of this phone, with `identity` (the persona's Vitale identity).
    public func serviceRecord(identity: VitaleCard) throws(CryptoError) -> ApCVService.Phone {
        ApCVService.Phone(keyID: keyID, publicKey: try ECPrivateKey(pem: privateKeyPEM).publicKey, subject: subject, identity: identity.apcvIdentity)
    }
}
