import CarteBundledImages
import CarteCore
import CartePCSC
import CarteSimulator
import CarteVitale
import Foundation
import Testing

let biFente0 = "CarteKit Virtual Bi-fente 00 00"
let biFente1 = "CarteKit Virtual Bi-fente 00 01"
let monoFente = "CarteKit Virtual Mono-fente 01 00"
let contactless = "CarteKit Virtual Contactless 02 00"
let vitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45]

/// Collects a stream's events with one iterator for the stream's whole life (an `AsyncStream` ends
/// when its iterator goes away), and hands them to tests in order.
final class EventCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ReaderEvent] = []
    private var consumed = 0
    private var pump: Task<Void, Never>?

    init(_ stream: AsyncStream<ReaderEvent>) {
        pump = Task { [weak self] in
            for await event in stream { self?.append(event) }
        }
    }

    deinit { pump?.cancel() }

    private func append(_ event: ReaderEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    /// The next event (after those already returned) matching `match`, waiting up to `seconds`.
    func next(seconds: Double = 10, where match: (ReaderEvent) -> Bool) async -> ReaderEvent? {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            let found: ReaderEvent? = {
                lock.lock()
                defer { lock.unlock() }
                guard let index = events[consumed...].firstIndex(where: match) else { return nil }
                consumed = index + 1
                return events[index]
            }()
            if let found { return found }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}

/// Everything here runs against a real pcscd loading libifdcarte.so (see ``PCSCSandbox``).
@Suite("PC/SC through a private pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(2)))
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
        #expect(await connection.activeProtocol == .t0)
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

    @Test func independentClientsSeeTheVirtualReaders() throws {
        let s = try sandbox()
        let list = try s.run("/usr/bin/opensc-tool", ["-l"])
        #expect(list.status == 0, "\(list.stderr)")
        for name in [biFente0, biFente1, monoFente] { #expect(list.stdout.contains(name), "opensc-tool -l: \(list.stdout)") }
        let atr = try s.run("/usr/bin/opensc-tool", ["-r", "2", "-a"])
        #expect(atr.stdout.lowercased().contains("3b:8a:81:31:fe:45:80:31:c1:73:c8:40:00:82:90:00:18"), "\(atr.stdout)\(atr.stderr)")
        let send = try s.run("/usr/bin/opensc-tool", ["-r", "2", "-s", "00 A4 02 0C 02 01 01", "-s", "00 B0 00 00 04"])
        #expect(send.stdout.contains("00 01 02 03"), "\(send.stdout)\(send.stderr)")
        let scan = try s.run("/usr/bin/pcsc_scan", ["-r"])
        #expect(scan.status == 0)
        #expect(scan.stdout.contains("2: \(monoFente)"), "\(scan.stdout)")
        let script = """
            from smartcard.System import readers
            rs = readers()
            print("\\n".join(str(r) for r in rs))
            c = [r for r in rs if str(r).startswith("CarteKit Virtual Mono-fente")][0].createConnection()
            c.connect()
            data, sw1, sw2 = c.transmit([0x00, 0xA4, 0x02, 0x0C, 0x02, 0x01, 0x01])
            data, sw1, sw2 = c.transmit([0x00, 0xB0, 0x00, 0x00, 0x03])
            print("%s %02X%02X" % (bytes(data).hex(), sw1, sw2))
            """
        let python = try s.run("/usr/bin/python3", ["-c", script])
        #expect(python.status == 0, "\(python.stderr)")
        #expect(python.stdout.contains(biFente1) && python.stdout.contains("000102 9000"), "\(python.stdout)\(python.stderr)")
    }

    @Test func theCLISeesTheVirtualReadersThroughPCSCD() throws {
        let s = try sandbox()
        let readers = try s.run(PCSCSandbox.carteBinary.path, ["readers", "--backend", "pcsc", "--json"])
        #expect(readers.status == 0, "\(readers.stderr)")
        #expect(readers.stdout.contains("\"backend\" : \"pcsc\""))
        #expect(readers.stdout.contains("\"serialNumber\" : \"CKV-B-0001\""))
        let apdu = try s.run(PCSCSandbox.carteBinary.path, ["apdu", "--backend", "pcsc", "-r", "CarteKit Virtual Mono", "00 A4 02 0C 02 01 01", "00 B0 00 00 02"])
        #expect(apdu.status == 0, "\(apdu.stderr)")
        #expect(apdu.stdout.contains("< 00 01 90 00"))
    }

    @Test func carteWatchPrintsPCSCEvents() async throws {
        let s = try sandbox()
        // Generous margins: `carte watch` reports changes after its first snapshot, and a loaded
        // 2-core machine may take a while to start it.
        let watch = Task.detached { try s.run(PCSCSandbox.carteBinary.path, ["watch", "--backend", "pcsc", "--json", "--seconds", "8"]) }
        try await Task.sleep(for: .milliseconds(2500))
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try await Task.sleep(for: .milliseconds(1500))
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        let output = try await watch.value
        #expect(output.status == 0, "\(output.stderr)")
        let lines = output.stdout.split(separator: "\n")
        #expect(lines.contains { $0.contains("\"event\":\"card-inserted\"") && $0.contains("3B 75 13 00 00 45 09 EA 90 00") && $0.contains("carte.event/1") }, "\(output.stdout)")
        #expect(lines.contains { $0.contains("\"event\":\"card-removed\"") && $0.contains(biFente0) }, "\(output.stdout)")
    }

    @Test func everyVitalePersonaReadsBackThroughPCSCD() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 0]) }
        for bundled in BundledImages.vitalePersonas {
            let persona = try PersonaCompiler.load(text: bundled.text, source: bundled.path)
            // Remove, see it gone, then insert: each persona is a new card for pcscd.
            try s.control(["op": "remove", "reader": 0, "slot": 0])
            try await waitUntil("slot 0 empty") { try await backend.state(of: biFente0) == .empty }
            try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:" + bundled.path])
            let atr = persona.atr
            try await waitUntil("\(bundled.path) in slot 0") { try await backend.state(of: biFente0) == .present(atr: atr) }
            let r = try s.run(PCSCSandbox.carteBinary.path, ["read", "--backend", "pcsc", "-r", biFente0, "--json", "--date", "2026-06-15"])
            #expect(r.status == 0, "\(bundled.path): \(r.stdout) \(r.stderr)")
            let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
            #expect(json["schema"] as? String == "carte.vitale/1")
            let people = json["people"] as? [[String: Any]] ?? []
            #expect(people.count == persona.people.count, "\(bundled.path)")
            #expect(people.map { $0["nir"] as? String } == persona.people.map(\.nir), "\(bundled.path)")
            #expect(people.map { $0["firstName"] as? String } == persona.people.map(\.firstName), "\(bundled.path)")
            #expect(people.map { $0["birthDate"] as? String } == persona.people.map(\.birthDate), "\(bundled.path)")
            #expect((json["apduCount"] as? Int ?? 99) <= 12, "\(bundled.path)")
            switch bundled.path {
            case "vitale/rights-expired.yaml": #expect(people.first?["rights"] as? String == "closed")
            case "vitale/single-insured.yaml": #expect(people.first?["rights"] as? String == "open")
            case "vitale/twins.yaml": #expect(people.map { $0["birthRank"] as? Int } == [1, 1, 2])
            case "vitale/corsica.yaml": #expect(people.allSatisfy { $0["bornInCorsica"] as? Bool == true && $0["nirKeyValid"] as? Bool == true })
            case "vitale/born-abroad.yaml": #expect(people.first?["bornAbroad"] as? Bool == true && people.first?["birthDateLunar"] as? Bool == true)
            case "vitale/c2s.yaml": #expect(people.first?["c2s"] as? Bool == true)
            case "vitale/ald.yaml": #expect(people.first?["ald"] as? [String] == ["08"])
            case "vitale/corrupt.yaml":
                #expect((json["issues"] as? [String])?.first == "VITALE SFI 2, person 2, NIR: key 99 is wrong: the number calls for 10")
                #expect((json["issues"] as? [String])?.count == 2)
            default: break
            }
        }
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

/// Polls `condition` every 20 ms for up to `seconds` (without blocking a cooperative thread).
/// Waits until pcscd shows a card in both slots of the bi-fente reader (`filled`), or both empty.
func waitForBiFente(_ backend: PCSCBackend, filled: Bool) async throws {
    try await waitUntil(filled ? "both cards seen by pcscd" : "both slots empty") {
        let a = try await backend.state(of: biFente0), b = try await backend.state(of: biFente1)
        if filled, case .present = a, case .present = b { return true }
        return !filled && a == .empty && b == .empty
    }
}

func waitUntil(_ what: String, seconds: Double = 15, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw PCSCSandbox.SandboxError("timed out waiting for \(what)")
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var value = 0
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}

/// Stock vpcd in its own pcscd (with a network namespace: vpcd listens on every interface), played by
/// `carte sim serve --vpcd` started inside that namespace, seen by opensc-tool.
@Suite("Stock vpcd played by the daemon", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(2)))
struct VPCDIntegrationTests {
    @Test func opensctoolTalksToACardImageThroughVpcd() throws {
        let s = try sandbox()
        let vpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
        try #require(FileManager.default.fileExists(atPath: vpcdDriver), "vsmartcard-vpcd is not installed (scripts/bootstrap.sh installs it)")
        let dir = s.directory.appendingPathComponent("vpcd")
        let conf = dir.appendingPathComponent("conf")
        try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
        try """
            FRIENDLYNAME "Virtual PCD"
            DEVICENAME   /dev/null:0x8C7B
            LIBPATH      \(vpcdDriver)
            CHANNELID    0x8C7B

            """.write(to: conf.appendingPathComponent("vpcd"), atomically: true, encoding: .utf8)
        let pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: dir.path, isolateNetwork: true)
        try pcscd.start()
        defer { pcscd.stop() }
        let namespace = try #require(pcscd.networkNamespacePath)
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        serve.arguments = ["--net=\(namespace)", PCSCSandbox.carteBinary.path, "sim", "serve", "--exit-with-parent",
                           "--socket", dir.appendingPathComponent("sim.sock").path, "--profile", "mono-fente",
                           "--image", "bundled:demo/iso-generic.yaml", "--vpcd", "127.0.0.1:35963"]
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer {
            serve.terminate()
            serve.waitUntilExit()
        }
        func opensc(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/opensc-tool")
            p.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["PCSCLITE_CSOCK_NAME"] = pcscd.clientSocket
            p.environment = environment
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self), "")
        }
        var atr = ""
        for _ in 0..<100 {
            atr = try opensc(["-r", "0", "-a"]).stdout
            if atr.lowercased().contains("3b:8a:81") { break }
            usleep(100_000)
        }
        #expect(atr.lowercased().contains("3b:8a:81:31:fe:45:80:31:c1:73:c8:40:00:82:90:00:18"), "\(atr)")
        let list = try opensc(["-l"])
        #expect(list.stdout.contains("Virtual PCD 00 00"))
        let send = try opensc(["-r", "0", "-s", "00 A4 02 0C 02 01 01", "-s", "00 B0 00 00 04"])
        #expect(send.stdout.contains("00 01 02 03"), "\(send.stdout)")
    }
}
