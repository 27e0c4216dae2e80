import Foundation
import Testing

/// #38 item 7: the JSON documents and docs/json.md agree. Every document the commands write has its
/// section, every key in it is named there, absent values are `null` (never left out), and every
/// error kind the tool uses is listed.
@Suite("JSON documents against docs/json.md", .serialized)
struct JSONDocsTests {
    /// docs/json.md: schema → the words of its section's `code` spans.
    static let sections: [String: Set<String>] = {
        let text = (try? String(contentsOf: Carte.repository.appendingPathComponent("docs/json.md"), encoding: .utf8)) ?? ""
        var out: [String: Set<String>] = [:]
        var references: [String: [String]] = [:]
        for section in text.components(separatedBy: "\n## ").dropFirst() {
            let header = section.prefix { $0 != "\n" }
            let schemas = codeSpans(String(header)).filter { $0.hasPrefix("carte.") && $0.contains("/") }
            var words: Set<String> = []
            for span in codeSpans(section) {
                for w in span.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) { words.insert(String(w)) }
            }
            for schema in schemas { out[schema] = words }
            // A section that points at another schema's (`see carte.cps-certs/1`) documents its fields too.
            references[schemas.first ?? ""] = codeSpans(section).filter { $0.hasPrefix("carte.") && $0.contains("/") && !schemas.contains($0) }
        }
        for (schema, others) in references where out[schema] != nil {
            for other in others { out[schema]!.formUnion(out[other] ?? []) }
        }
        // `schema` is every document's (the page's first paragraph).
        for schema in out.keys { out[schema]!.insert("schema") }
        return out
    }()

    static func codeSpans(_ text: String) -> [String] {
        text.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
    }

    /// Every key of a JSON value, with the path it is at (objects' keys, through arrays).
    static func keys(_ value: Any, _ path: String = "") -> [(key: String, path: String)] {
        switch value {
        case let o as [String: Any]: return o.flatMap { [($0.key, path + "." + $0.key)] + keys($0.value, path + "." + $0.key) }
        case let a as [Any]: return a.flatMap { keys($0, path + "[]") }
        default: return []
        }
    }

    func check(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:], lines: Bool = false) throws -> [[String: Any]] {
        let r = try Carte.run(arguments, stdin: stdin, environment: environment)
        let texts = lines ? r.stdout.split(separator: "\n").map(String.init) : [r.stdout]
        var documents: [[String: Any]] = []
        for text in texts {
            guard let document = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                Issue.record("\(arguments): not a JSON object: \(text.prefix(200)) \(r.stderr)")
                continue
            }
            documents.append(document)
            guard let schema = document["schema"] as? String else { Issue.record("\(arguments): no schema"); continue }
            guard let documented = Self.sections[schema] else { Issue.record("\(arguments): \(schema) has no section in docs/json.md"); continue }
            // `fields` maps SESAM-Vitale field names (documented as a family) to values.
            let undocumented = Set(Self.keys(document).filter { !documented.contains($0.key) && !$0.path.contains(".fields.") }.map(\.path)).sorted()
            #expect(undocumented.isEmpty, "\(arguments): \(schema) writes keys docs/json.md does not name: \(undocumented)")
        }
        return documents
    }

    @Test func everyDocumentKeyIsDocumented() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("carte-json-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("doc.txt").path
        try "ordonnance".write(toFile: file, atomically: true, encoding: .utf8)
        _ = try check(["atr", "--json", "3B 75 13 00 00 45 09 EA 90 00"])
        _ = try check(["atr", "--json", "3B 8A 81 31 FE 45 80 31 C1 73 C8 40 00 82 90 00 18"])
        _ = try check(["apdu", "--json", "00A4000000", "00B0000004"])
        _ = try check(["readers", "--json"])
        _ = try check(["demo", "--json"])
        _ = try check(["image", "list", "--json"])
        _ = try check(["image", "check", "--json", Carte.repository.appendingPathComponent("CardImages/vitale/twins.yaml").path])
        for image in ["bundled:vitale/family-five.yaml", "bundled:vitale/vitale1.yaml", "bundled:vitale/amc-mutuelle.yaml"] {
            _ = try check(["read", "--json", "--image", image])
        }
        _ = try check(["read", "--json", "--profile", "contactless", "--image", "bundled:apcv/claire-exemple.yaml"])
        for image in ["bundled:cps/medecin-liberal.yaml", "bundled:cps/cps4-medecin.yaml", "bundled:cps/cps3-sans-contact.yaml"] {
            _ = try check(["cps", "info", "--json", "--image", image])
            _ = try check(["cps", "info", "--json", "--with-pin", "--image", image], stdin: "1234\n")
            _ = try check(["cps", "certs", "--json", "--pem", "--image", image])
            _ = try check(["cps", "pin", "status", "--json", "--image", image])
        }
        _ = try check(["cps", "pin", "verify", "--json"], stdin: "9999\n")
        _ = try check(["cps", "sign", file, "--json"], stdin: "1234\n")
        _ = try check(["sim", "apcv-qr", "--json"])
        _ = try check(["record", "--json", "-o", dir.appendingPathComponent("r.yaml").path])
        _ = try check(["image", "anonymise", "--json", dir.appendingPathComponent("r.yaml").path, "-o", dir.appendingPathComponent("a.yaml").path])
        _ = try check(["doctor", "--json"], environment: ["PCSCLITE_CSOCK_NAME": dir.appendingPathComponent("none").path])
        _ = try check(["watch", "--json", "--seconds", "0.3"], lines: true)
        _ = try check(["bench", "core", "--json", "--seconds", "0.05"])
        // Errors: carte.error/1, its offset null when there is none.
        let errors = try check(["atr", "--json", "3B"]) + check(["cps", "sign", "/nonexistent", "--json"])
        for e in errors {
            let detail = e["error"] as? [String: Any] ?? [:]
            #expect(Set(detail.keys) == ["kind", "message", "offset", "exitCode"], "\(e)")
        }
    }

    /// Absent values are `null`, never left out: the documents of a card with almost nothing on it
    /// carry every field of a full one.
    @Test func absentValuesAreNullNotLeftOut() throws {
        let empty = try Carte.run(["read", "--json", "--image", "bundled:demo/vitale2-demo.yaml"]).json
        let full = try Carte.run(["read", "--json", "--image", "bundled:vitale/amc-mutuelle.yaml"]).json
        let card = empty["card"] as? [String: Any] ?? [:]
        #expect(!card.isEmpty, "the demo card's card is {} (fields left out)")
        #expect(Set(card.keys) == Set((full["card"] as? [String: Any] ?? [:]).keys))
        #expect(card["amo"] is NSNull)
        let person = (empty["people"] as? [[String: Any]])?.first ?? [:]
        let fullPerson = (full["people"] as? [[String: Any]])?.first ?? [:]
        #expect(Set(person.keys) == Set(fullPerson.keys), "\(Set(fullPerson.keys).symmetricDifference(Set(person.keys)))")
        let cps = try Carte.run(["cps", "info", "--json"]).json
        #expect(cps["situations"] is NSNull, "situations before the PIN: null")
        let certs = try Carte.run(["cps", "certs", "--json"]).json
        #expect((certs["certificates"] as? [[String: Any]])?.allSatisfy { $0["pem"] is NSNull } == true)
        let error = try Carte.run(["cps", "sign", "/nonexistent", "--json"]).json["error"] as? [String: Any] ?? [:]
        #expect(error["offset"] is NSNull)
    }

    /// Every `kind` a `CLIError` is made with is in the `error.kind` row of docs/json.md.
    @Test func everyErrorKindIsListed() throws {
        let docs = try String(contentsOf: Carte.repository.appendingPathComponent("docs/json.md"), encoding: .utf8)
        let row = try #require(docs.components(separatedBy: "\n").first { $0.hasPrefix("| `error.kind`") })
        let listed = Set(Self.codeSpans(row))
        var used: Set<String> = []
        let sources = Carte.repository.appendingPathComponent("Sources/carte")
        for file in try FileManager.default.contentsOfDirectory(atPath: sources.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for part in text.components(separatedBy: "kind: \"").dropFirst() { used.insert(String(part.prefix { $0 != "\"" })) }
        }
        #expect(used.count > 15)
        #expect(used.subtracting(listed).isEmpty, "kinds used but not listed: \(used.subtracting(listed).sorted())")
        #expect(listed.subtracting(used).subtracting(["error.kind"]).isEmpty, "kinds listed but never used: \(listed.subtracting(used).sorted())")
    }

    /// Every schema the sources write has its section.
    @Test func everySchemaHasItsSection() throws {
        var schemas: Set<String> = []
        let sources = Carte.repository.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(atPath: sources.path)?.allObjects as? [String] ?? []
        for file in files where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for part in text.components(separatedBy: "\"carte.").dropFirst() {
                let name = part.prefix { $0 != "\"" }
                if name.contains("/") && name.split(separator: "/").last.map({ Int($0) != nil }) == true { schemas.insert("carte." + name) }
            }
        }
        #expect(schemas.count > 25)
        for schema in schemas.sorted() { #expect(Self.sections[schema] != nil, "\(schema) has no section in docs/json.md") }
    }
}
