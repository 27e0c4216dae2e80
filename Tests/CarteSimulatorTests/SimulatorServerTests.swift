import CarteCore
import CarteSimProtocol
import CarteEmulator
import CarteImages
import CarteSimDaemon
import Foundation
import Logging
import PropertyBased
import Testing

/// A daemon in this process on a temporary socket, with a mono-fente reader holding the generic card.
func startServer() throws -> (SimulatorServer, String) {
    let path = NSTemporaryDirectory() + "ck-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let backend = SimulatorBackend(profiles: [.monoFente, .biFente])
    try backend.insert(try bundled("demo/iso-generic.yaml"), into: backend.readerNames[0])
    let server = SimulatorServer(backend: backend, path: path, logger: Logger(label: "test"), loadImage: { arg in
        guard arg.hasPrefix("bundled:") else { return try CardImageLoader.load(path: arg) }
        return try bundled(String(arg.dropFirst("bundled:".count)))
    })
    try server.start()
    return (server, path)
}

/// A raw connection speaking frames (what the driver does).
final class RawClient {
    let fd: Int32
    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { b in for (i, c) in path.utf8.enumerated() { b[i] = c } }
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw SocketError(operation: "connect", path: path, reason: "failed") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }
    func write(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) } }
    func read() -> Frame? {
        func exactly(_ n: Int) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: n)
            var got = 0
            while got < n {
                let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
                if r <= 0 { return nil }
                got += r
            }
            return out
        }
        guard let h = exactly(4), let n = try? Frame.length(fromHeader: h), let body = exactly(n) else { return nil }
        return try? Frame(body: body)
    }
    func request(_ frame: Frame) -> Frame? {
        write(frame.encoded())
        return read()
    }
}

@Suite("Simulator daemon protocol", .serialized)
struct SimulatorServerTests {
    @Test func driverConversation() throws {
        let (server, path) = try startServer()
        defer { server.stop() }
        let c = try RawClient(path)
        #expect(c.request(Frame(.presence))?.failure?.code == .notAttached)  // hello first
        #expect(c.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(c.request(Frame(.transmit, [0x00, 0xA4, 0x00, 0x0C]))?.failure?.code == .notAttached)
        #expect(c.request(Frame(.attach, [0, 9, 0, 0]))?.failure?.code == .noSuchSlot)
        let attach = try #require(c.request(Frame(.attach, [0, 0, 0, 0])))
        let description = try ReaderDescription(decoding: attach.payload)
        #expect(description.name == "CarteKit Virtual Mono-fente" && description.ifdVersion == 0x0100_0000 && description.slotCount == 1)
        #expect(c.request(Frame(.presence))?.payload.first == SlotPresence.present.rawValue)  // + insertion counter
        #expect(c.request(Frame(.power, [1]))?.payload.first == 0x3B)
        #expect(c.request(Frame(.transmit, [0x00, 0xA4, 0x00, 0x0C]))?.payload == [0x90, 0x00])
        #expect(c.request(Frame(.control, bigEndian(0x4200_0D48)))?.payload == [0x12, 0x04, 0x42, 0x33, 0x00, 0x12])
        #expect(c.request(Frame(.control, bigEndian(0x4200_0001)))?.failure?.code == .unsupported)
        #expect(c.request(Frame(.controlRequest, Array("{}".utf8)))?.failure?.code == .badRequest)  // not on a driver connection
    }

    @Test func malformedFramesAreRefusedAndTheDaemonSurvives() throws {
        let (server, path) = try startServer()
        defer { server.stop() }
        for garbage: [UInt8] in [[0, 0, 0, 0], [0x7F, 0xFF, 0xFF, 0xFF, 1], [0, 0, 0, 1, 0xEE], [0, 0, 0, 9, 1]] {
            let c = try RawClient(path)
            c.write(garbage)
            if garbage.count == 5 && garbage[3] == 9 {
                close(c.fd)  // closed in the middle of a frame
                continue
            }
            let reply = c.read()
            #expect(reply?.failure?.code == .badRequest, "\(garbage.hexString())")
        }
        // Still serving.
        let ok = try RawClient(path)
        #expect(ok.request(Frame(.hello, [2, 0, 1]))?.type == .ok)
        #expect(ok.request(Frame(.hello, [2, 0, 1]))?.failure?.code == .badRequest)  // only once
        let old = try RawClient(path)
        #expect(old.request(Frame(.hello, [1, 0, 9]))?.failure?.code == .badRequest)  // future protocol version
    }

    @Test func controlRequests() throws {
        let (server, path) = try startServer()
        defer { server.stop() }
        let client = SimulatorControlClient(path: path)
        let status = try client.send(["op": "status"])
        let readers = status["readers"] as? [[String: Any]] ?? []
        #expect(readers.count == 2)
        #expect((readers[0]["slots"] as? [[String: Any]])?.first?["state"] as? String == "card")
        #expect(try client.send(["op": "insert", "reader": 1, "slot": 1, "image": "bundled:demo/vitale2-demo.yaml"])["ok"] as? Bool == true)
        #expect(try client.send(["op": "insert", "reader": "CarteKit Virtual Bi-fente", "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])["ok"] as? Bool == true)
        #expect(try client.send(["op": "remove", "reader": 1, "slot": 1])["ok"] as? Bool == true)
        for (request, phrase) in [
            (["op": "nope"] as [String: any Sendable], "unknown op"),
            (["op": "insert", "reader": 7, "slot": 0, "image": "x"], "no reader 7"),
            (["op": "insert", "reader": 1, "slot": 5, "image": "x"], "no slot 5"),
            (["op": "insert", "reader": 1, "slot": 0], "needs \"image\""),
            (["op": "insert", "reader": 1, "slot": 0, "image": "/nonexistent.yaml"], "no such file"),
            (["op": "insert", "reader": "CarteKit", "slot": 0, "image": "x"], "matches 2 readers"),
        ] {
            let answer = try client.send(request)
            #expect(answer["ok"] as? Bool == false)
            #expect((answer["error"] as? String)?.contains(phrase) == true, "\(answer)")
        }
    }

    @Test func aLiveSocketIsNotStolenAndAStaleOneIsReplaced() throws {
        let (server, path) = try startServer()
        let second = SimulatorServer(backend: SimulatorBackend(), path: path, logger: Logger(label: "test"), loadImage: { _ in throw CardError.cancelled })
        #expect(throws: SocketError.self) { try second.start() }
        server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
        let third = SimulatorServer(backend: SimulatorBackend(), path: path, logger: Logger(label: "test"), loadImage: { _ in throw CardError.cancelled })
        try third.start()
        third.stop()
        var st = stat()
        #expect(lstat(path, &st) != 0)  // removed on stop
    }
}

@Suite("Wire protocol")
struct WireTests {
    @Test func framesRoundTrip() async {
        await propertyCheck(count: 300, input: Gen.uint8().array(of: 0...600), Gen.int(in: 0...(MessageType.allCases.count - 1))) { payload, index in
            let type = MessageType.allCases[index]
            let frame = Frame(type, payload)
            let bytes = frame.encoded()
            let length = try? Frame.length(fromHeader: Array(bytes.prefix(4)))
            #expect(length == payload.count + 1)
            #expect((try? Frame(body: Array(bytes.dropFirst(4)))) == frame)
        }
    }

    @Test func badFramesAreTyped() {
        #expect(throws: WireError.invalidLength(0)) { try Frame.length(fromHeader: [0, 0, 0, 0]) }
        #expect(throws: WireError.invalidLength(Wire.maximumFrame + 1)) { try Frame.length(fromHeader: bigEndian(UInt32(Wire.maximumFrame + 1))) }
        #expect(throws: WireError.unknownType(0xEE)) { try Frame(body: [0xEE]) }
        #expect(Frame.failure(.mute, "no answer").failure?.code == .mute)
        #expect(Frame(.ok).failure == nil)
    }

    @Test func readerDescriptionsRoundTripAndRejectTruncation() throws {
        let d = ReaderDescription(name: "R", vendor: "V", model: "M", ifdVersion: 0x0108_0000, serialNumber: "S", slotCount: 2,
                                  contactless: true, maxAPDUDataSize: 0x10000, usbVendorID: 0x1C34, usbProductID: 0xAFC0)
        #expect(try ReaderDescription(decoding: d.encoded()) == d)
        #expect(throws: WireError.self) { try ReaderDescription(decoding: Array(d.encoded().dropLast())) }
    }
}

@Suite("Reader profiles")
struct ReaderProfileTests {
    @Test func bundledProfilesLoadAndAreSynthetic() {
        let ids = VirtualReaderProfile.builtIn.map(\.id)
        #expect(ids == ["mono-fente", "bi-fente", "contactless"])
        #expect(VirtualReaderProfile.builtIn.allSatisfy { $0.synthetic })
        #expect(VirtualReaderProfile.biFente.slots.map(\.role) == ["vitale", "cpx"])
        #expect(VirtualReaderProfile.contactless.slots.first?.contactless == true)
    }

    @Test func bundledCopiesAreTheFilesInFirmware() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for file in ["mono-fente", "bi-fente", "contactless"] {
            let path = root.appendingPathComponent("Firmware/virtual/\(file).yaml").path
            #expect(try ReaderProfileLoader.load(path: path) == VirtualReaderProfile.builtIn.first { $0.id == file })
        }
    }

    @Test func firmwareVersionsBecomeIFDVersions() {
        var p = VirtualReaderProfile.monoFente
        for (text, value) in [("1.08", UInt32(0x0108_0000)), ("4.22", 0x0422_0000), ("1.5", 0x0150_0000), ("x", 0)] {
            p.firmwareVersion = text
            #expect(p.ifdVersion == value, "\(text)")
        }
    }

    @Test("malformed profiles name the field", arguments: [
        ("format: carte-reader/1\nid: a b\n", "id", "letters, digits"),
        ("format: carte-reader/2\n", "format", "unsupported"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.x\"\nsynthetic: true\nslots: []\n", "firmware", "major.minor"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: []\n", "slots", "1 to 16"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{ role: patient }]\n", "slots[0].role", "vitale, cpx or any"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\nusb: { vendor: 1C }\n", "usb.vendor", "2 bytes"),
    ])
    func malformed(text: String, field: String, phrase: String) {
        #expect {
            try ReaderProfileLoader.load(text: text, source: "p.yaml")
        } throws: { error in
            guard let e = error as? CardImageError else { return false }
            return e.field == field && e.description.contains(phrase)
        }
    }
}
