import CarteCore
import CarteKit
@testable import CartePCSC
import CartePCSCTesting
import Foundation
import Synchronization
import Testing

/// #39: one script played against a PC/SC resource manager that behaves as pcsc-lite's, Windows's and
/// macOS's do (``ScriptedPCSCProvider``); ReaderManager's events, sessions, reconnections and errors
/// must come out the same on the three.
@Suite("PC/SC platform behaviours (scripted Windows, macOS and Linux)", .serialized)
struct PlatformBehaviourTests {
    static let reader = "Scripted Reader 00 00"
    /// A card CarteKit does not know (the session is `.other`): SELECT of a file answers 90 00, a
    /// SELECT by AID 6A 82, `80 CA` a response longer than any PC/SC buffer, anything else 6D 00.
    static func card(_ atr: [UInt8]) -> ScriptedPCSCProvider.Card {
        .init(atr: atr) { command in
            if command.starts(with: [0x00, 0xA4, 0x04]) { return [0x6A, 0x82] }
            if command.starts(with: [0x00, 0xA4]) { return [0x90, 0x00] }
            if command.starts(with: [0x80, 0xCA]) { return [UInt8](repeating: 0x5A, count: 70_000) + [0x90, 0x00] }
            return [0x6D, 0x00]
        }
    }
    static let cardA = card([0x3B, 0x02, 0x14, 0x50])
    static let cardB = card([0x3B, 0x02, 0x14, 0x51])

    /// The events a manager reports, collected by a task of their own.
    final class Events: Sendable {
        final class Seen: Sendable {
            let list = Mutex<[String]>([])
            func append(_ line: String) { list.withLock { $0.append(line) } }
            var count: Int { list.withLock { $0.count } }
            var all: [String] { list.withLock { $0 } }
        }
        let seen = Seen()
        let task: Task<Void, Never>

        init(_ manager: ReaderManager) {
            let stream = manager.events()
            let seen = self.seen
            task = Task {
                for await e in stream { seen.append("\(e.kind.rawValue) \(e.reader)" + (e.atr.map { " " + $0.hexString() } ?? "")) }
            }
        }

        /// Waits (at most 60 s: a loaded machine may starve the cooperative pool that pumps the events)
        /// until `count` events were seen.
        func wait(for count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while seen.count < count {
                guard ContinuousClock.now < deadline else {
                    Issue.record("waited for \(count) events, saw \(seen.all)")
                    throw CancellationError()
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        var all: [String] { seen.all }
    }

    /// What a session's exchange gave: the status word or the error.
    static func exchange(_ session: CardSession, _ command: [UInt8]) async -> String {
        guard case .other(let s) = session else { return "not an other-card session: \(session.kind)" }
        do {
            let r = try await s.channel.transmit(try CommandAPDU(bytes: command), policy: .raw)
            return "sw \(r.statusWord)"
        } catch {
            return "error \(error)"
        }
    }

    struct Transcript {
        var lines: [String] = []
        var events: [String] = []
    }

    /// Plays the script on `platform`; returns what an editor's code saw.
    static func play(_ platform: PCSCPlatform, scripted: ScriptedPCSCProvider) async throws -> Transcript {
        let manager = ReaderManager(backend: PCSCBackend(provider: scripted))
        var t = Transcript()
        let events = Events(manager)
        defer { events.task.cancel() }
        // The monitor's first round (Windows: no service yet, so no context).
        let started = ContinuousClock.now
        while scripted.record.listCalls == 0 && scripted.record.refusedContexts == 0 && ContinuousClock.now - started < .seconds(60) {
            try await Task.sleep(for: .milliseconds(5))
        }
        t.lines.append("slots with no reader: \(try await manager.slots().count)")

        scripted.plugReader(reader)
        try await events.wait(for: 1)
        scripted.insert(cardA, into: reader)
        try await events.wait(for: 2)
        t.lines.append("slots: \(try await manager.slots().map { "\($0.info.name) \($0.card.map { "\($0)" } ?? "-")" })")

        // A session; the card swapped under it.
        let swapped: [String] = try await manager.withSession(on: reader) { session in
            let before = currentThread()
            let worker = ((session.otherChannel?.transport as? PCSCConnection)?.context.worker)
            let handedOver = worker?.handedOver.load(ordering: .relaxed)
            var lines = [await exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])]
            // No thread switch for the APDU: the library was called on the thread the session runs on,
            // and nothing was handed to the connection's thread.
            lines.append("APDU sent from the session's thread: \(scripted.record.transmitThreads == [before] && currentThread() == before)")
            lines.append("calls handed to the connection's thread: \(handedOver.map { worker!.handedOver.load(ordering: .relaxed) - $0 }.map(String.init) ?? "no PC/SC connection")")
            scripted.remove(from: reader)
            do { try await events.wait(for: 3) } catch { lines.append("no removal event") }
            scripted.insert(cardB, into: reader)
            do { try await events.wait(for: 4) } catch { lines.append("no insertion event") }
            lines.append(await exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]))
            lines.append(await exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]))
            return lines
        }
        t.lines += swapped

        // A response longer than the PC/SC buffer.
        t.lines.append(try await manager.withSession(on: reader) { session in await exchange(session, [0x80, 0xCA, 0x00, 0x00, 0x00]) })

        // The card and the reader leave (Windows stops its service), and come back.
        scripted.remove(from: reader)
        try await events.wait(for: 5)
        scripted.unplugReader(reader)
        try await events.wait(for: 6)
        try await Task.sleep(for: .milliseconds(200))
        t.lines.append("slots after the last reader left: \(try await manager.slots().count)")
        scripted.plugReader(reader)
        try await events.wait(for: 7)
        scripted.insert(cardA, into: reader)
        try await events.wait(for: 8)
        t.lines.append(try await manager.withSession(on: reader) { session in await exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]) })
        try await Task.sleep(for: .milliseconds(150))  // nothing more may come
        t.events = events.all
        return t
    }

    @Test func theThreePlatformsLookTheSameToAnEditor() async throws {
        var transcripts: [PCSCPlatform: Transcript] = [:]
        var providers: [PCSCPlatform: ScriptedPCSCProvider] = [:]
        for platform in PCSCPlatform.allCases {
            let scripted = ScriptedPCSCProvider(platform: platform, waitMilliseconds: 50)
            providers[platform] = scripted
            transcripts[platform] = try await Self.play(platform, scripted: scripted)
        }
        let linux = try #require(transcripts[.linux])
        let a = "3B 02 14 50"
        let b = "3B 02 14 51"
        #expect(linux.events == [
            "reader-added \(Self.reader)", "card-inserted \(Self.reader) \(a)", "card-removed \(Self.reader)", "card-inserted \(Self.reader) \(b)",
            "card-removed \(Self.reader)", "reader-removed \(Self.reader)", "reader-added \(Self.reader)", "card-inserted \(Self.reader) \(a)",
        ])
        #expect(linux.lines == [
            "slots with no reader: 0",
            "slots: [\"\(Self.reader) unknown card (ATR 3B 02 14 50)\"]",
            "sw 90 00", "APDU sent from the session's thread: true", "calls handed to the connection's thread: 0",
            "error card removed from reader \"\(Self.reader)\"", "error card removed from reader \"\(Self.reader)\"",
            "error SCARD_E_INSUFFICIENT_BUFFER (0x80100008): The data buffer to receive returned data is too small for the returned data",
            "slots after the last reader left: 0",
            "sw 90 00",
        ], "\(linux.lines)")
        for platform in [PCSCPlatform.windows, .macOS] {
            #expect(transcripts[platform]?.events == linux.events, "\(platform) events")
            #expect(transcripts[platform]?.lines == linux.lines, "\(platform) lines")
        }

        // Each platform's own behaviour was exercised, not avoided.
        let l = providers[.linux]!.record, w = providers[.windows]!.record, m = providers[.macOS]!.record
        #expect(l.pnpCalls > 0 && w.pnpCalls > 0)
        #expect(m.pnpCalls == 0, "macOS has no notification reader: polling")
        #expect(w.refusedContexts > 0 && w.stoppedContextCalls > 0, "Windows stopped its service and CarteKit re-established its contexts")
        #expect(l.refusedContexts == 0 && l.stoppedContextCalls == 0)
        #expect(m.resetAnswers > 0, "macOS said reset for the swap")
        #expect(m.truncatedResponses == 1, "macOS cut the long response and CarteKit noticed")
        // Windows's notification wants the reader count: a monitor without it would spin, every call
        // returning at once (a mismatch each); a count can only be stale when a reader came or went
        // between the listing and the wait.
        #expect(w.statusCalls > 0 && w.pnpCountMismatches <= 3, "\(w.pnpCountMismatches) of \(w.statusCalls) calls without the reader count")
    }

    /// The scripted Windows really returns at once without the reader count, so the test above would
    /// catch a monitor that forgot it.
    @Test func windowsNotificationWithoutTheReaderCountReturnsAtOnce() throws {
        let scripted = ScriptedPCSCProvider(platform: .windows)
        scripted.plugReader(Self.reader)
        let context = try scripted.establishContext().get()
        var states = [PCSCReaderState(reader: PCSCBackend.pnpNotification, currentState: 0)]
        let clock = ContinuousClock()
        var start = clock.now
        #expect(scripted.getStatusChange(context, timeoutMilliseconds: 2_000, &states) == nil)
        #expect(clock.now - start < .seconds(1) && states[0].eventState & SCard.stateChanged != 0)
        states = [PCSCReaderState(reader: PCSCBackend.pnpNotification, currentState: 1 << 16)]
        start = clock.now
        #expect(scripted.getStatusChange(context, timeoutMilliseconds: 300, &states) == .timeout)
        #expect(clock.now - start >= .milliseconds(250))
    }

    /// Where the platforms must differ: a reset by another program keeps a pcsc-lite or Windows session
    /// (reconnected, "card reset" once, then it works), but ends a macOS one, where "reset" may mean
    /// another card.
    @Test(arguments: PCSCPlatform.allCases)
    func aResetByAnotherProgram(_ platform: PCSCPlatform) async throws {
        let scripted = ScriptedPCSCProvider(platform: platform, waitMilliseconds: 50)
        scripted.plugReader(Self.reader)
        scripted.insert(Self.cardA, into: Self.reader)
        let manager = ReaderManager(backend: PCSCBackend(provider: scripted))
        let lines: [String] = try await manager.withSession(on: Self.reader) { session in
            var lines = [await Self.exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])]
            scripted.resetByAnotherProgram(Self.reader)
            lines.append(await Self.exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]))
            lines.append(await Self.exchange(session, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]))
            return lines
        }
        if platform == .macOS {
            #expect(lines == ["sw 90 00", "error card removed from reader \"\(Self.reader)\"", "error card removed from reader \"\(Self.reader)\""])
        } else {
            #expect(lines == ["sw 90 00", "error card in reader \"\(Self.reader)\" was reset; reconnect", "sw 90 00"])
        }
    }
}

/// The thread running the caller.
func currentThread() -> UInt { ScriptedPCSCProvider.currentThread }

extension CardSession {
    /// The raw channel of a session on a card CarteKit does not read.
    var otherChannel: CardChannel? {
        if case .other(let s) = self { return s.channel }
        return nil
    }
}
