public import CarteEmulator
import CarteCore
public import CarteCPS
public import CarteCrypto
import Foundation
import Yams

/// A readable description of a health professional's CPx card (format `carte-cps-persona/1`,
/// documented in `CardImages/cps/README.md`), compiled by ``CPSPersonaCompiler`` into a card image
/// with real RSA keys and certificates issued by a ``TestPKI``. Its text forms never show the PIN or PUK.
public struct CPSPersona: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// One practice situation: the SESAM-Vitale group 2 fields by number.
    public struct Situation: Sendable, Hashable {
        /// Situation file number (1…16: `D120`…`D12F`, `4010`…`401F`).
        public var file: Int
        /// Group 2 fields (1…21).
        public var fields: [Int: String]
    }

    public var name: String
    public var summary: String?
    public var type: CPxType = .cps
    public var generation: CPSGeneration = .cps3
    /// 8 digits stored in BCD in EF.SN.ICC.
    public var serial: String
    public var validFrom: String
    public var validUntil: String
    /// EF_ACTUA dates (`YYYYMMDDhhmmss`) when the card was updated.
    public var updated: (start: String, end: String)?
    /// Holder, group 1 fields 2–7.
    public var idType: String
    public var id: String
    public var idKey: String?
    public var civility: String?
    public var surname: String
    public var firstName: String
    public var profession: String?
    public var professionLabel: String?
    public var speciality: String?
    public var specialityLabel: String?
    public var situations: [Situation] = []
    /// Test PIN and PUK: secrets of a test card (never printed).
    var pin: String = "1234"
    var puk: String = "12345678"
    public var pinTriesLeft = 3
    public var pinMaxTries = 3
    /// [U] the PUK try counter is not public: configurable, 10 by default.
    public var pukMaxTries = 10
    public var pukTriesLeft = 10
    public var keyBits = 2048

    public var description: String { "CPx persona \"\(name)\": \(type.rawValue) \(generation.rawValue), \(idType == "8" ? "RPPS" : idType == "0" ? "ADELI" : "id type \(idType)") \(id), PIN and PUK <redacted>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["persona": description], displayStyle: .struct) }

    public init(name: String, serial: String, validFrom: String, validUntil: String, idType: String, id: String, surname: String, firstName: String) {
        self.name = name
        self.serial = serial
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.idType = idType
        self.id = id
        self.surname = surname
        self.firstName = firstName
    }
}

/// The keys and certificates of a built CPx image, to rebuild it identically (tests, `--reuse-keys`).
public struct CPSKeyMaterial: Sendable {
    public var authenticationKey: RSAPrivateKey
    public var signatureKey: RSAPrivateKey?
    public var authenticationCertificate: X509Certificate
    public var signatureCertificate: X509Certificate?

    /// The key material of an image built by ``CPSPersonaCompiler``, or `nil` if it has none.
    public init?(image: CardImage) {
        func key(_ ref: UInt8) -> RSAPrivateKey? { image.keys.first { $0.reference == ref }.flatMap { try? RSAPrivateKey(pem: $0.privateKeyPEM) } }
        func cert(_ fid: UInt16) -> X509Certificate? {
            guard case .dedicated(let ias)? = image.root.children.first(where: { if case .dedicated(let d) = $0 { return d.fid == CPSLayout.iasDF } else { return false } }) else { return nil }
            for case .elementary(let ef) in ias.children where ef.fid == fid {
                if case .transparent(let bytes) = ef.content { return try? X509Certificate(der: bytes) }
            }
            return nil
        }
        // A CPS4 image keeps its keys under the ChipDoc references, a CPS3 image under the IAS ones.
        let chipDoc = image.behaviour.securityOperations == .chipDoc
        let authRef = chipDoc ? CPSPersonaCompiler.chipDocAuthenticationKeyRef : CPSPersonaCompiler.authenticationKeyRef
        let signRef = chipDoc ? CPSPersonaCompiler.chipDocSignatureKeyRef : CPSPersonaCompiler.signatureKeyRef
        guard let a = key(authRef) ?? key(CPSPersonaCompiler.authenticationKeyRef), let ac = cert(CPSLayout.authenticationCertificateFile) else { return nil }
        authenticationKey = a
        authenticationCertificate = ac
        signatureKey = key(signRef) ?? key(CPSPersonaCompiler.signatureKeyRef)
        signatureCertificate = cert(CPSLayout.signatureCertificateFile)
    }
}

/// Loads `carte-cps-persona/1` files and compiles them to card images.
public enum CPSPersonaCompiler {
    /// The format line.
    public static let format = "carte-cps-persona/1"
    /// Key references of the images (**synthetic**, matching ``CPSReader/Configuration`` defaults).
    public static let authenticationKeyRef: UInt8 = 0x81
    public static let signatureKeyRef: UInt8 = 0x82
    /// The CPS4's authentication key: `20`, the reference the ANS Cryptolib names in every MSE SET CT
    /// ([C] `CPS4_AUTH_PRIV_KEY_ID`, and the PrKDF key reference it recognises the key by).
    public static let chipDocAuthenticationKeyRef: UInt8 = 0x20
    /// The CPS4's signature key (**synthetic** `21`: the Cryptolib takes it from the PrKDF).
    public static let chipDocSignatureKeyRef: UInt8 = 0x21
    /// PIN and PUK references (CHV 01 [C]; PUK 02 synthetic).
    public static let pinRef: UInt8 = 0x01
    public static let pukRef: UInt8 = 0x02

    /// The CPS4 contact ATR ([C] ANS `card-cps.c`); also the content of the synthetic CPS2TER_ATR.
    public static let cps4ATR: [UInt8] = try! [UInt8](hex: "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")

    /// The real CPS3 EF.ATR (OpenSC commit fd83e885f, [C]): leading `80`, then `43`, `46`, `47`, `4F`, `E0`, `78`, `82`.
    public static let cps3EFATR: [UInt8] = try! [UInt8](hex: "80 43 01 B8 46 04 04 B0 EC C1 47 03 94 01 80 4F 08 80 25 00 00 01 FF 01 00 E0 10 02 02 01 04 02 02 01 04 02 02 01 00 02 02 01 00 78 08 06 06 2B 81 22 F8 78 02 82 02 90 00")

    /// Whether `text` is a CPx persona.
    public static func isPersona(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).contains { $0.replacingOccurrences(of: " ", with: "") == "format:\(format)" }
    }

    /// Parses a persona; errors name the file, the line and the field, and never quote a PIN.
    public static func load(text: String, source: String) throws(CardImageError) -> CPSPersona {
        let root = try CardImageLoader.compose(text, source: source)
        let r = YAMLDocumentReader(source: source)
        let f = try r.fields(root, "", allowed: ["format", "name", "description", "synthetic", "card", "holder", "situations"])
        func need(_ m: [String: Node], _ key: String, _ at: Node, _ path: String) throws(CardImageError) -> Node {
            guard let n = m[key] else { throw r.fail(at, path.isEmpty ? key : path + "." + key, .missingField) }
            return n
        }
        func digits(_ n: Node, _ path: String, count: ClosedRange<Int>, secret: Bool = false) throws(CardImageError) -> String {
            let text = try r.scalar(n, path)
            guard count.contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw r.fail(n, path, .invalidValue(secret ? "expected \(count.lowerBound) to \(count.upperBound) digits" : "expected \(count.lowerBound)...\(count.upperBound) digits, got \"\(text)\""))
            }
            return text
        }
        func date(_ n: Node, _ path: String) throws(CardImageError) -> String {
            let d = try digits(n, path, count: 8...8)
            guard CardDate(d) != nil else { throw r.fail(n, path, .invalidValue("not a calendar date YYYYMMDD")) }
            return d
        }
        func latin1(_ n: Node, _ path: String) throws(CardImageError) -> String {
            let v = try r.scalar(n, path)
            guard v.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) else { throw r.fail(n, path, .invalidValue("only ISO-8859-1 characters can be stored on the card")) }
            guard v.count <= 60 else { throw r.fail(n, path, .invalidValue("at most 60 characters")) }
            return v
        }

        let formatText = try r.scalar(try need(f, "format", root, ""), "format")
        guard formatText == format else { throw r.fail(f["format"], "format", .unsupportedFormat(formatText)) }
        guard try r.bool(try need(f, "synthetic", root, ""), "synthetic") else {
            throw r.fail(f["synthetic"], "synthetic", .invalidValue("personas are synthetic by construction: say `synthetic: true`"))
        }
        let cardNode = try need(f, "card", root, "")
        let c = try r.fields(cardNode, "card", allowed: ["type", "generation", "serial", "valid-from", "valid-until", "updated", "pin", "puk", "pin-tries-left", "pin-tries", "puk-tries-left", "puk-tries", "key-bits"])
        let holderNode = try need(f, "holder", root, "")
        let h = try r.fields(holderNode, "holder", allowed: ["id-type", "id", "id-key", "civility", "surname", "first-name", "profession", "profession-label", "speciality", "speciality-label"])

        var p = CPSPersona(name: try r.scalar(try need(f, "name", root, ""), "name"),
                           serial: try digits(try need(c, "serial", cardNode, "card"), "card.serial", count: 8...8),
                           validFrom: try date(try need(c, "valid-from", cardNode, "card"), "card.valid-from"),
                           validUntil: try date(try need(c, "valid-until", cardNode, "card"), "card.valid-until"),
                           idType: try latin1(try need(h, "id-type", holderNode, "holder"), "holder.id-type"),
                           id: try digits(try need(h, "id", holderNode, "holder"), "holder.id", count: 8...11),
                           surname: try latin1(try need(h, "surname", holderNode, "holder"), "holder.surname"),
                           firstName: try latin1(try need(h, "first-name", holderNode, "holder"), "holder.first-name"))
        p.summary = try f["description"].map { n throws(CardImageError) in try r.scalar(n, "description") }
        guard p.validFrom <= p.validUntil else { throw r.fail(c["valid-until"], "card.valid-until", .invalidValue("the card ends before it starts")) }
        if let n = c["type"] {
            let t = try r.scalar(n, "card.type")
            guard let type = CPxType(rawValue: t) else { throw r.fail(n, "card.type", .invalidValue("expected CPS, CPE, CPF or CPA")) }
            p.type = type
        }
        if let n = c["generation"] {
            let g = try r.scalar(n, "card.generation")
            guard let gen = CPSGeneration(rawValue: g) else { throw r.fail(n, "card.generation", .invalidValue("expected cps3, cps3-contactless or cps4")) }
            p.generation = gen
        }
        if let n = c["updated"] {
            let u = try r.fields(n, "card.updated", allowed: ["start", "end"])
            p.updated = (try digits(try need(u, "start", n, "card.updated"), "card.updated.start", count: 14...14),
                         try digits(try need(u, "end", n, "card.updated"), "card.updated.end", count: 14...14))
        }
        if let n = c["pin"] { p.pin = try digits(n, "card.pin", count: 4...8, secret: true) }
        if let n = c["puk"] { p.puk = try digits(n, "card.puk", count: 8...8, secret: true) }
        if let n = c["pin-tries"] { p.pinMaxTries = try r.int(n, "card.pin-tries", in: 1...15) }
        p.pinTriesLeft = p.pinMaxTries
        if let n = c["pin-tries-left"] { p.pinTriesLeft = try r.int(n, "card.pin-tries-left", in: 0...p.pinMaxTries) }
        if let n = c["puk-tries"] { p.pukMaxTries = try r.int(n, "card.puk-tries", in: 1...15) }
        p.pukTriesLeft = p.pukMaxTries
        if let n = c["puk-tries-left"] { p.pukTriesLeft = try r.int(n, "card.puk-tries-left", in: 0...p.pukMaxTries) }
        if let n = c["key-bits"] {
            p.keyBits = try r.int(n, "card.key-bits", in: 1024...4096)
            guard p.keyBits % 256 == 0 else { throw r.fail(n, "card.key-bits", .invalidValue("a multiple of 256 (1024, 2048…)")) }
        }
        p.idKey = try h["id-key"].map { n throws(CardImageError) in try latin1(n, "holder.id-key") }
        p.civility = try h["civility"].map { n throws(CardImageError) in try latin1(n, "holder.civility") }
        p.profession = try h["profession"].map { n throws(CardImageError) in try latin1(n, "holder.profession") }
        p.professionLabel = try h["profession-label"].map { n throws(CardImageError) in try latin1(n, "holder.profession-label") }
        p.speciality = try h["speciality"].map { n throws(CardImageError) in try latin1(n, "holder.speciality") }
        p.specialityLabel = try h["speciality-label"].map { n throws(CardImageError) in try latin1(n, "holder.speciality-label") }
        if p.idType == "8" && p.id.count != 11 { throw r.fail(h["id"], "holder.id", .invalidValue("an RPPS number has 11 digits")) }
        if p.idType == "0" && p.id.count != 9 { throw r.fail(h["id"], "holder.id", .invalidValue("an ADELI number has 9 digits")) }

        let byName = Dictionary(uniqueKeysWithValues: PracticeSituation.fieldNames.map { ($1, $0) })
        if let n = f["situations"] {
            for (i, item) in try r.list(n, "situations").enumerated() {
                let path = "situations[\(i)]"
                guard case .mapping(let m) = item else { throw r.fail(item, path, .wrongType(expected: "a mapping of group 2 fields")) }
                let allowed = Set(["file"] + PracticeSituation.fieldNames.values)
                let s = try r.fields(item, path, allowed: allowed)
                _ = m
                let file = try s["file"].map { v throws(CardImageError) in try r.int(v, path + ".file", in: 1...16) } ?? (i + 1)
                guard !p.situations.contains(where: { $0.file == file }) else { throw r.fail(item, path + ".file", .duplicate("situation file \(file)")) }
                var fields: [Int: String] = [1: String(file)]
                for (key, node) in s where key != "file" { fields[byName[key]!] = try latin1(node, path + "." + key) }
                p.situations.append(CPSPersona.Situation(file: file, fields: fields))
            }
        }
        return p
    }

    /// Compiles a persona: new keys (or `keys`), certificates issued by `pki`'s intermediate.
    public static func compile(_ p: CPSPersona, pki: TestPKI, keys: CPSKeyMaterial? = nil, source: String? = nil) throws(CryptoError) -> CardImage {
        let contactless = p.generation == .cps3Contactless
        let chipDoc = p.generation == .cps4
        let authRef = chipDoc ? chipDocAuthenticationKeyRef : authenticationKeyRef
        let signRef = chipDoc ? chipDocSignatureKeyRef : signatureKeyRef
        func text(_ s: String) -> [UInt8] { CPSLayout.latin1(s) }
        func ef(_ fid: UInt16, _ label: String, _ bytes: [UInt8], read: CardImage.AccessRule = .always, sfi: UInt8? = nil, synthetic: Bool = false) -> CardImage.Node {
            .elementary(CardImage.ElementaryFile(fid: fid, sfi: sfi, label: label, read: read, content: .transparent(bytes), synthetic: synthetic))
        }
        let protected: CardImage.AccessRule = contactless ? .never : .pin(pinRef)

        // Keys and certificates.
        let authKey: RSAPrivateKey
        if let k = keys?.authenticationKey { authKey = k } else { authKey = try RSAPrivateKey.generate(bits: p.keyBits) }
        var signKey: RSAPrivateKey? = nil
        if !contactless {
            if let k = keys?.signatureKey { signKey = k } else { signKey = try RSAPrivateKey.generate(bits: p.keyBits) }
        }
        let from = epoch(p.validFrom, endOfDay: false), to = epoch(p.validUntil, endOfDay: true)
        let serialNumber = UInt64(p.serial)! * 4
        let subject: [(String, String)] = [("C", "FR"), ("O", "CarteKit TEST - synthetic"), ("SN", p.surname), ("GN", p.firstName),
                                           ("serialNumber", p.idType + p.id), ("CN", "\(p.firstName) \(p.surname)")]
        let authCert: X509Certificate
        if let c = keys?.authenticationCertificate { authCert = c } else { authCert = try CertificateBuilder(subject: subject, serial: serialNumber + 1, notBefore: from, notAfter: to,
                                                                                keyUsage: [.digitalSignature, .keyEncipherment], extendedKeyUsage: ["clientAuth"])
            .issue(publicKeyOf: authKey, issuer: pki.intermediate, issuerKey: pki.intermediateKey) }
        var signCert: X509Certificate? = nil
        if let signKey {
            if let c = keys?.signatureCertificate { signCert = c } else {
                signCert = try CertificateBuilder(subject: subject, serial: serialNumber + 2, notBefore: from, notAfter: to, keyUsage: [.nonRepudiation])
                    .issue(publicKeyOf: signKey, issuer: pki.intermediate, issuerKey: pki.intermediateKey)
            }
        }

        // Holder and situation files (synthetic encoding, CPSLayout).
        let situationFields: [CPSPersona.Situation] = p.situations.sorted { $0.file < $1.file }
        let cardTLV = TLV(tag: CPSLayout.cardTemplate, children: [
            TLV(tag: CPSLayout.marker, value: text(CPSLayout.markerValue)),
            TLV(tag: CPSLayout.Card.type, value: text(p.type.rawValue)),
            TLV(tag: CPSLayout.Card.serial, value: text(p.serial)),
            TLV(tag: CPSLayout.Card.validFrom, value: text(p.validFrom)),
            TLV(tag: CPSLayout.Card.validUntil, value: text(p.validUntil)),
            TLV(tag: CPSLayout.Card.issuer, value: text("8025000001")),
        ]).encoded()
        var holderFields: [Int: String] = [1: p.type.ssvCode, 2: p.idType, 3: p.id, 6: p.surname, 7: p.firstName]
        if let k = p.idKey { holderFields[4] = k }
        if let c = p.civility { holderFields[5] = c }
        let holderTLV = CPSLayout.numberedTemplate(CPSLayout.holderTemplate, fields: holderFields).encoded()
        var info: [TLV] = [TLV(tag: CPSLayout.marker, value: text(CPSLayout.markerValue))]
        for (tag, value) in [(CPSLayout.Info.profession, p.profession), (CPSLayout.Info.professionLabel, p.professionLabel),
                             (CPSLayout.Info.speciality, p.speciality), (CPSLayout.Info.specialityLabel, p.specialityLabel)] {
            if let value { info.append(TLV(tag: tag, value: text(value))) }
        }
        info.append(TLV(tag: CPSLayout.Info.situationIndexes, value: situationFields.map { UInt8($0.file) }))
        let infoTLV = TLV(tag: CPSLayout.infoTemplate, children: info).encoded()
        func situation(_ s: CPSPersona.Situation) -> [UInt8] { CPSLayout.numberedTemplate(CPSLayout.situationTemplate, fields: s.fields).encoded() }

        // EF.SN.ICC: 5A 0A, issuer 80 25 00 00 01, serial BCD, Luhn digit and F.
        let pan = "8025000001" + p.serial
        let snicc: [UInt8] = [0x5A, 0x0A] + CPSLayout.bcd(pan + String(luhn(pan)) + "0").enumerated().map { i, b in i == 9 ? (b & 0xF0) | 0x0F : b }

        // PKCS#15 (enough for OpenSC's pkcs15-tool to list the certificates).
        let appPath: [UInt8] = [0x3F, 0x00, UInt8(CPSLayout.iasDF >> 8), UInt8(CPSLayout.iasDF & 0xFF)]
        let aid = contactless ? CPSLayout.contactlessAID : CPSLayout.iasAID
        let dir = TLV(tag: 0x61, children: [TLV(tag: 0x4F, value: aid), TLV(tag: 0x50, value: text(contactless ? "CPx IAS CL" : "CPx IAS")), TLV(tag: 0x51, value: appPath)]).encoded()
        // ODF: PrKDF 5034 (A0), CDF 5033 (A4), AODF 5035 (A8); the AODF only where there is a PIN.
        func odfEntry(_ tag: TLVTag, _ fid: UInt16) -> [UInt8] {
            TLV(tag: tag, children: [TLV(tag: 0x30, children: [TLV(tag: 0x04, value: [UInt8(fid >> 8), UInt8(fid & 0xFF)])])]).encoded()
        }
        var odf = odfEntry(0xA0, 0x5034) + odfEntry(0xA4, 0x5033)
        if !contactless { odf += odfEntry(0xA7, 0x5036) + odfEntry(0xA8, 0x5035) }
        let tokenInfo = TLV(tag: 0x30, children: [
            TLV(tag: 0x02, value: [0x00]),
            TLV(tag: 0x04, value: CPSLayout.bcd(p.serial)),
            TLV(tag: 0x0C, value: Array("CarteKit (synthetic test card)".utf8)),
            TLV(tag: 0x80, value: Array("\(p.type.rawValue) \(p.firstName) \(p.surname) (synthetic)".utf8)),
            TLV(tag: 0x03, value: [0x07, 0x80]),  // tokenflags: readOnly
            // supportedAlgorithms [2]: what OpenSC's iasecc driver looks up to fill each MSE SET
            // (docs/research/opensc-iasecc-0.23.md §3). Synthetic list; the algRef bytes are IAS-ECC's
            // (AT 02, CT 1A, HT SHA-256 40, DST SHA-256 42).
            // The contactless interface only does raw PKCS#1 (domain-facts §5.3): the first entry alone.
            TLV(tag: 0xA2, children: Self.supportedAlgorithms.prefix(contactless ? 1 : Self.supportedAlgorithms.count).map { a in
                TLV(tag: 0x30, children: [
                    TLV(tag: 0x02, value: [a.reference]), TLV(tag: 0x02, value: a.mechanism), TLV(tag: 0x05, value: []),
                    TLV(tag: 0x03, value: a.operations), TLV(tag: 0x02, value: [a.algRef]),
                ])
            }),
        ]).encoded()
        var cdf: [UInt8] = []
        var certificateEntries: [(UInt8, String, UInt16)] = [(1, CPSCertificate.Role.authentication.label, CPSLayout.authenticationCertificateFile)]
        if signCert != nil { certificateEntries.append((2, CPSCertificate.Role.signature.label, CPSLayout.signatureCertificateFile)) }
        for (id, label, fid) in certificateEntries {
            let path = TLV(tag: 0x04, value: appPath + [UInt8(fid >> 8), UInt8(fid & 0xFF)])
            cdf += TLV(tag: 0x30, children: [
                TLV(tag: 0x30, children: [TLV(tag: 0x0C, value: Array(label.utf8))]),
                TLV(tag: 0x30, children: [TLV(tag: 0x04, value: [id])]),
                TLV(tag: 0xA1, children: [TLV(tag: 0x30, children: [TLV(tag: 0x30, children: [path])])]),
            ]).encoded()
        }

        // PrKDF: one private RSA key object per key (id matching its certificate, key reference, PIN 01 as authId).
        var prkdf: [UInt8] = []
        // KeyUsageFlags: decrypt(1) and sign(2) for authentication; sign(2) and nonRepudiation(9) for signature.
        // algReference [1]: the supportedAlgorithms entries each key may use (RSA PKCS#1 v1.5 signature,
        // for both; deciphering for the authentication key).
        var keyEntries: [(UInt8, String, UInt8, [UInt8], Int, [UInt8])] = [(1, "Cle d'authentification CPS", authRef, [0x05, 0x60], authKey.modulusBytes * 8, contactless ? [1] : [1, 2])]
        if let signKey { keyEntries.append((2, "Cle de signature CPS", signRef, [0x06, 0x20, 0x40], signKey.modulusBytes * 8, [1])) }
        for (id, label, ref, usage, bits, algorithms) in keyEntries {
            var common = [TLV(tag: 0x0C, value: Array(label.utf8)), TLV(tag: 0x03, value: [0x07, 0x80])]  // private
            if !contactless { common.append(TLV(tag: 0x04, value: [0x01])) }  // authId: the PIN
            prkdf += TLV(tag: 0x30, children: [
                TLV(tag: 0x30, children: common),
                TLV(tag: 0x30, children: [TLV(tag: 0x04, value: [id]), TLV(tag: 0x03, value: usage), TLV(tag: 0x02, value: [ref]),
                                          TLV(tag: 0xA1, children: algorithms.map { TLV(tag: 0x02, value: [$0]) })]),
                TLV(tag: 0xA1, children: [TLV(tag: 0x30, children: [
                    TLV(tag: 0x30, children: [TLV(tag: 0x04, value: appPath)]),
                    TLV(tag: 0x02, value: [UInt8(bits >> 8), UInt8(bits & 0xFF)]),
                ])]),
            ]).encoded()
        }
        // AODF: the PIN (CHV 01) and the PUK (synthetic reference 02), ASCII digits padded with FF to 8 bytes.
        // The PIN's common attributes name the PUK's authId (02): how PKCS#15 says which object
        // unblocks it (OpenSC's pkcs15-tool --unblock-pin verifies that reference, then RESET RETRY COUNTER).
        func authObject(label: String, authId: UInt8, flags: [UInt8], reference: UInt8, minLength: UInt8, unblockedBy: UInt8? = nil) -> [UInt8] {
            TLV(tag: 0x30, children: [
                TLV(tag: 0x30, children: [TLV(tag: 0x0C, value: Array(label.utf8)), TLV(tag: 0x03, value: [0x06, 0x40])] + (unblockedBy.map { [TLV(tag: 0x04, value: [$0])] } ?? [])),
                TLV(tag: 0x30, children: [TLV(tag: 0x04, value: [authId])]),
                TLV(tag: 0xA1, children: [TLV(tag: 0x30, children: [
                    TLV(tag: 0x03, value: flags), TLV(tag: 0x0A, value: [0x01]), TLV(tag: 0x02, value: [minLength]),
                    TLV(tag: 0x02, value: [0x08]), TLV(tag: 0x80, value: [reference]), TLV(tag: 0x04, value: [0xFF]),
                ])]),
            ]).encoded()
        }
        let aodf = authObject(label: "PIN porteur", authId: 1, flags: [0x02, 0x0C], reference: pinRef, minLength: 4, unblockedBy: 2)
            // The PUK: initialized, needs-padding, unblockingPin and soPin: the ANS Cryptolib unblocks with
            // C_Login(CKU_SO, PUK) then C_InitPIN, and finds that PIN by the soPin flag.
            + authObject(label: "PUK (synthetic reference)", authId: 2, flags: [0x00, 0x0F], reference: pukRef, minLength: 8)

        // DODF: the ANS external specification's data objects ([C] labels; values as stored, ASN.1 per the
        // unpublished "données métier": here CarteKit's synthetic templates). PKCS#15 opaque data
        // objects: label, flags (private 80, modifiable 40), authId 01 when PIN-protected, application
        // "CPS", the file's path. A CPS3's CPS_SIT_FACT and CPS2TER_ACTIVITY_xx_PS objects are added
        // by the Cryptolib itself (its pkcs15.c); a CPS4's are listed here, with the CPS2TER_ objects.
        let languageTLV = TLV(tag: CPSLayout.languageTemplate, children: [TLV(tag: CPSLayout.marker, value: text(CPSLayout.markerValue)), TLV(tag: 0x80, value: text("fr"))]).encoded()
        let applicationDataTLV = TLV(tag: CPSLayout.applicationDataTemplate, children: [TLV(tag: CPSLayout.marker, value: text(CPSLayout.markerValue))]).encoded()
        func dataObject(_ label: String, _ path: [UInt8], isPrivate: Bool, modifiable: Bool = false) -> [UInt8] {
            let flags: [UInt8] = isPrivate ? (modifiable ? [0x06, 0xC0] : [0x07, 0x80]) : (modifiable ? [0x06, 0x40] : [0x00])
            var common = [TLV(tag: 0x0C, value: Array(label.utf8)), TLV(tag: 0x03, value: flags)]
            if isPrivate { common.append(TLV(tag: 0x04, value: [pinRef])) }
            return TLV(tag: 0x30, children: [
                TLV(tag: 0x30, children: common),
                TLV(tag: 0x30, children: [TLV(tag: 0x0C, value: Array("CPS".utf8))]),
                TLV(tag: 0xA1, children: [TLV(tag: 0x30, children: [TLV(tag: 0x04, value: path)])]),
            ]).encoded()
        }
        func fidBytes(_ fid: UInt16) -> [UInt8] { [UInt8(fid >> 8), UInt8(fid & 0xFF)] }
        var dodf = dataObject("CPS_DATA", appPath + fidBytes(CPSLayout.applicationDataFile), isPrivate: false, modifiable: true)
            + dataObject("CPS_ID_CARD", appPath + fidBytes(CPSLayout.cardFile), isPrivate: false)
            + dataObject("CPS_NAME_PS", appPath + fidBytes(CPSLayout.holderFile), isPrivate: false)
            + dataObject("CPS_LANG_PS", appPath + fidBytes(CPSLayout.languageFile), isPrivate: false)
            + dataObject("CPS_INFO_PS", appPath + fidBytes(CPSLayout.infoFile), isPrivate: false)
        for s in situationFields {
            let n = s.file < 10 ? "0\(s.file)" : "\(s.file)"
            dodf += dataObject("CPS_ACTIVITY_\(n)_PS", appPath + fidBytes(CPSLayout.firstSituation + UInt16(s.file - 1)), isPrivate: true)
        }
        if chipDoc {
            if !situationFields.isEmpty {
                dodf += dataObject("CPS_SIT_FACT", [0x3F, 0x00] + fidBytes(CPSLayout.cps2terBillingDF) + fidBytes(CPSLayout.cps2terBillingFile), isPrivate: true)
            }
            for (label, fid) in CPSLayout.cps2terIdentityFiles { dodf += dataObject(label, [0x3F, 0x00] + fidBytes(fid), isPrivate: false) }
            for s in situationFields {
                let n = s.file < 10 ? "0\(s.file)" : "\(s.file)"
                dodf += dataObject("CPS2TER_ACTIVITY_\(n)_PS", [0x3F, 0x00] + fidBytes(CPSLayout.firstCPS2terSituation + UInt16(s.file - 1)), isPrivate: true)
            }
        }

        var ias: [CardImage.Node] = [
            ef(0x5031, "PKCS#15 ODF (synthetic)", odf, synthetic: true),
            ef(0x5032, "PKCS#15 TokenInfo (synthetic)", tokenInfo, synthetic: true),
            ef(0x5033, "PKCS#15 CDF (synthetic)", cdf, synthetic: true),
            ef(0x5034, "PKCS#15 PrKDF (synthetic)", prkdf, synthetic: true),
            ef(CPSLayout.contactOnlyFile, "contact-only test file", text("CONTACT ONLY (synthetic content)"), read: contactless ? .never : .always, synthetic: true),
            ef(CPSLayout.cardFile, "CPS_ID_CARD (synthetic FID and encoding)", cardTLV, synthetic: true),
            ef(CPSLayout.holderFile, "CPS_NAME_PS (synthetic FID and encoding)", holderTLV, synthetic: true),
            ef(CPSLayout.infoFile, "CPS_INFO_PS (synthetic FID and encoding)", infoTLV, synthetic: true),
        ]
        if !contactless {
            ias.insert(ef(0x5035, "PKCS#15 AODF (synthetic)", aodf, synthetic: true), at: 4)
            ias.insert(ef(0x5036, "PKCS#15 DODF (synthetic)", dodf, synthetic: true), at: 5)
            ias.append(ef(CPSLayout.languageFile, "CPS_LANG_PS (synthetic FID and encoding)", languageTLV, synthetic: true))
            ias.append(ef(CPSLayout.applicationDataFile, "CPS_DATA (synthetic FID and encoding)", applicationDataTLV, synthetic: true))
        }
        for s in situationFields {
            let n = s.file < 10 ? "0\(s.file)" : "\(s.file)"
            ias.append(ef(CPSLayout.firstSituation + UInt16(s.file - 1), "CPS_ACTIVITY_\(n)_PS (synthetic encoding)", situation(s), read: protected, synthetic: true))
        }
        ias.append(ef(CPSLayout.authenticationCertificateFile, "\(CPSCertificate.Role.authentication.label) (synthetic FID, test PKI)", authCert.der, synthetic: true))
        if let signCert {
            ias.append(ef(CPSLayout.signatureCertificateFile, "\(CPSCertificate.Role.signature.label) (synthetic FID, test PKI)", signCert.der, synthetic: true))
        }

        var mf: [CardImage.Node] = [
            ef(0x2F00, "EF.DIR (synthetic)", dir, synthetic: true),
            ef(CPSLayout.efATR, p.generation == .cps3 ? "EF.ATR (a real CPS3's, OpenSC fd83e885f)" : "EF.ATR (the CPS3 dump, reused: synthetic here)", cps3EFATR, sfi: 29, synthetic: p.generation != .cps3),
            ef(CPSLayout.efSNICC, "EF.SN.ICC", snicc, sfi: 28),
        ]
        if let u = p.updated {
            let actua = TLV(tag: 0xEC, children: [TLV(tag: 0x81, value: CPSLayout.bcd(u.start)), TLV(tag: 0x82, value: CPSLayout.bcd(u.end))]).encoded()
            mf.append(ef(CPSLayout.efActua, "EF_ACTUA (update log)", actua))
        }
        if !contactless {
            for s in situationFields {
                mf.append(ef(CPSLayout.firstCPS2terSituation + UInt16(s.file - 1), "CPS2TER_ACTIVITY_\(s.file) (synthetic encoding)", situation(s), read: protected, synthetic: true))
            }
            if chipDoc {
                let contents: [[UInt8]] = [Self.cps4ATR, cardTLV, snicc, holderTLV, languageTLV, infoTLV,
                                           TLV(tag: CPSLayout.amoTemplate, children: [TLV(tag: CPSLayout.marker, value: text(CPSLayout.markerValue))]).encoded()]
                for ((label, fid), bytes) in zip(CPSLayout.cps2terIdentityFiles, contents) {
                    mf.append(ef(fid, "\(label) (synthetic FID and encoding)", bytes, synthetic: true))
                }
            }
            if let billing = situationFields.first {
                mf.append(.dedicated(CardImage.DedicatedFile(fid: CPSLayout.cps2terBillingDF, label: "CPS2ter billing DF",
                                                             children: [ef(CPSLayout.cps2terBillingFile, "CPS_SIT_FACT (synthetic encoding)", situation(billing), read: protected, synthetic: true)])))
            }
        }
        mf.append(.dedicated(CardImage.DedicatedFile(fid: CPSLayout.iasDF, aid: aid, label: contactless ? "CPx IAS CL" : "CPx IAS", children: ias)))
        // The AID a real CPS3's EF.ATR names (ChipDoc on a CPS4): OpenSC selects it when it connects.
        mf.append(.dedicated(CardImage.DedicatedFile(aid: CPSLayout.chipDocAID, label: p.generation == .cps4 ? "ChipDoc applet" : "application named by EF.ATR (synthetic: empty)")))

        let atr: [UInt8]
        let proto: TransmissionProtocol
        switch p.generation {
        case .cps3: atr = try! [UInt8](hex: "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"); proto = .t0
        case .cps3Contactless: atr = try! [UInt8](hex: "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"); proto = .t1
        case .cps4: atr = Self.cps4ATR; proto = .t1
        }
        var classes: Set<UInt8> = [0x00]
        if !contactless { classes.insert(0xA0) }
        // A CPS3 refuses SELECT P2 00 ([C] OpenSC logs); the CPS4's ChipDoc takes it (the Cryptolib 5.2.2
        // selects EF.SN with `01 A4 08 00`).
        let behaviour = CardImage.Behaviour(t0Responses: proto == .t0, classes: classes, selectRejectedP2: chipDoc ? [] : [0x00], challengeSeed: UInt64(p.serial)!,
                                            cps2terVolet: !contactless, logicalChannels: chipDoc ? 2 : 1, securityAttributesInFCP: true,
                                            securityOperations: chipDoc ? .chipDoc : .iasECC)
        var pins: [CardImage.PIN] = []
        if !contactless {
            func block(_ s: String) -> [UInt8] { Array(s.utf8) + [UInt8](repeating: 0xFF, count: max(0, 8 - s.utf8.count)) }
            pins = [CardImage.PIN(reference: pinRef, value: block(p.pin), maxTries: p.pinMaxTries, remainingTries: p.pinTriesLeft, label: "PIN porteur (CHV 01)", unblockedBy: pukRef),
                    CardImage.PIN(reference: pukRef, value: block(p.puk), maxTries: p.pukMaxTries, remainingTries: p.pukTriesLeft, label: "PUK (synthetic reference)")]
        }
        // A CPS4 has no INTERNAL AUTHENTICATE: its authentication key deciphers (which is how it
        // authenticates) and signs with PSS, as the Cryptolib asks it to (SHA256-RSA-PKCS-PSS on key 01).
        let authUsages: Set<CardImage.Key.Usage> = contactless ? [.authenticate] : chipDoc ? [.sign, .decipher] : [.authenticate, .decipher]
        var imageKeys = [CardImage.Key(reference: authRef, label: "authentication key (test key)", usages: authUsages,
                                       use: contactless ? .always : .pin(pinRef), privateKeyPEM: authKey.pem)]
        if let signKey, chipDoc {
            imageKeys.append(CardImage.Key(reference: signRef, label: "signature key (test key)", usages: [.sign], use: .pin(pinRef), privateKeyPEM: signKey.pem))
        } else if let signKey {
            // INTERNAL AUTHENTICATE with the signature key is what PKCS#11's CKM_RSA_PKCS becomes on
            // IAS-ECC (OpenSC 0.23): whether a real CPS3 allows it is not public ([U], synthetic here).
            imageKeys.append(CardImage.Key(reference: signatureKeyRef, label: "signature key (test key)", usages: [.sign, .authenticate], use: .pin(pinRef), privateKeyPEM: signKey.pem))
        }
        var image = CardImage(name: p.name, summary: p.summary, synthetic: true, source: source, atr: atr, cardProtocol: proto, behaviour: behaviour,
                              root: CardImage.DedicatedFile(fid: 0x3F00, label: "MF", children: mf), pins: pins)
        image.keys = imageKeys
        return image
    }

    /// One PKCS#15 `AlgorithmInfo` of EF.TokenInfo: its reference (what PrKDF `algReference` names),
    /// the PKCS#11 mechanism, the operations (a BIT STRING) and the card's algorithm byte for MSE SET.
    struct SupportedAlgorithm {
        var reference: UInt8
        var mechanism: [UInt8]
        var operations: [UInt8]
        var algRef: UInt8
    }

    /// The synthetic CPS3 list: CKM_RSA_PKCS signature (AT) and deciphering (CT), CKM_SHA256 hashing
    /// (HT) and CKM_SHA256_RSA_PKCS (DST). Operations: compute-signature `06 40`, decipher `02 04`, hash `01 02`.
    static let supportedAlgorithms: [SupportedAlgorithm] = [
        SupportedAlgorithm(reference: 1, mechanism: [0x01], operations: [0x06, 0x40], algRef: 0x02),
        SupportedAlgorithm(reference: 2, mechanism: [0x01], operations: [0x02, 0x04], algRef: 0x1A),
        SupportedAlgorithm(reference: 3, mechanism: [0x02, 0x50], operations: [0x01, 0x02], algRef: 0x40),
        SupportedAlgorithm(reference: 4, mechanism: [0x40], operations: [0x06, 0x40], algRef: 0x42),
    ]

    /// The Luhn check digit of a digit string (the last digit of an RPPS number and of a CPx card's PAN).
    public static func luhn(_ digits: String) -> Int {
        var sum = 0
        for (i, ch) in digits.reversed().enumerated() {
            var d = ch.wholeNumberValue ?? 0
            if i % 2 == 0 { d *= 2; if d > 9 { d -= 9 } }
            sum += d
        }
        return (10 - sum % 10) % 10
    }

    /// Seconds since 1970 of `YYYYMMDD` at 00:00:00 or 23:59:59 UTC.
    static func epoch(_ date: String, endOfDay: Bool) -> Int64 {
        let v = Int(date)!
        var y = v / 10000, m = v / 100 % 100
        let d = v % 100
        // Days from civil (Howard Hinnant's algorithm).
        y -= m <= 2 ? 1 : 0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        m = m > 2 ? m - 3 : m + 9
        let doy = (153 * m + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = Int64(era * 146_097 + doe - 719_468)
        return days * 86_400 + (endOfDay ? 86_399 : 0)
    }
}
