import ArgumentParser
import CarteCore
import CarteCPS
import CarteCrypto
import CarteKit
import CarteEmulator
import CarteImages
import CarteVitale
import Foundation

struct RecordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record a session with a card into a replay image (transcript and learned file system).",
        discussion: """
            Reads the card in --reader (a Vitale, or a CPx card without its PIN) and writes a card image that \
            replays it: the reader's identity (name, vendor, firmware), the ATR and protocol, every exchange with \
            its timing (replay.transcript), and the files the reads revealed (filesystem), so the image can also \
            answer reads in any order. The image holds the card's personal data as read: anonymise it before \
            sharing. Play it with --image IMAGE on any command (the simulator) or carte sim insert.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Reader (slot) to record: its name or a unique prefix.", valueName: "NAME"))
    var reader: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("The replay image to write.", valueName: "IMAGE"))
    var output: String

    @Option(help: "What to run: auto (from the ATR), vitale or cps.")
    var session: String = "auto"

    @Option(help: "How the replay matches commands: strict, cursor (default) or keyed.")
    var policy: String = "cursor"

    @Option(help: "What answers when the image is played: transcript (default) or filesystem.")
    var source: String = "transcript"

    func validate() throws {
        guard ["auto", "vitale", "cps"].contains(session) else { throw ValidationError("--session is auto, vitale or cps") }
        guard CardImage.Replay.Policy(rawValue: policy) != nil else { throw ValidationError("--policy is strict, cursor or keyed") }
        guard CardImage.Replay.Source(rawValue: source) != nil else { throw ValidationError("--source is transcript or filesystem") }
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            try FileIO.checkWritable(output, "the recorded image, -o")
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            let name = try await chooseReader(backend, requested: reader)
            let info = try await backend.readers().first { $0.name == name }
            let connection = try await backend.connect(to: name, share: .exclusive, protocols: [.t0, .t1])
            let recorder = RecordingTransport(connection)
            let channel = CardChannel(transport: recorder, trace: Trace(capacity: 64), logger: logger)
            let atr = await connection.atrBytes
            let proto = await connection.activeProtocol
            var kind = session
            if kind == "auto" {
                let detected = CardKind.fromATR(atr)
                if detected.isVitale { kind = "vitale" } else if detected.isCPx { kind = "cps" } else {
                    try? await connection.disconnect(.leave)
                    let what: String
                    if case .unknown = detected { what = "a card its ATR does not name (\(atr.hexString()))" } else { what = "a \(detected.description) card, which is not recorded by session" }
                    throw CLIError(kind: "record", message: "the card in \(name) is \(what); say --session vitale or cps", exitCode: CarteExit.cardOrReader)
                }
            }
            do {
                if kind == "vitale" {
                    _ = try await VitaleReader(channel: channel, logger: logger).read(atr: atr)
                } else {
                    let cps = try CPSReader(channel: channel, atr: atr, logger: logger)
                    _ = try await cps.read()
                    if cps.generation != .cps3Contactless { _ = try? await cps.pinStatus() }  // uses no try
                }
            } catch {
                try? await connection.disconnect(.leave)
                throw CLIError(kind: "record", message: "the \(kind) session failed: \(error)", exitCode: CarteExit.cardOrReader)
            }
            try? await connection.disconnect(.leave)
            let recording = CardImage.Recording(reader: name, vendor: info?.vendor, model: nil, firmware: info?.firmwareVersion,
                                                date: iso8601UTC(currentUnixTime()), session: kind)
            var image = ReplayRecorder.image(name: "Recorded \(kind) card from \(name)", atr: atr, protocolUsed: proto,
                                             exchanges: recorder.exchanges, recording: recording)
            image.replay?.policy = CardImage.Replay.Policy(rawValue: policy)!
            image.replay?.source = CardImage.Replay.Source(rawValue: source)!
            try writeImage(image, to: output, kind: "record")
            let report = RecordReport(image: output, reader: name, session: kind, exchanges: recorder.exchanges.count, files: image.root.fileCount)
            if global.json { Output.printJSON(report) } else {
                print("recorded \(report.exchanges) exchanges and \(report.files) files from \(name) into \(output) (holds the card's data: anonymise before sharing)")
            }
        }
    }
}

/// `carte record --json`, schema `carte.record/1` (docs/json.md).
struct RecordReport: Encodable {
    var schema = "carte.record/1"
    let image: String
    let reader: String
    let session: String
    let exchanges: Int
    let files: Int
}
