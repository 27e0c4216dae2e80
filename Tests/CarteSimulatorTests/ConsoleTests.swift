import CarteConsole
import CarteCore
import CarteEmulator
import CarteImages
import CarteSimDaemon
import CarteSimProtocol
import Foundation
import Logging
import Synchronization
import Testing

/// The QA console's parts that need no browser: the daemon's activity log (`events`, `trace`), the
/// console's checks of what a page sends, its access rules, its HTTP answers against a daemon in this
/// process, and the export of a trace as a replay image. The page itself is tested in Chromium
/// (IntegrationTests/Console).
@Suite("QA console", .serialized)
struct ConsoleTests {
    /// A daemon in this process with a PIN-pad bi-fente: the Vitale demo in slot 0, a CPS3 in slot 1.
    static func daemon() throws -> (SimulatorServer, String) {
        let path = NSTemporaryDirectory() + "ck-console-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let backend = SimulatorBackend(profiles: [.biFentePINPad])
        try backend.insert(try bundled("demo/vitale2-demo.yaml"), into: backend.readerNames[0])
        try backend.insert(try bundled("cps/medecin-liberal.yaml"), into: backend.readerNames[1])
        let server = SimulatorServer(backend: backend, path: path, logger: Logger(label: "test"), loadImage: { arg in
            guard arg.hasPrefix("bundled:") else { return try CardImageLoader.load(path: arg) }
            return try bundled(String(arg.dropFirst("bundled:".count)))
        })
        try server.start()
        return (server, path)
    }

    /// A driver connection attached to `slot` of reader 0, powered up.
    static func driver(_ path: String, slot: UInt8) throws -> RawClient {
        let c = try RawClient(path)
        try #require(c.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        try #require(c.request(Frame(.attach, [0, 0, 0, slot]))?.type == .ok)
        try #require(c.request(Frame(.power, [1]))?.type == .ok)
        return c
    }

    @Test func theDaemonLogsExchangesWithoutPINsAndGivesEachCardsTrace() throws {
        let (server, path) = try Self.daemon()
        defer { server.stop() }
        let client = SimulatorControlClient(path: path)
        let start = try client.send(["op": "events", "since": 0])["next"] as? Int ?? 0
        let cps = try Self.driver(path, slot: 1)
        _ = cps.request(Frame(.transmit, [0x00, 0xA4, 0x04, 0x00, 0x0C, 0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x10]))
        let verify: [UInt8] = [0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33, 0x34, 0xFF, 0xFF, 0xFF, 0xFF]
        let answer = try #require(cps.request(Frame(.transmit, verify))?.payload)
        let events = try client.send(["op": "events", "since": start])
        let list = events["events"] as? [[String: Any]] ?? []
        #expect(list.first?["type"] as? String == "power" && list.first?["atr"] as? String == "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00", "\(list.first ?? [:])")
        let exchanges = list.filter { $0["type"] as? String == "exchange" }
        #expect(exchanges.count == 2)
        let pin = try #require(exchanges.last)
        #expect(pin["command"] as? String == "00 20 00 01 08 ?? ?? ?? ?? ?? ?? ?? ??" && pin["redacted"] as? Bool == true, "\(pin)")
        #expect(pin["sw"] as? String == Array(answer.suffix(2)).hexString(separator: "") && (pin["meaning"] as? String)?.isEmpty == false)
        #expect(pin["slot"] as? String == "CarteKit Virtual Bi-fente PIN pad 00 01" && pin["viaPad"] as? Bool == false)
        let text = String(decoding: try JSONSerialization.data(withJSONObject: events), as: UTF8.self)
        #expect(!text.contains("31 32 33 34") && !text.contains("31323334"), "the PIN never enters the log")
        // The odd-instruction VERIFY (ISO 7816-4: the PIN in a BER-TLV data object) is a secret too.
        let odd = try client.send(["op": "events", "since": events["next"] as? Int ?? 0])["next"] as? Int ?? 0
        _ = cps.request(Frame(.transmit, [0x00, 0x21, 0x00, 0x01, 0x06, 0x80, 0x04, 0x39, 0x38, 0x37, 0x36]))
        let oddEvents = try client.send(["op": "events", "since": odd])["events"] as? [[String: Any]] ?? []
        #expect(oddEvents.first?["command"] as? String == "00 21 00 01 06 ?? ?? ?? ?? ?? ??" && oddEvents.first?["redacted"] as? Bool == true, "\(oddEvents)")
        // The trace of this card: its three exchanges, the PINs as wildcards; a new card starts a new trace.
        let trace = try client.send(["op": "trace", "reader": "CarteKit Virtual Bi-fente PIN pad 00 01"])
        #expect((trace["exchanges"] as? [[String: Any]])?.count == 3 && trace["atr"] as? String != nil && trace["protocol"] as? String != nil, "\(trace)")
        #expect(try client.send(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:cps/cps4-medecin.yaml"])["ok"] as? Bool == true)
        #expect((try client.send(["op": "trace", "reader": 0, "slot": 1])["exchanges"] as? [Any])?.isEmpty == true)
        // Changes are events too, and the status says what is armed.
        let before = try client.send(["op": "events", "since": 0])["next"] as? Int ?? 0
        #expect(try client.send(["op": "fault", "reader": 0, "slot": 0, "fault": "mute", "count": 2])["ok"] as? Bool == true)
        let changed = try client.send(["op": "events", "since": before])["events"] as? [[String: Any]] ?? []
        #expect(changed.map { $0["what"] as? String } == ["faults"])
        let slots = ((try client.send(["op": "status"])["readers"] as? [[String: Any]])?.first?["slots"] as? [[String: Any]]) ?? []
        #expect(slots.first?["faults"] as? [String] == ["mute (2 APDUs)"] && slots.first?["kind"] as? String == "vitale2", "\(slots.first ?? [:])")
        #expect(slots.last?["kind"] as? String == "cps4" && (slots.last?["keypad"] as? [String: Any])?["waiting"] as? Bool == false)
    }

    @Test func anEventsRequestWaitsForTheNextEventAndSaysWhatWasLost() throws {
        let (server, path) = try Self.daemon()
        defer { server.stop() }
        let client = SimulatorControlClient(path: path)
        let next = try client.send(["op": "events", "since": 0])["next"] as? Int ?? 0
        // A request that waits (up to 20 s) ends with the removal made meanwhile, not with its timeout.
        let answer = Mutex<String?>(nil)
        let waiter = Thread {
            let events = (try? client.send(["op": "events", "since": next, "waitMs": 20_000], timeoutMilliseconds: 30_000))?["events"] as? [[String: Any]]
            let first = events?.first.map { "\($0["type"] as? String ?? "") \($0["what"] as? String ?? "")" } ?? "nothing"
            answer.withLock { $0 = first }
        }
        waiter.start()
        usleep(200_000)
        #expect(try client.send(["op": "remove", "reader": 0, "slot": 0])["ok"] as? Bool == true)
        var got: String? = nil
        for _ in 0..<100 where got == nil {
            usleep(50_000)
            got = answer.withLock { $0 }
        }
        #expect(got == "changed removed")
        // More exchanges than the log keeps: a client asking from the start is told how many it lost.
        let vitale = try Self.driver(path, slot: 1)
        for _ in 0..<(2 * SimulatorActivityLog.eventCapacity + 10) { _ = vitale.request(Frame(.transmit, [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])) }
        let late = try client.send(["op": "events", "since": 1, "limit": 5])
        #expect((late["lost"] as? Int ?? 0) > 0 && (late["events"] as? [Any])?.count == 5, "\(late["lost"] ?? "")")
        for (request, phrase) in [
            (["op": "events", "since": -1] as [String: any Sendable], "\"since\""),
            (["op": "events", "waitMs": 60_001], "\"waitMs\""),
            (["op": "events", "limit": 0], "\"limit\""),
            (["op": "trace", "reader": 9], "no reader 9"),
        ] {
            let a = try client.send(request)
            #expect(a["ok"] as? Bool == false && (a["error"] as? String)?.contains(phrase) == true, "\(a)")
        }
    }

    @Test func aPageRequestIsCheckedBeforeItReachesTheDaemon() throws {
        func decode(_ action: String, _ json: String) -> Result<ConsoleRequest, ConsoleRequestError> {
            do { return .success(try ConsoleRequest.decode(action: action, body: Array(json.utf8))) } catch { return .failure(error) }
        }
        #expect(try decode("insert", #"{"slot":"S","image":"bundled:vitale/ald.yaml"}"#).get() == .insert(slot: "S", image: "bundled:vitale/ald.yaml"))
        #expect(try decode("fault", #"{"slot":"S","fault":"sw","sw":"6f00","count":3}"#).get() == .fault(slot: "S", name: "sw", count: 3, milliseconds: nil, statusWord: "6F00"))
        #expect(try decode("remove", #"{"slot":"S"}"#).get() == .remove(slot: "S"))
        for (action, body, error) in [
            ("nope", "{}", ConsoleRequestError.unknownAction("nope")),
            ("remove", "[1]", .notAnObject),
            ("remove", "not json", .notAnObject),
            ("remove", "{}", .missing("slot")),
            ("remove", #"{"slot":3}"#, .invalid("slot", "a non-empty text")),
            ("insert", #"{"slot":"S","image":"/etc/passwd"}"#, .invalid("image", "a bundled image (bundled:PATH); upload a file with \"upload\"")),
            ("insert", #"{"slot":"S","upload":"x"}"#, .invalid("upload", "an object with \"name\" and \"text\"")),
            ("fault", #"{"slot":"S","fault":"explode"}"#, .invalid("fault", "one of remove-before, remove-during, remove-after, mute, slow, sw, reset, clear, unplug, plug")),
            ("fault", #"{"slot":"S","fault":"slow"}"#, .missing("ms")),
            ("fault", #"{"slot":"S","fault":"mute","count":"3"}"#, .invalid("count", "a whole number")),
            ("fault", #"{"slot":"S","fault":"mute","count":1.5}"#, .invalid("count", "a whole number")),
            ("fault", #"{"slot":"S","fault":"mute","count":0}"#, .invalid("count", "1 to 10000")),
            ("fault", #"{"slot":"S","fault":"sw","sw":"6G00"}"#, .invalid("sw", "a status word in 4 hexadecimal digits (6F00)")),
            ("keypad", #"{"slot":"S","entries":[]}"#, .invalid("entries", "a list of 1 to 8 objects: {\"digits\": \"…\"}, {\"cancel\": true} or {\"timeout\": true}")),
            ("keypad", #"{"slot":"S","entries":[{"digits":"98a76"}]}"#, .invalid("entries[0].digits", "1 to 16 decimal digits")),
            ("keypad", #"{"slot":"S","entries":[{"press":"1"}]}"#, .invalid("entries[0]", "{\"digits\": \"…\"}, {\"cancel\": true} or {\"timeout\": true}")),
        ] {
            #expect(decode(action, body) == .failure(error), "\(action) \(body)")
        }
        #expect(decode("insert", String(repeating: " ", count: ConsoleRequest.maximumBody + 1)) == .failure(.tooLarge(ConsoleRequest.maximumBody + 1)))
        // Keypad digits decoded are never shown: the request's description hides them.
        let keypad = try decode("keypad", #"{"slot":"S","entries":[{"digits":"9876"},{"cancel":true}]}"#).get()
        #expect(!"\(keypad)".contains("9876") && !String(reflecting: keypad).contains("9876"), "\(keypad)")
    }

    @Test func theAccessRulesAreTheAgentsLoopbackRulesWithAKey() {
        let access = ConsoleAccess(port: 8795, key: "00112233445566778899aabbccddeeff")
        #expect(access.checkHost(["127.0.0.1:8795"]) == nil && access.checkHost(["localhost:8795"]) == nil && access.checkHost(["[::1]:8795"]) == nil)
        #expect(access.checkHost(["evil.example:8795"])?.code == "host-not-allowed")
        #expect(access.checkHost(["127.0.0.1:8796"])?.code == "host-not-allowed")
        #expect(access.checkHost([])?.code == "host-not-allowed" && access.checkHost(["127.0.0.1:8795", "127.0.0.1:8795"])?.code == "host-not-allowed")
        #expect(access.checkAction(origins: ["http://127.0.0.1:8795"], contentTypes: ["application/json"]) == nil)
        #expect(access.checkAction(origins: ["http://localhost:8795"], contentTypes: ["application/json; charset=utf-8"]) == nil)
        for origin in [[], ["null"], ["http://evil.example"], ["https://127.0.0.1:8795"], ["http://127.0.0.1:8796"], ["http://127.0.0.1:8795/x"]] {
            #expect(access.checkAction(origins: origin, contentTypes: ["application/json"])?.code == "origin-not-allowed", "\(origin)")
        }
        #expect(access.checkAction(origins: ["http://127.0.0.1:8795"], contentTypes: ["text/plain"])?.code == "not-json")
        #expect(access.checkAction(origins: ["http://127.0.0.1:8795"], contentTypes: [])?.code == "not-json")
        #expect(access.hasKey(["00112233445566778899aabbccddeeff"]) && access.hasKey([" 00112233445566778899aabbccddeeff "]))
        #expect(!access.hasKey(["00112233445566778899aabbccddeefe"]) && !access.hasKey([]) && !access.hasKey([""]))
        #expect(!access.hasKey(["00112233445566778899aabbccddeeff", "00112233445566778899aabbccddeeff"]), "one key header, not several")
        #expect(ConsoleAccess.randomKey().count == 32 && ConsoleAccess.randomKey() != ConsoleAccess.randomKey())
    }

    @Test func theConsoleAnswersOnlyItsOwnPageAndDrivesTheDaemon() throws {
        let (daemon, path) = try Self.daemon()
        defer { daemon.stop() }
        let console = try ConsoleServer(.init(socket: path, port: 0, key: "k3y", files: ["/": (Array("<p>page".utf8), "text/html")],
                                              images: [["spec": "bundled:demo/vitale2-demo.yaml", "name": "demo"]]), logger: Logger(label: "test"))
        defer { console.stop() }
        let port = console.port
        let host = "Host: 127.0.0.1:\(port)\r\n"
        let cookie = "X-CarteKit-Console-Key: k3y\r\n"
        let origin = "Origin: http://127.0.0.1:\(port)\r\n"
        func post(_ path: String, _ body: String, headers: String) throws -> HTTPAnswer {
            try HTTPAnswer.request(port: port, "POST \(path) HTTP/1.1\r\n\(headers)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        #expect(console.address == "http://127.0.0.1:\(port)/#key=k3y", "the key in the fragment: never sent to a server")
        // The page's own files hold no data: served with the right Host. The API wants the key.
        let page = try HTTPAnswer.request(port: port, "GET / HTTP/1.1\r\n\(host)\r\n")
        #expect(page.status == 200 && page.body == "<p>page" && page.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
        let head = try HTTPAnswer.request(port: port, "HEAD / HTTP/1.1\r\n\(host)\r\n")
        #expect(head.status == 200 && head.headers["content-length"] == "7" && head.body.isEmpty)
        #expect(try HTTPAnswer.request(port: port, "GET /api/feed HTTP/1.1\r\n\(host)\r\n").status == 401)
        #expect(try HTTPAnswer.request(port: port, "GET /api/feed HTTP/1.1\r\n\(host)X-CarteKit-Console-Key: k3x\r\n\r\n").status == 401)
        #expect(try HTTPAnswer.request(port: port, "GET /api/export?slot=x HTTP/1.1\r\n\(host)Cookie: carte-console=k3y\r\n\r\n").status == 401, "no cookie stands for the key")
        // A rebinding name, another page's origin, a form's content type: refused before anything runs.
        #expect(try HTTPAnswer.request(port: port, "GET / HTTP/1.1\r\nHost: evil.example:\(port)\r\n\(cookie)\r\n").status == 403)
        // A body larger than any action is refused on its Content-Length, before it is read.
        let huge = try HTTPAnswer.request(port: port, "POST /api/insert HTTP/1.1\r\n\(host)\(cookie)Origin: http://127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{")
        #expect(huge.status == 413)
        let body = #"{"slot":"CarteKit Virtual Bi-fente PIN pad 00 00"}"#
        #expect(try post("/api/remove", body, headers: host + cookie + "Origin: http://evil.example\r\nContent-Type: application/json\r\n").status == 403)
        #expect(try post("/api/remove", body, headers: host + cookie + origin + "Content-Type: text/plain\r\n").status == 403)
        #expect(try post("/api/remove", body, headers: host + origin + "Content-Type: application/json\r\n").status == 401)
        let client = SimulatorControlClient(path: path)
        func state() throws -> String? {
            ((try client.send(["op": "status"])["readers"] as? [[String: Any]])?.first?["slots"] as? [[String: Any]])?.first?["state"] as? String
        }
        #expect(try state() == "card", "nothing was removed by the refused requests")
        // The page's own request: done.
        let json = host + cookie + origin + "Content-Type: application/json\r\n"
        let removed = try post("/api/remove", body, headers: json)
        #expect(removed.status == 200 && removed.body.contains("\"ok\":true"), "\(removed.body)")
        #expect(try state() == "empty")
        // Bad requests get the field at fault; an unknown slot the daemon's words; no card nothing to export.
        let bad = try post("/api/fault", #"{"slot":"x","fault":"melt"}"#, headers: json)
        #expect(bad.status == 400 && bad.body.contains("\\\"fault\\\" must be one of"), "\(bad.body)")
        let unknown = try post("/api/remove", #"{"slot":"Nope"}"#, headers: json)
        #expect(unknown.status == 404 && unknown.body.contains("no reader \\\"Nope\\\""), "\(unknown.body)")
        let export = try HTTPAnswer.request(port: port, "GET /api/export?slot=CarteKit%20Virtual%20Bi-fente%20PIN%20pad%2000%2000 HTTP/1.1\r\n\(host)\(cookie)\r\n")
        #expect(export.status == 409 && export.body.contains("holds no card"), "\(export.body)")
        // An uploaded image that is not one says where it is wrong, and nothing is inserted.
        let upload = try post("/api/insert", #"{"slot":"CarteKit Virtual Bi-fente PIN pad 00 00","upload":{"name":"mine.yaml","text":"format: cartekit-image/1\nname: [\n"}}"#, headers: json)
        #expect(upload.status == 422 && upload.body.contains("mine.yaml"), "\(upload.body)")
        #expect(try state() == "empty")
        let inserted = try post("/api/insert", #"{"slot":"CarteKit Virtual Bi-fente PIN pad 00 00","image":"bundled:demo/vitale2-demo.yaml"}"#, headers: json)
        #expect(inserted.status == 200, "\(inserted.body)")
        #expect(try state() == "card")
        // The feed starts with the daemon's status and the bundled images.
        let feed = try HTTPAnswer.request(port: port, "GET /api/feed HTTP/1.1\r\n\(host)\(cookie)\r\n", until: "\"type\":\"hello\"")
        #expect(feed.status == 200 && feed.headers["content-type"]?.hasPrefix("text/event-stream") == true)
        #expect(feed.body.contains("\"name\":\"demo\"") && feed.body.contains("CarteKit Virtual Bi-fente PIN pad 00 01"), "\(feed.body.prefix(500))")
        let delete = try HTTPAnswer.request(port: port, "DELETE /api/remove HTTP/1.1\r\n\(host)\(cookie)\r\n")
        #expect(delete.status == 405 && delete.headers["allow"] == "POST")
        #expect(try HTTPAnswer.request(port: port, "HEAD /api/feed HTTP/1.1\r\n\(host)\(cookie)\r\n").status == 405)
    }

    @Test func aConsoleWithoutItsDaemonSaysSoAndFollowsItOnceItStarts() throws {
        let path = NSTemporaryDirectory() + "ck-console-late-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let console = try ConsoleServer(.init(socket: path, port: 0, key: "k", files: [:], images: []), logger: Logger(label: "test"))
        defer { console.stop() }
        let request = "GET /api/feed HTTP/1.1\r\nHost: 127.0.0.1:\(console.port)\r\nX-CarteKit-Console-Key: k\r\n\r\n"
        var down = ""
        for _ in 0..<50 where !down.contains("\"up\":false") {
            usleep(50_000)
            down = try HTTPAnswer.request(port: console.port, request, until: "\"type\":\"hello\"").body
        }
        #expect(down.contains("\"up\":false") && down.contains("\"status\":null") && down.lowercased().contains("no such file"), "\(down.prefix(400))")
        // The daemon starts: the console finds it (it retries every half second).
        let backend = SimulatorBackend(profiles: [.monoFente])
        let daemon = SimulatorServer(backend: backend, path: path, logger: Logger(label: "test"), loadImage: { _ in throw CardError.notConnected })
        try daemon.start()
        defer { daemon.stop() }
        var up = ""
        for _ in 0..<100 where !up.contains("\"up\":true") {
            usleep(50_000)
            up = try HTTPAnswer.request(port: console.port, request, until: "\"type\":\"hello\"").body
        }
        #expect(up.contains("\"up\":true") && up.contains("CarteKit Virtual Mono-fente"), "\(up.prefix(400))")
        // The daemon restarts (a new run numbers its events from 1): a page following the feed is told to start over.
        let following = try HTTPStream(port: console.port, request)
        try following.read(until: "\"type\":\"hello\"")
        daemon.stop()
        let again = SimulatorServer(backend: SimulatorBackend(profiles: [.biFente]), path: path, logger: Logger(label: "test"), loadImage: { _ in throw CardError.notConnected })
        try again.start()
        defer { again.stop() }
        var after = try following.read(until: "\"type\":\"reset\"")
        if !after.contains("CarteKit Virtual Bi-fente") { after += try following.read(until: "CarteKit Virtual Bi-fente") }
        #expect(after.contains("\"type\":\"reset\"") && after.contains("CarteKit Virtual Bi-fente"), "\(after.suffix(400))")
    }

    @Test func anExportedTraceIsAReplayImageThatAnswersAsTheCardDid() throws {
        let (server, path) = try Self.daemon()
        defer { server.stop() }
        let vitale = try Self.driver(path, slot: 0)
        let select: [UInt8] = [0x00, 0xA4, 0x04, 0x00, 0x0E] + [0xD2, 0x50, 0x00, 0x00, 0x02, 0x4D, 0x46, 0x5F, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45]
        let answer = try #require(vitale.request(Frame(.transmit, select))?.payload)
        let verify: [UInt8] = [0x00, 0x20, 0x00, 0x00, 0x04, 0x31, 0x32, 0x33, 0x34]
        let refused = try #require(vitale.request(Frame(.transmit, verify))?.payload)
        let trace = try SimulatorControlClient(path: path).send(["op": "trace", "reader": 0, "slot": 0])
        let (name, image) = try ConsoleExport.image(fromTrace: trace, now: Date(timeIntervalSince1970: 1_765_000_000))
        #expect(name == "trace-CarteKit-Virtual-Bi-fente-PIN-pad-00-00-20251206T054640Z.yaml")
        #expect(image.synthetic && image.recorded?.session == "console" && image.replay?.transcript.count == 2)
        // Written and loaded again as any replay image is, it answers the recorded exchanges, any PIN alike.
        let loaded = try CardImageLoader.load(text: CardImageWriter.yaml(image), source: name)
        let card = SimulatedCard(image: loaded)
        #expect(card.process(select) == answer)
        #expect(card.process([0x00, 0x20, 0x00, 0x00, 0x04, 0x39, 0x39, 0x39, 0x39]) == refused)
        #expect(!CardImageWriter.yaml(image).contains("31 32 33 34") && !CardImageWriter.yaml(image).lowercased().contains("31323334"))
        // Many exchanges: the trace is read in pages (each far under the protocol's 1 MiB frame), the export joins them.
        let client = SimulatorControlClient(path: path)
        for _ in 0..<300 { _ = vitale.request(Frame(.transmit, select)) }
        let firstPage = try client.send(["op": "trace", "reader": 0, "slot": 0, "maxBytes": 1024])
        #expect((firstPage["exchanges"] as? [Any])?.count ?? 0 < 302 && firstPage["next"] as? Int != nil, "\(firstPage["next"] ?? "")")
        #expect(try client.send(["op": "trace", "reader": 0, "slot": 0, "maxBytes": 10])["ok"] as? Bool == false)
        var configuration = ConsoleServer.Configuration(socket: path, port: 0, key: "k", files: [:], images: [])
        configuration.tracePage = 1024
        let console = try ConsoleServer(configuration, logger: Logger(label: "test"))
        defer { console.stop() }
        let paged = try HTTPAnswer.request(port: console.port, "GET /api/export?slot=CarteKit%20Virtual%20Bi-fente%20PIN%20pad%2000%2000 HTTP/1.1\r\nHost: 127.0.0.1:\(console.port)\r\nX-CarteKit-Console-Key: k\r\n\r\n")
        #expect(paged.status == 200 && paged.headers["content-disposition"]?.contains("attachment") == true)
        let joined = try CardImageLoader.load(text: paged.body, source: "paged")
        #expect(joined.replay?.transcript.count == 302, "\(joined.replay?.transcript.count ?? 0)")
        #expect(throws: ConsoleExport.Failure.noExchanges("S")) { try ConsoleExport.image(fromTrace: ["slot": "S", "atr": "3B 00", "exchanges": [] as [Any]]) }
        #expect(throws: ConsoleExport.Failure.noCard("S")) { try ConsoleExport.image(fromTrace: ["slot": "S", "exchanges": [] as [Any]]) }
        #expect(throws: ConsoleExport.Failure.malformed("exchange 0: command")) {
            try ConsoleExport.image(fromTrace: ["slot": "S", "atr": "3B 00", "exchanges": [["command": "00 ZZ", "response": "90 00"]]])
        }
    }
}

/// One HTTP/1.1 exchange over a plain TCP socket (so any Host, Origin or header can be sent).
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: String

    /// Sends `raw` to 127.0.0.1:`port` and reads the answer (its Content-Length, or until `until`
    /// appears for a stream).
    static func request(port: Int, _ raw: String, until: String? = nil) throws -> HTTPAnswer {
        let fd = try connectAndSend(port: port, raw, timeoutSeconds: 10)
        defer { close(fd) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            if raw.hasPrefix("HEAD ") { break }  // no body follows
            if let until, let at = text.range(of: until), text[at.upperBound...].contains("\n\n") { break }
            let head = text[..<end.lowerBound].lowercased()
            if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
               let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)),
               received.count >= text[..<end.upperBound].utf8.count + length { break }
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { throw SocketError(operation: "recv", path: "127.0.0.1:\(port)", reason: "no answer: \(text)") }
        let lines = text[..<end.lowerBound].split(separator: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return HTTPAnswer(status: status, headers: headers, body: String(text[end.upperBound...]))
    }
}

/// A server-sent events stream kept open: reads until a text arrives (and its message ends).
final class HTTPStream {
    let fd: Int32
    private var received: [UInt8] = []

    init(port: Int, _ raw: String) throws {
        fd = try connectAndSend(port: port, raw, timeoutSeconds: 15)
    }
    deinit { close(fd) }

    /// Everything read since the previous call, once `text` is in it and its message ended.
    @discardableResult
    func read(until text: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let seen = String(decoding: received, as: UTF8.self)
            if let at = seen.range(of: text), seen[at.upperBound...].contains("\n\n") {
                received = []
                return seen
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
            guard n > 0 else { throw SocketError(operation: "recv", path: "feed", reason: "ended before \(text): \(seen.suffix(300))") }
            received += buffer[0..<n]
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` that has sent `raw`, reads timing out after `timeoutSeconds`.
func connectAndSend(port: Int, _ raw: String, timeoutSeconds: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else {
        close(fd)
        throw SocketError(operation: "connect", path: "127.0.0.1:\(port)", reason: "refused")
    }
    var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(raw.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    return fd
}
