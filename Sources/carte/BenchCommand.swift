import ArgumentParser
import CarteBundledImages
import CarteCore
import CarteEmulator
import CarteSimDaemon
import CarteImages

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure CarteKit's speed against references measured in the same run.",
        subcommands: [Core.self, PCSC.self, Vitale.self, CPS.self, ApCV.self, Rights.self, Doctor.self]
    )

    struct Core: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "core",
            abstract: "In-process SELECT + READ BINARY throughput on the simulator, at each layer.",
            discussion: """
                Build in release mode first (swift build -c release) — debug builds are 10-50x slower. \
                Each row runs for --seconds and reports APDUs per second, nanoseconds per APDU and the \
                ratio to the reference row (a null card answering 90 00, called the same way), measured \
                in the same run. Goal: at least 1,000,000 APDU/s for the simulator card itself.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Seconds to run each row.")
        var seconds: Double = 1.0

        func validate() throws {
            guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        }

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                let generic = try SimulatorOptions.loadImage("bundled:demo/iso-generic.yaml")
                let vitale = try SimulatorOptions.loadImage("bundled:demo/vitale2-demo.yaml")
                let select: [UInt8] = [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x01, 0x01]
                let read: [UInt8] = [0x00, 0xB0, 0x00, 0x00, 0x10]
                let duration = Duration.milliseconds(Int(seconds * 1000))
                var rows: [BenchReport.Row] = []
                var reference = 0.0
                /// Measures `body` (which sends `perIteration` APDUs per call) and adds a row.
                func row(_ name: String, perIteration: Int = 2, _ body: (Int) async throws -> Void) async throws -> Double {
                    let rate = try await measure(duration, perIteration: perIteration, body)
                    if rows.isEmpty { reference = rate }
                    rows.append(.init(name: name, apduPerSecond: rate, ratio: rate / reference))
                    return rate
                }

                // Reference: a null card (answers 90 00), called directly.
                let nullCard = NullCard()
                _ = try await row("reference: null card, direct call") { n in
                    for _ in 0..<n {
                        blackHole(nullCard.process(select))
                        blackHole(nullCard.process(read))
                    }
                }
                let card = SimulatedCard(image: generic)
                let direct = try await row("simulator card, direct call (goal >= 1,000,000/s)") { n in
                    for _ in 0..<n {
                        blackHole(card.process(select))
                        blackHole(card.process(read))
                    }
                }
                let backend = SimulatorBackend(profiles: [.monoFente])
                let slot = backend.readerNames[0]
                try backend.insert(generic, into: slot)
                let connection = try backend.connectNow(to: slot)
                _ = try await row("simulator via connection (slot lock)") { n in
                    for _ in 0..<n {
                        blackHole(try connection.transmitNow(select))
                        blackHole(try connection.transmitNow(read))
                    }
                }
                // The daemon's path for the pcscd driver (faults applied), without and with the activity
                // log every daemon keeps for its consoles (events, traces): what that log costs per APDU.
                for observed in [false, true] {
                    let served = SimulatorBackend(profiles: [.monoFente])
                    try served.insert(generic, into: served.readerNames[0])
                    let log = SimulatorActivityLog()
                    if observed { log.attach(to: served) }
                    let driverSlot = served.physicalReaders[0].slots[0]
                    _ = try await row(observed ? "simulator as the daemon serves the driver, with its activity log" : "simulator as the daemon serves the driver (no activity log)") { n in
                        for _ in 0..<n {
                            blackHole(driverSlot.transmitRaw(select))
                            blackHole(driverSlot.transmitRaw(read))
                        }
                    }
                    withExtendedLifetime(log) {}
                }
                let selectAPDU = try CommandAPDU(bytes: select)
                let readAPDU = try CommandAPDU(bytes: read)
                for (name, channel) in [
                    ("null card via CardChannel (async, policy)", CardChannel(transport: NullTransport())),
                    ("simulator via CardChannel (async, policy)", CardChannel(transport: connection)),
                    ("simulator via CardChannel + Trace", CardChannel(transport: connection, trace: Trace(capacity: 4096))),
                ] {
                    _ = try await row(name) { n in
                        for _ in 0..<n {
                            blackHole(try await channel.transmit(selectAPDU))
                            blackHole(try await channel.transmit(readAPDU))
                        }
                    }
                }
                // T=0 Vitale: SELECT AID (61xx -> GET RESPONSE) + READ SFI 2 (6Cxx -> resend): 4 APDUs per iteration.
                try backend.insert(vitale, into: slot)
                let vChannel = CardChannel(transport: try backend.connectNow(to: slot))
                let selectVitale = try CommandAPDU.select(aid: [0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45])
                let readSFI = try CommandAPDU.readBinary(sfi: 2)
                _ = try await row("Vitale 2 T=0 via CardChannel (automatic 61xx/6Cxx exchanges counted)", perIteration: 4) { n in
                    for _ in 0..<n {
                        blackHole(try await vChannel.transmit(selectVitale))
                        blackHole(try await vChannel.transmit(readSFI))
                    }
                }

                let report = BenchReport(rows: rows, goalAPDUPerSecond: 1_000_000, goalMet: direct >= 1_000_000, seconds: seconds, build: BuildMode.current)
                if global.json {
                    Output.printJSON(report)
                } else {
                    print(report.text)
                }
            }
        }
    }
}

enum BuildMode {
    #if DEBUG
    static let current = "debug"
    #else
    static let current = "release"
    #endif
}

/// A card that answers every command with 90 00: the floor of a call path.
final class NullCard {
    let ok: [UInt8] = [0x90, 0x00]
    @inline(never) func process(_ apdu: [UInt8]) -> [UInt8] { apdu.isEmpty ? [] : ok }
}

struct NullTransport: CardTransport {
    var capabilities: TransportCapabilities { .extended }
    func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] { command.isEmpty ? [] : [0x90, 0x00] }
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Runs `body(batch)` (which loops `batch` times itself, so the harness costs nothing per APDU) in
/// growing batches until `duration` has passed, after a warm-up; returns APDUs per second, counting
/// `perIteration` APDUs per loop turn.
func measure(_ duration: Duration, perIteration: Int, _ body: (Int) async throws -> Void) async throws -> Double {
    try await body(1000)
    var calls = 0
    var batch = 1000
    let clock = ContinuousClock()
    let start = clock.now
    while true {
        try await body(batch)
        calls += batch
        let elapsed = clock.now - start
        if elapsed >= duration { return Double(calls * perIteration) / elapsed.seconds }
        batch = min(batch * 2, 1 << 20)
    }
}

/// `carte bench core --json` output, schema `carte.bench-core/1` (docs/json.md).
struct BenchReport: Encodable {
    var schema = "carte.bench-core/1"
    let rows: [Row]
    let goalAPDUPerSecond: Double
    let goalMet: Bool
    let seconds: Double
    let build: String

    struct Row: Encodable {
        let name: String
        let apduPerSecond: Double
        /// Throughput relative to the reference row (1 = as fast as a null card called directly).
        let ratio: Double
        var nanosecondsPerAPDU: Double { 1e9 / apduPerSecond }
        enum CodingKeys: String, CodingKey { case name, apduPerSecond, ratio, nanosecondsPerAPDU }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(apduPerSecond.rounded(), forKey: .apduPerSecond)
            try c.encode((ratio * 1000).rounded() / 1000, forKey: .ratio)
            try c.encode((nanosecondsPerAPDU * 10).rounded() / 10, forKey: .nanosecondsPerAPDU)
        }
    }

    var text: String {
        func group(_ v: Double) -> String {
            let digits = String(Int(v.rounded()))
            var out = ""
            for (i, c) in digits.reversed().enumerated() {
                if i > 0 && i % 3 == 0 { out.append(",") }
                out.append(c)
            }
            return String(out.reversed())
        }
        var lines = ["carte bench core (\(build) build, \(seconds) s per row)", ""]
        let width = rows.map(\.name.count).max() ?? 0
        for r in rows {
            let pad = String(repeating: " ", count: width - r.name.count)
            let ns = (r.nanosecondsPerAPDU * 10).rounded() / 10
            let ratio = (r.ratio * 1000).rounded() / 1000
            lines.append("\(r.name)\(pad)  \(group(r.apduPerSecond)) APDU/s  \(ns) ns/APDU  x\(ratio) of reference")
        }
        lines.append("")
        lines.append("Goal >= \(group(goalAPDUPerSecond)) APDU/s for the simulator card: \(goalMet ? "met" : "NOT met")\(build == "debug" ? " (debug build: rebuild with -c release to judge)" : "")")
        return lines.joined(separator: "\n")
    }
}
