import CarteBundledScripts
import CarteSimulator
import Foundation

/// The fake USB readers of `carte sim serve --usb`: each virtual reader is also a USB device in a
/// umockdev testbed (run by the embedded `scripts/usb-testbed.py`), so a pcscd started with
/// ``pcscdEnvironment`` and ``drivers`` over `/usr/lib/pcsc/drivers` finds it through its own hotplug,
/// and `unplug` / `plug` remove it from pcscd and bring it back — what a technician's USB cable does.
final class SimulatedUSBReaders: @unchecked Sendable {
    let directory: URL
    let devices: [FakeUSBDevice]
    let drivers: URL
    let testbed: String
    /// The variables pcscd needs (the testbed, umockdev's preload, each reader's DEVICENAME).
    let pcscdEnvironment: [String: String]
    private let helper: Process
    private let input: FileHandle
    private let output: FileHandle
    private let lock = NSLock()

    /// Builds the devices, the driver bundle and the testbed for `readers` (profile and slot count each).
    init(readers: [(profile: VirtualReaderProfile, slots: Int)], socket: String, driver: String, timeout: Int) throws {
        guard FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0") || FileManager.default.fileExists(atPath: "/usr/lib/aarch64-linux-gnu/libumockdev-preload.so.0") else {
            throw CLIError(kind: "usb", message: "--usb needs umockdev (Debian packages umockdev, gir1.2-umockdev-1.0, python3-gi: scripts/bootstrap.sh installs them)", exitCode: CarteExit.invalidInput)
        }
        guard FileManager.default.fileExists(atPath: driver) else {
            throw CLIError(kind: "usb", message: "\(driver) is not built (swift build --product ifdcarte)", exitCode: CarteExit.invalidInput)
        }
        directory = URL(fileURLWithPath: socket + ".usb")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Unique ids: the profile's when it has some not taken yet, else synthetic ones (pid.codes 1209).
        var used = Set<UInt32>()
        var made: [FakeUSBDevice] = []
        for (i, reader) in readers.enumerated() {
            var vid = reader.profile.usbVendorID ?? 0x1209, pid = reader.profile.usbProductID ?? UInt16(0xCA00 + i)
            if used.contains(UInt32(vid) << 16 | UInt32(pid)) { (vid, pid) = (0x1209, UInt16(0xCA00 + i)) }
            used.insert(UInt32(vid) << 16 | UInt32(pid))
            let firmware = reader.profile.firmwareVersion.split(separator: ".").compactMap { UInt16($0, radix: 16) }
            made.append(FakeUSBDevice(syspath: "/devices/pci0000:00/0000:00:14.0/usb1/1-\(i + 1)", vendorID: vid, productID: pid,
                                      bcdDevice: firmware.count == 2 ? firmware[0] << 8 | firmware[1] : 0x0100,
                                      manufacturer: reader.profile.vendor, product: reader.profile.name, serial: reader.profile.serialNumber, number: i + 2))
        }
        devices = made
        drivers = try FakeUSBDevice.writeDriverBundle(in: directory, driver: driver, devices: made, names: readers.map(\.profile.name))
        let script = directory.appendingPathComponent("usb-testbed.py")
        try BundledScripts.usbTestbed.write(to: script, atomically: true, encoding: .utf8)
        let description = directory.appendingPathComponent("devices.umockdev")
        try made.map(\.umockdevDescription).joined(separator: "\n").write(to: description, atomically: true, encoding: .utf8)
        helper = Process()
        helper.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        helper.arguments = [script.path, description.path]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = "libumockdev-preload.so.0"  // the helper's uevents go through umockdev's libudev
        helper.environment = environment
        let stdin = Pipe(), stdout = Pipe()
        helper.standardInput = stdin
        helper.standardOutput = stdout
        helper.standardError = FileHandle.nullDevice
        try helper.run()
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        testbed = SimulatedUSBReaders.line(output) ?? ""
        guard testbed.hasPrefix("/") else {
            helper.terminate()
            throw CLIError(kind: "usb", message: "the umockdev testbed did not start (\(testbed.isEmpty ? "no answer" : testbed))", exitCode: CarteExit.invalidInput)
        }
        var pcscd = ["UMOCKDEV_DIR": testbed, "LD_PRELOAD": "libumockdev-preload.so.0"]
        for (i, d) in made.enumerated() {
            pcscd[d.driverVariable] = "\(socket):reader=\(i):slots=\(readers[i].slots):timeout=\(timeout)"
        }
        pcscdEnvironment = pcscd
    }

    /// Unplugs (`unplug`) or plugs back (`plug`) the reader with this index.
    func fault(reader: Int, name: String) throws -> String {
        guard devices.indices.contains(reader) else { throw CLIError(kind: "usb", message: "no USB reader \(reader)", exitCode: CarteExit.cardOrReader) }
        lock.lock()
        defer { lock.unlock() }
        input.write(Data("\(name) \(devices[reader].syspath)\n".utf8))
        let answer = SimulatedUSBReaders.line(output) ?? "no answer"
        guard answer == "ok" else { throw CLIError(kind: "usb", message: "the testbed answered: \(answer)", exitCode: CarteExit.cardOrReader) }
        return name == "unplug" ? "USB reader unplugged (\(devices[reader].syspath))" : "USB reader plugged back (\(devices[reader].syspath))"
    }

    /// What `carte sim status` reports under "usb".
    var status: [String: String] {
        var s = pcscdEnvironment
        s["drivers"] = drivers.path
        return s
    }

    func stop() {
        try? input.write(contentsOf: Data("quit\n".utf8))
        try? input.close()
        let deadline = Date().addingTimeInterval(3)
        while helper.isRunning && Date() < deadline { usleep(10_000) }
        if helper.isRunning { helper.terminate() }
        try? FileManager.default.removeItem(at: directory)
    }

    private static func line(_ handle: FileHandle) -> String? {
        var bytes: [UInt8] = []
        while true {
            let chunk = handle.readData(ofLength: 1)
            guard let b = chunk.first else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if b == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(b)
        }
    }
}
