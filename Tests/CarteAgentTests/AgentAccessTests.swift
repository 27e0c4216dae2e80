@testable import CarteAgent
import CarteCrypto
import Foundation
import Testing

@Suite("carte agent: who may call")
struct AgentAccessTests {
    let access = AgentAccess(port: 9743, allowedOrigins: ["https://app.example.fr", "http://127.0.0.1:8123"], token: String(repeating: "ab", count: 32))

    @Test(arguments: [
        ("https://App.Example.fr", "https://app.example.fr"),
        ("https://app.example.fr:443", "https://app.example.fr"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://localhost:3000", "http://localhost:3000"),
    ])
    func originsAreNormalised(_ text: String, _ expected: String) {
        #expect(AgentAccess.normalise(origin: text) == expected)
        #expect(AgentAccess.normalise(origin: expected) == expected, "a normalised origin normalises to itself")
    }

    @Test(arguments: ["null", "file://", "https://a.example/path", "https://user@a.example", "ftp://a.example", "https://", "https://a.example:0",
                      "https://a.example:70000", "https://a.example:x", "https://a b.example", "chrome-extension://abc", "https://[::1", "https://a.example?x",
                      // the fuzzer's first finding: a ':' inside the host, read as the port's the next time
                      "https://App.Exhttp:ample.fr:443", "http://a:b:80", "http://[g::1]", "http://[]", "http://[::1]x:80"])
    func thingsThatAreNotOriginsAreRefused(_ text: String) {
        #expect(AgentAccess.normalise(origin: text) == nil)
    }

    @Test func anAllowedPageOnTheAgentsOwnHostIsAdmitted() {
        for host in ["127.0.0.1:9743", "[::1]:9743", "localhost:9743", "LOCALHOST:9743"] {
            #expect(access.admit(hosts: [host], origins: ["https://app.example.fr"], authorization: []) == .success(.page(origin: "https://app.example.fr")))
        }
    }

    @Test func aRebindingNameOrAnotherPortIsRefused() {
        for hosts in [["evil.example:9743"], ["127.0.0.1:9744"], ["127.0.0.1"], [], ["127.0.0.1:9743", "127.0.0.1:9743"], ["127.0.0.2:9743"]] {
            #expect(access.admit(hosts: hosts, origins: ["https://app.example.fr"], authorization: []) == .failure(.hostNotAllowed(hosts.first)), "\(hosts)")
        }
    }

    @Test func anOriginOffTheListIsRefused() {
        #expect(access.admit(hosts: ["127.0.0.1:9743"], origins: ["https://evil.example"], authorization: []) == .failure(.originNotAllowed("https://evil.example")))
        // The same host on another port is another origin.
        #expect(access.admit(hosts: ["127.0.0.1:9743"], origins: ["http://127.0.0.1:8124"], authorization: []) == .failure(.originNotAllowed("http://127.0.0.1:8124")))
        #expect(access.admit(hosts: ["127.0.0.1:9743"], origins: ["null"], authorization: []) == .failure(.malformedOrigin("null")))
        // Two Origin headers: refused, whatever they say.
        let two = access.admit(hosts: ["127.0.0.1:9743"], origins: ["https://app.example.fr", "https://app.example.fr"], authorization: [])
        #expect(two == .failure(.malformedOrigin("https://app.example.fr, https://app.example.fr")))
    }

    @Test func aLocalProgramNeedsTheToken() {
        let host = ["127.0.0.1:9743"]
        #expect(access.admit(hosts: host, origins: [], authorization: []) == .failure(.tokenRequired))
        #expect(access.admit(hosts: host, origins: [], authorization: ["Bearer " + String(repeating: "ab", count: 31) + "ac"]) == .failure(.tokenRequired))
        #expect(access.admit(hosts: host, origins: [], authorization: ["Basic " + String(repeating: "ab", count: 32)]) == .failure(.tokenRequired))
        #expect(access.admit(hosts: host, origins: [], authorization: ["Bearer "]) == .failure(.tokenRequired))
        #expect(access.admit(hosts: host, origins: [], authorization: ["Bearer " + String(repeating: "ab", count: 32)]) == .success(.localProgram))
        // A page cannot pass as a local program by adding the token: its Origin decides.
        #expect(access.admit(hosts: host, origins: ["https://evil.example"], authorization: ["Bearer " + String(repeating: "ab", count: 32)]) == .failure(.originNotAllowed("https://evil.example")))
    }
}

@Suite("carte agent: allow-lists and token files")
struct AgentFilesTests {
    func temporaryFiles() throws -> (AgentFiles, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-agent-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return (AgentFiles(systemOrigins: dir.appendingPathComponent("system-origins").path, userDirectory: dir.appendingPathComponent("user").path), dir)
    }

    @Test func allowDenyAndListKeepOneNormalisedEntryEach() throws {
        let (files, dir) = try temporaryFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try files.allowedOrigins().isEmpty)
        #expect(try files.allow("HTTPS://App.Example.fr:443") == "https://app.example.fr")
        try files.allow("https://app.example.fr")
        try files.allow("http://127.0.0.1:8123")
        #expect(try files.allowedOrigins().map(\.origin) == ["https://app.example.fr", "http://127.0.0.1:8123"])
        #expect(try files.deny("https://app.example.fr") == true)
        #expect(try files.deny("https://app.example.fr") == false)
        #expect(try files.allowedOrigins().map(\.origin) == ["http://127.0.0.1:8123"])
        var info = stat()
        #expect(stat(files.userOrigins, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(files.userDirectory, &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(throws: AgentFiles.Problem.self) { try files.allow("https://a.example/path") }
    }

    @Test func theAdministratorsListComesFirstAndTheUserCannotRemoveFromIt() throws {
        let (files, dir) = try temporaryFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        try "# sites of the practice\nhttps://facturation.example.fr   # billing\n\n".write(toFile: files.systemOrigins, atomically: true, encoding: .utf8)
        try files.allow("http://127.0.0.1:8123")
        #expect(try files.allowedOrigins().map(\.file) == [files.systemOrigins, files.userOrigins])
        do {
            _ = try files.deny("https://facturation.example.fr")
            Issue.record("the user removed the administrator's origin")
        } catch {
            #expect(error.description.contains("administrator"))
        }
    }

    @Test func aBadLineIsReportedWithItsFileAndLine() throws {
        let (files, dir) = try temporaryFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        try "https://ok.example\nnot an origin\n".write(toFile: files.systemOrigins, atomically: true, encoding: .utf8)
        do {
            _ = try files.allowedOrigins()
            Issue.record("a bad line was accepted")
        } catch {
            #expect(error.file == files.systemOrigins && error.line == 2)
            #expect(error.description.hasPrefix("\(files.systemOrigins):2: "))
        }
    }

    @Test func theTokenIsMadeOnceReadableByItsOwnerOnly() throws {
        let (files, dir) = try temporaryFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        let token = try files.token()
        #expect(token.count == 64 && token.allSatisfy(\.isHexDigit))
        #expect(try files.token() == token)
        var info = stat()
        #expect(stat(files.tokenFile, &info) == 0 && info.st_mode & 0o777 == 0o600)
        // Readable by others: refused, with the remedy, and the token is not printed.
        chmod(files.tokenFile, 0o644)
        do {
            _ = try files.token()
            Issue.record("a token readable by others was used")
        } catch {
            #expect(error.description.contains("chmod 600") && !error.description.contains(token))
        }
        chmod(files.tokenFile, 0o600)
        try "garbage\n".write(toFile: files.tokenFile, atomically: false, encoding: .utf8)
        #expect(throws: AgentFiles.Problem.self) { try files.token() }
    }
}

@Suite("carte agent: JSON-RPC requests")
struct AgentRequestTests {
    func failure(_ text: String) -> AgentError? {
        do { _ = try AgentRequest.parse(text); return nil } catch { return error.error }
    }

    @Test func wellFormedRequestsParse() throws {
        let r = try AgentRequest.parse(#"{"jsonrpc":"2.0","id":7,"method":"vitale.read","params":{"reader":"X"}}"#)
        let reader = try r.string("reader")
        #expect(r.method == "vitale.read" && (r.id as? Int) == 7 && reader == "X")
        let n = try AgentRequest.parse(#"{"jsonrpc":"2.0","method":"hello"}"#)
        #expect(n.id == nil)
        let s = try AgentRequest.parse(#"{"jsonrpc":"2.0","id":"a-1","method":"hello"}"#)
        #expect(s.id as? String == "a-1")
    }

    @Test(arguments: [
        ("not json", -32700), ("[]", -32600), (#"[{"jsonrpc":"2.0","id":1,"method":"hello"}]"#, -32600), ("42", -32600),
        (#"{"jsonrpc":"1.0","id":1,"method":"hello"}"#, -32600), (#"{"jsonrpc":"2.0","id":1}"#, -32600),
        (#"{"jsonrpc":"2.0","id":true,"method":"hello"}"#, -32600), (#"{"jsonrpc":"2.0","id":{},"method":"hello"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":""}"#, -32600), (#"{"jsonrpc":"2.0","id":1,"method":"hello","params":[1]}"#, -32602),
    ])
    func malformedRequestsGetTheirJSONRPCCode(_ text: String, _ code: Int) {
        #expect(failure(text)?.code == code, "\(text)")
    }

    @Test func parametersAreTypedAndUnknownOnesRefused() throws {
        let r = try AgentRequest.parse(#"{"jsonrpc":"2.0","id":1,"method":"cpx.sign","params":{"reader":5,"pni":"1234"}}"#)
        #expect(throws: AgentError.self) { try r.string("reader") }
        do {
            try r.only(["reader", "pin", "data"])
            Issue.record("a misspelt parameter was ignored")
        } catch {
            #expect(error.code == -32602 && error.message.contains("pni") && !error.message.contains("1234"))
        }
    }

    @Test func answersAreJSONRPC() throws {
        let text = AgentMessage.error(id: 3, .pinRefused(triesLeft: 2))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let error = try #require(object["error"] as? [String: Any])
        #expect(object["jsonrpc"] as? String == "2.0" && object["id"] as? Int == 3)
        #expect(error["code"] as? Int == 1003 && (error["data"] as? [String: Any])?["triesLeft"] as? Int == 2)
        #expect((error["data"] as? [String: Any])?["kind"] as? String == "pin-refused")
    }
}

@Suite("carte agent: the local CA of wss://")
struct AgentTLSTests {
    @Test func theCAIsNameConstrainedToLoopbackAndItsKeyIsTheUsersAlone() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-agent-tls-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let tls = AgentTLS(files: AgentFiles(systemOrigins: "/nonexistent", userDirectory: dir.path))
        let now = currentUnixTime()
        let material = try tls.material(now: now)
        // The server certificate verifies under the CA and names the loopback addresses.
        let server = try X509Certificate(pem: material.chainPEM.components(separatedBy: "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
        try server.verifyChain(intermediates: [], roots: [material.ca], at: now)
        // The same material next time (not a new CA, which the browsers would no longer trust).
        #expect(try tls.material(now: now).ca == material.ca)
        var info = stat()
        for key in ["ca-key.pem", "server-key.pem"] {
            #expect(stat(tls.directory + "/" + key, &info) == 0 && info.st_mode & 0o777 == 0o600, "\(key)")
        }
        // Even with its key, the CA cannot vouch for another host: OpenSSL refuses the chain.
        let caKey = try RSAPrivateKey(pem: String(contentsOfFile: tls.directory + "/ca-key.pem", encoding: .utf8))
        for name in ["DNS:evil.example", "IP:192.168.1.10", "DNS:localhost.evil.example"] {
            var builder = CertificateBuilder(subject: [("CN", "evil")], serial: 7, notBefore: now - 60, notAfter: now + 86_400,
                                             keyUsage: [.digitalSignature], extendedKeyUsage: ["serverAuth"])
            builder.subjectAlternativeNames = [name]
            let evil = try builder.issue(publicKeyOf: try RSAPrivateKey.generate(bits: 2048), issuer: material.ca, issuerKey: caKey)
            #expect(throws: CryptoError.self, "\(name)") { try evil.verifyChain(intermediates: [], roots: [material.ca], at: now) }
        }
        // A key readable by others is refused, with the remedy.
        chmod(tls.directory + "/server-key.pem", 0o644)
        #expect(throws: AgentFiles.Problem.self) { try tls.material(now: now) }
    }
}
