import CarteCore
import CarteCPS
import CarteCrypto
import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

/// OpenSC's PKCS#11 module (`opensc-pkcs11.so`, Debian's OpenSC 0.23 and its `iasecc` driver) working
/// with the virtual CPS3 through the private pcscd: what a browser, curl, Java or an editor's software
/// does with a professional's card.
extension SharedSandboxTests {
    static let openSCModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"

    /// `pkcs11-tool` on the bi-fente's second slot.
    func pkcs11(_ s: PCSCSandbox, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try s.run("/usr/bin/pkcs11-tool", ["--module", Self.openSCModule, "--slot-description", biFente1] + arguments)
    }

    /// Puts `image` in the bi-fente's second slot the way pcscd must see it: the slot emptied first
    /// (pcscd noticing the removal), then the card inserted and seen.
    func swapCPS(_ s: PCSCSandbox, _ backend: PCSCBackend, _ image: String) async throws {
        _ = try? s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitUntil("slot 1 empty") { try await backend.state(of: biFente1) == .empty }
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": image])
        try await waitUntil("the card in slot 1") { if case .present = try await backend.state(of: biFente1) { return true } else { return false } }
    }

    /// Leaves the second slot empty as pcscd sees it, for the suites that share the sandbox next.
    func leaveSlot1Empty(_ s: PCSCSandbox, _ backend: PCSCBackend) async throws {
        try s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitUntil("slot 1 empty") { try await backend.state(of: biFente1) == .empty }
    }

    /// Writes the SHA-256 DigestInfo of `message` (what CKM_RSA_PKCS signs) and returns its path.
    func digestInfoFile(_ s: PCSCSandbox, _ message: String, name: String) throws -> String {
        let path = s.directory.appendingPathComponent(name).path
        let digestInfo = DigestAlgorithm.sha256.digestInfoPrefix + SHA256.digest(Array(message.utf8))
        try Data(digestInfo).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Signs the DigestInfo file with key `id` after logging in with `pin`; returns the tool's outcome
    /// and the signature file.
    func pkcs11Sign(_ s: PCSCSandbox, id: String, pin: String, input: String) throws -> (status: Int32, output: String, signature: String) {
        let signature = s.directory.appendingPathComponent("signature-\(id).bin").path
        try? FileManager.default.removeItem(atPath: signature)
        let r = try pkcs11(s, ["--login", "--pin", pin, "--sign", "-m", "RSA-PKCS", "--id", id, "-i", input, "-o", signature])
        return (r.status, r.stdout + r.stderr, signature)
    }

    /// OpenSSL's own command line checks a PKCS#1 v1.5 SHA-256 signature against a certificate's key.
    func opensslVerifies(_ s: PCSCSandbox, certificatePEM: String, message: String, signature: String) throws -> Bool {
        let dir = s.directory
        let cert = dir.appendingPathComponent("verify-cert.pem").path, key = dir.appendingPathComponent("verify-key.pem").path
        let data = dir.appendingPathComponent("verify-data.bin").path
        try certificatePEM.write(toFile: cert, atomically: true, encoding: .utf8)
        try Data(message.utf8).write(to: URL(fileURLWithPath: data))
        let extracted = try s.run("/usr/bin/openssl", ["x509", "-in", cert, "-pubkey", "-noout", "-out", key])
        guard extracted.status == 0 else { return false }
        let verified = try s.run("/usr/bin/openssl", ["dgst", "-sha256", "-verify", key, "-signature", signature, data])
        return verified.status == 0 && verified.stdout.contains("Verified OK")
    }

    @Test func openSCsPKCS11SignsLogsInChangesAndUnblocksOnTheVirtualCPS3() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        try await swapCPS(s, backend, "bundled:cps/medecin-liberal.yaml")
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }

        // The token, as every PKCS#11 application lists it.
        let slots = try pkcs11(s, ["--list-token-slots"])
        #expect(slots.status == 0, "\(slots.stderr)")
        #expect(slots.stdout.contains("CPS CLAIRE DOCT") && slots.stdout.contains("login required"), "\(slots.stdout)")
        let objects = try pkcs11(s, ["--login", "--pin", "1234", "--list-objects"])
        #expect(objects.stdout.contains("Cle d'authentification CPS") && objects.stdout.contains("Cle de signature CPS"), "\(objects.stdout)")

        // Both keys sign a DigestInfo (CKM_RSA_PKCS: MSE SET AT + INTERNAL AUTHENTICATE), and OpenSSL
        // verifies each signature with the certificate read from the card.
        let message = "ordonnance n° 42"
        let input = try digestInfoFile(s, message, name: "digest-info.bin")
        for id in ["01", "02"] {
            let signed = try pkcs11Sign(s, id: id, pin: "1234", input: input)
            #expect(signed.status == 0, "key \(id): \(signed.output)")
            let certificate = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--read-certificate", id])
            #expect(try opensslVerifies(s, certificatePEM: certificate.stdout, message: message, signature: signed.signature), "key \(id)")
        }
        // SHA256-RSA-PKCS (on-card hashing) is refused by OpenSC itself: Debian 12's OpenSC 0.23 is built
        // with OpenSSL 3, where its iasecc driver cannot compute the partial hash it sends (docs/pkcs11.md).
        // The card takes both MSE SET (hash template and DST) and OpenSC stops before PSO HASH.
        let messageFile = s.directory.appendingPathComponent("message.txt").path
        try message.write(toFile: messageFile, atomically: true, encoding: .utf8)
        let hashed = try pkcs11(s, ["--login", "--pin", "1234", "--sign", "-m", "SHA256-RSA-PKCS", "--id", "02", "-i", messageFile, "-o", messageFile + ".sig"])
        #expect(hashed.status != 0 && (hashed.stdout + hashed.stderr).contains("CKR_FUNCTION_NOT_SUPPORTED"), "\(hashed.stdout)\(hashed.stderr)")

        // PSO DECIPHER (MSE SET CT, then a 2048-bit cryptogram in two chained commands over T=0) with the
        // authentication key: OpenSSL enciphers for the card's certificate, PKCS#11 deciphers.
        let authCertificate = s.directory.appendingPathComponent("auth.pem").path
        try (try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--read-certificate", "01"])).stdout.write(toFile: authCertificate, atomically: true, encoding: .utf8)
        let authKey = s.directory.appendingPathComponent("auth-key.pem").path
        #expect(try s.run("/usr/bin/openssl", ["x509", "-in", authCertificate, "-pubkey", "-noout", "-out", authKey]).status == 0)
        let plain = s.directory.appendingPathComponent("plain.txt").path, cryptogram = plain + ".enc", deciphered = plain + ".dec"
        try "clé de session 42".write(toFile: plain, atomically: true, encoding: .utf8)
        #expect(try s.run("/usr/bin/openssl", ["pkeyutl", "-encrypt", "-pubin", "-inkey", authKey, "-in", plain, "-out", cryptogram]).status == 0)
        let decrypt = try pkcs11(s, ["--login", "--pin", "1234", "--decrypt", "-m", "RSA-PKCS", "--id", "01", "-i", cryptogram, "-o", deciphered])
        #expect(decrypt.status == 0, "\(decrypt.stderr)")
        #expect(try String(contentsOfFile: deciphered, encoding: .utf8) == "clé de session 42")
        // The signature key has no deciphering right: OpenSC does not even offer it.
        let refused = try pkcs11(s, ["--login", "--pin", "1234", "--decrypt", "-m", "RSA-PKCS", "--id", "02", "-i", cryptogram, "-o", deciphered + "2"])
        #expect(refused.status != 0, "\(refused.stdout)")

        // A wrong PIN: PKCS#11 says incorrect, and the token flags give the tries left the way PKCS#11
        // can (count low after one, final try after two), read from the card's counter each time.
        let wrong = try pkcs11(s, ["--login", "--pin", "9999", "--list-objects"])
        #expect(wrong.status != 0 && (wrong.stdout + wrong.stderr).contains("CKR_PIN_INCORRECT"), "\(wrong.stderr)")
        let low = try pkcs11(s, ["--list-token-slots"])
        #expect(low.stdout.contains("user PIN count low") && !low.stdout.contains("final user PIN try"), "\(low.stdout)")
        let wrongAgain = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--verify-pin", "--auth-id", "01", "--pin", "9999"])
        #expect(wrongAgain.status != 0 && (wrongAgain.stdout + wrongAgain.stderr).contains("PIN code or key incorrect"), "\(wrongAgain.stdout)\(wrongAgain.stderr)")
        let final = try pkcs11(s, ["--list-token-slots"])
        #expect(final.stdout.contains("final user PIN try"), "\(final.stdout)")

        // CHANGE REFERENCE DATA through pkcs15-tool: the old PIN no longer logs in, the new one does.
        let change = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--change-pin", "--auth-id", "01", "--pin", "1234", "--new-pin", "4321"])
        #expect(change.status == 0, "\(change.stdout)\(change.stderr)")
        #expect(try pkcs11Sign(s, id: "01", pin: "1234", input: input).output.contains("CKR_PIN_INCORRECT"))
        #expect(try pkcs11Sign(s, id: "01", pin: "4321", input: input).status == 0)

        // Blocked after three wrong PINs: PKCS#11 refuses to log in at all.
        for _ in 0..<3 { _ = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--verify-pin", "--auth-id", "01", "--pin", "0000"]) }
        let locked = try pkcs11Sign(s, id: "02", pin: "4321", input: input)
        #expect(locked.status != 0 && locked.output.contains("CKR_PIN_LOCKED"), "\(locked.output)")

        // RESET RETRY COUNTER with the PUK (verified first, then 2C 02 with the new PIN).
        let unblock = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--unblock-pin", "--auth-id", "01", "--puk", "12345678", "--new-pin", "2468"])
        #expect(unblock.status == 0, "\(unblock.stdout)\(unblock.stderr)")
        let afterUnblock = try pkcs11Sign(s, id: "02", pin: "2468", input: input)
        #expect(afterUnblock.status == 0, "\(afterUnblock.output)")
        let signatureCertificate = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--read-certificate", "02"])
        #expect(try opensslVerifies(s, certificatePEM: signatureCertificate.stdout, message: message, signature: afterUnblock.signature))

        // CarteCPS reads the same card afterwards and agrees: three tries, the new PIN, the same certificates.
        let connection = try await backend.connect(to: biFente1, share: .exclusive, protocols: [.t0, .t1])
        let cps = try CPSReader(channel: CardChannel(transport: connection, trace: Trace()), atr: await connection.atrBytes)
        #expect(try await cps.pinStatus().triesLeft == 3)
        try await cps.verifyPIN(try PINCode("2468"))
        let card = try await cps.read()
        #expect(card.situations?.first?.structureName == "CABINET DR DOCTEST")
        let fromOpenSC = try X509Certificate(pem: signatureCertificate.stdout)
        #expect(card.certificates.first { $0.role == .signature }?.certificate == fromOpenSC)
        let data = Array("after PKCS#11".utf8)
        try #require(card.certificates.first { $0.role == .signature }).verifySignature(try await cps.sign(data), of: data)
        try await connection.disconnect(.reset)
        try await leaveSlot1Empty(s, backend)
    }

    @Test func aBlockedCPSRefusesThePKCS11Login() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        try await swapCPS(s, backend, "bundled:cps/pin-bloque.yaml")
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }
        let token = try pkcs11(s, ["--list-token-slots"])
        #expect(token.stdout.contains("user PIN locked"), "\(token.stdout)")
        let input = try digestInfoFile(s, "refused", name: "refused.bin")
        let login = try pkcs11Sign(s, id: "01", pin: "1234", input: input)
        #expect(login.status != 0 && login.output.contains("CKR_PIN_LOCKED"), "\(login.output)")
        #expect(!FileManager.default.fileExists(atPath: login.signature))
        try await leaveSlot1Empty(s, backend)
    }
}

extension SharedSandboxTests {
    /// Debian's OpenSC 0.23 has no driver for a CPS4 (ChipDoc), and its CPS3-contactless ATR entry reads
    /// `2B 8F …` (a typo: the real ATR begins `3B`), so it recognises neither: the virtual cards must not
    /// pretend otherwise (docs/pkcs11.md). CarteCPS reads both.
    @Test func openSCTakesNeitherTheCPS4NorTheContactlessCPS3() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }
        for image in ["bundled:cps/cps4-medecin.yaml", "bundled:cps/cps3-sans-contact.yaml"] {
            try await swapCPS(s, backend, image)
            let name = try s.run("/usr/bin/opensc-tool", ["-r", "1", "-n"])
            #expect(name.stdout.contains("Unsupported card"), "\(image): \(name.stdout)\(name.stderr)")
            let token = try pkcs11(s, ["--list-token-slots"])
            #expect(!token.stdout.contains("token label"), "\(image): \(token.stdout)")
        }
        try await leaveSlot1Empty(s, backend)
    }
}

extension SharedSandboxTests {
    /// The CPE, CPF and CPA share the CPS3 platform (and ATR): OpenSC's PKCS#11 signs with each.
    @Test func theCPECPFAndCPASignThroughPKCS11Too() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }
        let input = try digestInfoFile(s, "attestation", name: "family.bin")
        for image in ["cpe-etablissement", "cpf-etudiant", "cpa"] {
            try await swapCPS(s, backend, "bundled:cps/\(image).yaml")
            let signed = try pkcs11Sign(s, id: "02", pin: "1234", input: input)
            #expect(signed.status == 0, "\(image): \(signed.output)")
            let certificate = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--read-certificate", "02"])
            #expect(try opensslVerifies(s, certificatePEM: certificate.stdout, message: "attestation", signature: signed.signature), "\(image)")
        }
        try await leaveSlot1Empty(s, backend)
    }
}
