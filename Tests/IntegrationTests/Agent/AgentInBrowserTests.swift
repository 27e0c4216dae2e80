import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

/// `carte agent` in a real browser: Debian's Chromium, headless, driven over the DevTools protocol by a
/// Python script (python3-websocket; nothing downloaded), against a virtual bi-fente with a PIN pad
/// behind its own private pcscd. The demo page (served by the agent on its own port) lists the
/// readers, receives the remove and insert events, reads the Vitale, has the CPS PIN verified on the
/// virtual pad and signs; a page of an origin not allowed is refused. The screenshot is kept for the docs.
@Suite("carte agent in headless Chromium", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(4)))
struct AgentInBrowserTests {
    static let vitaleSlot = "CarteKit Virtual Bi-fente PIN pad 00 00"
    static let cpsSlot = "CarteKit Virtual Bi-fente PIN pad 00 01"

    /// Where the screenshot goes (`AGENT_SCREENSHOT` to keep it elsewhere).
    static let screenshot = ProcessInfo.processInfo.environment["AGENT_SCREENSHOT"] ?? FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-agent-demo.png").path

    @Test func theDemoPageListsReceivesEventsReadsVerifiesOnThePadAndSignsAndAStrangerIsRefusedUntilPaired() throws {
        let s = try sandbox()
        // scripts/bootstrap.sh installs Debian's chromium: without it this test fails, it is not skipped.
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "no /usr/bin/chromium (Debian package chromium)")
        let bench = try PINPadThroughPCSCDTests.Bench(s, images: ["\(Self.vitaleSlot)=bundled:demo/vitale2-demo.yaml", "\(Self.cpsSlot)=bundled:cps/medecin-liberal.yaml"])
        defer { bench.stop() }
        try s.waitFor("pcscd listing the PIN-pad bi-fente", seconds: 20) {
            try bench.carte(["readers", "--backend", "pcsc", "--json"]).stdout.contains(Self.cpsSlot)
        }
        // The agent, as the workstation's user would run it, on the bench's pcscd.
        let config = bench.dir.appendingPathComponent("config")
        let log = bench.dir.appendingPathComponent("agent.log")
        let (agent, text) = try Self.startAgent(["--no-tls"], environment: ["PCSCLITE_CSOCK_NAME": bench.pcscd.clientSocket, "XDG_CONFIG_HOME": config.path], log: log)
        defer {
            agent.terminate()
            agent.waitUntilExit()
        }
        let page = try #require(Self.demoPage(text), "\(text)")
        let script = Self.browserScript(page: page, carte: PCSCSandbox.carteBinary.path, socket: bench.socket, screenshot: Self.screenshot, config: config.path)
        let r = try s.run("/usr/bin/python3", ["-c", script], timeout: 150, environment: ["PCSCLITE_CSOCK_NAME": bench.pcscd.clientSocket])
        let agentLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        try #require(r.status == 0, "browser script failed: \(r.stderr.suffix(3000))\nagent log: \(agentLog.suffix(2000))")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(result["readers"] as? [String] == [Self.vitaleSlot + "=vitale2", Self.cpsSlot + "=cps3"], "\(result)")
        #expect(result["removed"] as? Bool == true && result["inserted"] as? String == "vitale2", "events: \(result)")
        #expect((result["people"] as? Int ?? 0) >= 1)
        #expect(result["pinEntry"] as? String == "pin-pad")
        #expect(result["signatureBytes"] as? Int == 256 && result["signedBy"] as? String == page.components(separatedBy: "/?").first)
        #expect(result["stranger"] as? String == "disconnected", "a page of another origin must not connect")
        #expect((result["pairingCode"] as? String)?.count == 6 && result["pairedReaders"] as? Int == 2, "pairing: \(result)")
        #expect(agentLog.contains("origin-not-allowed") && agentLog.contains("CPx signature"))
        #expect(!agentLog.contains("1234"), "no PIN in the agent's log")
        // The screenshot a person looks at (docs/agent.md shows it).
        let png = try Data(contentsOf: URL(fileURLWithPath: Self.screenshot))
        #expect(png.count > 10_000 && png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
    }

    /// `wss://` from an https page: the agent's local CA trusted in the browser profile's NSS database by
    /// `carte agent trust install`, the demo page served over https with the agent's certificate. A
    /// profile without that CA refuses the page (the CA is trusted nowhere by default).
    @Test func anHTTPSPageReachesTheAgentOverWSSOnceTheLocalCAIsTrusted() throws {
        let s = try sandbox()
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "no /usr/bin/chromium (Debian package chromium)")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/certutil"), "no certutil (Debian package libnss3-tools)")
        let home = s.directory.appendingPathComponent("agent-home-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let stranger = home.appendingPathComponent("stranger")
        try FileManager.default.createDirectory(at: stranger, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let env = ["HOME": home.path, "XDG_CONFIG_HOME": ""]
        let trust = try s.run(PCSCSandbox.carteBinary.path, ["agent", "trust", "install"], environment: env)
        try #require(trust.status == 0, "\(trust.stderr)")
        #expect(trust.stdout.contains("trusted in \(home.path)/.pki/nssdb"))
        let (agent, text) = try Self.startAgent(["--tls-port", "0"], environment: ["PCSCLITE_CSOCK_NAME": s.clientSocket, "HOME": home.path, "XDG_CONFIG_HOME": nil],
                                                log: home.appendingPathComponent("agent.log"))
        defer {
            agent.terminate()
            agent.waitUntilExit()
        }
        let page = try #require(Self.demoPage(text), "\(text)")
        #expect(page.hasPrefix("https://127.0.0.1:") && text.contains("listening on wss://127.0.0.1:"), "\(text)")
        let script = Self.devTools + """
            def browse(home, url):
                c = Chromium(home)
                try:
                    s, refused = c.open_page(url)
                    if refused: return {"error": refused}
                    cards = c.wait(s, "window.cartekitDemo && window.cartekitDemo.ready && JSON.stringify(window.cartekitDemo.readers.map(r => r.card))")
                    return {"cards": json.loads(cards), "protocol": c.js(s, "window.cartekitDemo.agent.url")}
                finally:
                    c.close()
            print(json.dumps({"trusted": browse(\(Self.quoted(home.path)), \(Self.quoted(page))), "stranger": browse(\(Self.quoted(stranger.path)), \(Self.quoted(page)))}))
            """
        let r = try s.run("/usr/bin/python3", ["-c", script], timeout: 120)
        try #require(r.status == 0, "\(r.stderr.suffix(2000))")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: [String: Any]], "\(r.stdout)")
        let trusted = try #require(result["trusted"])
        #expect((trusted["protocol"] as? String)?.hasPrefix("wss://127.0.0.1:") == true, "\(trusted)")
        #expect((trusted["cards"] as? [Any])?.isEmpty == false, "the https page lists the readers over wss://: \(trusted)")
        #expect((result["stranger"]?["error"] as? String)?.contains("CERT") == true, "a profile without the CA refuses: \(result["stranger"] ?? [:])")
        let removed = try s.run(PCSCSandbox.carteBinary.path, ["agent", "trust", "remove"], environment: env)
        #expect(removed.status == 0 && removed.stdout.contains("removed from"), "\(removed.stderr)")
    }

    /// Starts `carte agent serve --backend pcsc --port 0 --demo-port 0` with `arguments` and `environment`
    /// (a nil value removes the variable), its log in `log`; returns it with what it printed up to the
    /// demo page's address.
    static func startAgent(_ arguments: [String], environment: [String: String?], log: URL) throws -> (Process, String) {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let agent = Process()
        agent.executableURL = PCSCSandbox.carteBinary
        agent.arguments = ["agent", "serve", "--backend", "pcsc", "--port", "0", "--demo-port", "0", "--exit-with-parent"] + arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        agent.environment = env
        let out = Pipe()
        agent.standardOutput = out
        agent.standardError = try FileHandle(forWritingTo: log)
        try agent.run()
        var text = ""
        while !text.contains("demo page on") || !text.hasSuffix("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        return (agent, text)
    }

    /// The demo page's address in what the agent printed.
    static func demoPage(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("demo page on ") }.map { String($0.dropFirst("demo page on ".count)) }
    }

    /// A Python prelude: `Chromium(home)`, Debian's chromium headless in a fresh profile (HOME, when
    /// given, is where it finds its NSS certificate database), driven over the DevTools protocol:
    /// `open_page(url)` → (session, navigation error or None), `js(session, expr)`, `wait(session, expr)`,
    /// `screenshot(session, path)`, `close()`.
    static let devTools = """
        import base64, json, os, re, shutil, subprocess, tempfile, time, websocket
        class Chromium:
            def __init__(self, home=None):
                self.profile = tempfile.mkdtemp(prefix="cartekit-chromium-")
                env = dict(os.environ)
                if home: env["HOME"] = home
                self.proc = subprocess.Popen(["/usr/bin/chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--remote-debugging-port=0", "--user-data-dir=" + self.profile, "--window-size=1280,800", "about:blank"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
                address, deadline = None, time.time() + 30
                while address is None and time.time() < deadline:
                    m = re.search(r"DevTools listening on (ws://\\S+)", self.proc.stderr.readline())
                    if m: address = m.group(1)
                assert address, "chromium gave no DevTools address"
                self.ws = websocket.create_connection(address, timeout=90, suppress_origin=True)
                self.n = 0
            def send(self, method, params=None, session=None):
                self.n += 1
                m = {"id": self.n, "method": method, "params": params or {}}
                if session: m["sessionId"] = session
                self.ws.send(json.dumps(m))
                while True:
                    a = json.loads(self.ws.recv())
                    if a.get("id") == self.n:
                        assert "error" not in a, (method, a)
                        return a.get("result", {})
            def open_page(self, address):
                t = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
                s = self.send("Target.attachToTarget", {"targetId": t, "flatten": True})["sessionId"]
                self.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}, s)
                self.send("Page.enable", session=s)
                return s, self.send("Page.navigate", {"url": address}, s).get("errorText")
            def js(self, s, expr):
                r = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True}, s)
                assert "exceptionDetails" not in r, r
                return r["result"].get("value")
            def wait(self, s, expr, timeout=30):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    v = self.js(s, expr)
                    if v: return v
                    time.sleep(0.1)
                raise AssertionError("timed out: " + expr + " errors: " + str(self.js(s, "JSON.stringify(window.cartekitDemo && window.cartekitDemo.errors)")))
            def screenshot(self, s, path):
                open(path, "wb").write(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, s)["data"]))
            def close(self):
                try: self.proc.terminate(); self.proc.wait(10)
                except Exception: self.proc.kill()
                shutil.rmtree(self.profile, ignore_errors=True)

        """

    static func browserScript(page: String, carte: String, socket: String, screenshot: String, config: String) -> String {
        devTools + """
        PAGE = \(quoted(page)); CARTE = \(quoted(carte)); SOCKET = \(quoted(socket)); SHOT = \(quoted(screenshot)); CONFIG = \(quoted(config))
        def carte(*args):
            subprocess.run([CARTE] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        c = Chromium()
        try:
            js, wait = c.js, c.wait
            out = {}
            s, _ = c.open_page(PAGE)
            wait(s, "window.cartekitDemo && window.cartekitDemo.ready")
            out["readers"] = js(s, "window.cartekitDemo.readers.map(r => r.reader + '=' + r.card)")
            # The Vitale taken out and put back: the page hears both.
            carte("sim", "remove", "--socket", SOCKET, "0", "0")
            out["removed"] = bool(wait(s, "window.cartekitDemo.events.some(e => e.kind === 'card-removed' && e.reader.endsWith('00 00'))"))
            carte("sim", "insert", "--socket", SOCKET, "0", "0", "bundled:demo/vitale2-demo.yaml")
            out["inserted"] = wait(s, "(window.cartekitDemo.events.find(e => e.kind === 'card-inserted' && e.reader.endsWith('00 00')) || {}).card")
            js(s, "document.getElementById('read-vitale').click()")
            out["people"] = wait(s, "window.cartekitDemo.vitale && window.cartekitDemo.vitale.people.length")
            # The PIN on the reader's pad: the page sends none; the holder types on the virtual keypad.
            js(s, "document.getElementById('cps-info').click()")
            wait(s, "window.cartekitDemo.cpx")
            for button, done in [("verify", "window.cartekitDemo.verified"), ("sign", "window.cartekitDemo.signature")]:
                keypad = subprocess.Popen([CARTE, "sim", "keypad", "--socket", SOCKET, "0", "1", "--digits", "1234", "--after", "400"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                js(s, "document.getElementById('%s').click()" % button)
                wait(s, done, 60)
                keypad.wait(30)
            out["pinEntry"] = js(s, "window.cartekitDemo.verified.entry")
            out["signatureBytes"] = js(s, "atob(window.cartekitDemo.signature.signature).length")
            out["signedBy"] = js(s, "window.cartekitDemo.signature.origin")
            c.screenshot(s, SHOT)
            # The same page from another origin (localhost instead of 127.0.0.1): not allowed.
            stranger, _ = c.open_page(PAGE.replace("127.0.0.1", "localhost"))
            out["stranger"] = wait(stranger, "window.cartekitDemo && window.cartekitDemo.errors.length && window.cartekitDemo.errors[0].kind")
            # It asks for a pairing code; the user confirms it on the workstation; the page then connects.
            code = wait(stranger, "window.cartekitDemo.pairing && window.cartekitDemo.pairing.code")
            out["pairingCode"] = code
            env = dict(os.environ); env["XDG_CONFIG_HOME"] = CONFIG
            subprocess.run([CARTE, "agent", "pair", code, "--yes"], check=True, env=env, stdout=subprocess.DEVNULL, timeout=30)
            out["pairedReaders"] = wait(stranger, "window.cartekitDemo.ready && window.cartekitDemo.readers.length")
            print(json.dumps(out))
        finally:
            c.close()
        """
    }

    static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
