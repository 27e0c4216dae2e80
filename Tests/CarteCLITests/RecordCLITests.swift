import Foundation
import Testing

@Suite("carte record, image anonymise and image import")
struct RecordCLITests {
    func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("carte-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)").path
    }

    /// `carte read --json` without the reader name.
    func identity(_ text: String) throws -> NSDictionary {
        var json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        json["reader"] = nil
        return json as NSDictionary
    }

    /// A copy of a replay image that answers from its learned file system.
    func filesystemCopy(_ path: String) throws -> String {
        let copy = path + ".fs.yaml"
        try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "  source: transcript", with: "  source: filesystem")
            .write(toFile: copy, atomically: true, encoding: .utf8)
        return copy
    }

    @Test func recordingTheSimulatorGivesAnImageThatReadsTheSame() throws {
        for image in ["bundled:vitale/family-five.yaml", "bundled:vitale/vitale1.yaml"] {
            let out = temporary("recorded.yaml")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let record = try Carte.run(["record", "--image", image, "-o", out, "--json"])
            #expect(record.status == 0, "\(record.stderr)")
            #expect(record.json["schema"] as? String == "carte.record/1" && (record.json["exchanges"] as? Int ?? 0) >= 2)
            let original = try Carte.run(["read", "--image", image, "--json", "--date", "2026-01-15"])
            for source in ["transcript", "filesystem"] {
                let replayed = try Carte.run(["read", "--image", source == "filesystem" ? try filesystemCopy(out) : out, "--json", "--date", "2026-01-15"])
                #expect(replayed.status == 0, "\(replayed.stderr)")
                #expect(try identity(replayed.stdout) == identity(original.stdout), "\(image) replayed")
            }
            let check = try Carte.run(["image", "check", out])
            #expect(check.status == 0 && check.stdout.contains("OK"), "\(check.stdout)\(check.stderr)")
        }
    }

    @Test func anonymiseReportsFieldsAndRefusesWhatItCannotAnonymise() throws {
        let out = temporary("anonymous.yaml")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try Carte.run(["image", "anonymise", "bundled:vitale/twins.yaml", "-o", out, "--seed", "9", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.anonymise/1" && r.json["card"] as? String == "vitale")
        let fields = (r.json["replacements"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }
        #expect(fields.contains("beneficiary 1 NIR") && fields.contains("beneficiary 2 birth date"), "\(fields)")
        let original = try Carte.run(["read", "--image", "bundled:vitale/twins.yaml", "--json"])
        let names = (original.json["people"] as? [[String: Any]] ?? []).compactMap { $0["surname"] as? String }
        #expect(!names.isEmpty)
        for name in names { #expect(!r.stdout.contains(name) && !((try? String(contentsOfFile: out, encoding: .utf8)) ?? name).contains(name)) }
        let text = try Carte.run(["image", "anonymise", "bundled:vitale/twins.yaml", "-o", out])
        #expect(text.status == 0 && text.stdout.contains("NIR →"), "\(text.stdout)")

        // A phone image: refused with a typed error and nothing written.
        let refused = temporary("refused.yaml")
        let phone = try Carte.run(["image", "anonymise", "bundled:apcv/claire-exemple.yaml", "-o", refused, "--json"])
        #expect(phone.status == 2)
        let phoneError = phone.json["error"] as? [String: Any]
        #expect(phone.json["schema"] as? String == "carte.error/1" && phoneError?["kind"] as? String == "anonymise", "\(phone.stdout)")
        #expect(!FileManager.default.fileExists(atPath: refused))
    }

    @Test func importRefusesWhatIsNotACapture() throws {
        let garbage = temporary("garbage.log")
        try "just some text\nnothing here\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: garbage) }
        let r = try Carte.run(["image", "import", garbage, "-o", temporary("x.yaml"), "--json"])
        let error = r.json["error"] as? [String: Any]
        #expect(r.status == 2 && error?["kind"] as? String == "import")
        #expect((error?["message"] as? String)?.contains("not a pcscd --apdu log") == true, "\(r.stdout)")
        let missing = try Carte.run(["image", "import", "/nonexistent/log", "-o", temporary("x.yaml")])
        #expect(missing.status == 2 && missing.stderr.contains("cannot read /nonexistent/log"))
        let badHex = temporary("bad.log")
        try "00000004 APDU: 00 A4 0G 00\n".write(toFile: badHex, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: badHex) }
        let bad = try Carte.run(["image", "import", badHex, "-o", temporary("x.yaml")])
        #expect(bad.status == 2 && bad.stderr.contains("line 1") && bad.stderr.contains("\"0G\""), "\(bad.stderr)")
        for sub in [["record"], ["image", "anonymise"], ["image", "import"]] {
            let h = try Carte.run(sub + ["--help"])
            #expect(h.status == 0 && h.stdout.contains("OVERVIEW") && h.stdout.contains("--json"), "\(sub)")
        }
    }
}
