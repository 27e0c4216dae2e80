import CarteImages
import CarteSimDaemon
import CartePCSC
import CarteEmulator
import Foundation
import PCSCTestSupport
import Testing

/// The done-when, end to end with the real tools: a virtual Vitale recorded through a private
/// pcscd, anonymised and replayed (in memory and through pcscd), and the same session captured by
/// `pcscd --apdu` and by `pcsc-spy`, imported and replayed.
@Suite("Record, anonymise, import and replay through pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(3)))
struct RecordReplayThroughPCSCDTests {
    /// A separate pcscd with `--debug --apdu` (its log is imported) and its own simulator daemon.
    final class Bench {
        let dir: URL
        let socket: String
        let daemon: Process
        let pcscd: PrivatePCSCD
        let sandbox: PCSCSandbox

        init(_ s: PCSCSandbox) throws {
            sandbox = s
            dir = s.directory.appendingPathComponent("record-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            let conf = dir.appendingPathComponent("conf")
            try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
            socket = dir.appendingPathComponent("sim.sock").path
            daemon = try s.serve(socket: socket, ["--profile", "mono-fente", "--image", "bundled:demo/vitale2-demo.yaml"])
            try s.readerConf(socket: socket, into: conf)
            pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: dir.path, debug: true, maximumLifetime: 300)
            try pcscd.start()
        }

        func stop() {
            pcscd.stop()
            daemon.terminate()
            daemon.waitUntilExit()
        }

        /// Runs carte against this bench's pcscd (with `environment` added).
        func carte(_ arguments: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
            try sandbox.run(PCSCSandbox.carteBinary.path, arguments, environment: extra.merging(["PCSCLITE_CSOCK_NAME": pcscd.clientSocket]) { $1 })
        }
    }

    /// `carte read --json` as a dictionary, without the reader's name (it differs between backends).
    func identity(_ text: String) throws -> [String: Any] {
        // libpcscspy prints a line on standard output before the program's own output.
        let start = text.firstIndex(of: "{") ?? text.startIndex
        var json = try #require(try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: Any], "\(text)")
        json["reader"] = nil
        return json
    }

    /// `json` with the personal fields of each person and of the card removed (what anonymising changes).
    func impersonal(_ json: [String: Any]) -> NSDictionary {
        var j = json
        let personal: Set<String> = ["surname", "firstName", "usualName", "birthName", "birthDate", "nir"]
        if var people = j["people"] as? [[String: Any]] {
            for i in people.indices { for key in personal { people[i][key] = nil } }
            j["people"] = people
        }
        if var card = j["card"] as? [String: Any] { card["serialNumber"] = nil; j["card"] = card }
        return j as NSDictionary
    }

    @Test func aVitaleRecordedAnonymisedAndReplayedReadsTheSameButForItsPersonalFields() throws {
        let s = try sandbox()
        let bench = try Bench(s)
        defer { bench.stop() }

        // The original read, spied by pcsc-spy through libpcscspy (what a technician would capture).
        let spyLibrary = "/usr/lib/x86_64-linux-gnu/libpcscspy.so.0"
        try #require(FileManager.default.fileExists(atPath: spyLibrary), "libpcsclite-dev (libpcscspy, pcsc-spy) is not installed: scripts/bootstrap.sh installs it")
        var first = (status: Int32(-1), stdout: "", stderr: "")
        for _ in 0..<100 {
            first = try bench.carte(["read", "--backend", "pcsc", "--json"])
            if first.status == 0 { break }
            usleep(100_000)
        }
        try #require(first.status == 0, "\(first.stderr)")
        let fifo = bench.dir.appendingPathComponent("pcsc-spy").path
        try #require(mkfifo(fifo, 0o600) == 0)
        let spy = Process()
        spy.executableURL = URL(fileURLWithPath: "/usr/bin/pcsc-spy")
        spy.arguments = ["-n", fifo]
        let spyOutput = bench.dir.appendingPathComponent("spy.txt")
        _ = FileManager.default.createFile(atPath: spyOutput.path, contents: nil)
        spy.standardOutput = try FileHandle(forWritingTo: spyOutput)
        spy.standardError = FileHandle.nullDevice
        try spy.run()
        let spied = try bench.carte(["read", "--backend", "pcsc", "--json"], environment: ["HOME": bench.dir.path, "LD_PRELOAD": spyLibrary])
        try #require(spied.status == 0, "carte under pcsc-spy: \(spied.stderr)")
        // pcsc-spy ends when the spied program closes the FIFO (slowly on a loaded machine: it is Python).
        for _ in 0..<600 where spy.isRunning { usleep(50_000) }
        if spy.isRunning { spy.terminate() }
        spy.waitUntilExit()
        let original = try identity(spied.stdout)
        #expect(original as NSDictionary == (try identity(first.stdout)) as NSDictionary, "the spied read is the plain read")
        // pcscd's log of these two reads (later reads of other cards follow in the file).
        let pcscdLog = bench.dir.appendingPathComponent("pcscd-apdu.log").path
        try FileManager.default.copyItem(atPath: bench.pcscd.logPath, toPath: pcscdLog)

        // Record through pcscd.
        let recorded = bench.dir.appendingPathComponent("recorded.yaml").path
        let record = try bench.carte(["record", "--backend", "pcsc", "-o", recorded, "--json"])
        try #require(record.status == 0, "\(record.stderr)")
        let image = try CardImageLoader.load(text: String(contentsOfFile: recorded, encoding: .utf8), source: recorded)
        #expect(image.recorded?.reader == "CarteKit Virtual Mono-fente 00 00" && image.recorded?.firmware != nil, "\(String(describing: image.recorded))")
        #expect((image.replay?.transcript.count ?? 0) >= 6 && image.atr.first == 0x3B)

        // Anonymise: the report names each field and its new value.
        let anonymous = bench.dir.appendingPathComponent("anonymous.yaml").path
        let anonymise = try bench.carte(["image", "anonymise", recorded, "-o", anonymous, "--seed", "5", "--json"])
        try #require(anonymise.status == 0, "\(anonymise.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(anonymise.stdout.utf8)) as? [String: Any])
        #expect(report["schema"] as? String == "carte.anonymise/1")
        let replacements = try #require(report["replacements"] as? [[String: Any]])
        var newValue: [String: String] = [:]
        for r in replacements { newValue[r["field"] as? String ?? ""] = r["replacement"] as? String }

        func checkAnonymised(_ text: String, _ how: String) throws {
            let replayed = try identity(text)
            #expect(impersonal(replayed) == impersonal(original), "\(how): only the personal fields differ")
            let before = original["people"] as? [[String: Any]] ?? []
            let after = replayed["people"] as? [[String: Any]] ?? []
            #expect(before.count == after.count && !after.isEmpty)
            for (i, (b, a)) in zip(before, after).enumerated() {
                for (key, field) in [("surname", "surname"), ("firstName", "first name"), ("nir", "NIR"), ("birthDate", "birth date")] {
                    let old = b[key] as? String, new = a[key] as? String
                    #expect(old != nil && new != old, "\(how): person \(i + 1) \(key) was rewritten")
                    #expect(new == newValue["beneficiary \(i + 1) \(field)"], "\(how): person \(i + 1) \(key) is the report's replacement")
                }
            }
        }
        // Replayed in memory…
        let inMemory = try bench.carte(["read", "--image", anonymous, "--json"])
        try #require(inMemory.status == 0, "\(inMemory.stderr)")
        try checkAnonymised(inMemory.stdout, "in memory")
        // …and through pcscd, the anonymised image in the virtual reader.
        _ = try SimulatorControlClient(path: bench.socket).send(["op": "remove", "reader": 0, "slot": 0])
        let inserted = try SimulatorControlClient(path: bench.socket).send(["op": "insert", "reader": 0, "slot": 0, "image": anonymous])
        try #require(inserted["ok"] as? Bool == true, "\(inserted)")
        var throughPCSCD = (status: Int32(-1), stdout: "", stderr: "")
        for _ in 0..<100 {
            throughPCSCD = try bench.carte(["read", "--backend", "pcsc", "--json"])
            if throughPCSCD.status == 0, throughPCSCD.stdout != first.stdout { break }
            usleep(100_000)
        }
        try #require(throughPCSCD.status == 0, "\(throughPCSCD.stderr)")
        try checkAnonymised(throughPCSCD.stdout, "through pcscd")

        // The pcscd --apdu log and the pcsc-spy output become images that read like the card.
        for (log, format) in [(pcscdLog, "pcscd-log"), (spyOutput.path, "pcsc-spy")] {
            let imported = bench.dir.appendingPathComponent("\(format).yaml").path
            let result = try bench.carte(["image", "import", log, "-o", imported, "--reader", "CarteKit Virtual Mono-fente 00 00", "--json"])
            try #require(result.status == 0, "\(format): \(result.stdout)\(result.stderr)")
            let importReport = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect(importReport["schema"] as? String == "carte.import/1" && (importReport["exchanges"] as? Int ?? 0) >= 6, "\(importReport)")
            let replay = try bench.carte(["read", "--image", imported, "--json"])
            try #require(replay.status == 0, "\(format): \(replay.stderr)")
            let replayed = try identity(replay.stdout)
            #expect(replayed as NSDictionary == original as NSDictionary, "\(format): the imported capture reads like the card")
        }
    }
}
