import CarteBundledImages
import CarteCore
import CartePCSC
import CarteImages
import CarteVitale
import CarteEmulator
import Foundation
import PCSCTestSupport
import Testing

/// Independent clients (opensc-tool, pcsc_scan, pyscard), the CLI and every Vitale persona through the shared sandbox's pcscd.
extension SharedSandboxTests {
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

    /// #39: APDUs in a row cross the driver's shared-memory lane (the daemon counts them), with pyscard
    /// as the client, and every answer is right.
    @Test func apdusInARowCrossTheSharedMemoryLane() throws {
        let s = try sandbox()
        func laneCount() throws -> Int {
            let readers = try s.control(["op": "status"])["readers"] as? [[String: Any]] ?? []
            let slot = readers.flatMap { $0["slots"] as? [[String: Any]] ?? [] }.first { $0["name"] as? String == monoFente }
            return try #require(slot?["laneExchanges"] as? Int)
        }
        let before = try laneCount()
        let script = """
            from smartcard.System import readers
            c = [r for r in readers() if str(r).startswith("CarteKit Virtual Mono-fente")][0].createConnection()
            c.connect()
            answers = set()
            for i in range(300):
                data, sw1, sw2 = c.transmit([0x00, 0xA4, 0x02, 0x0C, 0x02, 0x01, 0x01])
                answers.add("%02X%02X" % (sw1, sw2))
                data, sw1, sw2 = c.transmit([0x00, 0xB0, 0x00, 0x00, 0x03])
                answers.add("%s %02X%02X" % (bytes(data).hex(), sw1, sw2))
            print(sorted(answers))
            """
        // Most of the 600 usually cross (the first of a burst, and any that find the daemon no longer
        // polling, take the socket); a loaded machine may need another run of them.
        var crossed = 0
        for _ in 1...5 where crossed <= 100 {
            let python = try s.run("/usr/bin/python3", ["-c", script])
            #expect(python.status == 0, "\(python.stderr)")
            #expect(python.stdout.contains("['000102 9000', '9000']"), "\(python.stdout)\(python.stderr)")
            crossed = try laneCount() - before
        }
        #expect(crossed > 100, "\(crossed) APDUs through the lane")
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
        // --seconds ends it by itself: the run's own limit (a SIGTERM at 25 s) must not be what stops it.
        let started = ContinuousClock.now
        let watch = Task.detached { try s.run(PCSCSandbox.carteBinary.path, ["watch", "--backend", "pcsc", "--json", "--seconds", "8"], timeout: 25) }
        try await Task.sleep(for: .milliseconds(2500))
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try await Task.sleep(for: .milliseconds(1500))
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        let output = try await watch.value
        #expect(output.status == 0, "\(output.stderr)")
        #expect(ContinuousClock.now - started < .seconds(20), "carte watch --seconds 8 ended only after \(ContinuousClock.now - started)")
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
