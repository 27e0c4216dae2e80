import CarteBundledImages
import CarteCore
import CarteEmulator
import CarteImages
import CarteVitale
import Testing

func image(_ path: String) throws -> CardImage {
    let bundled = try #require(BundledImages.image(at: path))
    return try CardImageLoader.load(text: bundled.text, source: "bundled:" + path)
}

/// A channel to a simulated card playing `image`, with a trace.
func channel(_ image: CardImage) throws -> CardChannel {
    let backend = SimulatorBackend(profiles: [.monoFente])
    let name = backend.readerNames[0]
    try backend.insert(image, into: name)
    return CardChannel(transport: try backend.connectNow(to: name), trace: Trace())
}

@Suite("NIR")
struct NIRTests {
    @Test("keys of domain-facts §3.4 and of the INSEE Corsica rule", arguments: [
        ("268081315501324", true, false, false),
        ("160106322011803", true, false, false),
        ("185022A00401222", true, true, false),  // 2A counts as 19
        ("291079913500478", true, false, true),  // born abroad: département 99
        ("160106322011804", false, false, false),
    ])
    func keys(text: String, valid: Bool, corsica: Bool, abroad: Bool) throws {
        let nir = try NIR(text)
        #expect(nir.isKeyValid == valid)
        #expect(nir.bornInCorsica == corsica)
        #expect(nir.bornAbroad == abroad)
        #expect(nir.description == text)
    }

    /// The key computed on the bytes (#39 made it one 64-bit remainder) against the definition: 97 −
    /// (the 13 characters as a decimal number, 2A read as 19 and 2B as 18, mod 97).
    @Test func keysMatchTheDefinitionForEveryBody() throws {
        var generator = SystemRandomNumberGenerator()
        for n in 0..<2_000 {
            var digits = (0..<13).map { _ in Character(String(Int.random(in: 0...9, using: &generator))) }
            var number = String(digits)
            if n % 3 != 0 {
                digits[5] = "2"
                digits[6] = n % 3 == 1 ? "A" : "B"
                var replaced = digits
                replaced[6] = n % 3 == 1 ? "9" : "8"
                replaced[5] = "1"
                number = String(replaced)
            }
            let expected = 97 - Int(number)! % 97
            let nir = try NIR(String(digits) + (expected < 10 ? "0" : "") + String(expected))
            #expect(nir.expectedKey == expected && nir.isKeyValid, "\(String(digits))")
        }
    }

    @Test func fields() throws {
        let nir = try NIR("2 85 03 75 056 123 06")
        #expect(nir.sex == 2 && nir.birthYear == "85" && nir.birthMonth == "03")
        #expect(nir.department == "75" && nir.commune == "056" && nir.order == "123" && nir.key == 6)
        let corsican = try NIR.withComputedKey("185022B004012")
        #expect(corsican.isKeyValid && corsican.department == "2B" && corsican.key == 97 - 1_850_218_004_012 % 97)
    }

    @Test func malformed() {
        #expect(throws: NIR.Problem.wrongLength(13)) { try NIR("1601063220118") }
        #expect(throws: NIR.Problem.invalidCharacter(position: 2)) { try NIR("1X0106322011803") }
        #expect(throws: NIR.Problem.invalidCharacter(position: 7)) { try NIR("160106C22011803") }
        #expect(throws: NIR.Problem.invalidCharacter(position: 14)) { try NIR("1601063220118X3") }
    }
}

@Suite("Vitale dates")
struct VitaleDateTests {
    @Test func calendarAndLunarDates() throws {
        let d = try #require(VitaleDate("19850314"))
        #expect(!d.isLunar && d.description == "14/03/1985" && d.iso == "1985-03-14")
        #expect(try #require(VitaleDate("20000229")).isLunar == false)
        #expect(try #require(VitaleDate("19000229")).isLunar)  // 1900 is not a leap year
        #expect(try #require(VitaleDate("19850231")).isLunar)
        #expect(try #require(VitaleDate("19850000")).isLunar)
        #expect(try #require(VitaleDate("19851300")).isLunar)
        #expect(VitaleDate("1985031") == nil)
        #expect(VitaleDate("1985O314") == nil)
    }

    @Test func isoDatesAreCalendarDatesWithTheirDashesInPlace() {
        #expect(VitaleDate(iso: "2026-06-15")?.raw == "20260615")
        #expect(VitaleDate(iso: "2000-02-29")?.iso == "2000-02-29")
        for bad in ["2026-02-30", "2026-13-01", "2026-1215-", "20261-2-15", "2026-06-15\r\nX: y", "2026/06/15", "2026-6-15", "", "--"] {
            #expect(VitaleDate(iso: bad) == nil, "\(bad)")
        }
    }
}

@Suite("Reading a Carte Vitale 2")
struct VitaleReaderTests {
    @Test func theDemoCardInMemory() async throws {
        let ch = try channel(try image("demo/vitale2-demo.yaml"))
        let card = try await VitaleReader(channel: ch).read()
        #expect(card.generation == .vitale2)
        #expect(card.issues.isEmpty, "\(card.issues)")
        #expect(card.beneficiaries.map(\.firstName) == ["CLAIRE", "LUC", "EMMA"])
        #expect(card.beneficiaries.allSatisfy { $0.surname == "EXEMPLE" })
        #expect(card.beneficiaries.map { $0.birthDate?.raw } == ["19850314", "19831102", "20150630"])
        #expect(card.beneficiaries.map { $0.nir?.description } == ["285037505612306", "183116912304564", "215067505678905"])
        #expect(card.beneficiaries.allSatisfy { $0.nir?.isKeyValid == true })
        // SELECT (1) + SFI 2 of 256 bytes and the end-of-file probe (2) + SELECT (1) + SFI 2 with a 6Cxx resend (2).
        #expect(card.apduCount == 6)
        #expect(card.apduCount <= 12)
    }

    @Test func notAVitale() async throws {
        let ch = try channel(try image("demo/iso-generic.yaml"))
        await #expect(throws: VitaleError.notAVitale(.fileNotFound)) { try await VitaleReader(channel: ch).read() }
    }

    @Test func badDataIsFlaggedNotGuessed() throws {
        let identities = try TLV.decode([0x65, 0x0C, 0x80, 0x02, 0x41, 0x20, 0x82, 0x06] + Array("198503".utf8))
        let numbers = try TLV.decode([0x65, 0x11, 0x93, 0x0F] + Array("285037505612307".utf8) + [0x65, 0x02, 0x80, 0x00])
        let card = VitaleReader.decode(identities: identities, numbers: numbers)
        #expect(card.beneficiaries.count == 2)
        #expect(card.beneficiaries[0].surname == "A")
        #expect(card.beneficiaries[0].birthDate == nil)
        #expect(card.beneficiaries[0].nir?.isKeyValid == false)
        let messages = card.issues.map(\.description)
        #expect(messages.contains("MF_VITALE SFI 2, person 1, birth date: \"198503\" is not YYYYMMDD"))
        #expect(messages.contains("VITALE SFI 2, person 1, NIR: key 7 is wrong: the number calls for 6"))
        #expect(messages.contains("VITALE SFI 2, person 2, NIR: missing (tag 93)"))
        #expect(messages.contains { $0.hasPrefix("VITALE SFI 2: 2 NIR template(s) for 1 person(s)") })
    }

    @Test func malformedTLVIsATypedErrorNamingTheFile() async throws {
        var img = try image("demo/vitale2-demo.yaml")
        // Corrupt the VITALE SFI 2 file: a template announcing more bytes than the file holds.
        guard case .dedicated(var vitale) = img.root.children[3], case .elementary(var nirs) = vitale.children[1] else {
            Issue.record("unexpected demo image layout")
            return
        }
        nirs.content = .transparent([0x65, 0x40, 0x93, 0x0F] + Array("285037505612306".utf8))
        vitale.children[1] = .elementary(nirs)
        img.root.children[3] = .dedicated(vitale)
        let ch = try channel(img)
        await #expect(throws: VitaleError.malformed(file: "VITALE SFI 2", .truncatedValue(offset: 1, declared: 0x40, available: 17))) {
            try await VitaleReader(channel: ch).read()
        }
    }
}

@Suite("Review regressions")
struct VitaleRegressionTests {
    @Test func corsicaLettersOnlyAfterA2() {
        #expect(throws: NIR.Problem.invalidCharacter(position: 7)) { try NIR("175081A00407758") }
        #expect(throws: NIR.Problem.invalidCharacter(position: 7)) { try NIR("175083B00407758") }
    }

    @Test func aDamagedPeriodIsNeitherOpenNorClosed() {
        var b = Beneficiary(index: 0)
        var damaged = Period(from: VitaleDate("20240101"), to: nil)
        damaged.isValid = false
        b.rights = [damaged]
        #expect(b.rightsOpen(on: VitaleDate("20260615")!) == nil)
        #expect(!damaged.contains(VitaleDate("20260615")!))
    }

    @Test func paddingDetection() {
        #expect(VitaleReader.endsInPadding([0x65, 0x02, 0x80, 0x00, 0x00]))
        #expect(!VitaleReader.endsInPadding([0x65, 0x02, 0x80, 0x00]))  // ends exactly: there may be more
        #expect(!VitaleReader.endsInPadding([0x65, 0x05, 0x80, 0x00]))  // incomplete
    }

    @Test func anotherCardsSFI3IsNotReadAsCarteKitData() async throws {
        // A Vitale image whose VITALE SFI 3 holds E0/E1 templates without CarteKit's marker.
        var img = try image("demo/vitale2-demo.yaml")
        guard case .dedicated(var vitale) = img.root.children[3] else { Issue.record("layout"); return }
        vitale.children.append(.elementary(.init(fid: 0x0003, sfi: 3, content: .transparent([0xE0, 0x04, 0x83, 0x02, 0x30, 0x31, 0x00]))))
        img.root.children[3] = .dedicated(vitale)
        let card = try await VitaleReader(channel: try channel(img)).read()
        #expect(card.amo == nil && !card.usesSyntheticLayout)
    }
}
