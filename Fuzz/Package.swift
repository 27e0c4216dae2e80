// swift-tools-version: 6.0
// CarteKit's libFuzzer targets: one executable per parser of untrusted input, each calling its entry
// point in CarteFuzzEntries (the main package). Built only by scripts/fuzz.sh, with
// `-sanitize=fuzzer,address`; the main package never builds them.
import Foundation
import PackageDescription

// A path dependency is known by its folder's name, which depends on where the repository was cloned.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootIdentity = root.lastPathComponent.lowercased()

// One target per folder of Targets/ (a test checks those folders against FuzzEntries.all).
let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Fuzz/Targets").path)) ?? [])
    .filter { !$0.hasPrefix(".") }.sorted()

let package = Package(
    name: "CarteKitFuzz",
    dependencies: [.package(path: "..")],
    targets: names.map { name in
        .executableTarget(
            name: "fuzz-\(name)",
            dependencies: [.product(name: "CarteFuzzEntries", package: rootIdentity)],
            path: "Targets/\(name)",
            // libFuzzer provides main(); the target only defines LLVMFuzzerTestOneInput.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    }
)
