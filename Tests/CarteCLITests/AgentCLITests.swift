import Foundation
import Testing

/// `carte agent serve` on the in-memory simulator (a Vitale and a CPS on a bi-fente), driven by an
/// independent WebSocket client (Debian's python3-websocket), which can forge what a browser cannot:
/// a Host, an Origin, frames.
@Suite("carte agent over WebSocket", .serialized, .timeLimit(.minutes(3)))
struct AgentCLITests {
    /// A running agent; `stop()` ends it.
    final class Agent {
        let process = Process()
        let port: Int
        let config: URL
        let stderr: URL

        init(arguments: [String] = []) throws {
            config = FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-agent-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: config, withIntermediateDirectories: true)
            stderr = config.appendingPathComponent("agent.log")
            _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
            process.executableURL = Carte.binary
            process.arguments = ["agent", "serve", "--backend", "simulator", "--port", "0", "--tls-port", "0", "--allow", "http://127.0.0.1:8123",
                                 "--date", "2026-06-15", "--exit-with-parent"] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": config.path]) { $1 }
            let out = Pipe()
            process.standardOutput = out
            process.standardError = try FileHandle(forWritingTo: stderr)
            try process.run()
            // The first line is the address.
            var line = Data()
            while !line.contains(0x0A) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line += chunk
            }
            let text = String(decoding: line, as: UTF8.self)
            guard let colon = text.range(of: "127.0.0.1:"), let p = Int(text[colon.upperBound...].prefix { $0.isNumber }) else {
                process.terminate()
                throw AgentTestError(message: "no address from carte agent: \(text) \((try? String(contentsOf: stderr, encoding: .utf8)) ?? "")")
            }
            port = p
        }

        var token: String { ((try? String(contentsOf: config.appendingPathComponent("cartekit/agent-token"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
        var log: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }

        func stop() {
            process.terminate()
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: config)
        }
    }

    struct AgentTestError: Error { let message: String }

    /// Runs the Python client on `script` (after the shared prelude) and returns its JSON result.
    func client(_ agent: Agent, _ script: String) throws -> [String: Any] {
        let prelude = """
            import json, socket, sys, websocket
            PORT = \(agent.port)
            URL = "ws://127.0.0.1:%d/carte.agent/1" % PORT
            PAGE = "http://127.0.0.1:8123"
            TOKEN = "\(agent.token)"
            CARTE = "\(Carte.binary.path)"
            CONFIG = "\(agent.config.path)"
            import os, subprocess
            def carte(*args):
                env = dict(os.environ); env["XDG_CONFIG_HOME"] = CONFIG
                return subprocess.run([CARTE] + list(args), env=env, capture_output=True, text=True, timeout=30)
            def connect(origin=PAGE, host=None, header=None, url=URL):
                kw = {"timeout": 20}
                if origin is None: kw["suppress_origin"] = True
                else: kw["origin"] = origin
                if host: kw["host"] = host
                if header: kw["header"] = header
                return websocket.create_connection(url, **kw)
            def refused(**kw):
                try:
                    connect(**kw).close()
                    return None
                except websocket.WebSocketBadStatusException as e:
                    return e.status_code
            n = [0]
            def call(ws, method, params=None):
                n[0] += 1
                m = {"jsonrpc": "2.0", "id": n[0], "method": method}
                if params is not None: m["params"] = params
                ws.send(json.dumps(m))
                while True:
                    a = json.loads(ws.recv())
                    if a.get("id") == n[0]: return a
            def close_code(ws):
                try:
                    while True:
                        op, data = ws.recv_data(control_frame=True)
                        if op == websocket.ABNF.OPCODE_CLOSE: return int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
                except Exception:
                    return -1
            out = {}

            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", prelude + script + "\nprint(json.dumps(out))\n"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw AgentTestError(message: "python client failed (\(process.terminationStatus)): \(errors.suffix(2000)) \(String(decoding: data, as: UTF8.self).prefix(500))")
        }
        return object
    }

    @Test func anAllowedPageReadsTheVitaleAndTheCPSVerifiesThePINAndSigns() throws {
        let agent = try Agent()
        defer { agent.stop() }
        let r = try client(agent, """
            ws = connect()
            out["hello"] = call(ws, "hello")["result"]
            out["readers"] = call(ws, "readers.list")["result"]
            out["vitale"] = call(ws, "vitale.read")["result"]
            out["cpx"] = call(ws, "cpx.info")["result"]
            out["wrong"] = call(ws, "cpx.pin.verify", {"pin": "9731"})["error"]
            out["right"] = call(ws, "cpx.pin.verify", {"pin": "1234"})["result"]
            out["sign"] = call(ws, "cpx.sign", {"pin": "1234", "data": "b3Jkb25uYW5jZQ=="})["result"]
            out["typo"] = call(ws, "cpx.sign", {"pni": "1234", "data": "b3Jkb25uYW5jZQ=="})["error"]
            out["nomethod"] = call(ws, "cpx.erase")["error"]
            ws.send("not json")
            out["parse"] = json.loads(ws.recv())["error"]
            out["after"] = call(ws, "hello")["result"]["protocol"]
            ws.close()
            """)
        let hello = try #require(r["hello"] as? [String: Any])
        #expect(hello["protocol"] as? String == "carte.agent/1" && hello["caller"] as? String == "http://127.0.0.1:8123")
        let slots = try #require((r["readers"] as? [String: Any])?["slots"] as? [[String: Any]])
        #expect(slots.map { $0["card"] as? String } == ["vitale2", "cps3"], "\(slots)")
        let vitale = try #require(r["vitale"] as? [String: Any])
        #expect(vitale["schema"] as? String == "carte.vitale/1" && vitale["date"] as? String == "2026-06-15")
        // The same document as `carte read --json` on the same card and day.
        let cli = try Carte.run(["read", "--json", "--date", "2026-06-15"])
        let cliPeople = (cli.json["people"] as? [[String: Any]])?.compactMap { $0["nir"] as? String }
        #expect(cliPeople != nil && (vitale["people"] as? [[String: Any]])?.compactMap { $0["nir"] as? String } == cliPeople)
        #expect((r["cpx"] as? [String: Any])?["schema"] as? String == "carte.cps/1")
        let wrong = try #require(r["wrong"] as? [String: Any])
        #expect(wrong["code"] as? Int == 1003 && (wrong["data"] as? [String: Any])?["triesLeft"] as? Int == 2, "\(wrong)")
        #expect((r["right"] as? [String: Any])?["entry"] as? String == "page")
        let sign = try #require(r["sign"] as? [String: Any])
        #expect((sign["signature"] as? String).flatMap { Data(base64Encoded: $0) }?.count == 256)
        #expect((sign["certificate"] as? String)?.hasPrefix("-----BEGIN CERTIFICATE-----") == true)
        #expect(sign["origin"] as? String == "http://127.0.0.1:8123")
        #expect((r["typo"] as? [String: Any])?["code"] as? Int == -32602)
        #expect((r["nomethod"] as? [String: Any])?["code"] as? Int == -32601)
        #expect((r["parse"] as? [String: Any])?["code"] as? Int == -32700)
        #expect(r["after"] as? String == "carte.agent/1", "the connection survives a malformed message")
        // The log records the signature with the caller; no PIN anywhere in it.
        #expect(agent.log.contains("CPx signature") && agent.log.contains("http://127.0.0.1:8123"))
        #expect(!agent.log.contains("1234") && !agent.log.contains("9731"))
    }

    @Test func forgedHostsOtherOriginsAndMissingTokensAreRefusedAndLogged() throws {
        let agent = try Agent()
        defer { agent.stop() }
        let r = try client(agent, """
            out["rebinding"] = refused(host="evil.example:%d" % PORT)
            out["otherPort"] = refused(host="127.0.0.1:%d" % (PORT + 1))
            out["origin"] = refused(origin="http://localhost:9999")
            out["nullOrigin"] = refused(origin="null")
            out["noOrigin"] = refused(origin=None)
            out["badToken"] = refused(origin=None, header=["Authorization: Bearer " + "0" * 64])
            out["path"] = refused(url="ws://127.0.0.1:%d/other" % PORT)
            ws = connect(origin=None, header=["Authorization: Bearer " + TOKEN])
            out["program"] = call(ws, "hello")["result"]["caller"]
            ws.close()
            """)
        #expect(r["rebinding"] as? Int == 403 && r["otherPort"] as? Int == 403 && r["origin"] as? Int == 403)
        #expect(r["nullOrigin"] as? Int == 403 && r["noOrigin"] as? Int == 403 && r["badToken"] as? Int == 403)
        #expect(r["path"] as? Int == 404)
        #expect(r["program"] as? String == "local program")
        for code in ["host-not-allowed", "origin-not-allowed", "malformed-origin", "token-required", "wrong-path"] {
            #expect(agent.log.contains(code), "no \(code) in the log")
        }
        #expect(!agent.log.contains(agent.token), "the token is never logged")
    }

    @Test func oversizedBinaryAndInvalidUTF8MessagesAndFloodsAreCutWhileTheAllowedPageIsServed() throws {
        let agent = try Agent()
        defer { agent.stop() }
        let r = try client(agent, """
            ws = connect(); ws.send("x" * (70 * 1024)); out["large"] = close_code(ws)
            ws = connect(); ws.send_binary(b"\\x00\\x01"); out["binary"] = close_code(ws)
            ws = connect(); ws.send_frame(websocket.ABNF.create_frame(b"\\xff\\xfe{}", websocket.ABNF.OPCODE_TEXT)); out["utf8"] = close_code(ws)
            # A flood of connections: 8 per caller at most.
            held = []
            codes = []
            for i in range(12):
                try: held.append(connect())
                except websocket.WebSocketBadStatusException as e: codes.append(e.status_code)
            out["held"] = len(held); out["floodCodes"] = codes
            for h in held: h.close()
            # Many messages at once: some are refused with rate-limited, none is lost silently.
            ws = connect()
            for i in range(100): ws.send(json.dumps({"jsonrpc": "2.0", "id": 1000 + i, "method": "hello"}))
            kinds = {}
            ids = set()
            for i in range(100):
                a = json.loads(ws.recv())
                k = a["error"]["data"]["kind"] if "error" in a else "ok"
                kinds[k] = kinds.get(k, 0) + 1
                ids.add(a["id"])
            out["burst"] = kinds
            out["burstIDs"] = len(ids)
            ws.close()
            # After all that, the allowed page is still served.
            import time; time.sleep(0.3)
            ws = connect(); out["still"] = call(ws, "hello")["result"]["protocol"]; ws.close()
            """)
        // Cut at once: the close frame (1009) arrives unless the client, still sending, gets a reset first.
        #expect([1009, -1].contains(r["large"] as? Int ?? 0), "message too big")
        #expect(agent.log.contains("message-too-large"))
        #expect(r["binary"] as? Int == 1003, "binary: unacceptable data")
        #expect(r["utf8"] as? Int == 1007, "invalid UTF-8")
        #expect(r["held"] as? Int == 8 && (r["floodCodes"] as? [Int]) == [403, 403, 403, 403])
        let burst = try #require(r["burst"] as? [String: Int])
        // 40 pass the rate limit (the burst), of which 4 at a time run (the rest: busy); every message is answered.
        #expect((burst["ok"] ?? 0) >= 4 && (burst["ok"] ?? 0) + (burst["busy"] ?? 0) >= 40, "\(burst)")
        #expect((burst["rate-limited"] ?? 0) >= 50 && burst.values.reduce(0, +) == 100, "\(burst)")
        #expect(r["burstIDs"] as? Int == 100, "every answer, refusals included, carries its request's id")
        #expect(r["still"] as? String == "carte.agent/1")
        #expect(agent.log.contains("too-many-connections") && agent.log.contains("invalid-utf8") && agent.log.contains("rate-limited") && agent.log.contains("binary-message"))
    }

    /// `cpx.sign` with `hash`: a CPS4 signs the page's SHA-256 digest, the same signature as for the data
    /// (PKCS#1 v1.5 is deterministic); a CPS3, which finishes the hash itself, says it cannot.
    @Test func aCPS4SignsTheDigestAPageComputedAndACPS3SaysItCannot() throws {
        let cps4 = try Agent(arguments: ["--image", "CarteKit Virtual Bi-fente 00 00=bundled:demo/vitale2-demo.yaml",
                                         "--image", "CarteKit Virtual Bi-fente 00 01=bundled:cps/cps4-medecin.yaml"])
        defer { cps4.stop() }
        let script = """
            import base64, hashlib
            data = b"ordonnance du 7 decembre"
            ws = connect()
            out["card"] = call(ws, "readers.list")["result"]["slots"][1]["card"]
            out["data"] = call(ws, "cpx.sign", {"pin": "1234", "data": base64.b64encode(data).decode()})
            out["hash"] = call(ws, "cpx.sign", {"pin": "1234", "hash": base64.b64encode(hashlib.sha256(data).digest()).decode()})
            out["both"] = call(ws, "cpx.sign", {"pin": "1234", "data": "AA==", "hash": "AA=="}).get("error")
            out["short"] = call(ws, "cpx.sign", {"pin": "1234", "hash": "AAAA"}).get("error")
            ws.close()
            """
        let r = try client(cps4, script)
        #expect(r["card"] as? String == "cps4")
        let byData = (r["data"] as? [String: Any])?["result"] as? [String: Any]
        let byHash = (r["hash"] as? [String: Any])?["result"] as? [String: Any]
        #expect(byData?["signature"] as? String != nil && byData?["signature"] as? String == byHash?["signature"] as? String, "\(r)")
        #expect((r["both"] as? [String: Any])?["code"] as? Int == -32602 && (r["short"] as? [String: Any])?["code"] as? Int == -32602)
        let cps3 = try Agent()
        defer { cps3.stop() }
        let r3 = try client(cps3, """
            import base64, hashlib
            ws = connect()
            out["hash"] = call(ws, "cpx.sign", {"pin": "1234", "hash": base64.b64encode(hashlib.sha256(b"x").digest()).decode()}).get("error")
            ws.close()
            """)
        let refused = try #require(r3["hash"] as? [String: Any])
        #expect(refused["code"] as? Int == 1012 && (refused["message"] as? String)?.contains("finishes the hash itself") == true, "\(refused)")
    }

    /// The appli carte Vitale through the agent: a QR payload the page got from a scanner, and the phone
    /// laid on the contactless reader, give the same identity as the card of the same persona.
    @Test func aQRCodeAndAPhoneOverNFCReadLikeTheCard() throws {
        let qr = try Carte.run(["sim", "apcv-qr"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(qr.hasPrefix("APCV1:"))
        let agent = try Agent(arguments: ["--profile", "bi-fente", "--profile", "contactless",
                                          "--image", "CarteKit Virtual Bi-fente 00 00=bundled:demo/vitale2-demo.yaml",
                                          "--image", "CarteKit Virtual Contactless 01 00=bundled:apcv/claire-exemple.yaml"])
        defer { agent.stop() }
        let r = try client(agent, """
            ws = connect()
            out["qr"] = call(ws, "vitale.read", {"qr": \(AgentCLITests.pythonString(qr))})
            out["phone"] = call(ws, "vitale.read", {"reader": "CarteKit Virtual Contactless 01 00"})
            out["card"] = call(ws, "vitale.read", {"reader": "CarteKit Virtual Bi-fente 00 00"})
            out["replayed"] = call(ws, "vitale.read", {"qr": \(AgentCLITests.pythonString(qr))}).get("error")
            out["both"] = call(ws, "vitale.read", {"qr": "x", "reader": "y"}).get("error")
            ws.close()
            """)
        func nirs(_ key: String) -> [String]? {
            ((r[key] as? [String: Any])?["result"] as? [String: Any]).flatMap { ($0["people"] as? [[String: Any]])?.compactMap { $0["nir"] as? String } }
        }
        #expect(nirs("card") != nil && nirs("qr")?.first == nirs("card")?.first && nirs("phone")?.first == nirs("card")?.first, "\(r)")
        #expect((r["replayed"] as? [String: Any])?["code"] as? Int == 1010, "a QR token is used once: \(r["replayed"] ?? "")")
        #expect((r["both"] as? [String: Any])?["code"] as? Int == -32602)
    }

    static func pythonString(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    @Test func aPageOffTheListPairsWithACodeTheUserConfirms() throws {
        let agent = try Agent()
        defer { agent.stop() }
        let r = try client(agent, """
            STRANGER = "http://localhost:7000"
            PAIR = "ws://127.0.0.1:%d/carte.agent/1/pair" % PORT
            out["before"] = refused(origin=STRANGER)
            ws = connect(origin=STRANGER, url=PAIR)
            out["caller"] = call(ws, "hello")["result"]["caller"]
            out["readers"] = call(ws, "readers.list")["error"]
            out["events"] = call(ws, "events.subscribe")["error"]
            req = call(ws, "pair.request")["result"]
            out["request"] = req
            out["status"] = call(ws, "pair.status")["result"]["paired"]
            out["wrong"] = carte("agent", "pair", "000000" if req["code"] != "000000" else "111111", "--yes").returncode
            p = carte("agent", "pair", req["code"], "--yes")
            out["pair"] = [p.returncode, p.stdout.strip()]
            out["again"] = carte("agent", "pair", req["code"], "--yes").returncode
            out["statusAfter"] = call(ws, "pair.status")["result"]["paired"]
            ws.close()
            ws = connect(origin=STRANGER)
            out["after"] = call(ws, "readers.list")["result"]["schema"]
            ws.close()
            # A flood of pairing requests from one origin: 3 codes pending at most.
            ws = connect(origin="http://localhost:7001", url=PAIR)
            out["flood"] = [("result" in call(ws, "pair.request")) for i in range(5)]
            ws.close()
            """)
        #expect(r["before"] as? Int == 403)
        #expect(r["caller"] as? String == "http://localhost:7000 (pairing)")
        #expect((r["readers"] as? [String: Any])?["code"] as? Int == 1007 && (r["events"] as? [String: Any])?["code"] as? Int == 1007)
        let request = try #require(r["request"] as? [String: Any])
        let code = try #require(request["code"] as? String)
        #expect(code.count == 6 && code.allSatisfy(\.isNumber) && request["expiresIn"] as? Int == 300)
        #expect(r["status"] as? Bool == false)
        #expect(r["wrong"] as? Int == 2, "an unknown code is refused")
        #expect((r["pair"] as? [Any])?.first as? Int == 0 && (r["pair"] as? [Any])?.last as? String == "paired http://localhost:7000")
        #expect(r["again"] as? Int == 2, "a code is used once")
        #expect(r["statusAfter"] as? Bool == true)
        #expect(r["after"] as? String == "carte.agent.readers/1", "the paired page connects at once")
        #expect(r["flood"] as? [Bool] == [true, true, true, false, false])
        #expect(agent.log.contains("carte agent pair \(code)"), "the user is told the code")
    }

    @Test func allowDenyListAndTokenCommands() throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-agent-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: config) }
        let env = ["XDG_CONFIG_HOME": config.path]
        #expect(try Carte.run(["agent", "allow", "HTTPS://Facturation.example.fr:443"], environment: env).stdout.contains("allowed https://facturation.example.fr"))
        let list = try Carte.run(["agent", "list", "--json"], environment: env)
        #expect(list.json["schema"] as? String == "carte.agent.origins/1")
        #expect((list.json["origins"] as? [[String: Any]])?.first?["origin"] as? String == "https://facturation.example.fr")
        let bad = try Carte.run(["agent", "allow", "https://x.example/path"], environment: env)
        #expect(bad.status == 2 && bad.stderr.contains("is not an origin"))
        #expect(try Carte.run(["agent", "deny", "https://facturation.example.fr"], environment: env).stdout.contains("removed"))
        let token = try Carte.run(["agent", "token"], environment: env).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count == 64)
        #expect(try Carte.run(["agent", "token"], environment: env).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == token)
        let help = try Carte.run(["agent", "--help"])
        #expect(help.stdout.contains("serve") && help.stdout.contains("allow") && help.stdout.contains("token"))
    }
}
