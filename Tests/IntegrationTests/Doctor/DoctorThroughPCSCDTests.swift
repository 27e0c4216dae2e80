import CarteSimDaemon
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

/// `carte doctor` against a private pcscd with three virtual readers whose profiles mimic catalog readers
/// (synthetic profiles: one with the firmware libccid lists, one older, one under a legacy GALSS name),
/// and a umockdev USB tree (a bi-fente CCID reader and the Ingenico 0B00:0090), plus the failures a
/// technician meets: pcscd stopped, no reader, a mute card, a card held by another program.
@Suite("carte doctor through pcscd and libusb", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(3)))
struct DoctorThroughPCSCDTests {
    static let profiles: [(file: String, text: String)] = [
        ("af-care.yaml", """
            # SYNTHETIC test profile mimicking an AF Care One (catalog): 2 slots, bcdDevice 1.08 (what libccid lists).
            format: carte-reader/1
            id: test-af-care
            name: AF Care One
            vendor: CarteKit test (synthetic AF Care One)
            firmware: "1.08"
            serial: TEST-AFC-1
            synthetic: true
            usb: { vendor: 1C34, product: AFC0 }
            slots:
              - { role: vitale }
              - { role: cpx }
            """),
        ("kap-go.yaml", """
            # SYNTHETIC test profile mimicking a KAPELSE KAP-GO with an older firmware (1.00 < 1.08).
            format: carte-reader/1
            id: test-kap-go
            name: KAPELSE KAP-GO
            vendor: CarteKit test (synthetic KAP-GO)
            firmware: "1.00"
            serial: TEST-KAP-1
            synthetic: true
            usb: { vendor: "2947", product: "0103" }
            slots:
              - { role: any }
            """),
        ("pss.yaml", """
            # SYNTHETIC test profile under a legacy GALSS/PSS reader name.
            format: carte-reader/1
            id: test-pss
            name: PSS Reader on CPS
            vendor: CarteKit test (synthetic legacy name)
            firmware: "3.30"
            serial: TEST-PSS-1
            synthetic: true
            slots:
              - { role: any }
            """),
    ]

    /// USB devices for libusb: a bi-fente CCID reader matching the first profile, and the Ingenico case.
    static let usbDevices = [
        FakeUSBDevice(syspath: "/devices/pci0000:00/0000:00:14.0/usb1/1-2", vendorID: 0x1C34, productID: 0xAFC0, bcdDevice: 0x0108,
                          manufacturer: "AF Care", product: "AF Care One", serial: "TEST-AFC-1", number: 5),
        FakeUSBDevice(syspath: "/devices/pci0000:00/0000:00:14.0/usb1/1-4", vendorID: 0x0B00, productID: 0x0090, bcdDevice: 0x0100,
                          manufacturer: "INGENICO", product: "Lecteur SESAM VITALE", serial: nil, interfaceClass: 0xFF, number: 9),
    ]

    final class Bench: @unchecked Sendable {
        let dir: URL
        let socket: String
        let daemon: Process
        let pcscd: PrivatePCSCD
        let testbed: UmockdevTestbed
        let sandbox: PCSCSandbox

        init(_ s: PCSCSandbox) throws {
            sandbox = s
            dir = s.directory.appendingPathComponent("doctor-\(UInt32.random(in: 0...UInt32.max))")
            let conf = dir.appendingPathComponent("conf")
            try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
            var arguments: [String] = []
            for p in DoctorThroughPCSCDTests.profiles {
                let path = dir.appendingPathComponent(p.file).path
                try p.text.write(toFile: path, atomically: true, encoding: .utf8)
                arguments += ["--profile", path]
            }
            socket = dir.appendingPathComponent("sim.sock").path
            daemon = try s.serve(socket: socket, arguments)
            try s.readerConf(socket: socket, into: conf, timeout: 1000)
            pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: dir.path, maximumLifetime: 300)
            try pcscd.start()
            testbed = try UmockdevTestbed(devices: DoctorThroughPCSCDTests.usbDevices, directory: dir)
        }

        func stop() {
            testbed.stop()
            pcscd.stop()
            daemon.terminate()
            daemon.waitUntilExit()
        }

        func control(_ request: [String: any Sendable]) throws {
            let answer = try SimulatorControlClient(path: socket).send(request)
            guard answer["ok"] as? Bool == true else { throw PCSCSandbox.SandboxError("\(request): \(answer)") }
        }

        /// Runs `carte doctor` with this pcscd and the USB testbed.
        func doctor(_ extra: [String] = [], socketPath: String? = nil) throws -> (status: Int32, stdout: String, stderr: String, json: [String: Any]) {
            let r = try sandbox.run(PCSCSandbox.carteBinary.path, ["doctor"] + extra,
                                    environment: testbed.environment.merging(["PCSCLITE_CSOCK_NAME": socketPath ?? pcscd.clientSocket]) { $1 })
            let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
            return (r.status, r.stdout, r.stderr, json)
        }
    }

    /// The checks of a JSON report, by id.
    func checks(_ json: [String: Any]) -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for section in json["sections"] as? [[String: Any]] ?? [] {
            for c in section["checks"] as? [[String: Any]] ?? [] { if let id = c["id"] as? String { out[id] = c } }
        }
        return out
    }

    @Test func eachProblemHasTheRightStatusAndFix() throws {
        let s = try sandbox()
        let bench = try Bench(s)
        defer { bench.stop() }
        try bench.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try bench.control(["op": "insert", "reader": 1, "slot": 0, "image": "bundled:demo/iso-generic.yaml"])
        try s.waitFor("pcscd sees the cards") {
            let r = try bench.doctor(["--json"])
            let c = self.checks(r.json)
            return c["card.AF Care One 00 00"] != nil && c["card.KAPELSE KAP-GO 01 00"] != nil
        }

        // A mute card in the KAP-GO: no answer to SELECT MF within the driver's timeout.
        try bench.control(["op": "fault", "reader": 1, "slot": 0, "fault": "mute", "count": 1])
        let r = try bench.doctor(["--json"])
        #expect(r.status == 7, "a failing check (the legacy reader): exit 7; \(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.doctor/1")
        let c = checks(r.json)
        func status(_ id: String) -> String? { c[id]?["status"] as? String }
        func fix(_ id: String) -> String { c[id]?["fix"] as? String ?? "" }
        func evidence(_ id: String) -> String { (c[id]?["evidence"] as? [String] ?? []).joined(separator: "\n") }

        #expect(status("pcscd.installed") == "ok" && status("pcscd.answers") == "ok" && status("pcscd.socket") == "ok", "\(r.stdout)")
        // The current firmware.
        #expect(status("reader.AF Care One 00") == "ok", "\(String(describing: c["reader.AF Care One 00"]))")
        #expect(evidence("reader.AF Care One 00").contains("bi-fente") && evidence("reader.AF Care One 00").contains("catalog: AF Care One"))
        // The older firmware.
        #expect(status("reader.KAPELSE KAP-GO 01") == "warn")
        #expect(fix("reader.KAPELSE KAP-GO 01").contains("1.08") && (c["reader.KAPELSE KAP-GO 01"]?["title"] as? String ?? "").contains("1.00"))
        // The legacy name.
        #expect(status("reader.PSS Reader on CPS 02") == "fail")
        #expect(fix("reader.PSS Reader on CPS 02").contains("PC/SC mode"))
        // Cards: the Vitale answers with a latency; the mute card is said mute.
        #expect(status("card.AF Care One 00 00") == "ok" && evidence("card.AF Care One 00 00").contains("SELECT MF answered"), "\(String(describing: c["card.AF Care One 00 00"]))")
        #expect(evidence("card.AF Care One 00 00").contains("Carte Vitale 2") || (c["card.AF Care One 00 00"]?["title"] as? String ?? "").contains("Vitale"))
        #expect(status("card.KAPELSE KAP-GO 01 00") == "warn" && (c["card.KAPELSE KAP-GO 01 00"]?["title"] as? String ?? "").contains("mute"),
                "\(String(describing: c["card.KAPELSE KAP-GO 01 00"]))")
        // USB through libusb: the AF Care is pcscd's AF Care One; the Ingenico is not claimed, with its remedy.
        #expect(status("usb.1-2") == "ok" && evidence("usb.1-2").contains("pcscd's reader: AF Care One 00"), "\(String(describing: c["usb.1-2"]))")
        #expect(evidence("usb.1-2").contains("1C34:AFC0") && evidence("usb.1-2").contains("bcdDevice 1.08") && evidence("usb.1-2").contains("TEST-AFC-1"))
        #expect(status("usb.1-4") == "warn" && fix("usb.1-4").contains("Info.plist") && evidence("usb.1-4").contains("NOT listed by libccid"),
                "\(String(describing: c["usb.1-4"]))")
        // udev: each USB reader is checked against the installed rules.
        #expect(c["udev.1-2"] != nil && c["udev.1-4"] != nil)

        // The text report: sections, statuses and fixes, no colour when not on a terminal.
        let text = try bench.doctor()
        #expect(text.status == 7 && text.stdout.contains("Readers") && text.stdout.contains("[FAIL]") && text.stdout.contains("→ "))
        #expect(!text.stdout.contains("\u{1B}["))
    }

    @Test func aCardHeldByAnotherProgramIsNamedAndABundleIsWritten() throws {
        let s = try sandbox()
        let bench = try Bench(s)
        defer { bench.stop() }
        try bench.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        // Another program (Python, pyscard) opens the card and keeps it.
        func hold(_ share: String) throws -> (Process, FileHandle) {
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            holder.arguments = ["-c", """
                import sys, time
                from smartcard.scard import *
                _, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
                for _ in range(100):
                    rv, card, proto = SCardConnect(ctx, "AF Care One 00 00", \(share), SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)
                    if rv == 0: break
                    time.sleep(0.1)
                print("held" if rv == 0 else "failed %x" % (rv & 0xffffffff), flush=True)
                sys.stdin.read()
                """]
            var environment = ProcessInfo.processInfo.environment
            environment["PCSCLITE_CSOCK_NAME"] = bench.pcscd.clientSocket
            holder.environment = environment
            let input = Pipe(), output = Pipe()
            holder.standardInput = input
            holder.standardOutput = output
            holder.standardError = FileHandle.nullDevice
            try holder.run()
            let first = String(decoding: output.fileHandleForReading.availableDataOrLine(), as: UTF8.self)
            guard first.hasPrefix("held") else { throw PCSCSandbox.SandboxError("pyscard: \(first)") }
            return (holder, input.fileHandleForWriting)
        }
        func release(_ h: (Process, FileHandle)) {
            try? h.1.close()
            h.0.waitUntilExit()
        }

        // Opened shared by another program: reported, not probed (its session is left alone).
        /// The card check once pcscd's view has settled (its polling thread reports a change within ~0.5 s).
        func cardCheck(_ extra: [String] = [], until expected: String) throws -> [String: Any]? {
            var check: [String: Any]?
            for _ in 0..<40 {
                check = checks(try bench.doctor(["--json"] + extra).json)["card.AF Care One 00 00"]
                if (check?["title"] as? String ?? "").contains(expected) { break }
                usleep(250_000)
            }
            return check
        }
        let shared = try hold("SCARD_SHARE_SHARED")
        let inUse = try cardCheck(until: "in use by another program")
        #expect(inUse?["status"] as? String == "info" && (inUse?["title"] as? String ?? "").contains("in use by another program"), "\(String(describing: inUse))")
        release(shared)

        // Held exclusively: a warning naming the program.
        let exclusive = try hold("SCARD_SHARE_EXCLUSIVE")
        defer { release(exclusive) }
        let holder = exclusive.0
        let bundle = bench.dir.appendingPathComponent("ticket.tar.gz").path
        let logFile = bench.dir.appendingPathComponent("fake-pcscd.log")
        try "00000004 APDU: 00 B0 00 00 10\n00000100 SW: 45 58 45 4D 50 4C 45 90 00\nsomething else\n".write(to: logFile, atomically: true, encoding: .utf8)
        let held = try cardCheck(["--bundle", bundle, "--pcscd-log", logFile.path], until: "held exclusively")
        #expect(held?["status"] as? String == "warn" && (held?["title"] as? String ?? "").contains("held exclusively"), "\(String(describing: held))")
        let heldEvidence = (held?["evidence"] as? [String] ?? []).joined(separator: "\n")
        let holderName = "python3 (pid \(holder.processIdentifier))"
        #expect(heldEvidence.contains(holderName), "\(heldEvidence)")

        // The bundle: the report, versions and the log without APDU bytes.
        let list = try s.run("/bin/tar", ["-tzf", bundle])
        #expect(list.status == 0 && ["report.txt", "report.json", "versions.txt", "pcscd-log.txt"].allSatisfy { list.stdout.contains($0) }, "\(list)")
        let log = try s.run("/bin/tar", ["-xzOf", bundle, "pcscd-log.txt"])
        #expect(log.stdout.contains("APDU: [bytes removed]") && !log.stdout.contains("45 58 45 4D") && log.stdout.contains("something else"), "\(log.stdout)")
        let versions = try s.run("/bin/tar", ["-xzOf", bundle, "versions.txt"])
        #expect(versions.stdout.contains("carte ") && versions.stdout.contains("pcsc-lite"), "\(versions.stdout)")
    }

    @Test func pcscdStoppedAndNoReaderAreSaidWithTheirFix() throws {
        let s = try sandbox()
        let bench = try Bench(s)
        defer { bench.stop() }
        // pcscd stopped: a socket path nobody serves.
        let stopped = try bench.doctor([], socketPath: bench.dir.appendingPathComponent("no-pcscd.comm").path)
        #expect(stopped.status == 7)
        #expect(stopped.stdout.contains("pcscd does not answer (SCARD_E_NO_SERVICE)") && stopped.stdout.contains("systemctl"), "\(stopped.stdout)")
        #expect(stopped.stdout.contains("[SKIP] readers not checked"))

        // A pcscd without any reader.
        let empty = bench.dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty.appendingPathComponent("conf"), withIntermediateDirectories: true)
        let bare = PrivatePCSCD(configurationDirectory: empty.appendingPathComponent("conf").path, workDirectory: empty.path, maximumLifetime: 120)
        try bare.start()
        defer { bare.stop() }
        let none = try bench.doctor(["--json"], socketPath: bare.clientSocket)
        let c = checks(none.json)
        #expect(none.status == 7 && c["readers.none"]?["status"] as? String == "fail", "status \(none.status), stderr: \(none.stderr)\n\(none.stdout)")
        let fix: String = (c["readers.none"]?["fix"] as? String) ?? ""
        #expect(fix.contains("USB section"))
        // #38 item 6: the cards section says why it checked nothing.
        #expect(c["cards.skipped"]?["status"] as? String == "skip", "\(none.stdout)")
    }
}

extension FileHandle {
    /// Reads up to the first newline (the helper answers one line).
    func availableDataOrLine() -> Data {
        var data = Data()
        while true {
            let chunk = readData(ofLength: 1)
            if chunk.isEmpty || chunk.first == 0x0A { return data }
            data.append(chunk)
        }
    }
}
