public import CarteEmulator
import CarteCore
import CarteApCV
import CarteCrypto
import Foundation
import CarteYAML
import Yams

/// A card image that cannot be loaded, with the file, the line and column, and the field at fault.
public struct CardImageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public enum Problem: Hashable, Sendable {
        /// The file could not be read (missing, unreadable, not UTF-8).
        case unreadable(String)
        /// The text is not well-formed YAML.
        case syntax(String)
        /// The `format` field names a version this build does not read.
        case unsupportedFormat(String)
        /// A required field is absent.
        case missingField
        /// A field has the wrong kind of value (a list where text was expected…).
        case wrongType(expected: String)
        /// A field's value is not acceptable; the text says why.
        case invalidValue(String)
        /// A field this format does not define (usually a typo).
        case unknownField
        /// Two files, records or PINs share an identifier that must be unique.
        case duplicate(String)
        /// Two fields that exclude each other are both present (`data` and `text`…).
        case conflictingFields(String)
    }

    /// The file (or bundled path) the image came from.
    public var file: String
    /// 1-based line, when known.
    public var line: Int?
    /// 1-based column, when known.
    public var column: Int?
    /// The field path (`filesystem.files[1].data`), empty for the document itself.
    public var field: String
    /// What is wrong.
    public var problem: Problem

    public var description: String {
        var s = file
        if let line { s += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        s += ": "
        if !field.isEmpty { s += "field `\(field)`: " }
        switch problem {
        case .unreadable(let why): s += "cannot read the file: \(why)"
        case .syntax(let why): s += "not valid YAML: \(why)"
        case .unsupportedFormat(let f): s += "unsupported format \"\(f)\" (this build reads carte-image/\(CardImage.currentFormat))"
        case .missingField: s += "required field is missing"
        case .wrongType(let expected): s += "expected \(expected)"
        case .invalidValue(let why): s += why
        case .unknownField: s += "unknown field (check the spelling; see CardImages/README.md)"
        case .duplicate(let what): s += "duplicate \(what)"
        case .conflictingFields(let what): s += "conflicting fields: \(what)"
        }
        return s
    }
}

/// Reads card images in the `carte-image/1` YAML format (documented in `CardImages/README.md`).
///
/// Every error names the file, the line and the field; unknown fields are errors, so a typo never
/// silently changes a card.
public enum CardImageLoader {
    /// Loads the image in the file at `path`.
    public static func load(path: String) throws(CardImageError) -> CardImage {
        try load(text: readText(path, maximumSize: maximumSize), source: path)
    }

    /// The UTF-8 text of the file at `path`, or a ``CardImageError`` saying precisely why not: no such
    /// file, a directory, not a regular file (never block on a FIFO or read /dev/zero forever), larger
    /// than `maximumSize`, permission denied, not UTF-8. Every CarteKit YAML file is read through it.
    package static func readText(_ path: String, maximumSize: Int) throws(CardImageError) -> String {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CardImageError(file: path, field: "", problem: .unreadable("no such file"))
        }
        guard !isDirectory.boolValue else { throw CardImageError(file: path, field: "", problem: .unreadable("it is a directory")) }
        let attributes = (try? fm.attributesOfItem(atPath: path)) ?? [:]
        guard attributes[.type] as? FileAttributeType == .typeRegular else {
            throw CardImageError(file: path, field: "", problem: .unreadable("not a regular file"))
        }
        let limit = maximumSize >= 1 << 20 ? "\(maximumSize >> 20) MiB" : "\(maximumSize) bytes"
        guard let size = attributes[.size] as? NSNumber, size.intValue <= maximumSize else {
            throw CardImageError(file: path, field: "", problem: .unreadable("the file is larger than \(limit)"))
        }
        guard fm.isReadableFile(atPath: path), let data = fm.contents(atPath: path) else {
            throw CardImageError(file: path, field: "", problem: .unreadable("permission denied"))
        }
        guard data.count <= maximumSize else {
            throw CardImageError(file: path, field: "", problem: .unreadable("the file is larger than \(limit)"))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CardImageError(file: path, field: "", problem: .unreadable("the file is not UTF-8 text"))
        }
        return text
    }

    /// The largest image file read (16 MiB).
    public static let maximumSize = 16 << 20

    /// The most YAML values an image may hold; bounds the work on hostile input (YAML aliases can
    /// make a small file expand to billions of nodes).
    public static let maximumNodes = 200_000

    /// Loads an image from its text; `source` names it in errors.
    /// A persona (`format: carte-persona/1`) is compiled to its image.
    public static func load(text: String, source: String) throws(CardImageError) -> CardImage {
        if CPSPersonaCompiler.isPersona(text) {
            throw CardImageError(file: source, line: 1, field: "format", problem: .invalidValue(
                "a CPx persona (carte-cps-persona/1) needs keys and certificates: build it into an image first with `carte image build \(source) -o IMAGE`"))
        }
        if ApCVPersonaCompiler.isPersona(text) {
            throw CardImageError(file: source, line: 1, field: "format", problem: .invalidValue(
                "a phone persona (carte-apcv-persona/1) needs a key: build it into an image first with `carte image build \(source) -o IMAGE`"))
        }
        if PersonaCompiler.isPersona(text) {
            return PersonaCompiler.compile(try PersonaCompiler.load(text: text, source: source), source: source)
        }
        let root = try compose(text, source: source)
        var reader = YAMLDocumentReader(source: source)
        return try reader.image(root)
    }

    /// Parses YAML text into a node tree, turning every YAML error into a ``CardImageError`` with its line.
    static func compose(_ text: String, source: String) throws(CardImageError) -> Node {
        if let key = YAMLKeyGuard.firstNonTextKey(in: text) {
            throw CardImageError(file: source, line: key.line, column: key.column, field: "",
                                 problem: .wrongType(expected: "text keys, not \(key.kind) as a key"))
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw CardImageError(file: source, line: 1, field: "", problem: .syntax("the document is empty"))
            }
            return node
        } catch let error as CardImageError {
            throw error
        } catch let error as YamlError {
            throw syntaxError(error, source: source)
        } catch {
            throw CardImageError(file: source, field: "", problem: .syntax("\(error)"))
        }
    }

    static func syntaxError(_ error: YamlError, source: String) -> CardImageError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return CardImageError(file: source, line: mark.line, column: mark.column, field: "", problem: .syntax(problem))
        case .duplicatedKeysInMapping(let duplicates, let context):
            return CardImageError(file: source, line: context.mark.line, column: context.mark.column, field: "", problem: .duplicate("key \(duplicates.joined(separator: ", "))"))
        default:
            return CardImageError(file: source, field: "", problem: .syntax("\(error)"))
        }
    }
}

// MARK: - The reader

/// Reads YAML nodes into values, with errors that name the file, line and field.
struct YAMLDocumentReader {
    let source: String
    /// PIN references defined in `pins` (checked when an EF says `read: pin:XX`).
    var pinReferences: Set<UInt8> = []
    /// Values visited so far (see ``CardImageLoader/maximumNodes``); a class so non-mutating readers can count.
    final class Budget { var visited = 0 }
    let budget = Budget()

    init(source: String) { self.source = source }

    func spend(_ node: Node, _ path: String) throws(CardImageError) {
        budget.visited += 1
        if budget.visited > CardImageLoader.maximumNodes {
            throw fail(node, path, .invalidValue("the image holds more than \(CardImageLoader.maximumNodes) values (YAML aliases expanding?)"))
        }
    }

    func fail(_ node: Node?, _ field: String, _ problem: CardImageError.Problem) -> CardImageError {
        CardImageError(file: source, line: node?.mark?.line, column: node?.mark?.column, field: field, problem: problem)
    }

    /// A mapping's fields, checking that only `allowed` keys appear.
    func fields(_ node: Node, _ path: String, allowed: Set<String>) throws(CardImageError) -> [String: Node] {
        try spend(node, path)
        guard case .mapping(let mapping) = node else { throw fail(node, path, .wrongType(expected: "a mapping of fields")) }
        var out: [String: Node] = [:]
        for (key, value) in mapping {
            guard case .scalar(let k) = key else { throw fail(key, path, .wrongType(expected: "text keys")) }
            let name = k.string
            let fieldPath = path.isEmpty ? name : path + "." + name
            guard allowed.contains(name) else { throw fail(key, fieldPath, .unknownField) }
            guard out[name] == nil else { throw fail(key, fieldPath, .duplicate("field")) }
            out[name] = value
        }
        return out
    }

    func scalar(_ node: Node, _ path: String) throws(CardImageError) -> String {
        try spend(node, path)
        guard case .scalar(let s) = node else { throw fail(node, path, .wrongType(expected: "a single value")) }
        return s.string
    }

    func list(_ node: Node, _ path: String) throws(CardImageError) -> [Node] {
        try spend(node, path)
        guard case .sequence(let seq) = node else { throw fail(node, path, .wrongType(expected: "a list")) }
        return Array(seq)
    }

    func hex(_ node: Node, _ path: String) throws(CardImageError) -> [UInt8] {
        let text = try scalar(node, path)
        do {
            return try [UInt8](hex: text)
        } catch {
            throw fail(node, path, .invalidValue("not hexadecimal bytes: \(error)"))
        }
    }

    func byte(_ node: Node, _ path: String) throws(CardImageError) -> UInt8 {
        let bytes = try hex(node, path)
        guard bytes.count == 1 else { throw fail(node, path, .invalidValue("expected one byte in hexadecimal (like 81), got \(bytes.count)")) }
        return bytes[0]
    }

    func fid(_ node: Node, _ path: String) throws(CardImageError) -> UInt16? {
        let text = try scalar(node, path)
        if text == "~" || text.isEmpty || text == "null" { return nil }
        let bytes = try hex(node, path)
        guard bytes.count == 2 else { throw fail(node, path, .invalidValue("a file identifier is 2 bytes in hexadecimal (like 2F00), got \(bytes.count)")) }
        return UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    }

    func int(_ node: Node, _ path: String, in range: ClosedRange<Int>) throws(CardImageError) -> Int {
        let text = try scalar(node, path)
        guard let v = Int(text) else { throw fail(node, path, .wrongType(expected: "a whole number")) }
        guard range.contains(v) else { throw fail(node, path, .invalidValue("\(v) is outside \(range.lowerBound)...\(range.upperBound)")) }
        return v
    }

    func bool(_ node: Node, _ path: String) throws(CardImageError) -> Bool {
        switch try scalar(node, path).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(node, path, .wrongType(expected: "true or false"))
        }
    }

    /// Text stored as ISO-8859-1 (the SESAM-Vitale character set): every character must be ≤ U+00FF.
    /// With `secret`, errors never quote the text (it is a PIN).
    func latin1(_ node: Node, _ path: String, secret: Bool = false) throws(CardImageError) -> [UInt8] {
        let text = try scalar(node, path)
        var out: [UInt8] = []
        for (i, scalar) in text.unicodeScalars.enumerated() {
            guard scalar.value <= 0xFF else {
                let what = secret ? "character \(i + 1)" : "character \"\(scalar)\""
                throw fail(node, path, .invalidValue("\(what) cannot be stored in ISO-8859-1 text"))
            }
            out.append(UInt8(scalar.value))
        }
        return out
    }

    // MARK: Document

    mutating func image(_ root: Node) throws(CardImageError) -> CardImage {
        let f = try fields(root, "", allowed: ["format", "name", "description", "synthetic", "card", "pins", "keys", "filesystem", "overrides", "apcv", "faults", "keypad", "recorded", "replay"])
        guard let formatNode = f["format"] else { throw fail(root, "format", .missingField) }
        let format = try scalar(formatNode, "format")
        guard format == "carte-image/\(CardImage.currentFormat)" || format == "\(CardImage.currentFormat)" else {
            throw fail(formatNode, "format", .unsupportedFormat(format))
        }
        guard let nameNode = f["name"] else { throw fail(root, "name", .missingField) }
        let name = try scalar(nameNode, "name")
        guard let syntheticNode = f["synthetic"] else { throw fail(root, "synthetic", .missingField) }
        let synthetic = try bool(syntheticNode, "synthetic")
        let summary = try f["description"].map { n throws(CardImageError) in try scalar(n, "description") }

        guard let cardNode = f["card"] else { throw fail(root, "card", .missingField) }
        let c = try fields(cardNode, "card", allowed: ["atr", "protocol", "t0-responses", "classes", "select-rejected-p2", "challenge-seed", "memory", "cps2ter-volet", "logical-channels", "security-attributes-in-fcp", "security-operations"])
        guard let atrNode = c["atr"] else { throw fail(cardNode, "card.atr", .missingField) }
        let atr = try hex(atrNode, "card.atr")
        let parsedATR: ATR
        do {
            parsedATR = try ATR(bytes: atr)
        } catch {
            throw fail(atrNode, "card.atr", .invalidValue("not a valid ATR: \(error)"))
        }
        var proto = parsedATR.defaultProtocol
        if let p = c["protocol"] {
            switch try scalar(p, "card.protocol").uppercased().replacingOccurrences(of: " ", with: "") {
            case "T=0", "T0": proto = .t0
            case "T=1", "T1": proto = .t1
            default: throw fail(p, "card.protocol", .invalidValue("expected T=0 or T=1"))
            }
            guard parsedATR.protocols.contains(proto) || (parsedATR.isPCSCContactless && proto == .t1) else {
                throw fail(p, "card.protocol", .invalidValue("the ATR offers \(parsedATR.protocols.map(\.description).joined(separator: ", ")), not \(proto)"))
            }
        }
        var behaviour = CardImage.Behaviour(t0Responses: proto == .t0)
        if let n = c["t0-responses"] { behaviour.t0Responses = try bool(n, "card.t0-responses") }
        if let n = c["classes"] {
            var classes: Set<UInt8> = []
            for (i, item) in try list(n, "card.classes").enumerated() { classes.insert(try byte(item, "card.classes[\(i)]")) }
            behaviour.classes = classes
        }
        if let n = c["select-rejected-p2"] {
            var set: Set<UInt8> = []
            for (i, item) in try list(n, "card.select-rejected-p2").enumerated() { set.insert(try byte(item, "card.select-rejected-p2[\(i)]")) }
            behaviour.selectRejectedP2 = set
        }
        if let n = c["challenge-seed"] { behaviour.challengeSeed = UInt64(try int(n, "card.challenge-seed", in: 0...Int.max)) }
        if let n = c["cps2ter-volet"] {
            behaviour.cps2terVolet = try bool(n, "card.cps2ter-volet")
            if behaviour.cps2terVolet { behaviour.classes.insert(0xA0) }
        }
        if let n = c["security-attributes-in-fcp"] { behaviour.securityAttributesInFCP = try bool(n, "card.security-attributes-in-fcp") }
        if let n = c["logical-channels"] { behaviour.logicalChannels = try int(n, "card.logical-channels", in: 1...4) }
        if let n = c["security-operations"] {
            let v = try scalar(n, "card.security-operations")
            guard let dialect = CardImage.Behaviour.SecurityOperations(rawValue: v) else {
                throw fail(n, "card.security-operations", .invalidValue("expected ias-ecc or chipdoc"))
            }
            behaviour.securityOperations = dialect
        }

        var pins: [CardImage.PIN] = []
        if let n = f["pins"] {
            for (i, item) in try list(n, "pins").enumerated() {
                let pin = try self.pin(item, "pins[\(i)]")
                guard !pins.contains(where: { $0.reference == pin.reference }) else {
                    throw fail(item, "pins[\(i)].ref", .duplicate("PIN reference \(pin.reference.hex)"))
                }
                pins.append(pin)
                pinReferences.insert(pin.reference)
            }
        }

        for (i, pin) in pins.enumerated() {
            if let puk = pin.unblockedBy, !pinReferences.contains(puk) {
                throw fail(f["pins"], "pins[\(i)].unblocked-by", .invalidValue("PIN \(puk.hex) is not defined in `pins`"))
            }
        }
        var keys: [CardImage.Key] = []
        if let n = f["keys"] {
            for (i, item) in try list(n, "keys").enumerated() {
                let key = try self.key(item, "keys[\(i)]")
                guard !keys.contains(where: { $0.reference == key.reference }) else {
                    throw fail(item, "keys[\(i)].ref", .duplicate("key reference \(key.reference.hex)"))
                }
                keys.append(key)
            }
        }

        let phone = try f["apcv"].map { n throws(CardImageError) in try self.phone(n, "apcv") }
        var aids: [[UInt8]] = []
        let mf: CardImage.DedicatedFile
        if let fsNode = f["filesystem"] {
            mf = try dedicated(fsNode, "filesystem", defaultFID: 0x3F00, aids: &aids)
        } else if phone != nil {
            mf = CardImage.DedicatedFile(fid: 0x3F00)  // a phone has no file system to show
        } else {
            throw fail(root, "filesystem", .missingField)
        }

        var overrides: [CardImage.Override] = []
        if let n = f["overrides"] {
            for (i, item) in try list(n, "overrides").enumerated() {
                let o = try fields(item, "overrides[\(i)]", allowed: ["command", "response"])
                guard let cmd = o["command"] else { throw fail(item, "overrides[\(i)].command", .missingField) }
                guard let rsp = o["response"] else { throw fail(item, "overrides[\(i)].response", .missingField) }
                let response = try hex(rsp, "overrides[\(i)].response")
                guard response.count >= 2 else { throw fail(rsp, "overrides[\(i)].response", .invalidValue("a response needs at least the 2 status bytes")) }
                overrides.append(CardImage.Override(command: try hex(cmd, "overrides[\(i)].command"), response: response))
            }
        }

        var image = CardImage(name: name, summary: summary, synthetic: synthetic, source: source, atr: atr, cardProtocol: proto,
                              behaviour: behaviour, root: mf, pins: pins, overrides: overrides)
        image.keys = keys
        image.apcv = phone
        if let n = f["recorded"] {
            let r = try fields(n, "recorded", allowed: ["reader", "vendor", "model", "firmware", "date", "session"])
            func need(_ k: String) throws(CardImageError) -> String {
                guard let v = r[k] else { throw fail(n, "recorded." + k, .missingField) }
                return try scalar(v, "recorded." + k)
            }
            func optional(_ k: String) throws(CardImageError) -> String? { try r[k].map { v throws(CardImageError) in try scalar(v, "recorded." + k) } }
            image.recorded = CardImage.Recording(reader: try need("reader"), vendor: try optional("vendor"), model: try optional("model"),
                                                 firmware: try optional("firmware"), date: try need("date"), session: try need("session"))
        }
        if let n = f["replay"] {
            let r = try fields(n, "replay", allowed: ["source", "policy", "unexpected-sw", "transcript"])
            var replay = CardImage.Replay(transcript: [])
            if let v = r["source"] {
                let t = try scalar(v, "replay.source")
                guard let source = CardImage.Replay.Source(rawValue: t) else { throw fail(v, "replay.source", .invalidValue("expected transcript or filesystem")) }
                replay.source = source
            }
            if let v = r["policy"] {
                let t = try scalar(v, "replay.policy")
                guard let policy = CardImage.Replay.Policy(rawValue: t) else { throw fail(v, "replay.policy", .invalidValue("expected strict, cursor or keyed")) }
                replay.policy = policy
            }
            if let v = r["unexpected-sw"] {
                let b = try hex(v, "replay.unexpected-sw")
                guard b.count == 2 else { throw fail(v, "replay.unexpected-sw", .invalidValue("a status word is 2 bytes")) }
                replay.unexpectedStatusWord = StatusWord(sw1: b[0], sw2: b[1])
            }
            if let v = r["transcript"] {
                for (i, item) in try list(v, "replay.transcript").enumerated() {
                    let path = "replay.transcript[\(i)]"
                    let e = try fields(item, path, allowed: ["command", "response", "ms"])
                    guard let c = e["command"] else { throw fail(item, path + ".command", .missingField) }
                    guard let rsp = e["response"] else { throw fail(item, path + ".response", .missingField) }
                    let text = try scalar(c, path + ".command")
                    guard let command = CardImage.Replay.Exchange.command(fromText: text[...]) else {
                        let token = text.split(separator: " ").first { $0 != "??" && ($0.count != 2 || UInt8($0, radix: 16) == nil) } ?? ""
                        throw fail(c, path + ".command", .invalidValue("bytes are 2 hexadecimal digits or ?? (any byte), separated by spaces; \"\(token.prefix(8))\" is not"))
                    }
                    guard command.count >= 4 else { throw fail(c, path + ".command", .invalidValue("a command APDU has at least 4 bytes")) }
                    let response = try hex(rsp, path + ".response")
                    guard response.count >= 2 else { throw fail(rsp, path + ".response", .invalidValue("a response needs at least the 2 status bytes")) }
                    let ms = try e["ms"].map { v throws(CardImageError) -> Double in
                        guard let d = Double(try scalar(v, path + ".ms")), d >= 0, d.isFinite, (d * 1000).isFinite else {
                            throw fail(v, path + ".ms", .invalidValue("milliseconds, a number ≥ 0"))
                        }
                        // Kept to the microsecond, as recorded and as written.
                        return (d * 1000).rounded() / 1000
                    }
                    replay.transcript.append(.init(command: command, response: response, milliseconds: ms))
                }
            }
            if replay.source == .transcript && replay.transcript.isEmpty { throw fail(n, "replay.transcript", .missingField) }
            image.replay = replay
        }
        if let n = f["keypad"] { image.keypad = try ReaderProfileLoader.keypadScript(n, "keypad", self) }
        if let n = f["faults"] {
            for (i, item) in try list(n, "faults").enumerated() {
                let path = "faults[\(i)]"
                let o = try fields(item, path, allowed: ["at", "fault", "count", "ms", "sw"])
                guard let at = o["at"] else { throw fail(item, path + ".at", .missingField) }
                guard let kind = o["fault"] else { throw fail(item, path + ".fault", .missingField) }
                let count = try o["count"].map { v throws(CardImageError) in try int(v, path + ".count", in: 1...10_000) }
                let ms = try o["ms"].map { v throws(CardImageError) in try int(v, path + ".ms", in: 1...60_000) }
                var sw: StatusWord? = nil
                if let v = o["sw"] {
                    let bytes = try hex(v, path + ".sw")
                    guard bytes.count == 2 else { throw fail(v, path + ".sw", .invalidValue("a status word is 2 bytes")) }
                    sw = StatusWord(sw1: bytes[0], sw2: bytes[1])
                }
                let name = try scalar(kind, path + ".fault")
                let fault: SlotFault
                do throws(SlotFaultError) { fault = try SlotFault.named(name, count: count, milliseconds: ms, statusWord: sw) } catch {
                    throw fail(kind, path + ".fault", .invalidValue(error.description))
                }
                image.faults.append(CardImage.ScheduledFault(atAPDU: try int(at, path + ".at", in: 1...1_000_000), fault: fault))
            }
        }
        if let n = c["memory"] {
            let m = try fields(n, "card.memory", allowed: ["class", "first-address", "word-size", "data"])
            var memory = CardImage.Memory(data: [])
            if let v = m["class"] { memory.cla = try byte(v, "card.memory.class") }
            if let v = m["first-address"] {
                guard let a = try fid(v, "card.memory.first-address") else { throw fail(v, "card.memory.first-address", .missingField) }
                memory.firstAddress = a
            }
            if let v = m["word-size"] { memory.wordSize = try int(v, "card.memory.word-size", in: 1...16) }
            guard let d = m["data"] else { throw fail(n, "card.memory.data", .missingField) }
            memory.data = try hex(d, "card.memory.data")
            guard memory.data.count / memory.wordSize < 0xFFFF - Int(memory.firstAddress) else {
                throw fail(d, "card.memory.data", .invalidValue("more data than the address space holds"))
            }
            image.memory = memory
        }
        return image
    }

    func phone(_ node: Node, _ path: String) throws(CardImageError) -> CardImage.Phone {
        let p = try fields(node, path, allowed: ["aid", "key-id", "subject", "token-lifetime", "identity", "consent", "private-key"])
        var aid = ApCVProtocol.syntheticAID
        if let n = p["aid"] {
            aid = try hex(n, path + ".aid")
            guard (5...16).contains(aid.count) else { throw fail(n, path + ".aid", .invalidValue("an AID is 5 to 16 bytes, not \(aid.count)")) }
        }
        guard let keyNode = p["key-id"] else { throw fail(node, path + ".key-id", .missingField) }
        let keyID = try scalar(keyNode, path + ".key-id")
        guard (1...32).contains(keyID.utf8.count) else { throw fail(keyNode, path + ".key-id", .invalidValue("1 to 32 bytes of UTF-8")) }
        guard let subjectNode = p["subject"] else { throw fail(node, path + ".subject", .missingField) }
        let subject = try hex(subjectNode, path + ".subject")
        guard (1...32).contains(subject.count) else { throw fail(subjectNode, path + ".subject", .invalidValue("1 to 32 bytes, not \(subject.count)")) }
        let lifetime = try p["token-lifetime"].map { n throws(CardImageError) in try int(n, path + ".token-lifetime", in: 1...600) } ?? 120
        guard let identityNode = p["identity"] else { throw fail(node, path + ".identity", .missingField) }
        let identity = try scalar(identityNode, path + ".identity")
        var consent = CardImage.Phone.Consent.automatic
        if let n = p["consent"] {
            let text = try scalar(n, path + ".consent")
            guard let c = CardImage.Phone.Consent(rawValue: text) else {
                throw fail(n, path + ".consent", .invalidValue("expected \(CardImage.Phone.Consent.allCases.map(\.rawValue).joined(separator: " or "))"))
            }
            consent = c
        }
        guard let pemNode = p["private-key"] else { throw fail(node, path + ".private-key", .missingField) }
        let pem = try scalar(pemNode, path + ".private-key")
        do {
            _ = try ECPrivateKey(pem: pem)
        } catch {
            throw fail(pemNode, path + ".private-key", .invalidValue("not an unencrypted EC P-256 private key in PEM (\(error.kind.rawValue))"))
        }
        return CardImage.Phone(aid: aid, keyID: keyID, subject: subject, tokenLifetime: lifetime, identity: identity, consent: consent, privateKeyPEM: pem)
    }

    func pin(_ node: Node, _ path: String) throws(CardImageError) -> CardImage.PIN {
        let p = try fields(node, path, allowed: ["ref", "value", "ascii", "pad-to", "pad-byte", "tries", "remaining", "label", "unblocked-by", "usage-counter"])
        guard let refNode = p["ref"] else { throw fail(node, path + ".ref", .missingField) }
        let ref = try byte(refNode, path + ".ref")
        var value: [UInt8]
        switch (p["value"], p["ascii"]) {
        case (let v?, nil):
            // Never quote a PIN in an error: say where it is wrong, not what it is.
            do {
                value = try [UInt8](hex: try scalar(v, path + ".value"))
            } catch {
                throw fail(v, path + ".value", .invalidValue("not hexadecimal bytes"))
            }
        case (nil, let a?): value = try latin1(a, path + ".ascii", secret: true)
        case (nil, nil): throw fail(node, path + ".value", .missingField)
        case (_?, _?): throw fail(node, path, .conflictingFields("`value` and `ascii`"))
        }
        if let padTo = p["pad-to"] {
            let n = try int(padTo, path + ".pad-to", in: 1...64)
            guard value.count <= n else { throw fail(padTo, path + ".pad-to", .invalidValue("the PIN is already \(value.count) bytes long")) }
            let padByte = try p["pad-byte"].map { n throws(CardImageError) in try byte(n, path + ".pad-byte") } ?? 0xFF
            value += [UInt8](repeating: padByte, count: n - value.count)
        }
        let tries = try p["tries"].map { n throws(CardImageError) in try int(n, path + ".tries", in: 1...15) } ?? 3
        let remaining = try p["remaining"].map { n throws(CardImageError) in try int(n, path + ".remaining", in: 0...tries) } ?? tries
        let label = try p["label"].map { n throws(CardImageError) in try scalar(n, path + ".label") }
        let puk = try p["unblocked-by"].map { n throws(CardImageError) in try byte(n, path + ".unblocked-by") }
        let usage = try p["usage-counter"].map { n throws(CardImageError) in try int(n, path + ".usage-counter", in: 0...0xFFFF) }
        return CardImage.PIN(reference: ref, value: value, maxTries: tries, remainingTries: remaining, label: label, unblockedBy: puk, usageCounter: usage)
    }

    /// An access rule: `always`, `never` or `pin:XX` (a PIN defined in `pins`).
    func accessRule(_ n: Node, _ path: String) throws(CardImageError) -> CardImage.AccessRule {
        let text = try scalar(n, path)
        switch text {
        case "always": return .always
        case "never": return .never
        default:
            guard text.hasPrefix("pin:"), let ref = try? [UInt8](hex: text.dropFirst(4)), ref.count == 1 else {
                throw fail(n, path, .invalidValue("expected always, never or pin:XX (a PIN reference in hexadecimal)"))
            }
            guard pinReferences.contains(ref[0]) else {
                throw fail(n, path, .invalidValue("PIN \(ref[0].hex) is not defined in `pins`"))
            }
            return .pin(ref[0])
        }
    }

    /// A private key: reference, usages, use condition and the PEM (checked here; never quoted in errors).
    func key(_ node: Node, _ path: String) throws(CardImageError) -> CardImage.Key {
        let k = try fields(node, path, allowed: ["ref", "label", "usage", "use", "private-key"])
        guard let refNode = k["ref"] else { throw fail(node, path + ".ref", .missingField) }
        guard let usageNode = k["usage"] else { throw fail(node, path + ".usage", .missingField) }
        guard let pemNode = k["private-key"] else { throw fail(node, path + ".private-key", .missingField) }
        var usages: Set<CardImage.Key.Usage> = []
        for (i, item) in try list(usageNode, path + ".usage").enumerated() {
            let text = try scalar(item, "\(path).usage[\(i)]")
            guard let usage = CardImage.Key.Usage(rawValue: text) else {
                throw fail(item, "\(path).usage[\(i)]", .invalidValue("expected sign, authenticate or decipher"))
            }
            usages.insert(usage)
        }
        let pem = try scalar(pemNode, path + ".private-key")
        do {
            _ = try RSAPrivateKey(pem: pem)
        } catch {
            throw fail(pemNode, path + ".private-key", .invalidValue("not an unencrypted RSA private key in PEM (\(error.kind.rawValue))"))
        }
        return CardImage.Key(reference: try byte(refNode, path + ".ref"),
                             label: try k["label"].map { n throws(CardImageError) in try scalar(n, path + ".label") },
                             usages: usages,
                             use: try k["use"].map { n throws(CardImageError) in try accessRule(n, path + ".use") } ?? .always,
                             privateKeyPEM: pem)
    }

    // MARK: Files

    func dedicated(_ node: Node, _ path: String, defaultFID: UInt16?, aids: inout [[UInt8]]) throws(CardImageError) -> CardImage.DedicatedFile {
        let d = try fields(node, path, allowed: ["df", "fid", "aid", "label", "fci", "files"])
        var df = CardImage.DedicatedFile(fid: defaultFID)
        if let n = d["df"] ?? d["fid"] { df.fid = try fid(n, path + (d["df"] != nil ? ".df" : ".fid")) }
        if let n = d["aid"] {
            let aid = try hex(n, path + ".aid")
            guard (1...16).contains(aid.count) else { throw fail(n, path + ".aid", .invalidValue("an AID is 1 to 16 bytes, got \(aid.count)")) }
            guard !aids.contains(aid) else { throw fail(n, path + ".aid", .duplicate("AID \(aid.hexString(separator: ""))")) }
            aids.append(aid)
            df.aid = aid
        }
        if let n = d["label"] { df.label = try scalar(n, path + ".label") }
        if let n = d["fci"] { df.fci = try hex(n, path + ".fci") }
        var fids: Set<UInt16> = []
        var sfis: Set<UInt8> = []
        if let n = d["files"] {
            for (i, item) in try list(n, path + ".files").enumerated() {
                let itemPath = "\(path).files[\(i)]"
                guard case .mapping(let m) = item else { throw fail(item, itemPath, .wrongType(expected: "a mapping with `df:` or `ef:`")) }
                let keys = Set(m.keys.compactMap { $0.scalar?.string })
                let child: CardImage.Node
                switch (keys.contains("df"), keys.contains("ef")) {
                case (true, false): child = .dedicated(try dedicated(item, itemPath, defaultFID: nil, aids: &aids))
                case (false, true): child = .elementary(try elementary(item, itemPath))
                case (true, true): throw fail(item, itemPath, .conflictingFields("`df` and `ef`"))
                case (false, false): throw fail(item, itemPath + ".ef", .missingField)
                }
                let (childFID, childSFI): (UInt16?, UInt8?) = {
                    switch child {
                    case .dedicated(let x): return (x.fid, nil)
                    case .elementary(let x): return (x.fid, x.sfi)
                    }
                }()
                if let f = childFID {
                    guard fids.insert(f).inserted else { throw fail(item, itemPath, .duplicate("file identifier \(f.hex) in \(path)")) }
                }
                if let s = childSFI {
                    guard sfis.insert(s).inserted else { throw fail(item, itemPath + ".sfi", .duplicate("short file identifier \(s) in \(path)")) }
                }
                df.children.append(child)
            }
        }
        return df
    }

    func elementary(_ node: Node, _ path: String) throws(CardImageError) -> CardImage.ElementaryFile {
        let e = try fields(node, path, allowed: ["ef", "sfi", "label", "read", "data", "text", "tlv", "records", "pad-to", "pad-byte", "fci", "synthetic"])
        var ef = CardImage.ElementaryFile(content: .transparent([]))
        ef.fid = try fid(e["ef"]!, path + ".ef")
        if let n = e["sfi"] { ef.sfi = UInt8(try int(n, path + ".sfi", in: 1...30)) }
        guard ef.fid != nil || ef.sfi != nil else { throw fail(node, path + ".ef", .invalidValue("an EF needs a file identifier, a short file identifier (sfi), or both")) }
        if let n = e["label"] { ef.label = try scalar(n, path + ".label") }
        if let n = e["read"] { ef.read = try accessRule(n, path + ".read") }
        if let n = e["fci"] { ef.fci = try hex(n, path + ".fci") }
        if let n = e["synthetic"] { ef.synthetic = try bool(n, path + ".synthetic") }
        let contentKeys = ["data", "text", "tlv", "records"].filter { e[$0] != nil }
        guard contentKeys.count <= 1 else {
            throw fail(node, path, .conflictingFields(contentKeys.map { "`\($0)`" }.joined(separator: " and ")))
        }
        var bytes: [UInt8] = []
        switch contentKeys.first {
        case "data": bytes = try hex(e["data"]!, path + ".data")
        case "text": bytes = try latin1(e["text"]!, path + ".text")
        case "tlv":
            for (i, item) in try list(e["tlv"]!, path + ".tlv").enumerated() {
                bytes += try tlv(item, "\(path).tlv[\(i)]").encoded()
            }
        case "records":
            var records: [[UInt8]] = []
            for (i, item) in try list(e["records"]!, path + ".records").enumerated() {
                let rp = "\(path).records[\(i)]"
                if case .scalar = item {
                    records.append(try hex(item, rp))
                } else {
                    let r = try fields(item, rp, allowed: ["data", "text", "tlv"])
                    if let d = r["data"] { records.append(try hex(d, rp + ".data")) }
                    else if let t = r["text"] { records.append(try latin1(t, rp + ".text")) }
                    else if let t = r["tlv"] {
                        var rec: [UInt8] = []
                        for (j, o) in try list(t, rp + ".tlv").enumerated() { rec += try tlv(o, "\(rp).tlv[\(j)]").encoded() }
                        records.append(rec)
                    } else { throw fail(item, rp + ".data", .missingField) }
                }
                guard records.last!.count <= 255 else { throw fail(item, rp, .invalidValue("a record holds at most 255 bytes")) }
            }
            guard e["pad-to"] == nil else { throw fail(e["pad-to"]!, path + ".pad-to", .invalidValue("padding applies to transparent files only")) }
            ef.content = .records(records)
            return ef
        default:
            break
        }
        if let n = e["pad-to"] {
            let size = try int(n, path + ".pad-to", in: 0...32_767)
            guard bytes.count <= size else {
                throw fail(n, path + ".pad-to", .invalidValue("the content is already \(bytes.count) bytes, more than \(size)"))
            }
            let padByte = try e["pad-byte"].map { p throws(CardImageError) in try byte(p, path + ".pad-byte") } ?? 0x00
            bytes += [UInt8](repeating: padByte, count: size - bytes.count)
        }
        guard bytes.count <= 32_767 else { throw fail(node, path, .invalidValue("a transparent EF holds at most 32767 bytes here (READ BINARY offset range)")) }
        ef.content = .transparent(bytes)
        return ef
    }

    func tlv(_ node: Node, _ path: String, depth: Int = 0) throws(CardImageError) -> TLV {
        guard depth < TLV.maximumDepth else { throw fail(node, path, .invalidValue("TLV nesting deeper than \(TLV.maximumDepth)")) }
        let t = try fields(node, path, allowed: ["tag", "hex", "text", "children", "pad-to"])
        guard let tagNode = t["tag"] else { throw fail(node, path + ".tag", .missingField) }
        let tagBytes = try hex(tagNode, path + ".tag")
        guard TLVTag.isValidEncoding(tagBytes), tagBytes[0] != 0x00, tagBytes[0] != 0xFF else {
            throw fail(tagNode, path + ".tag", .invalidValue("\(tagBytes.hexString(separator: "")) is not a valid BER-TLV tag"))
        }
        let tag = TLVTag(rawValue: tagBytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        let present = ["hex", "text", "children"].filter { t[$0] != nil }
        guard present.count <= 1 else { throw fail(node, path, .conflictingFields(present.map { "`\($0)`" }.joined(separator: " and "))) }
        if let c = t["children"] {
            guard tag.isConstructed else {
                throw fail(tagNode, path + ".tag", .invalidValue("tag \(tag) is primitive (bit 6 clear) but has children"))
            }
            var children: [TLV] = []
            for (i, item) in try list(c, path + ".children").enumerated() {
                children.append(try tlv(item, "\(path).children[\(i)]", depth: depth + 1))
            }
            return TLV(tag: tag, children: children)
        }
        var value: [UInt8] = []
        if let h = t["hex"] { value = try hex(h, path + ".hex") }
        if let x = t["text"] { value = try latin1(x, path + ".text") }
        if let p = t["pad-to"] {
            let size = try int(p, path + ".pad-to", in: 0...65_535)
            guard value.count <= size else { throw fail(p, path + ".pad-to", .invalidValue("the value is already \(value.count) bytes")) }
            value += [UInt8](repeating: 0x20, count: size - value.count)  // text fields are space-padded
        }
        return TLV(tag: tag, value: value)
    }
}
