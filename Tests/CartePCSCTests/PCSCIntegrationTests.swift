import CarteBundledImages
import CarteCore
import CartePCSC

import CarteVitale
import Foundation
import PCSCTestSupport
import Testing
/// Everything here runs against a real pcscd loading libifdcarte.so (see ``PCSCSandbox``).
@Suite("PC/SC through a private pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .sharedSandbox, .timeLimit(.minutes(2)))
struct PCSCIntegrationTests {
    @Test func readersSlotsAndAttributesComeFromTheProfiles() async throws {
        let s = try sandbox()
        _ = s
        let backend = PCSCBackend()
        let readers = try await backend.readers()
        #expect(readers.map(\.name) == [biFente0, biFente1, monoFente, contactless])
        #expect(readers[3].isContactless && !readers[0].isContactless)
        #expect(readers[0].physicalReader == readers[1].physicalReader)
        #expect(readers[0].slotCount == 2 && readers[1].slot == 1 && readers[2].slotCount == 1)
        #expect(readers.allSatisfy { $0.vendor == "CarteKit (synthetic)" && $0.firmwareVersion == "1.00" })
        #expect(readers[0].serialNumber == "CKV-B-0001")
        #expect(readers[0].features.contains("tlv-properties") && readers[0].features.contains("extended-apdu"))
        let attributes = try #require(await backend.attributes(of: biFente0))
        #expect(attributes.ifdVersion == 0x0100_0000)
        #expect(attributes.maxAPDUDataSize == 0x10000)
        #expect(try await backend.state(of: monoFente) == .present(atr: try [UInt8](hex: "3B 8A 81 31 FE 45 80 31 C1 73 C8 40 00 82 90 00 18")))
        #expect(try await backend.state(of: biFente1) == .empty)
    }

    @Test func transmitWithAutomaticGetResponseOnAT0Card() async throws {
        let s = try sandbox()
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 0]) }
        let backend = PCSCBackend()
        try await waitUntil("the Vitale in slot 0") { if case .present = try await backend.state(of: biFente0) { return true } else { return false } }
        let connection = try await backend.open(biFente0, share: .exclusive)
        #expect(connection.activeProtocol == .t0)
        let trace = Trace()
        let channel = CardChannel(transport: connection, trace: trace)
        let fci = try await channel.transmit(try .select(aid: vitaleAID))
        #expect(fci.isSuccess && fci.data.first == 0x6F)
        let nirs = try await channel.transmit(try .readBinary(sfi: 2))
        #expect(nirs.isSuccess && nirs.data.count == 0x80)
        #expect(trace.events.compactMap(\.marker) == [.getResponse, .getResponse, .resendWithCorrectLe, .resendWithCorrectLe])
        // pcscd itself does no GET RESPONSE: the raw answer is the card's 61xx.
        #expect(try await channel.transmit(try .select(aid: vitaleAID), policy: .raw).statusWord.sw1 == 0x61)
        try await connection.disconnect(.reset)
    }

    @Test func transactionsEndAndSharingIsEnforced() async throws {
        let s = try sandbox()
        _ = s
        let backend = PCSCBackend()
        let a = try await backend.open(monoFente, share: .shared)
        let b = try await backend.open(monoFente, share: .shared)
        let answer = try await a.withTransaction { () throws(CardError) -> [UInt8] in
            _ = try await a.transmit([0x00, 0xA4, 0x02, 0x0C, 0x02, 0x01, 0x01])
            return try await a.transmit([0x00, 0xB0, 0x00, 0x00, 0x04])
        }
        #expect(answer == [0x00, 0x01, 0x02, 0x03, 0x90, 0x00])
        // The transaction ended: the other connection can run its own at once.
        let other = try await b.withTransaction { () throws(CardError) -> [UInt8] in try await b.transmit([0x00, 0xA4, 0x00, 0x0C]) }
        #expect(other == [0x90, 0x00])
        // An error inside the body still ends the transaction.
        await #expect(throws: CardError.cancelled) {
            try await a.withTransaction { () throws(CardError) -> Int in throw CardError.cancelled }
        }
        #expect(try await b.withTransaction { () throws(CardError) -> [UInt8] in try await b.transmit([0x00, 0xA4, 0x00, 0x0C]) } == [0x90, 0x00])
        try await a.disconnect(.leave)
        try await b.disconnect(.leave)
        // Exclusive access keeps others out, with the typed error.
        let exclusive = try await backend.open(monoFente, share: .exclusive)
        await #expect(throws: CardError.sharingViolation(reader: monoFente)) { try await backend.open(monoFente, share: .shared) }
        try await exclusive.disconnect(.leave)
    }

    @Test func controlAndFeatureList() async throws {
        _ = try sandbox()
        let backend = PCSCBackend()
        let direct = try await backend.open(biFente1, share: .direct)
        let features = PCSCFeature.decodeFeatureList(try await direct.control(code: PCSCFeature.getFeatureRequest))
        #expect(features[PCSCFeature.getTLVProperties] == 0x4233_0012)
        let properties = PCSCFeature.decodeTLVProperties(try await direct.control(code: 0x4233_0012))
        #expect(properties[0x0A] == [0x00, 0x00, 0x01, 0x00])
        await #expect(throws: CardError.self) { try await direct.control(code: 0x4200_0001) }
        #expect(Array(try await direct.attribute(PCSCAttribute.vendorName).prefix(8)) == Array("CarteKit".utf8))
        try await direct.disconnect(.leave)
    }

    @Test func insertRemoveAndMuteEvents() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        let events = EventCollector(backend.events())
        try await Task.sleep(for: .milliseconds(300))  // the monitor takes its first snapshot
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/iso-generic.yaml"])
        let inserted = await events.next { if case .cardInserted(biFente1, _) = $0 { return true } else { return false } }
        #expect(inserted == .cardInserted(reader: biFente1, atr: try [UInt8](hex: "3B 8A 81 31 FE 45 80 31 C1 73 C8 40 00 82 90 00 18")))
        try s.control(["op": "remove", "reader": 0, "slot": 1])
        #expect(await events.next { $0 == .cardRemoved(reader: biFente1) } != nil)
        // A card swapped faster than pcscd's 400 ms poll is still seen as a removal and an insertion.
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/iso-generic.yaml"])
        #expect(await events.next { if case .cardInserted(biFente1, _) = $0 { return true } else { return false } } != nil)
        // Two swaps 100 ms apart end with the same kind of card: only the insertion counter shows pcscd
        // that the card changed.
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/vitale2-demo.yaml"])
        try await Task.sleep(for: .milliseconds(100))
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/iso-generic.yaml"])
        #expect(await events.next { $0 == .cardRemoved(reader: biFente1) } != nil)
        #expect(await events.next { if case .cardInserted(biFente1, _) = $0 { return true } else { return false } } != nil)
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/iso-generic.yaml", "mute": true])
        #expect(await events.next { $0 == .cardMute(reader: biFente1) } != nil)
        #expect(try await backend.state(of: biFente1) == .mute)
        await #expect(throws: CardError.self) { try await backend.open(biFente1) }
        try s.control(["op": "remove", "reader": 0, "slot": 1])
    }

    @Test func aResetByAnotherProgramIsReportedThenRecovered() async throws {
        _ = try sandbox()
        let backend = PCSCBackend()
        let victim = try await backend.open(monoFente, share: .shared)
        let other = try await backend.open(monoFente, share: .shared)
        #expect(try await victim.transmit([0x00, 0x20, 0x00, 0x81, 0x08, 0x31, 0x32, 0x33, 0x34, 0xFF, 0xFF, 0xFF, 0xFF]) == [0x90, 0x00])
        try await other.reconnect(share: .shared, initialization: .reset)
        await #expect(throws: CardError.cardReset(reader: monoFente)) { try await victim.transmit([0x00, 0x20, 0x00, 0x81]) }
        // The connection reconnected by itself; the card lost the verified PIN.
        #expect(try await victim.transmit([0x00, 0x20, 0x00, 0x81]) == [0x63, 0xC3])
        // A reset that happened while we were idle is absorbed when the next transaction begins.
        // (pcsc-lite blocks other programs during a transaction, so a reset cannot land inside one
        // from another program; the redo path is exercised by the simulator's warm-reset fault.)
        try await other.reconnect(share: .shared, initialization: .reset)
        let runs = Counter()
        let result = try await victim.withTransaction { () throws(CardError) -> [UInt8] in
            _ = runs.increment()
            return try await victim.transmit([0x00, 0xA4, 0x00, 0x0C])
        }
        #expect(result == [0x90, 0x00])
        #expect(runs.value == 1)
        try await victim.disconnect(.leave)
        try await other.disconnect(.leave)
    }

    @Test func aKilledDaemonLeavesPCSCDHealthyAndCardsAbsent() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        #expect(try await backend.state(of: monoFente) != .empty)
        s.killDaemon()
        try await waitUntil("the mono-fente card to be reported absent") { try await backend.state(of: monoFente) == .empty }
        // pcscd still answers, with every reader.
        #expect(try await backend.readerNames() == [biFente0, biFente1, monoFente, contactless])
        try s.startDaemon()
        try await waitUntil("the card to come back") { if case .present = try await backend.state(of: monoFente) { return true } else { return false } }
        let connection = try await backend.open(monoFente)
        #expect(try await connection.transmit([0x00, 0xA4, 0x00, 0x0C]) == [0x90, 0x00])
        try await connection.disconnect(.leave)
    }

    @Test func pcscdRestartIsRecoveredWithoutANewBackend() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        let events = EventCollector(backend.events())
        #expect(try await backend.readerNames().count == 4)
        try await Task.sleep(for: .milliseconds(300))
        s.stopPCSCD()
        #expect(await events.next { $0 == .readerRemoved(name: monoFente) } != nil)
        await #expect(throws: CardError.self) { try await backend.readerNames() }
        try s.startPCSCD()
        let back = await events.next(seconds: 15, where: { if case .readerAdded(let info) = $0 { return info.name == monoFente } else { return false } })
        #expect(back != nil)
        #expect(try await backend.readerNames() == [biFente0, biFente1, monoFente, contactless])
    }
}

/// A thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var value = 0
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}
