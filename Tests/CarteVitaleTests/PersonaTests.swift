import CarteBundledImages
import CarteCore
import CarteEmulator
import CarteImages
import CarteVitale
import Testing

let evaluationDay = VitaleDate("20260615")!

struct BundledPersona: Sendable, CustomTestStringConvertible {
    let path: String
    var testDescription: String { path }
}

let bundledPersonas = BundledImages.vitalePersonas.map { BundledPersona(path: $0.path) }

func persona(_ path: String) throws -> Persona {
    try PersonaCompiler.load(text: try #require(BundledImages.image(at: path)).text, source: path)
}

func readPersona(_ path: String) async throws -> VitaleCard {
    let image = PersonaCompiler.compile(try persona(path), source: path)
    return try await VitaleReader(channel: try channel(image)).read(atr: image.atr)
}

@Suite("Personas read back exactly")
struct PersonaTests {
    @Test func thereAreElevenPersonas() {
        #expect(bundledPersonas.count >= 11)
    }

    @Test func aVitale1IsReadThroughB0Prime() async throws {
        let image = PersonaCompiler.compile(try persona("vitale/vitale1.yaml"))
        #expect(image.atr == [0x3F, 0x65, 0x25, 0x00, 0x22, 0x09, 0xF9, 0x90, 0x00])
        #expect(try ATR(bytes: image.atr).convention == .inverse)
        let ch = try channel(image)
        let card = try await VitaleReader(channel: ch).read(atr: image.atr)
        #expect(card.generation == .vitale1)
        #expect(card.beneficiaries.map(\.firstName) == ["ROBERT", "GINETTE"])
        #expect(card.apduCount == 2)  // BC C0, then one BC B0 reaches the padding
        #expect(ch.trace?.events.filter { $0.direction == .toCard }.map { $0.bytes.prefix(2) } == [[0xBC, 0xC0], [0xBC, 0xB0]])
        // It is no Vitale 2: the ISO commands are refused.
        await #expect(throws: VitaleError.notAVitale(.claNotSupported)) { try await VitaleReader(channel: try channel(image)).read() }
    }

    @Test("every persona reads back as its file says", arguments: bundledPersonas)
    func readsBack(_ bundled: BundledPersona) async throws {
        let p = try persona(bundled.path)
        let card = try await readPersona(bundled.path)
        #expect(card.generation == (p.generation == "vitale1" ? .vitale1 : .vitale2))
        #expect(card.usesSyntheticLayout == (p.corruptions.isEmpty || p.generation == "vitale1"))
        #expect(card.apduCount <= 12, "\(card.apduCount) APDUs")
        #expect(card.beneficiaries.count == p.people.count)
        if p.corruptions.isEmpty {
            #expect(card.amo?.regime == p.cardFields[SyntheticLayout.Card.regime])
            #expect(card.serialNumber == p.cardFields[SyntheticLayout.Card.serial])
        }
        for (b, person) in zip(card.beneficiaries, p.people) {
            #expect(b.surname == person.surname)
            #expect(b.firstName == person.firstName)
            #expect(b.birthDate?.raw == person.birthDate)
            #expect(b.nationality == person.nationality)
            #expect(b.nir?.description == person.nir)
            if p.corruptions.isEmpty {
                #expect(b.birthRank == person.birthRank)
                #expect(b.quality == person.quality)
                #expect(b.usualName == person.usualName)
                #expect(b.birthName == person.birthName)
                #expect(b.rights.map { [$0.from?.raw, $0.to?.raw] } == person.rights.map { [$0.from, $0.to] })
                #expect(b.coverage.map { [$0.period.from?.raw, $0.period.to?.raw, $0.ald, $0.situation] } == person.coverage.map { [$0.from, $0.to, $0.ald, $0.situation] })
                #expect(b.service?.code == person.service?.code)
                #expect(b.amc?.numberB2 == person.amc[0x80])
            }
        }
        if p.corruptions.isEmpty {
            #expect(card.issues.isEmpty, "\(card.issues)")
            #expect(card.beneficiaries.allSatisfy { $0.nir?.isKeyValid == true })
        }
    }

    @Test func twinsKeepTheirRanks() async throws {
        let card = try await readPersona("vitale/twins.yaml")
        let twins = card.beneficiaries.filter { $0.birthDate?.raw == "20200302" }
        #expect(twins.map(\.birthRank) == [1, 2])
        #expect(twins.map(\.firstName) == ["LOUIS", "JULES"])
    }

    @Test func corsicaKeysUse19And18() async throws {
        let card = try await readPersona("vitale/corsica.yaml")
        #expect(card.beneficiaries.map { $0.nir?.department } == ["2A", "2B"])
        #expect(card.beneficiaries.allSatisfy { $0.nir?.bornInCorsica == true && $0.nir?.isKeyValid == true })
        // The key computed with 2A read as 19: 97 - (1780819004077 mod 97).
        #expect(card.beneficiaries[0].nir?.key == 97 - 1_780_819_004_077 % 97)
        #expect(card.beneficiaries[1].nir?.key == 97 - 2_790_318_033_088 % 97)
    }

    @Test func bornAbroadWithALunarDate() async throws {
        let b = try #require(try await readPersona("vitale/born-abroad.yaml").beneficiaries.first)
        #expect(b.nir?.bornAbroad == true && b.nir?.department == "99")
        #expect(b.birthDate?.raw == "19650100" && b.birthDate?.isLunar == true)
        #expect(b.nationality == "MA")
    }

    @Test func rightsOnADate() async throws {
        #expect(try await readPersona("vitale/single-insured.yaml").beneficiaries[0].rightsOpen(on: evaluationDay) == true)
        #expect(try await readPersona("vitale/rights-expired.yaml").beneficiaries[0].rightsOpen(on: evaluationDay) == false)
        #expect(try await readPersona("vitale/rights-expired.yaml").beneficiaries[0].rightsOpen(on: VitaleDate("20231231")!) == true)
        let ald = try await readPersona("vitale/ald.yaml").beneficiaries[0]
        #expect(ald.ald(on: evaluationDay) == ["08"])
        #expect(ald.ald(on: VitaleDate("20230601")!) == [])
        let c2s = try await readPersona("vitale/c2s.yaml").beneficiaries[0]
        #expect(c2s.c2s(on: evaluationDay))
        #expect(!c2s.c2s(on: VitaleDate("20270101")!))
        let amc = try await readPersona("vitale/amc-mutuelle.yaml")
        #expect(amc.beneficiaries[0].amc?.routing == "MA" && amc.beneficiaries[0].amc?.domain == "RSS.FR")
        #expect(amc.beneficiaries[0].amc?.period.contains(evaluationDay) == true)
        #expect(amc.mutuelle?.identification == "02400000" && amc.mutuelle?.guarantees == "OOOOONON")
        #expect(amc.mutuelle?.periods.first?.contains(evaluationDay) == true)
        #expect(amc.workAccident == WorkAccident(organisme: "751", code: "0001", identifier: "AT2025000123"))
        #expect(amc.commonZone == "Z0001")
        // The demo card (the published layout only) has no rights data: unknown, not guessed.
        let demo = try await VitaleReader(channel: try channel(try image("demo/vitale2-demo.yaml"))).read()
        #expect(demo.beneficiaries[0].rightsOpen(on: evaluationDay) == nil)
        #expect(!demo.usesSyntheticLayout)
    }

    @Test func theCorruptCardHasItsDocumentedErrors() async throws {
        let card = try await readPersona("vitale/corrupt.yaml")
        #expect(card.issues.map(\.description) == [
            "VITALE SFI 2, person 2, NIR: key 99 is wrong: the number calls for 10",
            "VITALE SFI 3 (synthetic): not valid BER-TLV, ignored: TLV value at offset 70 needs 32767 byte(s) but only 55 remain",
        ])
        #expect(card.beneficiaries[1].nir?.isKeyValid == false)
        #expect(card.beneficiaries[2].birthDate?.isLunar == true)
        #expect(card.beneficiaries.allSatisfy { $0.rights.isEmpty && $0.rightsOpen(on: evaluationDay) == nil })
    }

    @Test func personasRoundTripThroughTheImageFormat() throws {
        for b in BundledImages.vitalePersonas {
            let image = PersonaCompiler.compile(try persona(b.path), source: b.path)
            let text = CardImageWriter.yaml(image)
            var back = try CardImageLoader.load(text: text, source: "written")
            back.source = image.source
            #expect(back == image, "\(b.path)")
        }
    }

    @Test("malformed personas name the field", arguments: [
        ("format: carte-persona/1\nname: x\nsynthetic: false\npeople: []\n", "synthetic", "synthetic by construction"),
        ("format: carte-persona/1\nname: x\nsynthetic: true\npeople: [{ surname: A, first-name: B, birth-date: \"1985O314\", nir: \"1850375056123\" }]\n", "people[0].birth-date", "YYYYMMDD"),
        ("format: carte-persona/1\nname: x\nsynthetic: true\npeople: [{ surname: A, first-name: B, birth-date: \"19850314\", nir: \"18503\" }]\n", "people[0].nir", "15 characters"),
        ("format: carte-persona/1\nname: x\nsynthetic: true\npeople: []\n", "people", "at least one person"),
        ("format: carte-persona/1\nname: x\nsynthetic: true\npeople: [{ surname: A, first-name: B, birth-date: \"19850314\", nir: \"1850375056123\", rights: [{ from: \"2024\" }] }]\n", "people[0].rights[0].from", "YYYYMMDD"),
    ])
    func malformed(text: String, field: String, phrase: String) {
        #expect {
            try PersonaCompiler.load(text: text, source: "p.yaml")
        } throws: { error in
            guard let e = error as? CardImageError else { return false }
            return e.field == field && e.description.contains(phrase)
        }
    }
}
