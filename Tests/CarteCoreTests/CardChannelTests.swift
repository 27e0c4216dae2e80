import CarteCore
import Synchronization
import Testing

/// A transport that answers from a fixed list of responses and records what it was sent.
/// (The simulator is exercised end to end in CarteSimulatorTests; this covers card behaviours the
/// generic simulator does not play, such as the CPS2ter 9Fxx class or a card that never stops.)
final class ScriptedTransport: CardTransport {
    let capabilities: TransportCapabilities
    private let state: Mutex<(responses: [[UInt8]], sent: [[UInt8]])>

    init(_ responses: [String], capabilities: TransportCapabilities = .short) throws {
        self.capabilities = capabilities
        self.state = Mutex((try responses.map { try [UInt8](hex: $0) }, []))
    }

    var sent: [[UInt8]] { state.withLock { $0.sent } }

    func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        state.withLock { s in
            s.sent.append(command)
            return s.responses.isEmpty ? [0x6F, 0x00] : s.responses.removeFirst()
        }
    }
}

@Suite("CardChannel")
struct CardChannelTests {
    @Test func getResponseOn61IsAutomaticAndMarked() async throws {
        let t = try ScriptedTransport(["61 04", "01 02 03 04 90 00"])
        let trace = Trace()
        let channel = CardChannel(transport: t, trace: trace)
        let r = try await channel.transmit(try CommandAPDU(hex: "00 A4 04 00 02 A0 00 00"))
        #expect(r == ResponseAPDU(data: [1, 2, 3, 4], statusWord: .success))
        #expect(t.sent.map { $0.hexString() } == ["00 A4 04 00 02 A0 00 00", "00 C0 00 00 04"])
        #expect(trace.events.map(\.marker) == [nil, nil, .getResponse, .getResponse])
        #expect(trace.events.map(\.direction) == [.toCard, .fromCard, .toCard, .fromCard])
    }

    @Test func chainedGetResponsesConcatenate() async throws {
        let t = try ScriptedTransport(["AA 61 02", "BB CC 61 00", "DD 90 00"])
        let r = try await CardChannel(transport: t).transmit(try CommandAPDU(hex: "01 CA 00 00 00"))
        #expect(r.data == [0xAA, 0xBB, 0xCC, 0xDD])
        // GET RESPONSE keeps the logical channel of the command (CLA 01).
        #expect(t.sent.dropFirst().map { $0.hexString() } == ["01 C0 00 00 02", "01 C0 00 00 00"])
    }

    @Test func resendWithExactLeOn6C() async throws {
        let t = try ScriptedTransport(["6C 03", "01 02 03 90 00"])
        let trace = Trace()
        let r = try await CardChannel(transport: t, trace: trace).transmit(try CommandAPDU(hex: "00 B0 82 00 00"))
        #expect(r.data == [1, 2, 3])
        #expect(t.sent.last == [0x00, 0xB0, 0x82, 0x00, 0x03])
        #expect(trace.events[2].marker == .resendWithCorrectLe)
    }

    @Test func cps2terClassA0Uses9F() async throws {
        let t = try ScriptedTransport(["9F 05", "85 03 00 10 02 90 00"])
        let r = try await CardChannel(transport: t).transmit(try CommandAPDU(hex: "A0 A4 00 00 02 3F 00"))
        #expect(r.data == [0x85, 0x03, 0x00, 0x10, 0x02])
        #expect(t.sent.last == [0xA0, 0xC0, 0x00, 0x00, 0x05])
        // 9Fxx after another class is not a "bytes available" word: left alone.
        let other = try ScriptedTransport(["9F 05"])
        let r2 = try await CardChannel(transport: other).transmit(try CommandAPDU(hex: "00 A4 00 00 02 3F 00"))
        #expect(r2.statusWord == StatusWord(rawValue: 0x9F05))
        #expect(other.sent.count == 1)
    }

    @Test func perCommandOptOut() async throws {
        let t = try ScriptedTransport(["61 04"])
        let channel = CardChannel(transport: t)
        let r = try await channel.transmit(try CommandAPDU(hex: "00 A4 04 00 02 A0 00 00"), policy: .raw)
        #expect(r.statusWord == .bytesAvailable(4))
        #expect(t.sent.count == 1)
        var noResend = TransmitPolicy.default
        noResend.resendOnWrongLe = false
        let t2 = try ScriptedTransport(["6C 10"])
        #expect(try await CardChannel(transport: t2, policy: noResend).transmit(try CommandAPDU(hex: "00 B0 00 00 00")).statusWord == .wrongLe(exact: 16))
    }

    @Test func endlessCardIsStopped() async throws {
        let t = try ScriptedTransport([String](repeating: "61 01", count: 100))
        var policy = TransmitPolicy.default
        policy.maxAutomaticExchanges = 10
        await #expect(throws: CardError.tooManyAutomaticExchanges(limit: 10)) {
            try await CardChannel(transport: t, policy: policy).transmit(try CommandAPDU(hex: "00 CA 00 00 00"))
        }
        #expect(t.sent.count == 11)
    }

    @Test func chainingWhenExtendedIsUnavailable() async throws {
        let data = [UInt8](repeating: 0x5A, count: 600)
        let t = try ScriptedTransport(["90 00", "90 00", "61 02", "AB CD 90 00"], capabilities: .short)
        let trace = Trace()
        let command = try CommandAPDU(cla: 0x00, ins: 0x2A, p1: 0x80, p2: 0x86, data: data, le: 256)
        let r = try await CardChannel(transport: t, trace: trace).transmit(command)
        #expect(r.data == [0xAB, 0xCD])
        let sent = t.sent
        #expect(sent.count == 4)
        #expect(sent[0][0] == 0x10 && sent[0][4] == 255 && sent[0].count == 5 + 255)
        #expect(sent[1][0] == 0x10 && sent[1][4] == 255)
        #expect(sent[2][0] == 0x00 && sent[2][4] == 90 && sent[2].count == 5 + 90 + 1)
        #expect(trace.events.filter { $0.direction == .toCard }.map(\.marker) == [.chainedSegment, .chainedSegment, .chainedSegment, .getResponse])
    }

    @Test func chainingStopsAtTheFirstError() async throws {
        let t = try ScriptedTransport(["6A 80"], capabilities: .short)
        let command = try CommandAPDU(cla: 0, ins: 0xDA, p1: 0, p2: 0, data: [UInt8](repeating: 1, count: 300))
        let r = try await CardChannel(transport: t).transmit(command)
        #expect(r.statusWord == .incorrectData)
        #expect(t.sent.count == 1)
    }

    @Test func extendedLengthIsUsedWhenSupported() async throws {
        let t = try ScriptedTransport(["90 00"], capabilities: .extended)
        let command = try CommandAPDU(cla: 0, ins: 0xDA, p1: 0, p2: 0, data: [UInt8](repeating: 1, count: 300))
        _ = try await CardChannel(transport: t).transmit(command)
        #expect(t.sent == [command.encoded()])
        var noExtended = TransmitPolicy.default
        noExtended.extendedLength = false
        noExtended.commandChaining = false
        let t2 = try ScriptedTransport(["90 00"], capabilities: .extended)
        await #expect(throws: CardError.self) { try await CardChannel(transport: t2, policy: noExtended).transmit(command) }
        #expect(t2.sent.isEmpty)
    }

    @Test func bigLeOnShortReaderFallsBackToGetResponse() async throws {
        let t = try ScriptedTransport(["61 10", "90 00"], capabilities: .short)
        _ = try await CardChannel(transport: t).transmit(try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 1000))
        #expect(t.sent.first == [0x00, 0xB0, 0x00, 0x00, 0x00])
    }

    @Test func malformedResponseIsTyped() async throws {
        let t = try ScriptedTransport(["90"])
        await #expect(throws: CardError.malformedResponse(.tooShort(count: 1))) {
            try await CardChannel(transport: t).transmit(try CommandAPDU(hex: "00 A4 00 00"))
        }
        await #expect(throws: CardError.invalidCommand(.truncated(field: "P2", offset: 3, needed: 1, available: 0))) {
            try await CardChannel(transport: t).transmit(bytes: [0, 0xA4, 0])
        }
    }

    @Test func concurrentCommandsDoNotInterleave() async throws {
        // Each command needs a GET RESPONSE; with 20 concurrent tasks every command must be
        // immediately followed by its own GET RESPONSE.
        var responses: [String] = []
        for _ in 0..<20 { responses += ["61 01", "AA 90 00"] }
        let t = try ScriptedTransport(responses)
        let channel = CardChannel(transport: t)
        try await withThrowingTaskGroup(of: ResponseAPDU.self) { group in
            for i in 0..<20 {
                group.addTask { try await channel.transmit(try CommandAPDU(cla: 0, ins: 0xCA, p1: 0, p2: UInt8(i), le: 256)) }
            }
            for try await r in group { #expect(r.data == [0xAA]) }
        }
        let sent = t.sent
        for i in stride(from: 0, to: sent.count, by: 2) {
            #expect(sent[i][1] == 0xCA)
            #expect(sent[i + 1][1] == 0xC0)
        }
    }

    @Test func exclusiveAccessKeepsASequenceTogether() async throws {
        let t = try ScriptedTransport([String](repeating: "90 00", count: 20))
        let channel = CardChannel(transport: t)
        final class Box: Sendable { let view = Mutex<CardChannel.ExclusiveChannel?>(nil) }
        let escaped = Box()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                _ = try await channel.withExclusiveAccess { held throws(CardError) in
                    escaped.view.withLock { $0 = held }
                    for _ in 0..<5 {
                        _ = try await held.transmit(try! CommandAPDU.select(fid: 0x2F00))
                        await Task.yield()
                    }
                    return 0
                }
            }
            group.addTask {
                for _ in 0..<5 { _ = try await channel.transmit(try! CommandAPDU(hex: "00 CA 00 00 00")) }
            }
            try await group.waitForAll()
        }
        // The five SELECTs of the exclusive sequence are contiguous.
        let kinds = t.sent.map { $0[1] }
        let firstSelect = try #require(kinds.firstIndex(of: 0xA4))
        #expect(kinds[firstSelect..<(firstSelect + 5)].allSatisfy { $0 == 0xA4 })
        // The view stops working once the sequence is over.
        let view = try #require(escaped.view.withLock { $0 })
        await #expect(throws: CardError.notConnected) { try await view.transmit(try CommandAPDU(hex: "00 A4 00 00")) }
    }

    @Test func shortReaderKeepsTheCommandsCase() async throws {
        // A case 3E command whose data fits a short APDU goes out as case 3S (no Le appears).
        let t = try ScriptedTransport(["90 00", "90 00"], capabilities: .short)
        _ = try await CardChannel(transport: t).transmit(try CommandAPDU(cla: 0, ins: 0xD6, p1: 0, p2: 0, data: [1, 2], extended: true))
        #expect(t.sent[0] == [0x00, 0xD6, 0x00, 0x00, 0x02, 0x01, 0x02])
        // Without automatic GET RESPONSE a large Ne cannot be honoured on a short reader: say so.
        await #expect(throws: CardError.self) {
            try await CardChannel(transport: t, policy: .raw).transmit(try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 1000))
        }
        #expect(t.sent.count == 1)
    }

    @Test func chainingIsRefusedForProprietaryClasses() async throws {
        let t = try ScriptedTransport(["90 00"], capabilities: .short)
        let command = try CommandAPDU(cla: 0xA0, ins: 0xD6, p1: 0, p2: 0, data: [UInt8](repeating: 0, count: 300))
        await #expect(throws: CardError.self) { try await CardChannel(transport: t).transmit(command) }
        #expect(t.sent.isEmpty)
    }

    @Test func longChainsAreNotLimitedByTheAutomaticBudget() async throws {
        let t = try ScriptedTransport([String](repeating: "90 00", count: 300), capabilities: .short)
        var policy = TransmitPolicy.default
        policy.maxAutomaticExchanges = 2
        let command = try CommandAPDU(cla: 0, ins: 0xD6, p1: 0, p2: 0, data: [UInt8](repeating: 0, count: 255 * 10 + 1))
        #expect(try await CardChannel(transport: t, policy: policy).transmit(command).isSuccess)
        #expect(t.sent.count == 11)
    }

    @Test func getResponseClass() {
        #expect(CardChannel.getResponseClass(for: 0x00) == 0x00)
        #expect(CardChannel.getResponseClass(for: 0x0C) == 0x00)
        #expect(CardChannel.getResponseClass(for: 0x13) == 0x03)
        #expect(CardChannel.getResponseClass(for: 0xA0) == 0xA0)
        #expect(CardChannel.getResponseClass(for: 0x80) == 0x00)
        #expect(CardChannel.getResponseClass(for: 0x45) == 0x45)
    }
}
