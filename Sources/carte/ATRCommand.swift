import ArgumentParser
import CarteCore

struct ATRCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atr",
        abstract: "Decode an Answer-To-Reset (ISO 7816-3) and identify the card family.",
        discussion: """
            HEX may be written with or without spaces ("3B 75 13 00 00 45 09 EA 90 00" or \
            3B751300004509EA9000); several arguments are joined. Malformed ATRs are reported with the byte offset.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The ATR bytes in hexadecimal.")
    var hex: [String]

    func run() async throws {
        _ = global.makeLogger()
        try await reporting(json: global.json) {
            let atr = try ATR(bytes: try [UInt8](hex: hex.joined(separator: " ")))
            let report = ATRReport(atr)
            if global.json {
                Output.printJSON(report)
            } else {
                print(report.text)
            }
        }
    }
}

/// `carte atr --json` output, schema `carte.atr/1` (documented in docs/json.md).
struct ATRReport: Encodable {
    let schema = "carte.atr/1"
    let atr: String
    let convention: String
    let protocols: [String]
    let defaultProtocol: String
    let t0: String
    let interfaceBytes: [InterfaceByte]
    let parameters: Parameters
    let historicalBytes: String
    let historicalCategory: String?
    let historicalObjects: [HistoricalObject]?
    let tck: TCK
    let identified: [Identified]

    struct InterfaceByte: Encodable {
        let name: String
        let value: String
        let meaning: String
    }
    struct Parameters: Encodable {
        let fi: Int?
        let di: Int?
        let fMaxMHz: Double?
        let extraGuardTime: Int
        let waitingIntegerT0: Int?
        let ifsc: Int?
        let bwi: Int?
        let cwi: Int?
        let t1ErrorDetection: String?
        let specificMode: String?
    }
    struct HistoricalObject: Encodable {
        let tag: String
        let name: String
        let value: String
    }
    struct TCK: Encodable {
        let present: Bool
        let value: String?
        let valid: Bool?
    }
    struct Identified: Encodable {
        let family: String
        let label: String
        let source: String
    }

    init(_ a: ATR) {
        atr = a.bytes.hexString()
        convention = a.convention.rawValue
        protocols = a.protocols.map(\.description)
        defaultProtocol = a.defaultProtocol.description
        t0 = a.t0.hex
        interfaceBytes = a.namedInterfaceBytes.map { InterfaceByte(name: $0.name, value: $0.value.hex, meaning: $0.meaning) }
        let hasT0 = a.protocols.contains(.t0)
        let hasT1 = a.protocols.contains(.t1) || a.isPCSCContactless
        let mode = a.specificMode.map { "T=\($0.protocol.rawValue), \($0.canChange ? "can" : "cannot") change, \($0.implicitParameters ? "implicit" : "TA1") parameters" }
        parameters = Parameters(
            fi: a.fi, di: a.di, fMaxMHz: a.fMaxMHz, extraGuardTime: a.extraGuardTime,
            waitingIntegerT0: hasT0 ? a.waitingIntegerT0 : nil,
            ifsc: hasT1 ? a.ifsc : nil, bwi: hasT1 ? a.bwi : nil, cwi: hasT1 ? a.cwi : nil,
            t1ErrorDetection: hasT1 ? a.t1ErrorDetection : nil, specificMode: mode)
        historicalBytes = a.historicalBytes.hexString()
        historicalCategory = a.historicalCategory?.hex
        historicalObjects = a.historicalObjects?.map { HistoricalObject(tag: String($0.tag, radix: 16, uppercase: true), name: $0.name, value: $0.value.hexString()) }
        tck = TCK(present: a.tck != nil, value: a.tck?.hex, valid: a.tck == nil ? nil : true)
        identified = KnownATR.identify(a.bytes).map { Identified(family: $0.family.rawValue, label: $0.label, source: $0.source) }
    }

    var text: String {
        var lines: [String] = []
        lines.append("ATR: \(atr)")
        lines.append("  TS = \(atr.prefix(2))  \(convention) convention")
        lines.append("  T0 = \(t0)  \(Int(t0, radix: 16)! & 0x0F) historical byte(s)")
        for b in interfaceBytes { lines.append("  \(b.name) = \(b.value)  \(b.meaning)") }
        lines.append("  Protocols: \(protocols.joined(separator: ", ")) (default \(defaultProtocol))")
        var p: [String] = []
        if let fi = parameters.fi, let di = parameters.di { p.append("Fi=\(fi) Di=\(di)") }
        if let f = parameters.fMaxMHz { p.append("fmax=\(f) MHz") }
        p.append("N=\(parameters.extraGuardTime)")
        if let wi = parameters.waitingIntegerT0 { p.append("WI=\(wi)") }
        if let ifsc = parameters.ifsc { p.append("IFSC=\(ifsc)") }
        if let bwi = parameters.bwi, let cwi = parameters.cwi { p.append("BWI=\(bwi) CWI=\(cwi)") }
        if let edc = parameters.t1ErrorDetection { p.append("EDC=\(edc)") }
        lines.append("  Parameters: " + p.joined(separator: ", "))
        if let mode = parameters.specificMode { lines.append("  Specific mode: \(mode)") }
        lines.append("  Historical bytes: \(historicalBytes.isEmpty ? "(none)" : historicalBytes)")
        if let objects = historicalObjects {
            for o in objects { lines.append("    \(o.tag): \(o.name) = \(o.value)") }
        } else if let category = historicalCategory {
            lines.append("    category \(category): proprietary content")
        }
        lines.append("  TCK: " + (tck.present ? "\(tck.value!) (correct)" : "absent (not required: T=0 only)"))
        if identified.isEmpty {
            lines.append("  Card: not in CarteKit's ATR catalog")
        } else {
            for i in identified { lines.append("  Card: \(i.label) [\(i.source)]") }
        }
        return lines.joined(separator: "\n")
    }
}
