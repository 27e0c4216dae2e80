public import CarteCore
public import Logging

/// A person on a Carte Vitale (the insured person or a beneficiary).
public struct Beneficiary: Hashable, Sendable, Codable {
    /// Position on the card (0 = first `65` template).
    public var index: Int
    /// Surname (tag `80`), trailing spaces removed.
    public var surname: String?
    /// First name (tag `81`).
    public var firstName: String?
    /// Birth date (tag `82`), possibly lunar (see ``VitaleDate/isLunar``).
    public var birthDate: VitaleDate?
    /// Nationality / country (tag `90`), when present.
    public var nationality: String?
    /// The NIR (tag `93`), when it parses; check ``NIR/isKeyValid``.
    public var nir: NIR?

    // Synthetic rights file (SyntheticLayout; groups 104–106, 109). Absent on cards without it.
    /// Usual name (104/1), when the rights file has it.
    public var usualName: String?
    /// Birth name, "nom patronymique" (104/2).
    public var birthName: String?
    /// Birth rank (104/13): 1 and 2 for twins born the same day.
    public var birthRank: Int?
    /// Quality code (104/14), as written.
    public var quality: String?
    /// AMO service (104/15–17): `01`, `02`, `03` are C2S managed by the AMO, AMC+AMO or AMC; `10` leaving.
    public var service: ServicePeriod?
    /// AMO rights periods (105).
    public var rights: [Period] = []
    /// Coverage periods (106) with ALD and situation codes.
    public var coverage: [Coverage] = []
    /// Complementary insurance (109).
    public var amc: AMC?

    /// A person at `index` with no field read yet.
    public init(index: Int) { self.index = index }

    /// Whether AMO rights are open on `date`: `nil` when the card holds no rights data.
    public func rightsOpen(on date: VitaleDate) -> Bool? {
        guard !rights.isEmpty else { return nil }
        if rights.contains(where: { $0.contains(date) }) { return true }
        if rights.contains(where: { !$0.isValid }) { return nil }  // a damaged period: unknown, not closed
        return false
    }

    /// Whether C2S (complémentaire santé solidaire, service codes 01–03) applies on `date`.
    public func c2s(on date: VitaleDate) -> Bool {
        guard let service, ["01", "02", "03"].contains(service.code) else { return false }
        return service.period.contains(date)
    }

    /// The ALD codes of the coverage periods open on `date`.
    public func ald(on date: VitaleDate) -> [String] {
        coverage.filter { $0.period.contains(date) && !$0.ald.isEmpty && $0.ald.allSatisfy({ $0 == "0" }) == false }.map(\.ald)
    }
}

/// A period between two dates, both included; an absent bound is open.
public struct Period: Hashable, Sendable, Codable {
    /// First day, included (`nil`: open).
    public var from: VitaleDate?
    /// Last day, included (`nil`: open).
    public var to: VitaleDate?
    /// False when a bound was written but is not a date: the period then contains no date (an issue
    /// reports it), rather than becoming open-ended.
    public var isValid = true
    /// A period between two dates, both included.
    public init(from: VitaleDate?, to: VitaleDate?) {
        self.from = from
        self.to = to
    }
    /// Whether `date` falls within the period.
    public func contains(_ date: VitaleDate) -> Bool {
        isValid && (from.map { $0 <= date } ?? true) && (to.map { date <= $0 } ?? true)
    }
}

/// An AMO service (C2S and others) with its period.
public struct ServicePeriod: Hashable, Sendable, Codable {
    /// The service code.
    public var code: String
    public var period: Period
}

/// A coverage period (106).
public struct Coverage: Hashable, Sendable, Codable {
    public var period: Period
    /// ALD code (`0` or empty: none).
    public var ald: String
    /// Situation code.
    public var situation: String
}

/// Complementary insurance (AMC, group 109).
public struct AMC: Hashable, Sendable, Codable {
    /// N° complémentaire B2 (109/1).
    public var numberB2: String?
    /// N° complémentaire EDI (109/2).
    public var numberEDI: String?
    /// N° adhérent AMC (109/3).
    public var member: String?
    public var indicator: String?
    public var period: Period
    /// Code routage AMC (109/7).
    public var routing: String?
    /// Identifiant d'hôte (109/8).
    public var host: String?
    /// Nom de domaine AMC (109/9).
    public var domain: String?
}

/// A work accident (group 103, first occurrence).
public struct WorkAccident: Hashable, Sendable, Codable {
    /// Organisme gestionnaire AT (103/1).
    public var organisme: String
    /// Code AT BGDH (103/2).
    public var code: String?
    /// Identifiant AT (103/3).
    public var identifier: String?

    public init(organisme: String, code: String?, identifier: String?) {
        self.organisme = organisme
        self.code = code
        self.identifier = identifier
    }
}

/// AMO identification of the card (group 101).
public struct AMO: Hashable, Sendable, Codable {
    /// Code régime (101/10).
    public var regime: String
    /// Caisse gestionnaire (101/11).
    public var caisse: String
    /// Centre gestionnaire (101/12).
    public var centre: String
    /// Code gestion (101/13).
    public var codeGestion: String
}

/// Mutuelle data (groups 107, 108).
public struct Mutuelle: Hashable, Sendable, Codable {
    /// Identification mutuelle (107/1).
    public var identification: String
    /// Garanties effectives (107/2).
    public var guarantees: String?
    public var indicator: String?
    /// Rights periods (108).
    public var periods: [Period]
}

/// A problem found in the card's data that does not stop the reading: the field is reported invalid
/// (or missing) instead of being silently wrong.
public struct VitaleIssue: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The file (`MF_VITALE SFI 2`, `VITALE SFI 2`).
    public var file: String
    /// The person concerned (index), if any.
    public var beneficiary: Int?
    /// The field (`NIR`, `birth date`…), if any.
    public var field: String?
    /// What is wrong.
    public var message: String

    public var description: String {
        [file, beneficiary.map { "person \($0 + 1)" }, field].compactMap { $0 }.joined(separator: ", ") + ": " + message
    }
}

/// What was read from a Carte Vitale.
public struct VitaleCard: Hashable, Sendable, Codable {
    /// The card generation.
    public enum Generation: String, Hashable, Sendable, Codable {
        /// A Carte Vitale 1 (B0' memory card).
        case vitale1
        /// A Carte Vitale 2 (ISO 7816-4 file system).
        case vitale2
        /// No card: the identity the insurer's service gave for an appli carte Vitale session token
        /// (read by NFC or from a QR code; see CarteApCV).
        case apcv
    }
    /// The card generation.
    public var generation: Generation
    /// Card type (101/1), from the synthetic card file.
    public var cardType: String?
    /// Serial number (101/2), from the synthetic card file.
    public var serialNumber: String?
    /// End of validity (101/3), from the synthetic card file.
    public var validUntil: VitaleDate?
    /// AMO identification (101/10–13), from the synthetic card file.
    public var amo: AMO?
    /// Family AMO service (102).
    public var familyService: ServicePeriod?
    /// Mutuelle (107, 108).
    public var mutuelle: Mutuelle?
    /// Work accident (103): organisme gestionnaire, code BGDH, identifiant.
    public var workAccident: WorkAccident?
    /// Zone commune complémentaire (111/1).
    public var commonZone: String?
    /// Whether the data came partly from CarteKit's synthetic files (see ``SyntheticLayout``).
    public var usesSyntheticLayout: Bool = false
    /// The people on the card, in card order.
    public var beneficiaries: [Beneficiary]
    /// Data problems found (invalid NIR key, unpaired templates…).
    public var issues: [VitaleIssue]
    /// How many APDUs the reading took (automatic GET RESPONSE and resends included).
    public var apduCount: Int
}

/// Why a Carte Vitale could not be read.
public enum VitaleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The card has no `MF_VITALE` application: not a Carte Vitale 2 (SELECT answered `sw`).
    case notAVitale(StatusWord)
    /// A file could not be read (`sw` is the card's answer).
    case unreadable(file: String, StatusWord)
    /// A file's content is not BER-TLV.
    case malformed(file: String, TLVError)
    /// The exchange with the card failed.
    case card(CardError)

    public var description: String {
        switch self {
        case .notAVitale(let sw): return "not a Carte Vitale 2: MF_VITALE cannot be selected (\(sw): \(sw.meaning))"
        case .unreadable(let file, let sw): return "\(file) cannot be read (\(sw): \(sw.meaning))"
        case .malformed(let file, let e): return "\(file) is not valid BER-TLV: \(e)"
        case .card(let e): return e.description
        }
    }
}

/// Reads a Carte Vitale 2 through any ``CardChannel`` with the fewest APDUs: SELECT MF_VITALE and
/// VITALE by AID without answer data, and each file by its short identifier (the reads T=0 cards
/// need — `6Cxx` resends, `61xx` GET RESPONSE — are done by the channel).
///
/// Facts used ([C], domain-facts §3): the AIDs, `SFI 2` in `MF_VITALE` holding one `65` template per
/// person with `80` surname, `81` first name, `82` birth date (and `90` when present), `SFI 2` in
/// `VITALE` holding the matching `65` templates with `93` NIR, in the same order, zero padded.
public struct VitaleReader: Sendable {
    /// `D2 50 00 00 02` + "MF_VITALE".
    public static let mfVitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("MF_VITALE".utf8)
    /// `D2 50 00 00 02` + "VITALE".
    public static let vitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("VITALE".utf8)

    let channel: CardChannel
    let logger: Logger

    /// Creates a reader on `channel`.
    public init(channel: CardChannel, logger: Logger = Logger(label: "cartekit.vitale", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.channel = channel
        self.logger = logger
    }

    /// Reads the card whose ATR is `atr`: a Vitale 1 (inverse convention, `3F 65 25 …`) through its
    /// B0' memory, anything else as a Vitale 2.
    public func read(atr: [UInt8]) async throws(VitaleError) -> VitaleCard {
        if KnownATR.identify(atr).first?.family == .vitale1 { return try await readVitale1() }
        return try await read()
    }

    /// Reads a Vitale 1: `BC C0` for the address range, then `BC B0` reads of 248 bytes ([C] commands,
    /// domain-facts §2) until the zero padding. The memory layout decoded is CarteKit's **synthetic**
    /// one (the real one is not public): `65` templates with `80`, `81`, `82` and `93`.
    public func readVitale1() async throws(VitaleError) -> VitaleCard {
        let before = channel.trace?.nextSequence
        let bytes = try await channelExclusive { held throws(VitaleError) -> [UInt8] in
            func send(_ c: CommandAPDU) async throws(VitaleError) -> ResponseAPDU {
                do { return try await held.transmit(c) } catch { throw .card(error) }
            }
            let info = try await send(try! CommandAPDU(cla: 0xBC, ins: 0xC0, p1: 0, p2: 0, le: 8))
            guard info.isSuccess, info.data.count == 8 else { throw .unreadable(file: "B0' address range (BC C0)", info.statusWord) }
            // [U] The layout of this answer is not public; CarteKit's synthetic one: first address in
            // bytes 2-3, last address (ADMAX) in bytes 6-7.
            let first = Int(info.data[2]) << 8 | Int(info.data[3])
            let last = Int(info.data[6]) << 8 | Int(info.data[7])
            var data: [UInt8] = []
            var address = first
            let wordSize = 4  // [P] 32-bit words
            while address <= last {
                let r = try await send(try! CommandAPDU(cla: 0xBC, ins: 0xB0, p1: UInt8(address >> 8), p2: UInt8(address & 0xFF), le: 0xF8))
                guard r.isSuccess else { throw .unreadable(file: "B0' memory at \(UInt16(address).hex)", r.statusWord) }
                data += r.data
                guard r.data.count >= wordSize, r.data.count % wordSize == 0 else { break }  // cannot advance safely
                if VitaleReader.endsInPadding(data) { break }
                address += r.data.count / wordSize
            }
            return data
        }
        let templates: [TLV]
        do {
            templates = try TLV.decode(bytes, allowPadding: true)
        } catch {
            throw .malformed(file: "B0' memory (CarteKit's synthetic Vitale 1 layout; the real one is not public)", error)
        }
        var card = VitaleReader.decode(identities: templates, numbers: templates)
        card.generation = .vitale1
        card.usesSyntheticLayout = true
        card.issues = card.issues.map { var i = $0; i.file = "B0' memory (synthetic layout)"; return i }
        if let before, let trace = channel.trace {
            card.apduCount = trace.commandCount(from: before)
        }
        return card
    }

    /// Reads the card.
    public func read() async throws(VitaleError) -> VitaleCard {
        let before = channel.trace?.nextSequence
        let result = try await channelExclusive { held throws(VitaleError) -> Files in
            try await select(Self.mfVitaleAID, held, notFound: true)
            var files = Files()
            files.identities = try await readTemplates(sfi: 2, file: "MF_VITALE SFI 2", held, optional: false, &files.issues) ?? []
            try await select(Self.vitaleAID, held, notFound: false)
            files.numbers = try await readTemplates(sfi: 2, file: "VITALE SFI 2", held, optional: false, &files.issues) ?? []
            // CarteKit's synthetic data file (absent on real cards: 6A82 is not an error).
            files.synthetic = try await readTemplates(sfi: SyntheticLayout.dataSFI, file: syntheticFile, held, optional: true, &files.issues)
            return files
        }
        var card = VitaleReader.decode(identities: result.identities, numbers: result.numbers)
        VitaleReader.decodeSynthetic(result, into: &card)
        card.issues += result.issues
        if let before, let trace = channel.trace {
            card.apduCount = trace.commandCount(from: before)
        }
        return card
    }

    private func channelExclusive<T: Sendable>(_ body: (CardChannel.ExclusiveChannel) async throws(VitaleError) -> T) async throws(VitaleError) -> T {
        try await channel.withExclusiveAccess(wrapping: VitaleError.card, body)
    }

    /// SELECT by AID in the form RUF sends (`00 A4 04 00 Lc AID`, [C]). A T=0 card answers `61xx`
    /// (FCI available): that is success, and the FCI is not fetched (it is not needed).
    private func select(_ aid: [UInt8], _ held: CardChannel.ExclusiveChannel, notFound: Bool) async throws(VitaleError) {
        let command = try! CommandAPDU.select(aid: aid, p2: 0x00, le: nil)
        let response: ResponseAPDU
        do {
            response = try await held.transmit(command, policy: .raw)
        } catch {
            throw .card(error)
        }
        guard response.statusWord.isSuccess || response.statusWord.sw1 == 0x61 else {
            if notFound { throw .notAVitale(response.statusWord) }
            throw .unreadable(file: aid == Self.vitaleAID ? "VITALE" : "MF_VITALE", response.statusWord)
        }
    }

    /// Reads a whole transparent file by SFI (then by offset when it is longer than 256 bytes).
    private func readFile(sfi: UInt8, file: String, _ held: CardChannel.ExclusiveChannel) async throws(VitaleError) -> [UInt8] {
        var data: [UInt8] = []
        var command = try! CommandAPDU.readBinary(sfi: sfi)
        while true {
            let response: ResponseAPDU
            do {
                response = try await held.transmit(command)
            } catch {
                throw .card(error)
            }
            let sw = response.statusWord
            if sw == .wrongP1P2, !data.isEmpty { break }  // past the end after full chunks
            guard sw.isSuccess || sw == .endOfFileReached else { throw .unreadable(file: file, sw) }
            data += response.data
            if response.data.count < 256 || sw == .endOfFileReached { break }
            // Vitale files are zero padded after their last object: when the objects decoded so far end
            // before the data does, the rest is padding and the content is complete (saves an APDU).
            if VitaleReader.endsInPadding(data) { break }
            guard data.count < 0x7F00 else { throw .unreadable(file: file + " (larger than 32 KiB)", sw) }
            command = try! CommandAPDU.readBinary(offset: data.count)  // the SFI read made the file current
        }
        return data
    }

    /// Whether `data` holds complete BER-TLV objects followed by at least one padding byte.
    public static func endsInPadding(_ data: [UInt8]) -> Bool {
        guard let objects = try? TLV.decode(data, allowPadding: true), let last = objects.last else { return false }
        // A decoded object's value is a slice of `data`: where it ends is where the objects end.
        return last.valueBytes.endIndex < data.count
    }

    /// The files read, before decoding.
    struct Files: Sendable {
        var identities: [TLV] = []
        var numbers: [TLV] = []
        var synthetic: [TLV]?
        var issues: [VitaleIssue] = []
    }

    private func readTemplates(sfi: UInt8, file: String, _ held: CardChannel.ExclusiveChannel, optional: Bool, _ issues: inout [VitaleIssue]) async throws(VitaleError) -> [TLV]? {
        let bytes: [UInt8]
        do {
            bytes = try await readFile(sfi: sfi, file: file, held)
        } catch .unreadable(_, let sw) where optional {
            // Not there (6A82), or a card that keeps something else under this SFI: absent.
            if sw != .fileNotFound { issues.append(VitaleIssue(file: file, message: "not readable (\(sw)), ignored")) }
            return nil
        }
        do {
            return try TLV.decode(bytes, allowPadding: true)
        } catch {
            // The identity files are what a Vitale reading is: they must be sound. A damaged optional
            // file is reported and left out; its data is then absent, never half-read.
            guard optional else { throw .malformed(file: file, error) }
            issues.append(VitaleIssue(file: file, message: "not valid BER-TLV, ignored: \(error)"))
            return nil
        }
    }

    /// Pairs the i-th `65` of MF_VITALE with the i-th `65` of VITALE and decodes every field, flagging
    /// what is invalid rather than guessing.
    public static func decode(identities: [TLV], numbers: [TLV]) -> VitaleCard {
        var issues: [VitaleIssue] = []
        let left = identities.filter { $0.tag == 0x65 }
        let right = numbers.filter { $0.tag == 0x65 }
        if left.count != right.count {
            issues.append(VitaleIssue(file: "VITALE SFI 2", message: "\(right.count) NIR template(s) for \(left.count) person(s): persons are paired in order, the extra ones are reported without a match"))
        }
        var people: [Beneficiary] = []
        people.reserveCapacity(max(left.count, right.count))
        // Each beneficiary is filled in place in the array (a copy of one is a dozen retains).
        func fill(_ b: inout Beneficiary, _ i: Int) {
            if i < left.count {
                let t = left[i]
                b.surname = t.childValue(0x80).map(latin1)
                b.firstName = t.childValue(0x81).map(latin1)
                b.nationality = t.childValue(0x90).map(latin1)
                if let raw = t.childValue(0x82) {
                    let text = latin1(raw)
                    if let date = VitaleDate(text) {
                        b.birthDate = date
                    } else {
                        issues.append(VitaleIssue(file: "MF_VITALE SFI 2", beneficiary: i, field: "birth date", message: "\"\(text)\" is not YYYYMMDD"))
                    }
                }
                if b.surname == nil { issues.append(VitaleIssue(file: "MF_VITALE SFI 2", beneficiary: i, field: "surname", message: "missing (tag 80)")) }
            }
            if i < right.count {
                if let raw = right[i].childValue(0x93) {
                    let text = latin1(raw)
                    do {
                        let nir = try NIR(text)
                        b.nir = nir
                        if !nir.isKeyValid {
                            issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: "key \(nir.key) is wrong: the number calls for \(nir.expectedKey)"))
                        }
                    } catch {
                        issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: error.description))
                    }
                } else {
                    issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: "missing (tag 93)"))
                }
            }
        }
        for i in 0..<max(left.count, right.count) {
            people.append(Beneficiary(index: i))
            fill(&people[i], i)
        }
        return VitaleCard(generation: .vitale2, beneficiaries: people, issues: issues, apduCount: 0)
    }
}

extension VitaleReader {
    /// Decodes CarteKit's synthetic files into `card` (see ``SyntheticLayout``).
    static func decodeSynthetic(_ files: Files, into card: inout VitaleCard) {
        // Issues are gathered apart and appended at the end, so that each beneficiary is filled in place
        // (no copy of it out of the card and back).
        var issues: [VitaleIssue] = []
        defer { card.issues += issues }
        func text(_ t: TLV?, _ tag: TLVTag) -> String? { t?.childValue(tag).map(latin1) }
        // The field's name is built only for an issue (most dates are sound: no string work for them).
        func parse(_ raw: String?, _ file: String, _ person: Int?, _ field: @autoclosure () -> String) -> VitaleDate? {
            guard let raw, !raw.isEmpty else { return nil }
            if let d = VitaleDate(raw) { return d }
            issues.append(VitaleIssue(file: file, beneficiary: person, field: field(), message: "\"\(raw)\" is not YYYYMMDD"))
            return nil
        }
        func date(_ t: TLV?, _ tag: TLVTag, _ file: String, _ person: Int?, _ field: String) -> VitaleDate? {
            parse(text(t, tag), file, person, field)
        }
        func period(_ t: TLV, _ file: String, _ person: Int?, _ field: String, fromTag: TLVTag = 0x80, toTag: TLVTag = 0x81) -> Period {
            let fromText = text(t, fromTag)
            let toText = text(t, toTag)
            var p = Period(from: parse(fromText, file, person, field + " start"), to: parse(toText, file, person, field + " end"))
            // A bound that is written but is not a date makes the period invalid, never open-ended.
            p.isValid = (fromText.map { $0.isEmpty || p.from != nil } ?? true) && (toText.map { $0.isEmpty || p.to != nil } ?? true)
            return p
        }
        guard let data = files.synthetic else { return }
        let f = syntheticFile
        // Decoded only when it carries CarteKit's marker: another card's SFI 3 is not our layout.
        guard let marker = data.first(where: { $0.tag == SyntheticLayout.cardTemplate })?[SyntheticLayout.marker],
            latin1(marker.valueBytes) == SyntheticLayout.markerValue
        else { return }
        do {
            card.usesSyntheticLayout = true
            let c = data.first { $0.tag == SyntheticLayout.cardTemplate }
            card.cardType = text(c, SyntheticLayout.Card.type)
            card.serialNumber = text(c, SyntheticLayout.Card.serial)
            card.validUntil = date(c, SyntheticLayout.Card.validUntil, f, nil, "end of validity")
            if let regime = text(c, SyntheticLayout.Card.regime) {
                card.amo = AMO(regime: regime, caisse: text(c, SyntheticLayout.Card.caisse) ?? "", centre: text(c, SyntheticLayout.Card.centre) ?? "",
                               codeGestion: text(c, SyntheticLayout.Card.codeGestion) ?? "")
            }
            if let a = c?[SyntheticLayout.Card.workAccident] {
                card.workAccident = WorkAccident(organisme: text(a, 0x80) ?? "", code: text(a, 0x81), identifier: text(a, 0x82))
            }
            card.commonZone = text(c, SyntheticLayout.Card.commonZone)
            if let s = c?[SyntheticLayout.Card.familyService] {
                card.familyService = ServicePeriod(code: text(s, 0x80) ?? "", period: period(s, f, nil, "family service", fromTag: 0x81, toTag: 0x82))
            }
        }
        do {
            let people = data.filter { $0.tag == SyntheticLayout.personTemplate }
            if people.count != card.beneficiaries.count {
                issues.append(VitaleIssue(file: f, message: "\(people.count) person template(s) for \(card.beneficiaries.count) person(s)"))
            }
            func fill(_ b: inout Beneficiary, from p: TLV, _ i: Int) {
                b.usualName = text(p, SyntheticLayout.Person.usualName)
                b.birthName = text(p, SyntheticLayout.Person.birthName)
                if let rank = text(p, SyntheticLayout.Person.birthRank) {
                    if let r = Int(rank), (1...9).contains(r) { b.birthRank = r } else {
                        issues.append(VitaleIssue(file: f, beneficiary: i, field: "birth rank", message: "\"\(rank)\" is not a rank 1 to 9"))
                    }
                }
                b.quality = text(p, SyntheticLayout.Person.quality)
                if let code = text(p, SyntheticLayout.Person.serviceCode) {
                    b.service = ServicePeriod(code: code, period: period(p, f, i, "service", fromTag: SyntheticLayout.Person.serviceFrom, toTag: SyntheticLayout.Person.serviceTo))
                }
                b.rights = p.all(SyntheticLayout.Person.rights).map { period($0, f, i, "rights") }
                b.coverage = p.all(SyntheticLayout.Person.coverage).map {
                    Coverage(period: period($0, f, i, "coverage"), ald: text($0, 0x82) ?? "", situation: text($0, 0x83) ?? "")
                }
                if let a = p[SyntheticLayout.Person.amc] {
                    b.amc = AMC(numberB2: text(a, 0x80), numberEDI: text(a, 0x81), member: text(a, 0x82), indicator: text(a, 0x83),
                                period: period(a, f, i, "AMC", fromTag: 0x84, toTag: 0x85),
                                routing: text(a, 0x86), host: text(a, 0x87), domain: text(a, 0x88))
                }
            }
            for (i, p) in people.enumerated() where i < card.beneficiaries.count { fill(&card.beneficiaries[i], from: p, i) }
        }
        if let m = data.first(where: { $0.tag == SyntheticLayout.mutuelleTemplate }) {
            card.mutuelle = Mutuelle(identification: text(m, SyntheticLayout.Mutuelle.identification) ?? "",
                                     guarantees: text(m, SyntheticLayout.Mutuelle.guarantees), indicator: text(m, SyntheticLayout.Mutuelle.indicator),
                                     periods: m.all(SyntheticLayout.Mutuelle.period).map { period($0, f, nil, "mutuelle") })
        }
    }
}

/// How issues name the synthetic data file.
let syntheticFile = "VITALE SFI 3 (synthetic)"

/// ISO-8859-1 text with trailing spaces and NULs removed (names are space padded).
func latin1(_ bytes: [UInt8]) -> String { latin1(bytes[...]) }

/// ``latin1(_:)`` of a slice (a TLV's value, without copying it first).
func latin1(_ bytes: ArraySlice<UInt8>) -> String {
    // Trailing spaces and NULs off first, on the bytes.
    var end = bytes.endIndex
    while end > bytes.startIndex, bytes[end - 1] == 0x20 || bytes[end - 1] == 0 { end -= 1 }
    let kept = bytes[..<end]
    // ASCII is its own UTF-8; Latin-1 above 0x7F becomes the scalar of the same value.
    if kept.allSatisfy({ $0 < 0x80 }) { return String(decoding: kept, as: UTF8.self) }
    var scalars = String.UnicodeScalarView()
    for b in kept { scalars.append(Unicode.Scalar(b)) }
    return String(scalars)
}
