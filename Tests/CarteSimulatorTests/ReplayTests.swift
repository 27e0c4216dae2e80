import CarteBundledImages
import CarteCore
import CarteCPS
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation
import InMemoryLogging
import Logging
import Synchronization
import Testing

/// A card read through the in-memory simulator while `RecordingTransport` records it.
struct Recorded<Card: Sendable>: Sendable {
    let card: Card
    let image: CardImage
}

/// Runs `body` on `image` inserted into a fresh in-memory reader (logging to `logger`).
func onCard<T: Sendable>(_ image: CardImage, logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                         _ body: (any CardConnection, CardChannel) async throws -> T) async throws -> T {
    let backend = SimulatorBackend(profiles: [.monoFente], logger: logger)
    let slot = backend.readerNames[0]
    try backend.insert(image, into: slot)
    let connection = try await backend.connect(to: slot, share: .exclusive, protocols: [.t0, .t1])
    let result = try await body(connection, CardChannel(transport: connection, trace: Trace()))
    try? await connection.disconnect(.leave)
    return result
}

func recordVitale(_ image: CardImage) async throws -> Recorded<VitaleCard> {
    try await onCard(image) { connection, _ in
        let recorder = RecordingTransport(connection)
        let card = try await VitaleReader(channel: CardChannel(transport: recorder, trace: Trace())).read(atr: await connection.atrBytes)
        let replay = ReplayRecorder.image(name: "recorded \(image.name)", atr: await connection.atrBytes, protocolUsed: await connection.activeProtocol,
                                          exchanges: recorder.exchanges, recording: .init(reader: "test", date: "2026-11-23T00:00:00Z", session: "vitale"))
        return Recorded(card: card, image: replay)
    }
}

func readVitale(_ image: CardImage, logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })) async throws -> VitaleCard {
    try await onCard(image, logger: logger) { connection, channel in try await VitaleReader(channel: channel).read(atr: await connection.atrBytes) }
}

/// What `carte cps info` reads: the card, holder, certificates, and the PIN's tries left.
struct CPSInfo: Hashable, Sendable {
    let card: ProfessionalCard
    let tries: Int
}

func readCPS(_ image: CardImage, through: ((any CardConnection) -> any CardTransport)? = nil) async throws -> CPSInfo {
    try await onCard(image) { connection, channel in
        let reader = try CPSReader(channel: through.map { CardChannel(transport: $0(connection), trace: Trace()) } ?? channel, atr: await connection.atrBytes)
        let card = try await reader.read()
        return CPSInfo(card: card, tries: try await reader.pinStatus().triesLeft)
    }
}

func bundledVitales() throws -> [String] {
    BundledImages.all.map(\.path).filter { $0.hasPrefix("vitale/") && $0.hasSuffix(".yaml") } + ["demo/vitale2-demo.yaml"]
}

@Suite("Record and replay (in memory)")
struct ReplayTests {
    @Test func everyBundledVitaleReplaysIdenticallyWithEveryPolicyAndFromItsFileSystem() async throws {
        let paths = try bundledVitales()
        #expect(paths.count >= 6)
        for path in paths {
            let recorded = try await recordVitale(try bundled(path))
            for policy in CardImage.Replay.Policy.allCases {
                var image = recorded.image
                image.replay?.policy = policy
                #expect(try await readVitale(image) == recorded.card, "\(path), transcript, \(policy)")
            }
            var fs = recorded.image
            fs.replay?.source = .filesystem
            #expect(try await readVitale(fs) == recorded.card, "\(path), file system")
            // Written and loaded again: the image format keeps everything.
            let reloaded = try CardImageLoader.load(text: CardImageWriter.yaml(fs), source: path)
            #expect(reloaded.replay == fs.replay && reloaded.recorded == fs.recorded, "\(path)")
            #expect(try await readVitale(reloaded) == recorded.card, "\(path), written and loaded")
        }
    }

    @Test func aRecordedCPSReplaysItsHolderCertificatesAndPINStatus() async throws {
        let original = try bundled("cps/medecin-liberal.yaml")
        let recorder = Mutex<RecordingTransport?>(nil)
        let first = try await readCPS(original) { connection in
            let r = RecordingTransport(connection)
            recorder.withLock { $0 = r }
            return r
        }
        let exchanges = try #require(recorder.withLock { $0 }).exchanges
        let image = ReplayRecorder.image(name: "recorded CPS", atr: original.atr, protocolUsed: original.cardProtocol, exchanges: exchanges,
                                         recording: .init(reader: "test", date: "2026-11-23T00:00:00Z", session: "cps"))
        #expect(try await readCPS(image) == first, "from the transcript")
        var fs = image
        fs.replay?.source = .filesystem
        // The PIN's tries come from GET DATA or VERIFY without data: answered from the transcript.
        #expect(try await readCPS(fs) == first, "from the learned file system")
        #expect(first.card.certificates.count >= 2 && first.tries == 3)
    }

    /// A transcript of three commands, the third with a wildcard challenge.
    func threeCommands(_ policy: CardImage.Replay.Policy, unexpected: UInt16 = 0x6F00) -> CardImage {
        let a: [UInt8?] = [0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x01]
        let b: [UInt8?] = [0x00, 0xB0, 0x00, 0x00, 0x02]
        let c: [UInt8?] = [0x00, 0x88, 0x00, 0x00, 0x04, nil, nil, nil, nil]
        var image = CardImage(name: "three", summary: nil, synthetic: true, source: nil, atr: [0x3B, 0x00], cardProtocol: .t0,
                              behaviour: .init(t0Responses: false, classes: [0x00], challengeSeed: 0), root: .init(fid: 0x3F00))
        image.replay = .init(source: .transcript, policy: policy, unexpectedStatusWord: StatusWord(rawValue: unexpected),
                             transcript: [.init(command: a, response: [0x90, 0x00]), .init(command: b, response: [0x12, 0x34, 0x90, 0x00]),
                                          .init(command: c, response: [0xAB, 0xCD, 0x90, 0x00])])
        return image
    }

    func send(_ image: CardImage, _ commands: [[UInt8]]) async throws -> (answers: [[UInt8]], log: [String]) {
        let logs = InMemoryLogHandler()
        let answers = try await onCard(image, logger: Logger(label: "replay", factory: { _ in logs })) { connection, _ in
            var out: [[UInt8]] = []
            for c in commands { out.append(try await connection.transmit(c)) }
            return out
        }
        return (answers, logs.entries.map { "\($0.message)" })
    }

    let select: [UInt8] = [0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x01]
    let read: [UInt8] = [0x00, 0xB0, 0x00, 0x00, 0x02]
    let authenticate: [UInt8] = [0x00, 0x88, 0x00, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04]

    @Test func strictOrderRefusesAnOutOfOrderCommandAndSaysWhatItExpected() async throws {
        let (answers, log) = try await send(threeCommands(.strict), [read, select, read])
        #expect(answers == [[0x6F, 0x00], [0x90, 0x00], [0x12, 0x34, 0x90, 0x00]])
        #expect(log.count == 1)
        #expect(log.first?.contains("unexpected command 00 B0 00 00 02") == true, "\(log)")
        #expect(log.first?.contains("closest expected: #1 00 A4 04 00 02 A0 01") == true, "\(log)")
    }

    @Test func cursorToleratesReorderingAndKeyedMatchesWildcards() async throws {
        let cursor = try await send(threeCommands(.cursor), [read, select, read, authenticate])
        #expect(cursor.answers == [[0x12, 0x34, 0x90, 0x00], [0x90, 0x00], [0x12, 0x34, 0x90, 0x00], [0xAB, 0xCD, 0x90, 0x00]])
        #expect(cursor.log.isEmpty, "\(cursor.log)")
        let keyed = try await send(threeCommands(.keyed), [authenticate, [0x00, 0x88, 0x00, 0x00, 0x04, 9, 9, 9, 9], read])
        #expect(keyed.answers == [[0xAB, 0xCD, 0x90, 0x00], [0xAB, 0xCD, 0x90, 0x00], [0x12, 0x34, 0x90, 0x00]])
        // A wildcard matches any byte, not any length.
        let shorter = try await send(threeCommands(.keyed), [[0x00, 0x88, 0x00, 0x00, 0x02, 1, 2]])
        #expect(shorter.answers == [[0x6F, 0x00]])
        #expect(shorter.log.first?.contains("closest expected: #3 00 88 00 00 04 ?? ?? ?? ??") == true, "\(shorter.log)")
    }

    @Test func theUnexpectedStatusWordIsConfigurable() async throws {
        let image = threeCommands(.cursor, unexpected: 0x6D00)
        let (answers, log) = try await send(image, [[0x80, 0xCA, 0x9F, 0x7F, 0x00]])
        #expect(answers == [[0x6D, 0x00]])
        #expect(log.first?.contains("80 CA 9F 7F 00") == true)
        let reloaded = try CardImageLoader.load(text: CardImageWriter.yaml(image), source: "three")
        #expect(reloaded.replay?.unexpectedStatusWord == StatusWord(rawValue: 0x6D00))
    }

    @Test func learningAFileSystemFromArbitraryExchangesNeverCrashes() {
        var rng = SplitMix64(seed: 6)
        let instructions: [UInt8] = [0xA4, 0xB0, 0xB2, 0xC0, 0x20, 0x88]
        for _ in 0..<3000 {
            var exchanges: [CardImage.Replay.Exchange] = []
            for _ in 0..<Int(rng.next() % 12) {
                var command: [UInt8?] = [0x00, instructions[Int(rng.next() % 6)], UInt8(truncatingIfNeeded: rng.next() % 16), UInt8(truncatingIfNeeded: rng.next())]
                for _ in 0..<Int(rng.next() % 8) { command.append(rng.next() % 5 == 0 ? nil : UInt8(truncatingIfNeeded: rng.next())) }
                var response = (0..<Int(rng.next() % 6)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                response += [[0x90, 0x61, 0x6C, 0x69, 0x62][Int(rng.next() % 5)], UInt8(truncatingIfNeeded: rng.next() % 3)]
                exchanges.append(.init(command: command, response: Array(response.prefix(Int(rng.next() % 9)))))
            }
            // SELECT with a one-byte file id and P1 00 (it crashed the learning once).
            exchanges.append(.init(command: [0x00, 0xA4, 0x00, 0x00, 0x01, 0x3F], response: [0x90, 0x00]))
            let image = ReplayRecorder.image(name: "fuzz", atr: [0x3B, 0x00], protocolUsed: .t1, exchanges: exchanges,
                                             recording: .init(reader: "fuzz", date: "2026-11-23T00:00:00Z", session: "fuzz"))
            #expect(image.replay?.transcript.count == exchanges.count)
        }
    }
}

