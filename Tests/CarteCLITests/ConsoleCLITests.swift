import Foundation
import Testing

/// `carte sim console` and `carte sim serve --console` as a tester starts them: the address printed
/// (text and `carte.console/1`), the daemon's status with the console's fields documented, refusals.
@Suite("carte sim console", .serialized, .timeLimit(.minutes(2)))
struct ConsoleCLITests {
    /// Starts `carte` with `arguments` and returns it with the first line it printed on standard output.
    static func start(_ arguments: [String]) throws -> (Process, String) {
        let p = Process()
        p.executableURL = Carte.binary
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        return (p, String(text.prefix { $0 != "\n" }))
    }

    @Test func theConsolePrintsItsAddressAndTheDaemonItsStatus() throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ck-console-cli-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("sim.sock").path
        // The daemon with its console: the address on standard output.
        let (serve, line) = try Self.start(["sim", "serve", "--exit-with-parent", "--socket", socket, "--profile", "bi-fente-pinpad", "--console", "0"])
        defer {
            serve.terminate()
            serve.waitUntilExit()
        }
        #expect(line.hasPrefix("console on http://127.0.0.1:") && line.contains("/#key="), "\(line)")
        let status = try JSONDocsTests().check(["sim", "status", "--json", "--socket", socket])
        let slot = ((status.first?["readers"] as? [[String: Any]])?.first?["slots"] as? [[String: Any]])?.first ?? [:]
        #expect(slot["kind"] as? String == "vitale2" && slot["faults"] as? [String] == [] && (slot["keypad"] as? [String: Any])?["waiting"] as? Bool == false, "\(slot)")
        // A second console for the same daemon, as JSON; the same port again is refused with the reason.
        let (console, json) = try Self.start(["sim", "console", "--json", "--exit-with-parent", "--socket", socket, "--port", "0"])
        defer {
            console.terminate()
            console.waitUntilExit()
        }
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        #expect(document["schema"] as? String == "carte.console/1" && document["socket"] as? String == socket)
        let documented = try #require(JSONDocsTests.sections["carte.console/1"])
        #expect(Set(document.keys).subtracting(documented).isEmpty, "\(Array(document.keys))")
        let port = try #require(document["port"] as? Int)
        #expect((document["address"] as? String)?.hasPrefix("http://127.0.0.1:\(port)/#key=") == true)
        let again = try Carte.run(["sim", "console", "--socket", socket, "--port", "\(port)"])
        #expect(again.status == 2 && again.stderr.contains("127.0.0.1:\(port)") && again.stderr.contains("already in use"), "\(again.stderr)")
        #expect(try Carte.run(["sim", "console", "--socket", socket, "--port", "70000"]).status == 64)
        #expect(try Carte.run(["sim", "serve", "--socket", socket, "--console", "-1"]).status == 64)
        let help = try Carte.run(["sim", "console", "--help"]).stdout
        #expect(help.contains("--port") && help.contains("127.0.0.1") && help.contains("replay image"))
    }
}
