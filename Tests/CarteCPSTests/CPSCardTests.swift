import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import Testing

/// The simulated CPx cards answer the APDUs of domain-facts §5.3–§5.5 byte for byte.
@Suite("Simulated CPS3 / CPS4 APDUs")
struct CPSCardTests {
    @Test func selectAnswersLikeTheOpenSCLogs() async throws {
        let b = try CPSBench("medecin-liberal")
        // [C] OSC commits 1a3666364 and 20f359ea0: P2 00 is refused, P2 0C accepted.
        #expect(try await b.raw("00 A4 04 00 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10") == [0x6A, 0x86])
        #expect(try await b.raw("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10") == [0x90, 0x00])
        #expect(try await b.raw("00 A4 02 00 02 A0 01") == [0x6A, 0x86])
        // P2 04: the FCP (T=0: 61xx, then GET RESPONSE) with IAS-ECC security attributes.
        let fcp = try await b.channel.transmit(bytes: try [UInt8](hex: "00 A4 09 04 04 3F 00 2F 01"))
        #expect(fcp.isSuccess)
        let template = try #require(try TLV.decodeSingle(fcp.data))
        #expect(template.tag == 0x62)
        #expect(template.children?.first { $0.tag == 0x80 }?.value == [0x00, 0x39])  // 57 bytes
        #expect(template.children?.first { $0.tag == 0xA1 }?.children?.first?.value == [0x01, 0x00])
    }

    @Test func efATRAndEFSNICCFollowTheFacts() async throws {
        let b = try CPSBench("medecin-liberal")
        #expect(try await b.raw("00 A4 09 0C 04 3F 00 2F 01") == [0x90, 0x00])
        let atr = try await b.channel.transmit(bytes: try [UInt8](hex: "00 B0 00 00 39"))
        #expect(atr.data == CPSPersonaCompiler.cps3EFATR)
        #expect(atr.data.first == 0x80 && atr.data.count == 57)
        #expect(try await b.raw("00 A4 09 0C 04 3F 00 D0 03") == [0x90, 0x00])
        let sn = try await b.channel.transmit(bytes: try [UInt8](hex: "00 B0 00 00 0C"))
        #expect(sn.data.count == 12)
        #expect(Array(sn.data[2...6]) == [0x80, 0x25, 0x00, 0x00, 0x01])  // [C] ANS card-cps.c
        #expect(sn.data[11] & 0x0F == 0x0F)
        // Also by SFI 1C from the MF, as OpenSC reads it.
        #expect(try await b.raw("00 A4 09 0C 02 3F 00") == [0x90, 0x00])
        #expect(try await b.channel.transmit(bytes: try [UInt8](hex: "00 B0 9C 00 0C")).data == sn.data)
    }

    @Test func getDataOfTheCHVNeedsTheMFAndAnswersLikeARealCard() async throws {
        let b = try CPSBench("medecin-liberal")
        #expect(try await b.raw("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10") == [0x90, 0x00])
        let command = "00 CB 3F FF 0A 4D 08 70 06 BF 81 01 02 A0 80 00"
        #expect(try await b.raw(command) == [0x6A, 0x88])  // [C] OSC fcd2e665f: MF first
        #expect(try await b.raw("00 A4 09 0C 02 3F 00") == [0x90, 0x00])
        let r = try await b.channel.transmit(bytes: try [UInt8](hex: command))
        // The shape of a real CPx answer (OpenSC issue 2275).
        #expect(r.data == (try [UInt8](hex: "70 16 BF 81 01 12 A0 10 9A 01 03 9B 01 03 A1 08 8C 06 F3 00 00 13 FF 00")))
        let status = try #require(CPSReader.decodePINStatus(r.data))
        #expect(status.maxTries == 3 && status.triesLeft == 3)
        // An unknown CHV and another data object class are "not found".
        #expect(try await b.raw("00 CB 3F FF 0A 4D 08 70 06 BF 81 07 02 A0 80 00").suffix(2) == [0x6A, 0x88])
    }

    @Test func getDataOfKeysAndCHVDataAnswersWhatOpenSCsIASECCDriverParses() async throws {
        let b = try CPSBench("medecin-liberal")
        #expect(try await b.raw("00 A4 09 0C 04 3F 00 00 01") == [0x90, 0x00])
        // The private key SDO (ref 02 = key 82): its private components never leave the card (6A80,
        // which OpenSC reads as "no public part"), its DOCP gives the size in bytes and the access rules:
        // AMB 61 = PSO CDS 12, INTERNAL AUTHENTICATE 12 (after the PIN), GET DATA 00.
        #expect(try await b.raw("00 CB 3F FF 0B 4D 09 70 07 BF 90 02 03 7F 48 80 00") == [0x6A, 0x80])
        let signKey = try await b.channel.transmit(bytes: try [UInt8](hex: "00 CB 3F FF 0A 4D 08 70 06 BF 90 02 02 A0 80 00"))
        #expect(signKey.data == (try [UInt8](hex: "70 12 BF 90 02 0E A0 0C 80 02 01 00 A1 06 8C 04 61 12 12 00")))
        // Key 81 (authentication and deciphering): AMB 31 = INTERNAL AUTHENTICATE, PSO DECIPHER, GET DATA.
        let authKey = try await b.channel.transmit(bytes: try [UInt8](hex: "00 CB 3F FF 0A 4D 08 70 06 BF 90 01 02 A0 80 00"))
        #expect(authKey.data == (try [UInt8](hex: "70 12 BF 90 01 0E A0 0C 80 02 01 00 A1 06 8C 04 31 12 12 00")))
        #expect(try await b.raw("00 CB 3F FF 0A 4D 08 70 06 BF 90 05 02 A0 80 00") == [0x6A, 0x88])
        // The CHV's lengths (no value), with the MF selected; security environments are not given out.
        #expect(try await b.raw("00 A4 09 0C 02 3F 00") == [0x90, 0x00])
        let chv = try await b.channel.transmit(bytes: try [UInt8](hex: "00 CB 3F FF 0B 4D 09 70 07 BF 81 01 03 7F 41 80 00"))
        #expect(chv.data == (try [UInt8](hex: "70 0D BF 81 01 09 7F 41 06 80 01 08 81 01 04")))
        #expect(try await b.raw("00 CB 3F FF 0A 4D 08 70 06 BF FB 03 02 7B 80 00") == [0x6A, 0x88])
        // A header list that is not an SDO request is refused as bad data.
        #expect(try await b.raw("00 CB 3F FF 03 5C 01 7E 00") == [0x6A, 0x80])
        #expect(try await b.raw("00 CB 3F FF 0A 4D 09 70 06 BF 90 02 02 A0 80 00") == [0x6A, 0x80])
    }

    @Test func verifyCountsDownBlocksAndThePUKUnblocks() async throws {
        let b = try CPSBench("medecin-liberal")
        let wrong = "00 20 00 01 08 39 39 39 39 FF FF FF FF"
        #expect(try await b.raw(wrong) == [0x63, 0xC2])
        #expect(try await b.raw(wrong) == [0x63, 0xC1])
        #expect(try await b.raw(wrong) == [0x63, 0xC0])  // the last try, then "blocked"
        #expect(try await b.raw(wrong) == [0x69, 0x83])
        #expect(try await b.raw("00 20 00 01") == [0x69, 0x83])  // status query: blocked
        #expect(try await b.raw("00 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x69, 0x83])  // even the right PIN
        // Wrong PUK: the PUK's own counter (10 tries).
        #expect(try await b.raw("00 2C 00 01 10 39 39 39 39 39 39 39 39 35 36 37 38 FF FF FF FF") == [0x63, 0xC9])
        #expect(try await b.raw("00 2C 00 01 10 31 32 33 34 35 36 37 38 35 36 37 38 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("00 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x63, 0xC2])  // the old PIN is gone
        #expect(try await b.raw("00 20 00 01 08 35 36 37 38 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("00 20 00 01") == [0x90, 0x00])
        // CHANGE REFERENCE DATA: current + new.
        #expect(try await b.raw("00 24 00 01 10 35 36 37 38 FF FF FF FF 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("00 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("00 24 00 01 08 31 32 33 34 FF FF FF FF") == [0x67, 0x00])  // wrong length
    }

    @Test func theCPS2terVoletAnswersWithNineF() async throws {
        let b = try CPSBench("medecin-liberal")
        #expect(try await b.raw("A0 A4 00 00 02 40 10") == [0x9F, 0x07])
        let fci = try await b.raw("A0 C0 00 00 07")
        #expect(fci.prefix(2) == [0x85, 0x05])
        #expect(fci[4...6] == [0x40, 0x10, 0x04])  // FID 4010, an EF
        #expect(try await b.raw("A0 B0 00 00 10") == [0x98, 0x04])  // PIN needed
        #expect(try await b.raw("A0 A4 00 00 02 12 34") == [0x94, 0x04])
        #expect(try await b.raw("A0 20 00 01 08 39 39 39 39 FF FF FF FF") == [0x98, 0x04])
        #expect(try await b.raw("A0 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("A0 A4 00 00 02 40 10") == [0x9F, 0x07])
        let data = try await b.raw("A0 B0 00 00 10")
        #expect(data.suffix(2) == [0x90, 0x00] && data.first == 0xE2)
        #expect(try await b.raw("A0 B0 7F 00 10") == [0x94, 0x02])
        #expect(try await b.raw("A0 12 00 00") == [0x6D, 0x00])
        // The billing situation under 7F01, walked two bytes at a time.
        #expect(try await b.raw("A0 A4 00 00 02 7F 01") == [0x9F, 0x07])
        #expect(try await b.raw("A0 A4 00 00 02 40 00") == [0x9F, 0x07])
        // The channel fetches 9Fxx answers by itself for class A0.
        #expect(try await b.channel.transmit(bytes: try [UInt8](hex: "A0 A4 00 00 02 3F 00")).data.prefix(1) == [0x85])
    }

    @Test func theCardFinishesTheHashAndSignsWithItsKey() async throws {
        let b = try CPSBench("medecin-liberal")
        let message = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try await b.raw("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10") == [0x90, 0x00])
        #expect(try await b.raw("00 22 41 B6 06 80 01 42 84 01 82") == [0x90, 0x00])
        // PSO CDS without the PIN: refused.
        #expect(try await b.raw("00 2A 9E 9A 00") == [0x69, 0x82])
        // PSO HASH before MSE SET HT: no algorithm to hash with.
        #expect(try await b.raw("00 2A 90 A0 05 90 00 80 01 41") == [0x69, 0x85])
        #expect(try await b.raw("00 22 41 AA 03 80 01 40") == [0x90, 0x00])
        var h = SHA256()
        h.update(message[0..<192])
        let bits = UInt64(192 * 8)
        let state = h.stateBytes + (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
        let hash = try CommandAPDU(cla: 0, ins: 0x2A, p1: 0x90, p2: 0xA0, data: [0x90, 40] + state + [0x80, 8] + Array(message[192...]))
        #expect(try await b.channel.transmit(hash, policy: .raw).statusWord == .success)
        #expect(try await b.raw("00 2A 9E 9A 00") == [0x69, 0x82])  // PIN not verified
        #expect(try await b.raw("00 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.channel.transmit(hash, policy: .raw).statusWord == .success)
        let signature = try await b.channel.transmit(bytes: try [UInt8](hex: "00 2A 9E 9A 00"))
        #expect(signature.isSuccess && signature.data.count == 256)
        let certificate = try await b.reader.certificates().first { $0.role == .signature }!
        try certificate.verifySignature(signature.data, of: message)
        #expect(try await b.raw("00 2A 9E 9A 00") == [0x69, 0x85])  // the hash went with the signature
        // A key the environment does not name, or one without that usage, is "not found".
        #expect(try await b.raw("00 22 41 B6 06 80 01 42 84 01 99") == [0x6A, 0x88])
        #expect(try await b.raw("00 22 41 B6 06 80 01 42 84 01 81") == [0x6A, 0x88])  // the authentication key does not sign
        #expect(try await b.raw("00 2A 90 A0 05 90 03 01 02 03") == [0x6A, 0x80])
    }

    /// #34: the CPS3 hashes with the algorithm it is asked for (the Cryptolib's SHA1-RSA-PKCS signed a
    /// SHA-256 DigestInfo before), in both PSO HASH forms, and refuses what it does not have.
    @Test(arguments: [DigestAlgorithm.sha1, .sha256])
    func theCPS3HashesWithTheAlgorithmItIsAskedFor(_ algorithm: DigestAlgorithm) async throws {
        let b = try CPSBench("medecin-liberal")
        let (ht, dst): (UInt8, UInt8) = algorithm == .sha1 ? (0x10, 0x12) : (0x40, 0x42)
        let certificate = try await b.reader.certificates().first { $0.role == .signature }!.certificate.publicKey()
        try await b.reader.verifyPIN(pin1234)
        func sign(_ message: [UInt8], partial: Bool) async throws -> [UInt8] {
            #expect(try await b.raw("00 22 41 B6 03 80 01 \(dst.hex)") == [0x90, 0x00])  // no key named: the signature key
            #expect(try await b.raw("00 22 41 AA 03 80 01 \(ht.hex)") == [0x90, 0x00])
            var data: [UInt8]
            if partial {
                let split = (message.count - 1) / 64 * 64
                let bits = UInt64(split * 8)
                let count = (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
                if algorithm == .sha1 {
                    var h = SHA1(); h.update(message[0..<split])
                    data = [0x90, 28] + h.stateBytes + count
                } else {
                    var h = SHA256(); h.update(message[0..<split])
                    data = [0x90, 40] + h.stateBytes + count
                }
                data += [0x80, UInt8(message.count - split)] + message[split...]
            } else {
                data = [0x80, UInt8(message.count)] + message  // the whole message, as the Cryptolib sends it
            }
            let r = try await b.channel.transmit(try CommandAPDU(cla: 0, ins: 0x2A, p1: 0x90, p2: 0xA0, data: data), policy: .raw)
            #expect(r.statusWord == .success)
            let s = try await b.channel.transmit(bytes: try [UInt8](hex: "00 2A 9E 9A 00"))
            #expect(s.isSuccess)
            return s.data
        }
        for (message, partial) in [(Array("ordonnance".utf8), false), ((0..<150).map { UInt8($0) }, true)] {
            let signature = try await sign(message, partial: partial)
            try certificate.verify(signature: signature, digest: algorithm.digest(message), algorithm: algorithm)
        }
        // A digest the host computed goes with PSO CDS and must have the DST algorithm's length.
        let digest = algorithm.digest(Array("x".utf8))
        #expect(try await b.raw("00 22 41 B6 03 80 01 \(dst.hex)") == [0x90, 0x00])
        let given = try await b.channel.transmit(try CommandAPDU(cla: 0, ins: 0x2A, p1: 0x9E, p2: 0x9A, data: digest, le: 256))
        try certificate.verify(signature: given.data, digest: digest, algorithm: algorithm)
        #expect(try await b.channel.transmit(try CommandAPDU(cla: 0, ins: 0x2A, p1: 0x9E, p2: 0x9A, data: digest + [0], le: 256), policy: .raw).statusWord == .incorrectData)
        // The hash of one algorithm is not signed under the other's DigestInfo.
        let other: UInt8 = algorithm == .sha1 ? 0x42 : 0x12
        #expect(try await b.raw("00 22 41 B6 03 80 01 \(other.hex)") == [0x90, 0x00])
        #expect(try await b.raw("00 22 41 AA 03 80 01 \(ht.hex)") == [0x90, 0x00])
        #expect(try await b.raw("00 2A 90 A0 03 80 01 41") == [0x90, 0x00])
        #expect(try await b.raw("00 2A 9E 9A 00") == [0x69, 0x85])
        // The partial form with the other algorithm's state length is malformed.
        let wrongState = algorithm == .sha1 ? 40 : 28
        #expect(try await b.channel.transmit(try CommandAPDU(cla: 0, ins: 0x2A, p1: 0x90, p2: 0xA0, data: [0x90, UInt8(wrongState)] + [UInt8](repeating: 0, count: wrongState) + [0x80, 1, 0x41]), policy: .raw).statusWord == .incorrectData)
    }

    /// #34: an algorithm or key reference the card does not have gets the IAS-ECC status word,
    /// never another algorithm or key in its place.
    @Test func unknownAlgorithmsAndKeysAreRefusedNotSubstituted() async throws {
        let b = try CPSBench("medecin-liberal")
        for (command, sw) in [
            ("00 22 41 AA 03 80 01 20", [0x6A, 0x80] as [UInt8]),  // SHA-384? not this card's
            ("00 22 41 AA 00", [0x6A, 0x80]),  // a hash template with no algorithm
            ("00 22 41 B6 03 80 01 02", [0x6A, 0x80]),  // 02 is an AT algorithm, not a DST one
            ("00 22 41 A4 03 80 01 42", [0x6A, 0x80]),
            ("00 22 41 B8 03 80 01 02", [0x6A, 0x80]),  // deciphering is 1A
            ("00 22 41 B8 06 80 01 1A 84 01 82", [0x6A, 0x88]),  // the signature key does not decipher
            ("00 22 41 B6 06 80 01 42 84 01 83", [0x6A, 0x88]),
            ("00 22 41 B6 04 91 02 28 82", [0x6A, 0x80]),  // ChipDoc's form on an IAS-ECC card
            ("00 22 41 B7 03 80 01 42", [0x6A, 0x86]),
            ("00 22 41 B8 06 80 01 1A 84 01 81", [0x90, 0x00]),
            ("00 22 41 A4 06 80 01 02 84 01 81", [0x90, 0x00]),
            ("00 22 41 B6 03 80 01 12", [0x90, 0x00]),
        ] {
            #expect(try await b.raw(command) == sw, "\(command)")
        }
        // Deciphering without the padding indicator 81 is refused on a CPS3.
        try await b.reader.verifyPIN(pin1234)
        #expect(try await b.raw("00 2A 80 86 02 00 01 00") == [0x6A, 0x80])
    }

    /// #34: the CPS4's ChipDoc dialect as the Cryptolib speaks it.
    @Test func theCPS4SignsAHashWithPKCS1OrPSSAndDeciphersBareBlocks() async throws {
        let b = try CPSBench("cps4-medecin")
        let certificates = try await b.reader.certificates()
        let signKey = try certificates.first { $0.role == .signature }!.certificate.publicKey()
        let authKey = try certificates.first { $0.role == .authentication }!.certificate.publicKey()
        #expect(try await b.raw("01 A4 04 0C 08 80 25 00 00 01 FF 01 00") == [0x90, 0x00])
        #expect(try await b.raw("01 22 81 B6 04 91 02 28 A1") == [0x90, 0x00])
        let digest = SHA256.digest(Array("ordonnance".utf8))
        let cds = try CommandAPDU(cla: 1, ins: 0x2A, p1: 0x9E, p2: 0x9A, data: digest, le: 256)
        #expect(try await b.channel.transmit(cds, policy: .raw).statusWord == .securityStatusNotSatisfied)
        #expect(try await b.raw("01 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        for (alg, algorithm, pss, keyByte, key) in [(UInt8(0x28), DigestAlgorithm.sha256, false, UInt8(0xA1), signKey), (0x0A, .sha1, false, 0xA1, signKey),
                                                      (0x2C, .sha256, true, 0xA1, signKey), (0x15, .sha1, true, 0xA0, authKey)] {
            #expect(try await b.raw("01 22 81 B6 04 91 02 \(alg.hex) \(keyByte.hex)") == [0x90, 0x00])
            let d = algorithm.digest(Array("ordonnance".utf8))
            let r = try await b.channel.transmit(try CommandAPDU(cla: 1, ins: 0x2A, p1: 0x9E, p2: 0x9A, data: d, le: 256), policy: .raw)
            #expect(r.statusWord == .success)
            if pss { try key.verifyPSS(signature: r.data, digest: d, algorithm: algorithm) } else { try key.verify(signature: r.data, digest: d, algorithm: algorithm) }
            // A digest of the other length is refused.
            #expect(try await b.channel.transmit(try CommandAPDU(cla: 1, ins: 0x2A, p1: 0x9E, p2: 0x9A, data: d + [0], le: 256), policy: .raw).statusWord == .incorrectData)
        }
        for (command, sw) in [
            ("01 22 81 B6 04 91 02 02 A1", [0x6A, 0x80] as [UInt8]),  // not a ChipDoc algorithm
            ("01 22 81 B6 04 91 02 2A A1", [0x6A, 0x80]),  // SHA-512: "not implemented" in the Cryptolib
            ("01 22 81 B6 04 91 02 28 21", [0x6A, 0x80]),  // bit 8 clear: what the applet does is not public
            ("01 22 81 B6 04 91 02 28 A5", [0x6A, 0x88]),
            ("01 22 41 AA 03 80 01 40", [0x6A, 0x86]),  // no hash template
            ("01 22 41 A4 03 83 01 20", [0x6A, 0x86]),  // no authentication template
            ("01 22 41 B8 03 83 01 21", [0x6A, 0x88]),  // the signature key does not decipher
            ("01 88 00 00 03 01 02 03 00", [0x6D, 0x00]),  // no INTERNAL AUTHENTICATE
            ("01 2A 90 A0 05 90 00 80 01 41", [0x6A, 0x86]),  // no PSO HASH
        ] {
            #expect(try await b.raw(command) == sw, "\(command)")
        }
        // Deciphering: the bare cryptogram, answered with the whole block.
        #expect(try await b.raw("01 22 41 B8 03 83 01 20") == [0x90, 0x00])
        let secret = Array("a session key".utf8)
        let block = try await b.channel.transmit(try CommandAPDU(cla: 1, ins: 0x2A, p1: 0x80, p2: 0x86, data: try authKey.encrypt(secret), le: 256))
        #expect(block.isSuccess && block.data.count == 256 && block.data.prefix(2) == [0x00, 0x02] && block.data.suffix(secret.count) == secret)
        #expect(try await b.channel.transmit(try CommandAPDU(cla: 1, ins: 0x2A, p1: 0x80, p2: 0x86, data: [0x81] + (try authKey.encrypt(secret)), le: 256), policy: .raw).statusWord == .wrongLength)
        // …and what CarteCPS makes of it.
        #expect(try await b.reader.decipher(try authKey.encrypt(secret)) == secret)
    }

    @Test func decipheringA2048BitCryptogramUsesCommandChaining() async throws {
        let b = try CPSBench("medecin-liberal")
        try await b.reader.verifyPIN(pin1234)
        let certificate = try await b.reader.certificates().first { $0.role == .authentication }!
        let secret = Array("a 16-byte key!!!".utf8)
        let cryptogram = try certificate.certificate.publicKey().encrypt(secret)
        #expect(try await b.reader.decipher(cryptogram) == secret)
        #expect(b.channel.trace!.events.contains { $0.marker == .chainedSegment })
    }

    @Test func cps4AnswersOnLogicalChannelOne() async throws {
        let b = try CPSBench("cps4-medecin")
        #expect(b.image.cardProtocol == .t1)
        #expect(try await b.raw("01 A4 04 0C 08 80 25 00 00 01 FF 01 00") == [0x90, 0x00])
        #expect(try await b.raw("02 A4 04 0C 08 80 25 00 00 01 FF 01 00") == [0x68, 0x81])
        #expect(try await b.raw("01 20 00 01") == [0x63, 0xC3])
        #expect(try await b.raw("01 20 00 01 08 31 32 33 34 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("01 22 81 B6 04 91 02 28 A1") == [0x90, 0x00])  // SHA-256 PKCS#1, key 21, "a hash"
        // Channel 0 keeps its own current file.
        #expect(try await b.raw("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10") == [0x90, 0x00])
        #expect(try await b.raw("00 A4 02 0C 02 D1 02") == [0x90, 0x00])
        #expect(try await b.raw("01 A4 02 0C 02 D1 02") == [0x6A, 0x82])  // channel 1 sits in ChipDoc
        // MANAGE CHANNEL: channel 1 is open, so none is free; closed, it can be opened again.
        #expect(try await b.raw("00 70 00 00 01") == [0x69, 0x85])
        #expect(try await b.raw("00 70 80 01") == [0x90, 0x00])
        #expect(try await b.raw("00 70 00 00 01") == [0x01, 0x90, 0x00])
        // A closed channel refuses everything but a SELECT, which opens it again.
        #expect(try await b.raw("00 70 80 01") == [0x90, 0x00])
        #expect(try await b.raw("01 20 00 01") == [0x68, 0x81])
        #expect(try await b.raw("01 A4 04 0C 08 80 25 00 00 01 FF 01 00") == [0x90, 0x00])
        #expect(try await b.raw("01 20 00 01") == [0x90, 0x00])  // the PIN state is the card's, not the channel's
    }

    @Test func aVerifiedPUKAllowsOneChangeOnly() async throws {
        let b = try CPSBench("cps4-medecin")
        #expect(try await b.raw("01 A4 04 0C 08 80 25 00 00 01 FF 01 00") == [0x90, 0x00])
        #expect(try await b.raw("01 20 00 02 08 31 32 33 34 35 36 37 38") == [0x90, 0x00])  // the PUK
        #expect(try await b.raw("01 2C 03 01") == [0x90, 0x00])
        #expect(try await b.raw("01 24 01 01 08 35 35 35 35 FF FF FF FF") == [0x90, 0x00])
        #expect(try await b.raw("01 24 01 01 08 36 36 36 36 FF FF FF FF") == [0x69, 0x82])  // used up
        #expect(try await b.raw("01 2C 03 01") == [0x69, 0x82])
        #expect(try await b.raw("01 20 00 01") == [0x63, 0xC3])  // setting the PIN did not verify it
        #expect(try await b.raw("01 20 00 01 08 35 35 35 35 FF FF FF FF") == [0x90, 0x00])
    }

    @Test func theContactlessInterfaceHasNoPINAndNoSignature() async throws {
        let b = try CPSBench("cps3-sans-contact")
        #expect(b.reader.generation == .cps3Contactless)
        #expect(try await b.raw("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 20") == [0x90, 0x00])
        #expect(try await b.raw("00 20 00 01") == [0x6A, 0x88])
        #expect(try await b.raw("00 A4 02 0C 02 70 01") == [0x90, 0x00])
        #expect(try await b.raw("00 B0 00 00 04") == [0x69, 0x82])  // the contact-only file
        #expect(try await b.raw("00 22 41 B6 06 80 01 42 84 01 82") == [0x6A, 0x88])
        let challenge: [UInt8] = Array(0..<20)
        let answer = try await b.reader.authenticate(challenge: challenge)
        let certificate = try await b.reader.certificates().first!
        #expect(try certificate.certificate.publicKey().recover(answer) == challenge)
    }
}
