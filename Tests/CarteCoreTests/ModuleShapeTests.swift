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
        "CarteSimProtocol": ["CSimLane"],
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
        "CarteFuzzEntries": ["CarteCore", "CarteSimProtocol", "CarteSimDaemon", "CarteEmulator", "CarteImages", "CarteCPS", "CarteVitale", "CarteApCV", "CarteCrypto", "CarteRights", "CarteBundledImages", "CarteAgent", "CarteConsole", "CartePCSC"],
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

extension ModuleShapeTests {
    /// #39: the modules an editor links reach, on Windows and macOS, nothing Linux-only. Read from the
    /// manifest itself (`swift package dump-package`), following each target dependency with its
    /// platform condition.
    static let editorModules = ["CarteCore", "CarteVitale", "CarteCPS", "CarteApCV", "CartePCSC", "CarteKit", "CarteC"]
    /// Targets that only make sense on Linux (libusb's inventory, pcscd's drivers and headers, the simulator
    /// daemon and its protocol and lane, the private pcscd's headers), and the packages of SwiftNIO.
    static let linuxOnlyTargets: Set<String> = ["CLibUSB", "CarteUSB", "CIFDHandler", "CarteIFD", "CIFDNull", "CPCSCLite",
                                                "CarteSimDaemon", "CarteSimProtocol", "CSimLane", "CarteBundledScripts", "CarteDoctor"]
    static let linuxOnlyPackages: Set<String> = ["swift-nio", "swift-nio-ssl", "async-http-client"]

    @Test(arguments: ["windows", "macos"])
    func editorModulesNeedNothingLinuxOnly(_ platform: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // A scratch path of its own: the build this test runs in holds the package's lock.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-dump-\(getpid())-\(platform)")
        process.arguments = ["swift", "package", "--package-path", root.path, "--scratch-path", scratch.path, "dump-package"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: scratch)
        #expect(process.terminationStatus == 0)
        let manifest = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let targets = try #require(manifest["targets"] as? [[String: Any]])
        // target → [(target or "package:product", platforms or nil)]
        var edges: [String: [(name: String, platforms: [String]?)]] = [:]
        for t in targets {
            guard let name = t["name"] as? String else { continue }
            for dependency in (t["dependencies"] as? [[String: Any]]) ?? [] {
                for (kind, value) in dependency {
                    guard let parts = value as? [Any], let first = parts.first as? String else { continue }
                    var platforms: [String]? = nil
                    if let condition = parts.last as? [String: Any] { platforms = condition["platformNames"] as? [String] }
                    switch kind {
                    case "product":
                        let package = (parts.count > 1 ? parts[1] as? String : nil) ?? "?"
                        edges[name, default: []].append(("\(package):\(first)", platforms))
                    default:
                        edges[name, default: []].append((first, platforms))
                    }
                }
            }
        }
        for module in Self.editorModules {
            var seen: Set<String> = [module]
            var queue = [module]
            while let next = queue.popLast() {
                for edge in edges[next] ?? [] where edge.platforms == nil || edge.platforms!.contains(platform) {
                    if seen.insert(edge.name).inserted { queue.append(edge.name) }
                }
            }
            let linuxOnly = seen.filter { Self.linuxOnlyTargets.contains($0) || Self.linuxOnlyPackages.contains(String($0.split(separator: ":").first ?? "")) }
            #expect(linuxOnly.isEmpty, "\(module) on \(platform) reaches \(linuxOnly.sorted())")
        }
        // The condition is really there: on Linux, CarteC does reach the simulator daemon.
        #expect((edges["CarteC"] ?? []).contains { $0.name == "CarteSimDaemon" && $0.platforms == ["linux"] })
    }

    /// Their sources call the C library only where it exists: an `import Glibc` is inside `#if canImport(Glibc)`
    /// (or `#if os(Linux)`), so the same files build with Darwin or WinSDK.
    @Test(arguments: editorModules + ["CarteCrypto", "CarteJSON", "CarteEmulator", "CarteImages", "CarteYAML"])
    func editorSourcesGuardTheirCImports(_ module: String) throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/\(module)")
        let files = try FileManager.default.subpathsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }
        #expect(!files.isEmpty)
        for file in files {
            let lines = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            var guards: [String] = []
            for line in lines {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("#if") { guards.append(trimmed) }
                if trimmed.hasPrefix("#elseif") { guards[guards.count - 1] = trimmed }
                if trimmed.hasPrefix("#endif") { _ = guards.popLast() }
                let words = trimmed.split(separator: " ")
                if let i = words.firstIndex(of: "import"), i + 1 < words.count, ["Glibc", "Darwin", "WinSDK"].contains(String(words[i + 1])) {
                    // Only a positive condition on that very module (or Linux for Glibc, Windows for WinSDK).
                    let module = String(words[i + 1])
                    let own = ["Glibc": "os(Linux)", "WinSDK": "os(Windows)", "Darwin": "os(macOS)"][module]!
                    let guarded = guards.contains { g in
                        (g.contains("canImport(\(module))") || g.contains(own)) && !g.contains("!canImport(\(module))") && !g.contains("!\(own)")
                    }
                    #expect(guarded, "\(module)/\(file): \(trimmed) is not inside a platform condition")
                }
            }
        }
    }
}
