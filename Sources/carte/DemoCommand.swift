import ArgumentParser
import CarteCore
import CarteKit

import CarteVitale
import CarteEmulator
import CarteImages
import Foundation

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a Carte Vitale 2 reading sequence on a virtual reader with the bundled demo card.",
        discussion: """
            Plugs in a virtual bi-fente reader, inserts the synthetic demo Vitale 2 (or --image), and \
            sends the APDUs a Vitale reader sends (SELECT MF, READ SFI 2, SELECT VITALE, READ EF 2001, \
            READ SFI 2), showing every exchange — automatic GET RESPONSE and Le resends included — and \
            the BER-TLV content of each file; then reads the card with CarteVitale and prints who is on \
            it, as carte read does. No hardware, no pcscd needed.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var simulator: SimulatorOptions

    struct Step {
        let title: String
        let command: CommandAPDU
        let showsFile: Bool
    }

    static func steps() throws -> [Step] {
        let mfVitale: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02, 0x4D, 0x46, 0x5F, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45]
        let vitale: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45]
        return [
            Step(title: "Select the MF (3F00)", command: try .select(fid: 0x3F00, p1: 0x00, p2: 0x00), showsFile: false),
            Step(title: "Select MF_VITALE by AID", command: try .select(aid: mfVitale), showsFile: false),
            Step(title: "Read SFI 2 of MF_VITALE", command: try .readBinary(sfi: 2), showsFile: true),
            Step(title: "Select the VITALE application by AID", command: try .select(aid: vitale), showsFile: false),
            Step(title: "Select EF 2001 (pointers)", command: try .select(fid: 0x2001, p1: 0x02, p2: 0x00, le: 256), showsFile: false),
            Step(title: "Read EF 2001", command: try .readBinary(offset: 0), showsFile: true),
            Step(title: "Read SFI 2 of VITALE", command: try .readBinary(sfi: 2), showsFile: true),
        ]
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let backend = try simulator.makeBackend()
            let readerName = try await chooseReader(backend, requested: nil, wanted: .vitale)
            let connection = try await backend.connect(to: readerName, share: .exclusive, protocols: [.t0, .t1])
            let trace = Trace()
            let channel = CardChannel(transport: connection, trace: trace, logger: logger)
            let atrBytes = await connection.atrBytes
            let image = try backend.image(in: readerName)
            var report = DemoReport(
                reader: readerName, atr: atrBytes.hexString(),
                card: KnownATR.identify(atrBytes).first?.label, image: image?.name, synthetic: image?.synthetic ?? false,
                steps: [], trace: [])
            if !global.json {
                print("CarteKit demo — virtual reader, no hardware\n")
                print("Reader: \(readerName)")
                print("Card:   \(report.atr)  \(report.card ?? "unknown card")")
                if let name = report.image { print("Image:  \(name)\(report.synthetic ? " — SYNTHETIC data, no real person" : "")") }
            }
            for step in try DemoCommand.steps() {
                let before = trace.nextSequence
                let response = try await channel.transmit(step.command)
                let events = trace.events(from: before)
                var tlv: [String]? = nil
                var tlvError: String? = nil
                if step.showsFile && response.statusWord.isSuccess {
                    do {
                        tlv = try TLV.decode(response.data).map { $0.dump() }
                    } catch {
                        tlvError = "\(error)"
                    }
                }
                report.steps.append(.init(title: step.title, sw: response.statusWord.description, meaning: response.statusWord.meaning,
                                          dataLength: response.data.count, tlv: tlv, tlvError: tlvError))
                if !global.json {
                    print("\n\(step.title)")
                    for e in events { print("  " + e.line) }
                    print("  => \(response.statusWord): \(response.statusWord.meaning)")
                    if let tlv { for block in tlv { print(block.split(separator: "\n").map { "     " + $0 }.joined(separator: "\n")) } }
                    if let tlvError { print("     (content is not BER-TLV: \(tlvError))") }
                }
            }
            // The same card read by CarteVitale: the typed model a health application gets.
            let vitale: VitaleCard?
            do throws(VitaleError) {
                vitale = try await VitaleReader(channel: channel, logger: logger).read(atr: atrBytes)
            } catch {
                vitale = nil
                if !global.json { print("\nNot a Carte Vitale this reader can decode: \(error)") }
            }
            try await connection.disconnect(.reset)
            report.trace = trace.events.map(\.line)
            if let vitale {
                let summary = VitaleReport(vitale, reader: readerName, on: try VitaleDate.todayInParis())
                report.vitale = summary
                if !global.json { print("\n" + summary.text) }
            }
            let automatic = trace.events.filter { $0.marker != nil && $0.direction == .toCard }.count
            if global.json {
                Output.printJSON(report)
            } else {
                print("\n\(trace.events.count / 2) exchanges, \(automatic) of them automatic (GET RESPONSE / Le resend).")
            }
        }
    }
}

/// `carte demo --json` output, schema `carte.demo/1` (docs/json.md).
struct DemoReport: Encodable {
    var schema = "carte.demo/1"
    let reader: String
    let atr: String
    let card: String?
    let image: String?
    let synthetic: Bool
    var steps: [Step]
    var trace: [String]
    /// The card read by CarteVitale (schema carte.vitale/1 inside), when it is a Vitale.
    var vitale: VitaleReport?

    struct Step: Encodable {
        let title: String
        let sw: String
        let meaning: String
        let dataLength: Int
        let tlv: [String]?
        let tlvError: String?
    }
}
