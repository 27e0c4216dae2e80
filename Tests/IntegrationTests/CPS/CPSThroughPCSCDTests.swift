import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CartePCSC

import CarteVitale
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

extension SharedSandboxTests {
    /// A bi-fente reader with the demo Vitale 2 in slot 0 and a CPS3 in slot 1, both used through pcscd.
    @Test func aBiFenteReaderHoldsAVitaleAndACPSAtOnce() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:cps/medecin-liberal.yaml"])
        defer {
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 0])
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 1])
        }
        let cpsATR = try [UInt8](hex: "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
        try await waitUntil("the CPS in slot 1") { try await backend.state(of: biFente1) == .present(atr: cpsATR) }
        try await waitUntil("the Vitale in slot 0") { if case .present = try await backend.state(of: biFente0) { return true } else { return false } }

        // Both cards, each through its own connection, at the same time.
        let vitaleConnection = try await backend.connect(to: biFente0, share: .shared, protocols: [.t0, .t1])
        let cpsConnection = try await backend.connect(to: biFente1, share: .exclusive, protocols: [.t0, .t1])
        #expect(await cpsConnection.activeProtocol == .t0)
        let vitale = try await VitaleReader(channel: CardChannel(transport: vitaleConnection, trace: Trace())).read()
        let channel = CardChannel(transport: cpsConnection, trace: Trace())
        let cps = try CPSReader(channel: channel, atr: await cpsConnection.atrBytes)
        let before = try await cps.read()
        #expect(!vitale.beneficiaries.isEmpty)
        #expect(before.holder?.surname == "DOCTEST" && before.situationsNeedPIN)
        await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: 2)) { try await cps.verifyPIN(try PINCode("9999")) }
        #expect(try await cps.pinStatus().triesLeft == 2)
        try await cps.verifyPIN(try PINCode("1234"))
        let card = try await cps.read()
        #expect(card.situations?.first?.structureName == "CABINET DR DOCTEST")
        #expect(card.apduCount <= 25)
        let data = Array("e-prescription".utf8)
        let signature = try await cps.sign(data)
        try #require(card.certificates.first { $0.role == .signature }).verifySignature(signature, of: data)
        // Deciphering a 2048-bit cryptogram over T=0 takes command chaining through pcscd.
        let authentication = try #require(card.certificates.first { $0.role == .authentication })
        let cryptogram = try authentication.certificate.publicKey().encrypt(Array("session".utf8))
        #expect(try await cps.decipher(cryptogram) == Array("session".utf8))
        try await vitaleConnection.disconnect(.leave)
        try await cpsConnection.disconnect(.reset)

        // The CLI, through pcscd: a PIN from standard input, JSON out, nothing secret anywhere.
        let info = try s.run(PCSCSandbox.carteBinary.path, ["cps", "info", "--backend", "pcsc", "--json", "--with-pin", "-vv"], stdin: "1234\n")
        #expect(info.status == 0, "\(info.stderr)")
        let json = (try? JSONSerialization.jsonObject(with: Data(info.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(json["schema"] as? String == "carte.cps/1")
        #expect(json["reader"] as? String == biFente1)
        #expect((json["situations"] as? [[String: Any]])?.count == 1)
        #expect((json["certificates"] as? [[String: Any]])?.allSatisfy { $0["chain"] as? String == "valid" } == true)
        let wrong = try s.run(PCSCSandbox.carteBinary.path, ["cps", "pin", "verify", "--backend", "pcsc", "--json", "-vv"], stdin: "4321\n")
        #expect(wrong.status == 5)
        #expect(wrong.stdout.contains("\"result\" : \"wrong-pin\"") && wrong.stdout.contains("\"triesLeft\" : 2"), "\(wrong.stdout)")
        let signFile = s.directory.appendingPathComponent("to-sign.txt").path
        try "ordonnance".write(toFile: signFile, atomically: true, encoding: .utf8)
        let sign = try s.run(PCSCSandbox.carteBinary.path, ["cps", "sign", signFile, "--backend", "pcsc", "--json", "-vv"], stdin: "1234\n")
        #expect(sign.status == 0, "\(sign.stderr)")
        #expect(sign.stdout.contains("\"verified\" : true"))
        for output in [info, wrong, sign] {
            let everything = output.stdout + output.stderr
            #expect(!everything.contains("1234") && !everything.contains("4321"))
            #expect(!everything.contains("31 32 33 34") && !everything.contains("34 33 32 31"))
        }
        #expect(info.stderr.contains("<redacted 8 bytes>"), "the trace logs show the VERIFY, redacted")

        // OpenSC, an independent client, recognises the virtual CPS3 and lists its PKCS#15 objects.
        let name = try s.run("/usr/bin/opensc-tool", ["-r", "1", "-n"])
        #expect(name.stdout.contains("IAS-ECC"), "\(name.stdout)\(name.stderr)")
        let certs = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--list-certificates"])
        #expect(certs.status == 0, "\(certs.stderr)")
        #expect(certs.stdout.contains("Certificat d'Authentification CPS") && certs.stdout.contains("Certificat de Signature CPS"), "\(certs.stdout)")
        let pins = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--list-pins"])
        #expect(pins.stdout.contains("PIN porteur") && pins.stdout.contains("unblockingPin"), "\(pins.stdout)")
        let verify = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--verify-pin", "--auth-id", "01", "--pin", "1234"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let read = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--read-certificate", "02"])
        let pem = try X509Certificate(pem: read.stdout)
        #expect(pem.subjectValue("SN") == "DOCTEST")

        // Leave the reader as the other tests expect it: both slots empty, as pcscd sees them.
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        try s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitForBiFente(backend, filled: false)
    }
}
