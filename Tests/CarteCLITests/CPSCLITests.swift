import Foundation
import Testing

/// `carte cps` on the in-memory simulator (a bi-fente reader: the demo Vitale, then the CPS).
@Suite("carte cps")
struct CPSCLITests {
    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test func infoFindsTheCPSInTheSecondSlotAndKeepsSituationsBehindThePIN() throws {
        let r = try Carte.run(["cps", "info", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = Self.json(r.stdout)
        #expect(j["schema"] as? String == "carte.cps/1")
        #expect(j["reader"] as? String == "CarteKit Virtual Bi-fente 00 01")
        #expect(j["situationsNeedPIN"] as? Bool == true)
        #expect((j["holder"] as? [String: Any])?["nationalIdWithPrefix"] as? String == "899900000101")
        #expect((j["pin"] as? [String: Any])?["triesLeft"] as? Int == 3)
        #expect((j["apduCount"] as? Int ?? 99) <= 25)
        let withPIN = try Carte.run(["cps", "info", "--json", "--with-pin"], stdin: "1234\n")
        #expect(withPIN.status == 0, "\(withPIN.stderr)")
        let situations = Self.json(withPIN.stdout)["situations"] as? [[String: Any]]
        #expect((situations?.first?["fields"] as? [String: String])?["raison-sociale"] == "CABINET DR DOCTEST")
    }

    @Test func wrongPINsReportTriesLeftWithExitFiveAndNeverEchoThePIN() throws {
        let r = try Carte.run(["cps", "pin", "verify", "--json"], stdin: "8642\n")
        #expect(r.status == 5)
        let j = Self.json(r.stdout)
        #expect(j["schema"] as? String == "carte.cps-pin/1")
        #expect(j["result"] as? String == "wrong-pin" && j["triesLeft"] as? Int == 2)
        #expect(!(r.stdout + r.stderr).contains("8642"))
        let blocked = try Carte.run(["cps", "pin", "verify", "--image", "bundled:cps/pin-bloque.yaml"], stdin: "1234\n")
        #expect(blocked.status == 5)
        #expect(blocked.stderr.contains("blocked") && blocked.stderr.contains("PUK"))
        let unblock = try Carte.run(["cps", "pin", "unblock", "--image", "bundled:cps/pin-bloque.yaml", "--json"], stdin: "12345678\n2468\n")
        #expect(unblock.status == 0, "\(unblock.stdout)\(unblock.stderr)")
        #expect(Self.json(unblock.stdout)["triesLeft"] as? Int == 3)
        let malformed = try Carte.run(["cps", "pin", "verify"], stdin: "12ab\n")
        #expect(malformed.status == 2 && !malformed.stderr.contains("12ab"))
        let none = try Carte.run(["cps", "pin", "verify"], stdin: "")
        #expect(none.status == 2 && none.stderr.contains("standard input"))
    }

    @Test func aPINIsNeverTakenFromTheCommandLine() throws {
        let r = try Carte.run(["cps", "pin", "verify", "1234"])
        #expect(r.status == 64)
        let option = try Carte.run(["cps", "pin", "verify", "--pin", "1234"])
        #expect(option.status == 64)
    }

    @Test func certsAreCheckedAgainstTheTestRoot() throws {
        let r = try Carte.run(["cps", "certs", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = Self.json(r.stdout)
        #expect(j["schema"] as? String == "carte.cps-certs/1")
        let certs = j["certificates"] as? [[String: Any]] ?? []
        #expect(certs.map { $0["role"] as? String } == ["authentication", "signature"])
        #expect(certs.allSatisfy { $0["chain"] as? String == "valid" })
        #expect((j["trustedRoots"] as? [String])?.first?.contains("NOT ANS") == true)
        let expired = try Carte.run(["cps", "certs", "--json", "--image", "bundled:cps/expiree.yaml"])
        #expect((Self.json(expired.stdout)["certificates"] as? [[String: Any]])?.allSatisfy { $0["chain"] as? String == "certificate has expired" } == true)
    }

    @Test func signWritesAVerifiedSignature() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cps-sign-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("doc.txt").path
        try "feuille de soins".write(toFile: file, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("doc.sig").path
        let r = try Carte.run(["cps", "sign", file, "-o", out, "--json"], stdin: "1234\n")
        #expect(r.status == 0, "\(r.stderr)")
        let j = Self.json(r.stdout)
        #expect(j["schema"] as? String == "carte.cps-sign/1" && j["verified"] as? Bool == true)
        #expect(FileManager.default.contents(atPath: out)?.count == 256)
        let wrong = try Carte.run(["cps", "sign", file], stdin: "0000\n")
        #expect(wrong.status == 5)
        let contactless = try Carte.run(["cps", "sign", file, "--profile", "contactless", "--image", "bundled:cps/cps3-sans-contact.yaml"], stdin: "1234\n")
        #expect(contactless.status == 3 && contactless.stderr.contains("contactless"))
    }

    @Test func noCPxCardIsSaidPlainly() throws {
        let r = try Carte.run(["cps", "info", "--image", "bundled:demo/vitale2-demo.yaml"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("no CPx card") && r.stderr.contains("Vitale"))
    }

    @Test func buildingACPSPersonaUsesTheTestPKI() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cps-build-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("card.yaml").path
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let r = try Carte.run(["image", "build", "bundled:cps/personas/cpa.persona.yaml", "--pki", dir.appendingPathComponent("pki").path, "-o", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("generated a new TEST PKI"))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("pki/test-root-ca.pem").path))
        let info = try Carte.run(["cps", "info", "--json", "--image", out])
        #expect(Self.json(info.stdout)["card"].flatMap { ($0 as? [String: Any])?["type"] as? String } == "CPA")
        // Its certificates do not chain to the bundled root.
        let certs = try Carte.run(["cps", "certs", "--json", "--image", out])
        #expect((Self.json(certs.stdout)["certificates"] as? [[String: Any]])?.allSatisfy { $0["chain"] as? String != "valid" } == true)
        let direct = try Carte.run(["image", "check", "bundled:cps/personas/cpa.persona.yaml"])
        #expect(direct.status == 2 && direct.stderr.contains("carte image build"))
    }
}
