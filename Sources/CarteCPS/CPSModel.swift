public import CarteCore
public import CarteCrypto

/// The CPx generations CarteKit tells apart.
public enum CPSGeneration: String, Hashable, Sendable, CaseIterable {
    /// CPS3, contact interface (IAS-ECC + CPS2ter volet).
    case cps3
    /// CPS3 read over its contactless interface: no PIN, no signature.
    case cps3Contactless = "cps3-contactless"
    /// CPS4 (ChipDoc applet on logical channel 1, PKCS#15 application, CPS2ter objects).
    case cps4

    /// The generation an ATR announces, or `nil` for a card that is not a CPx (domain-facts §1).
    public static func from(atr: [UInt8]) -> CPSGeneration? {
        switch KnownATR.identify(atr).first?.family {
        case .cps3?: return .cps3
        case .cps3Contactless?: return .cps3Contactless
        case .cps4?: return .cps4
        default: return nil
        }
    }
}

/// The card family of a CPx: professional (CPS), establishment staff (CPE), student (CPF) or
/// staff authorised by a professional (CPA).
public enum CPxType: String, Hashable, Sendable, CaseIterable {
    case cps = "CPS", cpe = "CPE", cpf = "CPF", cpa = "CPA"

    /// The "type de carte PS" code of SESAM-Vitale group 1 field 1. [P] synthetic mapping: only `0` =
    /// CPS is shown by a public test dump (domain-facts §4); the others are CarteKit's.
    public var ssvCode: String {
        switch self {
        case .cps: return "0"
        case .cpf: return "1"
        case .cpe: return "2"
        case .cpa: return "3"
        }
    }

    /// The type a group 1 code stands for (see ``ssvCode``).
    public init?(ssvCode: String) {
        guard let t = CPxType.allCases.first(where: { $0.ssvCode == ssvCode }) else { return nil }
        self = t
    }
}

/// A national identifier of a health professional, with its type prefix.
public struct NationalID: Hashable, Sendable, CustomStringConvertible {
    /// The type code of group 1 field 2 (`8` RPPS, `0` ADELI; others kept as read).
    public var type: String
    /// The number (11 digits for RPPS, 9 for ADELI).
    public var number: String
    /// The key (group 1 field 4), when the card gives one.
    public var key: String?

    /// Creates an identifier.
    public init(type: String, number: String, key: String? = nil) {
        self.type = type
        self.number = number
        self.key = key
    }

    /// `RPPS`, `ADELI` or `type <code>`.
    public var kind: String {
        switch type {
        case "8": return "RPPS"
        case "0": return "ADELI"
        default: return "type \(type)"
        }
    }

    /// The identifier with its type prefix, as health software sends it (`8` + RPPS, DMP example §5.7).
    public var prefixed: String { type + number }

    public var description: String { "\(kind) \(number)" }
}

/// The holder of a CPx card (SESAM-Vitale group 1, plus the profession and speciality).
public struct ProfessionalHolder: Hashable, Sendable {
    /// Card type (group 1 field 1).
    public var cardType: CPxType?
    /// The raw group 1 field 1.
    public var cardTypeCode: String
    /// National identifier (fields 2–4).
    public var nationalID: NationalID
    /// Civility code (field 5).
    public var civility: String?
    /// Surname (field 6).
    public var surname: String
    /// First name (field 7).
    public var firstName: String
    /// Profession code (`10` médecin, `21` pharmacien, …).
    public var profession: String?
    /// Profession label.
    public var professionLabel: String?
    /// Speciality code (`SM26` …).
    public var speciality: String?
    /// Speciality label.
    public var specialityLabel: String?

    /// Creates a holder.
    public init(cardType: CPxType?, cardTypeCode: String, nationalID: NationalID, civility: String?, surname: String, firstName: String,
                profession: String? = nil, professionLabel: String? = nil, speciality: String? = nil, specialityLabel: String? = nil) {
        self.cardType = cardType
        self.cardTypeCode = cardTypeCode
        self.nationalID = nationalID
        self.civility = civility
        self.surname = surname
        self.firstName = firstName
        self.profession = profession
        self.professionLabel = professionLabel
        self.speciality = speciality
        self.specialityLabel = specialityLabel
    }
}

/// One practice situation (SESAM-Vitale group 2). Field numbers are those of the group.
public struct PracticeSituation: Hashable, Sendable {
    /// The situation file it came from (1…16).
    public var file: Int
    /// Every field read, by group 2 field number (1…21).
    public var fields: [Int: String]

    /// Creates a situation.
    public init(file: Int, fields: [Int: String]) {
        self.file = file
        self.fields = fields
    }

    /// 2/1 n° logique de situation.
    public var number: String? { fields[1] }
    /// 2/2 mode d'exercice (`0` libéral, `1` salarié, `2` remplaçant… [C] field, codes from the SSV documentation).
    public var practiceMode: String? { fields[2] }
    /// 2/3 statut d'exercice.
    public var practiceStatus: String? { fields[3] }
    /// 2/4 secteur d'activité.
    public var activitySector: String? { fields[4] }
    /// 2/5 type d'identification de la structure.
    public var structureIDType: String? { fields[5] }
    /// 2/6 n° d'identification de la structure.
    public var structureID: String? { fields[6] }
    /// 2/8 raison sociale de la structure.
    public var structureName: String? { fields[8] }
    /// 2/9 n° d'identification de facturation du PS.
    public var billingID: String? { fields[9] }
    /// 2/13 code conventionnel.
    public var convention: String? { fields[13] }
    /// 2/14 code spécialité.
    public var speciality: String? { fields[14] }
    /// 2/15 code zone tarifaire.
    public var tariffZone: String? { fields[15] }
    /// 2/16 code zone IK.
    public var ikZone: String? { fields[16] }
    /// 2/20 habilitation à signer une facture.
    public var maySignInvoices: String? { fields[20] }
    /// 2/21 habilitation à signer un lot.
    public var maySignBatches: String? { fields[21] }

    /// The names of the group 2 fields, for display.
    public static let fieldNames: [Int: String] = [
        1: "numero-logique", 2: "mode-exercice", 3: "statut-exercice", 4: "secteur-activite", 5: "type-id-structure",
        6: "id-structure", 7: "cle-id-structure", 8: "raison-sociale", 9: "id-facturation", 10: "cle-id-facturation",
        11: "id-remplacant", 12: "cle-id-remplacant", 13: "code-conventionnel", 14: "code-specialite", 15: "zone-tarifaire",
        16: "zone-ik", 17: "agrement-1", 18: "agrement-2", 19: "agrement-3", 20: "habilitation-facture", 21: "habilitation-lot",
    ]
}

/// A date `YYYYMMDD` as stored on the card, comparable.
public struct CardDate: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 8 digits.
    public let digits: String
    /// Parses `YYYYMMDD`; `nil` unless it is 8 digits of a plausible calendar date.
    public init?(_ text: String) {
        guard text.count == 8, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let v = Int(text)!
        let month = v / 100 % 100, day = v % 100
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        digits = text
    }
    public static func < (a: CardDate, b: CardDate) -> Bool { a.digits < b.digits }
    /// `YYYY-MM-DD`.
    public var description: String {
        let d = Array(digits)
        return String(d[0..<4]) + "-" + String(d[4..<6]) + "-" + String(d[6..<8])
    }
}

/// The card itself: type, serial, validity.
public struct CPSCardInfo: Hashable, Sendable {
    /// Generation, from the ATR.
    public var generation: CPSGeneration
    /// Serial number from EF.SN.ICC (BCD digits after the issuer number), when readable.
    public var serial: String?
    /// Issuer number from EF.SN.ICC ("8025000001" for the ANS).
    public var issuer: String?
    /// Start of validity (synthetic CPS_ID_CARD).
    public var validFrom: CardDate?
    /// End of validity (synthetic CPS_ID_CARD).
    public var validUntil: CardDate?
    /// Date of the last update of the card's data (EF_ACTUA tag `82`), when the card was updated.
    public var lastUpdate: String?

    /// Creates card information.
    public init(generation: CPSGeneration, serial: String? = nil, issuer: String? = nil, validFrom: CardDate? = nil, validUntil: CardDate? = nil, lastUpdate: String? = nil) {
        self.generation = generation
        self.serial = serial
        self.issuer = issuer
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.lastUpdate = lastUpdate
    }

    /// Whether the card is past its end of validity on `date`.
    public func isExpired(on date: CardDate) -> Bool { validUntil.map { $0 < date } ?? false }
}

/// A certificate on the card with its role.
public struct CPSCertificate: Hashable, Sendable {
    /// What the certificate's key does.
    public enum Role: String, Hashable, Sendable, CaseIterable {
        /// "Certificat d'Authentification CPS" ([C] label): client authentication, deciphering.
        case authentication
        /// "Certificat de Signature CPS" ([P] label): electronic signature.
        case signature

        /// The PKCS#11 label.
        public var label: String {
            switch self {
            case .authentication: return "Certificat d'Authentification CPS"
            case .signature: return "Certificat de Signature CPS"
            }
        }
    }
    /// The role.
    public var role: Role
    /// The certificate.
    public var certificate: X509Certificate

    /// Creates an entry.
    public init(role: Role, certificate: X509Certificate) {
        self.role = role
        self.certificate = certificate
    }
}

/// What `VERIFY` (or the GET DATA status) says about the PIN.
public struct PINStatus: Hashable, Sendable, CustomStringConvertible {
    /// The try counter's maximum, when the card reports it.
    public var maxTries: Int?
    /// Tries left (0 = blocked).
    public var triesLeft: Int
    /// The usage counter (`9D`), when the card reports it.
    public var usageLeft: Int?
    /// Whether the PIN is verified in this session (known only from a VERIFY status query).
    public var verified: Bool?

    /// Creates a status.
    public init(maxTries: Int?, triesLeft: Int, usageLeft: Int? = nil, verified: Bool? = nil) {
        self.maxTries = maxTries
        self.triesLeft = triesLeft
        self.usageLeft = usageLeft
        self.verified = verified
    }

    /// Whether no try is left.
    public var blocked: Bool { triesLeft == 0 }

    public var description: String {
        if blocked { return "blocked (0 tries left): unblock it with the PUK (carte cps pin unblock)" }
        return "\(triesLeft)\(maxTries.map { "/\($0)" } ?? "") tries left" + (verified == true ? ", verified" : "")
    }
}

/// Everything ``CPSReader/read(atr:)`` gathers.
public struct ProfessionalCard: Hashable, Sendable {
    /// Card information.
    public var card: CPSCardInfo
    /// The holder, from CPS_NAME_PS and CPS_INFO_PS.
    public var holder: ProfessionalHolder?
    /// Practice situations; `nil` when they are protected and the PIN was not verified, and over the
    /// contactless interface (which does not give them).
    public var situations: [PracticeSituation]?
    /// Whether the situations need the PIN (the card answered `6982`).
    public var situationsNeedPIN: Bool
    /// The certificates read.
    public var certificates: [CPSCertificate]
    /// Whether the holder data came from CarteKit's synthetic encoding (the real one is not public:
    /// a real card's files are reported as issues, not guessed).
    public var usesSyntheticLayout: Bool
    /// How many APDUs the reading took (automatic GET RESPONSE and resends included).
    public var apduCount: Int
    /// Problems that did not stop the reading (a file absent or malformed).
    public var issues: [String]

    /// Creates a card.
    public init(card: CPSCardInfo, holder: ProfessionalHolder? = nil, situations: [PracticeSituation]? = nil, situationsNeedPIN: Bool = false,
                certificates: [CPSCertificate] = [], usesSyntheticLayout: Bool = true, apduCount: Int = 0, issues: [String] = []) {
        self.card = card
        self.holder = holder
        self.situations = situations
        self.situationsNeedPIN = situationsNeedPIN
        self.certificates = certificates
        self.usesSyntheticLayout = usesSyntheticLayout
        self.apduCount = apduCount
        self.issues = issues
    }
}

/// A PIN or PUK typed by the holder. It never appears in a description, a dump, a log or an error;
/// only ``CPSReader`` turns it into bytes, for one command.
public struct PINCode: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let digits: [UInt8]

    /// Accepts 4 to 16 ASCII digits; the error never repeats the input.
    public init(_ text: String) throws(CPSError) {
        let bytes = Array(text.utf8)
        guard (4...16).contains(bytes.count) else { throw .invalidPINFormat("a PIN or PUK has 4 to 16 digits, this one has \(bytes.count) characters") }
        guard bytes.allSatisfy({ (0x30...0x39).contains($0) }) else { throw .invalidPINFormat("a PIN or PUK has only digits 0-9") }
        digits = bytes
    }

    /// The number of digits (not secret).
    public var count: Int { digits.count }

    /// Whether two entries are the same (a new PIN typed twice), in constant time.
    public func matches(_ other: PINCode) -> Bool {
        guard digits.count == other.digits.count else { return false }
        var diff: UInt8 = 0
        for i in digits.indices { diff |= digits[i] ^ other.digits[i] }
        return diff == 0
    }

    public var description: String { "<PIN redacted>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// Why a CPx operation failed. Every case is safe to show: none carries a PIN.
public enum CPSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The card is not a CPx card (its ATR, or SELECT of the IAS application answered `sw`).
    case notACPS(String)
    /// A file could not be read.
    case unreadable(file: String, StatusWord)
    /// A file's content is not what the layout says.
    case malformed(file: String, String)
    /// The PIN (or PUK) presented was wrong; `triesLeft` tries remain. Nothing was retried.
    case wrongPIN(which: String, triesLeft: Int)
    /// The PIN is blocked: unblock it with the PUK.
    case pinBlocked
    /// The PUK is blocked too: the card must be replaced (contact the ANS).
    case pukBlocked
    /// The operation needs the PIN verified first.
    case pinRequired(String)
    /// A PIN or PUK with the wrong format (never contains the value).
    case invalidPINFormat(String)
    /// The card refused a security operation.
    case operationRefused(String, StatusWord)
    /// What this card or interface cannot do (a contactless CPS3 has no PIN and does not sign).
    case unsupported(String)
    /// The reader's PIN pad ended the entry itself (timeout, cancel, wrong length, confirmation
    /// differing): the card was not asked and no try was consumed.
    case pinPad(PINPadStatus)
    /// A certificate or signature problem.
    case crypto(CryptoError)
    /// The exchange with the card failed.
    case card(CardError)

    public var description: String {
        switch self {
        case .notACPS(let why): return "not a CPx card: \(why)"
        case .unreadable(let file, let sw): return "\(file) cannot be read (\(sw): \(sw.meaning))"
        case .malformed(let file, let why): return "\(file) is malformed: \(why)"
        case .wrongPIN(let which, let tries):
            return tries == 1 ? "wrong \(which): 1 try left before it is blocked" : "wrong \(which): \(tries) tries left"
        case .pinBlocked: return "the PIN is blocked: unblock it with the PUK (carte cps pin unblock)"
        case .pukBlocked: return "the PUK is blocked: the card can no longer be unblocked; ask for a new card"
        case .pinRequired(let what): return "\(what) needs the PIN: verify it first (carte cps pin verify)"
        case .invalidPINFormat(let why): return "invalid PIN: \(why)"
        case .operationRefused(let what, let sw): return "the card refused \(what) (\(sw): \(sw.meaning))"
        case .unsupported(let what): return "not supported: \(what)"
        case .pinPad(let status): return status.description
        case .crypto(let e): return e.description
        case .card(let e): return e.description
        }
    }
}
