import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

/// `carte sim serve` started by a script, used by a private pcscd, then stopped by SIGTERM and SIGINT:
/// it ends within a second, removes its socket, and pcscd keeps a consistent view (the readers stay,
/// empty; a daemon started again on the same socket plays its cards again). `carte sim soak` stopped by
/// SIGTERM ends its read, its private pcscd and daemon, and reports the rounds it ran.
@Suite("Stop signals through pcscd", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(3)))
struct StopSignalsThroughPCSCDTests {
    /// `carte ARGS` as a script's background job, reaching the sandbox's pcscd.
    func job(_ s: PCSCSandbox, _ arguments: [String]) throws -> ScriptedJob {
        try ScriptedJob(PCSCSandbox.carteBinary.path, arguments, environment: ["PCSCLITE_CSOCK_NAME": s.clientSocket])
    }

    @Test func aScriptedDaemonStopsOnEachSignalAndPCSCDStaysConsistent() throws {
        let s = try sandbox()
        let dir = try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-signals")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = dir + "/sim.sock"
        let serve = ["sim", "serve", "--socket", socket, "--profile", "bi-fente"]
        let first = try job(s, serve)
        defer { first.end() }
        try s.waitFor("the daemon") { first.catchesSignals && FileManager.default.fileExists(atPath: socket) }
        let conf = URL(fileURLWithPath: dir + "/conf")
        try s.readerConf(socket: socket, into: conf, timeout: 1000)
        let pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: dir, maximumLifetime: 120)
        try pcscd.start()
        defer { pcscd.stop() }
        let environment = ["PCSCLITE_CSOCK_NAME": pcscd.clientSocket]
        func readers() throws -> [[String: Any]] {
            let r = try s.run(PCSCSandbox.carteBinary.path, ["readers", "--backend", "pcsc", "--json"], environment: environment)
            return ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["readers"] as? [[String: Any]] ?? []
        }
        let read = { try s.run(PCSCSandbox.carteBinary.path, ["read", "--backend", "pcsc", "--json"], environment: environment) }

        // pcscd uses the daemon: the Vitale is read through it.
        try s.waitFor("pcscd to see the Vitale") { try readers().first?["state"] as? String == "card" }
        #expect(try read().status == 0)

        // SIGTERM: gone within a second, socket removed.
        let term = first.stop(SIGTERM, seconds: 1)
        #expect(term.status == 0 && term.took < .seconds(1), "exit \(term.status.map(String.init) ?? "none") after \(term.took): \(first.output("err"))")
        #expect(!FileManager.default.fileExists(atPath: socket))
        // pcscd's view: both readers stay, with no card; a read says so with a typed error (no card: exit 3).
        try s.waitFor("pcscd to see the slots empty") {
            let r = try readers()
            return r.count == 2 && r.allSatisfy { $0["state"] as? String == "empty" }
        }
        let noCard = try read()
        #expect(noCard.status == 3, "\(noCard.stdout)\(noCard.stderr)")
        #expect(pcscd.pid.map { kill($0, 0) == 0 } == true, "pcscd keeps running")

        // The daemon started again on the same socket: pcscd's driver reconnects and the card reads again.
        let second = try job(s, serve)
        defer { second.end() }
        try s.waitFor("the daemon again") { second.catchesSignals && FileManager.default.fileExists(atPath: socket) }
        try s.waitFor("pcscd to see the Vitale again") { try readers().first?["state"] as? String == "card" }
        #expect(try read().status == 0)

        // SIGINT (ignored by the shell for its background job, caught by carte) does the same.
        let int = second.stop(SIGINT, seconds: 1)
        #expect(int.status == 0 && int.took < .seconds(1), "exit \(int.status.map(String.init) ?? "none") after \(int.took): \(second.output("err"))")
        #expect(!FileManager.default.fileExists(atPath: socket))
        try s.waitFor("pcscd to see the slots empty again") { try readers().allSatisfy { $0["state"] as? String == "empty" } }
    }

    @Test func aSoakStoppedBySIGTERMReportsAndLeavesNothingRunning() async throws {
        let s = try sandbox()
        let soak = try job(s, ["sim", "soak", "--faults", "100000", "--seed", "3", "--json"])
        defer { soak.end() }
        // Let it run a few rounds: its private pcscd and daemon are its children by then.
        try s.waitFor("the soak to start") { soak.catchesSignals }
        try await Task.sleep(for: .seconds(4))
        let children = descendants(of: soak.pid)
        #expect(!children.isEmpty, "the soak runs its private pcscd and daemon")
        let stopped = soak.stop(SIGTERM, seconds: 10)
        #expect(stopped.status == 0, "exit \(stopped.status.map(String.init) ?? "none within 10 s"): \(soak.output("err"))")
        #expect(stopped.took < .seconds(6), "stopping takes the read in flight and pcscd's own stop: \(stopped.took)")
        let report = (try? JSONSerialization.jsonObject(with: Data(soak.output("out").utf8))) as? [String: Any] ?? [:]
        #expect(report["schema"] as? String == "carte.soak/1")
        #expect(report["interrupted"] as? Bool == true)
        #expect((report["rounds"] as? Int ?? 0) >= 1 && (report["rounds"] as? Int ?? 0) < 100000)
        #expect(report["crashes"] as? Int == 0 && report["untyped"] as? Int == 0, "\(report["problems"] ?? "")")
        let left = children.filter { kill($0, 0) == 0 && !isZombie($0) }
        #expect(left.isEmpty, "processes the soak started and left running: \(left)")
    }

    /// Every process below `pid` (from /proc).
    func descendants(of pid: Int32) -> [Int32] {
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
        var parents: [Int32: Int32] = [:]
        for p in all {
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { parents[p] = ppid }
        }
        var found: [Int32] = []
        var frontier = [pid]
        while let next = frontier.popLast() {
            let children = parents.filter { $0.value == next }.map(\.key)
            found += children
            frontier += children
        }
        return found
    }

    func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }
}
