import CarteApCV
import CarteBundledImages
import CarteCore
import CarteCrypto
import CarteKit
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation
import Testing

func bundled(_ path: String) throws -> CardImage {
    let b = try #require(BundledImages.image(at: path))
    return try CardImageLoader.load(text: b.text, source: "bundled:" + b.path)
}

func load(_ spec: String) throws -> CardImage {
    try bundled(String(spec.dropFirst("bundled:".count)))
}

/// The Claire EXEMPLE phone and a service knowing every bundled phone, at a chosen time.
struct Fixture {
    let phone: CardImage
    let key: ECPrivateKey
    let service: ApCVService
    /// The service's time; tokens are issued by it unless a test says otherwise, so a frozen clock
    /// stays consistent however long a loaded machine takes between two requests.
    let clock: @Sendable () -> Int64
    static let software = "CARTEKIT-DEMO-LGO"

    init(clock: @escaping @Sendable () -> Int64 = { currentUnixTime() }) async throws {
        self.clock = clock
        phone = try bundled("apcv/claire-exemple.yaml")
        key = try ECPrivateKey(pem: try #require(phone.apcv).privateKeyPEM)
        let phones = try BundledImages.apcvImages.map { try bundled($0.path) }
        service = try await ApCVSimulation.service(phones: phones, loadImage: load, clock: clock)
    }

    /// A token signed by the phone's key, with fields to vary.
    func token(audience: String = software, issuedAt: Int64? = nil, lifetime: Int64 = 120, channel: SessionToken.Channel = .qr,
               nonce: [UInt8]? = nil, keyID: String? = nil, subject: [UInt8]? = nil, signingKey: ECPrivateKey? = nil) throws -> [UInt8] {
        let p = try #require(phone.apcv)
        let issuedAt = issuedAt ?? clock()
        var t = SessionToken(id: try secureRandomBytes(16), keyID: keyID ?? p.keyID, audience: audience, issuedAt: issuedAt, expiresAt: issuedAt + lifetime,
                             subject: subject ?? p.subject, channel: channel, nonce: nonce)
        return try t.sign(with: signingKey ?? key)
    }
}

@Suite("apCV: session tokens, QR payloads, ECDSA")
struct TokenFormatTests {
    @Test func ecdsaP256SignsVerifiesAndRoundTripsPEM() throws {
        let key = try ECPrivateKey.generateP256()
        let message = Array("feuille de soins".utf8)
        let signature = try key.sign(message)
        #expect((8...72).contains(signature.count) && signature.first == 0x30, "DER ECDSA-Sig-Value")
        try key.publicKey.verify(signature: signature, of: message)
        #expect(throws: CryptoError.self) { try key.publicKey.verify(signature: signature, of: message + [0]) }
        #expect(throws: CryptoError.self) { try ECPrivateKey.generateP256().publicKey.verify(signature: signature, of: message) }
        #expect(throws: CryptoError.self) { try key.publicKey.verify(signature: [0x30, 0x02, 0x00, 0x00], of: message) }
        let again = try ECPrivateKey(pem: key.pem)
        #expect(again.publicKey == key.publicKey)
        #expect(try ECPublicKey(pem: key.publicKey.pem) == key.publicKey)
        #expect(!"\(key)".contains("PRIVATE"), "the text form never shows the key")
        // An RSA key is not an EC key, and an encrypted key is refused without a prompt.
        let rsa = try RSAPrivateKey.generate(bits: 1024)
        #expect(throws: CryptoError.self) { try ECPrivateKey(pem: rsa.pem) }
        #expect(throws: CryptoError.self) { try ECPrivateKey(pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n") }
    }

    @Test func aTokenRoundTripsAndEveryMalformationIsNamed() throws {
        let key = try ECPrivateKey.generateP256()
        var t = SessionToken(id: Array(0..<16), keyID: "k1", audience: "LGO", issuedAt: 1_800_000_000, expiresAt: 1_800_000_120,
                             subject: [1, 2, 3], channel: .nfc, nonce: Array(1...8))
        let bytes = try t.sign(with: key)
        let decoded = try SessionToken(bytes: bytes)
        #expect(decoded == t)
        #expect(bytes.count < 256, "one short APDU response")
        try key.publicKey.verify(signature: decoded.signature, of: decoded.signedContent)

        func malformed(_ b: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try SessionToken(bytes: b)
                Issue.record("accepted", sourceLocation: sourceLocation)
            } catch {
                guard case .malformedToken(let why) = error else { Issue.record("\(error)", sourceLocation: sourceLocation); return }
                #expect(why.contains(fragment), "\(why)", sourceLocation: sourceLocation)
            }
        }
        malformed([], "empty")
        malformed(Array(bytes.dropLast(3)), "offset")  // truncated: the TLV decoder says where
        malformed(bytes + [0x00], "offset")           // a trailing byte
        malformed([0x7F, 0x71, 0x00], "7F70")
        malformed([UInt8](repeating: 0, count: 600), "600 bytes")
        func reencoded(_ edit: (inout [TLV]) -> Void) -> [UInt8] {
            let outer = try! TLV.decode(bytes)[0]
            var fields = outer.children![0].children!
            edit(&fields)
            let content = TLV(tag: ApCVProtocol.Tag.content, children: fields)
            return TLV(tag: ApCVProtocol.Tag.token, children: [content, outer.children![1]]).encoded()
        }
        malformed(reencoded { $0[0] = TLV(tag: 0x80, value: [2]) }, "version 2")
        malformed(reencoded { $0[1] = TLV(tag: 0x81, value: [1, 2]) }, "token id (tag 81")
        malformed(reencoded { $0.append(TLV(tag: 0x81, value: Array(0..<16))) }, "twice")
        malformed(reencoded { $0.append(TLV(tag: 0x99, value: [1])) }, "unknown tag 99")
        malformed(reencoded { $0.remove(at: 3) }, "no audience")
        malformed(reencoded { $0[7] = TLV(tag: 0x87, value: [9]) }, "channel 9")
        malformed(reencoded { $0.removeLast() }, "must echo the reader's nonce")
        malformed(reencoded { $0[3] = TLV(tag: 0x83, value: [0x4C, 0x00]) }, "not printable")
        malformed(reencoded { $0[5] = TLV(tag: 0x85, value: [0, 0, 0, 1]) }, "before it is issued")
        malformed(reencoded { $0.swapAt(2, 3) }, "canonical")
    }

    @Test func qrPayloadsSurviveWhatScannersDoToThem() throws {
        for n in [0, 1, 2, 3, 4, 5, 16, 181, 200] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = QRPayload.encode(bytes)
            #expect(text.allSatisfy { "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567APCV1:".contains($0) })
            #expect(try QRPayload.decode(text) == bytes)
            #expect(try QRPayload.decode(text.lowercased() + "\r\n") == bytes, "Caps Lock and the scanner's Enter")
            // A QWERTY-configured scanner typing into an AZERTY session.
            let azerty = String(text.map { c -> Character in
                switch c {
                case "A": return "Q"
                case "Q": return "A"
                case "Z": return "W"
                case "W": return "Z"
                case "M": return ","
                case ":": return "M"
                case "1": return "&"
                case "2": return "é"
                case "3": return "\""
                case "4": return "'"
                case "5": return "("
                case "6": return "-"
                case "7": return "è"
                default: return c
                }
            })
            #expect(try QRPayload.decode(azerty) == bytes, "\(azerty.prefix(20))")
        }
        #expect(throws: ApCVError.malformedQRPayload("empty")) { try QRPayload.decode(" \r\n") }
        #expect(throws: ApCVError.malformedQRPayload("does not start with APCV1: (starts with \"https:\")")) { try QRPayload.decode("https://example.org") }
        #expect(throws: ApCVError.malformedQRPayload("character 9 is not Base32 (A–Z, 2–7)")) { try QRPayload.decode("APCV1:AB8C") }
        #expect(throws: ApCVError.malformedQRPayload("the Base32 text is truncated or its last character is wrong")) { try QRPayload.decode("APCV1:B") }
    }
}

@Suite("apCV: the service checks every token")
struct TokenVerificationTests {
    @Test func aGoodTokenGivesTheIdentityOfTheSamePersonasVitale() async throws {
        let f = try await Fixture()
        let card = try await SimulatorReading.vitale("demo/vitale2-demo.yaml")
        let identity = try f.service.resolve(token: try f.token(), softwareID: Fixture.software)
        #expect(identity.generation == .apcv)
        #expect(identity.beneficiaries == card.beneficiaries)
        #expect(identity.amo == card.amo && identity.mutuelle == card.mutuelle && identity.workAccident == card.workAccident)
        #expect(identity.serialNumber == nil && identity.cardType == nil, "no physical card")
    }

    @Test func everyTokenFailureHasItsTypedError() async throws {
        let now = currentUnixTime()
        let f = try await Fixture(clock: { now })
        func refused(_ token: [UInt8], software: String = Fixture.software, sourceLocation: SourceLocation = #_sourceLocation) -> ApCVError? {
            do {
                _ = try f.service.resolve(token: token, softwareID: software)
                Issue.record("accepted", sourceLocation: sourceLocation)
                return nil
            } catch { return error }
        }
        // Tampered: one byte of the audience changed after signing; one byte of the signature changed.
        var tampered = try f.token()
        let at = try #require(tampered.firstIndex(of: UInt8(ascii: "C")))
        tampered[at] = UInt8(ascii: "X")
        #expect(refused(tampered) == .badSignature)
        var badSig = try f.token()
        badSig[badSig.count - 5] ^= 0x01
        #expect(refused(badSig) == .badSignature)
        // Forged with another key under the phone's key id; a key the service does not know.
        #expect(refused(try f.token(signingKey: try ECPrivateKey.generateP256())) == .badSignature)
        #expect(refused(try f.token(keyID: "apcv-elsewhere")) == .unknownKey("apcv-elsewhere"))
        // Expired, not yet valid, too long-lived.
        #expect(refused(try f.token(issuedAt: now - 400, lifetime: 120)) == .expired(expiresAt: now - 280, now: now))
        #expect(refused(try f.token(issuedAt: now + 600)) == .notYetValid(issuedAt: now + 600, now: now))
        guard case .malformedToken(let why)? = refused(try f.token(lifetime: 7200)) else { Issue.record("lifetime"); return }
        #expect(why.contains("7200 s"))
        // Within the clock skew both ways: accepted.
        _ = try f.service.resolve(token: try f.token(issuedAt: now - 140, lifetime: 120), softwareID: Fixture.software)
        _ = try f.service.resolve(token: try f.token(issuedAt: now + 20), softwareID: Fixture.software)
        // Foreign: issued for another software.
        #expect(refused(try f.token(audience: "AUTRE-LGO")) == .foreignAudience(expected: Fixture.software, found: "AUTRE-LGO"))
        // Replayed: the second use of one token.
        let once = try f.token()
        _ = try f.service.resolve(token: once, softwareID: Fixture.software)
        let decoded = try SessionToken(bytes: once)
        #expect(refused(once) == .replayed(tokenID: decoded.idHex))
        // A subject nobody knows, signed correctly.
        #expect(refused(try f.token(subject: [9, 9, 9])) == .unknownSubject)
        // Garbage.
        #expect(refused([0x01, 0x02]) != nil)
    }

    @Test func theVerifierForgetsUsedTokensOnlyOnceTheyCanNoLongerBeReplayed() throws {
        let key = try ECPrivateKey.generateP256()
        let clock = Clock(1_900_000_000)
        let verifier = TokenVerifier(keys: ["k": key.publicKey], clock: { clock.now })
        var t = SessionToken(id: Array(repeating: 7, count: 16), keyID: "k", audience: "A", issuedAt: clock.now, expiresAt: clock.now + 60, subject: [1], channel: .qr)
        let bytes = try t.sign(with: key)
        _ = try verifier.verify(bytes, audience: "A")
        clock.now += 80  // expired but within the skew: still a replay, not an expiry
        #expect(throws: ApCVError.replayed(tokenID: t.idHex)) { try verifier.verify(bytes, audience: "A") }
        clock.now += 100  // beyond the skew: expired
        #expect(throws: ApCVError.expired(expiresAt: 1_900_000_060, now: clock.now)) { try verifier.verify(bytes, audience: "A") }
    }
}

/// A settable clock for verifiers.
final class Clock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64
    init(_ value: Int64) { self.value = value }
    var now: Int64 {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

enum SimulatorReading {
    /// A bundled Vitale image read in memory like a physical card.
    static func vitale(_ path: String) async throws -> VitaleCard {
        try await ApCVSimulation.readInMemory(try bundled(path))
    }
}
