import CarteBundledImages
import CarteCore
import CarteEmulator
import CarteImages
import Testing

@Suite("Slot faults (in memory)")
struct SlotFaultTests {
    let selectMF: [UInt8] = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]

    func setUp() async throws -> (SimulatorBackend, String, any CardConnection) {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let slot = backend.readerNames[0]
        try backend.insert(try bundled("demo/iso-generic.yaml"), into: slot)
        return (backend, slot, try await backend.connect(to: slot, share: .shared, protocols: [.t0, .t1]))
    }

    @Test func removalsBeforeDuringAndAfterAnAPDU() async throws {
        for fault in [SlotFault.removeBefore, .removeDuring, .removeAfter] {
            let (backend, slot, connection) = try await setUp()
            let events = backend.events()
            try backend.inject(fault, into: slot)
            if fault == .removeAfter {
                #expect(try await connection.transmit(selectMF) == [0x90, 0x00], "answered, then removed")
            } else {
                await #expect(throws: CardError.cardRemoved(reader: slot)) { try await connection.transmit(selectMF) }
            }
            #expect(try await backend.state(of: slot) == .empty)
            await #expect(throws: CardError.cardRemoved(reader: slot)) { try await connection.transmit(selectMF) }
            var iterator = events.makeAsyncIterator()
            #expect(await iterator.next() == .cardRemoved(reader: slot), "\(fault): the removal is an event")
        }
    }

    @Test func muteStatusWordSlowAndReset() async throws {
        let (backend, slot, connection) = try await setUp()
        try backend.inject(.mute(count: 2), into: slot)
        for _ in 0..<2 {
            await #expect(throws: CardError.cardMute(reader: slot, timeout: .zero)) { try await connection.transmit(selectMF) }
        }
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00], "answers again")
        try backend.inject(.statusWord(StatusWord(rawValue: 0x6F00), count: 1), into: slot)
        #expect(try await connection.transmit(selectMF) == [0x6F, 0x00])
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00])
        try backend.inject(.slow(.milliseconds(30)), into: slot)
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00])
        #expect(clock.now - start >= .milliseconds(30))
        try backend.clearFaults(in: slot)
        // A warm reset: the connection is told once; the command did not run.
        try backend.inject(.warmReset, into: slot)
        await #expect(throws: CardError.cardReset(reader: slot)) { try await connection.transmit(selectMF) }
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00])
        // An insertion clears the faults.
        try backend.inject(.mute(count: 5), into: slot)
        try backend.insert(try bundled("demo/iso-generic.yaml"), into: slot)
        let fresh = try await backend.connect(to: slot, share: .shared, protocols: [.t0, .t1])
        #expect(try await fresh.transmit(selectMF) == [0x90, 0x00])
    }

    @Test func aCardImageSchedulesItsFaults() async throws {
        var text = try #require(BundledImages.image(at: "demo/iso-generic.yaml")).text
        text += "\nfaults:\n  - { at: 2, fault: sw, sw: \"6A82\" }\n  - { at: 4, fault: remove-before }\n"
        let image = try CardImageLoader.load(text: text, source: "scheduled.yaml")
        #expect(image.faults == [.init(atAPDU: 2, fault: .statusWord(StatusWord(rawValue: 0x6A82), count: 1)), .init(atAPDU: 4, fault: .removeBefore)])
        // The writer keeps the schedule.
        #expect(try CardImageLoader.load(text: CardImageWriter.yaml(image), source: "again.yaml").faults == image.faults)
        let backend = SimulatorBackend(profiles: [.monoFente])
        let slot = backend.readerNames[0]
        try backend.insert(image, into: slot)
        let connection = try await backend.connect(to: slot, share: .shared, protocols: [.t0, .t1])
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00])
        #expect(try await connection.transmit(selectMF) == [0x6A, 0x82])
        #expect(try await connection.transmit(selectMF) == [0x90, 0x00])
        await #expect(throws: CardError.cardRemoved(reader: slot)) { try await connection.transmit(selectMF) }
        // Bad schedules are named with their path.
        for (bad, fragment) in [("  - { at: 1, fault: explode }", "unknown fault \"explode\""), ("  - { at: 1, fault: slow }", "slow needs a delay"),
                                ("  - { fault: mute }", "faults[0].at"), ("  - { at: 0, fault: mute }", "faults[0].at")] {
            let broken = try #require(BundledImages.image(at: "demo/iso-generic.yaml")).text + "\nfaults:\n" + bad + "\n"
            do {
                _ = try CardImageLoader.load(text: broken, source: "bad.yaml")
                Issue.record("\(bad) accepted")
            } catch {
                #expect(error.description.contains(fragment), "\(error.description)")
            }
        }
        #expect(throws: SlotFaultError.self) { try SlotFault.named("sw") }
        #expect(throws: SlotFaultError.self) { try SlotFault.named("mute", count: 0) }
    }
}
