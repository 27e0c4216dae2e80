import CarteCPS
import CarteCrypto
import CarteVitale
import Foundation

/// A certificate as the cps reports show it.
struct CertificatePart: Encodable {
    let role: String
    let label: String
    let subject: String
    let issuer: String
    let serialNumber: String
    let notBefore: String
    let notAfter: String
    let keyUsage: [String]
    let keyBits: Int?
    /// `valid`, or OpenSSL's reason ("certificate has expired", …).
    let chain: String
    let pem: String?

    init(_ c: CPSCertificate, trust: Trust, withPEM: Bool = false) {
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

    var text: String {
        "\(label): \(subject)\n    issuer \(issuer)\n    serial \(serialNumber), \(notBefore) to \(notAfter)\(keyBits.map { ", RSA \($0)" } ?? "")\n    key usage \(keyUsage.joined(separator: ", "))\n    chain: \(chain)"
    }
}

/// `carte cps info --json`, schema `carte.cps/1` (docs/json.md).
struct CPSReport: Encodable {
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

    struct CardPart: Encodable {
        let type: String?
        let serialNumber: String?
        let issuer: String?
        let validFrom: String?
        let validUntil: String?
        let expired: Bool
    }
    struct HolderPart: Encodable {
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
    struct SituationPart: Encodable {
        let file: Int
        let fields: [String: String]
    }
    struct PINPart: Encodable {
        let triesLeft: Int
        let maxTries: Int?
        let blocked: Bool
    }

    init(_ c: ProfessionalCard, reader: String, pin: PINStatus?, roots: Trust) {
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

    var text: String {
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

/// `carte cps pin --json`, schema `carte.cps-pin/1` (docs/json.md). Never holds a PIN.
struct PINReport: Encodable {
    var schema = "carte.cps-pin/1"
    let reader: String
    let action: String
    /// `ok`, `wrong-pin`, `wrong-puk`, `pin-blocked`, `puk-blocked`, `pin-required`, `refused`.
    var result = "ok"
    var triesLeft: Int?
    var maxTries: Int?
    var blocked: Bool?
    var message = ""

    init(reader: String, action: String) {
        self.reader = reader
        self.action = action
    }

    mutating func status(_ s: PINStatus) {
        triesLeft = s.triesLeft
        maxTries = s.maxTries
        blocked = s.blocked
    }

    mutating func fail(_ error: CPSError) {
        message = error.description
        switch error {
        case .wrongPIN(let which, _): result = which == "PUK" ? "wrong-puk" : "wrong-pin"
        case .pinBlocked: result = "pin-blocked"
        case .pukBlocked: result = "puk-blocked"
        case .pinRequired: result = "pin-required"
        default: result = "refused"
        }
    }

    func messageForSuccess() -> String {
        let tries = triesLeft.map { t in blocked == true ? "PIN blocked: unblock it with the PUK (carte cps pin unblock)" : "\(t)\(maxTries.map { "/\($0)" } ?? "") tries left" } ?? "status unknown"
        switch action {
        case "verify": return "PIN verified (\(tries))"
        case "change": return "PIN changed (\(tries))"
        case "unblock": return "PIN unblocked and set (\(tries))"
        default: return "PIN: \(tries)"
        }
    }
}

/// `carte cps certs --json`, schema `carte.cps-certs/1` (docs/json.md).
struct CertsReport: Encodable {
    var schema = "carte.cps-certs/1"
    let reader: String
    let trustedRoots: [String]
    let certificates: [CertificatePart]

    init(reader: String, certificates: [CPSCertificate], trust: Trust, withPEM: Bool) {
        self.reader = reader
        trustedRoots = trust.roots.map(\.subjectText)
        self.certificates = certificates.map { CertificatePart($0, trust: trust, withPEM: withPEM) }
    }

    var text: String {
        var out = certificates.map(\.text)
        out.append("checked against: \(trustedRoots.joined(separator: "; "))")
        for c in certificates { if let pem = c.pem { out.append(pem) } }
        return out.joined(separator: "\n")
    }
}

/// `carte cps sign --json`, schema `carte.cps-sign/1` (docs/json.md).
struct SignReport: Encodable {
    var schema = "carte.cps-sign/1"
    let reader: String
    let file: String
    /// SHA-256 of the file, lowercase hex.
    let sha256: String
    /// The PKCS#1 v1.5 signature, base64.
    let signature: String
    var algorithm = "sha256WithRSAEncryption (PKCS#1 v1.5)"
    /// Subject of the certificate the signature was checked with.
    let certificate: String
    let verified: Bool
    /// APDUs of the signature itself (MSE, PSO HASH, PSO CDS).
    let apduCount: Int
}
