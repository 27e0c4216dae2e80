import CarteBundledImages
import CarteCore
import CarteCPS
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation
import InMemoryLogging
import Logging
import Testing

/// The image as written, with every space and line break removed (hex dumps become one string).
func squeezed(_ image: CardImage) -> String {
    CardImageWriter.yaml(image).filter { !$0.isWhitespace }.uppercased()
}

/// Whether `text` (Latin-1) appears in the written image, as text or as hex bytes.
func appears(_ text: String, in image: CardImage) -> Bool {
    let hex = text.unicodeScalars.map { String(format: "%02X", $0.value) }.joined()
    let all = squeezed(image)
    return all.contains(hex) || all.contains(text.uppercased().filter { !$0.isWhitespace })
}

/// A Vitale card with its personal fields blanked, to compare the rest.
func withoutPersonalFields(_ card: VitaleCard) -> VitaleCard {
    var c = card
    c.serialNumber = nil
    for i in c.beneficiaries.indices {
        c.beneficiaries[i].surname = nil
        c.beneficiaries[i].firstName = nil
        c.beneficiaries[i].usualName = nil
        c.beneficiaries[i].birthName = nil
        c.beneficiaries[i].birthDate = nil
        c.beneficiaries[i].nir = nil
        c.beneficiaries[i].amc?.member = nil
    }
    c.workAccident?.identifier = nil
    // An issue about a personal field names its values: compare the issues without their digits.
    for i in c.issues.indices { c.issues[i].message = c.issues[i].message.filter { !$0.isNumber } }
    return c
}

@Suite("Anonymising card images")
struct AnonymiseTests {
    @Test func aRecordedVitaleKeepsEverythingButItsPersonalFields() async throws {
        for path in try bundledVitales() {
            let recorded = try await recordVitale(try bundled(path))
            let (anonymous, report) = try await ImageAnonymiser.anonymise(recorded.image, seed: 7)
            #expect(report.card == "vitale")
            for source in CardImage.Replay.Source.allCases {
                var image = anonymous
                image.replay?.source = source
                let card = try await readVitale(image)
                #expect(withoutPersonalFields(card) == withoutPersonalFields(recorded.card), "\(path) \(source): only personal fields change")
                for (old, new) in zip(recorded.card.beneficiaries, card.beneficiaries) {
                    if let o = old.surname { #expect(new.surname != o && new.surname?.count == o.count, "\(path)") }
                    if let o = old.firstName, o.count >= 2 { #expect(new.firstName != o) }
                    if let o = old.birthDate, let n = new.birthDate {
                        #expect(n != o && n.year == o.year, "\(path): another date of the same year")
                    }
                    if let o = old.nir, let n = new.nir {
                        #expect(n != o && n.isKeyValid == o.isKeyValid, "\(path): a NIR with a correct key (when the original's was)")
                        #expect(n.sex == o.sex && n.birthYear == o.birthYear && n.department == o.department)
                        if let birth = new.birthDate, o.birthMonth == String(old.birthDate?.raw.dropFirst(4).prefix(2) ?? "") {
                            #expect(n.birthMonth == String(birth.raw.dropFirst(4).prefix(2)), "\(path): the NIR's month follows the birth date")
                        }
                    }
                }
            }
            // No original value anywhere in the written image: files, transcript, texts.
            for b in recorded.card.beneficiaries {
                for value in [b.surname, b.firstName, b.usualName, b.birthName, b.birthDate?.raw, b.nir?.description].compactMap({ $0 }) where value.count >= 2 {
                    let present = appears(value, in: anonymous)
                    #expect(!present, "\(path): \(value) remains")
                }
            }
            // The report names fields and new values, never the old ones.
            let reportText = report.replacements.map { "\($0.field) \($0.replacement)" }.joined(separator: " ")
            for b in recorded.card.beneficiaries { if let s = b.surname { #expect(!reportText.contains(s)) } }
            #expect(report.replacements.allSatisfy { $0.occurrences >= 1 }, "\(path): \(report.replacements)")
        }
    }

    @Test func aCPSGetsANewHolderRPPSAndSerialAndTheReportSaysTheCertificatesBreak() async throws {
        let original = try bundled("cps/medecin-liberal.yaml")
        let before = try await readCPS(original)
        let (anonymous, report) = try await ImageAnonymiser.anonymise(original, seed: 3)
        let after = try await readCPS(anonymous)
        let (h0, h1) = (try #require(before.card.holder), try #require(after.card.holder))
        #expect(h1.surname != h0.surname && h1.surname.count == h0.surname.count)
        #expect(h1.firstName != h0.firstName)
        #expect(h1.nationalID.number != h0.nationalID.number && h1.nationalID.type == h0.nationalID.type)
        if h0.nationalID.number.count == 11 {
            let digits = h1.nationalID.number
            #expect(CPSPersonaCompiler.luhn(String(digits.dropLast())) == digits.last?.wholeNumberValue, "the RPPS number keeps a correct Luhn digit")
        }
        #expect(after.card.card.serial != before.card.card.serial && after.card.card.serial?.count == before.card.card.serial?.count)
        #expect(after.card.issues == before.card.issues, "EF.SN.ICC still reads: \(after.card.issues)")
        #expect(h1.profession == h0.profession && h1.speciality == h0.speciality && after.tries == before.tries)
        #expect(report.notes.contains { $0.contains("certificate") }, "\(report.notes)")
        for value in [h0.surname, h0.firstName, h0.nationalID.number, before.card.card.serial ?? ""] where !value.isEmpty {
            let present = appears(value, in: anonymous)
            #expect(!present, "\(value) remains")
        }
    }

    @Test func nestedAndShortValuesAreRewrittenWhole() async throws {
        // A surname inside a first name's family ("JEAN" and "JEANNE"), and a two-letter surname.
        var image = try bundled("demo/vitale2-demo.yaml")
        let card = try await readVitale(image)
        let names = card.beneficiaries.compactMap(\.firstName) + card.beneficiaries.compactMap(\.surname)
        #expect(names.contains("CLAIRE") && names.contains("EXEMPLE"))
        // Rename through the bytes: CLAIRE → JEANNE, LUC → JEA (a prefix of JEANNE), EXEMPLE stays.
        func rename(_ node: inout CardImage.DedicatedFile) {
            for i in node.children.indices {
                switch node.children[i] {
                case .dedicated(var df): rename(&df); node.children[i] = .dedicated(df)
                case .elementary(var ef):
                    if case .transparent(var bytes) = ef.content {
                        replaceAllForTest(&bytes, Array("CLAIRE".utf8), Array("JEANNE".utf8))
                        replaceAllForTest(&bytes, [0x03] + Array("LUC".utf8), [0x03] + Array("JEA".utf8))
                        ef.content = .transparent(bytes)
                    }
                    node.children[i] = .elementary(ef)
                }
            }
        }
        rename(&image.root)
        let renamed = try await readVitale(image)
        #expect(renamed.beneficiaries.compactMap(\.firstName).contains("JEANNE") && renamed.beneficiaries.compactMap(\.firstName).contains("JEA"))
        let (anonymous, _) = try await ImageAnonymiser.anonymise(image, seed: 4)
        let after = try await readVitale(anonymous)
        #expect(!after.beneficiaries.contains { $0.firstName == "JEANNE" || $0.firstName == "JEA" }, "\(after.beneficiaries.map(\.firstName))")
        let present = appears("JEANNE", in: anonymous)
        #expect(!present)
    }

    @Test func theSameSeedGivesTheSameImage() async throws {
        let image = try bundled("vitale/ald.yaml")
        let a = try await ImageAnonymiser.anonymise(image, seed: 11)
        let b = try await ImageAnonymiser.anonymise(image, seed: 11)
        let c = try await ImageAnonymiser.anonymise(image, seed: 12)
        #expect(CardImageWriter.yaml(a.image) == CardImageWriter.yaml(b.image))
        #expect(CardImageWriter.yaml(a.image) != CardImageWriter.yaml(c.image))
    }

    @Test func itRefusesWhatItCannotMakeAnonymous() async throws {
        // A phone: neither a Vitale nor a CPx card, its personal fields are unknown.
        await #expect(throws: ImageAnonymiser.Failure.self) { try await ImageAnonymiser.anonymise(try bundled("apcv/claire-exemple.yaml"), seed: 1) }
        let phone = try bundled("apcv/claire-exemple.yaml")
        do {
            _ = try await ImageAnonymiser.anonymise(phone, seed: 1)
        } catch {
            guard case .unknownCard = error else { Issue.record("\(error)"); return }
        }
        // A surname in a form the rewriting does not produce (mixed case in a file label): refused, and
        // the refusal names the field and the place, not the value.
        var image = try bundled("demo/vitale2-demo.yaml")
        let surname = try #require(try await readVitale(image).beneficiaries.first?.surname)
        let mixed = String(surname.enumerated().map { $0.offset % 2 == 0 ? Character($0.element.lowercased()) : $0.element })
        image.root.label = "card of the \(mixed) family"
        let labelled = image
        do {
            _ = try await ImageAnonymiser.anonymise(labelled, seed: 1)
            Issue.record("a mixed-case surname in a label was accepted")
        } catch {
            guard case .personalDataRemains(let field, let location) = error else { Issue.record("\(error)"); return }
            #expect(field.contains("surname") && location.contains("label"), "\(error)")
            #expect(!error.description.uppercased().contains(surname.uppercased()))
        }
    }
}

/// One line of a pcsc-spy hex dump: offset, 16 bytes in 47 columns, their ASCII.
func spyDump(_ bytes: [UInt8], offset: Int = 0) -> String {
    let hex = bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
    return String(format: "%04X ", offset) + hex.padding(toLength: 47, withPad: " ", startingAt: 0) + " " + String(bytes.map { $0 > 31 && $0 < 127 ? Character(UnicodeScalar($0)) : "." })
}

@Suite("Importing pcscd and pcsc-spy captures")
struct ImportTests {
    @Test func aPINInACaptureIsNeverKeptNorLogged() async throws {
        let log = """
            00000002 winscard.c:258:SCardConnect() Attempting Connect to Lecteur 00 00 using protocol: 3\r
            00000009 Card ATR: 3B 75 13 00 00 45 09 EA 90 00\r
            00000004 APDU: 00 20 00 01 08 31 32 33 34 FF FF FF FF\r
            00000300 SW: 90 00\r
            00000004 APDU: 00 24 00 01 10 31 32 33 34 FF FF FF FF 35 35 35 35 FF FF FF FF\r
            00000300 SW: 90 00\r
            """
        let capture = try ReplayImporter.parse(log, format: .pcscdLog)
        #expect(capture.exchanges.count == 2, "CR LF line endings are lines")
        let image = try ReplayImporter.image(capture, source: "t", date: "d")
        let text = CardImageWriter.yaml(image)
        #expect(!text.contains("31 32 33 34") && !text.contains("35 35 35 35") && text.contains("00 20 00 01 08 ?? ?? ?? ?? ?? ?? ?? ??"), "\(text)")
        // Any PIN replays the recorded answer; a refused one is logged without its data.
        let logs = InMemoryLogHandler()
        let answers = try await onCard(image, logger: Logger(label: "replay", factory: { _ in logs })) { connection, _ in
            [try await connection.transmit([0x00, 0x20, 0x00, 0x01, 0x08, 0x39, 0x39, 0x39, 0x39, 0xFF, 0xFF, 0xFF, 0xFF]),
             try await connection.transmit([0x00, 0x20, 0x00, 0x01, 0x04, 0x37, 0x37, 0x37, 0x37])]
        }
        #expect(answers == [[0x90, 0x00], [0x6F, 0x00]])
        let lines = logs.entries.map { "\($0.message)" }.joined(separator: "\n")
        #expect(lines.contains("00 20 00 01 04 <PIN data redacted>") && !lines.contains("37 37") && !lines.contains("31 32"), "\(lines)")
        // An image written by hand with a PIN in its transcript is refused by the anonymiser.
        var handWritten = try bundled("demo/vitale2-demo.yaml")
        handWritten.replay = .init(source: .filesystem, transcript: [.init(command: [0x00, 0x20, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34], response: [0x90, 0x00])])
        do {
            _ = try await ImageAnonymiser.anonymise(handWritten, seed: 1)
            Issue.record("a PIN in the transcript was accepted")
        } catch {
            guard case .personalDataRemains(let field, _) = error else { Issue.record("\(error)"); return }
            #expect(field == "PIN or PUK")
        }
    }

    @Test func pcscSpyWithThreadNumbersIsRead() throws {
        let spy = ["(t1) SCardTransmit", " (t1)  i hCard: 0x01", " (t1)  i bSendLength 0x00000004 (4)", " (t1)  i bSendBuffer", " (t1)  i  " + spyDump([0x00, 0xB0, 0x00, 0x00]),
                   " (t1)  o bRecvLength 0x00000002 (2)", " (t1)  o bRecvBuffer", " (t1)  o  " + spyDump([0x90, 0x00]),
                   " (t1)  => Command successful. (SCARD_S_SUCCESS [0x00000000])  [nan]"].joined(separator: "\n")
        let capture = try ReplayImporter.parse(spy, format: .pcscSpy)
        #expect(capture.exchanges.count == 1 && capture.exchanges[0].milliseconds == nil, "\(capture)")
    }

    /// A pcscd --apdu log as the journal shows it, colours included.
    let pcscdLog = """
        Nov 23 10:00:00 host pcscd[42]: 00000019 winscard.c:258:SCardConnect() Attempting Connect to Lecteur Bi 00 00 using protocol: 3
        Nov 23 10:00:00 host pcscd[42]: 00000009 Card ATR: 3B 75 13 00 00 45 09 EA 90 00 
        Nov 23 10:00:00 host pcscd[42]: 00000002 winscard.c:430:SCardConnect() Active Protocol: T=0
        Nov 23 10:00:00 host pcscd[42]: 00000004 \u{1B}[34mAPDU: 00 A4 04 00 02 A0 01 \u{1B}[0m
        Nov 23 10:00:00 host pcscd[42]: 00000387 SW: 61 02 
        Nov 23 10:00:00 host pcscd[42]: 00000004 APDU: 00 C0 00 00 02 
        Nov 23 10:00:00 host pcscd[42]: 00001500 SW: 6F 00 90 00 
        Nov 23 10:00:00 host pcscd[42]: 00000004 APDU: 00 B0 00 00 04 
        """

    @Test func aPCSCDLogBecomesAReplayImage() throws {
        let capture = try ReplayImporter.parse(pcscdLog, format: try #require(ReplayImporter.Format.detect(pcscdLog)))
        #expect(capture.reader == "Lecteur Bi 00 00")
        #expect(capture.atr == [0x3B, 0x75, 0x13, 0x00, 0x00, 0x45, 0x09, 0xEA, 0x90, 0x00])
        #expect(capture.protocolUsed == .t0)
        #expect(capture.exchanges.map(\.response) == [[0x61, 0x02], [0x6F, 0x00, 0x90, 0x00]])
        #expect(capture.exchanges[1].milliseconds == 1.5)
        #expect(capture.unanswered == 1, "the last command got no answer")
        let image = try ReplayImporter.image(capture, source: "test", date: "2026-11-23T00:00:00Z")
        #expect(image.replay?.transcript.count == 2 && image.recorded?.reader == "Lecteur Bi 00 00")
    }

    @Test func badCapturesAreTypedErrorsWithTheirLine() {
        #expect(ReplayImporter.Format.detect("hello") == nil)
        #expect(throws: ReplayImporter.ImportError.malformed(line: 1, "\"ZZ\" is not a hex byte")) {
            try ReplayImporter.parse("00000004 APDU: 00 ZZ 00 00", format: .pcscdLog)
        }
        #expect(throws: ReplayImporter.ImportError.malformed(line: 1, "an answer (SW:) without a command (APDU:) before it")) {
            try ReplayImporter.parse("00000004 SW: 90 00", format: .pcscdLog)
        }
        let two = """
            Attempting Connect to A 00 00 using protocol: 1
            APDU: 00 A4 00 00
            SW: 90 00
            Attempting Connect to B 00 00 using protocol: 1
            APDU: 00 B0 00 00
            SW: 90 00
            """
        #expect(throws: ReplayImporter.ImportError.severalReaders(["A 00 00", "B 00 00"])) { try ReplayImporter.parse(two, format: .pcscdLog) }
        #expect(throws: ReplayImporter.ImportError.unknownReader("C", seen: ["A 00 00", "B 00 00"])) { try ReplayImporter.parse(two, format: .pcscdLog, reader: "C") }
        let b = try? ReplayImporter.parse(two, format: .pcscdLog, reader: "B")
        #expect(b?.exchanges.count == 1 && b?.atr == nil)
        #expect(throws: ReplayImporter.ImportError.noATR) { try ReplayImporter.image(try #require(b), source: "t", date: "d") }
        let spy = ["SCardTransmit", " i hCard: 0x01", " i bSendLength 0x00000005 (5)", " i bSendBuffer", " i  " + spyDump([0x00, 0xB0, 0x00, 0x00]),
                   " o bRecvLength 0x00000002 (2)", " o bRecvBuffer", " o  " + spyDump([0x90, 0x00]),
                   " => Command successful. (SCARD_S_SUCCESS [0x00000000])  [0.000100]"].joined(separator: "\n")
        #expect(throws: ReplayImporter.ImportError.malformed(line: 4, "bSendBuffer shows 4 byte(s), its length says 5")) {
            try ReplayImporter.parse(spy, format: .pcscSpy)
        }
    }
}

/// Replaces every occurrence (test helper).
func replaceAllForTest(_ blob: inout [UInt8], _ a: [UInt8], _ b: [UInt8]) {
    var i = 0
    while i + a.count <= blob.count {
        if Array(blob[i..<(i + a.count)]) == a { blob.replaceSubrange(i..<(i + a.count), with: b); i += a.count } else { i += 1 }
    }
}
