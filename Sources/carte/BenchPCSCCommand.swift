import ArgumentParser
import CarteCore
import CartePCSC
import CarteEmulator
import CarteImages
import CarteKit
import CarteSimDaemon
import Foundation
import Logging

extension BenchCommand {
    struct PCSC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pcsc",
            abstract: "APDU round trips through pcscd: CarteKit's driver against pcscd's own floor (and stock vpcd).",
            discussion: """
                Starts a private pcscd (root: own mount namespace, the system's pcscd is not touched) that \
                loads, in the same run, libifdnull.so — a do-nothing driver answering 90 00 at once, pcscd's \
                floor — and libifdcarte.so with an in-process simulator daemon (APDUs crossing their \
                shared-memory lane; --no-lane keeps them on the socket, for comparison), plus Debian's vpcd \
                (vsmartcard-vpcd) when it is installed, played by the daemon's vpcd card side. Every reader gets \
                the same SELECT through CartePCSC; the median and 99th percentile round trips are printed with \
                their ratio to the floor. Goal: CarteKit's driver at most 1.2 x the floor.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Round trips measured per reader (after 200 warm-up ones).")
        var count: Int = 3000

        @Flag(name: .customLong("no-lane"), help: "Keep CarteKit's APDUs on the driver's socket (lane=0 in its reader.conf entry): the path without the shared-memory lane, to compare.")
        var noLane = false

        func validate() throws {
            guard (100...1_000_000).contains(count) else { throw ValidationError("--count must be in 100...1000000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                if let reason = PrivatePCSCD.unavailableReason {
                    throw CLIError(kind: "bench", message: "cannot run a private pcscd: \(reason)", exitCode: CarteExit.cardOrReader)
                }
                let nullDriver = URL(fileURLWithPath: defaultDriverPath()).deletingLastPathComponent().appendingPathComponent("libifdnull.so").path
                guard FileManager.default.fileExists(atPath: nullDriver) else {
                    throw CLIError(kind: "bench", message: "\(nullDriver) is not built (swift build -c release)", exitCode: CarteExit.invalidInput)
                }
                let setup = try PrivateVirtualReader.start(image: try SimulatorOptions.loadImage("bundled:demo/iso-generic.yaml"), logger: logger,
                                                           isolateNetwork: VPCDBench.installed, lane: !noLane) { conf in
                    try """
                        # Do-nothing reference driver for `carte bench pcsc` (pcscd's floor).
                        FRIENDLYNAME "CarteKit Null Reference"
                        DEVICENAME   /dev/null
                        LIBPATH      \(nullDriver)
                        CHANNELID    0

                        """.write(toFile: conf.appendingPathComponent("null-reference").path, atomically: true, encoding: .utf8)
                    if VPCDBench.installed { try VPCDBench.writeEntry(configuration: conf.path) }
                }
                defer { setup.stop() }
                let backend = setup.backend
                let pcscd = setup.pcscd
                let vpcd = try pcscd.networkNamespacePath.flatMap { VPCDBench.installed ? try VPCDBench.start(namespace: $0, backend: backend, logger: logger) : nil }
                defer { vpcd?.stop() }

                let client = PCSCBackend(logger: logger)
                var names: [String] = []
                let expected = vpcd == nil ? 2 : 4  // vpcd shows two slots
                for _ in 0..<500 {
                    names = (try? await client.readerNames()) ?? []
                    var vpcdReady = vpcd == nil
                    if !vpcdReady, case .present = (try? await client.state(of: "Virtual PCD 00 00")) ?? .empty { vpcdReady = true }
                    if names.count >= expected && vpcdReady { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                func reader(_ prefix: String) throws -> String {
                    guard let name = names.first(where: { $0.hasPrefix(prefix) }) else {
                        throw CLIError(kind: "bench", message: "pcscd does not show \(prefix) (readers: \(names)); see \(pcscd.logPath)", exitCode: CarteExit.cardOrReader)
                    }
                    return name
                }
                var targets: [(label: String, reader: String)] = [
                    ("pcscd floor (libifdnull.so)", try reader("CarteKit Null Reference")),
                    (noLane ? "CarteKit (libifdcarte.so + daemon, lane=0)" : "CarteKit (libifdcarte.so + daemon)", try reader("CarteKit Virtual Mono-fente")),
                ]
                if vpcd != nil { targets.append(("stock vpcd (vsmartcard-vpcd + daemon)", try reader("Virtual PCD"))) }

                // Rounds alternate between paths so drift (CPU frequency, other load) hits all alike.
                // Raw rows: SCardTransmit in a loop on a connection's own thread, through the loaded library
                // and nothing of CarteKit's. Then CarteKit's own paths on its virtual reader.
                let select: [UInt8] = [0x00, 0xA4, 0x00, 0x0C]
                let carteReader = targets[1].reader
                /// `n` raw round trips on a connection of their own (made and ended outside the timing), on
                /// that connection's thread; the connection ends with the round, so the session can take the card.
                func rawRound(_ i: Int, _ n: Int) async throws -> [Double] {
                    let connection = try await client.open(targets[i].reader, share: .shared)
                    defer { Task { try? await connection.disconnect(.leave) } }
                    return try await withTaskExecutorPreference(connection.taskExecutor) { () throws(CardError) -> [Double] in
                        var times: [Double] = []
                        times.reserveCapacity(n)
                        for _ in 0..<n {
                            guard let t = connection.rawRoundTripMicroseconds(select) else { throw .unsupported("bench pcsc: a raw SCardTransmit on \(targets[i].reader) failed") }
                            times.append(t)
                        }
                        return times
                    }
                }
                for i in targets.indices { _ = try await rawRound(i, 200) }
                let manager = ReaderManager(backend: client)
                let command = try CommandAPDU(bytes: select)
                /// The SELECT through a session (ReaderManager.withSession, the card's CardChannel), which
                /// runs on its connection's thread: no thread switch per APDU. Each exchange alternates with
                /// a raw SCardTransmit on the same handle and thread, so both see the same placement.
                func sessionRound(_ n: Int) async throws -> (session: [Double], raw: [Double]) {
                    let both: [[Double]] = try await manager.withSession(on: carteReader) { session throws(CarteKitError) -> [[Double]] in
                        guard case .other(let s) = session, let connection = s.channel.transport as? PCSCConnection else {
                            throw .wrongCard(reader: carteReader, expected: "the iso-generic demo card", found: session.kind)
                        }
                        let clock = ContinuousClock()
                        var times: [Double] = []
                        var raw: [Double] = []
                        times.reserveCapacity(n)
                        raw.reserveCapacity(n)
                        for _ in 0..<n {
                            guard let r = connection.rawRoundTripMicroseconds(select) else {
                                throw .card(.unsupported("bench pcsc: the session does not run on its connection's thread"))
                            }
                            raw.append(r)
                            let start = clock.now
                            do throws(CardError) { _ = try await s.channel.transmit(command, policy: .raw) } catch { throw .card(error) }
                            times.append((clock.now - start).microseconds)
                        }
                        return [times, raw]
                    }
                    return (both[0], both[1])
                }
                /// The same SELECT through a connection called from an ordinary task: handed to the
                /// connection's thread and back (what a session saves).
                func hopRound(_ n: Int) async throws -> [Double] {
                    let connection = try await client.open(carteReader, share: .shared)
                    defer { Task { try? await connection.disconnect(.leave) } }
                    let clock = ContinuousClock()
                    var times: [Double] = []
                    for _ in 0..<n {
                        let start = clock.now
                        _ = try await connection.transmit(select)
                        times.append((clock.now - start).microseconds)
                    }
                    return times
                }
                _ = try await sessionRound(200)
                _ = try await hopRound(200)
                let rounds = 30
                var samples: [[Double]] = Array(repeating: [], count: targets.count + 3)
                for _ in 0..<rounds {
                    for i in targets.indices { samples[i] += try await rawRound(i, count / rounds) }
                    let (session, raw) = try await sessionRound(count / rounds)
                    samples[targets.count] += raw
                    samples[targets.count + 1] += session
                    samples[targets.count + 2] += try await hopRound(count / rounds)
                }

                let floor = percentile(samples[0], 0.5)
                // The session's reference: the raw round trips made on its own handle and thread.
                let carteRaw = percentile(samples[targets.count], 0.5)
                var rows = targets.enumerated().map { (i, t) in
                    BenchPCSCReport.Row(name: t.label + ", raw SCardTransmit", reader: t.reader, medianMicroseconds: percentile(samples[i], 0.5),
                                        p99Microseconds: percentile(samples[i], 0.99), ratioToFloor: percentile(samples[i], 0.5) / floor,
                                        ratioToRaw: nil, samples: samples[i].count)
                }
                for (index, name) in [(targets.count, "raw SCardTransmit on the session's handle and thread (reference)"),
                                      (targets.count + 1, "CarteKit session API (withSession, CardChannel) on CarteKit's driver"),
                                      (targets.count + 2, "CarteKit connection called from another task (thread hop) on CarteKit's driver")] {
                    let median = percentile(samples[index], 0.5)
                    rows.append(.init(name: name, reader: carteReader, medianMicroseconds: median, p99Microseconds: percentile(samples[index], 0.99),
                                      ratioToFloor: median / floor, ratioToRaw: median / carteRaw, samples: samples[index].count))
                }
                let sessionRatio = percentile(samples[targets.count + 1], 0.5) / carteRaw
                let report = BenchPCSCReport(rows: rows, lane: !noLane, vpcd: vpcd == nil ? "not installed (apt-get install vsmartcard-vpcd)" : "measured",
                                             goalRatio: 1.2, goalMet: rows[1].ratioToFloor <= 1.2,
                                             sessionGoalRatio: 1.1, sessionRatio: sessionRatio, sessionGoalMet: sessionRatio <= 1.1,
                                             build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }
    }
}

/// The reference of the card benchmarks: the median time (ms) of `count` SELECT-by-AID round trips
/// (P2 `0C`, no answer data) on `channel`, measured in the same run as what it is compared with.
func medianSelectRoundTrip(_ channel: CardChannel, aid: [UInt8], count: Int) async throws -> Double {
    let select = try CommandAPDU.select(aid: aid, p2: 0x0C, le: nil)
    let clock = ContinuousClock()
    var times: [Double] = []
    times.reserveCapacity(count)
    for _ in 0..<count {
        let start = clock.now
        _ = try await channel.transmit(select)
        times.append((clock.now - start).microseconds / 1000)
    }
    return percentile(times, 0.5)
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let index = min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))
    return sorted[index]
}

extension Duration {
    var microseconds: Double { seconds * 1e6 }
}

/// `carte bench pcsc --json`, schema `carte.bench-pcsc/3` (docs/json.md).
struct BenchPCSCReport: Encodable {
    var schema = "carte.bench-pcsc/3"
    let rows: [Row]
    /// Whether CarteKit's driver used its shared-memory lane (false with `--no-lane`).
    let lane: Bool
    let vpcd: String
    /// CarteKit's driver (raw) over pcscd's floor (raw): the goal.
    let goalRatio: Double
    let goalMet: Bool
    /// CarteKit's session API over the raw round trip on the same reader: the goal.
    let sessionGoalRatio: Double
    let sessionRatio: Double
    let sessionGoalMet: Bool
    let build: String

    struct Row: Encodable {
        let name: String
        let reader: String
        let medianMicroseconds: Double
        let p99Microseconds: Double
        /// Median relative to the first row's (pcscd's floor).
        let ratioToFloor: Double
        /// The rows on the session's handle: median relative to the raw round trips made there (the
        /// reference row, alternating with the session's exchanges).
        let ratioToRaw: Double?
        let samples: Int
    }

    var text: String {
        var lines = ["carte bench pcsc (\(build) build): SELECT round trips through a private pcscd", ""]
        let width = rows.map(\.name.count).max() ?? 0
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        for r in rows {
            let ratio = r.ratioToRaw.map { "x\(String(format: "%.2f", $0)) of the reference" } ?? "x\(String(format: "%.2f", r.ratioToFloor)) of the floor"
            lines.append("\(r.name)\(String(repeating: " ", count: width - r.name.count))  median \(f(r.medianMicroseconds)) µs  p99 \(f(r.p99Microseconds)) µs  \(ratio)  (\(r.samples) samples)")
        }
        if !rows.contains(where: { $0.name.hasPrefix("stock vpcd") }) { lines.append("stock vpcd: \(vpcd)") }
        lines.append("")
        lines.append("Goal: CarteKit's driver <= \(goalRatio) x the floor: \(goalMet ? "met" : "NOT met") (x\(String(format: "%.2f", rows[1].ratioToFloor)))")
        lines.append("Goal: CarteKit's session API <= \(sessionGoalRatio) x the raw round trip: \(sessionGoalMet ? "met" : "NOT met") (x\(String(format: "%.2f", sessionRatio)))")
        return lines.joined(separator: "\n")
    }
}

/// Debian's vpcd, when installed, measured as sites use it: vpcd listens (on every interface, so pcscd
/// runs in a network namespace of its own with only a loopback) and the daemon's vpcd card side dials it
/// from inside that namespace.
enum VPCDBench {
    static let driver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
    static let port: UInt16 = 35963

    static var installed: Bool { FileManager.default.fileExists(atPath: driver) }

    /// Writes vpcd's reader.conf entry (listening mode, as Debian installs it).
    static func writeEntry(configuration: String) throws {
        try """
            # Stock vpcd for `carte bench pcsc`, in its default listening mode (port \(port) + slot).
            FRIENDLYNAME "Virtual PCD"
            DEVICENAME   /dev/null:0x\(String(port, radix: 16, uppercase: true))
            LIBPATH      \(driver)
            CHANNELID    0x\(String(port, radix: 16, uppercase: true))

            """.write(toFile: URL(fileURLWithPath: configuration).appendingPathComponent("vpcd").path, atomically: true, encoding: .utf8)
    }

    /// Starts the card side in pcscd's network namespace.
    static func start(namespace: String, backend: SimulatorBackend, logger: Logger) throws -> VPCDCardSide? {
        guard let slot = backend.physicalReaders.first?.slots.first else { return nil }
        let side = try VPCDCardSide(slot: slot, host: "127.0.0.1", port: port, mode: .connect, networkNamespace: namespace, logger: logger)
        try side.start()
        return side
    }
}

/// A private pcscd loading CarteKit's driver for one in-process virtual mono-fente reader holding
/// `image` (plus whatever `extraEntries` declares), for benchmarks. Root only.
struct PrivateVirtualReader {
    let work: URL
    let backend: SimulatorBackend
    let server: SimulatorServer
    let pcscd: PrivatePCSCD

    static func start(image: CardImage, logger: Logger, isolateNetwork: Bool = false, lane: Bool = true,
                      extraEntries: (URL) throws -> Void = { _ in }) throws -> PrivateVirtualReader {
        try start(profile: .monoFente, images: [image], logger: logger, isolateNetwork: isolateNetwork, lane: lane, extraEntries: extraEntries)
    }

    /// A private pcscd for one in-process virtual reader with `profile`, its slots holding `images` in
    /// order; `timeout` is the driver's limit for a card's answer, in milliseconds.
    static func start(profile: VirtualReaderProfile, images: [CardImage], logger: Logger, timeout: Int = 30_000, isolateNetwork: Bool = false,
                      lane: Bool = true, extraEntries: (URL) throws -> Void = { _ in }) throws -> PrivateVirtualReader {
        try start(profiles: [profile], images: images, logger: logger, timeout: timeout, isolateNetwork: isolateNetwork, lane: lane, extraEntries: extraEntries)
    }

    /// A private pcscd for in-process virtual readers with `profiles` (one reader.conf entry each), their
    /// slots, in order, holding `images` (shorter: the remaining slots are empty). `lane: false` keeps the
    /// driver's APDUs on its socket (`lane=0`).
    static func start(profiles: [VirtualReaderProfile], images: [CardImage], logger: Logger, timeout: Int = 30_000, isolateNetwork: Bool = false,
                      lane: Bool = true, extraEntries: (URL) throws -> Void = { _ in }) throws -> PrivateVirtualReader {
        if let reason = PrivatePCSCD.unavailableReason {
            throw CLIError(kind: "bench", message: "cannot run a private pcscd: \(reason)", exitCode: CarteExit.cardOrReader)
        }
        let carteDriver = URL(fileURLWithPath: defaultDriverPath()).deletingLastPathComponent().appendingPathComponent("libifdcarte.so").path
        guard FileManager.default.fileExists(atPath: carteDriver) else {
            throw CLIError(kind: "bench", message: "\(carteDriver) is not built (swift build -c release)", exitCode: CarteExit.invalidInput)
        }
        // A fresh private directory (mkdtemp, 0700): pcscd runs as root and loads what it declares.
        let work = URL(fileURLWithPath: try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-bench"))
        let conf = work.appendingPathComponent("reader.conf.d")
        try FileManager.default.createDirectory(at: conf, withIntermediateDirectories: true)
        let backend = SimulatorBackend(profiles: profiles)
        for (image, slot) in zip(images, backend.readerNames) { try backend.insert(image, into: slot) }
        let socket = work.appendingPathComponent("sim.sock").path
        let server = SimulatorServer(backend: backend, path: socket, logger: logger, loadImage: { try SimulatorOptions.loadImage($0) })
        try server.start()
        // One file: pcscd numbers its readers in the order it reads them.
        let entries = try profiles.enumerated().map { i, profile in
            try SimCommand.ReaderConf.entry(name: profile.name, socket: socket, reader: i, slots: profile.slots.count, timeout: timeout, driver: carteDriver, uid: Int(getuid()),
                                            lane: lane)
        }
        try entries.joined(separator: "\n").write(toFile: conf.appendingPathComponent("cartekit-00").path, atomically: true, encoding: .utf8)
        try extraEntries(conf)
        let pcscd = PrivatePCSCD(configurationDirectory: conf.path, workDirectory: work.path, isolateNetwork: isolateNetwork)
        setenv("PCSCLITE_CSOCK_NAME", pcscd.clientSocket, 1)
        do {
            try pcscd.start()
        } catch {
            server.stop()
            try? FileManager.default.removeItem(at: work)
            throw error
        }
        return PrivateVirtualReader(work: work, backend: backend, server: server, pcscd: pcscd)
    }

    /// Waits (up to 10 s) for pcscd to show the virtual reader, then connects to its card exclusively.
    func connect(_ client: PCSCBackend) async throws -> PCSCConnection {
        var name: String? = nil
        for _ in 0..<500 where name == nil {
            name = (try? await client.readerNames())?.first
            if name == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard let name else { throw CLIError(kind: "bench", message: "pcscd shows no reader; see \(pcscd.logPath)", exitCode: CarteExit.cardOrReader) }
        return try await client.open(name, share: .exclusive)
    }

    /// Waits (up to 10 s) for pcscd to show its `count` virtual readers, then connects exclusively to
    /// the card of the `reader`-th (in the order of the configuration file).
    func connect(_ client: PCSCBackend, reader: Int, of count: Int) async throws -> PCSCConnection {
        var names: [String] = []
        for _ in 0..<500 where names.count < count {
            names = (try? await client.readerNames()) ?? []
            if names.count < count { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard names.count >= count, reader < names.count else {
            throw CLIError(kind: "bench", message: "pcscd shows \(names.count) of its \(count) readers; see \(pcscd.logPath)", exitCode: CarteExit.cardOrReader)
        }
        return try await client.open(names[reader], share: .exclusive)
    }

    func stop() {
        pcscd.stop()
        server.stop()
        try? FileManager.default.removeItem(at: work)
    }
}

