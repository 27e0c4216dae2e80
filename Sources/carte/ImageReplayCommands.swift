import ArgumentParser
import CarteCore
import CarteCrypto
import CarteEmulator
import CarteImages
import Foundation

extension ImageCommand {
    struct Anonymise: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "anonymise",
            abstract: "Rewrite the personal data of a card image (a recorded or imported one) so it can be shared.",
            discussion: """
                Reads IMAGE with the card application it holds (Carte Vitale or CPx card) to find its personal \
                fields — names, NIR, birth dates, serial numbers, RPPS/ADELI and other identifiers — and rewrites \
                each consistently in the files, the records and the recorded exchanges: the same value always \
                gets the same replacement of the same length, a NIR gets a correct new key, an RPPS number a \
                correct Luhn digit, a birth date stays in its year. The report names each field rewritten, its \
                new value and how many places held it; original values are never shown.

                Nothing is written (exit 2) when a personal value would remain anywhere in the image (in a form \
                the rewriting does not know, for example in mixed case inside a certificate), when the image \
                reads back differently, or when it is neither a Vitale nor a CPx card. Certificates whose \
                subject held personal data are rewritten too and no longer verify: the report says so.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: ArgumentHelp("The card image to anonymise (carte-image/1; bundled:PATH allowed).", valueName: "IMAGE"))
        var input: String

        @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the anonymised image.", valueName: "IMAGE"))
        var output: String

        @Option(help: ArgumentHelp("Seed of the replacement values (the same seed gives the same values; default: random).", valueName: "N"))
        var seed: UInt64?

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                let image = try SimulatorOptions.loadImage(input)
                let seed = try self.seed ?? {
                    do { return try secureRandomBytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } } catch {
                        throw CLIError(kind: "anonymise", message: "no random seed: \(error)", exitCode: CarteExit.unexpected)
                    }
                }()
                let result: (image: CardImage, report: ImageAnonymiser.Report)
                do { result = try await ImageAnonymiser.anonymise(image, seed: seed) } catch {
                    throw CLIError(kind: "anonymise", message: "\(input): \(error)", exitCode: CarteExit.invalidInput)
                }
                try writeImage(result.image, to: output, kind: "anonymise")
                let report = AnonymiseReport(input: input, output: output, card: result.report.card, replacements: result.report.replacements, notes: result.report.notes)
                if global.json { Output.printJSON(report) } else {
                    print("anonymised \(input) (\(report.card)) into \(output):")
                    for r in report.replacements { print("  \(r.field) → \(r.replacement) (\(r.occurrences) place\(r.occurrences == 1 ? "" : "s"))") }
                    for n in report.notes { print("  note: \(n)") }
                }
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Turn a pcscd --apdu log or pcsc-spy output into a replay image.",
            discussion: """
                The exchanges of LOG become the image's transcript (with their timing) and its file system is \
                learned from them, as carte record does. pcscd's log comes from `pcscd --foreground --debug --apdu` \
                (or the journal); pcsc-spy's from `pcsc-spy -n > FILE` while the program runs with \
                LD_PRELOAD=libpcscspy.so. When the capture shows cards in several readers, --reader picks one; \
                the ATR comes from the capture (pcscd's "Card ATR:", pcsc-spy's SCardStatus) or from --atr. \
                The image holds the card's data as captured: anonymise it before sharing.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: ArgumentHelp("The capture: a pcscd --apdu log or pcsc-spy output ('-' for standard input).", valueName: "LOG"))
        var log: String

        @Option(name: .shortAndLong, help: ArgumentHelp("The replay image to write.", valueName: "IMAGE"))
        var output: String

        @Option(help: "The capture's format: auto (default), pcscd-log or pcsc-spy.")
        var format: String = "auto"

        @Option(name: .shortAndLong, help: ArgumentHelp("The reader whose exchanges to import (its name or a unique prefix), when the capture shows several.", valueName: "NAME"))
        var reader: String?

        @Option(help: ArgumentHelp("The card's ATR, when the capture does not show it.", valueName: "HEX"))
        var atr: String?

        @Option(help: "How the replay matches commands: strict, cursor (default) or keyed.")
        var policy: String = "cursor"

        @Option(help: "What answers when the image is played: transcript (default) or filesystem.")
        var source: String = "transcript"

        func validate() throws {
            guard format == "auto" || ReplayImporter.Format(rawValue: format) != nil else { throw ValidationError("--format is auto, pcscd-log or pcsc-spy") }
            guard CardImage.Replay.Policy(rawValue: policy) != nil else { throw ValidationError("--policy is strict, cursor or keyed") }
            guard CardImage.Replay.Source(rawValue: source) != nil else { throw ValidationError("--source is transcript or filesystem") }
        }

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                let text: String
                if log == "-" {
                    text = await onDedicatedThread { var all = ""; while let l = readLine(strippingNewline: false) { all += l }; return all }
                } else {
                    text = String(decoding: try FileIO.read(log, "the capture to import"), as: UTF8.self)
                }
                let atrBytes = try atr.map { try ATR(hex: $0).bytes }
                let chosen = format == "auto" ? ReplayImporter.Format.detect(text) : ReplayImporter.Format(rawValue: format)
                let image: CardImage
                let capture: ReplayImporter.Capture
                do {
                    guard let chosen else { throw ReplayImporter.ImportError.unknownFormat }
                    capture = try ReplayImporter.parse(text, format: chosen, reader: reader)
                    let name = log == "-" ? "standard input" : URL(fileURLWithPath: log).lastPathComponent
                    image = try ReplayImporter.image(capture, source: "\(chosen.rawValue) \(name)", date: iso8601UTC(currentUnixTime()), atr: atrBytes)
                } catch let error as ReplayImporter.ImportError {
                    throw CLIError(kind: "import", message: "\(log): \(error.description)", exitCode: CarteExit.invalidInput)
                }
                var out = image
                out.replay?.policy = CardImage.Replay.Policy(rawValue: policy)!
                out.replay?.source = CardImage.Replay.Source(rawValue: source)!
                try writeImage(out, to: output, kind: "import")
                let report = ImportReport(log: log, image: output, reader: capture.reader, exchanges: capture.exchanges.count, unanswered: capture.unanswered,
                                          files: out.root.fileCount)
                if global.json { Output.printJSON(report) } else {
                    print("imported \(report.exchanges) exchanges\(report.reader.map { " with \($0)" } ?? "") and learned \(report.files) files into \(output)"
                          + (report.unanswered > 0 ? " (\(report.unanswered) command(s) without an answer skipped)" : "") + "; it holds the card's data: anonymise before sharing")
                }
            }
        }
    }
}

/// Writes `image` as YAML (carte-image/1) to `path`, or says why it cannot (exit 2).
func writeImage(_ image: CardImage, to path: String, kind: String) throws {
    try FileIO.write(CardImageWriter.yaml(image), to: path, "the \(kind == "record" ? "recorded" : "replay") image, -o")
}

/// `carte image anonymise --json`, schema `carte.anonymise/1` (docs/json.md).
struct AnonymiseReport: Encodable {
    var schema = "carte.anonymise/1"
    let input: String
    let output: String
    let card: String
    let replacements: [ImageAnonymiser.Replacement]
    let notes: [String]
}

/// `carte image import --json`, schema `carte.import/1` (docs/json.md).
struct ImportReport: Encodable {
    var schema = "carte.import/1"
    let log: String
    let image: String
    let reader: String?
    let exchanges: Int
    let unanswered: Int
    let files: Int
}

extension CardImage.DedicatedFile {
    /// Files under this DF (DFs and EFs, not counting itself).
    var fileCount: Int {
        children.reduce(0) { n, child in
            switch child {
            case .dedicated(let sub): return n + 1 + sub.fileCount
            case .elementary: return n + 1
            }
        }
    }
}
