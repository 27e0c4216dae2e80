// swift-tools-version:6.1
//
// CarteKit — Swift middleware for French health smart cards (Carte Vitale, CPx) and their readers,
// plus a virtual reader that makes the whole chain testable without hardware.
// Layers and rules: ../shared/docs/design.md (kept true in docs/ of this repository as the code changes).

import PackageDescription

// MARK: - Shared settings

let strictSwiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

// MARK: - Package

let package = Package(
    name: "CarteKit",
    products: [
        .library(name: "CarteCore", targets: ["CarteCore"]),
        .library(name: "CarteSimulator", targets: ["CarteSimulator"]),
        .executable(name: "carte", targets: ["carte"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // MARK: - Targets

        /// APDU, status words, ATR, BER-TLV, channels, traces, reader abstractions. Pure Swift: no C, no Foundation.
        .target(
            name: "CarteCore",
            dependencies: [logging],
            swiftSettings: strictSwiftSettings
        ),
        /// In-memory card emulators, virtual readers and the card-image format.
        .target(
            name: "CarteSimulator",
            dependencies: ["CarteCore", logging, .product(name: "Yams", package: "Yams")],
            swiftSettings: strictSwiftSettings
        ),
        /// The card images bundled with CarteKit, embedded in the binary so the CLI works from anywhere.
        /// The files themselves stay in `CardImages/` (one source of truth).
        .target(
            name: "CarteBundledImages",
            path: "CardImages",
            exclude: ["README.md"],
            sources: ["BundledImages.swift"],
            resources: [
                .embedInCode("demo/vitale2-demo.yaml"),
                .embedInCode("demo/iso-generic.yaml"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        /// The `carte` command-line tool: the only place that bootstraps logging.
        .executableTarget(
            name: "carte",
            dependencies: [
                "CarteCore",
                "CarteSimulator",
                "CarteBundledImages",
                logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwiftSettings
        ),

        // MARK: - Tests

        .testTarget(
            name: "CarteCoreTests",
            dependencies: [
                "CarteCore",
                logging,
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteSimulatorTests",
            dependencies: [
                "CarteCore",
                "CarteSimulator",
                "CarteBundledImages",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteCLITests",
            dependencies: ["carte"],
            swiftSettings: strictSwiftSettings
        ),
    ]
)
