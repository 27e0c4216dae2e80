import ArgumentParser
import CarteApCV
import CarteCore
import CarteKit
import CarteVitale
import Foundation

struct ReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Read a Carte Vitale (or the appli carte Vitale of a phone): who is on it, and whether their rights are open on a date.",
        discussion: """
            Reads the card in --reader (default: the first slot holding a card) with the fewest APDUs. \
            Rights, C2S, ALD and AMC come from CarteKit's synthetic card layout: a real card keeps \
            them in an unpublished place, so they are shown as absent, not guessed. Problems in the \
            card's data (a wrong NIR key, a bad date, a damaged file) are listed, never hidden.

            A phone with the appli carte Vitale in a contactless slot (--profile contactless --image \
            bundled:apcv/claire-exemple.yaml), or the text of its QR code (--qr PAYLOAD, or --qr - to read \
            one line from standard input as a scanner types it), gives the same output: the phone's \
            single-use session token is resolved into the identity by the simulated insurer's service, \
            in process or at --apcv-service HOST:PORT. The apCV protocol is CarteKit's SYNTHETIC one \
            (docs/apcv.md): the real one is not public.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Reader (slot) to use: its name or a unique prefix.", valueName: "NAME"))
    var reader: String?

    @Option(help: ArgumentHelp("The date rights are evaluated on (default: today).", valueName: "YYYY-MM-DD"))
    var date: String?

    @Option(help: ArgumentHelp("Read the appli carte Vitale from its scanned QR code text instead of a reader (- reads one line from standard input).", valueName: "PAYLOAD"))
    var qr: String?

    @OptionGroup var apcv: ApCVOptions

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let day = try evaluationDate()
            if let qr {
                // A scanner types into standard input: read it on a thread of its own, not the concurrency pool.
                let text = qr == "-" ? await onDedicatedThread { readLine(strippingNewline: true) ?? "" } : qr
                let resolver = try await apcv.resolver(inserted: [])
                let card = try await ApCVSource(.qr(text), resolver: resolver, configuration: configuration, logger: logger).read()
                let report = VitaleReport(card, reader: "qr", on: day)
                if global.json { Output.printJSON(report) } else { print(report.text) }
                return
            }
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            let name = try await chooseReader(backend, requested: reader, wanted: .vitale)
            let connection = try await backend.connect(to: name, share: .exclusive, protocols: [.t0, .t1])
            let channel = CardChannel(transport: connection, trace: Trace(), logger: logger)
            let card: VitaleCard
            let atr = await connection.atrBytes
            let kind: CardKind
            do { kind = try await CardKind.detect(atr: atr, channel: channel, apcvAID: configuration.aid) } catch {
                try? await connection.disconnect(.leave)
                throw error
            }
            if kind == .apcv {
                do {
                    let inserted = backendChoice.backend == .simulator ? try simulator.namedImages() : []
                    card = try await ApCVSource(.nfc(channel), resolver: try await apcv.resolver(inserted: inserted), configuration: configuration, logger: logger).read()
                } catch {
                    try? await connection.disconnect(.leave)
                    throw error
                }
            } else {
                do throws(VitaleError) {
                    card = try await VitaleReader(channel: channel, logger: logger).read(atr: atr)
                } catch {
                    try? await connection.disconnect(.leave)
                    throw CLIError(kind: "vitale", message: error.description, exitCode: error.isCardProblem ? CarteExit.cardOrReader : CarteExit.invalidInput)
                }
            }
            try? await connection.disconnect(.leave)
            let report = VitaleReport(card, reader: name, on: day)
            if global.json { Output.printJSON(report) } else { print(report.text) }
        }
    }

    private var configuration: ApCVProtocol.Configuration { ApCVProtocol.Configuration(softwareID: apcv.softwareID) }

    private func evaluationDate() throws -> VitaleDate {
        if let date {
            guard let d = VitaleDate(iso: date) else {
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

