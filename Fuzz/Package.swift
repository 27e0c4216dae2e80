// swift-tools-version: 6.0
// CarteKit's libFuzzer executable: `fuzz`, whose target (one per parser of untrusted input) is chosen by
// CARTE_FUZZ_TARGET among the entry points of CarteFuzzEntries (the main package). Built only by
// scripts/fuzz.sh, with `-sanitize=fuzzer,address`; the main package never builds it.
import Foundation
import PackageDescription

// A path dependency is known by its folder's name, which depends on where the repository was cloned.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootIdentity = root.lastPathComponent.lowercased()

let package = Package(
    name: "CarteKitFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "fuzz",
            dependencies: [.product(name: "CarteFuzzEntries", package: rootIdentity)],
            path: "Driver",
            // libFuzzer provides main(); the executable only defines its hooks.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
