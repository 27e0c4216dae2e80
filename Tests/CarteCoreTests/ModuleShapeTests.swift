import Foundation
import Testing

/// design.md: CarteCore is pure Swift — no Foundation, no C. Its only imports are swift-log's
/// `Logging` (libraries take a Logger) and the standard library's `Synchronization`.
@Suite("Module shape")
struct ModuleShapeTests {
    @Test func carteCoreImportsNeitherFoundationNorC() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/CarteCore")
        let files = try FileManager.default.contentsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }
        #expect(files.count >= 10)
        let allowed: Set<String> = ["Logging", "Synchronization"]
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(whereSeparator: \.isNewline) {
                // Tokens before `import` may be access levels or attributes (@testable, @preconcurrency…).
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                    words[..<i].allSatisfy({ $0.hasPrefix("@") || ["public", "internal", "private", "fileprivate", "package"].contains($0) })
                else { continue }
                let module = String(words[i + 1].split(separator: ".").first ?? words[i + 1])
                #expect(allowed.contains(module), "\(file) imports \(module)")
            }
        }
    }
}
