import Foundation
import Testing

/// Runs the built `carte` binary and captures what it prints.
struct CarteRun {
    let status: Int32
    let stdout: String
    let stderr: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
    }
}

enum Carte {
    /// The `carte` executable next to the test bundle (or `$CARTE_BINARY`).
    static let binary: URL = {
        if let path = ProcessInfo.processInfo.environment["CARTE_BINARY"] { return URL(fileURLWithPath: path) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("carte")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/carte")
    }()

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> CarteRun {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        // Read both pipes fully before waiting, so a large output cannot block the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CarteRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }
}

struct DomainATR: Sendable, CustomTestStringConvertible {
    let hex: String
    let convention: String
    let protocols: [String]
    var testDescription: String { hex }
}

let domainATRs: [DomainATR] = {
    let text = (try? String(contentsOf: Carte.repository.appendingPathComponent("Tests/Shared/domain-facts-atrs.tsv"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
        let f = line.split(separator: "\t").map(String.init)
        return DomainATR(hex: f[0], convention: f[1], protocols: f[2].split(separator: ",").map(String.init))
    }
}()

@Suite("carte CLI", .serialized)
struct CLITests {
    @Test func helpIsCompleteWithExitCodes() throws {
        let r = try Carte.run(["--help"])
        #expect(r.status == 0)
        for word in ["atr", "apdu", "readers", "demo", "image", "bench", "rights", "EXIT CODES", "64", "8   the rights service"] {
            #expect(r.stdout.contains(word), "help lacks \(word)")
        }
        for sub in [["atr"], ["apdu"], ["readers"], ["demo"], ["image", "check"], ["image", "list"], ["bench", "core"], ["rights"], ["sim", "rights-service"], ["bench", "rights"]] {
            let h = try Carte.run(sub + ["--help"])
            #expect(h.status == 0)
            #expect(h.stdout.contains("OVERVIEW") && h.stdout.contains("--json"), "\(sub) help")
        }
    }

    /// `carte --version` names the version and the commit of the build (scripts set CARTEKIT_BUILD_COMMIT
    /// from git; a bare `swift build` says "unknown").
    @Test func versionNamesTheCommit() throws {
        let r = try Carte.run(["--version"])
        #expect(r.status == 0)
        let line = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix("0.1.0 (commit ") && line.hasSuffix(")"), "\(line)")
        let commit = line.dropFirst("0.1.0 (commit ".count).dropLast()
        #expect(commit == "unknown" || commit.prefix(12).allSatisfy(\.isHexDigit), "\(line)")
        if let expected = ProcessInfo.processInfo.environment["CARTEKIT_BUILD_COMMIT"], !expected.isEmpty {
            #expect(commit == expected[...], "built from \(expected)")
        }
    }

    @Test func theATRTableIsThere() {
        #expect(domainATRs.count == 24)
    }

    @Test("carte atr --json says the right convention and protocols", arguments: domainATRs)
    func atrJSON(_ atr: DomainATR) throws {
        let r = try Carte.run(["atr", "--json", atr.hex])
        #expect(r.status == 0, "\(r.stderr)")
        let json = r.json
        #expect(json["schema"] as? String == "carte.atr/1")
        #expect(json["convention"] as? String == atr.convention)
        #expect(json["protocols"] as? [String] == atr.protocols)
        #expect((json["identified"] as? [Any])?.isEmpty == false)
    }

    @Test func atrText() throws {
        let r = try Carte.run(["atr", "3B751300004509EA9000"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("direct convention"))
        #expect(r.stdout.contains("TA1 = 13  Fi=372, Di=4"))
        #expect(r.stdout.contains("Card: Carte Vitale 2"))
    }

    @Test func malformedATRIsExit2WithOffset() throws {
        let r = try Carte.run(["atr", "3B 75 13 00 00 45 09"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("offset 7"))
        let j = try Carte.run(["atr", "--json", "3B 81 01 AA 00"])
        #expect(j.status == 2)
        let error = j.json["error"] as? [String: Any]
        #expect(j.json["schema"] as? String == "carte.error/1")
        #expect(error?["kind"] as? String == "atr")
        #expect(error?["offset"] as? Int == 4)
        let hex = try Carte.run(["atr", "3B 7G"])
        #expect(hex.status == 2)
        #expect(hex.stderr.contains("offset 4"))
    }

    @Test func apduAgainstTheDefaultDemoCard() throws {
        let r = try Carte.run(["apdu", "00 A4 04 00 0B D2 50 00 00 02 56 49 54 41 4C 45 00", "00B0820000"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Reader: CarteKit Virtual Bi-fente 00 00"))
        #expect(r.stdout.contains("[auto:get-response]"))
        #expect(r.stdout.contains("[auto:resend-le]"))
        #expect(r.stdout.contains("90 00: Normal processing (128 data bytes)"))
        let raw = try Carte.run(["apdu", "--raw", "00 A4 04 0C 0B D2 50 00 00 02 56 49 54 41 4C 45", "00B0820000"])
        #expect(raw.stdout.contains("< 6C 80"))
        #expect(raw.stdout.contains("Wrong Le field: resend with Le = 128"))
        #expect(!raw.stdout.contains("auto:"))
    }

    @Test func apduExitCodes() throws {
        #expect(try Carte.run(["apdu", "00 CA 00 00 00"]).status == 0)
        let status = try Carte.run(["apdu", "--fail-on-status", "00 CA 00 00 00"])
        #expect(status.status == 4)
        #expect(status.stderr.contains("6D 00"))
        let malformed = try Carte.run(["apdu", "00 A4 04 00 05 01"])
        #expect(malformed.status == 2)
        #expect(malformed.stderr.contains("APDU argument 1"))
        #expect(malformed.stderr.contains("offset 5"))
        let reader = try Carte.run(["apdu", "--reader", "Nope", "00 A4 00 0C"])
        #expect(reader.status == 3)
        #expect(reader.stderr.contains("CarteKit Virtual Bi-fente 00 00"))
        let empty = try Carte.run(["apdu", "--no-card", "00 A4 00 0C"])
        #expect(empty.status == 3)
        #expect(try Carte.run(["apdu"]).status == 64)
        #expect(try Carte.run(["readers", "--bogus"]).status == 64)
    }

    @Test func pinNeverPrinted() throws {
        let verify = "00 20 00 81 08 31 32 33 34 FF FF FF FF"
        let enable = "00 28 00 81 08 31 32 33 34 FF FF FF FF"
        for extra in [[], ["--json"], ["-vv"]] {
            let r = try Carte.run(["apdu", "--image", "bundled:demo/iso-generic.yaml"] + extra + [verify, enable])
            #expect(r.status == 0)
            let all = r.stdout + r.stderr
            #expect(!all.contains("31 32 33 34"))
            #expect(all.contains("<redacted 8 bytes>"))
        }
    }

    @Test func scripts() throws {
        let script = """
            # the generic card
            00 A4 02 0C 02 01 01
            00 B0 00 00 04   # first bytes
            reset
            00 B0 00 00 04
            """
        let r = try Carte.run(["apdu", "--json", "--image", "bundled:demo/iso-generic.yaml", "--script", "-"], stdin: script)
        #expect(r.status == 0, "\(r.stderr)")
        let exchanges = r.json["exchanges"] as? [[String: Any]] ?? []
        #expect(exchanges.count == 4)
        #expect(exchanges[1]["data"] as? String == "00 01 02 03")
        #expect(exchanges[2]["command"] as? String == "reset")
        #expect(exchanges[3]["sw"] as? String == "69 86")  // no current EF after the reset
        let bad = try Carte.run(["apdu", "--script", "-"], stdin: "00 A4 00 0C\nzz\n")
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("<stdin>: line 2, column 1"))
        let missing = try Carte.run(["apdu", "--script", "/nonexistent/script"])
        #expect(missing.status == 2)
    }

    @Test func readersText() throws {
        let r = try Carte.run(["readers", "--profile", "bi-fente", "--profile", "contactless"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("CarteKit Virtual Bi-fente 00 00  [contact, vitale]: card 3B 75 13 00 00 45 09 EA 90 00"))
        #expect(r.stdout.contains("CarteKit Virtual Bi-fente 00 01  [contact, cpx]: empty"))
        #expect(r.stdout.contains("CarteKit Virtual Contactless 01 00  [contactless]: empty"))
        let j = try Carte.run(["readers", "--json", "--image", "CarteKit Virtual Bi-fente 00 01=bundled:demo/iso-generic.yaml"])
        #expect(j.status == 0, "\(j.stderr)")
        #expect(j.json["schema"] as? String == "carte.readers/1")
        let readers = j.json["readers"] as? [[String: Any]] ?? []
        #expect(readers.map { $0["state"] as? String } == ["empty", "card"])
        #expect(readers[1]["synthetic"] as? Bool == true)
        #expect(try Carte.run(["readers", "--profile", "nope"]).status == 64)
        #expect(try Carte.run(["readers", "--image", "/nonexistent.yaml"]).status == 2)
    }

    @Test func demo() throws {
        let r = try Carte.run(["demo"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("SYNTHETIC"))
        #expect(r.stdout.contains("\"CLAIRE\""))
        #expect(r.stdout.contains("\"285037505612306\""))
        #expect(r.stdout.contains("1. CLAIRE EXEMPLE, born 14/03/1985"))
        #expect(r.stdout.contains("Rights: not on the card"))
        let j = try Carte.run(["demo", "--json"])
        #expect(j.json["schema"] as? String == "carte.demo/1")
        #expect((j.json["steps"] as? [Any])?.count == 7)
        #expect(j.json["synthetic"] as? Bool == true)
        #expect((j.json["vitale"] as? [String: Any])?["schema"] as? String == "carte.vitale/1")
        #expect(((j.json["vitale"] as? [String: Any])?["people"] as? [Any])?.count == 3)
    }

    @Test func readAVitale() throws {
        let r = try Carte.run(["read", "--image", "bundled:vitale/rights-expired.yaml", "--date", "2026-06-15"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("1. JEAN PERIME, born 27/01/1958"))
        #expect(r.stdout.contains("Rights: CLOSED (ended 31/12/2023)"))
        let j = try Carte.run(["read", "--json", "--image", "bundled:vitale/twins.yaml", "--date", "2026-06-15"])
        #expect(j.json["schema"] as? String == "carte.vitale/1")
        #expect((j.json["people"] as? [[String: Any]])?.map { $0["birthRank"] as? Int } == [1, 1, 2])
        #expect(try Carte.run(["read", "--date", "2026-02-30"]).status == 64)
        let notVitale = try Carte.run(["read", "--image", "bundled:demo/iso-generic.yaml"])
        #expect(notVitale.status == 3 && notVitale.stderr.contains("not a Carte Vitale 2"))
    }

    @Test func imageBuildWritesALoadableImage() throws {
        let out = NSTemporaryDirectory() + "ck-build-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let b = try Carte.run(["image", "build", "bundled:vitale/c2s.yaml", "-o", out])
        #expect(b.status == 0, "\(b.stderr)")
        let check = try Carte.run(["image", "check", out])
        #expect(check.status == 0 && check.stdout.contains("C2S (synthetic, SOLIDAIRE) — synthetic"))
        let r = try Carte.run(["read", "--image", out, "--date", "2026-06-15"])
        #expect(r.stdout.contains("C2S (complémentaire santé solidaire)"))
        let bad = try Carte.run(["image", "build", Carte.repository.appendingPathComponent("CardImages/README.md").path, "-o", out])
        #expect(bad.status == 2)
    }

    @Test func imageCheck() throws {
        let good = try Carte.run(["image", "check", "bundled:demo/vitale2-demo.yaml", Carte.repository.appendingPathComponent("CardImages/demo/iso-generic.yaml").path])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("EF 0002 SFI 2 \"NIR\", 128 bytes, synthetic"))
        #expect(good.stdout.contains("PIN 81 \"Test PIN\": 3/3 tries"))
        #expect(!good.stdout.contains("31 32 33 34"))
        let fixture = Carte.repository.appendingPathComponent("Tests/CarteSimulatorTests/Fixtures/bad-hex.yaml").path
        let bad = try Carte.run(["image", "check", fixture])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("bad-hex.yaml:13:"))
        #expect(bad.stderr.contains("filesystem.files[1].files[0].data"))
        let list = try Carte.run(["image", "list"])
        #expect(list.stdout.contains("bundled:demo/vitale2-demo.yaml"))
    }

    @Test func pcscBackendWithoutPCSCDSaysWhatToDo() throws {
        let r = try Carte.run(["readers", "--backend", "pcsc"], environment: ["PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("SCARD_E_NO_SERVICE"))
        #expect(r.stderr.contains("pcscd is not running"))
        let j = try Carte.run(["apdu", "--json", "--backend", "pcsc", "00 A4 00 0C"], environment: ["PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"])
        #expect(j.status == 3)
        #expect((j.json["error"] as? [String: Any])?["kind"] as? String == "card")
        #expect(try Carte.run(["readers", "--backend", "pcsc", "--profile", "bi-fente"]).status == 64)
    }

    @Test func benchVitaleCountsAPDUs() throws {
        let r = try Carte.run(["bench", "vitale", "--reads", "10", "--json"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.bench-vitale/1")
        let rows = r.json["rows"] as? [[String: Any]] ?? []
        #expect(rows.count == (getuid() == 0 ? 2 : 1))
        #expect(rows.allSatisfy { ($0["apdus"] as? Int ?? 99) <= 12 && ($0["selectRoundTripMilliseconds"] as? Double ?? 0) > 0 })
    }

    @Test func benchRunsAndReportsRatios() throws {
        let r = try Carte.run(["bench", "core", "--seconds", "0.02", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.bench-core/1")
        let rows = r.json["rows"] as? [[String: Any]] ?? []
        #expect(rows.count == 9)
        #expect(rows.first?["ratio"] as? Double == 1)
        #expect(rows.contains { ($0["name"] as? String)?.contains("with its activity log") == true })
        #expect(rows.allSatisfy { ($0["apduPerSecond"] as? Double ?? 0) > 0 })
        #expect(try Carte.run(["bench", "core", "--seconds", "0"]).status == 64)
    }
}
