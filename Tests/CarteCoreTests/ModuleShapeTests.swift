import Foundation
import Testing

/// design.md: CarteCore is pure Swift — no Foundation, no C. Its only imports are swift-log's
/// `Logging` (libraries take a Logger) and the standard library's `Synchronization`.
@Suite("Module shape")
struct ModuleShapeTests {
    /// Every `import` of the Swift files of `Sources/<module>`: (file, imported module).
    static func imports(of module: String) throws -> [(file: String, module: String)] {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/\(module)")
        let files = try FileManager.default.contentsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }
        var found: [(file: String, module: String)] = []
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(whereSeparator: \.isNewline) {
                // Tokens before `import` may be access levels or attributes (@testable, @preconcurrency…).
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                    words[..<i].allSatisfy({ $0.hasPrefix("@") || ["public", "internal", "private", "fileprivate", "package"].contains($0) })
                else { continue }
                found.append((file, String(words[i + 1].split(separator: ".").first ?? words[i + 1])))
            }
        }
        #expect(!files.isEmpty, "Sources/\(module) has no Swift file")
        return found
    }

    @Test func carteCoreImportsNeitherFoundationNorC() throws {
        let allowed: Set<String> = ["Logging", "Synchronization"]
        for (file, module) in try Self.imports(of: "CarteCore") {
            #expect(allowed.contains(module), "\(file) imports \(module)")
        }
    }

    /// docs/design.md, "Modules": the package's own modules each module may import. Dependencies point
    /// down only: a card emulator never reaches for the image formats, an image never for the daemon,
    /// a library never for the CLI. A new import across layers must change this table and the design.
    static let allowedImports: [String: Set<String>] = [
        "CarteCore": [],
        "CarteSimProtocol": [],
        "CarteCrypto": ["COpenSSL"],
        "CarteUSB": ["CLibUSB"],
        "CartePCSC": ["CarteCore"],
        "CartePCSCTesting": ["CartePCSC"],
        "CarteVitale": ["CarteCore"],
        "CarteCPS": ["CarteCore", "CarteCrypto"],
        "CarteJSON": [],
        "CarteApCV": ["CarteCore", "CarteCrypto", "CarteVitale", "CarteJSON"],
        "CarteApCVHTTP": ["CarteApCV", "CarteVitale"],
        "CarteAgent": ["CarteKit", "CarteCore", "CarteCPS", "CarteCrypto", "CarteVitale"],
        "CarteConsole": ["CarteAgent", "CarteSimDaemon", "CarteImages", "CarteEmulator", "CarteCore", "CarteCrypto"],
        "CarteRights": ["COpenSSL", "CarteCrypto", "CarteKit", "CarteVitale", "CarteApCV"],
        "CarteKit": ["CarteCore", "CarteCrypto", "CarteVitale", "CarteCPS", "CarteApCV", "CarteJSON"],
        "CarteEmulator": ["CarteCore", "CarteCrypto", "CarteVitale", "CarteApCV"],
        "CarteImages": ["CarteEmulator", "CarteCore", "CarteCrypto", "CarteVitale", "CarteCPS", "CarteApCV", "CarteBundledProfiles", "CarteYAML"],
        "CarteSimDaemon": ["CarteEmulator", "CarteCore", "CarteSimProtocol", "CarteBundledScripts"],
        "CarteIFD": ["CIFDHandler", "CarteSimProtocol"],
        "CarteYAML": ["CYaml"],
        "CarteDoctor": ["CarteCore", "CarteCrypto", "CartePCSC", "CarteUSB", "CarteKit", "CarteBundledProfiles", "CarteYAML"],
        "CarteFuzzEntries": ["CarteCore", "CarteSimProtocol", "CarteSimDaemon", "CarteEmulator", "CarteImages", "CarteCPS", "CarteVitale", "CarteApCV", "CarteCrypto", "CarteRights", "CarteBundledImages", "CarteAgent", "CarteConsole"],
    ]

    @Test(arguments: allowedImports.keys.sorted())
    func moduleImportsOnlyWhatTheLayeringAllows(_ module: String) throws {
        let allowed = Self.allowedImports[module] ?? []
        // Only the package's own modules are layered here (Foundation, Logging, Yams… are not).
        for (file, imported) in try Self.imports(of: module)
        where imported.hasPrefix("Carte") || (imported.hasPrefix("C") && imported.dropFirst().first?.isUppercase == true) {
            #expect(allowed.contains(imported), "\(module)/\(file) imports \(imported), which the layering does not allow")
        }
    }
}

extension ModuleShapeTests {
    /// #38 item 12: a new warning in our own code fails the build. Every Swift target of the package
    /// (library, executable, test, test support) treats warnings as errors; C and system-library
    /// targets have no Swift settings.
    @Test func everySwiftTargetTreatsWarningsAsErrors() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let manifest = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        #expect(manifest.contains("let strictSwiftSettings: [SwiftSetting] = [\n    .swiftLanguageMode(.v6),\n    .treatAllWarnings(as: .error),"))
        // Each target declaration up to the next one: one with Swift settings uses the strict ones or says it itself.
        let blocks = manifest.components(separatedBy: "\n        .").dropFirst().filter {
            $0.hasPrefix("target(") || $0.hasPrefix("testTarget(") || $0.hasPrefix("executableTarget(")
        }
        #expect(blocks.count >= 30, "targets found: \(blocks.count)")
        for block in blocks {
            let name = block.split(separator: "\"").dropFirst().first.map(String.init) ?? "?"
            let isC = Sources(root, name).isC
            if isC { continue }
            #expect(block.contains("strictSwiftSettings") || block.contains(".treatAllWarnings(as: .error)"), "target \(name) lets warnings through")
        }
    }

    /// Whether a target's folder holds C sources only (Sources/NAME or a path: of its own).
    struct Sources {
        let isC: Bool
        init(_ root: URL, _ name: String) {
            let folder = root.appendingPathComponent("Sources/\(name)")
            let files = (FileManager.default.enumerator(atPath: folder.path)?.allObjects as? [String]) ?? []
            isC = !files.isEmpty && !files.contains { $0.hasSuffix(".swift") }
        }
    }
}
