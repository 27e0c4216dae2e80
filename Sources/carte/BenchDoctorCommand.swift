import ArgumentParser
import CarteCore
import CarteDoctor
import CartePCSC
import CarteImages
import Foundation

extension BenchCommand {
    struct Doctor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "doctor",
            abstract: "Time of a full carte doctor run against three virtual readers behind a private pcscd.",
            discussion: """
                Root only: a private pcscd loads libifdcarte.so with three virtual readers (bi-fente with a \
                Vitale and a CPS, mono-fente with a card, contactless), and the whole diagnosis (pcscd, \
                readers, three card probes, USB through libusb, udev) runs --runs times in process. The \
                reference, measured in the same run, is listing the readers with their attributes (what \
                carte readers does). Goal: at most 2 s per run.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Runs measured (after 2 warm-up runs).")
        var runs: Int = 20

        func validate() throws {
            guard (3...1000).contains(runs) else { throw ValidationError("--runs must be in 3...1000") }
        }

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let images = [try SimulatorOptions.loadImage("bundled:demo/vitale2-demo.yaml"), try SimulatorOptions.loadImage("bundled:cps/medecin-liberal.yaml"),
                              try SimulatorOptions.loadImage("bundled:demo/iso-generic.yaml")]
                let setup = try PrivateVirtualReader.start(profiles: [.biFente, .monoFente, .contactless], images: images, logger: logger, timeout: 2000)
                defer { setup.stop() }
                let backend = PCSCBackend(logger: logger)
                var slots = 0
                for _ in 0..<500 where slots < 4 {
                    slots = (try? await backend.readerNames())?.count ?? 0
                    if slots < 4 { try await Task.sleep(for: .milliseconds(20)) }
                }
                guard slots == 4 else { throw CLIError(kind: "bench", message: "pcscd shows \(slots) slot(s), not 4; see \(setup.pcscd.logPath)", exitCode: CarteExit.cardOrReader) }
                let doctor = CarteDoctor.Doctor(backend: backend, carteVersion: CarteVersion.string, logger: logger)
                let clock = ContinuousClock()
                var doctorTimes: [Double] = []
                var listTimes: [Double] = []
                var last: DoctorReport?
                for i in 0..<(runs + 2) {
                    let start = clock.now
                    let report = await doctor.run()
                    let elapsed = (clock.now - start).milliseconds
                    let listStart = clock.now
                    _ = try await backend.readers()
                    let listed = (clock.now - listStart).milliseconds
                    if i >= 2 {
                        doctorTimes.append(elapsed)
                        listTimes.append(listed)
                    }
                    last = report
                }
                let cards = last?.checks.filter { $0.id.hasPrefix("card.") && $0.status == .ok }.count ?? 0
                guard cards == 3 else {
                    throw CLIError(kind: "bench", message: "the diagnosis probed \(cards) card(s), not 3: " + (last.map { $0.text(colour: false) } ?? ""), exitCode: CarteExit.cardOrReader)
                }
                doctorTimes.sort()
                listTimes.sort()
                let median = percentile(doctorTimes, 0.5), worst = doctorTimes.last ?? 0, reference = percentile(listTimes, 0.5)
                let report = BenchDoctorReport(runs: runs, readers: 3, cardsProbed: cards, medianMilliseconds: median, p95Milliseconds: percentile(doctorTimes, 0.95),
                                               maxMilliseconds: worst, referenceMilliseconds: reference, ratioToReference: reference > 0 ? median / reference : 0,
                                               goalMilliseconds: 2000, goalMet: worst <= 2000)
                if global.json { Output.printJSON(report) } else {
                    print(String(format: "carte doctor, 3 virtual readers behind a private pcscd, %d runs:", runs))
                    print(String(format: "  median %.1f ms, p95 %.1f ms, max %.1f ms (goal ≤ 2000 ms: %@)", median, report.p95Milliseconds, worst, report.goalMet ? "met" : "NOT met"))
                    print(String(format: "  reference: listing the 4 slots with their attributes, median %.2f ms → the diagnosis is ×%.1f", reference, report.ratioToReference))
                    print(String(format: "  %.1f %% of the 2 s budget", median / 20))
                }
                if !report.goalMet { throw ExitCode(1) }
            }
        }
    }
}

/// `carte bench doctor --json`, schema `carte.bench-doctor/1` (docs/json.md).
struct BenchDoctorReport: Encodable {
    var schema = "carte.bench-doctor/1"
    let runs: Int
    let readers: Int
    let cardsProbed: Int
    let medianMilliseconds: Double
    let p95Milliseconds: Double
    let maxMilliseconds: Double
    let referenceMilliseconds: Double
    let ratioToReference: Double
    let goalMilliseconds: Double
    let goalMet: Bool
}
