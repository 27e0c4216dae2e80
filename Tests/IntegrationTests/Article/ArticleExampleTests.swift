import CarteCore
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

/// The DocC article "Reading a patient's Vitale and signing with the professional's CPS on a bi-fente
/// reader" shows the code of `examples/swift/bi-fente/main.swift`, which SwiftPM builds as the
/// `bifente-example` target. These tests keep the two equal and run the program through pcscd.
enum Article {
    static let root = PCSCSandbox.repositoryRoot
    static let articlePath = "Sources/CarteKit/CarteKit.docc/ReadingAVitaleAndSigningOnABiFenteReader.md"
    static let sourcePath = "examples/swift/bi-fente/main.swift"
    static let program = PCSCSandbox.buildDirectory.appendingPathComponent("bifente-example").path

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The named slices of a source in DocC's snippet convention: `// snippet.NAME` starts a slice
    /// (ending at the next one or at `// snippet.end`); lines between `// snippet.hide` and
    /// `// snippet.show` are left out. Returns the slices in order, each without its surrounding blank lines.
    static func slices(of source: String) -> [(name: String, code: String)] {
        var result: [(name: String, lines: [String])] = []
        var hidden = false
        var open = false
        for line in source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("// snippet.") {
                let marker = String(trimmed.dropFirst("// snippet.".count))
                switch marker {
                case "hide": hidden = true
                case "show": hidden = false
                case "end": open = false
                default:
                    result.append((marker, []))
                    open = true
                }
                continue
            }
            if open && !hidden { result[result.count - 1].lines.append(line) }
        }
        return result.map { slice in
            var lines = slice.lines
            while lines.first?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeFirst() }
            while lines.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeLast() }
            return (slice.name, lines.joined(separator: "\n"))
        }
    }

    /// The ```swift blocks of a Markdown text.
    static func swiftBlocks(of markdown: String) -> [String] {
        var blocks: [String] = []
        var current: [String]?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if current == nil, line.hasPrefix("```swift") {
                current = []
            } else if current != nil, line.hasPrefix("```") {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }
}

@Suite("The bi-fente DocC article and its example program")
struct ArticleTests {
    @Test func theArticlesCodeIsExactlyTheExamplesSlicesInOrder() throws {
        let slices = Article.slices(of: try Article.text(Article.sourcePath))
        let blocks = Article.swiftBlocks(of: try Article.text(Article.articlePath))
        #expect(slices.map(\.name) == ["setup", "find-pair", "read-vitale", "sign", "run"], "the slices the article walks through")
        #expect(blocks.count == slices.count, "one code block per slice")
        for (slice, block) in zip(slices, blocks) {
            #expect(block == slice.code, "the article's block for slice \(slice.name) differs from \(Article.sourcePath)")
        }
    }

    @Test func theSliceReaderFollowsTheSnippetConvention() {
        let source = """
        // snippet.hide
        import Hidden
        // snippet.show
        // snippet.a
        let a = 1

        // snippet.hide
        let secret = 2
        // snippet.show
        let b = 3
        // snippet.b
        let c = 4
        // snippet.end
        let outside = 5
        """
        let slices = Article.slices(of: source)
        #expect(slices.map(\.name) == ["a", "b"])
        #expect(slices.first?.code == "let a = 1\n\nlet b = 3")
        #expect(slices.last?.code == "let c = 4")
        #expect(Article.swiftBlocks(of: "text\n```swift\nlet x = 1\n```\n```\nnot swift\n```\n") == ["let x = 1"])
    }
}

extension SharedSandboxTests {
    /// The article's program, as built by SwiftPM, against the virtual bi-fente reader behind pcscd:
    /// the demo Vitale in slot 0, the médecin libéral's CPS in slot 1.
    @Test func theArticlesProgramReadsAndSignsThroughPCSCD() async throws {
        let s = try sandbox()
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:cps/medecin-liberal.yaml"])
        defer {
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 0])
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 1])
        }
        let backend = PCSCBackend()
        try await waitForBiFente(backend, filled: true)
        let environment = ["PCSCLITE_CSOCK_NAME": s.clientSocket]

        let wrong = CAPI.shell(Article.program, [], stdin: "0000\n", environment: environment)
        #expect(wrong.status == 5, "\(wrong.stdout)\(wrong.stderr)")
        #expect(wrong.stdout.contains("Wrong PIN: 2 tries left."), "\(wrong.stdout)")
        #expect(!wrong.stdout.contains("0000") && !wrong.stderr.contains("0000"), "the PIN never appears")

        let run = CAPI.shell(Article.program, [], stdin: "1234\n", environment: environment)
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("Vitale in \"\(biFente0)\", CPx card in \"\(biFente1)\" (one bi-fente reader)"), "\(run.stdout)")
        #expect(run.stdout.contains("Beneficiary 1: CLAIRE EXEMPLE NIR 285037505612306 born 1985-03-14"), "\(run.stdout)")
        #expect(run.stdout.contains("Beneficiary 3: EMMA EXEMPLE NIR 215067505678905 born 2015-06-30"), "\(run.stdout)")
        #expect(run.stdout.contains("Signed by CLAIRE DOCTEST (RPPS 99900000101),") && run.stdout.contains("256-byte signature verified"), "\(run.stdout)")
        #expect(run.stdout.contains("Situation 1: CABINET DR DOCTEST"), "\(run.stdout)")
        // Leave the reader empty for the next test, as pcscd sees it.
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        try s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitForBiFente(backend, filled: false)
    }
}

extension ArticleTests {
    /// DocC itself compiles the catalog against CarteKit's symbol graph, warnings as errors: every
    /// symbol link of the article and of the landing page resolves, and CarteKit's documentation is complete.
    @Test func doccCompilesTheCatalogWithoutWarnings() throws {
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cartekit-docc-\(getpid())")
        try? FileManager.default.removeItem(at: work)
        defer { try? FileManager.default.removeItem(at: work) }
        let graphs = work.appendingPathComponent("symbol-graphs").path
        try FileManager.default.createDirectory(atPath: graphs, withIntermediateDirectories: true)
        let build = PCSCSandbox.buildDirectory.path
        let extract = CAPI.shell("/usr/bin/env", [
            "swift", "symbolgraph-extract", "-module-name", "CarteKit", "-target", "x86_64-unknown-linux-gnu",
            "-minimum-access-level", "public", "-output-dir", graphs, "-I", "\(build)/Modules",
            "-I", Article.root.appendingPathComponent("Sources/COpenSSL").path,
            "-Xcc", "-fmodule-map-file=\(Article.root.appendingPathComponent("Sources/COpenSSL/module.modulemap").path)",
        ])
        try #require(extract.status == 0, "symbolgraph-extract: \(extract.stderr)")
        let convert = CAPI.shell("/usr/bin/env", [
            "docc", "convert", Article.root.appendingPathComponent("Sources/CarteKit/CarteKit.docc").path,
            "--additional-symbol-graph-dir", graphs, "--fallback-display-name", "CarteKit",
            "--fallback-bundle-identifier", "org.cartekit.CarteKit", "--warnings-as-errors",
            "--output-path", work.appendingPathComponent("out.doccarchive").path,
        ])
        #expect(convert.status == 0, "docc: \(convert.stdout)\(convert.stderr)")
        #expect(!convert.stderr.contains("warning:"), "\(convert.stderr)")
    }
}
