import CarteApCV
import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import CarteKit
import CarteVitale
import Foundation
import Logging
@testable import CarteRights
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The bundled TEST PKI (root and CPx CA), which issued the bundled cards' certificates.
func bundledPKI() throws -> TestPKI {
    let f = BundledImages.testPKI
    return try TestPKI.load(rootPEM: f.root, rootKeyPEM: f.rootKey, intermediatePEM: f.intermediate, intermediateKeyPEM: f.intermediateKey)
}

func image(_ path: String) throws -> CardImage {
    try CardImageLoader.load(text: try #require(BundledImages.image(at: path)).text, source: path)
}

/// A client certificate for `key` issued by `pki`'s intermediate, valid from `from` to `to`.
func clientCertificate(_ key: RSAPrivateKey, _ pki: TestPKI, from: Int64 = currentUnixTime() - 3600, to: Int64 = currentUnixTime() + 86_400) throws -> X509Certificate {
    try CertificateBuilder(subject: [("C", "FR"), ("O", "CarteKit TEST - synthetic"), ("serialNumber", "899900000999"), ("CN", "SOFT KEYTEST")],
                           serial: 99, notBefore: from, notAfter: to, keyUsage: [.digitalSignature], extendedKeyUsage: ["clientAuth"])
        .issue(publicKeyOf: key, issuer: pki.intermediate, issuerKey: pki.intermediateKey)
}

/// A running service knowing the single-insured persona, trusting the bundled TEST PKI.
struct RightsBench {
    let server: RightsServer
    let pki: TestPKI
    let nir: String

    /// `timeout`: long by default, since a parallel test run can keep the concurrency pool (where the
    /// client key signs) busy for seconds.
    init(timeout: Double = 30) async throws {
        pki = try bundledPKI()
        let card = try await ApCVSimulation.readInMemory(try image("vitale/single-insured.yaml"))
        nir = try #require(card.beneficiaries.first?.nir?.description)
        server = try RightsServer(service: RightsService(cards: [card]), endpoint: try rightsEndpoint("127.0.0.1:0"), issuer: pki.root, issuerKey: pki.rootKey,
                                  clientRoots: [pki.root], clientIntermediates: [pki.intermediate], connectionTimeout: timeout,
                                  logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func fetch(_ nir: String? = nil, key: (any TLSClientKey)?, roots: [X509Certificate]? = nil) async throws(RightsError) -> RightsReply {
        // A long client timeout too: the card's signature waits for the concurrency pool, which the
        // parallel suite keeps busy.
        try await RightsClient.fetch(nir: nir ?? self.nir, date: "2026-06-15", endpoint: server.endpoint, roots: roots ?? [pki.root], key: key, timeout: 60)
    }

    /// Waits (2 s at most) until the server has counted `n` outcomes of `kind`.
    func waitFor(_ kind: RightsServer.Outcome, _ n: Int = 1) async throws {
        for _ in 0..<200 where (server.outcomes[kind] ?? 0) < n { try await Task.sleep(for: .milliseconds(10)) }
        #expect(server.outcomes[kind] == n, "\(server.outcomes)")
    }
}

@Suite("Rights service over mutual TLS")
struct RightsTests {
    @Test func aTrustedSoftwareKeyGetsThePersonsRights() async throws {
        let bench = try await RightsBench()
        defer { bench.server.stop() }
        let key = try RSAPrivateKey.generate(bits: 2048)
        let reply = try await bench.fetch(key: SoftwareTLSClientKey(certificate: try clientCertificate(key, bench.pki), key: key))
        #expect(reply.signatures == 1)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(reply.json)) as? [String: Any])
        #expect(answer["schema"] as? String == "carte.rights/1" && answer["synthetic"] as? Bool == true && answer["date"] as? String == "2026-06-15")
        #expect((answer["professional"] as? [String: Any])?["name"] as? String == "SOFT KEYTEST")
        let people = (answer["vitale"] as? [String: Any])?["people"] as? [[String: Any]] ?? []
        #expect(people.count == 1 && people[0]["nir"] as? String == bench.nir && people[0]["rights"] as? String == "open")
        try await bench.waitFor(.answered)
        // An unknown NIR and a malformed one: the service's error documents, as typed errors.
        await #expect(throws: RightsError.unknownNIR("299019900000077")) { try await bench.fetch("299019900000077", key: SoftwareTLSClientKey(certificate: try clientCertificate(key, bench.pki), key: key)) }
        await #expect(throws: RightsError.self) { try await bench.fetch("12345", key: nil) }
        // A date is checked before it goes into the request line.
        await #expect(throws: RightsError.invalidDate("2026-06-15\r\nX: y")) {
            try await RightsClient.fetch(nir: bench.nir, date: "2026-06-15\r\nX: y", endpoint: bench.server.endpoint, roots: [bench.pki.root], key: nil)
        }
    }

    @Test func clientsWithoutATrustedValidCertificateAreRefusedDuringTheHandshake() async throws {
        let bench = try await RightsBench()
        defer { bench.server.stop() }
        let key = try RSAPrivateKey.generate(bits: 2048)
        // No certificate.
        do throws(RightsError) { _ = try await bench.fetch(key: nil); Issue.record("answered without a client certificate") } catch {
            guard case .refusedByService(let alert) = error else { Issue.record("\(error)"); return }
            #expect(alert.contains("handshake failure"), "\(alert)")
        }
        try await bench.waitFor(.noClientCertificate)
        // Another CA.
        let other = try TestPKI.generate()
        let foreign = SoftwareTLSClientKey(certificate: try clientCertificate(key, other), key: key)
        do throws(RightsError) { _ = try await bench.fetch(key: foreign); Issue.record("a foreign CA was accepted") } catch {
            #expect(error == .refusedByService(alert: "tlsv1 alert unknown ca"), "\(error)")
        }
        try await bench.waitFor(.untrustedClientCertificate)
        // Expired.
        let expired = try clientCertificate(key, bench.pki, from: 1_600_000_000, to: 1_700_000_000)
        do throws(RightsError) { _ = try await bench.fetch(key: SoftwareTLSClientKey(certificate: expired, key: key)); Issue.record("an expired certificate was accepted") } catch {
            #expect(error == .refusedByService(alert: "sslv3 alert certificate expired"), "\(error)")
        }
        try await bench.waitFor(.expiredClientCertificate)
        // A client that does not trust the service's certificate stops on its own side.
        do throws(RightsError) { _ = try await bench.fetch(key: nil, roots: [other.root]); Issue.record("an untrusted service was accepted") } catch {
            guard case .untrustedService(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("self-signed certificate in certificate chain") || why.contains("unable to get local issuer certificate"), "\(why)")
        }
        #expect(bench.server.outcomes[.answered] == nil)
    }

    @Test func theVirtualCardSignsTheHandshakeOnceItsPINIsVerified() async throws {
        let bench = try await RightsBench()
        defer { bench.server.stop() }
        let backend = SimulatorBackend(profiles: [.monoFente])
        try backend.insert(try image("cps/medecin-liberal.yaml"), into: backend.readerNames[0])
        let connection = try backend.connectNow(to: backend.readerNames[0])
        let trace = Trace()
        let cps = try CPSReader(channel: CardChannel(transport: connection, trace: trace), atr: connection.atrBytes)
        let certificate = try #require(try await cps.certificates().first { $0.role == .authentication }).certificate
        struct Card: TLSClientKey {
            let cps: CPSReader
            let certificate: X509Certificate
            func sign(digestInfo: [UInt8]) async throws -> [UInt8] { try await cps.authenticate(challenge: digestInfo) }
        }
        // Before the PIN: the card refuses INTERNAL AUTHENTICATE and the client says so (no retry).
        do throws(RightsError) { _ = try await bench.fetch(key: Card(cps: cps, certificate: certificate)); Issue.record("signed without the PIN") } catch {
            guard case .cardSignature(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("PIN"), "\(why)")
        }
        try await cps.verifyPIN(try PINCode("1234"))
        let start = trace.nextSequence
        let reply = try await bench.fetch(key: Card(cps: cps, certificate: certificate))
        #expect(reply.signatures == 1)
        // One MSE SET AT and one INTERNAL AUTHENTICATE (+ the application select and GET RESPONSE under T=0).
        let commands = trace.events(from: start).filter { $0.direction == .toCard }.map(\.bytes)
        #expect(commands.filter { $0.count > 1 && $0[1] == 0x88 }.count == 1 && commands.filter { $0.count > 1 && $0[1] == 0x22 }.count == 1, "\(commands)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(reply.json)) as? [String: Any])
        #expect((answer["professional"] as? [String: Any])?["name"] as? String == "CLAIRE DOCTEST")
    }

    @Test func aStalledClientIsCutAndTheServiceGoesOn() async throws {
        let bench = try await RightsBench(timeout: 0.3)
        defer { bench.server.stop() }
        // Connect and say nothing.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = bench.server.endpoint.port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(connected == 0)
        try await bench.waitFor(.handshakeFailed)
        close(fd)
        // A client that trickles a byte every 50 ms: each read is quick, the whole-connection deadline cuts it.
        let trickler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(trickler, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var byte: UInt8 = 0x16
        for _ in 0..<30 {
            _ = send(trickler, &byte, 1, Int32(MSG_NOSIGNAL))
            try await Task.sleep(for: .milliseconds(50))
        }
        // Cut while it was still trickling (1.5 s of it against a 0.3 s deadline), not after it went quiet.
        #expect(bench.server.outcomes[.handshakeFailed] == 2, "\(bench.server.outcomes)")
        close(trickler)
        // The service goes on: the next client gets its answer (here the refusal of a client without a
        // certificate, which needs no signature: nothing waits on the concurrency pool within 0.3 s).
        await #expect(throws: RightsError.self) { try await bench.fetch(key: nil) }
        try await bench.waitFor(.noClientCertificate)
        // A service that is gone: a typed error, not a hang.
        bench.server.stop()
        await #expect(throws: RightsError.self) { try await bench.fetch(key: nil) }
    }

    @Test func requestHeadsAreParsedStrictly() throws {
        func parse(_ text: String) throws(RightsRequest.Refusal) -> RightsRequest { try RightsRequest.parse(head: Array(text.utf8)) }
        let ok = try parse("GET /rights/v1/2%2085%2003?date=2026-06-15 HTTP/1.1\r\nHost: x\r\nContent-Length: 0")
        #expect(ok.nir == "28503" && ok.date?.iso == "2026-06-15")
        #expect(try parse("GET /rights/v1/123 HTTP/1.0").date == nil)
        for (head, status) in [("POST /rights/v1/1 HTTP/1.1", 405), ("GET /rights/v1/1", 400), ("GET /other HTTP/1.1", 404),
                               ("GET /rights/v1/1?when=now HTTP/1.1", 400), ("GET /rights/v1/1?date=2026-13-45 HTTP/1.1", 400),
                               ("GET /rights/v1/1 HTTP/1.1\r\nContent-Length: 5", 400), ("GET /rights/v1/1 HTTP/1.1\r\nTransfer-Encoding: chunked", 400),
                               ("GET /rights/v1/1 HTTP/1.1\r\nBad Header: x", 400), ("GET /rights/v1/1 HTTP/1.1\r\n: empty", 400)] {
            #expect(throws: RightsRequest.Refusal.self, "\(head)") { try parse(head) }
            do { _ = try parse(head) } catch { #expect(error.status == status, "\(head)") }
        }
        #expect(throws: RightsRequest.Refusal.self) { try RightsRequest.parse(head: [0x47, 0xFF, 0xFE]) }
        // Decoded once: what the fuzzer found (Fuzz/Regressions/rights-http) leaves no space, and a bad escape is refused.
        #expect(!(try parse("GET /rights/v1/272%25%2020 HTTP/1.0").nir.contains(" ")))
        #expect(throws: RightsRequest.Refusal.self) { try parse("GET /rights/v1/272%%202005%2069 HTTP/1.0") }
        #expect(throws: RightsError.self) { try rightsEndpoint("192.168.1.1:443") }
        #expect(try rightsEndpoint("https://127.0.0.1:8443/").port == 8443)
    }
}
