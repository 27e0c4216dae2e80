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
        #expect(try await b.raw("00 22 41 B6 06 80 01 02 84 01 82") == [0x90, 0x00])
        // PSO CDS without the PIN: refused.
        #expect(try await b.raw("00 2A 9E 9A 00") == [0x69, 0x82])
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
        #expect(try await b.raw("00 22 41 B6 06 80 01 02 84 01 99") == [0x6A, 0x88])
        #expect(try await b.raw("00 22 41 B6 06 80 01 02 84 01 81") == [0x6A, 0x88])  // the authentication key does not sign
        #expect(try await b.raw("00 2A 90 A0 05 90 03 01 02 03") == [0x6A, 0x80])
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
        #expect(try await b.raw("01 22 81 B6 04 91 02 02 82") == [0x90, 0x00])
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
        #expect(try await b.raw("00 22 41 B6 06 80 01 02 84 01 82") == [0x6A, 0x88])
        let challenge: [UInt8] = Array(0..<20)
        let answer = try await b.reader.authenticate(challenge: challenge)
        let certificate = try await b.reader.certificates().first!
        #expect(try certificate.certificate.publicKey().recover(answer) == challenge)
    }
}
