import CarteSimDaemon
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

/// A reader unplugged and plugged back: `carte sim serve --usb` shows its reader as a fake USB device
/// (umockdev) that pcscd finds by its own hotplug, and `carte sim fault READER 0 unplug|plug` makes pcscd
/// remove it and add it again; the middleware reports both as events, a read in flight ends with a
/// typed error, and reading works again once the reader is back.
@Suite("Reader unplugged and plugged back through pcscd's hotplug", .serialized, .enabled(if: PCSCSandbox.enabled), .timeLimit(.minutes(2)))
struct USBHotplugThroughPCSCDTests {
    /// pcscd's name for the daemon's bi-fente reader on USB: the friendly name, the serial, the index.
    static let name = "CarteKit Virtual Bi-fente (CKV-B-0001) 00"

    @Test func theReaderLeavesAndReturnsWithEventsATypedErrorAndARecovery() throws {
        let s = try sandbox()
        try #require(UmockdevTestbed.unavailableReason == nil, "\(UmockdevTestbed.unavailableReason ?? "")")
        let dir = s.directory.appendingPathComponent("usb-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("conf"), withIntermediateDirectories: true)

        let socket = dir.appendingPathComponent("sim.sock").path
        let daemon = try s.serve(socket: socket, ["--profile", "bi-fente", "--image", "bundled:demo/vitale2-demo.yaml",
                                                  "--usb", "--driver", PCSCSandbox.driver.path, "--timeout", "2000"])
        defer { daemon.terminate(); daemon.waitUntilExit() }
        // What pcscd needs, as the daemon reports it.
        let status = try s.run(PCSCSandbox.carteBinary.path, ["sim", "status", "--socket", socket, "--json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status.stdout)")
        var environment = try #require(json["usb"] as? [String: String], "\(json)")
        let drivers = try #require(environment["drivers"])
        environment["drivers"] = nil
        #expect(environment["CARTEKIT_USB_1209_ca00"]?.hasPrefix(socket) == true && environment["UMOCKDEV_DIR"] != nil, "\(environment)")
        let pcscd = PrivatePCSCD(configurationDirectory: dir.appendingPathComponent("conf").path, workDirectory: dir.path, debug: true,
                                 maximumLifetime: 120, usbDrivers: drivers, environment: environment)
        try pcscd.start()
        defer { pcscd.stop() }

        func carte(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try s.run(PCSCSandbox.carteBinary.path, arguments, environment: ["PCSCLITE_CSOCK_NAME": pcscd.clientSocket])
        }
        func readers() throws -> [String] {
            let r = try carte(["readers", "--backend", "pcsc", "--json"])
            guard let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                  let list = json["readers"] as? [[String: Any]] else { return [] }
            return list.compactMap { $0["name"] as? String }
        }
        try s.waitFor("pcscd's hotplug adds the USB reader") { try readers().contains { $0.hasPrefix(Self.name) } }
        let before = try carte(["read", "--backend", "pcsc", "--json"])
        try #require(before.status == 0, "\(before.stderr)")

        // Events, watched by a separate carte process for the whole scenario.
        var env = ProcessInfo.processInfo.environment
        env["PCSCLITE_CSOCK_NAME"] = pcscd.clientSocket
        let watch = Process()
        watch.executableURL = PCSCSandbox.carteBinary
        watch.arguments = ["watch", "--backend", "pcsc", "--json", "--seconds", "90"]  // ended by the test
        watch.environment = env
        let watched = Pipe()
        watch.standardOutput = watched
        watch.standardError = FileHandle.nullDevice
        try watch.run()
        // The watcher is live once it reports a card put into the empty second slot (a fixed delay was
        // not enough on a loaded machine: a watcher that starts after the unplug never knew the reader).
        _ = try SimulatorControlClient(path: socket).send(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:demo/iso-generic.yaml"])
        var early = Data()
        while !String(decoding: early, as: UTF8.self).contains("card-inserted") {
            let chunk = watched.fileHandleForReading.readData(ofLength: 1)
            if chunk.isEmpty { break }
            early.append(chunk)
        }

        // A read in flight (each APDU slowed to 300 ms) when the reader is pulled out.
        _ = try SimulatorControlClient(path: socket).send(["op": "fault", "reader": 0, "slot": 0, "fault": "slow", "ms": 300])
        let reading = Process()
        reading.executableURL = PCSCSandbox.carteBinary
        reading.arguments = ["read", "--backend", "pcsc", "--json", "-vv", "--reader", Self.name + " 00"]
        reading.environment = env
        let readOut = Pipe(), readErr = Pipe()
        reading.standardOutput = readOut
        reading.standardError = readErr
        try reading.run()
        // Unplug once the card has answered its first APDU (the trace on standard error says so): the
        // next ones, 300 ms each, are in flight.
        var trace = Data()
        while !String(decoding: trace, as: UTF8.self).contains("] < ") {
            let chunk = readErr.fileHandleForReading.readData(ofLength: 1)
            if chunk.isEmpty { break }
            trace.append(chunk)
        }
        let unplug = try s.run(PCSCSandbox.carteBinary.path, ["sim", "fault", "--socket", socket, "0", "0", "unplug"])
        #expect(unplug.status == 0, "\(unplug.stderr)")
        let readError = trace + readErr.fileHandleForReading.readDataToEndOfFile()
        let readJSON = readOut.fileHandleForReading.readDataToEndOfFile()
        reading.waitUntilExit()
        #expect(reading.terminationReason == .exit && reading.terminationStatus == 3,
                "the read in flight ends with the card/reader exit code: \(reading.terminationStatus) \(String(decoding: readError, as: UTF8.self))")
        let failure = String(decoding: readJSON, as: UTF8.self)
        #expect(failure.contains("carte.error/1") && (failure.contains("no longer available") || failure.contains("removed")), "\(failure)")
        try s.waitFor("the reader leaves pcscd") { try !readers().contains { $0.hasPrefix(Self.name) } }
        let absent = try carte(["read", "--backend", "pcsc", "--json", "--reader", Self.name + " 00"])
        #expect(absent.status == 3 && absent.stdout.contains("carte.error/1"), "reading an unplugged reader: \(absent)")

        // Plugged back: the same reader returns and reads as before.
        _ = try SimulatorControlClient(path: socket).send(["op": "fault", "reader": 0, "slot": 0, "fault": "clear"])
        let plug = try s.run(PCSCSandbox.carteBinary.path, ["sim", "fault", "--socket", socket, "0", "0", "plug"])
        #expect(plug.status == 0, "\(plug.stderr)")
        try s.waitFor("the reader returns") { try readers().contains { $0.hasPrefix(Self.name) } }
        var after = (status: Int32(-1), stdout: "", stderr: "")
        for _ in 0..<50 {
            after = try carte(["read", "--backend", "pcsc", "--json"])
            if after.status == 0 { break }
            usleep(100_000)
        }
        #expect(after.status == 0 && after.stdout == before.stdout, "a read after the replug: \(after.stderr)")

        watch.terminate()
        let lines = String(decoding: early + watched.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        watch.waitUntilExit()
        // `atr` is null for events without a card: the objects are not all-string.
        let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { ($0["reader"] as? String)?.hasPrefix(Self.name) == true }.map { $0["event"] as? String ?? "" }
        let removed = events.firstIndex(of: "reader-removed"), added = events.lastIndex(of: "reader-added")
        #expect(removed != nil && added != nil && removed! < added!, "reader events: \(events)")
        #expect(events.filter { $0 == "reader-removed" }.count == 2, "both slots leave: \(events)")
    }
}
