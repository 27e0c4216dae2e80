import CarteAgent
import CarteCore
import CarteEmulator
import CarteKit
import Foundation
import Logging
import Testing

/// A page that subscribes to events and then stops reading is cut (close 1008, policy violation) once
/// more than `pendingWrites` messages wait for it; the agent keeps serving the others. The client is
/// Debian's python3-websocket with a small receive buffer; the events are readers plugged in and out of
/// the in-memory simulator, as fast as it goes.
@Suite("carte agent: a client that stops reading", .timeLimit(.minutes(2)))
struct AgentSlowClientTests {
    @Test func aSubscriberThatStopsReadingIsCutAndOthersAreStillServed() async throws {
        let backend = SimulatorBackend()
        let manager = ReaderManager(backend: backend)
        let logger = Logger(label: "cartekit.agent.test") { _ in SwiftLogNoOpLogHandler() }
        let service = AgentService(manager: manager, trust: CertificateTrust(roots: [], intermediates: []), agentVersion: "test", logger: logger)
        var limits = AgentServer.Limits()
        limits.pendingWrites = 16
        let server = try AgentServer(service: service, port: 0, allowedOrigins: ["http://127.0.0.1:8123"], token: String(repeating: "ab", count: 32),
                                     limits: limits, logger: logger)
        defer { server.stop() }
        let script = """
            import json, socket, sys, time, websocket
            url = "ws://127.0.0.1:\(server.port)/carte.agent/1"
            ws = websocket.create_connection(url, origin="http://127.0.0.1:8123", timeout=60,
                                             sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 2048),))
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe"}))
            while json.loads(ws.recv()).get("id") != 1: pass
            print("subscribed", flush=True)
            sys.stdin.readline()          # the events are sent meanwhile; nothing is read
            code, events = None, 0
            try:
                while code is None:
                    op, data = ws.recv_data(control_frame=True)
                    if op == websocket.ABNF.OPCODE_CLOSE: code = int.from_bytes(data[:2], "big")
                    else: events += 1
            except Exception as e:
                code = -1
            other = websocket.create_connection(url, origin="http://127.0.0.1:8123", timeout=10)
            other.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "hello"}))
            served = json.loads(other.recv())["result"]["protocol"]
            print(json.dumps({"close": code, "events": events, "other": served}), flush=True)
            """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        python.arguments = ["-c", script]
        let input = Pipe()
        let output = Pipe()
        python.standardInput = input
        python.standardOutput = output
        python.standardError = FileHandle.nullDevice
        try python.run()
        defer { if python.isRunning { python.terminate() } }
        var first = ""
        while !first.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            first += String(decoding: chunk, as: UTF8.self)
        }
        try #require(first.hasPrefix("subscribed"), "\(first)")
        // Readers in and out until the agent cuts the client (or 40 000 events).
        let profile = VirtualReaderProfile(id: "flood", name: "Flood Reader", vendor: "CarteKit (synthetic)", firmwareVersion: "1.00", slots: [.init(role: "vitale")])
        for round in 0..<20_000 {
            let slots = backend.addReader(profile)
            try backend.removeReader(slots[0].name)
            if round % 500 == 499 {
                await Task.yield()
                if server.openConnections == 0 { break }
            }
        }
        try input.fileHandleForWriting.write(contentsOf: Data("go\n".utf8))
        let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        let result = try #require(try JSONSerialization.jsonObject(with: Data(rest.utf8)) as? [String: Any], "\(rest)")
        #expect(result["close"] as? Int == 1008, "a client that stops reading is cut: \(result)")
        #expect(result["other"] as? String == "carte.agent/1")
    }
}
