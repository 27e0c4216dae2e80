import CarteCore
import InMemoryLogging
import Logging
import Testing

@Suite("Trace and PIN redaction")
struct TraceTests {
    static let pin: [UInt8] = Array("1234".utf8) + [0xFF, 0xFF, 0xFF, 0xFF]
    static let pinHex = "31 32 33 34"

    @Test func pinBearingCommandsAreRedactedInTraceAndLogs() async throws {
        let transport = try ScriptedTransport(["63 C2", "90 00", "90 00", "90 00"])
        let trace = Trace()
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "test", factory: { _ in handler })
        logger.logLevel = .trace
        let channel = CardChannel(transport: transport, trace: trace, logger: logger)
        let puk = Array("12345678".utf8)
        _ = try await channel.transmit(try CommandAPDU(cla: 0, ins: 0x20, p1: 0, p2: 0x81, data: TraceTests.pin))
        _ = try await channel.transmit(try CommandAPDU(cla: 0, ins: 0x24, p1: 0, p2: 0x81, data: TraceTests.pin + TraceTests.pin))
        _ = try await channel.transmit(try CommandAPDU(cla: 0, ins: 0x2C, p1: 0, p2: 0x81, data: puk + TraceTests.pin))
        _ = try await channel.transmit(try CommandAPDU(cla: 0xA0, ins: 0x20, p1: 0, p2: 0x00, data: TraceTests.pin))

        let everything = trace.formatted() + "\n" + handler.entries.map { "\($0.message)" }.joined(separator: "\n")
        #expect(!everything.contains(TraceTests.pinHex))
        #expect(!everything.contains("31 32 33 34 35 36 37 38"))
        #expect(!everything.contains("1234"))
        #expect(everything.contains("00 20 00 81 08 <redacted 8 bytes>"))
        #expect(everything.contains("00 24 00 81 10 <redacted 16 bytes>"))
        #expect(everything.contains("00 2C 00 81 10 <redacted 16 bytes>"))
        #expect(everything.contains("A0 20 00 00 08 <redacted 8 bytes>"))
        for event in trace.events where event.direction == .toCard {
            #expect(event.redactedLength != nil)
            #expect(!event.bytes.contains(0x31))
        }
        // The card's own answer is kept.
        #expect(trace.events[1].bytes == [0x63, 0xC2])
        // The logs carry the same redacted lines, one per direction, at trace level.
        #expect(handler.entries.count == 8)
        #expect(handler.entries.allSatisfy { $0.level == .trace })
    }

    @Test func rawBytesWithASecretInstructionAreReducedToTheHeader() {
        let trace = Trace()
        trace.recordCommand(bytes: [0x00, 0x20, 0x00, 0x81, 0x09] + TraceTests.pin)  // Lc disagrees: not an APDU
        #expect(trace.events[0].bytes == [0x00, 0x20, 0x00, 0x81])
        #expect(trace.events[0].redactedLength == 9)
        #expect(!trace.formatted().contains(TraceTests.pinHex))
    }

    @Test func orderTimestampsAndCapacity() {
        let trace = Trace(capacity: 3)
        for i in 0..<5 { trace.recordResponse([UInt8(i), 0x90, 0x00]) }
        let events = trace.events
        #expect(events.map(\.sequence) == [2, 3, 4])
        #expect(events.map { $0.bytes[0] } == [2, 3, 4])
        #expect(trace.droppedCount == 2)
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.time <= $1.time })
        trace.removeAll()
        #expect(trace.events.isEmpty)
        trace.recordResponse([0x90, 0x00])
        #expect(trace.events.first?.sequence == 5)
    }

    @Test func formattedLines() throws {
        let trace = Trace()
        trace.recordCommand(try CommandAPDU(hex: "00 C0 00 00 04"), marker: .getResponse)
        trace.recordResponse([0x90, 0x00])
        let lines = trace.formatted().split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasSuffix("> 00 C0 00 00 04  [auto:get-response]"))
        #expect(lines[1].hasSuffix("< 90 00"))
        #expect(lines[0].hasPrefix("[0."))
    }
}

extension TraceTests {
    /// #39: `events(from:)` copies only the events asked for, and `commandCount(from:)` counts without
    /// copying; both right when the trace is full and its oldest events were dropped.
    @Test(arguments: [4, 7, 64])
    func eventsFromASequenceAndTheirCommands(capacity: Int) throws {
        let trace = Trace(capacity: capacity)
        let select = try CommandAPDU(bytes: [0x00, 0xA4, 0x00, 0x0C])
        for round in 0..<10 {
            let before = trace.nextSequence
            trace.recordCommand(select)
            trace.recordResponse([0x90, 0x00])
            trace.recordCommand(select)
            trace.recordResponse([0x6A, UInt8(round)])
            let recent = trace.events(from: before)
            let kept = min(4, capacity)
            #expect(recent.map(\.sequence) == Array((before + 4 - kept)..<(before + 4)))
            #expect(trace.commandCount(from: before) == recent.filter { $0.direction == .toCard }.count)
            #expect(recent.last?.bytes == [0x6A, UInt8(round)])
            // Everything kept, and nothing from beyond the end.
            #expect(trace.events(from: 0).map(\.sequence) == trace.events.map(\.sequence))
            #expect(trace.events(from: trace.nextSequence).isEmpty && trace.commandCount(from: trace.nextSequence + 5) == 0)
            #expect(trace.commandCount(from: 0) == trace.events.filter { $0.direction == .toCard }.count)
        }
    }
}

@Suite("APDU scripts")
struct APDUScriptTests {
    @Test func scriptorFormat() throws {
        let script = try APDUScript(parsing: """
            # select
            00 A4 04 00 02 3F 00   # trailing comment

            reset
            00B0000000\r
            exit
            00 00 00 00
            """)
        #expect(script.steps.count == 3)
        guard case .command(let c, let line) = script.steps[0] else { Issue.record("expected a command"); return }
        #expect(c.encoded() == [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00])
        #expect(line == 2)
        #expect(script.steps[1] == .reset(line: 4))
    }

    @Test func errorsNameLineAndColumn() {
        #expect(throws: APDUScriptError(line: 2, column: 6, message: HexError.invalidCharacter("Z", offset: 3).description)) {
            try APDUScript(parsing: "00 A4 00 00\n  00 Z4")
        }
        #expect(throws: APDUScriptError(line: 1, column: nil, message: APDUError.trailingBytes(offset: 8, count: 1).description)) {
            try APDUScript(parsing: "00 A4 04 00 02 3F 00 00 00")
        }
    }
}

@Suite("AsyncLock")
struct AsyncLockTests {
    @Test func mutualExclusionUnderContention() async {
        let lock = AsyncLock()
        let counter = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    await lock.withLock {
                        let inside = counter.enter()
                        #expect(inside == 1)
                        await Task.yield()
                        counter.leave()
                    }
                }
            }
        }
        #expect(counter.maximum == 1)
    }

    final class Counter: @unchecked Sendable {
        private var current = 0
        private(set) var maximum = 0
        private let lock = Mutex(())
        func enter() -> Int { lock.withLock { _ in current += 1; maximum = max(maximum, current); return current } }
        func leave() { lock.withLock { _ in current -= 1 } }
    }
}

import Synchronization
