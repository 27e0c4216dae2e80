import CarteBundledImages
import CarteCPS
import CarteCore
import CarteKit
import CarteEmulator
import CarteImages
import CarteVitale
import Testing

func image(_ path: String) throws -> CardImage {
    let b = try #require(BundledImages.image(at: path))
    return try CardImageLoader.load(text: b.text, source: b.path)
}

@Suite("CarteKit: ReaderManager and typed sessions")
struct ReaderManagerTests {
    @Test func detectionFromTheATRAndByProbing() async throws {
        #expect(CardKind.fromATR(try image("demo/vitale2-demo.yaml").atr) == .vitale2)
        #expect(CardKind.fromATR(try image("vitale/vitale1.yaml").atr) == .vitale1)
        #expect(CardKind.fromATR(try image("cps/medecin-liberal.yaml").atr) == .cps3)
        #expect(CardKind.fromATR(try image("cps/cps4-medecin.yaml").atr) == .cps4)
        #expect(CardKind.fromATR(try image("cps/cps3-sans-contact.yaml").atr) == .cps3Contactless)
        // A Vitale 2 with an ATR nobody lists is recognised by probing its MF_VITALE application.
        var odd = try image("demo/vitale2-demo.yaml")
        odd.atr = [0x3B, 0x02, 0x14, 0x50]
        let sim = SimulatorBackend(profiles: [.monoFente])
        try sim.insert(odd, into: sim.readerNames[0])
        let manager = ReaderManager(backend: sim)
        #expect(try await manager.slots().first?.card == .unknown(atr: [0x3B, 0x02, 0x14, 0x50]))
        let kind = try await manager.withSession(on: sim.readerNames[0]) { session in session.kind }
        #expect(kind == .vitale2)
        // The generic test card stays unknown.
        try sim.remove(from: sim.readerNames[0])
        try sim.insert(try image("demo/iso-generic.yaml"), into: sim.readerNames[0])
        let other = try await manager.withSession(on: sim.readerNames[0]) { session in session.kind }
        guard case .unknown = other else { Issue.record("\(other)"); return }
    }

    @Test func oneCallReadsTheVitaleAndChecksThePINOnABiFenteReader() async throws {
        let sim = SimulatorBackend(profiles: [.biFente, .monoFente])
        let names = sim.readerNames
        try sim.insert(try image("vitale/family-five.yaml"), into: names[0])
        try sim.insert(try image("cps/medecin-liberal.yaml"), into: names[1])
        try sim.insert(try image("cps/cpa.yaml"), into: names[2])  // another CPx, on another reader
        let manager = ReaderManager(backend: sim)
        let pairs = try await manager.pairs()
        #expect(pairs.first == ReaderPair(vitale: names[0], cpx: names[1], sameReader: true))
        #expect(pairs.count == 2 && pairs.last?.sameReader == false)
        let both = try await manager.readVitaleAndVerifyPIN(try PINCode("1234"))
        #expect(both.pair.sameReader)
        #expect(both.vitale.beneficiaries.count == 7)
        #expect(both.professional.holder?.surname == "DOCTEST")
        #expect(both.professional.situations?.first?.structureName == "CABINET DR DOCTEST")
        // A wrong PIN is the CPx error, with the tries left.
        await #expect(throws: CarteKitError.cpx(.wrongPIN(which: "PIN", triesLeft: 2))) {
            try await manager.readVitaleAndVerifyPIN(try PINCode("9999"))
        }
    }

    @Test func onABiFenteWithAPINPadThePINIsTypedOnTheReader() async throws {
        let sim = SimulatorBackend(profiles: [.biFentePINPad, .biFente])
        let names = sim.readerNames
        try sim.insert(try image("vitale/family-five.yaml"), into: names[0])
        try sim.insert(try image("cps/medecin-liberal.yaml"), into: names[1])
        try sim.insert(try image("cps/cpa.yaml"), into: names[3])
        let manager = ReaderManager(backend: sim)
        #expect(try await manager.cpxReaderHasPINPad(on: names[1]))
        #expect(try await manager.cpxReaderHasPINPad(on: names[3]) == false)
        let keypad = sim.physicalReaders[0].slots[1].keypad
        keypad.type([.digits(try KeypadDigits("1234"), after: .milliseconds(50))])
        let both = try await manager.readVitaleAndVerifyPIN(entry: .pinPad)
        #expect(both.vitale.beneficiaries.count == 7 && both.professional.situations?.first?.structureName == "CABINET DR DOCTEST")
        keypad.type([.digits(try KeypadDigits("9999"), after: .zero), .cancel(after: .zero)])
        await #expect(throws: CarteKitError.cpx(.wrongPIN(which: "PIN", triesLeft: 2))) { try await manager.readCPx(on: names[1], entry: .pinPad) }
        await #expect(throws: CarteKitError.cpx(.pinPad(.cancelled))) { try await manager.readCPx(on: names[1], entry: .pinPad) }
        // The reader without a pad says so rather than waiting.
        await #expect(throws: CarteKitError.self) { try await manager.readCPx(on: names[3], entry: .pinPad) }
    }

    @Test func twoMonoFenteReadersMakeAPairToo() async throws {
        let sim = SimulatorBackend(profiles: [.monoFente, .monoFente])
        try sim.insert(try image("cps/cps4-medecin.yaml"), into: sim.readerNames[0])
        try sim.insert(try image("vitale/twins.yaml"), into: sim.readerNames[1])
        let both = try await ReaderManager(backend: sim).readVitaleAndVerifyPIN(try PINCode("1234"))
        #expect(!both.pair.sameReader)
        #expect(both.pair.vitale == sim.readerNames[1] && both.pair.cpx == sim.readerNames[0])
        #expect(both.professional.card.generation == .cps4)
    }

    @Test func typedErrors() async throws {
        let sim = SimulatorBackend(profiles: [.biFente])
        let manager = ReaderManager(backend: sim)
        await #expect(throws: CarteKitError.noReaderPair) { try await manager.readVitaleAndVerifyPIN(try PINCode("1234")) }
        await #expect(throws: CarteKitError.noCard(wanted: "a Carte Vitale")) { try await manager.readVitale() }
        await #expect(throws: CarteKitError.noSuchReader("nope", available: sim.readerNames)) { try await manager.readVitale(on: "nope") }
        try sim.insert(try image("cps/medecin-liberal.yaml"), into: sim.readerNames[0])
        await #expect(throws: CarteKitError.wrongCard(reader: sim.readerNames[0], expected: "a Carte Vitale", found: .cps3)) {
            try await manager.readVitale(on: sim.readerNames[0])
        }
        await #expect(throws: CarteKitError.card(.noCard(reader: sim.readerNames[1]))) { try await manager.readVitale(on: sim.readerNames[1]) }
    }

    @Test func aSessionTimesOutAndIsCancelledAndReleasesTheCard() async throws {
        let sim = SimulatorBackend(profiles: [.monoFente])
        let name = sim.readerNames[0]
        try sim.insert(try image("demo/vitale2-demo.yaml"), into: name)
        let manager = ReaderManager(backend: sim)
        await #expect(throws: CarteKitError.timeout(.milliseconds(100))) {
            try await manager.withSession(on: name, timeout: .milliseconds(100)) { _ in
                try? await Task.sleep(for: .seconds(5))
                return 0
            }
        }
        // Released: the next session gets the card exclusively.
        #expect(try await manager.readVitale(on: name).beneficiaries.count >= 1)
        let task = Task { try await manager.withSession(on: name) { _ in
            try? await Task.sleep(for: .seconds(5))
            return 1
        } }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        let outcome = await task.result
        guard case .failure(let e) = outcome else { Issue.record("a cancelled session returned"); return }
        #expect(e as? CarteKitError == .cancelled)
        #expect(try await manager.readVitale(on: name).beneficiaries.count >= 1)
    }

    @Test func eventsCarryTheSlotThePhysicalReaderAndTheCardKind() async throws {
        let sim = SimulatorBackend(profiles: [.biFente])
        let manager = ReaderManager(backend: sim)
        _ = try await manager.slots()
        let events = manager.events()
        try sim.insert(try image("cps/medecin-liberal.yaml"), into: sim.readerNames[1])
        try sim.remove(from: sim.readerNames[1])
        var seen: [CardEvent] = []
        for await e in events {
            seen.append(e)
            if seen.count == 2 { break }
        }
        #expect(seen.map(\.kind) == [.cardInserted, .cardRemoved])
        #expect(seen[0].card == .cps3 && seen[0].slot == 1 && seen[0].reader == sim.readerNames[1])
        #expect(seen[0].physicalReader == seen[1].physicalReader && seen[0].physicalReader != nil)
        // waitForCard returns at once for a card already there, else on its insertion.
        try sim.insert(try image("vitale/twins.yaml"), into: sim.readerNames[0])
        #expect(try await manager.waitForCard(timeout: .seconds(2)) { $0.isVitale } == sim.readerNames[0])
        async let waited = manager.waitForCard(timeout: .seconds(5)) { $0.isCPx }
        try await Task.sleep(for: .milliseconds(100))
        try sim.insert(try image("cps/cpf-etudiant.yaml"), into: sim.readerNames[1])
        #expect(try await waited == sim.readerNames[1])
        await #expect(throws: CarteKitError.timeout(.milliseconds(50))) { try await manager.waitForCard(timeout: .milliseconds(50)) { $0 == .apcv } }
    }
}
