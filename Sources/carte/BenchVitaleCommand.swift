import ArgumentParser
import CarteCore
import CarteKit
import CartePCSC
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation

extension BenchCommand {
    struct Vitale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "vitale",
            abstract: "APDU count and time of a full Carte Vitale read, in memory and through pcscd.",
            discussion: """
                Reads a persona (default: the family of seven) --reads times in memory, then through a \
                private pcscd loading libifdcarte.so (root only; skipped with the reason otherwise). The \
                reference, measured in the same run, is one SELECT round trip on the same path: a read's \
                time is also shown as a number of such round trips. Goals: at most 12 APDUs; at most 1.5 ms \
                per read through pcscd, and at most 8.5 round trips.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("The card to read.", valueName: "PERSONA|IMAGE"))
        var persona: String = "bundled:vitale/family-five.yaml"

        @Option(help: "Reads measured on each path (after 20 warm-up reads).")
        var reads: Int = 300

        func validate() throws {
            guard (10...100_000).contains(reads) else { throw ValidationError("--reads must be in 10...100000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let image = try SimulatorOptions.loadImage(persona)
                var rows: [BenchVitaleReport.Row] = []

                // In memory.
                let memory = SimulatorBackend(profiles: [.monoFente])
                try memory.insert(image, into: memory.readerNames[0])
                let memoryChannel = CardChannel(transport: try memory.connectNow(to: memory.readerNames[0]), trace: Trace(capacity: 64))
                rows.append(try await measure("in memory (simulator)", memoryChannel))

                // Through pcscd.
                var skipped: String? = nil
                if PrivatePCSCD.unavailableReason == nil {
                    let setup = try PrivateVirtualReader.start(image: image, logger: logger)
                    defer { setup.stop() }
                    let connection = try await setup.connect(PCSCBackend(logger: logger))
                    // As a session reads: on the connection's own thread (no thread switch per APDU).
                    let channel = CardChannel(transport: connection, trace: Trace(capacity: 64))
                    rows.append(try await withTaskExecutorPreference(connection.taskExecutor) {
                        try await measure("through pcscd (libifdcarte.so), as a session", channel)
                    })
                    try? await connection.disconnect(.leave)
                } else {
                    skipped = "through pcscd not measured: \(PrivatePCSCD.unavailableReason!)"
                }
                let pcscRow = rows.count > 1 ? rows[1] : nil
                let report = BenchVitaleReport(persona: persona, rows: rows, skipped: skipped, goalAPDUs: 12, goalMillisecondsThroughPCSC: 1.5,
                                               goalRoundTripsThroughPCSC: 8.5,
                                               goalMet: rows.allSatisfy { $0.apdus <= 12 } && (pcscRow.map { $0.medianMilliseconds <= 1.5 && $0.readInRoundTrips <= 8.5 } ?? true),
                                               build: BuildMode.current)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        /// Times full reads and single SELECT round trips (the reference) on `channel`, one of each in
        /// turn, so that drift (CPU frequency, other load) weighs on both alike.
        private func measure(_ name: String, _ channel: CardChannel) async throws -> BenchVitaleReport.Row {
            let reader = VitaleReader(channel: channel)
            var apdus = 0
            for _ in 0..<20 { apdus = try await reader.read().apduCount }
            let select = try CommandAPDU.select(aid: VitaleReader.vitaleAID, p2: 0x0C, le: nil)
            for _ in 0..<20 { _ = try await channel.transmit(select) }
            let clock = ContinuousClock()
            var times: [Double] = []
            var references: [Double] = []
            for _ in 0..<reads {
                var start = clock.now
                let card = try await reader.read()
                times.append((clock.now - start).microseconds / 1000)
                apdus = card.apduCount
                start = clock.now
                _ = try await channel.transmit(select)
                references.append((clock.now - start).microseconds / 1000)
            }
            let median = percentile(times, 0.5)
            let reference = percentile(references, 0.5)
            return .init(name: name, apdus: apdus, medianMilliseconds: median, p99Milliseconds: percentile(times, 0.99),
                         selectRoundTripMilliseconds: reference, readInRoundTrips: median / reference)
        }
    }
}

/// `carte bench vitale --json`, schema `carte.bench-vitale/1` (docs/json.md).
struct BenchVitaleReport: Encodable {
    var schema = "carte.bench-vitale/1"
    let persona: String
    let rows: [Row]
    let skipped: String?
    let goalAPDUs: Int
    let goalMillisecondsThroughPCSC: Double
    /// The read through pcscd in SELECT round trips of the same run, at most.
    let goalRoundTripsThroughPCSC: Double
    let goalMet: Bool
    let build: String

    struct Row: Encodable {
        let name: String
        let apdus: Int
        let medianMilliseconds: Double
        let p99Milliseconds: Double
        /// The reference: one SELECT round trip on the same path, median.
        let selectRoundTripMilliseconds: Double
        /// The median read divided by the reference.
        let readInRoundTrips: Double
    }

    var text: String {
        var lines = ["carte bench vitale (\(build) build): full reads of \(persona)", ""]
        for r in rows {
            lines.append("\(r.name): \(r.apdus) APDUs, median \(String(format: "%.3f", r.medianMilliseconds)) ms, p99 \(String(format: "%.3f", r.p99Milliseconds)) ms"
                + " = \(String(format: "%.1f", r.readInRoundTrips)) x one SELECT round trip (\(String(format: "%.3f", r.selectRoundTripMilliseconds)) ms)")
        }
        if let skipped { lines.append(skipped) }
        lines.append("")
        lines.append("Goals: <= \(goalAPDUs) APDUs, <= \(goalMillisecondsThroughPCSC) ms and <= \(goalRoundTripsThroughPCSC) round trips through pcscd: \(goalMet ? "met" : "NOT met")")
        return lines.joined(separator: "\n")
    }
}
