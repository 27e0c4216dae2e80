import CarteCore
import CarteCPS
import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

/// A virtual bi-fente reader with a PIN pad behind its own private pcscd (with `--debug --apdu`): the
/// CPS PIN typed on the simulated keypad is verified by CarteKit, by OpenSC and by pyscard, and never
/// appears anywhere on the host side (every output, the daemon's log, pcscd's APDU log).
@Suite("PIN pad through pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(4)))
struct PINPadThroughPCSCDTests {
    static let reader = "CarteKit Virtual Bi-fente PIN pad 00 01"

    final class Bench {
        let dir: URL
        let socket: String
        let daemon: Process
        let daemonLog: URL
        let pcscd: PrivatePCSCD
        let sandbox: PCSCSandbox
        /// Everything the host side printed, for the final grep.
        var outputs: [String] = []

        init(_ s: PCSCSandbox, profiles: [String] = ["bi-fente-pinpad"], images: [String] = ["CarteKit Virtual Bi-fente PIN pad 00 01=bundled:cps/medecin-liberal.yaml"]) throws {
            sandbox = s
            dir = s.directory.appendingPathComponent("pinpad-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            let conf = dir.appendingPathComponent("conf")
            try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
            let socket = dir.appendingPathComponent("sim.sock").path
            self.socket = socket
            daemonLog = dir.appendingPathComponent("daemon.log")
            _ = FileManager.default.createFile(atPath: daemonLog.path, contents: nil)
            let p = Process()
            p.executableURL = PCSCSandbox.carteBinary
            p.arguments = ["sim", "serve", "-vv", "--exit-with-parent", "--socket", socket] + profiles.flatMap { ["--profile", $0] } + images.flatMap { ["--image", $0] }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = try FileHandle(forWritingTo: daemonLog)
            try p.run()
            daemon = p
            try s.waitFor("the PIN-pad daemon") { FileManager.default.fileExists(atPath: socket) }
            try s.readerConf(socket: socket, into: conf)
            pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: dir.path, debug: true, maximumLifetime: 300)
            try pcscd.start()
        }

        func stop() {
            pcscd.stop()
            daemon.terminate()
            daemon.waitUntilExit()
        }

        /// Runs a program against this bench's pcscd and keeps its output for the grep.
        func run(_ executable: String, _ arguments: [String], stdin: String? = nil, environment extra: [String: String] = [:], timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
            let r = try sandbox.run(executable, arguments, timeout: timeout, stdin: stdin, environment: extra.merging(["PCSCLITE_CSOCK_NAME": pcscd.clientSocket]) { $1 })
            outputs.append(r.stdout + r.stderr)
            return r
        }

        func carte(_ arguments: [String], stdin: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
            try run(PCSCSandbox.carteBinary.path, arguments, stdin: stdin)
        }

        /// Types on the keypad of slot 1 (the simulated holder; not host-side output).
        func keypad(_ arguments: [String]) throws {
            let r = try sandbox.run(PCSCSandbox.carteBinary.path, ["sim", "keypad", "0", "1", "--socket", socket] + arguments)
            guard r.status == 0 else { throw PCSCSandbox.SandboxError("carte sim keypad \(arguments.count) args failed: \(r.stderr)") }
        }

        func json(_ text: String) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        }

        /// The tries left, as the simulator's card counts them (GET DATA through `carte cps pin status`).
        func triesLeft() throws -> Int? {
            json(try carte(["cps", "pin", "status", "--backend", "pcsc", "--json"]).stdout)["triesLeft"] as? Int
        }
    }

    @Test func theReaderAnnouncesItsPadAndCarteKitVerifiesTheCPSPinOnIt() async throws {
        let s = try sandbox()
        let bench = try Bench(s)
        defer { bench.stop() }
        // (The client library reads PCSCLITE_CSOCK_NAME once per process: programs are run against this pcscd.)
        var ready = false
        for _ in 0..<100 {
            if try bench.carte(["readers", "--backend", "pcsc", "--json"]).stdout.contains(Self.reader) { ready = true; break }
            usleep(100_000)
        }
        try #require(ready, "pcscd never listed \(Self.reader)")

        // pyscard reads the features as any PC/SC program does, and verifies on the pad itself.
        try bench.keypad(["--digits", "1234"])
        let script = """
            from smartcard.System import readers
            from smartcard.scard import SCARD_SHARE_SHARED
            r = [x for x in readers() if str(x) == "\(Self.reader)"][0]
            c = r.createConnection(); c.connect()
            feats = c.control(0x42000000 + 3400, [])
            codes = {feats[i]: int.from_bytes(bytes(feats[i+2:i+6]), "big") for i in range(0, len(feats), 6)}
            print("features", sorted(codes.items()))
            props = c.control(codes[0x0A], [])
            print("pinprops", props)
            tlv = c.control(codes[0x12], [])
            print("tlv", tlv)
            apdu = [0x00, 0x20, 0x00, 0x01, 0x08] + [0xFF] * 8
            s = [30, 0, 0x82, 0x08, 0x00, 8, 4, 0x02, 1, 0x09, 0x04, 0, 0, 0, 0, len(apdu), 0, 0, 0] + apdu
            print("verify", c.control(codes[0x06], s))
            """
        let python = try bench.run("/usr/bin/python3", ["-c", script])
        #expect(python.status == 0, "\(python.stderr)")
        #expect(python.stdout.contains("features [(6, 1110638598), (7, 1110638599), (10, 1110638602), (18, 1110638610)]"), "\(python.stdout)")
        #expect(python.stdout.contains("pinprops [16, 2, 2, 0]"), "\(python.stdout)")
        #expect(python.stdout.contains("verify [144, 0]"), "\(python.stdout)")

        // The readers report lists the pad.
        let readers = try bench.carte(["readers", "--backend", "pcsc", "--json"])
        #expect(readers.stdout.contains("pin-verify") && readers.stdout.contains("pin-modify"), "\(readers.stdout)")

        // carte cps pin verify: the holder types on the reader; CarteKit says so and never sees the PIN.
        try bench.keypad(["--digits", "1234", "--after", "300"])
        let verify = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json", "-vv"])
        #expect(verify.status == 0, "\(verify.stderr)")
        let report = bench.json(verify.stdout)
        #expect(report["result"] as? String == "ok" && report["entry"] as? String == "pin-pad" && report["triesLeft"] as? Int == 3, "\(verify.stdout)")
        #expect(verify.stderr.contains("enter the PIN on the reader"))
        #expect(verify.stderr.contains("[pin-pad]"), "the trace shows the template the reader completed")
        try bench.keypad(["--timeout"])
        let text = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc"])
        #expect(text.status == 5 && text.stdout.contains("enter the PIN on the reader"), "\(text.stdout)")
        #expect(text.stderr.contains("nobody entered the PIN on the reader in time"), "\(text.stderr)")

        // A wrong PIN on the pad reports the tries left; cancel and timeout are typed, and use no try.
        try bench.keypad(["--digits", "9999"])
        let wrong = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json"])
        #expect(wrong.status == 5)
        #expect(bench.json(wrong.stdout)["result"] as? String == "wrong-pin" && bench.json(wrong.stdout)["triesLeft"] as? Int == 2, "\(wrong.stdout)")
        try bench.keypad(["--cancel"])
        let cancel = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json"])
        #expect(cancel.status == 5 && bench.json(cancel.stdout)["result"] as? String == "pin-pad-cancelled", "\(cancel.stdout)")
        try bench.keypad(["--timeout"])
        let timeout = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json"])
        #expect(timeout.status == 5 && bench.json(timeout.stdout)["result"] as? String == "pin-pad-timeout", "\(timeout.stdout)")
        try bench.keypad(["--digits", "12"])
        let short = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json"])
        #expect(short.status == 5 && bench.json(short.stdout)["result"] as? String == "pin-pad-length", "\(short.stdout)")
        #expect(try bench.triesLeft() == 2)

        // Change on the pad (current, new, confirmation), then verify with the new PIN on the host.
        try bench.keypad(["--digits", "1234", "--digits", "5678", "--digits", "5678"])
        let change = try bench.carte(["cps", "pin", "change", "--backend", "pcsc", "--json"])
        #expect(change.status == 0 && bench.json(change.stdout)["entry"] as? String == "pin-pad", "\(change.stdout)\(change.stderr)")
        let host = try bench.carte(["cps", "pin", "verify", "--backend", "pcsc", "--json", "--host-pin"], stdin: "5678\n")
        #expect(host.status == 0 && bench.json(host.stdout)["entry"] as? String == "host", "\(host.stdout)\(host.stderr)")
        try bench.keypad(["--digits", "5678", "--digits", "1234", "--digits", "1234"])
        #expect(try bench.carte(["cps", "pin", "change", "--backend", "pcsc"]).status == 0)

        // OpenSC's pinpad path: pkcs15-tool with no PIN given uses the reader's pad (enable_pinpad is on by default).
        try bench.keypad(["--digits", "9999"])
        let openscWrong = try bench.run("/usr/bin/pkcs15-tool", ["-r", "1", "--verify-pin", "--auth-id", "01", "--use-pinpad"])
        #expect(openscWrong.status != 0, "\(openscWrong.stdout)\(openscWrong.stderr)")
        #expect(try bench.triesLeft() == 2, "OpenSC's wrong PIN on the pad used one try")
        try bench.keypad(["--digits", "1234"])
        let opensc = try bench.run("/usr/bin/pkcs15-tool", ["-r", "1", "--verify-pin", "--auth-id", "01", "--use-pinpad"])
        #expect(opensc.status == 0, "\(opensc.stdout)\(opensc.stderr)")
        #expect(try bench.triesLeft() == 3, "the right PIN on the pad reset the counter")

        // OpenSC's PKCS#11 module: a login without a PIN goes to the pad (CKF_PROTECTED_AUTHENTICATION_PATH).
        func pkcs11Login() throws -> (status: Int32, stdout: String, stderr: String) {
            try bench.run("/usr/bin/pkcs11-tool", ["--module", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "--slot-description", Self.reader, "--login", "--list-objects"])
        }
        try bench.keypad(["--digits", "9999"])
        let p11Wrong = try pkcs11Login()
        #expect(p11Wrong.status != 0 && p11Wrong.stderr.contains("CKR_PIN_INCORRECT"), "\(p11Wrong.stdout)\(p11Wrong.stderr)")
        #expect(try bench.triesLeft() == 2)
        try bench.keypad(["--digits", "1234"])
        let p11 = try pkcs11Login()
        #expect(p11.status == 0 && p11.stdout.contains("Private Key Object"), "\(p11.stdout)\(p11.stderr)")
        #expect(try bench.triesLeft() == 3)

        // The C API: the example verifies on the pad, then signs (the wrong entry first: the tries it reports).
        let example = try CAPI.compile("examples/c/read_card.c", "read_card_pinpad")
        try bench.keypad(["--digits", "9999"])
        let cWrong = try bench.run(example, ["--pin-pad"])
        #expect(cWrong.stderr.contains("enter the PIN on the reader") && cWrong.stderr.contains("wrong PIN: 2 tries left"), "\(cWrong.stderr)")
        try bench.keypad(["--digits", "1234"])
        let c = try bench.run(example, ["--pin-pad"])
        #expect(c.status == 0 && c.stderr.contains("signed: 256 bytes"), "\(c.stderr)")
        try bench.keypad(["--cancel"])
        let cCancel = try bench.run(example, ["--pin-pad"])
        #expect(cCancel.stderr.contains("CARTE_E_PIN_CANCELLED"), "\(cCancel.stderr)")
        #expect(try bench.triesLeft() == 3)

        // Nothing on the host side ever held the PIN: outputs, the daemon's log, pcscd's --apdu log.
        let pcscdLog = (try? String(contentsOfFile: bench.pcscd.logPath, encoding: .utf8)) ?? ""
        let daemonLog = (try? String(contentsOf: bench.daemonLog, encoding: .utf8)) ?? ""
        #expect(pcscdLog.contains("SCardControl") || pcscdLog.contains("Control"), "pcscd's debug log is there")
        #expect(daemonLog.contains("PIN pad answered"), "the daemon logged the pad's outcomes")
        // (5678 was typed on the host once, with --host-pin: its VERIFY is in pcscd's APDU log by design.)
        for (what, text, pins) in [("pcscd log", pcscdLog, ["1234", "9999"]), ("daemon log", daemonLog, ["1234", "5678", "9999"]),
                                   ("outputs", bench.outputs.joined(separator: "\n"), ["1234", "5678", "9999"])] {
            // The bench's own paths hold random numbers: they are not PINs.
            let text = text.replacingOccurrences(of: bench.dir.path, with: "<dir>")
            for pin in pins {
                let hex = pin.utf8.map { String(format: "%02X", $0) }
                for form in [hex.joined(separator: " "), hex.joined(), hex.joined(separator: " ").lowercased(), hex.joined().lowercased()] {
                    #expect(!text.contains(form), "\(what) contains the PIN \(pin) as \(form)")
                }
                // The digits on their own (not inside a longer number: a PID, a port, a timestamp).
                #expect(text.range(of: "(?<![0-9])\(pin)(?![0-9])", options: .regularExpression) == nil, "\(what) contains the PIN \(pin)")
            }
        }
    }

    @Test func theDoctorReportsThePadAndWarnsAboutACatalogPadReaderThatHidesIt() throws {
        let s = try sandbox()
        let dir = s.directory.appendingPathComponent("pinpad-doctor-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // A synthetic reader with the USB ids of the INGENICO Leo (a catalog reader with a PIN pad) whose pad is not announced.
        let profile = dir.appendingPathComponent("leo.yaml")
        try """
            format: carte-reader/1
            id: leo-hidden-pad
            name: INGENICO Leo
            vendor: CarteKit (synthetic)
            firmware: "1.02"
            synthetic: true
            slots: [{ role: cpx }]
            usb: { vendor: 0F14, product: 003B }
            pin-pad: { announced: false }
            """.write(to: profile, atomically: true, encoding: .utf8)
        let bench = try Bench(s, profiles: ["bi-fente-pinpad", profile.path], images: [])
        defer { bench.stop() }
        var doctor = (status: Int32(-1), stdout: "", stderr: "")
        for _ in 0..<50 {
            doctor = try bench.carte(["doctor", "--json"])
            if doctor.stdout.contains("INGENICO Leo") && doctor.stdout.contains("PIN pad 00") { break }
            usleep(200_000)
        }
        let report = bench.json(doctor.stdout)
        let sections = report["sections"] as? [[String: Any]] ?? []
        let checks = sections.first { $0["id"] as? String == "readers" }?["checks"] as? [[String: Any]] ?? []
        let pad = try #require(checks.first { ($0["id"] as? String)?.contains("Bi-fente PIN pad") == true }, "\(doctor.stdout)")
        #expect(pad["status"] as? String == "ok")
        let evidence = (pad["evidence"] as? [String] ?? []).joined(separator: "\n")
        #expect(evidence.contains("secure PIN entry (PC/SC part 10): verify and modify, display 16x2 (characters x lines), PIN 4–8 digits"), "\(evidence)")
        let leo = try #require(checks.first { ($0["id"] as? String)?.contains("INGENICO Leo") == true }, "\(doctor.stdout)")
        #expect(leo["status"] as? String == "warn", "\(leo)")
        #expect((leo["title"] as? String)?.contains("has a PIN pad but the reader announces none") == true, "\(leo)")
    }
}
