import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

/// `carte sim console` in a real browser: Debian's Chromium, headless, driven over the DevTools
/// protocol (the agent tests' prelude), against a virtual bi-fente with a PIN pad behind its own
/// private pcscd. What the page does is checked where it matters: in pcscd (CarteKit through PC/SC and
/// pcsc_scan), in a `carte read` running at the same time as a fault, in a CPS PIN verified with the
/// digits typed on the page's keypad (with the keyboard), and in the exported trace replayed as a card. The screenshot
/// (bi-fente with a Vitale and a CPS, the trace of a read) is the one docs/simulator.md shows.
@Suite("carte sim console in headless Chromium", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(5)))
struct ConsoleInBrowserTests {
    static let vitaleSlot = "CarteKit Virtual Bi-fente PIN pad 00 00"
    static let cpsSlot = "CarteKit Virtual Bi-fente PIN pad 00 01"

    /// Where the screenshot goes (`CONSOLE_SCREENSHOT` to keep it elsewhere).
    static let screenshot = ProcessInfo.processInfo.environment["CONSOLE_SCREENSHOT"]
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("cartekit-console.png").path

    @Test func thePageShowsAndDrivesTheReadersAsPCSCDAndItsClientsSeeThem() throws {
        let s = try sandbox()
        // scripts/bootstrap.sh installs Debian's chromium: without it this test fails, it is not skipped.
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "no /usr/bin/chromium (Debian package chromium)")
        let bench = try PINPadThroughPCSCDTests.Bench(s, images: ["\(Self.vitaleSlot)=bundled:vitale/family-five.yaml", "\(Self.cpsSlot)=bundled:cps/medecin-liberal.yaml"])
        defer { bench.stop() }
        try s.waitFor("pcscd listing the PIN-pad bi-fente", seconds: 20) {
            try bench.carte(["readers", "--backend", "pcsc", "--json"]).stdout.contains(Self.cpsSlot)
        }
        let log = bench.dir.appendingPathComponent("console.log")
        let (console, address) = try Self.startConsole(socket: bench.socket, log: log)
        defer {
            console.terminate()
            console.waitUntilExit()
        }
        let script = AgentInBrowserTests.devTools + """
            ADDR = \(q(address)); CARTE = \(q(PCSCSandbox.carteBinary.path)); SOCKET = \(q(bench.socket)); SHOT = \(q(Self.screenshot))
            DIR = \(q(bench.dir.path)); V = \(q(Self.vitaleSlot)); C = \(q(Self.cpsSlot))
            def carte(*args, check=True):
                r = subprocess.run([CARTE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
                if check: assert r.returncode == 0, (args, r.stderr)
                return r
            def slot_state(name):
                for r in json.loads(carte("readers", "--backend", "pcsc", "--json").stdout)["readers"]:
                    if r["name"] == name: return r
                raise AssertionError("no reader " + name)
            def until(what, f, timeout=20):
                deadline = time.time() + timeout
                while time.time() < deadline:
                    v = f()
                    if v: return v
                    time.sleep(0.1)
                raise AssertionError("timed out: " + what)
            def scan():
                return subprocess.run(["/usr/bin/pcsc_scan", "-c"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30).stdout
            c = Chromium()
            try:
                js, wait = c.js, c.wait
                out = {}
                s, _ = c.open_page(ADDR)
                wait(s, "window.cartekitConsole && window.cartekitConsole.ready")
                def slot_js(name, expr): return "(() => { const p = [...document.querySelectorAll('.slot')].find(p => p.getAttribute('data-slot') === " + json.dumps(name) + "); return " + expr + "; })()"
                def click(name, label):
                    assert js(s, slot_js(name, "(() => { const b = [...p.querySelectorAll('button')].find(b => b.textContent === " + json.dumps(label) + "); if (!b || b.disabled) return false; b.click(); return true; })()")), (name, label)
                def choose(name, aria, value):
                    assert js(s, slot_js(name, "(() => { const e = p.querySelector('[aria-label^=' + JSON.stringify(" + json.dumps(aria) + ") + ']'); e.value = " + json.dumps(value) + "; e.dispatchEvent(new Event('change')); e.dispatchEvent(new Event('input')); return e.value === " + json.dumps(value) + "; })()"))
                def actions(): return js(s, "window.cartekitConsole.actions")
                def act(f):
                    before = actions(); f(); wait(s, "window.cartekitConsole.actions > %d" % before)
                out["slots"] = js(s, "[...document.querySelectorAll('.slot')].map(p => p.getAttribute('data-slot') + '=' + p.querySelector('.card .title').firstChild.textContent)")
                out["pictures"] = js(s, "document.querySelectorAll('.reader svg rect').length")

                # A second page (another tester's tab) follows what the first one does.
                s2, _ = c.open_page(ADDR)
                wait(s2, "window.cartekitConsole && window.cartekitConsole.ready")

                # Removed from the page: pcscd (CarteKit through PC/SC) and pcsc_scan see the slot empty.
                act(lambda: click(V, "Remove"))
                until("pcscd seeing the Vitale slot empty", lambda: slot_state(V)["state"] == "empty")
                out["scanEmpty"] = scan()
                wait(s, slot_js(V, "p.querySelector('.card.empty') !== null"))
                wait(s2, slot_js(V, "p.querySelector('.card.empty') !== null"))
                out["secondPageSawRemoval"] = True
                # Inserted from the page: the Vitale is back with its ATR.
                choose(V, "Image to insert", "bundled:vitale/family-five.yaml")
                act(lambda: click(V, "Insert"))
                until("pcscd seeing the Vitale", lambda: slot_state(V)["state"] == "card")
                out["atr"] = slot_state(V).get("atr")
                out["scanInserted"] = scan()

                # A read: the trace shows its exchanges; the screenshot is taken with them.
                first = carte("read", "--backend", "pcsc", "--reader", V, "--json")
                out["read"] = json.loads(first.stdout)
                wait(s, "(window.cartekitConsole.traces.get(%s) || []).filter(e => e.type === 'exchange').length >= 8" % json.dumps(V))
                out["traceRows"] = js(s, "document.querySelectorAll('#trace-table tbody tr').length")
                out["traceText"] = js(s, "document.querySelector('#trace-table tbody').textContent")
                js(s, "document.querySelector('#trace-filter').value = '00 a4 04 00 0e'; document.querySelector('#trace-filter').dispatchEvent(new Event('input')); true")
                out["filtered"] = js(s, "[...document.querySelectorAll('#trace-table tbody tr')].map(r => r.children[2].textContent)")
                js(s, "document.querySelector('#trace-filter').value = ''; document.querySelector('#trace-filter').dispatchEvent(new Event('input')); true")
                time.sleep(0.3)
                c.screenshot(s, SHOT)

                # Export: the replay image of this card's exchanges.
                js(s, "document.querySelector('#trace-export').click(); true")
                wait(s, "window.cartekitConsole.lastExport")
                exported = js(s, "JSON.stringify(window.cartekitConsole.lastExport)")
                out["export"] = json.loads(exported)
                path = os.path.join(DIR, out["export"]["name"])
                open(path, "w").write(out["export"]["text"])
                out["exportPath"] = path

                # A fault armed on the page while a read runs: the read sees it.
                choose(V, "Fault to arm", "slow"); choose(V, "milliseconds", "250")
                act(lambda: click(V, "Arm"))
                before = js(s, "(window.cartekitConsole.traces.get(%s) || []).length" % json.dumps(V))
                reading = subprocess.Popen([CARTE, "read", "--backend", "pcsc", "--reader", V, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                wait(s, "(window.cartekitConsole.traces.get(%s) || []).filter(e => e.type === 'exchange').length >= 2 + %d" % (json.dumps(V), 0) + " && (window.cartekitConsole.traces.get(%s) || []).length > %d + 2" % (json.dumps(V), before))
                choose(V, "Fault to arm", "remove-before")
                act(lambda: click(V, "Arm"))
                o, e = reading.communicate(timeout=60)
                out["faultRead"] = {"status": reading.returncode, "output": (o + e)[-600:]}
                until("pcscd seeing the card pulled out", lambda: slot_state(V)["state"] == "empty")

                # The exported trace uploaded through the page replays the read.
                root = c.send("DOM.getDocument", {}, s)["root"]["nodeId"]
                inputs = c.send("DOM.querySelectorAll", {"nodeId": root, "selector": ".slot[data-slot=" + json.dumps(V) + "] input[type=file]"}, s)["nodeIds"]
                before = actions()
                c.send("DOM.setFileInputFiles", {"nodeId": inputs[0], "files": [path]}, s)
                wait(s, "window.cartekitConsole.actions > %d" % before)
                until("pcscd seeing the replay card", lambda: slot_state(V)["state"] == "card")
                replayed = carte("read", "--backend", "pcsc", "--reader", V, "--json", check=False)
                out["replayed"] = {"status": replayed.returncode, "json": json.loads(replayed.stdout) if replayed.returncode == 0 else replayed.stderr}
                out["replayCard"] = js(s, slot_js(V, "p.querySelector('.card').textContent"))

                # The CPS PIN typed on the page's keypad while carte cps pin verify waits on the reader.
                verifying = subprocess.Popen([CARTE, "cps", "pin", "verify", "--backend", "pcsc", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                wait(s, slot_js(C, "p.querySelector('.keypad.waiting') !== null"), timeout=30)
                out["prompt"] = js(s, slot_js(C, "p.querySelector('.pad-info .prompt').textContent"))
                # With the keyboard: the pad focused, digits typed, Enter validates.
                assert js(s, slot_js(C, "(p.querySelector('.keypad').focus(), document.activeElement === p.querySelector('.keypad'))"))
                def key(k, code, vk):
                    c.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": k, "code": code, "windowsVirtualKeyCode": vk, "text": k if len(k) == 1 else ""}, s)
                    c.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": k, "code": code, "windowsVirtualKeyCode": vk}, s)
                for d in "12349": key(d, "Digit" + d, 48 + int(d))
                key("Backspace", "Backspace", 8)
                out["lcd"] = js(s, slot_js(C, "p.querySelector('.lcd').textContent"))
                act(lambda: key("Enter", "Enter", 13))
                o, e = verifying.communicate(timeout=60)
                out["verify"] = {"status": verifying.returncode, "json": json.loads(o) if o.strip() else e[-600:]}
                js(s, "[...document.querySelectorAll('#trace-tabs button')].find(b => b.title === %s).click(); true" % json.dumps(C))
                wait(s, "document.querySelector('#trace-table tbody').textContent.includes('PIN pad')")
                out["cpsTrace"] = js(s, "document.querySelector('#trace-table tbody').textContent")
                # What the feed carried (the daemon's events, as JSON) for the command the pad built.
                out["padEvents"] = js(s, "JSON.stringify((window.cartekitConsole.traces.get(%s) || []).filter(e => e.viaPad))" % json.dumps(C))
                # Changes made elsewhere show at once: carte sim remove and insert, from a terminal.
                carte("sim", "remove", "--socket", SOCKET, "0", "1")
                wait(s, slot_js(C, "p.querySelector('.card.empty') !== null"))
                carte("sim", "insert", "--socket", SOCKET, "0", "1", "bundled:cps/cps4-medecin.yaml")
                wait(s, slot_js(C, "p.querySelector('.card.cps4') !== null"))
                out["cliInsert"] = js(s, slot_js(C, "p.querySelector('.card .title').firstChild.textContent"))
                out["errors"] = js(s, "window.cartekitConsole.errors")
                print(json.dumps(out))
            finally:
                c.close()
            """
        let r = try s.run("/usr/bin/python3", ["-c", script], timeout: 240, environment: ["PCSCLITE_CSOCK_NAME": bench.pcscd.clientSocket])
        let consoleLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        try #require(r.status == 0, "browser script failed: \(r.stderr.suffix(3000))\nconsole log: \(consoleLog.suffix(2000))")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")

        // The readers as the daemon has them, each card by kind; the reader drawn.
        #expect(out["slots"] as? [String] == [Self.vitaleSlot + "=Carte Vitale 2", Self.cpsSlot + "=CPS3"], "\(out["slots"] ?? "")")
        #expect((out["pictures"] as? Int ?? 0) >= 4)
        // pcsc_scan saw the slot empty, then the card with the Vitale's ATR.
        let empty = out["scanEmpty"] as? String ?? ""
        let inserted = out["scanInserted"] as? String ?? ""
        #expect(Self.scanState(empty, reader: Self.vitaleSlot)?.contains("Card removed") == true, "pcsc_scan -c: \(empty)")
        #expect(Self.scanState(inserted, reader: Self.vitaleSlot)?.contains("Card inserted") == true, "pcsc_scan -c: \(inserted)")
        #expect(inserted.contains("3B 75 13 00 00 45 09 EA 90 00"), "\(inserted)")
        #expect(out["atr"] as? String == "3B 75 13 00 00 45 09 EA 90 00")
        // The trace of the read: its SELECTs and READ RECORDs, decoded; the filter keeps the reads.
        let traceText = out["traceText"] as? String ?? ""
        #expect(traceText.contains("00 A4 04") && traceText.contains("9000 "), "\(traceText.prefix(600))")
        let filtered = out["filtered"] as? [String] ?? []
        #expect(!filtered.isEmpty && filtered.allSatisfy { $0.hasPrefix("00 A4 04 00 0E") }, "\(filtered)")
        #expect(filtered.count < (out["traceRows"] as? Int ?? 0), "the filter keeps the SELECTs of MF_VITALE only: \(filtered.count) of \(out["traceRows"] ?? 0)")
        // The fault armed on the page during a read: the read ends with the card pulled out.
        let faultRead = out["faultRead"] as? [String: Any] ?? [:]
        #expect(faultRead["status"] as? Int == 3 && (faultRead["output"] as? String ?? "").contains("removed"), "\(faultRead)")
        // The export is a replay image; uploaded through the page, it replays the read.
        let export = out["export"] as? [String: Any] ?? [:]
        #expect((export["name"] as? String)?.hasPrefix("trace-CarteKit-Virtual-Bi-fente-PIN-pad-00-00-") == true, "\(export["name"] ?? "")")
        #expect((export["text"] as? String)?.contains("replay:") == true)
        let replayed = out["replayed"] as? [String: Any] ?? [:]
        #expect(replayed["status"] as? Int == 0, "\(replayed)")
        let first = out["read"] as? [String: Any] ?? [:]
        #expect(first["card"] != nil && Self.sameCard(first, replayed["json"] as? [String: Any] ?? [:]), "replayed: \(replayed)\nfirst: \(first)")
        #expect((out["replayCard"] as? String)?.contains("Console trace of") == true, "\(out["replayCard"] ?? "")")
        // The PIN typed on the page's keypad verified the CPS; the page and its trace never show it.
        #expect(out["prompt"] as? String == "The reader asks for a PIN")
        #expect(out["lcd"] as? String == "••••")
        let verify = out["verify"] as? [String: Any] ?? [:]
        let verified = verify["json"] as? [String: Any] ?? [:]
        #expect(verify["status"] as? Int == 0 && verified["result"] as? String == "ok" && verified["entry"] as? String == "pin-pad", "\(verify)")
        let cpsTrace = out["cpsTrace"] as? String ?? ""
        #expect(cpsTrace.contains("[PIN pad]") && cpsTrace.contains("bytes redacted"), "\(cpsTrace.suffix(800))")
        #expect(!cpsTrace.contains("31 32 33 34") && !consoleLog.contains("1234"), "no PIN in the trace or the console's log")
        let padEvents = out["padEvents"] as? String ?? ""
        #expect(padEvents.contains("\"redacted\":true") && padEvents.contains("\"command\":\"00 20 00 ") && padEvents.contains(" ?? ?? ?? ??"), "\(padEvents)")
        #expect(!padEvents.contains("31 32 33 34") && !padEvents.contains("31323334"))
        #expect(out["secondPageSawRemoval"] as? Bool == true)
        #expect(out["cliInsert"] as? String == "CPS4", "\(out["cliInsert"] ?? "")")
        #expect(out["errors"] as? [String] == [], "page errors: \(out["errors"] ?? "")")
        let png = try Data(contentsOf: URL(fileURLWithPath: Self.screenshot))
        #expect(png.count > 10_000 && png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
    }

    /// Starts `carte sim console --socket SOCKET --port 0`; returns it with the address it printed.
    static func startConsole(socket: String, log: URL, arguments: [String] = []) throws -> (Process, String) {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = Process()
        p.executableURL = PCSCSandbox.carteBinary
        p.arguments = ["sim", "console", "--socket", socket, "--port", "0", "--exit-with-parent"] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: log)
        try p.run()
        var text = ""
        while !text.hasSuffix("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard text.hasPrefix("console on ") else {
            p.terminate()
            throw PCSCSandbox.SandboxError("carte sim console printed \(text.debugDescription)")
        }
        return (p, String(text.dropFirst("console on ".count).dropLast()))
    }

    /// The `Card state` line pcsc_scan -c printed for `reader`.
    static func scanState(_ text: String, reader: String) -> String? {
        let lines = text.split(separator: "\n").map(String.init)
        guard let i = lines.firstIndex(where: { $0.contains(reader) }) else { return nil }
        return lines[(i + 1)...].prefix(4).first { $0.contains("Card state") }
    }

    /// Whether two `carte read --json` documents describe the same card (the people and their NIRs).
    static func sameCard(_ a: [String: Any], _ b: [String: Any]) -> Bool {
        guard let x = a["card"], let y = b["card"] else { return false }
        let dx = try? JSONSerialization.data(withJSONObject: x, options: [.sortedKeys])
        let dy = try? JSONSerialization.data(withJSONObject: y, options: [.sortedKeys])
        return dx != nil && dx == dy
    }
}

private func q(_ s: String) -> String { AgentInBrowserTests.quoted(s) }
