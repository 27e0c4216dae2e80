import ArgumentParser
import CarteCore
import CarteKit
import CarteVitale
import Foundation

struct ReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Read a Carte Vitale: who is on the card, and whether their rights are open on a date.",
        discussion: """
            Reads the card in --reader (default: the first slot holding a card) with the fewest APDUs. \
            Rights, C2S, ALD and AMC come from CarteKit's synthetic card layout: a real card keeps \
            them in an unpublished place, so they are shown as absent, not guessed. Problems in the \
            card's data (a wrong NIR key, a bad date, a damaged file) are listed, never hidden.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Reader (slot) to use: its name or a unique prefix.", valueName: "NAME"))
    var reader: String?

    @Option(help: ArgumentHelp("The date rights are evaluated on (default: today).", valueName: "YYYY-MM-DD"))
    var date: String?

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let day = try evaluationDate()
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            let name = try await chooseReader(backend, requested: reader)
            let connection = try await backend.connect(to: name, share: .exclusive, protocols: [.t0, .t1])
            let channel = CardChannel(transport: connection, trace: Trace(), logger: logger)
            let card: VitaleCard
            do throws(VitaleError) {
                card = try await VitaleReader(channel: channel, logger: logger).read(atr: await connection.atrBytes)
            } catch {
                try? await connection.disconnect(.leave)
                throw CLIError(kind: "vitale", message: error.description, exitCode: error.isCardProblem ? CarteExit.cardOrReader : CarteExit.invalidInput)
            }
            try? await connection.disconnect(.leave)
            let report = VitaleReport(card, reader: name, on: day)
            if global.json { Output.printJSON(report) } else { print(report.text) }
        }
    }

    private func evaluationDate() throws -> VitaleDate {
        if let date {
            let digits = date.replacingOccurrences(of: "-", with: "")
            guard date.count == 10, let d = VitaleDate(digits), !d.isLunar else {
                throw CLIError(kind: "usage", message: "--date takes a calendar date YYYY-MM-DD, not \"\(date)\"", exitCode: ExitCode.validationFailure.rawValue)
            }
            return d
        }
        return try VitaleDate.todayInParis()
    }
}

extension VitaleError {
    /// Whether the failure comes from the card or reader (exit 3) rather than from bad card data (exit 2).
    var isCardProblem: Bool {
        switch self {
        case .card, .notAVitale, .unreadable: return true
        case .malformed: return false
        }
    }
}

