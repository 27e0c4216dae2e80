import CarteCore
import CarteEmulator
import CarteImages
import PropertyBased
import Testing

/// Sends `hex` to `card`; returns the data and the status word.
@discardableResult
func send(_ card: SimulatedCard, _ hex: String) throws -> (data: [UInt8], sw: StatusWord) {
    let r = try ResponseAPDU(bytes: card.process(try [UInt8](hex: hex)))
    return (r.data, r.statusWord)
}

@Suite("Simulated ISO 7816-4 card (T=1 generic image)")
struct SimulatedCardTests {
    let card: SimulatedCard

    init() throws { card = SimulatedCard(image: try bundled("demo/iso-generic.yaml")) }

    @Test func selectEFByFIDAndReadBinary() throws {
        #expect(try send(card, "00 A4 02 0C 02 01 01").sw == .success)
        let r = try send(card, "00 B0 00 00 10")
        #expect(r.data == Array(0..<16))
        #expect(r.sw == .success)
        #expect(try send(card, "00 B0 00 10 04").data == [0x10, 0x11, 0x12, 0x13])
    }

    @Test func readBinaryAtAndBeyondTheEnd() throws {
        try send(card, "00 A4 02 0C 02 01 01")
        // 300 bytes: Le 00 (as much as possible) from 0x100 gives the last 44 bytes.
        let tail = try send(card, "00 B0 01 00 00")
        #expect(tail.data.count == 44 && tail.sw == .success)
        // An explicit Le larger than what is left: the data that exists, and 6282.
        let short = try send(card, "00 B0 01 00 40")
        #expect(short.data.count == 44 && short.sw == .endOfFileReached)
        #expect(try send(card, "00 B0 01 2C 01").sw == .endOfFileReached)  // offset == size
        #expect(try send(card, "00 B0 01 2D 01").sw == .wrongP1P2)  // offset past the end
        #expect(try send(card, "00 B0 00 00").sw == .wrongLength)  // no Le
    }

    @Test func readBinaryBySFI() throws {
        #expect(try send(card, "00 B0 81 02 03").data == [0x02, 0x03, 0x04])
        #expect(try send(card, "00 B0 85 00 04").sw == .fileNotFound)
        #expect(try send(card, "00 B0 A1 00 04").sw == .incorrectP1P2)  // P1 b7-b6 must be 0 in the SFI form
        // Reading by SFI makes the EF current.
        #expect(try send(card, "00 B0 00 00 01").data == [0x00])
    }

    @Test func noCurrentEFAndWrongStructure() throws {
        #expect(try send(card, "00 B0 00 00 01").sw == .noCurrentEF)
        try send(card, "00 A4 02 0C 02 01 02")  // record EF
        #expect(try send(card, "00 B0 00 00 01").sw == .incompatibleFileStructure)
        try send(card, "00 A4 02 0C 02 01 01")
        #expect(try send(card, "00 B2 01 04 00").sw == .incompatibleFileStructure)
    }

    @Test func readRecord() throws {
        #expect(try send(card, "00 B2 02 14 00").data == [0x02, 0x22, 0x22, 0x22])
        #expect(try send(card, "00 B2 03 14 00").data == Array("third record".utf8))
        #expect(try send(card, "00 B2 00 04 00").data == Array("third record".utf8))  // current record
        #expect(try send(card, "00 B2 04 14 00").sw == .recordNotFound)
        #expect(try send(card, "00 B2 01 15 00").sw == .incorrectP1P2)
        // P1 names a record of the current EF (0102, made current by the SFI reads).
        #expect(try send(card, "00 B2 01 04 00").data == [0x01, 0x11, 0x11])
        // The DIR record holds a 61 template.
        try send(card, "00 A4 00 0C 02 2F 00")
        let record = try send(card, "00 B2 01 04 00")
        #expect(try TLV.decodeSingle(record.data)?.tag == 0x61)
    }

    @Test func selectForms() throws {
        // By AID with FCI.
        let fci = try send(card, "00 A4 04 00 08 A0 00 00 00 00 01 02 03 00")
        #expect(fci.sw == .success)
        let template = try #require(try TLV.decodeSingle(fci.data))
        #expect(template.tag == 0x6F)
        #expect(template[0x84]?.value == [0xA0, 0, 0, 0, 0, 1, 2, 3])
        #expect(template[0x83]?.value == [0x50, 0x00])
        // Partial DF name.
        #expect(try send(card, "00 A4 04 0C 04 A0 00 00 00").sw == .success)
        // Parent of the application is the MF.
        let parent = try send(card, "00 A4 03 04 00")
        #expect(try TLV.decodeSingle(parent.data)?[0x83]?.value == [0x3F, 0x00])
        // Child DF by FID, then EF by FID inside it.
        #expect(try send(card, "00 A4 01 0C 02 50 00").sw == .success)
        #expect(try send(card, "00 A4 02 0C 02 50 01").sw == .success)
        #expect(try send(card, "00 B0 00 00 00").data == Array("inside the application".utf8))
        // Path from the MF, and with 3F00 written at its start.
        try send(card, "00 A4 00 0C 00")
        #expect(try send(card, "00 A4 08 0C 04 50 00 50 01").sw == .success)
        #expect(try send(card, "00 A4 09 0C 06 3F 00 50 00 50 01").sw == .success)
        #expect(try send(card, "00 B0 83 00 06").data == Array("inside".utf8))
        // Path from the current DF (the application).
        #expect(try send(card, "00 A4 09 0C 02 50 01").sw == .success)
        // FCP and FMD forms.
        try send(card, "00 A4 00 0C 00")
        let fcp = try send(card, "00 A4 02 04 02 01 01 00")
        let fcpTemplate = try #require(try TLV.decodeSingle(fcp.data))
        #expect(fcpTemplate.tag == 0x62)
        #expect(fcpTemplate[0x80]?.value == [0x01, 0x2C])
        #expect(fcpTemplate[0x88]?.value == [0x08])
        #expect(try send(card, "00 A4 02 08 02 01 01 00").data == [0x64, 0x00])
    }

    @Test func selectErrors() throws {
        #expect(try send(card, "00 A4 02 0C 02 99 99").sw == .fileNotFound)
        #expect(try send(card, "00 A4 04 0C 03 A0 99 99").sw == .fileNotFound)
        #expect(try send(card, "00 A4 05 0C 02 01 01").sw == .incorrectP1P2)
        #expect(try send(card, "00 A4 02 0E 02 01 01").sw == .incorrectP1P2)  // next occurrence: not supported
        #expect(try send(card, "00 A4 08 0C 03 50 00 50").sw == .ncInconsistentWithP1P2)
        #expect(try send(card, "00 A4 02 0C 01 01").sw == .ncInconsistentWithP1P2)
        #expect(try send(card, "00 A4 01 0C 02 01 01").sw == .fileNotFound)  // 0101 is an EF, not a DF
    }

    @Test func t1ShortNeGivesTheFirstBytes() throws {
        // FCI longer than Ne under T=1: the first Ne bytes and 90 00 (6282 would mean "fewer than Ne").
        let r = try send(card, "00 A4 04 00 08 A0 00 00 00 00 01 02 03 04")
        #expect(r.data.count == 4 && r.sw == .success)
        #expect(r.data.first == 0x6F)
    }

    @Test func t1CaseThreeSelectReturnsNoData() throws {
        let r = try send(card, "00 A4 02 00 02 01 01")  // FCI asked but no Le: ISO says no data
        #expect(r.data.isEmpty && r.sw == .success)
    }

    @Test func getChallengeIsDeterministicPerSeed() throws {
        let a = try send(card, "00 84 00 00 08")
        let b = try send(card, "00 84 00 00 08")
        #expect(a.data.count == 8 && b.data.count == 8)
        #expect(a.data != b.data)
        let again = SimulatedCard(image: card.image)
        #expect(try send(again, "00 84 00 00 08").data == a.data)
        #expect(try send(card, "00 84 00 00").sw == .wrongLength)
        #expect(try send(card, "00 84 00 00 00").data.count == 256)
    }

    @Test func verifyTriesAndBlocking() throws {
        let good = "00 20 00 81 08 31 32 33 34 FF FF FF FF"
        let bad = "00 20 00 81 08 39 39 39 39 FF FF FF FF"
        try send(card, "00 A4 02 0C 02 01 03")
        #expect(try send(card, "00 B0 00 00 00").sw == .securityStatusNotSatisfied)
        #expect(try send(card, "00 20 00 81").sw == .triesRemaining(3))  // status query costs nothing
        #expect(try send(card, bad).sw == .triesRemaining(2))
        #expect(try send(card, "00 20 00 81").sw == .triesRemaining(2))
        #expect(try send(card, good).sw == .success)
        #expect(try send(card, "00 20 00 81").sw == .success)
        #expect(try send(card, "00 B0 00 00 00").data == Array("secret but not a PIN".utf8))
        // A wrong presentation drops the verified state; three block the PIN for good.
        #expect(try send(card, bad).sw == .triesRemaining(2))
        #expect(try send(card, "00 B0 00 00 00").sw == .securityStatusNotSatisfied)
        #expect(try send(card, bad).sw == .triesRemaining(1))
        #expect(try send(card, bad).sw == .triesRemaining(0))
        #expect(try send(card, bad).sw == .authenticationMethodBlocked)
        #expect(try send(card, good).sw == .authenticationMethodBlocked)
        #expect(try send(card, "00 20 00 81").sw == .authenticationMethodBlocked)
        #expect(card.remainingTries(forPIN: 0x81) == 0)
        // The counter survives a reset (non-volatile), the verified state does not.
        card.reset()
        #expect(try send(card, good).sw == .authenticationMethodBlocked)
    }

    @Test func verifyStateIsLostOnResetAndOnP1FF() throws {
        let good = "00 20 00 81 08 31 32 33 34 FF FF FF FF"
        #expect(try send(card, good).sw == .success)
        card.reset()
        #expect(try send(card, "00 20 00 81").sw == .triesRemaining(3))
        #expect(try send(card, good).sw == .success)
        #expect(try send(card, "00 20 FF 81").sw == .success)
        #expect(try send(card, "00 20 00 81").sw == .triesRemaining(3))
        #expect(try send(card, "00 20 00 01 04 31 32 33 34").sw == .referencedDataNotFound)
        #expect(try send(card, "00 20 01 81").sw == .incorrectP1P2)
    }

    @Test func classAndInstructionErrors() throws {
        #expect(try send(card, "00 CA 9F 7F 00").sw == .insNotSupported)
        #expect(try send(card, "80 A4 00 0C").sw == .claNotSupported)
        #expect(try send(card, "FF A4 00 0C").sw == .claNotSupported)
        #expect(try send(card, "01 A4 00 0C").sw == .logicalChannelNotSupported)
        #expect(try send(card, "10 A4 00 0C").sw == .commandChainingNotSupported)
        #expect(try send(card, "0C A4 00 0C").sw == .secureMessagingNotSupported)
        #expect(card.process([0x00, 0xA4]) == [0x67, 0x00])
        #expect(card.process([]) == [0x67, 0x00])
        #expect(try send(card, "00 C0 00 00 10").sw == .conditionsOfUseNotSatisfied)  // nothing pending
    }

    @Test func randomCommandsNeverCrash() async {
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...40)) { bytes in
            let card = SimulatedCard(image: self.card.image)
            for prefix in [[0x00, 0xA4], [0x00, 0xB0], [0x00, 0xB2], [0x00, 0x20], [0x00, 0xC0], [0x00, 0x84], []] as [[UInt8]] {
                let response = card.process(prefix + bytes)
                #expect(response.count >= 2)
            }
        }
    }
}

@Suite("Simulated Vitale 2 (T=0 behaviour)")
struct SimulatedT0Tests {
    let card: SimulatedCard
    init() throws { card = SimulatedCard(image: try bundled("demo/vitale2-demo.yaml")) }

    @Test func caseFourAnswers61AndGetResponseDeliversInPieces() throws {
        let first = try send(card, "00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45 00")
        #expect(first.data.isEmpty)
        #expect(first.sw == .bytesAvailable(0x15))
        #expect(try send(card, "00 C0 00 00 16").sw == .wrongLe(exact: 0x15))
        let part = try send(card, "00 C0 00 00 10")
        #expect(part.data.count == 16 && part.sw == .bytesAvailable(5))
        let rest = try send(card, "00 C0 00 00 05")
        #expect(rest.data.count == 5 && rest.sw == .success)
        let fci = try #require(try TLV.decodeSingle(part.data + rest.data))
        #expect(fci[0x84]?.value == [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("VITALE".utf8))
        #expect(try send(card, "00 C0 00 00 05").sw == .conditionsOfUseNotSatisfied)
    }

    @Test func caseThreeWithoutLeAlsoAnswers61() throws {
        #expect(try send(card, "00 A4 00 00 02 3F 00").sw.sw1 == 0x61)
        #expect(try send(card, "00 A4 00 0C 02 3F 00").sw == .success)  // no data asked: 90 00
    }

    @Test func wrongLeAnswers6C() throws {
        try send(card, "00 A4 04 0C 0B D2 50 00 00 02 56 49 54 41 4C 45")
        let wrong = try send(card, "00 B0 82 00 00")
        #expect(wrong.sw == .wrongLe(exact: 0x80))
        let right = try send(card, "00 B0 82 00 80")
        #expect(right.data.count == 0x80 && right.sw == .success)
        let nirs = try TLV.decode(right.data)  // 00 padding after the templates is tolerated
        #expect(nirs.count == 3)
        #expect(nirs.map { $0[0x93].map { String(decoding: $0.value, as: UTF8.self) } } == ["285037505612306", "183116912304564", "215067505678905"])
        // Asking for less than the file holds is fine under T=0 too.
        #expect(try send(card, "00 B0 82 00 04").data == [0x65, 0x11, 0x93, 0x0F])
    }

    @Test func selectsMFVitaleByAIDAndReadsIdentities() throws {
        #expect(try send(card, "00 A4 04 0C 0E D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45").sw == .success)
        let r = try send(card, "00 B0 82 00 00")
        #expect(r.data.count == 256)  // padded file: Le 00 = 256 is exact
        let persons = try TLV.decode(r.data)
        #expect(persons.count == 3)
        #expect(persons[0][0x81]?.value == Array("CLAIRE".utf8))
    }
}

@Suite("Card image overrides and quirks")
struct OverrideTests {
    @Test func overridesAndRejectedP2() throws {
        let image = try CardImageLoader.load(text: """
            format: carte-image/1
            name: quirks
            synthetic: true
            card: { atr: 3B 00, select-rejected-p2: ["00"], classes: ["00", A0] }
            filesystem: { files: [{ ef: "0001", data: "01" }] }
            overrides:
              - { command: 00 CA 9F 7F 00, response: 9F 7F 03 01 02 03 90 00 }
            """, source: "inline")
        let card = SimulatedCard(image: image)
        #expect(try send(card, "00 CA 9F 7F 00").data == [0x9F, 0x7F, 0x03, 0x01, 0x02, 0x03])
        #expect(try send(card, "00 A4 02 00 02 00 01").sw == .incorrectP1P2)  // like a CPS3 with P2 00
        #expect(try send(card, "00 A4 02 0C 02 00 01").sw == .success)
        #expect(try send(card, "A0 B0 00 00 01").sw != .claNotSupported)
    }
}
