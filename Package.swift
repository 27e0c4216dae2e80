// swift-tools-version:6.2
//
// CarteKit — Swift middleware for French health smart cards (Carte Vitale, CPx) and their readers,
// plus a virtual reader that makes the whole chain testable without hardware.
// Layers and rules: ../shared/docs/design.md (kept true in docs/ of this repository as the code changes).

import PackageDescription

// MARK: - Shared settings

/// Every Swift target of ours: Swift 6 with complete checking, and no warning let through (a new
/// warning fails the build; the dependencies' own warnings do not).
let strictSwiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

/// The commit `carte --version` reports: CARTEKIT_BUILD_COMMIT from the environment, which the scripts
/// set from git (scripts/package.sh, test.sh, demo.sh; a build from a source tarball can set it too).
/// Not `Context.gitInformation`: SwiftPM caches the evaluated manifest without the checkout's state, so
/// that value goes stale after a commit. The variable is part of the cache key, so a new commit rebuilds
/// one C file and relinks.
let buildCommit: String = {
    guard let given = Context.environment["CARTEKIT_BUILD_COMMIT"], !given.isEmpty, given.count <= 64,
          given.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.+".contains($0)) }) else { return "unknown" }
    return given
}()

/// Link flags that put the Swift runtime and the static Foundation (with what it needs) inside a binary,
/// so that it needs only libc, libstdc++ and the system libraries it uses.
let staticSwiftRuntime: [String] = ["-static-stdlib"]
    + ["--start-group", "-lFoundation", "-lFoundationInternationalization", "-lFoundationEssentials", "-lCoreFoundation",
       "-l_FoundationICU", "-l_FoundationCollections", "-l_FoundationCShims", "-lswiftSynchronization", "-lswiftDispatch",
       "-ldispatch", "-lBlocksRuntime", "--end-group"].flatMap { ["-Xlinker", $0] }

// MARK: - Package

let package = Package(
    name: "CarteKit",
    // macOS 15: task executors (a card session runs on its connection's thread). Linux is what runs here;
    // Windows and macOS build the editor products only (docs/platforms.md).
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CarteCore", targets: ["CarteCore"]),
        .library(name: "CarteEmulator", targets: ["CarteEmulator"]),
        .library(name: "CarteImages", targets: ["CarteImages"]),
        .library(name: "CarteSimDaemon", targets: ["CarteSimDaemon"]),
        .library(name: "CartePCSC", targets: ["CartePCSC"]),
        .library(name: "CarteVitale", targets: ["CarteVitale"]),
        .library(name: "CarteCrypto", targets: ["CarteCrypto"]),
        .library(name: "CarteCPS", targets: ["CarteCPS"]),
        .library(name: "CarteApCV", targets: ["CarteApCV"]),
        .library(name: "CarteApCVHTTP", targets: ["CarteApCVHTTP"]),
        /// The synthetic rights-consultation service over mutual TLS and its client signing with a CPx card.
        .library(name: "CarteRights", targets: ["CarteRights"]),
        /// The fuzz targets' entry points (Fuzz/ builds them with libFuzzer; the test suite replays them).
        .library(name: "CarteFuzzEntries", targets: ["CarteFuzzEntries"]),
        /// The C API: libCarteC.so, installed as libcarte.so.1 with include/carte.h (scripts/install-capi.sh).
        .library(name: "CarteC", type: .dynamic, targets: ["CarteC"]),
        /// The editors' Swift API (ReaderManager, typed sessions).
        .library(name: "CarteKit", targets: ["CarteKit"]),
        /// The pcscd driver for the virtual readers: `libifdcarte.so` (static Swift runtime, no libpcsclite).
        .library(name: "ifdcarte", type: .dynamic, targets: ["CarteIFD"]),
        /// A do-nothing pcscd driver in C: the floor `carte bench pcsc` measures libifdcarte.so against.
        .library(name: "ifdnull", type: .dynamic, targets: ["CIFDNull"]),
        .executable(name: "carte", targets: ["carte"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // Already built for AsyncHTTPClient: carte agent's wss:// listener.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // MARK: - C system libraries

        /// pcsc-lite's headers and library: only the tests use it, to check CartePCSC's Linux ABI description
        /// against the real header's layouts (CartePCSC itself loads libpcsclite.so.1 at run time).
        .systemLibrary(name: "CPCSCLite", pkgConfig: "libpcsclite", providers: [.apt(["libpcsclite-dev"])]),
        /// The IFD handler (driver) headers; no pkgConfig, so the driver does not link libpcsclite.
        .systemLibrary(name: "CIFDHandler"),
        /// The system OpenSSL 3 (libssl-dev): RSA, X.509 and the test PKI.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        /// libusb-1.0 (libusb-1.0-0-dev): the USB inventory of `carte doctor`.
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),

        // MARK: - Targets

        /// APDU, status words, ATR, BER-TLV, channels, traces, reader abstractions. Pure Swift: no C, no Foundation.
        .target(
            name: "CarteCore",
            dependencies: [logging],
            swiftSettings: strictSwiftSettings
        ),
        /// Carte Vitale: reads the card through any CardChannel into a typed model.
        .target(
            name: "CarteVitale",
            dependencies: ["CarteCore", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// RSA keys, X.509 certificates, SHA-256 and the test PKI, over the system OpenSSL.
        .target(
            name: "CarteCrypto",
            dependencies: ["COpenSSL"],
            swiftSettings: strictSwiftSettings
        ),
        /// CPx cards (CPS3, CPS3 contactless, CPS4): holder, situations, PIN, certificates, signatures.
        .target(
            name: "CarteCPS",
            dependencies: ["CarteCore", "CarteCrypto", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// The appli carte Vitale (synthetic protocol): NFC and QR sources, session tokens, resolvers,
        /// the simulated insurer's service (in process and over HTTP on loopback).
        .target(
            name: "CarteApCV",
            dependencies: ["CarteCore", "CarteVitale", "CarteCrypto", "CarteJSON", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// JSON as docs/json.md writes it (absent values null), for every document CarteKit writes.
        .target(
            name: "CarteJSON",
            swiftSettings: strictSwiftSettings
        ),
        /// The synthetic online rights-consultation service (mutual TLS 1.2 on loopback, system OpenSSL's
        /// libssl) and its client, whose handshake signature comes from a CPx card (TLSClientKey).
        .target(
            name: "CarteRights",
            dependencies: ["COpenSSL", "CarteCrypto", "CarteKit", "CarteVitale", "CarteApCV", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// The simulated apCV service over HTTP on loopback (SwiftNIO) and its client (AsyncHTTPClient).
        .target(
            name: "CarteApCVHTTP",
            dependencies: ["CarteApCV", "CarteVitale",
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client")],
            swiftSettings: strictSwiftSettings
        ),
        /// The editors' API: one session API over every reader backend and card kind.
        .target(
            name: "CarteKit",
            dependencies: ["CarteCore", "CarteVitale", "CarteCPS", "CarteCrypto", "CarteApCV", "CarteJSON", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// The commit the build comes from, as a C constant (a Swift define cannot carry a value).
        .target(name: "CBuildInfo", cSettings: [.define("CARTEKIT_BUILD_COMMIT", to: "\"\(buildCommit)\"")]),
        /// The C API's header (include/carte.h) and its Swift-free parts (version, status names).
        .target(name: "CCarteAPI", exclude: ["carte.symbols", "carte.map"]),
        /// libcarte: the C API over CarteKit (opaque handles, status codes, UTF-8), with a static Swift runtime.
        .target(
            name: "CarteC",
            // The simulator daemon's control client only where the daemon runs (Linux); elsewhere the
            // carte_sim_daemon_* functions answer CARTE_E_UNSUPPORTED.
            dependencies: ["CCarteAPI", "CarteKit", "CarteApCV", "CarteCore", "CarteVitale", "CarteCPS", "CarteCrypto", "CartePCSC", "CarteEmulator", "CarteImages",
                           .target(name: "CarteSimDaemon", condition: .when(platforms: [.linux])), "CarteBundledImages"],
            swiftSettings: strictSwiftSettings,
            // Linux: a static Swift runtime and Foundation (with what static Foundation needs), so libcarte.so
            // needs only libc, libstdc++ and libssl/libcrypto on the editor's machine (libpcsclite is loaded
            // at run time). The soname and version script are GNU ld's: Windows and macOS builds use their
            // linker's defaults (not built here; docs/platforms.md).
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libcarte.so.1",
                                           "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/CCarteAPI/carte.map"]
                + staticSwiftRuntime, .when(platforms: [.linux]))]
        ),
        /// `carte agent`: protocol carte.agent/1 (JSON-RPC 2.0 over WebSocket) on loopback for web pages,
        /// over SwiftNIO's own HTTP/1.1 and WebSocket code (docs/agent.md).
        .target(
            name: "CarteAgent",
            dependencies: ["CarteKit", "CarteCore", "CarteCPS", "CarteCrypto", "CarteVitale", logging,
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOWebSocket", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl")],
            swiftSettings: strictSwiftSettings
        ),
        /// `carte sim console`: the QA console of a simulator daemon, a page on loopback that shows and
        /// drives the virtual readers and follows each slot's APDU trace (docs/simulator.md).
        .target(
            name: "CarteConsole",
            dependencies: ["CarteAgent", "CarteSimDaemon", "CarteImages", "CarteEmulator", "CarteCore", "CarteCrypto", logging,
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: strictSwiftSettings
        ),
        /// The JavaScript client and the demo page of `carte agent` (web/), embedded in carte.
        .target(
            name: "CarteBundledWeb",
            path: "web",
            sources: ["BundledWeb.swift"],
            resources: [.embedInCode("cartekit-agent.js"), .embedInCode("demo.html"), .embedInCode("demo.js"),
                        .embedInCode("console.html"), .embedInCode("console.js"), .embedInCode("console.css")],
            swiftSettings: strictSwiftSettings
        ),
        /// The PC/SC backend: the platform's PC/SC library loaded at run time (libpcsclite.so.1, winscard.dll,
        /// PCSC.framework) through an ABI and behaviour description per platform; contexts on dedicated
        /// threads, readers, attributes, events. No C target: nothing links libpcsclite at build time.
        .target(
            name: "CartePCSC",
            dependencies: ["CarteCore", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// A PC/SC resource manager in memory that plays pcsc-lite's, Windows's or macOS's behaviour, for the tests.
        .target(
            name: "CartePCSCTesting",
            dependencies: ["CartePCSC"],
            swiftSettings: strictSwiftSettings
        ),
        /// The framed protocol between the pcscd driver, control clients and the simulator daemon, and the
        /// shared-memory lane for APDUs (Linux; its atomics, memfd and descriptor passing in CSimLane).
        .target(
            name: "CarteSimProtocol",
            dependencies: ["CSimLane"],
            swiftSettings: strictSwiftSettings
        ),
        /// C helpers of the shared-memory lane: atomics on a shared word, memfd_create with seals, SCM_RIGHTS.
        .target(name: "CSimLane"),
        /// The pcscd driver: forwards IFD handler calls to the simulator daemon over a Unix socket.
        .target(
            name: "CarteIFD",
            dependencies: ["CIFDHandler", "CarteSimProtocol"],
            swiftSettings: strictSwiftSettings + [.unsafeFlags(["-Xcc", "-I/usr/include/PCSC"])],
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-z", "-Xlinker", "nodelete"])]
        ),
        /// The reference driver for benchmarks (C, no dependencies).
        .target(
            name: "CIFDNull",
            cSettings: [.unsafeFlags(["-I/usr/include/PCSC"])],
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-z", "-Xlinker", "nodelete"])]
        ),
        /// The card emulator: SimulatedCard (ISO 7816-4 file system, PINs, keys, IAS-ECC/CPS2ter/apCV parts,
        /// replay of a transcript), slot faults and the in-memory virtual readers, playing the CardImage model.
        .target(
            name: "CarteEmulator",
            dependencies: ["CarteCore", "CarteCrypto", "CarteApCV", "CarteVitale", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// YAML safety shared by every CarteKit YAML reader: one pass over libyaml's events (the libyaml Yams
        /// builds, CYaml) refuses a mapping key that is not text before Yams composes (package-internal).
        .target(
            name: "CarteYAML",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strictSwiftSettings
        ),
        /// The card-image world: the YAML formats (images, reader profiles), personas, the test PKI, the
        /// recorder, importers and anonymiser, and the simulated apCV insurer built from images.
        .target(
            name: "CarteImages",
            dependencies: ["CarteEmulator", "CarteCore", "CarteVitale", "CarteCPS", "CarteCrypto", "CarteApCV", "CarteBundledProfiles", "CarteYAML", logging,
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: strictSwiftSettings
        ),
        /// The entry points of the libFuzzer targets (Fuzz/), one per parser of untrusted input, with the
        /// invariant each checks; the test suite replays the seeds and regression inputs through them.
        .target(
            name: "CarteFuzzEntries",
            dependencies: ["CarteCore", "CarteSimProtocol", "CarteSimDaemon", "CarteEmulator", "CarteImages", "CarteCPS", "CarteVitale", "CarteApCV", "CarteCrypto", "CarteRights", "CarteBundledImages", "CarteAgent", "CarteConsole", "CartePCSC"],
            swiftSettings: strictSwiftSettings
        ),
        /// The simulator daemon and its transports: the control/driver socket server, the vpcd card side,
        /// fake USB readers in a umockdev testbed.
        .target(
            name: "CarteSimDaemon",
            dependencies: ["CarteEmulator", "CarteCore", "CarteSimProtocol", "CarteBundledScripts", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// The reader profiles of `Firmware/virtual/`, embedded in the binary.
        .target(
            name: "CarteBundledProfiles",
            path: "Firmware",
            exclude: ["README.md"],
            sources: ["BundledProfiles.swift"],
            resources: [
                .embedInCode("virtual/mono-fente.yaml"),
                .embedInCode("virtual/bi-fente.yaml"),
                .embedInCode("virtual/contactless.yaml"),
                .embedInCode("virtual/bi-fente-pinpad.yaml"),
                .embedInCode("catalog.yaml"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        /// The card images bundled with CarteKit, embedded in the binary so the CLI works from anywhere.
        /// The files themselves stay in `CardImages/` (one source of truth).
        .target(
            name: "CarteBundledImages",
            path: "CardImages",
            exclude: ["README.md", "vitale/README.md", "cps/README.md", "apcv/README.md"],
            sources: ["BundledImages.swift"],
            resources: [
                .embedInCode("demo/vitale2-demo.yaml"),
                .embedInCode("demo/iso-generic.yaml"),
                .embedInCode("vitale/single-insured.yaml"),
                .embedInCode("vitale/family-five.yaml"),
                .embedInCode("vitale/twins.yaml"),
                .embedInCode("vitale/born-abroad.yaml"),
                .embedInCode("vitale/corsica.yaml"),
                .embedInCode("vitale/rights-expired.yaml"),
                .embedInCode("vitale/ald.yaml"),
                .embedInCode("vitale/c2s.yaml"),
                .embedInCode("vitale/amc-mutuelle.yaml"),
                .embedInCode("vitale/corrupt.yaml"),
                .embedInCode("vitale/vitale1.yaml"),
                .embedInCode("cps/cpa.yaml"),
                .embedInCode("cps/cpe-etablissement.yaml"),
                .embedInCode("cps/cpf-etudiant.yaml"),
                .embedInCode("cps/cps3-sans-contact.yaml"),
                .embedInCode("cps/cps4-medecin.yaml"),
                .embedInCode("cps/expiree.yaml"),
                .embedInCode("cps/medecin-liberal.yaml"),
                .embedInCode("cps/pharmacien-titulaire.yaml"),
                .embedInCode("cps/pin-bloque.yaml"),
                .embedInCode("cps/personas/cpa.persona.yaml"),
                .embedInCode("cps/personas/cpe-etablissement.persona.yaml"),
                .embedInCode("cps/personas/cpf-etudiant.persona.yaml"),
                .embedInCode("cps/personas/cps3-sans-contact.persona.yaml"),
                .embedInCode("cps/personas/cps4-medecin.persona.yaml"),
                .embedInCode("cps/personas/expiree.persona.yaml"),
                .embedInCode("cps/personas/medecin-liberal.persona.yaml"),
                .embedInCode("cps/personas/pharmacien-titulaire.persona.yaml"),
                .embedInCode("cps/personas/pin-bloque.persona.yaml"),
                .embedInCode("cps/pki/test-cpx-ca.key.pem"),
                .embedInCode("cps/pki/test-cpx-ca.pem"),
                .embedInCode("cps/pki/test-root-ca.key.pem"),
                .embedInCode("cps/pki/test-root-ca.pem"),
                .embedInCode("apcv/claire-exemple.yaml"),
                .embedInCode("apcv/famille-cinq.yaml"),
                .embedInCode("apcv/refus.yaml"),
                .embedInCode("apcv/personas/claire-exemple.persona.yaml"),
                .embedInCode("apcv/personas/famille-cinq.persona.yaml"),
                .embedInCode("apcv/personas/refus.persona.yaml"),
            ],
            swiftSettings: strictSwiftSettings
        ),
        /// `scripts/usb-testbed.py`, embedded in `carte` (the fake USB readers of `carte sim serve --usb`).
        .target(
            name: "CarteBundledScripts",
            path: "scripts",
            // Every other file of scripts/ (a new script must be listed here, or SwiftPM warns).
            exclude: ["bench.sh", "bootstrap.sh", "demo.sh", "install-capi.sh", "test.sh", "fuzz.sh",
                      "cryptolib-bench.sh", "cryptolib-record.sh", "private-pcscd.sh", "build-commit.sh", "package.sh", "package-test.sh", "agent-bench.sh", "console-bench.py"],
            sources: ["BundledScripts.swift"],
            resources: [.embedInCode("usb-testbed.py")],
            swiftSettings: strictSwiftSettings
        ),
        /// USB devices through libusb-1.0 (descriptors) and sysfs (strings), for `carte doctor`.
        .target(
            name: "CarteUSB",
            dependencies: ["CLibUSB"],
            swiftSettings: strictSwiftSettings
        ),
        /// Field diagnostics (`carte doctor`): pcscd, readers, USB, firmware catalog, udev, card probes.
        .target(
            name: "CarteDoctor",
            dependencies: ["CarteCore", "CartePCSC", "CarteUSB", "CarteKit", "CarteCrypto", "CarteBundledProfiles", "CarteYAML", logging, .product(name: "Yams", package: "Yams")],
            swiftSettings: strictSwiftSettings
        ),
        /// The `carte` command-line tool: the only place that bootstraps logging.
        .executableTarget(
            name: "carte",
            dependencies: [
                "CarteCore",
                "CarteEmulator",
                "CarteImages",
                "CarteSimDaemon",
                "CarteApCVHTTP",
                "CarteRights",
                "CartePCSC",
                "CarteVitale",
                "CarteCPS",
                "CarteCrypto",
                "CarteKit",
                "CarteBundledImages",
                "CarteDoctor",
                "CarteUSB",
                "CBuildInfo",
                "CarteAgent",
                "CarteConsole",
                "CarteBundledWeb",
                logging,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSwiftSettings,
            // A release carte carries the Swift runtime and Foundation (the Debian package's machines have
            // no Swift). Here rather than `--static-swift-stdlib`, which changes every module's compile
            // flags and so builds the whole package a second time.
            linkerSettings: [.unsafeFlags(staticSwiftRuntime, .when(platforms: [.linux], configuration: .release))]
        ),

        /// The code of the DocC article "Reading a patient's Vitale and signing with the professional's CPS
        /// on a bi-fente reader": built with the package and run by the tests through pcscd (its code
        /// blocks are checked against this source), so the article cannot rot.
        .executableTarget(
            name: "bifente-example",
            dependencies: ["CarteKit", "CarteCPS", "CarteVitale", "CartePCSC"],
            path: "examples/swift/bi-fente",
            swiftSettings: strictSwiftSettings
        ),

        // MARK: - Tests

        .testTarget(
            name: "CarteAgentTests",
            dependencies: ["CarteAgent", "CarteCore", "CarteCrypto", "CarteKit", "CarteEmulator", logging],
            swiftSettings: strictSwiftSettings
        ),
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
            name: "FuzzRegressionTests",
            dependencies: ["CarteFuzzEntries"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteDoctorTests",
            dependencies: ["CarteDoctor", "CarteUSB", "CartePCSC", "CarteCore"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteSimulatorTests",
            dependencies: [
                "CarteCore",
                "CarteEmulator",
                "CarteImages",
                "CarteSimDaemon",
                "CarteConsole",
                "CarteBundledImages",
                "CarteVitale",
                "CarteCPS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteVitaleTests",
            dependencies: ["CarteVitale", "CarteCore", "CarteEmulator", "CarteImages", "CarteBundledImages"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteApCVTests",
            dependencies: ["CarteApCV", "CarteApCVHTTP", "CarteKit", "CarteCore", "CarteCrypto", "CarteVitale", "CarteEmulator", "CarteImages", "CarteBundledImages"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteKitTests",
            dependencies: ["CarteKit", "CarteCPS", "CarteCore", "CarteVitale", "CarteEmulator", "CarteImages", "CarteBundledImages"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteCPSTests",
            dependencies: [
                "CarteCPS", "CarteCrypto", "CarteCore", "CarteEmulator", "CarteImages", "CarteBundledImages", logging,
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            // Fixtures/cryptolib: the ANS Cryptolib's conversations with the virtual CPS3 and CPS4 (data only).
            resources: [.copy("Fixtures")],
            swiftSettings: strictSwiftSettings
        ),
        /// The shared private-pcscd sandbox of the PC/SC and integration tests (one place).
        .target(
            name: "PCSCTestSupport",
            dependencies: ["CartePCSC", "CarteCore", "CarteSimDaemon"],
            path: "Tests/PCSCTestSupport",
            // Test support: its imports are visible to the tests that use it.
            swiftSettings: [.swiftLanguageMode(.v6), .enableUpcomingFeature("ExistentialAny"), .treatAllWarnings(as: .error)]
        ),
        /// The PC/SC backend itself, through a private pcscd.
        .testTarget(
            name: "CartePCSCTests",
            dependencies: ["CartePCSC", "CartePCSCTesting", "CPCSCLite", "CarteCore", "CarteKit", "PCSCTestSupport", "carte", logging],
            swiftSettings: strictSwiftSettings
        ),
        /// End-to-end tests through a private pcscd, one folder per capability (ApCV, CPS, Doctor, Faults,
        /// RecordReplay, Hotplug, Lifecycle, Clients, CAPI, Article).
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PCSCTestSupport", "CarteApCVHTTP", "CartePCSC", "CarteCore", "CarteEmulator", "CarteImages", "CarteSimDaemon", "CarteVitale", "CarteCPS", "CarteCrypto",
                           "CarteApCV", "CarteKit", "CarteBundledImages", "carte"],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteRightsTests",
            dependencies: ["CarteRights", "CarteApCV", "CarteBundledImages", "CarteCore", "CarteCPS", "CarteCrypto", "CarteEmulator", "CarteImages", "CarteKit", "CarteVitale", logging],
            swiftSettings: strictSwiftSettings
        ),
        .testTarget(
            name: "CarteCLITests",
            dependencies: ["carte", "PCSCTestSupport"],
            swiftSettings: strictSwiftSettings
        ),
    ]
)
