import Foundation
import Testing

@Suite("carte sim", .serialized)
struct SimCLITests {
    @Test func aMissingDaemonIsExit3WithARemedy() throws {
        let r = try Carte.run(["sim", "status", "--socket", "/nonexistent/sim.sock"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("cannot reach the simulator daemon"))
        #expect(r.stderr.contains("carte sim serve --socket /nonexistent/sim.sock"))
    }

    @Test func theKeypadCommandQueuesEntriesAndRefusesWhatCannotBeTyped() throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ck-keypad-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("sim.sock").path
        let serve = Process()
        serve.executableURL = Carte.binary
        serve.arguments = ["sim", "serve", "--exit-with-parent", "--no-card", "--socket", socket, "--profile", "bi-fente-pinpad", "--profile", "mono-fente"]
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer {
            if serve.isRunning { serve.terminate() }
            serve.waitUntilExit()
        }
        var ready = false
        for _ in 0..<500 where !ready {
            ready = (try? Carte.run(["sim", "status", "--socket", socket]))?.status == 0
            if !ready { usleep(20_000) }
        }
        #expect(ready)
        let queued = try Carte.run(["sim", "keypad", "--socket", socket, "0", "1", "--digits", "1234", "--digits", "5678", "--after", "100"])
        #expect(queued.status == 0 && queued.stdout.contains("2 entries queued"), "\(queued.stdout)\(queued.stderr)")
        let json = try Carte.run(["sim", "keypad", "--json", "--socket", socket, "0", "1", "--cancel"])
        #expect(json.json["schema"] as? String == "carte.sim/1" && json.json["pending"] as? Int == 3, "\(json.stdout)")
        let status = try Carte.run(["sim", "status", "--socket", socket])
        #expect(status.stdout.contains("PIN pad") && status.stdout.contains("keypad: 3 entries queued"), "\(status.stdout)")
        #expect(!status.stdout.contains("1234") && !json.stdout.contains("1234"))
        #expect(try Carte.run(["sim", "keypad", "--json", "--socket", socket, "0", "1", "--clear"]).json["pending"] as? Int == 0)
        // Refusals: nothing to type, a non-digit (not echoed), exclusive flags, a reader without a pad.
        #expect(try Carte.run(["sim", "keypad", "--socket", socket, "0", "1"]).status == 64)
        let letters = try Carte.run(["sim", "keypad", "--socket", socket, "0", "1", "--digits", "12x4"])
        #expect(letters.status == 64 && letters.stderr.contains("only the digits 0-9") && !letters.stderr.contains("12x4"), "\(letters.stderr)")
        #expect(try Carte.run(["sim", "keypad", "--socket", socket, "0", "1", "--cancel", "--timeout"]).status == 64)
        let plain = try Carte.run(["sim", "keypad", "--socket", socket, "1", "0", "--digits", "1234"])
        #expect(plain.status == 3 && plain.stderr.contains("has no PIN pad"), "\(plain.stderr)")
        let help = try Carte.run(["sim", "keypad", "--help"]).stdout
        #expect(help.contains("--digits") && help.contains("64 01") && help.contains("--after"))
        #expect(try Carte.run(["cps", "pin", "--help"]).stdout.contains("--host-pin"))
    }

    @Test func serveDriveAndWriteReaderConf() throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ck-cli-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("sim.sock").path
        let serve = Process()
        serve.executableURL = Carte.binary
        serve.arguments = ["sim", "serve", "--exit-with-parent", "--no-card", "--socket", socket, "--profile", "bi-fente", "--profile", "contactless"]
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer {
            if serve.isRunning { serve.terminate() }
            serve.waitUntilExit()
        }
        var ready = false
        for _ in 0..<500 where !ready {
            ready = (try? Carte.run(["sim", "status", "--socket", socket]))?.status == 0
            if !ready { usleep(20_000) }
        }
        #expect(ready)
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        #expect(try Carte.run(["sim", "insert", "--socket", socket, "0", "1", "bundled:demo/iso-generic.yaml"]).status == 0)
        // A reader of reader.conf.d cannot be unplugged from pcscd: the refusal says how to get one that can.
        let unplug = try Carte.run(["sim", "fault", "--socket", socket, "0", "0", "unplug"])
        #expect(unplug.status == 3 && unplug.stderr.contains("start it with --usb"), "\(unplug.stderr)")
        #expect(try Carte.run(["sim", "insert", "--socket", socket, "--mute", "CarteKit Virtual Contactless", "0", "bundled:demo/iso-generic.yaml"]).status == 0)
        let status = try Carte.run(["sim", "status", "--json", "--socket", socket])
        #expect(status.json["schema"] as? String == "carte.sim/1")
        let readers = status.json["readers"] as? [[String: Any]] ?? []
        #expect(readers.count == 2)
        let slots = readers.first?["slots"] as? [[String: Any]] ?? []
        #expect(slots.map { $0["state"] as? String } == ["empty", "card"])
        #expect((readers.last?["slots"] as? [[String: Any]])?.first?["state"] as? String == "mute")
        // Faults: accepted with their parameters, refused with a reason otherwise.
        let sw = try Carte.run(["sim", "fault", "--json", "--socket", socket, "0", "1", "sw", "--sw", "6F00", "--count", "2"])
        #expect(sw.status == 0 && sw.json["fault"] as? String == "sw 6F00 (2 APDUs)", "\(sw.stdout)\(sw.stderr)")
        #expect(try Carte.run(["sim", "fault", "--socket", socket, "0", "1", "remove-during"]).status == 0)
        #expect(try Carte.run(["sim", "fault", "--socket", socket, "0", "1", "clear"]).status == 0)
        #expect(try Carte.run(["sim", "fault", "--socket", socket, "0", "1", "explode"]).status == 64)
        let noDelay = try Carte.run(["sim", "fault", "--socket", socket, "0", "1", "slow"])
        #expect(noDelay.status != 0 && noDelay.stderr.contains("slow needs a delay"), "\(noDelay.stderr)")
        #expect(try Carte.run(["sim", "fault", "--socket", socket, "0", "7", "mute"]).status == 3)
        #expect(try Carte.run(["sim", "remove", "--socket", socket, "0", "1"]).status == 0)
        let bad = try Carte.run(["sim", "insert", "--socket", socket, "0", "9", "bundled:demo/iso-generic.yaml"])
        #expect(bad.status == 3 && bad.stderr.contains("no slot 9"))

        let conf = dir.appendingPathComponent("conf").path
        let driver = dir.appendingPathComponent("fake-driver.so").path
        _ = FileManager.default.createFile(atPath: driver, contents: Data())
        let written = try Carte.run(["sim", "reader-conf", "--json", "--socket", socket, "--out", conf, "--driver", driver])
        #expect(written.status == 0, "\(written.stderr)")
        #expect((written.json["files"] as? [String])?.count == 1, "one file, every reader in order")
        let entry = try String(contentsOfFile: conf + "/cartekit-readers", encoding: .utf8)
        #expect(entry.contains("FRIENDLYNAME \"CarteKit Virtual Bi-fente\""))
        #expect(entry.contains("DEVICENAME   \(socket):reader=0:slots=2:timeout=30000:uid=\(getuid())"))
        #expect(entry.contains("LIBPATH      \(driver)"))
        let first = try #require(entry.range(of: "reader=0:"))
        let second = try #require(entry.range(of: "reader=1:"))
        #expect(first.lowerBound < second.lowerBound)
        #expect(!entry.contains("#reader"))  // '#' would start a comment in reader.conf
        #expect(try Carte.run(["sim", "reader-conf", "--socket", socket, "--out", conf, "--driver", "/nonexistent.so"]).status == 2)

        // SIGTERM: the daemon stops and removes its socket.
        serve.terminate()
        serve.waitUntilExit()
        #expect(!FileManager.default.fileExists(atPath: socket))
    }
}

@Suite("carte sim soak")
struct SoakCLITests {
    /// The short soak of CI (root): random faults during Vitale and CPS reads through a private pcscd.
    /// Without root the command must say why it cannot run, as a typed error.
    @Test func aShortSoakHasNoCrashNoHangAndNoUntypedFailure() throws {
        let r = try Carte.run(["sim", "soak", "--faults", "30", "--seed", "7", "--json"])
        if getuid() != 0 {
            #expect(r.status == 3 && (r.json["error"] as? [String: Any])?["message"] as? String != nil, "\(r.stdout)\(r.stderr)")
            return
        }
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.soak/1")
        #expect(r.json["rounds"] as? Int == 30)
        #expect(r.json["crashes"] as? Int == 0 && r.json["hangs"] as? Int == 0 && r.json["untyped"] as? Int == 0, "\(r.json["problems"] ?? "")")
        let clean = r.json["clean"] as? Int ?? 0, typed = r.json["typedErrors"] as? Int ?? 0
        #expect(clean > 0 && typed > 0 && clean + typed == 30)
        #expect(r.json["recoveries"] as? Int == typed, "every interrupted read succeeds once the card is back")
        #expect((r.json["byFault"] as? [String: Any])?.count ?? 0 >= 5, "the seed plays several kinds of fault")
    }
}
