import CarteBundledImages
import CarteImages
import CarteKit
import CarteVitale
import CarteCore
import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

/// The CDR scenario: an online service the professional reaches with mutual TLS, the client's
/// signature made by the CPx card. curl signs through OpenSC's PKCS#11 module (Debian's
/// libengine-pkcs11-openssl engine), `carte rights` through CarteCPS; the card is the virtual CPS3
/// behind the private pcscd, the service `carte sim rights-service`.
extension SharedSandboxTests {
    /// Starts `carte sim rights-service` and returns the job and its port.
    func startRightsService() throws -> (job: ScriptedJob, port: String) {
        let job = try ScriptedJob(PCSCSandbox.carteBinary.path, ["sim", "rights-service", "--listen", "127.0.0.1:0", "--exit-with-parent",
                                                                 "--image", "bundled:vitale/single-insured.yaml", "--image", "bundled:vitale/family-five.yaml"])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let out = job.output("out")
            if let line = out.split(separator: "\n").first, line.hasPrefix("listening on https://127.0.0.1:") {
                return (job, String(line.split(separator: ":").last!))
            }
            if !job.output("rc").isEmpty { break }
            usleep(20_000)
        }
        job.end()
        throw PCSCSandbox.SandboxError("carte sim rights-service did not start: \(job.output("err"))")
    }

    /// The NIR of the first person of a bundled Vitale persona, read the way `carte read` reads it.
    func firstNIR(of persona: String) async throws -> String {
        let image = try CardImageLoader.load(text: try #require(BundledImages.image(at: persona)).text, source: persona)
        let card = try await ApCVSimulation.readInMemory(image)
        return try #require(card.beneficiaries.first?.nir?.description)
    }

    /// curl with the engine reading OpenSC's PKCS#11 module (an OpenSSL configuration of the test's own).
    func curlWithCard(_ s: PCSCSandbox, port: String, path: String, pin: String?) throws -> (status: Int32, stdout: String, stderr: String) {
        let configuration = s.directory.appendingPathComponent("openssl-pkcs11.cnf").path
        try """
        openssl_conf = openssl_init
        [openssl_init]
        engines = engine_section
        [engine_section]
        pkcs11 = pkcs11_section
        [pkcs11_section]
        engine_id = pkcs11
        MODULE_PATH = \(Self.openSCModule)
        init = 0
        """.write(toFile: configuration, atomically: true, encoding: .utf8)
        let root = s.directory.appendingPathComponent("test-root-ca.pem").path
        try BundledImages.testPKI.root.write(toFile: root, atomically: true, encoding: .utf8)
        var arguments = ["-sS", "--max-time", "30", "--cacert", root]
        if let pin {
            arguments += ["--engine", "pkcs11", "--cert-type", "ENG", "--cert", "pkcs11:id=%01;type=cert",
                          "--key-type", "ENG", "--key", "pkcs11:id=%01;type=private;pin-value=\(pin)"]
        }
        return try s.run("/usr/bin/curl", arguments + ["https://127.0.0.1:\(port)\(path)"], timeout: 60, environment: ["OPENSSL_CONF": configuration])
    }

    @Test func mutualTLSWithTheCardThroughPKCS11AndThroughCarteRights() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        let (service, port) = try startRightsService()
        defer {
            _ = service.stop(SIGTERM, seconds: 5)
            service.end()
        }
        let nir = try await firstNIR(of: "vitale/single-insured.yaml")
        try await swapCPS(s, backend, "bundled:cps/medecin-liberal.yaml")
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }

        // curl: the client certificate and its signature come from the card through OpenSC's PKCS#11.
        let curl = try curlWithCard(s, port: port, path: "/rights/v1/\(nir)?date=2026-06-15", pin: "1234")
        #expect(curl.status == 0, "\(curl.stderr)")
        let answer = (try? JSONSerialization.jsonObject(with: Data(curl.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(answer["schema"] as? String == "carte.rights/1" && answer["nir"] as? String == nir, "\(curl.stdout)")
        #expect((answer["professional"] as? [String: Any])?["name"] as? String == "CLAIRE DOCTEST")
        let vitale = answer["vitale"] as? [String: Any] ?? [:]
        #expect(vitale["schema"] as? String == "carte.vitale/1")
        let people = vitale["people"] as? [[String: Any]] ?? []
        #expect(people.count == 1 && people.first?["nir"] as? String == nir && people.first?["rights"] as? String == "open", "\(people)")

        // The same person as `carte read --json` gives it from the persona (same model, same JSON).
        let read = try s.run(PCSCSandbox.carteBinary.path, ["read", "--image", "bundled:vitale/single-insured.yaml", "--date", "2026-06-15", "--json"])
        let readPeople = ((try? JSONSerialization.jsonObject(with: Data(read.stdout.utf8))) as? [String: Any])?["people"] as? [[String: Any]] ?? []
        let readPerson = try #require(readPeople.first { $0["nir"] as? String == nir })
        func canonical(_ object: [String: Any]) throws -> String {
            String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        }
        #expect(try canonical(readPerson) == canonical(try #require(people.first)))

        // Without a client certificate: the handshake fails and the service says why.
        let anonymous = try curlWithCard(s, port: port, path: "/rights/v1/\(nir)", pin: nil)
        #expect(anonymous.status != 0 && anonymous.stdout.isEmpty, "\(anonymous.stdout)")
        // An unknown NIR, asked with the card: 404 with an error document.
        let unknown = try curlWithCard(s, port: port, path: "/rights/v1/299019900000077", pin: "1234")
        #expect(unknown.stdout.contains("carte.rights-error/1") && unknown.stdout.contains("unknown-nir"), "\(unknown.stdout)\(unknown.stderr)")

        // carte rights: CarteCPS verifies the PIN, the card signs the handshake (INTERNAL AUTHENTICATE).
        let carte = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", nir, "--service", "127.0.0.1:\(port)",
                                                             "--date", "2026-06-15", "--json", "-vv"], stdin: "1234\n")
        #expect(carte.status == 0, "\(carte.stderr)")
        let carteAnswer = (try? JSONSerialization.jsonObject(with: Data(carte.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(carteAnswer["nir"] as? String == nir && (carteAnswer["professional"] as? [String: Any])?["identifier"] as? String == "899900000101")
        #expect(!(carte.stdout + carte.stderr).contains("1234") && !(carte.stdout + carte.stderr).contains("31 32 33 34"), "the PIN never shows")

        // #38 item 7: a NIR the service does not know: its own error document with --json, exit 8.
        let stranger = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", "299019900000055",
                                                                "--service", "127.0.0.1:\(port)", "--json"], stdin: "1234\n")
        let strangerAnswer = (try? JSONSerialization.jsonObject(with: Data(stranger.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(stranger.status == 8 && strangerAnswer["schema"] as? String == "carte.rights-error/1" && strangerAnswer["error"] as? String == "unknown-nir"
                && strangerAnswer["status"] as? Int == 404, "\(stranger.stdout)\(stranger.stderr)")

        // A wrong PIN stops before any connection (exit 5), and is sent once.
        let wrong = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", nir, "--service", "127.0.0.1:\(port)"], stdin: "9999\n")
        #expect(wrong.status == 5 && wrong.stderr.contains("tries left"), "\(wrong.stderr)")

        // A card whose certificate is from another CA (a fresh test PKI) is refused during the handshake.
        let other = s.directory.appendingPathComponent("other-pki").path
        let otherImage = s.directory.appendingPathComponent("other-ca-card.yaml").path
        let personaFile = s.directory.appendingPathComponent("other.persona.yaml").path
        try BundledImages.image(at: "cps/personas/medecin-liberal.persona.yaml")!.text.write(toFile: personaFile, atomically: true, encoding: .utf8)
        let built = try s.run(PCSCSandbox.carteBinary.path, ["image", "build", personaFile, "--pki", other, "-o", otherImage], timeout: 120)
        #expect(built.status == 0, "\(built.stderr)")
        try await swapCPS(s, backend, otherImage)
        let foreign = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", nir, "--service", "127.0.0.1:\(port)"], stdin: "1234\n")
        #expect(foreign.status == 8 && foreign.stderr.contains("unknown ca"), "\(foreign.stderr)")
        let foreignCurl = try curlWithCard(s, port: port, path: "/rights/v1/\(nir)", pin: "1234")
        #expect(foreignCurl.status != 0 && foreignCurl.stderr.contains("unknown ca"), "\(foreignCurl.stderr)")

        // An expired card: its certificate is refused (certificate expired), through both clients.
        try await swapCPS(s, backend, "bundled:cps/expiree.yaml")
        let expired = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", nir, "--service", "127.0.0.1:\(port)"], stdin: "1234\n")
        #expect(expired.status == 8 && expired.stderr.contains("certificate expired"), "\(expired.stderr)")
        let expiredCurl = try curlWithCard(s, port: port, path: "/rights/v1/\(nir)", pin: "1234")
        // curl reports the service's "certificate expired" alert as its own verification failure (exit 60).
        #expect(expiredCurl.status != 0 && expiredCurl.stdout.isEmpty, "\(expiredCurl.stderr)")

        // A blocked card never gets to the service (exit 5: the PIN).
        try await swapCPS(s, backend, "bundled:cps/pin-bloque.yaml")
        let blocked = try s.run(PCSCSandbox.carteBinary.path, ["rights", "--backend", "pcsc", "--reader", biFente1, "--nir", nir, "--service", "127.0.0.1:\(port)"], stdin: "1234\n")
        #expect(blocked.status == 5 && blocked.stderr.contains("blocked"), "\(blocked.stderr)")

        // The service's own account of each refusal, and nothing secret in it.
        let stopped = service.stop(SIGTERM, seconds: 5)
        #expect(stopped.status == 0)
        let log = service.output("err")
        #expect(log.contains("no-client-certificate") && log.contains("untrusted-client-certificate") && log.contains("expired-client-certificate"), "\(log)")
        #expect(log.contains("rights service stopped: answered 2, expired-client-certificate 2, no-client-certificate 1, refused-request 2, untrusted-client-certificate 2"), "\(log)")
        // (Not a bare "1234": an ephemeral port may hold those digits.)
        #expect(!log.contains("pin-value") && !log.contains("31 32 33 34") && !log.contains("=1234"))
        #expect(!log.contains(nir), "NIRs are logged at debug level only")
        try await leaveSlot1Empty(s, backend)
    }
}
