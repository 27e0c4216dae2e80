import CarteCore
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

/// libcarte as an editor uses it: installed with scripts/install-capi.sh, a C program compiled with `cc`
/// against the installed header and library, run natively and under valgrind.
enum CAPI {
    static let root = PCSCSandbox.repositoryRoot

    /// Installs the library once per test process into a private prefix.
    static let prefix: Result<URL, PCSCSandbox.SandboxError> = {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cartekit-capi-\(getpid())")
        let r = shell("/bin/bash", [root.appendingPathComponent("scripts/install-capi.sh").path, dir.path, PCSCSandbox.buildDirectory.path])
        guard r.status == 0 else { return .failure(.init("install-capi.sh failed: \(r.stderr)")) }
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "cartekit-capi-\(getpid())") }
        return .success(dir)
    }()

    /// Compiles a C file of the repository against the installed library.
    static func compile(_ source: String, _ name: String) throws -> String {
        let p = try prefix.get()
        let out = p.appendingPathComponent(name).path
        let r = shell("/usr/bin/cc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", root.appendingPathComponent(source).path,
                                      "-I\(p.path)/include", "-L\(p.path)/lib", "-lcarte", "-Wl,-rpath,\(p.path)/lib", "-o", out])
        guard r.status == 0 else { throw PCSCSandbox.SandboxError("cc \(source): \(r.stderr)") }
        return out
    }

    static func shell(_ tool: String, _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Standard error goes to a file: valgrind writes far more than a pipe holds, and reading
        // standard output to its end first would then block both sides.
        let errPath = NSTemporaryDirectory() + "cartekit-capi-stderr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        guard let err = FileHandle(forWritingAtPath: errPath) else { return (-1, "", "cannot create \(errPath)") }
        let out = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        do { try p.run() } catch { return (-1, "", "\(error)") }
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try? err.close()
        let e = FileManager.default.contents(atPath: errPath) ?? Data()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// Runs a program under valgrind and checks: no error, nothing definitely or indirectly lost, and
    /// every "possibly lost" block is the Swift runtime's or libdispatch's process-lifetime memory
    /// (metadata caches, worker-thread stacks) or libpcsclite's context of a PC/SC worker thread still
    /// stopping at exit, never CarteKit's.
    static func valgrind(_ program: String, _ arguments: [String] = [], stdin: String? = nil, environment: [String: String] = [:]) -> (ok: Bool, report: String, stdout: String) {
        let r = shell("/usr/bin/valgrind", ["--leak-check=full", "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=42", "--num-callers=30", program] + arguments,
                      stdin: stdin, environment: environment)
        let report = r.stderr
        var verdict: [String] = []
        if r.status != 0 { verdict.append("valgrind exited \(r.status)") }
        for needed in ["ERROR SUMMARY: 0 errors", "definitely lost: 0 bytes", "indirectly lost: 0 bytes"] where !report.contains(needed) {
            verdict.append("no \"\(needed)\"")
        }
        if !report.contains("ERROR SUMMARY: 0 errors"),
           let first = ["Invalid ", "uninitialised", "Mismatched", "Syscall param", "definitely lost in", "indirectly lost in"]
               .compactMap({ report.range(of: $0)?.lowerBound }).min() {
            verdict.append("first error:\n" + report[first...].prefix(3000))
        }
        for block in report.components(separatedBy: "are possibly lost in loss record").dropFirst() {
            let stack = block.components(separatedBy: "\n==").prefix(31).joined()
            let runtime = ["Metadata", "ConcurrentReadableHashMap", "_dispatch_", "allocate_dtv", "swift_getWitnessTable", "swift_conformsToProtocol",
                           "swift::", "swift_task", "swift_job", "SCardEstablishContext"].contains { stack.contains($0) }
            if !runtime { verdict.append("possibly lost outside the runtime:\n" + block.prefix(3000)) }
        }
        // On failure the report starts with what failed (the whole valgrind output is far too long for a
        // CI log), then the summaries.
        let summary = report.components(separatedBy: "\n").filter { $0.contains("lost:") || $0.contains("ERROR SUMMARY") || $0.contains("Invalid") }
        let shown = verdict.isEmpty ? report : (verdict + summary).joined(separator: "\n")
        return (verdict.isEmpty, shown, r.stdout)
    }
}

@Suite("libcarte, the C API", .serialized, .timeLimit(.minutes(3)))
struct CAPITests {
    @Test func theExportedSymbolsAreExactlyTheDocumentedList() throws {
        let lib = try CAPI.prefix.get().appendingPathComponent("lib/libcarte.so.1").path
        let nm = CAPI.shell("/usr/bin/nm", ["-D", "--defined-only", lib])
        #expect(nm.status == 0, "\(nm.stderr)")
        let exported = nm.stdout.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            return f.count == 3 && f[1] == "T" ? String(f[2]) : nil
        }.sorted()
        let documented = try String(contentsOf: CAPI.root.appendingPathComponent("Sources/CCarteAPI/carte.symbols"), encoding: .utf8)
            .split(separator: "\n").map(String.init).sorted()
        #expect(exported == documented, "the ABI changed: update carte.symbols and CARTE_API_VERSION together")
        // Every documented function is declared in the installed header.
        let header = try String(contentsOf: CAPI.prefix.get().appendingPathComponent("include/carte.h"), encoding: .utf8)
        for versioned in documented {
            let symbol = versioned.split(separator: "@").first.map(String.init) ?? versioned
            #expect(header.contains(" \(symbol)(") || header.contains("*\(symbol)("), "\(symbol) not in carte.h")
        }
        // The library needs no Swift runtime on the editor's machine.
        let ldd = CAPI.shell("/usr/bin/ldd", [lib])
        #expect(!ldd.stdout.contains("swift") && !ldd.stdout.contains("Foundation"), "\(ldd.stdout)")
        let soname = CAPI.shell("/usr/bin/readelf", ["-d", lib])
        #expect(soname.stdout.contains("[libcarte.so.1]"))
        // Nor libpcsclite: it is loaded when a PC/SC context is first used (#39), so an editor's program
        // starts on a machine without PC/SC and gets "PC/SC is not installed" from the calls that need it.
        #expect(!soname.stdout.contains("libpcsclite"), "\(soname.stdout)")
    }

    @Test func misuseGivesDocumentedCodesAndValgrindFindsNothing() throws {
        let program = try CAPI.compile("Tests/CAPI/misuse.c", "misuse")
        // A QR payload from the bundled phone, as the phone would show it (each run: a fresh token).
        func qr() -> String { CAPI.shell(PCSCSandbox.carteBinary.path, ["sim", "apcv-qr"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        let payload = qr()
        #expect(payload.hasPrefix("APCV1:"))
        let run = CAPI.shell(program, [payload])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("misuse: all checks passed"))
        let checked = CAPI.valgrind(program, [qr()])
        let clean = checked.ok
        #expect(clean, "\(checked.report.prefix(6000))")
    }

    @Test func theExampleReadsTheSimulatorsCardsAndValgrindFindsNothing() throws {
        let program = try CAPI.compile("examples/c/read_card.c", "read_card")
        let run = CAPI.shell(program, ["--pin"], stdin: "1234\n", environment: ["CARTE_BACKEND": "simulator"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("\"schema\" : \"carte.vitale/1\"") && run.stdout.contains("\"schema\" : \"carte.cps/1\""))
        #expect(run.stdout.contains("\"raison-sociale\" : \"CABINET DR DOCTEST\""), "situations after the PIN")
        #expect(run.stderr.contains("signed: 256 bytes"))
        let checked = CAPI.valgrind(program, ["--pin"], stdin: "1234\n", environment: ["CARTE_BACKEND": "simulator"])
        let clean = checked.ok
        #expect(clean, "\(checked.report.prefix(6000))")
    }
}

extension SharedSandboxTests {
    /// The done-when of the C API: the example, built with cc against the installed library, reads a
    /// Vitale persona and a CPS persona from a virtual bi-fente reader behind pcscd, valgrind clean.
    @Test func theCExampleReadsABiFenteReaderThroughPCSCD() async throws {
        let s = try sandbox()
        let program = try CAPI.compile("examples/c/read_card.c", "read_card_pcsc")
        // Inserted through the C API's own daemon functions.
        let insert = try CAPI.compile("Tests/CAPI/daemon_insert.c", "daemon_insert")
        let ins = CAPI.shell(insert, [s.socket, "bundled:vitale/family-five.yaml", "bundled:cps/pharmacien-titulaire.yaml"])
        #expect(ins.status == 0, "\(ins.stdout)\(ins.stderr)")
        defer {
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 0])
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 1])
        }
        let backend = PCSCBackend()
        try await waitForBiFente(backend, filled: true)
        let environment = ["PCSCLITE_CSOCK_NAME": s.clientSocket]
        let run = CAPI.shell(program, ["--pin"], stdin: "1234\n", environment: environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("\"nir\" : \"180021305512349\""), "the family-five persona's first NIR")
        #expect(run.stdout.contains("\"surname\" : \"PHARMATEST\"") && run.stdout.contains("PHARMACIE DU TEST"))
        #expect(run.stderr.contains("signed: 256 bytes"))
        let checked = CAPI.valgrind(program, ["--pin"], stdin: "1234\n", environment: environment)
        let clean = checked.ok
        #expect(clean, "\(checked.report.prefix(6000))")
        #expect(checked.stdout.contains("PHARMATEST"))
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        try s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitForBiFente(backend, filled: false)
    }
}
