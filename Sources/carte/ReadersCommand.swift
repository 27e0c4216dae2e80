import ArgumentParser
import CarteCore
import CarteEmulator
import CarteImages

struct ReadersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "readers",
        abstract: "List readers and their slots, with what each slot holds.",
        discussion: "Each slot is listed under the name applications connect with (pcsc-lite style: '<reader> NN SS')."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            var report = ReadersReport(backend: backendChoice.backend.rawValue, readers: [])
            for info in try await backend.readers() {
                let state = try await backend.state(of: info.name)
                var entry = ReadersReport.Reader(info: info, state: "empty", atr: nil, card: nil, image: nil, synthetic: nil)
                switch state {
                case .empty: break
                case .mute: entry.state = "mute"
                case .present(let atr):
                    entry.state = "card"
                    entry.atr = atr.hexString()
                    entry.card = KnownATR.identify(atr).first?.label
                    if let simulated = backend as? SimulatorBackend, let image = try simulated.image(in: info.name) {
                        entry.image = image.name
                        entry.synthetic = image.synthetic
                    }
                }
                report.readers.append(entry)
            }
            if global.json {
                Output.printJSON(report)
                return
            }
            if report.readers.isEmpty {
                print("No reader.")
                return
            }
            var lastPhysical = ""
            for r in report.readers {
                if r.info.physicalReader != lastPhysical {
                    lastPhysical = r.info.physicalReader
                    var identity: [String] = []
                    if let v = r.info.vendor { identity.append(v) }
                    if let f = r.info.firmwareVersion { identity.append("firmware \(f)") }
                    if let s = r.info.serialNumber { identity.append("serial \(s)") }
                    print("\(r.info.physicalReader)  (\(r.info.slotCount) slot\(r.info.slotCount == 1 ? "" : "s"); \(identity.joined(separator: ", ")))")
                }
                let kind = r.info.isContactless ? "contactless" : "contact"
                let role = r.info.role.flatMap { $0 == "any" ? nil : ", \($0)" } ?? ""
                var line = "  \(r.info.name)  [\(kind)\(role)]: "
                switch r.state {
                case "card":
                    line += "card \(r.atr ?? "")"
                    if let card = r.card { line += "\n      \(card)" }
                    if let image = r.image { line += "\n      image: \(image)\(r.synthetic == true ? " — synthetic" : "")" }
                case "mute": line += "mute card"
                default: line += "empty"
                }
                print(line)
            }
        }
    }
}

/// `carte readers --json` output, schema `carte.readers/1` (docs/json.md).
struct ReadersReport: Encodable {
    var schema = "carte.readers/1"
    let backend: String
    var readers: [Reader]

    struct Reader: Encodable {
        let info: ReaderInfo
        /// `empty`, `card` or `mute`.
        var state: String
        var atr: String?
        /// The card family label from the ATR catalog, when known.
        var card: String?
        /// The simulator image name (simulator backend only).
        var image: String?
        var synthetic: Bool?

        enum CodingKeys: String, CodingKey {
            case name, physicalReader, slot, slotCount, contactless, vendor, firmwareVersion, serialNumber, features, role
            case state, atr, card, image, synthetic
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(info.name, forKey: .name)
            try c.encode(info.physicalReader, forKey: .physicalReader)
            try c.encode(info.slot, forKey: .slot)
            try c.encode(info.slotCount, forKey: .slotCount)
            try c.encode(info.isContactless, forKey: .contactless)
            try c.encode(info.vendor, forKey: .vendor)
            try c.encode(info.firmwareVersion, forKey: .firmwareVersion)
            try c.encode(info.serialNumber, forKey: .serialNumber)
            try c.encode(info.features, forKey: .features)
            try c.encode(info.role, forKey: .role)
            try c.encode(state, forKey: .state)
            try c.encode(atr, forKey: .atr)
            try c.encode(card, forKey: .card)
            try c.encode(image, forKey: .image)
            try c.encode(synthetic, forKey: .synthetic)
        }
    }
}
