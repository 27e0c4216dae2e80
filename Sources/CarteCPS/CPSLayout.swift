public import CarteCore

/// Where a CPx card keeps what CarteKit reads, and how it is encoded.
///
/// **[C] facts** (domain-facts §5.2–§5.5, binding): the AIDs, EF.ATR `3F00/2F01`, EF.SN.ICC
/// `3F00/D003` (12 bytes, the ANS issuer number `80 25 00 00 01` at bytes 2–6), EF_ACTUA `3F00/D010`
/// (template `EC`, `81` start and `82` end in BCD), the IAS situation files `3F00/0001/D120…D12F`,
/// the contact-only file `3F00/0001/7001`, the CPS2ter situations `3F00/4010…401F` and
/// `3F00/7F01/4000`, the CHV 01 GET DATA header, the APDUs and status words.
///
/// **Synthetic** ([U] publicly: the ASN.1 of the ANS "données métier" specification is not public):
/// the content of the holder and situation files. CarteKit encodes them as BER-TLV whose context
/// tags are the field numbers of the SESAM-Vitale groups 1 and 2 (§4, [C]): tag `80 + n` holds field
/// `n` in ISO-8859-1. The FIDs of the holder files and of the certificates, the key references, the
/// PUK reference and the PIN padding are also synthetic; ``CPSReader/Configuration`` lets a caller
/// change every one of them.
public enum CPSLayout {
    /// "CPx IAS", the contact IAS-ECC application (also the CPS4 PKCS#15 application). [C]
    public static let iasAID: [UInt8] = [0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x10]
    /// "CPx IAS CL", the contactless application. [C]
    public static let contactlessAID: [UInt8] = [0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x20]
    /// The CPS4 ChipDoc applet, selected on logical channel 1 (CLA `01`). [C]
    public static let chipDocAID: [UInt8] = [0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x01, 0x00]
    /// The ANS IAS issuer number. [C]
    public static let issuerNumber: [UInt8] = [0x80, 0x25, 0x00, 0x00, 0x01]

    /// EF.ATR under the MF (57 bytes on a CPS3). [C]
    public static let efATR: UInt16 = 0x2F01
    /// EF.SN.ICC under the MF (12 bytes). [C]
    public static let efSNICC: UInt16 = 0xD003
    /// EF_ACTUA, the update log, under the MF; absent until the first update. [C]
    public static let efActua: UInt16 = 0xD010
    /// The IAS application DF under the MF (`3F00/0001`). [C] path; [P] that it carries ``iasAID``.
    public static let iasDF: UInt16 = 0x0001
    /// The contact-only file of the IAS DF. [C]
    public static let contactOnlyFile: UInt16 = 0x7001
    /// The first of the 16 IAS situation files (`D120`…`D12F`). [C]
    public static let firstSituation: UInt16 = 0xD120
    /// The first of the 16 CPS2ter situation files (`4010`…`401F`), under the MF. [C]
    public static let firstCPS2terSituation: UInt16 = 0x4010
    /// The CPS2ter billing DF and file (`3F00/7F01/4000`, CPS_SIT_FACT). [C]
    public static let cps2terBillingDF: UInt16 = 0x7F01
    public static let cps2terBillingFile: UInt16 = 0x4000

    /// CPS_ID_CARD in the IAS DF. **Synthetic FID.**
    public static let cardFile: UInt16 = 0xD101
    /// CPS_NAME_PS in the IAS DF. **Synthetic FID.**
    public static let holderFile: UInt16 = 0xD102
    /// CPS_INFO_PS in the IAS DF. **Synthetic FID.**
    public static let infoFile: UInt16 = 0xD103
    /// CPS_LANG_PS (the holder's languages) in the IAS DF. **Synthetic FID.**
    public static let languageFile: UInt16 = 0xD104
    /// CPS_DATA (the applications' data object, the one writable object of the ANS specification) in
    /// the IAS DF. **Synthetic FID.**
    public static let applicationDataFile: UInt16 = 0xD105
    /// The CPS4's CPS2ter identification files under the MF, in the order CPS2TER_ATR, _ID, _ICC,
    /// _NAME, _LANG, _PSINFO, _DIRAMO (labels [C], the ANS external specification). **Synthetic FIDs.**
    public static let cps2terIdentityFiles: [(label: String, fid: UInt16)] = [
        ("CPS2TER_ATR", 0x4001), ("CPS2TER_ID", 0x4002), ("CPS2TER_ICC", 0x4003), ("CPS2TER_NAME", 0x4004),
        ("CPS2TER_LANG", 0x4005), ("CPS2TER_PSINFO", 0x4006), ("CPS2TER_DIRAMO", 0x4007),
    ]
    /// "Certificat d'Authentification CPS" (DER) in the IAS DF. **Synthetic FID.**
    public static let authenticationCertificateFile: UInt16 = 0xC001
    /// "Certificat de Signature CPS" (DER) in the IAS DF. **Synthetic FID.**
    public static let signatureCertificateFile: UInt16 = 0xC002

    /// Templates of the synthetic files.
    public static let cardTemplate: TLVTag = 0xE0
    /// Holder template: SESAM-Vitale group 1 fields 1–7 as tags `81`…`87`.
    public static let holderTemplate: TLVTag = 0xE1
    /// Situation template: group 2 fields 1–21 as tags `81`…`95`.
    public static let situationTemplate: TLVTag = 0xE2
    /// Professional information template (profession, speciality, the situation files present).
    public static let infoTemplate: TLVTag = 0xE3
    /// Languages template (`80` the language codes, ISO 639-1).
    public static let languageTemplate: TLVTag = 0xE4
    /// Application data template (empty but for the marker on a new card).
    public static let applicationDataTemplate: TLVTag = 0xE5
    /// CPS2ter AMO template (empty but for the marker: the synthetic cards carry no AMO data).
    public static let amoTemplate: TLVTag = 0xE6
    /// First field of every synthetic template: marks CarteKit's layout.
    public static let marker: TLVTag = 0xDF01
    /// The marker's value.
    public static let markerValue = "CARTEKIT-SYNTHETIC/1"

    /// Card template fields.
    public enum Card {
        /// Card type (CPS, CPE, CPF, CPA).
        public static let type: TLVTag = 0x80
        /// Card serial number (the EF.SN.ICC serial, as digits).
        public static let serial: TLVTag = 0x81
        /// Start of validity `YYYYMMDD`.
        public static let validFrom: TLVTag = 0x82
        /// End of validity `YYYYMMDD`.
        public static let validUntil: TLVTag = 0x83
        /// Issuer ("8025000001").
        public static let issuer: TLVTag = 0x84
    }

    /// Professional information fields.
    public enum Info {
        /// Profession code (`10` médecin, `21` pharmacien… in the RPPS nomenclature).
        public static let profession: TLVTag = 0x80
        /// Profession label.
        public static let professionLabel: TLVTag = 0x81
        /// Speciality code (`SM26`…).
        public static let speciality: TLVTag = 0x82
        /// Speciality label.
        public static let specialityLabel: TLVTag = 0x83
        /// The situation file numbers present (1…16), one byte each: saves probing 16 files.
        public static let situationIndexes: TLVTag = 0x84
    }

    /// Encodes ISO-8859-1 text (characters above U+00FF become `?`).
    public static func latin1(_ text: String) -> [UInt8] { text.unicodeScalars.map { $0.value <= 0xFF ? UInt8($0.value) : 0x3F } }
    /// Decodes ISO-8859-1 bytes.
    public static func text(_ bytes: [UInt8]) -> String { String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) })) }

    /// A template whose fields are the numbered SSV fields (`80 + n`), after the marker.
    public static func numberedTemplate(_ tag: TLVTag, fields: [Int: String]) -> TLV {
        var children = [TLV(tag: marker, value: latin1(markerValue))]
        for n in fields.keys.sorted() where !(fields[n]!.isEmpty) {
            children.append(TLV(tag: TLVTag(rawValue: 0x80 + UInt32(n)), value: latin1(fields[n]!)))
        }
        return TLV(tag: tag, children: children)
    }

    /// The numbered fields of a template (`80 + n` → field n), or `nil` without CarteKit's marker.
    public static func numberedFields(_ template: TLV) -> [Int: String]? {
        guard let children = template.children, children.first?.tag == marker,
              children.first?.value == latin1(markerValue) else { return nil }
        var out: [Int: String] = [:]
        for c in children.dropFirst() where c.tag.rawValue > 0x80 && c.tag.rawValue <= 0x9E {
            out[Int(c.tag.rawValue - 0x80)] = text(c.value)
        }
        return out
    }

    /// Packs a `YYYYMMDDhhmmss` text in BCD (EF_ACTUA dates).
    public static func bcd(_ digits: String) -> [UInt8] {
        let d = digits.compactMap { $0.wholeNumberValue }.map(UInt8.init)
        return stride(from: 0, to: d.count - 1, by: 2).map { d[$0] << 4 | d[$0 + 1] }
    }
}
