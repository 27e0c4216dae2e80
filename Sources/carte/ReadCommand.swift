import ArgumentParser
import CarteCore
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

extension VitaleDate {
    /// Today in Europe/Paris (Gregorian, ASCII digits): the day rights and card validity are evaluated on by default.
    static func todayInParis() throws -> VitaleDate {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.calendar = Calendar(identifier: .gregorian)
        f.dateFormat = "yyyyMMdd"
        f.timeZone = TimeZone(identifier: "Europe/Paris")
        guard let today = VitaleDate(f.string(from: Date())) else {
            throw CLIError(kind: "internal", message: "cannot form today's date", exitCode: CarteExit.unexpected)
        }
        return today
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

/// `carte read --json`, schema `carte.vitale/1` (docs/json.md).
struct VitaleReport: Encodable {
    var schema = "carte.vitale/1"
    let reader: String
    let date: String
    let generation: String
    let syntheticLayout: Bool
    let card: CardPart
    let people: [Person]
    let issues: [String]
    let apduCount: Int

    struct CardPart: Encodable {
        let type: String?
        let serialNumber: String?
        let validUntil: String?
        let amo: AMOPart?
        let mutuelle: MutuellePart?
        let workAccident: WorkAccidentPart?
        let commonZone: String?
    }
    struct WorkAccidentPart: Encodable {
        let organisme: String
        let code: String?
        let identifier: String?
    }
    struct AMOPart: Encodable {
        let regime: String
        let caisse: String
        let centre: String
        let codeGestion: String
    }
    struct MutuellePart: Encodable {
        let identification: String
        let guarantees: String?
        let open: Bool
    }
    struct PeriodPart: Encodable {
        let from: String?
        let to: String?
    }
    struct Person: Encodable {
        let index: Int
        let surname: String?
        let firstName: String?
        let usualName: String?
        let birthName: String?
        let birthDate: String?
        let birthDateLunar: Bool?
        let birthRank: Int?
        let quality: String?
        let nationality: String?
        let nir: String?
        let nirKeyValid: Bool?
        let bornAbroad: Bool?
        let bornInCorsica: Bool?
        /// `open`, `closed`, or `unknown` when the card holds no rights data.
        let rights: String
        let rightsPeriods: [PeriodPart]
        /// The end of the period open on the date, when rights are open.
        let rightsOpenUntil: String?
        let c2s: Bool
        let ald: [String]
        let amc: AMCPart?
    }
    struct AMCPart: Encodable {
        let numberB2: String?
        let member: String?
        let from: String?
        let to: String?
        let open: Bool
        let routing: String?
        let host: String?
        let domain: String?
    }

    init(_ c: VitaleCard, reader: String, on day: VitaleDate) {
        self.reader = reader
        date = day.iso
        generation = c.generation.rawValue
        syntheticLayout = c.usesSyntheticLayout
        card = CardPart(type: c.cardType, serialNumber: c.serialNumber, validUntil: c.validUntil?.iso,
                        amo: c.amo.map { AMOPart(regime: $0.regime, caisse: $0.caisse, centre: $0.centre, codeGestion: $0.codeGestion) },
                        mutuelle: c.mutuelle.map { m in MutuellePart(identification: m.identification, guarantees: m.guarantees, open: m.periods.contains { $0.contains(day) }) },
                        workAccident: c.workAccident.map { WorkAccidentPart(organisme: $0.organisme, code: $0.code, identifier: $0.identifier) },
                        commonZone: c.commonZone)
        people = c.beneficiaries.map { b in
            let open = b.rightsOpen(on: day)
            return Person(
                index: b.index, surname: b.surname, firstName: b.firstName, usualName: b.usualName, birthName: b.birthName,
                birthDate: b.birthDate?.raw, birthDateLunar: b.birthDate?.isLunar, birthRank: b.birthRank, quality: b.quality,
                nationality: b.nationality, nir: b.nir?.description, nirKeyValid: b.nir?.isKeyValid, bornAbroad: b.nir?.bornAbroad,
                bornInCorsica: b.nir?.bornInCorsica, rights: open.map { $0 ? "open" : "closed" } ?? "unknown",
                rightsPeriods: b.rights.map { PeriodPart(from: $0.from?.iso, to: $0.to?.iso) },
                rightsOpenUntil: b.rights.filter { $0.contains(day) }.compactMap(\.to).max()?.iso, c2s: b.c2s(on: day), ald: b.ald(on: day),
                amc: b.amc.map { a in AMCPart(numberB2: a.numberB2, member: a.member, from: a.period.from?.iso, to: a.period.to?.iso, open: a.period.contains(day),
                                              routing: a.routing, host: a.host, domain: a.domain) })
        }
        issues = c.issues.map(\.description)
        apduCount = c.apduCount
    }

    var text: String {
        var lines = ["Carte Vitale \(generation == "vitale2" ? "2" : "1") in \(reader) — rights evaluated on \(date.split(separator: "-").reversed().joined(separator: "/"))"]
        if syntheticLayout {
            lines.append(generation == "vitale1"
                ? "(test card: names and NIRs come from CarteKit's synthetic Vitale 1 memory layout; the real one is not public)"
                : "(test card: rights and AMO data come from CarteKit's synthetic layout)")
        }
        if let amo = card.amo { lines.append("AMO: régime \(amo.regime), caisse \(amo.caisse), centre \(amo.centre), code gestion \(amo.codeGestion)") }
        lines.append("")
        for p in people {
            var name = "\(p.firstName ?? "?") \(p.surname ?? "?")"
            if let birth = p.birthName, birth != p.surname { name += " (born \(birth))" }
            var line = "\(p.index + 1). \(name)"
            if let d = p.birthDate {
                line += ", born \(d.suffix(2))/\(d.dropFirst(4).prefix(2))/\(d.prefix(4))\(p.birthDateLunar == true ? " (lunar date)" : "")"
            }
            if let r = p.birthRank, r > 1 { line += ", birth rank \(r)" }
            lines.append(line)
            var nir = "   NIR \(p.nir ?? "unreadable")"
            if p.nirKeyValid == false { nir += "  (WRONG KEY)" }
            if p.bornAbroad == true { nir += "  born abroad" }
            if p.bornInCorsica == true { nir += "  born in Corsica (key with 2A=19, 2B=18: INSEE rule, [P])" }
            lines.append(nir)
            switch p.rights {
            case "open": lines.append("   Rights: OPEN" + (p.rightsOpenUntil.map { " until \($0.split(separator: "-").reversed().joined(separator: "/"))" } ?? ""))
            case "closed":
                let ended = p.rightsPeriods.compactMap(\.to).max()
                lines.append("   Rights: CLOSED" + (ended.map { " (ended \($0.split(separator: "-").reversed().joined(separator: "/")))" } ?? ""))
            default: lines.append("   Rights: not on the card")
            }
            if p.c2s { lines.append("   C2S (complémentaire santé solidaire)") }
            if !p.ald.isEmpty { lines.append("   ALD: \(p.ald.joined(separator: ", "))") }
            if let a = p.amc { lines.append("   AMC \(a.numberB2 ?? "?")\(a.open ? "" : " (not open on this date)")") }
        }
        if let m = card.mutuelle { lines.append("Mutuelle \(m.identification)\(m.open ? "" : " (not open on this date)")") }
        if !issues.isEmpty {
            lines.append("")
            lines.append("Problems found on the card:")
            lines += issues.map { "  - " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}
