public import CarteEmulator
public import CarteCore
import CarteVitale
import Foundation
import Yams

/// A readable description of an insured family (format `carte-persona/1`, documented in
/// `CardImages/vitale/README.md`) and the Carte Vitale 2 image it compiles to.
///
/// What the image follows exactly ([C], domain-facts §3): the ATR, the `MF_VITALE` and `VITALE` AIDs,
/// T=0 behaviour, the `65` templates of `SFI 2` in both applications (surname, first name, birth date,
/// nationality in `MF_VITALE`; NIR in `VITALE`) in the same order and zero padded, and the shape of the
/// EF `2001` pointer map. What is synthetic: every person and number, the FIDs, the names in EF 2001,
/// DIR and PAN, and the files of ``SyntheticLayout`` holding the non-public data (groups 101–109).
public struct Persona: Hashable, Sendable {
    /// One person of a persona, as the file says.
    public struct Person: Hashable, Sendable {
        /// Surname (`65/80`).
        public var surname: String
        /// First name (`65/81`).
        public var firstName: String
        /// Birth date `YYYYMMDD` (`65/82`), lunar dates allowed.
        public var birthDate: String
        /// Nationality (`65/90`), if given.
        public var nationality: String?
        /// 15 characters as written on the card (key computed from a 13-character `nir:` unless given).
        public var nir: String
        /// Usual name (104/1).
        public var usualName: String?
        /// Birth name (104/2).
        public var birthName: String?
        /// Birth rank (104/13).
        public var birthRank: Int?
        /// Quality code (104/14).
        public var quality: String?
        /// AMO service with its dates (104/15-17).
        public var service: (code: String, from: String?, to: String?)?
        /// Rights periods (105).
        public var rights: [(from: String?, to: String?)] = []
        /// Coverage periods (106).
        public var coverage: [(from: String?, to: String?, ald: String, situation: String)] = []
        /// AMC fields (109) by their synthetic tag.
        public var amc: [TLVTag: String] = [:]

        public static func == (a: Person, b: Person) -> Bool { a.nir == b.nir && a.surname == b.surname && a.firstName == b.firstName && a.birthDate == b.birthDate }
        public func hash(into h: inout Hasher) { h.combine(nir) }
    }

    /// The persona's name (also the image name).
    public var name: String
    /// Free text.
    public var summary: String?
    /// The ATR of the card.
    public var atr: [UInt8]
    /// Whether the card answers like a T=0 card (61xx, 6Cxx).
    public var t0Responses: Bool
    /// `vitale2` (default) or `vitale1`.
    public var generation: String = "vitale2"
    /// Card file fields (101, 111) by their synthetic tag.
    public var cardFields: [TLVTag: String] = [:]
    /// Family AMO service (102).
    public var familyService: (code: String, from: String?, to: String?)?
    /// Group 103 (organisme, code BGDH, identifiant).
    public var workAccident: (organisme: String, code: String?, identifier: String?)?
    /// The people, in card order.
    public var people: [Person]
    /// Mutuelle (107, 108).
    public var mutuelle: (identification: String, guarantees: String?, indicator: String?, periods: [(from: String?, to: String?)])?
    /// `data-file-truncated`: the synthetic data file's person templates announce more bytes than it holds.
    public var corruptions: Set<String>

    public static func == (a: Persona, b: Persona) -> Bool { a.name == b.name && a.people == b.people }
    public func hash(into h: inout Hasher) { h.combine(name) }
}

/// Loads personas and compiles them to card images.
public enum PersonaCompiler {
    /// Whether `text` is a persona (rather than a card image): its `format` field says so.
    public static func isPersona(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).contains { $0.replacingOccurrences(of: " ", with: "") == "format:carte-persona/1" }
    }

    /// Parses a persona; errors name the file, the line and the field.
    public static func load(text: String, source: String) throws(CardImageError) -> Persona {
        let root = try CardImageLoader.compose(text, source: source)
        let r = YAMLDocumentReader(source: source)
        let f = try r.fields(root, "", allowed: ["format", "name", "description", "synthetic", "card", "people", "mutuelle", "corruptions"])
        func need(_ key: String) throws(CardImageError) -> Node {
            guard let n = f[key] else { throw r.fail(root, key, .missingField) }
            return n
        }
        let format = try r.scalar(try need("format"), "format")
        guard format == "carte-persona/1" else { throw r.fail(f["format"], "format", .unsupportedFormat(format)) }
        guard try r.bool(try need("synthetic"), "synthetic") else {
            throw r.fail(f["synthetic"], "synthetic", .invalidValue("personas are synthetic by construction: say `synthetic: true`"))
        }
        var persona = Persona(name: try r.scalar(try need("name"), "name"), summary: try f["description"].map { n throws(CardImageError) in try r.scalar(n, "description") },
                              atr: [0x3B, 0x75, 0x13, 0x00, 0x00, 0x45, 0x09, 0xEA, 0x90, 0x00], t0Responses: true, people: [], corruptions: [])

        func date(_ n: Node?, _ path: String) throws(CardImageError) -> String? {
            guard let n else { return nil }
            let text = try r.scalar(n, path)
            guard text.count == 8, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw r.fail(n, path, .invalidValue("a date is YYYYMMDD (8 digits)")) }
            return text
        }
        func periods(_ n: Node?, _ path: String) throws(CardImageError) -> [(from: String?, to: String?)] {
            guard let n else { return [] }
            var out: [(from: String?, to: String?)] = []
            for (i, item) in try r.list(n, path).enumerated() {
                let p = try r.fields(item, "\(path)[\(i)]", allowed: ["from", "to"])
                out.append((try date(p["from"], "\(path)[\(i)].from"), try date(p["to"], "\(path)[\(i)].to")))
            }
            return out
        }

        if let cardNode = f["card"] {
            let c = try r.fields(cardNode, "card", allowed: ["generation", "atr", "t0-responses", "type", "serial", "valid-until", "amo", "family-service", "work-accident", "common-zone"])
            if let n = c["work-accident"] {
                let w = try r.fields(n, "card.work-accident", allowed: ["organisme", "code", "id"])
                guard let o = w["organisme"] else { throw r.fail(n, "card.work-accident.organisme", .missingField) }
                persona.workAccident = (try r.scalar(o, "card.work-accident.organisme"),
                                        try w["code"].map { v throws(CardImageError) in try r.scalar(v, "card.work-accident.code") },
                                        try w["id"].map { v throws(CardImageError) in try r.scalar(v, "card.work-accident.id") })
            }
            if let n = c["common-zone"] { persona.cardFields[SyntheticLayout.Card.commonZone] = try r.scalar(n, "card.common-zone") }
            if let n = c["generation"] {
                let g = try r.scalar(n, "card.generation")
                guard g == "vitale1" || g == "vitale2" else { throw r.fail(n, "card.generation", .invalidValue("vitale1 or vitale2")) }
                persona.generation = g
                if g == "vitale1" { persona.atr = [0x3F, 0x65, 0x25, 0x00, 0x22, 0x09, 0xF9, 0x90, 0x00] }  // [C] a Vitale 1 ATR
            }
            if let n = c["atr"] {
                let atr = try r.hex(n, "card.atr")
                do { _ = try ATR(bytes: atr) } catch { throw r.fail(n, "card.atr", .invalidValue("not a valid ATR: \(error)")) }
                persona.atr = atr
            }
            if let n = c["t0-responses"] { persona.t0Responses = try r.bool(n, "card.t0-responses") }
            if let n = c["type"] { persona.cardFields[SyntheticLayout.Card.type] = try r.scalar(n, "card.type") }
            if let n = c["serial"] { persona.cardFields[SyntheticLayout.Card.serial] = try r.scalar(n, "card.serial") }
            if let d = try date(c["valid-until"], "card.valid-until") { persona.cardFields[SyntheticLayout.Card.validUntil] = d }
            if let n = c["amo"] {
                let a = try r.fields(n, "card.amo", allowed: ["regime", "caisse", "centre", "code-gestion"])
                for (key, tag) in [("regime", SyntheticLayout.Card.regime), ("caisse", SyntheticLayout.Card.caisse), ("centre", SyntheticLayout.Card.centre), ("code-gestion", SyntheticLayout.Card.codeGestion)] {
                    guard let v = a[key] else { throw r.fail(n, "card.amo.\(key)", .missingField) }
                    persona.cardFields[tag] = try r.scalar(v, "card.amo.\(key)")
                }
            }
            if let n = c["family-service"] {
                let s = try r.fields(n, "card.family-service", allowed: ["code", "from", "to"])
                guard let code = s["code"] else { throw r.fail(n, "card.family-service.code", .missingField) }
                persona.familyService = (try r.scalar(code, "card.family-service.code"), try date(s["from"], "card.family-service.from"), try date(s["to"], "card.family-service.to"))
            }
        }

        let peopleNode = try need("people")
        for (i, item) in try r.list(peopleNode, "people").enumerated() {
            let path = "people[\(i)]"
            let p = try r.fields(item, path, allowed: ["surname", "first-name", "birth-date", "nationality", "nir", "usual-name", "birth-name", "birth-rank", "quality", "service", "rights", "coverage", "amc"])
            func text(_ key: String, required: Bool = false) throws(CardImageError) -> String? {
                guard let n = p[key] else {
                    if required { throw r.fail(item, "\(path).\(key)", .missingField) }
                    return nil
                }
                let value = try r.scalar(n, "\(path).\(key)")
                // The card stores ISO-8859-1 with one-byte lengths ([C] RUF observations): keep values short.
                guard value.unicodeScalars.allSatisfy({ $0.value <= 0xFF }) else {
                    throw r.fail(n, "\(path).\(key)", .invalidValue("only ISO-8859-1 characters can be stored on the card"))
                }
                guard value.count <= 40 else { throw r.fail(n, "\(path).\(key)", .invalidValue("at most 40 characters")) }
                return value
            }
            guard let birth = p["birth-date"] else { throw r.fail(item, "\(path).birth-date", .missingField) }
            let birthText = try r.scalar(birth, "\(path).birth-date")
            guard birthText.count == 8, birthText.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                // Lunar dates (00 day, 31 February…) are fine; non-digits are not.
                throw r.fail(birth, "\(path).birth-date", .invalidValue("a birth date is YYYYMMDD (8 digits, lunar dates allowed)"))
            }
            guard let nirNode = p["nir"] else { throw r.fail(item, "\(path).nir", .missingField) }
            let nirText = try r.scalar(nirNode, "\(path).nir").replacingOccurrences(of: " ", with: "")
            let nir: String
            do {
                if nirText.count == 13 { nir = try NIR.withComputedKey(nirText).description } else { nir = try NIR(nirText).description }
            } catch {
                throw r.fail(nirNode, "\(path).nir", .invalidValue("\(error) (write 13 characters to get the key computed, 15 to give it)"))
            }
            var person = Persona.Person(surname: try text("surname", required: true)!, firstName: try text("first-name", required: true)!,
                                        birthDate: birthText, nationality: try text("nationality"), nir: nir)
            person.usualName = try text("usual-name")
            person.birthName = try text("birth-name")
            if let n = p["birth-rank"] { person.birthRank = try r.int(n, "\(path).birth-rank", in: 1...9) }
            person.quality = try text("quality")
            if let n = p["service"] {
                let s = try r.fields(n, "\(path).service", allowed: ["code", "from", "to"])
                guard let code = s["code"] else { throw r.fail(n, "\(path).service.code", .missingField) }
                person.service = (try r.scalar(code, "\(path).service.code"), try date(s["from"], "\(path).service.from"), try date(s["to"], "\(path).service.to"))
            }
            person.rights = try periods(p["rights"], "\(path).rights")
            if let n = p["coverage"] {
                for (j, c) in try r.list(n, "\(path).coverage").enumerated() {
                    let cp = "\(path).coverage[\(j)]"
                    let cf = try r.fields(c, cp, allowed: ["from", "to", "ald", "situation"])
                    person.coverage.append((try date(cf["from"], cp + ".from"), try date(cf["to"], cp + ".to"),
                                            try cf["ald"].map { n throws(CardImageError) in try r.scalar(n, cp + ".ald") } ?? "0",
                                            try cf["situation"].map { n throws(CardImageError) in try r.scalar(n, cp + ".situation") } ?? ""))
                }
            }
            if let n = p["amc"] {
                let keys: [(String, TLVTag)] = [("b2", 0x80), ("edi", 0x81), ("member", 0x82), ("indicator", 0x83), ("from", 0x84), ("to", 0x85), ("routing", 0x86), ("host", 0x87), ("domain", 0x88)]
                let a = try r.fields(n, "\(path).amc", allowed: Set(keys.map(\.0)))
                for (key, tag) in keys {
                    guard let v = a[key] else { continue }
                    person.amc[tag] = key == "from" || key == "to" ? try date(v, "\(path).amc.\(key)")! : try r.scalar(v, "\(path).amc.\(key)")
                }
            }
            persona.people.append(person)
        }
        guard !persona.people.isEmpty else { throw r.fail(peopleNode, "people", .invalidValue("a card holds at least one person")) }

        if let n = f["mutuelle"] {
            let m = try r.fields(n, "mutuelle", allowed: ["identification", "guarantees", "indicator", "periods"])
            guard let id = m["identification"] else { throw r.fail(n, "mutuelle.identification", .missingField) }
            persona.mutuelle = (try r.scalar(id, "mutuelle.identification"),
                                try m["guarantees"].map { v throws(CardImageError) in try r.scalar(v, "mutuelle.guarantees") },
                                try m["indicator"].map { v throws(CardImageError) in try r.scalar(v, "mutuelle.indicator") },
                                try periods(m["periods"], "mutuelle.periods"))
        }
        if let n = f["corruptions"] {
            for (i, item) in try r.list(n, "corruptions").enumerated() {
                let c = try r.scalar(item, "corruptions[\(i)]")
                guard c == "data-file-truncated" else { throw r.fail(item, "corruptions[\(i)]", .invalidValue("known corruptions: data-file-truncated")) }
                persona.corruptions.insert(c)
            }
        }
        return persona
    }

    /// Compiles a persona to a Carte Vitale image (generation 2, or 1).
    public static func compile(_ persona: Persona, source: String? = nil) -> CardImage {
        if persona.generation == "vitale1" { return compileVitale1(persona, source: source) }
        func text(_ s: String) -> [UInt8] { s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) } }
        func padded(_ bytes: [UInt8], minimum: Int) -> [UInt8] {
            // At least one padding byte: a reader stops on it (a real card's files are zero padded too).
            let size = max(minimum, (bytes.count + 1 + 31) / 32 * 32)
            return bytes + [UInt8](repeating: 0, count: size - bytes.count)
        }
        func periodTLV(_ tag: TLVTag, _ p: (from: String?, to: String?)) -> TLV {
            TLV(tag: tag, children: [p.from.map { TLV(tag: 0x80, value: text($0)) }, p.to.map { TLV(tag: 0x81, value: text($0)) }].compactMap { $0 })
        }

        let identities = persona.people.flatMap { p -> [UInt8] in
            var children = [TLV(tag: 0x80, value: text(p.surname)), TLV(tag: 0x81, value: text(p.firstName)), TLV(tag: 0x82, value: text(p.birthDate))]
            if let n = p.nationality { children.append(TLV(tag: 0x90, value: text(n))) }
            return TLV(tag: 0x65, children: children).encoded()
        }
        let numbers = persona.people.flatMap { TLV(tag: 0x65, children: [TLV(tag: 0x93, value: text($0.nir))]).encoded() }

        var cardChildren: [TLV] = [TLV(tag: SyntheticLayout.marker, value: text(SyntheticLayout.markerValue))]
            + persona.cardFields.keys.sorted().map { TLV(tag: $0, value: text(persona.cardFields[$0]!)) }
        if let s = persona.familyService {
            cardChildren.append(TLV(tag: SyntheticLayout.Card.familyService, children: [TLV(tag: 0x80, value: text(s.code))]
                + [s.from.map { TLV(tag: 0x81, value: text($0)) }, s.to.map { TLV(tag: 0x82, value: text($0)) }].compactMap { $0 }))
        }
        if let w = persona.workAccident {
            cardChildren.append(TLV(tag: SyntheticLayout.Card.workAccident, children: [TLV(tag: 0x80, value: text(w.organisme))]
                + [w.code.map { TLV(tag: 0x81, value: text($0)) }, w.identifier.map { TLV(tag: 0x82, value: text($0)) }].compactMap { $0 }))
        }
        let cardFile = TLV(tag: SyntheticLayout.cardTemplate, children: cardChildren).encoded()

        let rightsFile = persona.people.flatMap { p -> [UInt8] in
            var c: [TLV] = []
            if let v = p.usualName { c.append(TLV(tag: SyntheticLayout.Person.usualName, value: text(v))) }
            if let v = p.birthName { c.append(TLV(tag: SyntheticLayout.Person.birthName, value: text(v))) }
            if let v = p.birthRank { c.append(TLV(tag: SyntheticLayout.Person.birthRank, value: text(String(v)))) }
            if let v = p.quality { c.append(TLV(tag: SyntheticLayout.Person.quality, value: text(v))) }
            if let s = p.service {
                c.append(TLV(tag: SyntheticLayout.Person.serviceCode, value: text(s.code)))
                if let v = s.from { c.append(TLV(tag: SyntheticLayout.Person.serviceFrom, value: text(v))) }
                if let v = s.to { c.append(TLV(tag: SyntheticLayout.Person.serviceTo, value: text(v))) }
            }
            c += p.rights.map { periodTLV(SyntheticLayout.Person.rights, $0) }
            c += p.coverage.map { cov in
                TLV(tag: SyntheticLayout.Person.coverage, children: [cov.from.map { TLV(tag: 0x80, value: text($0)) }, cov.to.map { TLV(tag: 0x81, value: text($0)) }].compactMap { $0 }
                    + [TLV(tag: 0x82, value: text(cov.ald)), TLV(tag: 0x83, value: text(cov.situation))])
            }
            if !p.amc.isEmpty {
                c.append(TLV(tag: SyntheticLayout.Person.amc, children: p.amc.keys.sorted().map { TLV(tag: $0, value: text(p.amc[$0]!)) }))
            }
            return TLV(tag: SyntheticLayout.personTemplate, children: c).encoded()
        }
        var mutuelleFile: [UInt8] = []
        if let m = persona.mutuelle {
            var children = [TLV(tag: SyntheticLayout.Mutuelle.identification, value: text(m.identification))]
            if let g = m.guarantees { children.append(TLV(tag: SyntheticLayout.Mutuelle.guarantees, value: text(g))) }
            if let i = m.indicator { children.append(TLV(tag: SyntheticLayout.Mutuelle.indicator, value: text(i))) }
            children += m.periods.map { periodTLV(SyntheticLayout.Mutuelle.period, $0) }
            mutuelleFile = TLV(tag: SyntheticLayout.mutuelleTemplate, children: children).encoded()
        }
        var dataFile = cardFile + rightsFile + mutuelleFile
        if persona.corruptions.contains("data-file-truncated") {
            // The person templates announce 32 767 bytes in a file of a few hundred: malformed BER-TLV.
            dataFile = cardFile + [0xE1, 0x82, 0x7F, 0xFF] + Array(rightsFile.prefix(24))
        }
        let vitaleFiles: [CardImage.Node] = [
            .elementary(.init(fid: 0x2001, label: "POINTERS", content: .transparent(pointerMap()), synthetic: true)),
            .elementary(.init(fid: 0x0002, sfi: 2, label: "NIR", content: .transparent(padded(numbers, minimum: 128)), synthetic: true)),
            .elementary(.init(fid: 0x0003, sfi: SyntheticLayout.dataSFI, label: "DONNEES (synthetic layout)", content: .transparent(padded(dataFile, minimum: 64)), synthetic: true)),
        ]
        let root = CardImage.DedicatedFile(fid: 0x3F00, aid: VitaleReader.mfVitaleAID, label: "MF_VITALE", children: [
            .elementary(.init(fid: 0x2F00, label: "DIR", content: .transparent(TLV(tag: 0x61, children: [TLV(tag: 0x4F, value: VitaleReader.vitaleAID), TLV(tag: 0x50, value: Array("VITALE".utf8))]).encoded()), synthetic: true)),
            .elementary(.init(fid: 0x0002, sfi: 2, label: "IDENTITES", content: .transparent(padded(identities, minimum: 256)), synthetic: true)),
            .dedicated(.init(aid: VitaleReader.vitaleAID, label: "VITALE", children: vitaleFiles)),
        ])
        return CardImage(name: persona.name, summary: persona.summary, synthetic: true, source: source, atr: persona.atr, cardProtocol: .t0,
                         behaviour: CardImage.Behaviour(t0Responses: persona.t0Responses), root: root)
    }

    /// A Vitale 1 (B0' memory card, [C] commands `BC C0` / `BC B0` and ATR). Its memory layout is not
    /// public: this one is **synthetic** — one `65` template per person with `80` surname, `81` first
    /// name, `82` birth date and `93` NIR, BER-TLV from the first address, zero padded.
    /// Only the identities are kept: the card, rights and nationality fields of the persona have no
    /// place on a Vitale 1 (which predates them).
    static func compileVitale1(_ persona: Persona, source: String?) -> CardImage {
        func text(_ s: String) -> [UInt8] { s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) } }
        var data = persona.people.flatMap { p in
            TLV(tag: 0x65, children: [TLV(tag: 0x80, value: text(p.surname)), TLV(tag: 0x81, value: text(p.firstName)),
                                      TLV(tag: 0x82, value: text(p.birthDate)), TLV(tag: 0x93, value: text(p.nir))]).encoded()
        }
        data += [UInt8](repeating: 0, count: max(1, 512 - data.count))
        var image = CardImage(name: persona.name, summary: persona.summary, synthetic: true, source: source, atr: persona.atr, cardProtocol: .t0,
                              behaviour: CardImage.Behaviour(t0Responses: true, classes: []), root: CardImage.DedicatedFile(fid: 0x3F00, label: "no ISO file system (B0' card)"))
        image.memory = CardImage.Memory(data: data)
        return image
    }

    /// The EF 2001 map ([C] structure `E0 { A0 { 82 … } 80 … }`; [U]/synthetic names and FIDs).
    static func pointerMap() -> [UInt8] {
        let names: [(String, UInt16)] = [("NIR     ", 0x0002), ("DONNEES ", 0x0003)]
        let entry = TLV(tag: 0x82, value: [0x00, 0x01, 0x00, 0x00] + VitaleReader.vitaleAID)
        return TLV(tag: 0xE0, children: [TLV(tag: 0xA0, children: [entry])] + names.map { name, fid in
            TLV(tag: 0x80, value: Array(name.utf8) + [0x00, 0x01, UInt8(fid >> 8), UInt8(fid & 0xFF)])
        }).encoded()
    }
}
