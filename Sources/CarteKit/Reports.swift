import CarteCore
public import CarteCPS
public import CarteCrypto
public import CarteVitale
import Foundation
import CarteJSON

// The versioned JSON documents of docs/json.md, shared by the `carte` tool and the C API (libcarte).

/// Trust anchors for certificate checks.
public struct CertificateTrust: Sendable {
    /// Trusted roots.
    public let roots: [X509Certificate]
    /// Intermediates that may complete a chain.
    public let intermediates: [X509Certificate]
    /// Anchors.
    public init(roots: [X509Certificate], intermediates: [X509Certificate]) {
        self.roots = roots
        self.intermediates = intermediates
    }
}

/// Encodes a report the way every CarteKit JSON output is written (sorted keys, pretty printed).
public func jsonText<T: Encodable>(_ value: T) -> String {
    // Encoding CarteKit's own value types cannot fail; a failure here is a bug worth a crash report.
    // Absent values are written as null (docs/json.md), every declared field always present.
    try! NullKeepingJSON.text(value)
}

extension VitaleDate {
    /// Today in Europe/Paris (Gregorian, ASCII digits): the day rights and card validity are evaluated on by default.
    public static func todayInParis() throws(CarteKitError) -> VitaleDate {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.calendar = Calendar(identifier: .gregorian)
        f.dateFormat = "yyyyMMdd"
        f.timeZone = TimeZone(identifier: "Europe/Paris")
        guard let today = VitaleDate(f.string(from: Date())) else {
            throw .card(.unsupported("cannot form today's date in Europe/Paris"))
        }
        return today
    }
}

/// `carte read --json`, schema `carte.vitale/1` (docs/json.md).
public struct VitaleReport: Encodable, Sendable {
    var schema = "carte.vitale/1"
    private(set) var reader: String
    let date: String
    let generation: String
    let syntheticLayout: Bool
    let card: CardPart
    private(set) var people: [Person]
    let issues: [String]
    let apduCount: Int

    /// The NIRs (15 characters) of the people on the card, in card order; unreadable ones are skipped.
    public var nirs: [String] { people.compactMap(\.nir) }

    /// The same report with only the person whose NIR is `nir` (15 characters, as ``nirs`` gives
    /// them) and `reader` as its source, or `nil` when nobody on the card has it: what the synthetic
    /// rights service answers (`carte sim rights-service`, docs/json.md `carte.rights/1`).
    public func restricted(toNIR nir: String, reader: String) -> VitaleReport? {
        let matching = people.filter { $0.nir == nir }
        guard !matching.isEmpty else { return nil }
        var copy = self
        copy.people = matching
        copy.reader = reader
        return copy
    }

    struct CardPart: Encodable, Sendable {
        let type: String?
        let serialNumber: String?
        let validUntil: String?
        let amo: AMOPart?
        let mutuelle: MutuellePart?
        let workAccident: WorkAccidentPart?
        let commonZone: String?
    }
    struct WorkAccidentPart: Encodable, Sendable {
        let organisme: String
        let code: String?
        let identifier: String?
    }
    struct AMOPart: Encodable, Sendable {
        let regime: String
        let caisse: String
        let centre: String
        let codeGestion: String
    }
    struct MutuellePart: Encodable, Sendable {
        let identification: String
        let guarantees: String?
        let open: Bool
    }
    struct PeriodPart: Encodable, Sendable {
        let from: String?
        let to: String?
    }
    struct Person: Encodable, Sendable {
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
    struct AMCPart: Encodable, Sendable {
        let numberB2: String?
        let member: String?
        let from: String?
        let to: String?
        let open: Bool
        let routing: String?
        let host: String?
        let domain: String?
    }

    /// The report of `c` read in `reader`, rights evaluated on `day`.
    public init(_ c: VitaleCard, reader: String, on day: VitaleDate) {
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

    /// The report for a person (what `carte read` prints).
    public var text: String {
        let source = generation == "apcv"
            ? "Appli carte Vitale (CarteKit's SYNTHETIC protocol) via \(reader)"
            : "Carte Vitale \(generation == "vitale2" ? "2" : "1") in \(reader)"
        var lines = ["\(source) — rights evaluated on \(date.split(separator: "-").reversed().joined(separator: "/"))"]
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

/// A certificate as the cps reports show it.
public struct CertificatePart: Encodable, Sendable {
    public let role: String
    public let label: String
    public let subject: String
    public let issuer: String
    public let serialNumber: String
    public let notBefore: String
    public let notAfter: String
    public let keyUsage: [String]
    public let keyBits: Int?
    /// `valid`, or OpenSSL's reason ("certificate has expired", …).
    public let chain: String
    public let pem: String?

    /// A certificate of the card, its chain checked against `trust` now.
    public init(_ c: CPSCertificate, trust: CertificateTrust, withPEM: Bool = false) {
        role = c.role.rawValue
        label = c.role.label
        subject = c.certificate.subjectText
        issuer = c.certificate.issuerText
        serialNumber = c.certificate.serialNumber
        notBefore = iso8601UTC(c.certificate.notBefore)
        notAfter = iso8601UTC(c.certificate.notAfter)
        keyUsage = X509Certificate.KeyUsage.allCases.filter(c.certificate.keyUsage.contains).map(\.rawValue)
        keyBits = (try? c.certificate.publicKey())?.bits
        do {
            try c.verify(roots: trust.roots, intermediates: trust.intermediates, at: currentUnixTime())
            chain = "valid"
        } catch {
            if case .crypto(let e) = error { chain = e.message } else { chain = error.description }
        }
        pem = withPEM ? c.certificate.pem : nil
    }

    /// Four lines for a person.
    public var text: String {
        "\(label): \(subject)\n    issuer \(issuer)\n    serial \(serialNumber), \(notBefore) to \(notAfter)\(keyBits.map { ", RSA \($0)" } ?? "")\n    key usage \(keyUsage.joined(separator: ", "))\n    chain: \(chain)"
    }
}

/// `carte cps info --json`, schema `carte.cps/1` (docs/json.md).
public struct CPSReport: Encodable, Sendable {
    var schema = "carte.cps/1"
    let reader: String
    let generation: String
    let syntheticLayout: Bool
    let card: CardPart
    let holder: HolderPart?
    let situationsNeedPIN: Bool
    let situations: [SituationPart]?
    let certificates: [CertificatePart]
    let pin: PINPart?
    let issues: [String]
    let apduCount: Int

    struct CardPart: Encodable, Sendable {
        let type: String?
        let serialNumber: String?
        let issuer: String?
        let validFrom: String?
        let validUntil: String?
        let expired: Bool
    }
    struct HolderPart: Encodable, Sendable {
        let cardTypeCode: String
        let nationalIdType: String
        let nationalIdKind: String
        let nationalId: String
        let nationalIdWithPrefix: String
        let civility: String?
        let surname: String
        let firstName: String
        let profession: String?
        let professionLabel: String?
        let speciality: String?
        let specialityLabel: String?
    }
    struct SituationPart: Encodable, Sendable {
        let file: Int
        let fields: [String: String]
    }
    struct PINPart: Encodable, Sendable {
        let triesLeft: Int
        let maxTries: Int?
        let blocked: Bool
    }

    /// The report of `c` read in `reader`, certificates checked against `roots`.
    public init(_ c: ProfessionalCard, reader: String, pin: PINStatus?, roots: CertificateTrust) {
        self.reader = reader
        generation = c.card.generation.rawValue
        syntheticLayout = c.usesSyntheticLayout
        let today = (try? VitaleDate.todayInParis()).flatMap { CardDate($0.raw) } ?? CardDate("19700101")!
        card = CardPart(type: c.holder?.cardType?.rawValue, serialNumber: c.card.serial, issuer: c.card.issuer,
                        validFrom: c.card.validFrom?.description, validUntil: c.card.validUntil?.description, expired: c.card.isExpired(on: today))
        holder = c.holder.map { h in
            HolderPart(cardTypeCode: h.cardTypeCode, nationalIdType: h.nationalID.type, nationalIdKind: h.nationalID.kind, nationalId: h.nationalID.number,
                       nationalIdWithPrefix: h.nationalID.prefixed, civility: h.civility, surname: h.surname, firstName: h.firstName,
                       profession: h.profession, professionLabel: h.professionLabel, speciality: h.speciality, specialityLabel: h.specialityLabel)
        }
        situationsNeedPIN = c.situationsNeedPIN
        situations = c.situations?.map { s in
            SituationPart(file: s.file, fields: Dictionary(uniqueKeysWithValues: s.fields.map { (PracticeSituation.fieldNames[$0.key] ?? "field-\($0.key)", $0.value) }))
        }
        certificates = c.certificates.map { CertificatePart($0, trust: roots) }
        self.pin = pin.map { PINPart(triesLeft: $0.triesLeft, maxTries: $0.maxTries, blocked: $0.blocked) }
        issues = c.issues
        apduCount = c.apduCount
    }

    /// The report for a person (what `carte cps info` prints).
    public var text: String {
        var out: [String] = []
        out.append("\(generation.uppercased()) in \"\(reader)\"\(syntheticLayout ? " — holder data in CarteKit's synthetic layout" : "")")
        out.append("card: \(card.type ?? "?") serial \(card.serialNumber ?? "?") (issuer \(card.issuer ?? "?")), valid \(card.validFrom ?? "?") to \(card.validUntil ?? "?")\(card.expired ? " — EXPIRED" : "")")
        if let h = holder {
            out.append("holder: \(h.firstName) \(h.surname), \(h.nationalIdKind) \(h.nationalId) (\(h.nationalIdWithPrefix))")
            if let p = h.professionLabel ?? h.profession { out.append("profession: \(p)\(h.profession.map { " (\($0))" } ?? "")") }
            if let s = h.specialityLabel ?? h.speciality { out.append("speciality: \(s)\(h.speciality.map { " (\($0))" } ?? "")") }
        }
        if let pin { out.append("PIN: " + (pin.blocked ? "BLOCKED — unblock it with the PUK (carte cps pin unblock)" : "\(pin.triesLeft)\(pin.maxTries.map { "/\($0)" } ?? "") tries left")) }
        if situationsNeedPIN {
            out.append("situations: protected by the PIN (carte cps info --with-pin)")
        } else if situations == nil && generation == "cps3-contactless" {
            out.append("situations: not given over the contactless interface")
        } else if let situations {
            for s in situations {
                out.append("situation \(s.file): " + s.fields.keys.sorted().map { "\($0)=\(s.fields[$0]!)" }.joined(separator: ", "))
            }
        }
        for c in certificates { out.append(c.text) }
        for i in issues { out.append("issue: \(i)") }
        out.append("\(apduCount) APDUs")
        return out.joined(separator: "\n")
    }
}

