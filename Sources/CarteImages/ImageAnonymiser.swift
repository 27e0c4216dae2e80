public import CarteEmulator
import CarteCore
import CarteCPS
import CarteCrypto
import CarteVitale
import Foundation

/// Rewrites the personal data of a card image — names, NIR, birth dates, serial numbers, RPPS/ADELI and
/// other identifiers — consistently in its files and in its recorded exchanges, so a recorded card can be
/// shared as a test fixture (`carte image anonymise`).
///
/// How it works:
/// 1. The image is read in memory by the card application it holds (``VitaleReader`` or ``CPSReader``),
///    from its file system and, failing that, from its transcript: the decoded fields say which values
///    are personal, whatever layout the card uses.
/// 2. Each personal value gets a replacement of the same byte length (so every TLV length, record size
///    and offset stays right): letters by letters of the same kind (vowel, consonant, accented), digits
///    by digits, a birth date by another date of the same year, a NIR by a NIR with the same sex, year
///    and department and a correct new key, an RPPS number with a correct Luhn digit. The same value
///    always gets the same replacement, wherever it is.
/// 3. Every byte string of the image is rewritten: file contents, records, FCIs, memory, overrides,
///    recorded commands and responses (responses as one stream, so a value split across two READ
///    BINARY answers is found), in Latin-1 and UTF-8 and in upper, lower and capitalised forms; the
///    CPx serial number in EF.SN.ICC is rewritten in BCD with a new Luhn digit.
/// 4. The result is checked before it is returned: no original value may remain anywhere (names are
///    searched without regard to case), and the anonymised image must read back with exactly the
///    replacements. Otherwise ``Failure`` says which field remains and where, and nothing is written.
///
/// What stays: everything that is not personal (ATR, file structure, rights periods, AMO codes, status
/// words, timing). Certificates whose subject held a name or number are rewritten too, which breaks
/// their signatures; the report says so.
public enum ImageAnonymiser {
    /// One personal value that was replaced.
    public struct Replacement: Sendable, Hashable, Encodable {
        /// Which field (`"beneficiary 1 surname"`, `"holder RPPS"`, `"card serial"`…).
        public var field: String
        /// The new value (the original is never reported).
        public var replacement: String
        /// How many places it was rewritten in (files, records, exchanges…).
        public var occurrences: Int
    }

    /// What was changed.
    public struct Report: Sendable, Hashable {
        /// `"vitale"` or `"cps"`.
        public var card: String
        /// The replaced values, in field order.
        public var replacements: [Replacement]
        /// Remarks (certificates whose signatures no longer verify…).
        public var notes: [String]
    }

    /// Why an image was not anonymised (nothing is written).
    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        /// The image reads neither as a Carte Vitale nor as a CPx card: its personal fields cannot be known.
        case unknownCard(String)
        /// A personal value is still in the rewritten image (`field`, and where it was found: a file, a
        /// recorded exchange…), for example in a form the rewriting does not know.
        case personalDataRemains(field: String, location: String)
        /// The rewritten image does not read back with the replacements (`field` and what was read).
        case inconsistent(field: String, detail: String)

        public var description: String {
            switch self {
            case .unknownCard(let why): return "the image reads as neither a Carte Vitale nor a CPx card, so its personal fields are unknown: \(why)"
            case .personalDataRemains(let field, let location): return "the \(field) would remain in \(location): not written"
            case .inconsistent(let field, let detail): return "the anonymised image does not read back consistently (\(field): \(detail)): not written"
            }
        }
    }

    /// Anonymises `image`. `seed` makes the replacements reproducible (the same seed gives the same values).
    public static func anonymise(_ image: CardImage, seed: UInt64) async throws(Failure) -> (image: CardImage, report: Report) {
        let content = try await read(image)
        var plan = Plan(rng: SplitMix64(seed: seed))
        plan.collect(content)
        guard !plan.values.isEmpty else { throw .unknownCard("no personal field was found to rewrite") }

        var out = image
        var counts: [String: Int] = [:]
        // The longest values first (a first name inside a longer one, "JEAN" in "JEANNE", must not break
        // it), the CPx serial's BCD form before the plain numbers.
        let ordered = plan.values.sorted { $0.original.utf8.count > $1.original.utf8.count }
        out.rewriteBlobs { blob, _ in
            if let serial = plan.cpsSerial { counts[serial.field, default: 0] += serial.apply(to: &blob) }
            for v in ordered { counts[v.field, default: 0] += v.apply(to: &blob) }
        }
        out.rewriteTexts { text in
            for v in ordered { text = v.apply(toText: text) }
        }
        // A challenge seed made from a personal number (a persona's serial) follows it.
        if let v = plan.values.first(where: { $0.original == String(out.behaviour.challengeSeed) }), let seed = UInt64(v.replacement) {
            out.behaviour.challengeSeed = seed
        }
        out.name = out.name.hasPrefix("Anonymised ") ? out.name : "Anonymised " + out.name
        out.summary = (out.summary.map { $0 + ". " } ?? "") + "Personal data rewritten by carte image anonymise"

        // Check: no PIN or PUK in a recorded command or an override (an image written by hand or by an
        // older CarteKit), nothing original remains, and the image reads back with the replacements.
        if let r = out.replay, let i = r.transcript.firstIndex(where: { ReplayRecorder.carriesSecret($0.command) && $0.command.dropFirst(5).contains { $0 != nil } }) {
            throw .personalDataRemains(field: "PIN or PUK", location: "recorded command \(i + 1) (its data should be ?? wildcards)")
        }
        if let i = out.overrides.firstIndex(where: { ReplayRecorder.carriesSecret($0.command.map { $0 }) }) {
            throw .personalDataRemains(field: "PIN or PUK", location: "override \(i + 1)")
        }
        // One walk over the bytes and one over the texts, every value looked for in each.
        if let (field, location) = out.firstRemaining(plan.values, serial: plan.cpsSerial) {
            throw .personalDataRemains(field: field, location: location)
        }
        let back: Content
        do { back = try await read(out) } catch { throw .inconsistent(field: "card", detail: error.description) }
        var check = Plan(rng: SplitMix64(seed: 0))
        check.collect(back)
        for (field, value) in check.fields {
            guard let expected = plan.expected[field] else { throw .inconsistent(field: field, detail: "appeared after rewriting") }
            // Never the value read: it may be the original, in a form the rewriting did not find.
            if value != expected { throw .inconsistent(field: field, detail: "reads back a value other than its replacement (the field is stored in a form the rewriting does not know)") }
        }
        if check.fields.count != plan.fields.count { throw .inconsistent(field: "fields", detail: "\(check.fields.count) personal fields read back, \(plan.fields.count) expected") }

        var notes: [String] = []
        if case .cps(let before) = content, case .cps(let after) = back {
            let changed = zip(before.certificates, after.certificates).filter { $0.certificate.der != $1.certificate.der }.count
            if changed > 0 {
                notes.append("\(changed) certificate(s) had personal data in their subject and were rewritten: their signatures no longer verify")
            }
        }
        var replacements: [Replacement] = []
        for (field, value) in plan.fields {
            replacements.append(Replacement(field: field, replacement: plan.expected[field] ?? value, occurrences: counts[plan.valueField[field] ?? field] ?? 0))
        }
        let kind: String
        if case .vitale = content { kind = "vitale" } else { kind = "cps" }
        return (out, Report(card: kind, replacements: replacements, notes: notes))
    }

    // MARK: - Reading

    enum Content {
        case vitale(VitaleCard)
        case cps(ProfessionalCard)
    }

    /// Reads the image in memory: from its file system first, then from its transcript.
    static func read(_ image: CardImage) async throws(Failure) -> Content {
        var attempts: [CardImage] = []
        if image.replay != nil {
            var fs = image
            fs.replay?.source = .filesystem
            var transcript = image
            transcript.replay?.source = .transcript
            attempts = [fs, transcript]
        } else {
            attempts = [image]
        }
        var reasons: [String] = []
        for attempt in attempts {
            do { return try await readOnce(attempt) } catch { reasons.append(String(describing: error)) }
        }
        throw .unknownCard(reasons.joined(separator: "; "))
    }

    private static func readOnce(_ image: CardImage) async throws -> Content {
        let vitaleProblem: String
        do {
            return .vitale(try await withCard(image) { channel, atr in try await VitaleReader(channel: channel).read(atr: atr) })
        } catch {
            vitaleProblem = "as a Vitale: \(error)"
        }
        do {
            let card = try await withCard(image) { channel, atr in try await CPSReader(channel: channel, atr: atr).read() }
            guard card.holder != nil || card.card.serial != nil else { throw Failure.unknownCard("neither a holder nor a serial number") }
            return .cps(card)
        } catch {
            throw Failure.unknownCard("\(vitaleProblem); as a CPx card: \(error)")
        }
    }

    /// Runs `body` on the image inserted into a fresh in-memory reader.
    private static func withCard<T>(_ image: CardImage, _ body: (CardChannel, [UInt8]) async throws -> T) async throws -> T {
        let backend = SimulatorBackend(profiles: [.monoFente])
        let slot = backend.readerNames[0]
        try backend.insert(image, into: slot)
        let connection = try await backend.connect(to: slot, share: .exclusive, protocols: [.t0, .t1])
        do {
            let result = try await body(CardChannel(transport: connection, trace: Trace()), await connection.atrBytes)
            try? await connection.disconnect(.leave)
            return result
        } catch {
            try? await connection.disconnect(.leave)
            throw error
        }
    }

    // MARK: - Replacement values

    /// What to replace, and with what.
    struct Plan {
        var rng: SplitMix64
        /// Each field's value as read, in field order.
        var fields: [(String, String)] = []
        /// Each field's replacement.
        var expected: [String: String] = [:]
        /// The field of the value that carries each field's count (a value shared by two fields counts once).
        var valueField: [String: String] = [:]
        /// Distinct values to rewrite.
        var values: [Value] = []
        /// The CPx EF.SN.ICC serial (BCD).
        var cpsSerial: BCDSerial?
        /// The month the next NIR takes (its holder's new birth month), if any.
        var nirMonth: String?
        var byOriginal: [String: Int] = [:]

        enum Kind { case name, digits, date, nir, rpps, identifier }

        mutating func collect(_ content: Content) {
            switch content {
            case .vitale(let card):
                for b in card.beneficiaries {
                    let who = "beneficiary \(b.index + 1)"
                    add("\(who) surname", b.surname, .name)
                    add("\(who) first name", b.firstName, .name)
                    add("\(who) usual name", b.usualName, .name)
                    add("\(who) birth name", b.birthName, .name)
                    add("\(who) birth date", b.birthDate?.raw, .date)
                    // The NIR's month follows the new birth date when it followed the old one.
                    if let nir = b.nir, let birth = b.birthDate, nir.birthMonth == String(birth.raw.dropFirst(4).prefix(2)),
                       let newBirth = expected["\(who) birth date"] {
                        nirMonth = String(newBirth.dropFirst(4).prefix(2))
                    }
                    add("\(who) NIR", b.nir?.description, .nir)
                    nirMonth = nil
                    add("\(who) AMC member number", b.amc?.member, .identifier)
                }
                add("card serial", card.serialNumber, .identifier)
                add("work accident identifier", card.workAccident?.identifier, .identifier)
            case .cps(let card):
                if let h = card.holder {
                    add("holder surname", h.surname, .name)
                    add("holder first name", h.firstName, .name)
                    let kind: Kind = h.nationalID.type == "8" && h.nationalID.number.count == 11 ? .rpps : .identifier
                    add("holder \(h.nationalID.kind)", h.nationalID.number, kind)
                }
                for (i, s) in (card.situations ?? []).enumerated() {
                    add("situation \(i + 1) billing id", s.billingID, .identifier)
                    add("situation \(i + 1) structure id", s.structureID, .identifier)
                    add("situation \(i + 1) structure name", s.structureName, .name)
                }
                if let serial = card.card.serial, !serial.isEmpty {
                    add("card serial", serial, .digits)
                    if let new = expected["card serial"] { cpsSerial = BCDSerial(field: "card serial", original: serial, replacement: new) }
                }
            }
        }

        mutating func add(_ field: String, _ value: String?, _ kind: Kind) {
            // A single character identifies nobody (and could not be found safely).
            guard let value, value.trimmed(" ").count >= 2 else { return }
            fields.append((field, value))
            if let i = byOriginal[value] {
                expected[field] = values[i].replacement
                valueField[field] = values[i].field
                return
            }
            var replacement = value
            for _ in 0..<16 where replacement == value || byOriginal[replacement] != nil { replacement = make(value, kind) }
            let v = Value(field: field, original: value, replacement: replacement, foldCase: kind == .name)
            byOriginal[value] = values.count
            values.append(v)
            expected[field] = replacement
            valueField[field] = field
        }

        mutating func make(_ value: String, _ kind: Kind) -> String {
            switch kind {
            case .name, .identifier, .digits: return scramble(value)
            case .date: return date(value)
            case .nir: return nir(value)
            case .rpps: return rpps(value)
            }
        }

        mutating func pick<T>(_ from: [T]) -> T { from[Int(rng.next() % UInt64(from.count))] }

        /// Same shape: vowels by vowels, consonants by consonants (case kept), accented letters by accented
        /// letters, digits by digits; other characters (space, hyphen, apostrophe) kept.
        mutating func scramble(_ value: String) -> String {
            let vowels = Array("AEIOUY"), consonants = Array("BCDFGHJKLMNPRSTVZ"), accented = Array("ÉÈÊÀÂÎÔÛÇ"), digits = Array("0123456789")
            var out = ""
            for ch in value {
                if ch.isASCII, ch.isLetter {
                    let upper = Character(ch.uppercased())
                    let new = vowels.contains(upper) ? pick(vowels) : pick(consonants)
                    out.append(ch.isUppercase ? new : Character(new.lowercased()))
                } else if ch.isASCII, ch.isNumber {
                    out.append(pick(digits))
                } else if ch.isLetter, ch.unicodeScalars.count == 1, let s = ch.unicodeScalars.first, s.value >= 0xC0, s.value <= 0xFF {
                    let new = pick(accented)
                    out.append(ch.isUppercase ? new : Character(new.lowercased()))
                } else {
                    out.append(ch)
                }
            }
            return out
        }

        /// Another date of the same year (`YYYYMMDD`, days 01-28).
        mutating func date(_ value: String) -> String {
            guard value.count == 8, value.allSatisfy(\.isNumber) else { return scramble(value) }
            let month = 1 + Int(rng.next() % 12), day = 1 + Int(rng.next() % 28)
            return String(value.prefix(4)) + two(month) + two(day)
        }

        /// Same sex, birth year and department; new month (when the original has a calendar month),
        /// commune (unless born abroad) and order number; the key computed for the new number.
        mutating func nir(_ value: String) -> String {
            guard let nir = try? NIR(value) else { return scramble(value) }
            let calendarMonth = Int(nir.birthMonth).map { (1...12).contains($0) } == true
            let month = calendarMonth ? nirMonth ?? two(1 + Int(rng.next() % 12)) : nir.birthMonth
            let commune = nir.bornAbroad ? nir.commune : three(1 + Int(rng.next() % 989))
            let order = three(1 + Int(rng.next() % 998))
            let body = "\(nir.sex)\(nir.birthYear)\(month)\(nir.department)\(commune)\(order)"
            guard let valid = try? NIR.withComputedKey(body) else { return scramble(value) }
            // A wrong key stays wrong (a fixture of a damaged card keeps its damage).
            if nir.isKeyValid { return valid.description }
            var key = nir.key
            while key == valid.key || key > 99 { key = (key + 1) % 100 }
            return body + (key < 10 ? "0" : "") + String(key)
        }

        /// An 11-digit RPPS number: the first digit kept, a Luhn check digit last.
        mutating func rpps(_ value: String) -> String {
            var body = String(value.prefix(1))
            for _ in 0..<9 { body += String(rng.next() % 10) }
            return body + String(CPSPersonaCompiler.luhn(body))
        }

        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        func three(_ n: Int) -> String { String(repeating: "0", count: max(0, 3 - String(n).count)) + String(n) }
    }

    /// One personal value and its replacement, in every byte form it may take.
    struct Value {
        let field: String
        let original: String
        let replacement: String
        /// Names: also rewritten in lower and capitalised forms, and searched without regard to case.
        let foldCase: Bool
        /// (original, replacement) byte pairs of equal length, worked out once (they are applied to every byte string).
        let forms: [([UInt8], [UInt8])]
        /// What ``occurs(in:)`` looks for (upper case when `foldCase`).
        let needles: [[UInt8]]

        init(field: String, original: String, replacement: String, foldCase: Bool) {
            self.field = field
            self.original = original
            self.replacement = replacement
            self.foldCase = foldCase
            var texts = [(original, replacement)]
            if foldCase {
                texts += [(original.uppercased(), replacement.uppercased()), (original.lowercased(), replacement.lowercased()),
                          (original.capitalisedWords, replacement.capitalisedWords)]
            }
            var out: [([UInt8], [UInt8])] = []
            // A number of 8 digits or more may also be stored in packed BCD (a PKCS#15 TokenInfo serial).
            if let a = packedBCD(original), let b = packedBCD(replacement) { out.append((a, b)) }
            for (a, b) in texts {
                for (x, y) in [(latin1Bytes(a), latin1Bytes(b)), (Array(a.utf8), Array(b.utf8))] {
                    guard let x, let y, x.count == y.count, !x.isEmpty, !out.contains(where: { $0.0 == x }) else { continue }
                    out.append((x, y))
                }
            }
            forms = out
            needles = (foldCase ? [latin1Bytes(original.uppercased()), Array(original.uppercased().utf8)]
                                : [latin1Bytes(original), Array(original.utf8), packedBCD(original)]).compactMap { $0 }.filter { !$0.isEmpty }
        }

        /// Values under 4 bytes are only rewritten (and searched) where they stand alone: a whole BER-TLV
        /// value (the byte before them is their length) or a word (no letter or digit on either side), so
        /// "LY" is not rewritten inside unrelated binary data but is inside "LY ANNE" in a certificate.
        var delimited: Bool { original.utf8.count < 4 }

        func apply(to blob: inout [UInt8]) -> Int {
            forms.reduce(0) { $0 + replaceAll(&blob, $1.0, $1.1, delimited: delimited) }
        }

        func apply(toText text: String) -> String {
            var t = text
            for (a, b) in [(original, replacement), (original.uppercased(), replacement.uppercased()), (original.lowercased(), replacement.lowercased()),
                           (original.capitalisedWords, replacement.capitalisedWords)] where !a.isEmpty {
                t = t.replacingEvery(a, with: b)
            }
            return t
        }

        func occurs(in blob: [UInt8]) -> Bool {
            let hay = foldCase ? blob.map(asciiUpper) : blob
            return needles.contains { firstIndex(of: $0, in: hay, delimited: delimited) != nil }
        }

        func occurs(inText text: String) -> Bool {
            foldCase ? text.uppercased().contains(original.uppercased()) : text.contains(original)
        }
    }

    /// A CPx serial in EF.SN.ICC: `5A 0A`, the issuer `80 25 00 00 01`, then the serial and its Luhn
    /// digit in BCD, padded with `F`.
    struct BCDSerial {
        let field: String
        let originalBytes: [UInt8]
        let replacementBytes: [UInt8]

        init?(field: String, original: String, replacement: String) {
            self.field = field
            let issuer = "8025000001"
            func encode(_ serial: String) -> [UInt8]? {
                let digits = serial + String(CPSPersonaCompiler.luhn(issuer + serial))
                guard digits.count <= 10, digits.allSatisfy(\.isNumber) else { return nil }
                let padded = digits + String(repeating: "F", count: 10 - digits.count)
                let nibbles = padded.map { UInt8($0.hexDigitValue ?? 0xF) }
                return [0x5A, 0x0A, 0x80, 0x25, 0x00, 0x00, 0x01] + stride(from: 0, to: 10, by: 2).map { nibbles[$0] << 4 | nibbles[$0 + 1] }
            }
            guard let a = encode(original), let b = encode(replacement) else { return nil }
            originalBytes = a
            replacementBytes = b
        }

        func apply(to blob: inout [UInt8]) -> Int { replaceAll(&blob, originalBytes, replacementBytes) }
        func occurs(in blob: [UInt8]) -> Bool { firstIndex(of: originalBytes, in: blob) != nil }
    }
}

// MARK: - Walking an image's bytes and texts

extension CardImage {
    /// Calls `body` on every byte string of the image (file contents, records, FCIs, memory, overrides,
    /// recorded commands, and recorded responses as one stream), writing back what it changes.
    mutating func rewriteBlobs(_ body: (inout [UInt8], String) -> Void) {
        root.rewriteBlobs(path: "MF", body)
        if var m = memory { body(&m.data, "memory"); memory = m }
        for i in overrides.indices {
            body(&overrides[i].command, "override \(i + 1) command")
            body(&overrides[i].response, "override \(i + 1) response")
        }
        guard var r = replay else { return }
        // Responses as one stream (without their status words), so a value split across two answers is found.
        var stream: [UInt8] = []
        var bounds: [Int] = []
        for e in r.transcript {
            stream += e.response.dropLast(min(2, e.response.count))
            bounds.append(stream.count)
        }
        body(&stream, "the recorded responses")
        var start = 0
        for i in r.transcript.indices {
            let sw = Array(r.transcript[i].response.suffix(min(2, r.transcript[i].response.count)))
            r.transcript[i].response = Array(stream[start..<bounds[i]]) + sw
            start = bounds[i]
            // Commands: each run of bytes between wildcards.
            var command = r.transcript[i].command
            var runStart = 0
            while runStart < command.count {
                guard command[runStart] != nil else { runStart += 1; continue }
                var runEnd = runStart
                while runEnd < command.count, command[runEnd] != nil { runEnd += 1 }
                var run = command[runStart..<runEnd].map { $0! }
                body(&run, "recorded command \(i + 1)")
                for (k, b) in run.enumerated() { command[runStart + k] = b }
                runStart = runEnd
            }
            r.transcript[i].command = command
        }
        replay = r
    }

    /// The first personal value still in the image (its field, and where: a file, the recorded exchanges,
    /// the texts), or `nil`.
    func firstRemaining(_ values: [ImageAnonymiser.Value], serial: ImageAnonymiser.BCDSerial?) -> (String, String)? {
        var copy = self
        var found: (String, String)?
        copy.rewriteBlobs { blob, location in
            guard found == nil else { return }
            if let v = values.first(where: { $0.occurs(in: blob) }) { found = (v.field, location) }
            else if let serial, serial.occurs(in: blob) { found = (serial.field, location) }
        }
        copy.rewriteTexts { text in
            guard found == nil, let v = values.first(where: { $0.occurs(inText: text) }) else { return }
            found = (v.field, "the image's texts (name, summary, source, recorded reader or session, or a file label)")
        }
        return found
    }

    /// Rewrites the image's free texts (name, summary, source, file labels).
    mutating func rewriteTexts(_ body: (inout String) -> Void) {
        body(&name)
        if var s = summary { body(&s); summary = s }
        if var s = source { body(&s); source = s }
        if var r = recorded {
            body(&r.reader)
            body(&r.session)
            recorded = r
        }
        root.rewriteLabels(body)
    }

}

extension CardImage.DedicatedFile {
    mutating func rewriteBlobs(path: String, _ body: (inout [UInt8], String) -> Void) {
        if var f = fci { body(&f, "\(path) FCI"); fci = f }
        for i in children.indices {
            switch children[i] {
            case .dedicated(var df):
                df.rewriteBlobs(path: path + "/" + df.pathName, body)
                children[i] = .dedicated(df)
            case .elementary(var ef):
                let name = path + "/" + ef.pathName
                if var f = ef.fci { body(&f, "\(name) FCI"); ef.fci = f }
                switch ef.content {
                case .transparent(var bytes):
                    body(&bytes, "file \(name)")
                    ef.content = .transparent(bytes)
                case .records(var records):
                    for r in records.indices { body(&records[r], "file \(name) record \(r + 1)") }
                    ef.content = .records(records)
                }
                children[i] = .elementary(ef)
            }
        }
    }

    mutating func rewriteLabels(_ body: (inout String) -> Void) {
        if var l = label { body(&l); label = l }
        for i in children.indices {
            switch children[i] {
            case .dedicated(var df):
                df.rewriteLabels(body)
                children[i] = .dedicated(df)
            case .elementary(var ef):
                if var l = ef.label { body(&l); ef.label = l }
                children[i] = .elementary(ef)
            }
        }
    }

    var pathName: String {
        if let fid { return fid.hex }
        if let aid { return "AID " + aid.hexString(separator: "") }
        return "DF"
    }
}

extension CardImage.ElementaryFile {
    var pathName: String {
        if let fid { return fid.hex }
        if let sfi { return "SFI \(sfi)" }
        return "EF"
    }
}

// MARK: - Byte and text helpers

/// Latin-1 bytes of `text`, or `nil` when a character is outside Latin-1.
func latin1Bytes(_ text: String) -> [UInt8]? {
    var out: [UInt8] = []
    for s in text.unicodeScalars {
        guard s.value <= 0xFF else { return nil }
        out.append(UInt8(s.value))
    }
    return out
}

/// The packed BCD bytes of a string of 8 or more digits (an even count), else `nil`.
func packedBCD(_ digits: String) -> [UInt8]? {
    let d = digits.compactMap { $0.isASCII ? $0.wholeNumberValue : nil }
    guard d.count == digits.count, d.count >= 8, d.count % 2 == 0 else { return nil }
    return stride(from: 0, to: d.count, by: 2).map { UInt8(d[$0] << 4 | d[$0 + 1]) }
}

/// ASCII and Latin-1 letters folded to upper case.
func asciiUpper(_ b: UInt8) -> UInt8 { (0x61...0x7A).contains(b) || ((0xE0...0xFE).contains(b) && b != 0xF7) ? b - 0x20 : b }

/// Where `needle` first occurs in `hay` from `start`; with `delimited`, only where the byte before it is
/// its length (a whole BER-TLV value).
func firstIndex(of needle: [UInt8], in hay: [UInt8], from start: Int = 0, delimited: Bool = false) -> Int? {
    guard !needle.isEmpty, hay.count >= needle.count, start <= hay.count - needle.count else { return nil }
    let first = needle[0]
    var i = start
    while i <= hay.count - needle.count {
        if hay[i] == first, hay[i..<(i + needle.count)].elementsEqual(needle), !delimited || standsAlone(hay, i, needle.count) { return i }
        i += 1
    }
    return nil
}

/// Whether `hay[at..<at+count]` is a whole BER-TLV value or a whole word.
func standsAlone(_ hay: [UInt8], _ at: Int, _ count: Int) -> Bool {
    if at > 0 && Int(hay[at - 1]) == count { return true }
    func alphanumeric(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || b >= 0xC0 }
    let before = at == 0 || !alphanumeric(hay[at - 1])
    let after = at + count >= hay.count || !alphanumeric(hay[at + count])
    return before && after
}

/// Replaces every occurrence of `a` by `b` (same length) and returns how many there were.
@discardableResult
func replaceAll(_ blob: inout [UInt8], _ a: [UInt8], _ b: [UInt8], delimited: Bool = false) -> Int {
    precondition(a.count == b.count)
    var n = 0
    var i = 0
    while let at = firstIndex(of: a, in: blob, from: i, delimited: delimited) {
        blob.replaceSubrange(at..<(at + a.count), with: b)
        n += 1
        i = at + a.count
    }
    return n
}

extension String {
    /// "JEAN-PIERRE DUPONT" → "Jean-Pierre Dupont".
    var capitalisedWords: String {
        var out = ""
        var startOfWord = true
        for ch in self {
            out += startOfWord ? ch.uppercased() : ch.lowercased()
            startOfWord = !ch.isLetter
        }
        return out
    }

    /// Every occurrence of `a` replaced by `b`.
    func replacingEvery(_ a: String, with b: String) -> String {
        guard !a.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
