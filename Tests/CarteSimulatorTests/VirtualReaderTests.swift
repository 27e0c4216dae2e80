import CarteCore
import CarteEmulator
import CarteImages
import Testing

@Suite("Virtual readers")
struct VirtualReaderTests {
    @Test func profilesAndPCSCStyleNames() async throws {
        let backend = SimulatorBackend(profiles: [.biFente, .contactless, .monoFente])
        let readers = try await backend.readers()
        #expect(readers.map(\.name) == [
            "CarteKit Virtual Bi-fente 00 00", "CarteKit Virtual Bi-fente 00 01",
            "CarteKit Virtual Contactless 01 00", "CarteKit Virtual Mono-fente 02 00",
        ])
        #expect(readers[0].physicalReader == readers[1].physicalReader)
        #expect(readers[0].role == "vitale" && readers[1].role == "cpx")
        #expect(readers[0].slotCount == 2 && readers[1].slot == 1)
        #expect(readers[2].isContactless)
        #expect(readers.allSatisfy { $0.firmwareVersion == "1.00" && $0.vendor?.contains("synthetic") == true })
        for r in readers { #expect(try await backend.state(of: r.name) == .empty) }
    }

    @Test func insertRemoveAndEvents() async throws {
        let backend = SimulatorBackend()
        let events = backend.events()
        let slots = backend.addReader(.biFente)
        let image = try bundled("demo/vitale2-demo.yaml")
        try backend.insert(image, into: slots[0].name)
        try backend.remove(from: slots[0].name)
        try backend.remove(from: slots[0].name)  // already empty: no event
        try backend.insert(image, into: slots[1].name, mute: true)
        try backend.removeReader(slots[0].name)
        var seen: [ReaderEvent] = []
        for await e in events {
            seen.append(e)
            if seen.count == 8 { break }
        }
        #expect(seen == [
            .readerAdded(slots[0]), .readerAdded(slots[1]),
            .cardInserted(reader: slots[0].name, atr: image.atr),
            .cardRemoved(reader: slots[0].name),
            .cardMute(reader: slots[1].name),
            .readerRemoved(name: slots[0].name),
            .cardRemoved(reader: slots[1].name),
            .readerRemoved(name: slots[1].name),
        ])
        #expect(try await backend.readers().isEmpty)
    }

    @Test func connectionErrors() async throws {
        let backend = SimulatorBackend(profiles: [.biFente])
        let names = backend.readerNames
        await #expect(throws: CardError.noCard(reader: names[0])) { try await backend.connect(to: names[0], share: .shared, protocols: [.t0]) }
        await #expect(throws: CardError.noSuchReader("Nope", available: names)) { try await backend.connect(to: "Nope", share: .shared, protocols: [.t0]) }
        try backend.insert(try bundled("demo/iso-generic.yaml"), into: names[1], mute: true)
        await #expect(throws: CardError.cardMute(reader: names[1], timeout: .zero)) { try await backend.connect(to: names[1], share: .shared, protocols: [.t1]) }
        try backend.insert(try bundled("demo/iso-generic.yaml"), into: names[1])
        await #expect(throws: CardError.self) { try await backend.connect(to: names[1], share: .shared, protocols: [.t0]) }  // T=1 card
        // A unique prefix is accepted, as people type reader names; an ambiguous one is not.
        let two = SimulatorBackend(profiles: [.biFente, .contactless])
        try two.insert(try bundled("demo/iso-generic.yaml"), into: "CarteKit Virtual Contact")
        #expect(try await two.connect(to: "CarteKit Virtual Contact", share: .shared, protocols: [.t1]).readerName == "CarteKit Virtual Contactless 01 00")
        await #expect(throws: CardError.self) { try await two.connect(to: "CarteKit Virtual", share: .shared, protocols: [.t1]) }
    }

    @Test func removalInvalidatesConnectionsEvenAfterReinsertion() async throws {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let name = backend.readerNames[0]
        let image = try bundled("demo/iso-generic.yaml")
        try backend.insert(image, into: name)
        let connection = try await backend.connect(to: name, share: .shared, protocols: [.t1])
        #expect(try await connection.transmit([0x00, 0xA4, 0x00, 0x0C]) == [0x90, 0x00])
        try backend.remove(from: name)
        await #expect(throws: CardError.cardRemoved(reader: name)) { try await connection.transmit([0x00, 0xA4, 0x00, 0x0C]) }
        try backend.insert(image, into: name)
        await #expect(throws: CardError.cardRemoved(reader: name)) { try await connection.transmit([0x00, 0xA4, 0x00, 0x0C]) }
        let fresh = try await backend.connect(to: name, share: .shared, protocols: [.t1])
        #expect(try await fresh.transmit([0x00, 0xA4, 0x00, 0x0C]) == [0x90, 0x00])
        try await fresh.disconnect(.leave)
        await #expect(throws: CardError.notConnected) { try await fresh.transmit([0x00, 0xA4, 0x00, 0x0C]) }
    }

    @Test func exclusiveConnectAfterACardSwap() async throws {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let name = backend.readerNames[0]
        let image = try bundled("demo/iso-generic.yaml")
        try backend.insert(image, into: name)
        let old = try await backend.connect(to: name, share: .shared, protocols: [.t1])
        try backend.insert(image, into: name)  // swapped while `old` is still alive
        let fresh = try await backend.connect(to: name, share: .exclusive, protocols: [.t1])
        #expect(try await fresh.transmit([0x00, 0xA4, 0x00, 0x0C]) == [0x90, 0x00])
        await #expect(throws: CardError.cardRemoved(reader: name)) { try await old.transmit([0x00, 0xA4, 0x00, 0x0C]) }
    }

    @Test func exclusiveAccessAndResets() async throws {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let name = backend.readerNames[0]
        try backend.insert(try bundled("demo/iso-generic.yaml"), into: name)
        let a = try await backend.connect(to: name, share: .exclusive, protocols: [.t1])
        await #expect(throws: CardError.sharingViolation(reader: name)) { try await backend.connect(to: name, share: .shared, protocols: [.t1]) }
        try await a.disconnect(.leave)
        let b = try await backend.connect(to: name, share: .shared, protocols: [.t1])
        let c = try await backend.connect(to: name, share: .shared, protocols: [.t1])
        await #expect(throws: CardError.sharingViolation(reader: name)) { try await b.reconnect(share: .exclusive, initialization: .leave) }
        // Verify on b, then c resets the card: b learns it once, and the PIN state is gone.
        #expect(try await b.transmit(try [UInt8](hex: "00 20 00 81 08 31 32 33 34 FF FF FF FF")) == [0x90, 0x00])
        try await c.reconnect(share: .shared, initialization: .reset)
        await #expect(throws: CardError.cardReset(reader: name)) { try await b.transmit([0x00, 0x20, 0x00, 0x81]) }
        #expect(try await b.transmit([0x00, 0x20, 0x00, 0x81]) == [0x63, 0xC3])
        #expect(try backend.remainingTries(forPIN: 0x81, in: name) == 3)
    }

    @Test func cardChannelOverTheSimulatorReadsAVitale() async throws {
        let backend = SimulatorBackend(profiles: [.biFente])
        let name = backend.readerNames[0]
        try backend.insert(try bundled("demo/vitale2-demo.yaml"), into: name)
        let connection = try await backend.connect(to: name, share: .exclusive, protocols: [.t0, .t1])
        #expect(await connection.activeProtocol == .t0)
        let trace = Trace()
        let channel = CardChannel(transport: connection, trace: trace)
        let fci = try await channel.transmit(try .select(aid: [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("VITALE".utf8)))
        #expect(fci.isSuccess && fci.data.first == 0x6F)
        let nirs = try await channel.transmit(try .readBinary(sfi: 2))
        #expect(nirs.isSuccess && nirs.data.count == 0x80)
        #expect(trace.events.compactMap(\.marker) == [.getResponse, .getResponse, .resendWithCorrectLe, .resendWithCorrectLe])
        // The same commands with the raw policy show what the card really answers.
        #expect(try await channel.transmit(try .readBinary(sfi: 2), policy: .raw).statusWord == .wrongLe(exact: 0x80))
    }
}
