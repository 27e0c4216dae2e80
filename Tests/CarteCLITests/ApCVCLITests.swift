import Foundation
import Testing

@Suite("carte and the appli carte Vitale (synthetic protocol)", .serialized)
struct ApCVCLITests {
    func identity(_ run: CarteRun) -> NSDictionary {
        let json = run.json
        let card = json["card"] as? [String: Any] ?? [:]
        return ["people": json["people"] ?? [], "issues": json["issues"] ?? [], "amo": card["amo"] ?? NSNull(),
                "mutuelle": card["mutuelle"] ?? NSNull(), "workAccident": card["workAccident"] ?? NSNull()]
    }

    @Test func cardPhoneAndQRGiveTheSameIdentity() throws {
        let card = try Carte.run(["read", "--json", "--image", "bundled:vitale/family-five.yaml"])
        let phone = try Carte.run(["read", "--json", "--profile", "contactless", "--image", "bundled:apcv/famille-cinq.yaml"])
        let payload = try Carte.run(["sim", "apcv-qr", "bundled:apcv/famille-cinq.yaml"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(payload.hasPrefix("APCV1:") && payload.count > 250)
        let qr = try Carte.run(["read", "--json", "--qr", payload])
        #expect(card.status == 0 && phone.status == 0 && qr.status == 0, "\(phone.stderr)\(qr.stderr)")
        #expect((identity(card)["people"] as? [Any])?.count == 7, "the persona's seven people")
        #expect(identity(phone) == identity(card))
        #expect(identity(qr) == identity(card))
        #expect(phone.json["generation"] as? String == "apcv" && qr.json["reader"] as? String == "qr")
        // The text form says where the identity came from, and that the protocol is synthetic.
        let text = try Carte.run(["read", "--qr", "-"], stdin: try Carte.run(["sim", "apcv-qr", "bundled:apcv/famille-cinq.yaml"]).stdout)
        #expect(text.status == 0 && text.stdout.hasPrefix("Appli carte Vitale (CarteKit's SYNTHETIC protocol) via qr"), "\(text.stdout)\(text.stderr)")
    }

    @Test func badScansAndRefusedTokensHaveTheirExitCodes() throws {
        let garbled = try Carte.run(["read", "--json", "--qr", "APCV1:ABC1"])
        #expect(garbled.status == 2)
        let error = garbled.json["error"] as? [String: Any]
        #expect(error?["kind"] as? String == "apcv" && (error?["message"] as? String)?.contains("character 10 is not Base32") == true, "\(garbled.stdout)")
        #expect(try Carte.run(["read", "--qr", "https://example.org"]).status == 2)
        // A code made for another software: refused before any service is asked (exit 6).
        let foreign = try Carte.run(["sim", "apcv-qr", "--software-id", "AUTRE-LGO"]).stdout
        let refused = try Carte.run(["read", "--qr", foreign.trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(refused.status == 6 && refused.stderr.contains("is for software \"AUTRE-LGO\""), "\(refused.stderr)")
        // The same code read by that software works.
        let theirs = try Carte.run(["read", "--qr", foreign.trimmingCharacters(in: .whitespacesAndNewlines), "--software-id", "AUTRE-LGO"])
        #expect(theirs.status == 0, "\(theirs.stderr)")
        // A phone whose holder declines: exit 3.
        let declined = try Carte.run(["read", "--profile", "contactless", "--image", "bundled:apcv/refus.yaml"])
        #expect(declined.status == 3 && declined.stderr.contains("holder declined"), "\(declined.stderr)")
        // Only loopback services; a service that is not there.
        let remote = try Carte.run(["read", "--qr", "APCV1:AA", "--apcv-service", "192.0.2.1:80"])
        #expect(remote.status == 64 && remote.stderr.contains("not a loopback address"), "\(remote.stderr)")
        let listen = try Carte.run(["sim", "apcv-service", "--listen", "0.0.0.0:8080"])
        #expect(listen.status == 64 && listen.stderr.contains("not a loopback address"), "\(listen.stderr)")
        let nobody = try Carte.run(["read", "--qr", foreign, "--software-id", "AUTRE-LGO", "--apcv-service", "127.0.0.1:9"])
        #expect(nobody.status == 3 && nobody.stderr.contains("cannot be reached"), "\(nobody.stderr)")
        // Not a phone image.
        #expect(try Carte.run(["sim", "apcv-qr", "bundled:demo/vitale2-demo.yaml"]).status == 2)
    }

    @Test func phonePersonasBuildAndBadOnesAreNamed() throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cartekit-apcv-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Each bundled phone image is what its persona builds with the image's key and subject.
        for name in ["claire-exemple", "famille-cinq", "refus"] {
            let out = dir.appendingPathComponent("\(name).yaml").path
            let persona = Carte.repository.appendingPathComponent("CardImages/apcv/personas/\(name).persona.yaml").path
            let committed = Carte.repository.appendingPathComponent("CardImages/apcv/\(name).yaml").path
            let built = try Carte.run(["image", "build", persona, "--reuse-keys", committed, "-o", out])
            #expect(built.status == 0, "\(built.stderr)")
            let expected = try String(contentsOfFile: committed, encoding: .utf8).replacingOccurrences(of: "from CardImages/apcv/personas/", with: "from \(Carte.repository.path)/CardImages/apcv/personas/")
            #expect(try String(contentsOfFile: out, encoding: .utf8) == expected,
                    "rebuild with: carte image build CardImages/apcv/personas/\(name).persona.yaml --reuse-keys CardImages/apcv/\(name).yaml -o CardImages/apcv/\(name).yaml")
        }
        // A new build gets a new key and subject; it reads like the persona's Vitale.
        let fresh = dir.appendingPathComponent("fresh.yaml").path
        #expect(try Carte.run(["image", "build", "bundled:apcv/personas/claire-exemple.persona.yaml", "-o", fresh]).status == 0)
        let text = try String(contentsOfFile: fresh, encoding: .utf8)
        let bundledSubject = try String(contentsOfFile: Carte.repository.appendingPathComponent("CardImages/apcv/claire-exemple.yaml").path, encoding: .utf8)
            .components(separatedBy: "subject: ")[1].prefix(47)
        #expect(text.contains("BEGIN PRIVATE KEY") && !text.contains(bundledSubject))
        let read = try Carte.run(["read", "--json", "--profile", "contactless", "--image", fresh])
        #expect(read.status == 0 && (identity(read)["people"] as? [Any])?.count == 3, "\(read.stderr)")
        #expect(try Carte.run(["image", "check", fresh]).status == 0)
        // Errors name the line and the field.
        let bad = dir.appendingPathComponent("bad.persona.yaml").path
        try "format: carte-apcv-persona/1\nname: x\nsynthetic: true\nidentity: bundled:demo/vitale2-demo.yaml\nkey-id: k\nconsent: maybe\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try Carte.run(["image", "build", bad, "-o", dir.appendingPathComponent("x.yaml").path])
        #expect(refused.status == 2 && refused.stderr.contains(":6") && refused.stderr.contains("consent"), "\(refused.stderr)")
        try "format: carte-apcv-persona/1\nname: x\nsynthetic: false\nidentity: bundled:demo/vitale2-demo.yaml\nkey-id: k\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(try Carte.run(["image", "build", bad, "-o", dir.appendingPathComponent("x.yaml").path]).stderr.contains("synthetic"))
        try "format: carte-apcv-persona/1\nname: x\nsynthetic: true\nidentity: bundled:nope.yaml\nkey-id: k\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(try Carte.run(["image", "build", bad, "-o", dir.appendingPathComponent("x.yaml").path]).stderr.contains("no bundled image \"nope.yaml\""))
        // A phone image whose key is not P-256 is refused with its field.
        let wrongKey = dir.appendingPathComponent("wrong-key.yaml").path
        try text.replacingOccurrences(of: "BEGIN PRIVATE KEY", with: "BEGIN RSA PRIVATE KEY").write(toFile: wrongKey, atomically: true, encoding: .utf8)
        let check = try Carte.run(["image", "check", wrongKey])
        #expect(check.status == 2 && check.stderr.contains("apcv.private-key"), "\(check.stderr)")
        #expect(!check.stderr.contains("MIG"), "the key is never quoted")
    }

    @Test func theServiceAnswersOverLoopbackAndRefusesReplays() throws {
        let serve = Process()
        serve.executableURL = Carte.binary
        serve.arguments = ["sim", "apcv-service", "--listen", "127.0.0.1:0", "--exit-with-parent"]
        let out = Pipe()
        serve.standardOutput = out
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { if serve.isRunning { serve.terminate(); serve.waitUntilExit() } }
        var line = Data()
        while !line.contains(0x0A), line.count < 200 {
            let b = out.fileHandleForReading.readData(ofLength: 1)
            if b.isEmpty { break }
            line += b
        }
        let address = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "listening on http://", with: "")
        #expect(address.hasPrefix("127.0.0.1:"), "\(address)")
        let payload = try Carte.run(["sim", "apcv-qr"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let first = try Carte.run(["read", "--json", "--qr", payload, "--apcv-service", address])
        #expect(first.status == 0 && first.json["generation"] as? String == "apcv", "\(first.stderr)")
        let second = try Carte.run(["read", "--json", "--qr", payload, "--apcv-service", address])
        #expect(second.status == 6 && ((second.json["error"] as? [String: Any])?["message"] as? String)?.contains("already used") == true, "\(second.stdout)")
        serve.terminate()
        serve.waitUntilExit()
        #expect(serve.terminationStatus == 0)
    }

    @Test func benchAPCVReportsRatiosAndHelpIsComplete() throws {
        let r = try Carte.run(["bench", "apcv", "--reads", "10", "--json"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.bench-apcv/1")
        let rows = r.json["rows"] as? [[String: Any]] ?? []
        #expect(rows.count == (getuid() == 0 ? 5 : 3))
        #expect(rows.allSatisfy { ($0["ratio"] as? Double ?? 0) > 0 && ($0["referenceMilliseconds"] as? Double ?? 0) > 0 })
        let help = try Carte.run(["--help"]).stdout
        #expect(help.contains("6   an appli carte Vitale token was refused"))
        for sub in [["read"], ["sim", "apcv-service"], ["sim", "apcv-qr"], ["bench", "apcv"]] {
            let h = try Carte.run(sub + ["--help"])
            #expect(h.status == 0 && h.stdout.contains("OVERVIEW") && h.stdout.contains("SYNTHETIC"), "\(sub) help")
        }
        #expect(try Carte.run(["read", "--help"]).stdout.contains("--qr"))
    }
}
