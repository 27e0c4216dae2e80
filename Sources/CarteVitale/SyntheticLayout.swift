public import CarteCore

/// CarteKit's **synthetic** layout for the Carte Vitale 2 data that is not public ([U] in
/// domain-facts §3.4): card serial and validity, AMO (régime, caisse, centre, code gestion), rights
/// periods, coverage periods with ALD and situation codes, C2S, AMC and mutuelle. Where a real card
/// keeps them is not public; the fields mirror the SESAM-Vitale groups 101–111 (§4, [C]) and live in
/// BER-TLV file of the VITALE application that only CarteKit's images have. A real card without this
/// file is read all the same: these parts are then absent, not guessed.
///
/// One file holds everything (one read, two APDUs on a T=0 card): the card template, then one person
/// template per person in card order, then the mutuelle template when there is one.
public enum SyntheticLayout {
    /// SFI of the synthetic data file (groups 101–111).
    public static let dataSFI: UInt8 = 3

    /// First field of the card template: marks CarteKit's layout (another card's SFI 3 is ignored).
    public static let marker: TLVTag = 0xDF01
    /// The marker's value.
    public static let markerValue = "CARTEKIT-SYNTHETIC/1"

    /// Template of the card data (groups 101, 102, 103, 111).
    public static let cardTemplate: TLVTag = 0xE0
    /// Template of one person's data (groups 104, 105, 106, 109), in card order.
    public static let personTemplate: TLVTag = 0xE1
    /// Template of the mutuelle data (groups 107, 108).
    public static let mutuelleTemplate: TLVTag = 0xE2

    /// Card template fields (group 101 field numbers in the comments).
    public enum Card {
        /// 101/1 type de carte Vitale
        public static let type: TLVTag = 0x80
        /// 101/2 n° de série
        public static let serial: TLVTag = 0x81
        /// 101/3 date de fin de validité (YYYYMMDD)
        public static let validUntil: TLVTag = 0x82
        /// 101/10 code régime
        public static let regime: TLVTag = 0x83
        /// 101/11 caisse gestionnaire
        public static let caisse: TLVTag = 0x84
        /// 101/12 centre gestionnaire
        public static let centre: TLVTag = 0x85
        /// 101/13 code gestion
        public static let codeGestion: TLVTag = 0x86
        /// 102 service AMO famille: 80 code, 81 from, 82 to
        public static let familyService: TLVTag = 0xA2
        /// 103 accident du travail: 80 organisme, 81 code BGDH, 82 identifiant
        public static let workAccident: TLVTag = 0xA3
        /// 111/1 zone commune complémentaire
        public static let commonZone: TLVTag = 0x8B
    }

    /// Person template fields.
    public enum Person {
        /// 104/1 nom usuel
        public static let usualName: TLVTag = 0x80
        /// 104/2 nom patronymique
        public static let birthName: TLVTag = 0x81
        /// 104/13 rang de naissance
        public static let birthRank: TLVTag = 0x82
        /// 104/14 qualité
        public static let quality: TLVTag = 0x83
        /// 104/15 code service AMO bénéficiaire (C2S…)
        public static let serviceCode: TLVTag = 0x84
        /// 104/16
        public static let serviceFrom: TLVTag = 0x85
        /// 104/17
        public static let serviceTo: TLVTag = 0x86
        /// 105: 80 from, 81 to
        public static let rights: TLVTag = 0xA5
        /// 106: 80 from, 81 to, 82 ALD, 83 situation
        public static let coverage: TLVTag = 0xA6
        /// 109: 80 n° B2, 81 EDI, 82 adhérent, 83 indicateur, 84 from, 85 to, 86 routage, 87 hôte, 88 domaine
        public static let amc: TLVTag = 0xA9
    }

    /// Mutuelle template fields.
    public enum Mutuelle {
        /// 107/1
        public static let identification: TLVTag = 0x80
        /// 107/2 garanties effectives
        public static let guarantees: TLVTag = 0x81
        /// 107/3 indicateur de traitement
        public static let indicator: TLVTag = 0x82
        /// 108: 80 from, 81 to
        public static let period: TLVTag = 0xA8
    }
}
