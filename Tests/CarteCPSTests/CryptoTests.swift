import CarteCrypto
import Testing

@Suite("OpenSSL-backed crypto and the pure-Swift SHA-256 and SHA-1")
struct CryptoTests {
    static func hex(_ b: [UInt8]) -> String { b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }

    @Test("FIPS 180-4 test vectors", arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256Vectors(input: String, digest: String) {
        #expect(Self.hex(SHA256.digest(Array(input.utf8))) == digest)
    }

    @Test func sha256OfAMillionAs() {
        var h = SHA256()
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<1000 { h.update(chunk) }
        #expect(Self.hex(h.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("resuming from an intermediate state gives the same digest", arguments: [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000])
    func resume(length: Int) throws {
        let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let split = length == 0 ? 0 : (length - 1) / 64 * 64
        var head = SHA256()
        head.update(data[0..<split])
        var resumed = try #require(SHA256(state: head.state, byteCount: UInt64(split)))
        resumed.update(data[split...])
        #expect(resumed.finalize() == SHA256.digest(data))
        #expect(SHA256(state: head.state, byteCount: 3) == nil)
        #expect(SHA256(state: [1, 2], byteCount: 64) == nil)
    }

    @Test("SHA-1: FIPS 180-4 vectors, a million a's, and resuming from a state", arguments: [
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    ])
    func sha1Vectors(input: String, digest: String) throws {
        #expect(Self.hex(SHA1.digest(Array(input.utf8))) == digest)
        #expect(Self.hex(DigestAlgorithm.sha1.digest(Array(input.utf8))) == digest)
        var h = SHA1()
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<1000 { h.update(chunk) }
        #expect(Self.hex(h.finalize()) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        for length in [0, 1, 55, 56, 64, 65, 129, 1000] {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let split = length == 0 ? 0 : (length - 1) / 64 * 64
            var head = SHA1()
            head.update(data[0..<split])
            var resumed = try #require(SHA1(state: head.state, byteCount: UInt64(split)))
            resumed.update(data[split...])
            #expect(resumed.finalize() == SHA1.digest(data))
        }
        #expect(SHA1(state: [1, 2, 3, 4, 5], byteCount: 3) == nil)
        #expect(SHA1(state: [1, 2], byteCount: 64) == nil)
    }

    @Test func pssSignaturesAndTheBarePrivateOperation() throws {
        let key = try RSAPrivateKey.generate(bits: 1024)
        for algorithm in DigestAlgorithm.allCases {
            let digest = algorithm.digest(Array("ordonnance".utf8))
            let a = try key.signPSS(digest: digest, algorithm: algorithm)
            let b = try key.signPSS(digest: digest, algorithm: algorithm)
            #expect(a != b)  // randomised
            try key.publicKey.verifyPSS(signature: a, digest: digest, algorithm: algorithm)
            #expect(throws: CryptoError.self) { try key.publicKey.verifyPSS(signature: a, digest: algorithm.digest(Array("ordonnancE".utf8)), algorithm: algorithm) }
            #expect(throws: CryptoError.self) { try key.publicKey.verify(signature: a, digest: digest, algorithm: algorithm) }  // not PKCS#1 v1.5
            // PKCS#1 v1.5 with SHA-1 and its DigestInfo.
            let v15 = try key.sign(digest: digest, algorithm: algorithm)
            try key.publicKey.verify(signature: v15, digest: digest, algorithm: algorithm)
            #expect(DigestAlgorithm.fromDigestInfo(algorithm.digestInfoPrefix + digest)?.0 == algorithm)
        }
        #expect(throws: CryptoError.self) { try key.signPSS(digest: [1, 2, 3], algorithm: .sha256) }
        // The bare private operation on a block padded by the host is a PKCS#1 v1.5 signature.
        let challenge: [UInt8] = Array(0..<20)
        let block = [0x00, 0x01] + [UInt8](repeating: 0xFF, count: 128 - 23) + [0x00] + challenge
        #expect(try key.publicKey.recover(try key.privateOperation(block)) == challenge)
        // …and undoes an encryption, padding included.
        let plain = try key.privateOperation(try key.publicKey.encrypt(Array("secret".utf8)))
        #expect(plain.count == 128 && plain[0] == 0 && plain[1] == 2 && plain.suffix(6) == Array("secret".utf8))
        #expect(throws: CryptoError.self) { try key.privateOperation([1, 2, 3]) }
        #expect(throws: CryptoError.self) { try key.privateOperation([UInt8](repeating: 0xFF, count: 128)) }  // not below the modulus
    }

    @Test func rsaSignVerifyRecoverEncryptDecrypt() throws {
        let key = try RSAPrivateKey.generate(bits: 1024)
        #expect(key.modulusBytes == 128)
        #expect(!key.description.contains("BEGIN"))
        let digest = SHA256.digest(Array("hello".utf8))
        let signature = try key.sign(digest: digest, algorithm: .sha256)
        try key.publicKey.verify(signature: signature, digest: digest, algorithm: .sha256)
        #expect(throws: CryptoError.self) { try key.publicKey.verify(signature: signature, digest: SHA256.digest(Array("hellO".utf8)), algorithm: .sha256) }
        let challenge: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        #expect(try key.publicKey.recover(try key.signRaw(challenge)) == challenge)
        let secret: [UInt8] = Array("a session key".utf8)
        #expect(try key.decrypt(try key.publicKey.encrypt(secret)) == secret)
        do {
            _ = try key.decrypt([1, 2, 3])
            Issue.record("a short cryptogram was accepted")
        } catch {
            #expect(error.kind == .invalidInput)
        }
        #expect(throws: CryptoError.self) { try key.signRaw([UInt8](repeating: 1, count: 118)) }
        // PEM round trip.
        let again = try RSAPrivateKey(pem: key.pem)
        #expect(again.publicKey == key.publicKey)
    }

    @Test func badKeysAndCertificatesAreTypedErrors() {
        do {
            _ = try RSAPrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            Issue.record("garbage PEM accepted")
        } catch {
            #expect(error.kind == .invalidKey)
        }
        do {
            _ = try X509Certificate(der: [0x30, 0x03, 0x02, 0x01, 0x00])
            Issue.record("garbage DER accepted")
        } catch {
            #expect(error.kind == .invalidCertificate)
        }
        #expect(throws: CryptoError.self) { try RSAPublicKey(subjectPublicKeyInfo: [0x30, 0x00]) }
        // An encrypted key is refused at once: no passphrase prompt on the terminal (a test key, passphrase "test").
        let encrypted = """
            -----BEGIN ENCRYPTED PRIVATE KEY-----
            MIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQIGsjLwyZTuxoCAggA
            MAwGCCqGSIb3DQIJBQAwHQYJYIZIAWUDBAECBBBdVYTTYJxhIR8GYHSlSv3tBIIB
            YO0eMxUGcjjU8qO6yeXvAlvD3KZUG9RvCjCfMOlbkQ9CxdSHXmLzuL41Y8HuVvzd
            bD+hI1aVxnsldDARiTzzCdpZH5mDSQkeY2ArT6MdbXmv8sTr/mnDzQGE6+HX2oER
            lOZ27/+RbiDL0iy4lmokGM84Mag1vd+1RoSd7cTTvZYdb2ekWl2tyOogIR3aYLAO
            zclUe7kLwZbA6TCwcHBZ6nZDLigKxcJ3wTnGDESTC/OaVtANSVoXO+3nmDxyCWEq
            ozN3PKgn68Z+/uK4HgEiyxJ2TgkfxkeJQDdZcoSZZYzlhMwCQ2PQ5+3/Q7r5VW8h
            Vm9f/hhurQtYdiKMQfdC+L1d1jZTGiiKeQdVvy+GLA8Hk5D5rdes4BaA8js6zM7g
            TUkPeI4bN7Z4yEGQtUFpY3Ls6d8h8/mxS/HpUyJR2Zg30KUi6GZlX19Y5cge8SwK
            4Nw4UJsoinRLnNSbU2E8ea8=
            -----END ENCRYPTED PRIVATE KEY-----
            """
        do {
            _ = try RSAPrivateKey(pem: encrypted)
            Issue.record("an encrypted key was accepted")
        } catch {
            #expect(error.kind == .invalidKey)
        }
    }

    @Test func certificatesIssueParseAndVerify() throws {
        let rootKey = try RSAPrivateKey.generate(bits: 1024)
        let leafKey = try RSAPrivateKey.generate(bits: 1024)
        let from: Int64 = 1_700_000_000, to: Int64 = 1_800_000_000
        let root = try CertificateBuilder(subject: [("C", "FR"), ("CN", "Test Root")], serial: 1, notBefore: from, notAfter: to, keyUsage: [.keyCertSign], isCertificateAuthority: true)
            .issue(publicKeyOf: rootKey, issuer: nil, issuerKey: rootKey)
        let leaf = try CertificateBuilder(subject: [("C", "FR"), ("SN", "DURAND"), ("GN", "Éloïse"), ("CN", "Éloïse DURAND")], serial: 0x1234, notBefore: from, notAfter: to,
                                          keyUsage: [.digitalSignature, .keyEncipherment], extendedKeyUsage: ["clientAuth"])
            .issue(publicKeyOf: leafKey, issuer: root, issuerKey: rootKey)
        #expect(root.isCertificateAuthority && !leaf.isCertificateAuthority)
        #expect(leaf.subjectValue("GN") == "Éloïse")
        #expect(leaf.issuerText == "C=FR, CN=Test Root")
        #expect(leaf.serialNumber == "1234")
        #expect(leaf.notBefore == from && leaf.notAfter == to)
        #expect(leaf.keyUsage == [.digitalSignature, .keyEncipherment])
        #expect(try leaf.publicKey() == leafKey.publicKey)
        try leaf.verifyChain(intermediates: [], roots: [root], at: from + 10)
        // DER padded the way a card file is: the padding is ignored.
        #expect(try X509Certificate(der: leaf.der + [0, 0, 0, 0xFF]).der == leaf.der)
        #expect(try X509Certificate(pem: leaf.pem) == leaf)
        do {
            try leaf.verifyChain(intermediates: [], roots: [root], at: to + 10)
            Issue.record("an expired certificate verified")
        } catch {
            #expect(error.kind == .verificationFailed)
            #expect(error.message == "certificate has expired")
        }
        let otherKey = try RSAPrivateKey.generate(bits: 1024)
        let other = try CertificateBuilder(subject: [("CN", "Other Root")], serial: 9, notBefore: from, notAfter: to, keyUsage: [.keyCertSign], isCertificateAuthority: true)
            .issue(publicKeyOf: otherKey, issuer: nil, issuerKey: otherKey)
        #expect(throws: CryptoError.self) { try leaf.verifyChain(intermediates: [], roots: [other], at: from + 10) }
        #expect(iso8601UTC(from) == "2023-11-14T22:13:20Z")
    }
}
