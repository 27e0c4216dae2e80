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
            (["op": "insert", "reader": "CarteKit", "slot": 0, "image": "x"], "names 2 readers"),
            (["op": "insert", "reader": "Nope", "slot": 0, "image": "x"], "no reader \"Nope\""),
        ] {
            let answer = try client.send(request)
            #expect(answer["ok"] as? Bool == false)
            #expect((answer["error"] as? String)?.contains(phrase) == true, "\(answer)")
        }
    }

    @Test func aPINPadReaderAnswersPart10AndItsKeypadIsScriptedByControlClients() throws {
        let path = NSTemporaryDirectory() + "ck-pad-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let backend = SimulatorBackend(profiles: [.biFentePINPad, .monoFente])
        try backend.insert(try bundled("cps/medecin-liberal.yaml"), into: backend.readerNames[1])
        let server = SimulatorServer(backend: backend, path: path, logger: Logger(label: "test"), loadImage: { _ in throw CardError.notConnected })
        try server.start()
        defer { server.stop() }
        let c = try RawClient(path)
        #expect(c.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(c.request(Frame(.attach, [0, 0, 0, 1]))?.type == .ok)
        let features = try #require(c.request(Frame(.control, bigEndian(0x4200_0D48)))?.payload)
        #expect(Part10.decodeFeatureList(features) == [0x06: 0x4233_0006, 0x07: 0x4233_0007, 0x0A: 0x4233_000A, 0x12: 0x4233_0012])
        #expect(c.request(Frame(.control, bigEndian(0x4233_000A)))?.payload == [0x10, 0x02, 0x02, 0x00])
        let tlv = Part10.decodeProperties(try #require(c.request(Frame(.control, bigEndian(0x4233_0012)))?.payload))
        #expect(tlv[0x01] == [0x10, 0x02] && tlv[0x06] == [4] && tlv[0x07] == [8] && tlv[0x0A] == [0, 0, 1, 0])
        // A malformed structure is refused as libccid does (not supported), and the connection goes on.
        #expect(c.request(Frame(.control, bigEndian(0x4233_0006) + [1, 2, 3]))?.failure?.code == .unsupported)
        let client = SimulatorControlClient(path: path)
        #expect(try client.send(["op": "keypad", "reader": 0, "slot": 1, "entries": [["digits": "1234"]]])["pending"] as? Int == 1)
        let verify = PINVerifyStructure(format: .ascii(blockSize: 8), minimumLength: 4, maximumLength: 8,
                                        template: try PINCommandTemplate(header: [0x00, 0x20, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 8)))
        #expect(c.request(Frame(.control, bigEndian(0x4233_0006) + verify.encoded))?.payload == [0x90, 0x00])
        _ = try client.send(["op": "keypad", "reader": 0, "slot": 1, "entries": [["cancel": true], ["timeout": true], ["digits": "123456789"]] as [[String: any Sendable]]])
        for sw: [UInt8] in [[0x64, 0x01], [0x64, 0x00], [0x64, 0x03]] {
            #expect(c.request(Frame(.control, bigEndian(0x4233_0006) + verify.encoded))?.payload == sw)
        }
        // The status says what is queued, never the digits.
        _ = try client.send(["op": "keypad", "reader": 0, "slot": 1, "entries": [["digits": "2468"]]])
        let status = try client.send(["op": "status"])
        let reader = try #require((status["readers"] as? [[String: Any]])?.first)
        #expect((reader["pinPad"] as? [String: Any])?["maximumPINLength"] as? Int == 8)
        let slot = try #require((reader["slots"] as? [[String: Any]])?[1])
        #expect((slot["keypad"] as? [String: Any])?["pending"] as? Int == 1)
        let data = try JSONSerialization.data(withJSONObject: status)
        #expect(!String(decoding: data, as: UTF8.self).contains("2468"))
        #expect(try client.send(["op": "keypad", "reader": 0, "slot": 1, "clear": true])["pending"] as? Int == 0)
        // Refusals are precise.
        for (request, phrase) in [
            (["op": "keypad", "reader": 1, "slot": 0, "entries": [["digits": "1234"]]] as [String: any Sendable], "has no PIN pad"),
            (["op": "keypad", "reader": 0, "slot": 1, "entries": [["digits": "12x4"]]], "only the digits 0-9"),
            (["op": "keypad", "reader": 0, "slot": 1, "entries": [["nothing": true]]], "needs \"digits\""),
            (["op": "keypad", "reader": 0, "slot": 1, "entries": "1234"], "a list of objects"),
            (["op": "keypad", "reader": 0, "slot": 1, "entries": [["digits": "1234", "afterMs": -1] as [String: any Sendable]]], "afterMs"),
        ] {
            let answer = try client.send(request)
            #expect(answer["ok"] as? Bool == false && (answer["error"] as? String)?.contains(phrase) == true, "\(answer)")
        }
        // A driver that gives up (its connection closes) ends the prompt: a later entry is not typed for nobody.
        let leaving = try RawClient(path)
        #expect(leaving.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(leaving.request(Frame(.attach, [0, 0, 0, 1]))?.type == .ok)
        leaving.write(Frame(.control, bigEndian(0x4233_0006) + verify.encoded).encoded())
        usleep(150_000)
        shutdown(leaving.fd, Int32(SHUT_RDWR))
        usleep(300_000)
        _ = try client.send(["op": "keypad", "reader": 0, "slot": 1, "entries": [["digits": "9999"]]])
        usleep(300_000)
        #expect(try client.send(["op": "keypad", "reader": 0, "slot": 1])["pending"] as? Int == 1)
        #expect(try backend.remainingTries(forPIN: 0x01, in: backend.readerNames[1]) == 3)
        // A reader without a pad announces only the TLV properties and refuses the PIN codes.
        let m = try RawClient(path)
        #expect(m.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(m.request(Frame(.attach, [0, 1, 0, 0]))?.type == .ok)
        #expect(m.request(Frame(.control, bigEndian(0x4200_0D48)))?.payload == [0x12, 0x04, 0x42, 0x33, 0x00, 0x12])
        #expect(m.request(Frame(.control, bigEndian(0x4233_0006) + verify.encoded))?.failure?.code == .unsupported)
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
        #expect(ids == ["mono-fente", "bi-fente", "contactless", "bi-fente-pinpad"])
        #expect(VirtualReaderProfile.builtIn.allSatisfy { $0.synthetic })
        #expect(VirtualReaderProfile.biFente.slots.map(\.role) == ["vitale", "cpx"])
        #expect(VirtualReaderProfile.contactless.slots.first?.contactless == true)
        let pad = VirtualReaderProfile.biFentePINPad.pinPad
        #expect(pad == PINPadProfile(verify: true, modify: true, announced: true, displayCharacters: 16, displayLines: 2, minimumPINLength: 4, maximumPINLength: 8,
                                     entryValidationCondition: 2, timeout2: 0, defaultTimeoutSeconds: 30))
        #expect(VirtualReaderProfile.builtIn.filter { $0.pinPad != nil }.map(\.id) == ["bi-fente-pinpad"])
    }

    @Test func aPINPadSectionAndKeypadScriptsLoad() throws {
        let text = """
            format: carte-reader/1
            id: pad
            name: Pad
            vendor: V
            firmware: "1.00"
            synthetic: true
            slots: [{ role: cpx }]
            pin-pad:
              modify: false
              announced: true
              display: none
              min-pin: 6
              max-pin: 12
              entry-validation: 7
              timeout2: 5
              default-timeout: 9
              script:
                - { digits: "123456", after-ms: 250 }
                - { cancel: true }
                - { timeout: true }
            """
        let p = try ReaderProfileLoader.load(text: text, source: "p.yaml")
        let pad = try #require(p.pinPad)
        #expect(!pad.modify && pad.verify && pad.lcdLayout == 0 && pad.minimumPINLength == 6 && pad.maximumPINLength == 12)
        #expect(pad.entryValidationCondition == 7 && pad.timeout2 == 5 && pad.defaultTimeoutSeconds == 9)
        #expect(pad.script.count == 3 && pad.script[1] == .cancel(after: .zero) && pad.script[2] == .timeout)
        // Entries describe themselves without their digits.
        #expect("\(pad.script[0])" == "6 digits after 0.25 seconds" && !String(reflecting: pad.script[0]).contains("123456"))
        // A card image may script the keypad too, and writing it keeps the script.
        let image = """
            format: carte-image/1
            name: Pad test
            synthetic: true
            card: { atr: 3B 02 14 50, protocol: T=0 }
            keypad:
              - { digits: "1234" }
              - { cancel: true, after-ms: 10 }
            filesystem: { fid: 3F00 }
            """
        let loaded = try CardImageLoader.load(text: image, source: "i.yaml")
        #expect(loaded.keypad.count == 2 && loaded.keypad[1] == .cancel(after: .milliseconds(10)))
        #expect(try CardImageLoader.load(text: CardImageWriter.yaml(loaded), source: "again.yaml").keypad == loaded.keypad)
    }

    @Test func bundledCopiesAreTheFilesInFirmware() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for file in ["mono-fente", "bi-fente", "contactless", "bi-fente-pinpad"] {
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
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\npin-pad: { display: big }\n", "pin-pad.display", "16x2"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\npin-pad: { min-pin: 8, max-pin: 4 }\n", "pin-pad.max-pin", "at least min-pin"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\npin-pad: { script: [{ digits: \"12a4\" }] }\n", "pin-pad.script[0].digits", "only the digits"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\npin-pad: { script: [{ after-ms: 3 }] }\n", "pin-pad.script[0]", "digits, cancel"),
        ("format: carte-reader/1\nid: x\nname: X\nvendor: V\nfirmware: \"1.00\"\nsynthetic: true\nslots: [{}]\npin-pad: { colour: red }\n", "pin-pad.colour", "unknown field"),
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
