import CartePCSC
import Foundation

/// Fake USB readers that a private pcscd's hotplug (libudev) sees, plugged and unplugged on request:
/// a umockdev testbed driven by `scripts/usb-testbed.py`, with CarteKit's driver installed as the USB
/// driver bundle of the readers' VID:PID, so pcscd adds and removes them exactly as it does real ones.
final class USBTestbed: @unchecked Sendable {
    /// One fake USB reader: the device, its CCID interface, and the simulator reader it stands for.
    struct Device {
        var syspath: String
        var vendorID: UInt16
        var productID: UInt16
        var bcdDevice: UInt16 = 0x0100
        var manufacturer: String
        var product: String
        var serial: String?
        var interfaceClass: UInt8 = 0x0B
        var bus = 1
        var number: Int

        /// The umockdev description (a device and its interface).
        var description: String {
            let vid = String(format: "%04x", vendorID), pid = String(format: "%04x", productID)
            let node = String(format: "bus/usb/%03d/%03d", bus, number)
            var lines = ["P: \(syspath)", "N: \(node)", "E: DEVNAME=/dev/\(node)", "E: DEVTYPE=usb_device", "E: SUBSYSTEM=usb",
                         String(format: "E: BUSNUM=%03d", bus), String(format: "E: DEVNUM=%03d", number),
                         "E: PRODUCT=\(String(vendorID, radix: 16))/\(String(productID, radix: 16))/\(String(bcdDevice, radix: 16))",
                         "A: idVendor=\(vid)", "A: idProduct=\(pid)", String(format: "A: bcdDevice=%04x", bcdDevice),
                         "A: manufacturer=\(manufacturer)", "A: product=\(product)"]
            if let serial { lines.append("A: serial=\(serial)") }
            // What libusb reads: the device descriptor, then the configuration with its one interface.
            func le(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
            let device: [UInt8] = [0x12, 0x01] + le(0x0200) + [0x00, 0x00, 0x00, 0x40] + le(vendorID) + le(productID) + le(bcdDevice) + [0x01, 0x02, serial == nil ? 0x00 : 0x03, 0x01]
            let configuration: [UInt8] = [0x09, 0x02] + le(18) + [0x01, 0x01, 0x00, 0x80, 0x32] + [0x09, 0x04, 0x00, 0x00, 0x00, interfaceClass, 0x00, 0x00, 0x00]
            lines.append("H: descriptors=" + (device + configuration).map { String(format: "%02X", $0) }.joined())
            lines.append("A: speed=12")
            lines += ["A: bDeviceClass=00", "A: bNumInterfaces= 1", "A: busnum=\(bus)", "A: devnum=\(number)", "",
                      "P: \(syspath)/\(syspath.split(separator: "/").last ?? ""):1.0", "E: DEVTYPE=usb_interface", "E: SUBSYSTEM=usb",
                      "E: INTERFACE=\(interfaceClass)/0/0", String(format: "A: bInterfaceClass=%02x", interfaceClass),
                      "A: bInterfaceSubClass=00", "A: bInterfaceProtocol=00", "A: bInterfaceNumber=00", "A: bNumEndpoints=03"]
            return lines.joined(separator: "\n") + "\n"
        }
    }

    static let helper: URL = {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("scripts/usb-testbed.py")
    }()
    static let preload = "libumockdev-preload.so.0"

    /// Why fake USB devices cannot be made here, or `nil`.
    static var unavailableReason: String? {
        if !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0") {
            return "umockdev is not installed (scripts/bootstrap.sh installs umockdev and gir1.2-umockdev-1.0)"
        }
        if !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/girepository-1.0/UMockdev-1.0.typelib") {
            return "gir1.2-umockdev-1.0 is not installed (scripts/bootstrap.sh installs it)"
        }
        return nil
    }

    let process: Process
    let root: String
    private let input: FileHandle
    private let output: FileHandle

    /// Starts a testbed holding `devices`.
    init(devices: [Device], directory: URL) throws {
        if let reason = USBTestbed.unavailableReason { throw PCSCSandbox.SandboxError(reason) }
        let file = directory.appendingPathComponent("devices.umockdev")
        try devices.map(\.description).joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [USBTestbed.helper.path, file.path]
        var environment = ProcessInfo.processInfo.environment
        // The helper's own libudev must see the testbed (umockdev sends uevents through it).
        environment["LD_PRELOAD"] = USBTestbed.preload
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        root = try USBTestbed.line(output)
        guard root.hasPrefix("/") else { throw PCSCSandbox.SandboxError("usb-testbed.py: \(root)") }
    }

    /// What a program needs in its environment to see the testbed.
    var environment: [String: String] { ["UMOCKDEV_DIR": root, "LD_PRELOAD": USBTestbed.preload] }

    func unplug(_ device: Device) throws { try command("unplug \(device.syspath)") }
    func plug(_ device: Device) throws { try command("plug \(device.syspath)") }

    private func command(_ text: String) throws {
        input.write(Data((text + "\n").utf8))
        let answer = try USBTestbed.line(output)
        guard answer == "ok" else { throw PCSCSandbox.SandboxError("usb-testbed.py \(text): \(answer)") }
    }

    func stop() {
        try? input.write(contentsOf: Data("quit\n".utf8))
        try? input.close()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// One line from the helper (a bounded read: the helper answers every command).
    private static func line(_ handle: FileHandle) throws -> String {
        var bytes: [UInt8] = []
        while true {
            let chunk = handle.readData(ofLength: 1)
            guard let b = chunk.first else { throw PCSCSandbox.SandboxError("usb-testbed.py ended") }
            if b == 0x0A { break }
            bytes.append(b)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A USB driver bundle directory whose Info.plist gives CarteKit's driver the `devices`' VID:PIDs.
    static func driverBundle(in directory: URL, devices: [Device], names: [String]) throws -> URL {
        let drivers = directory.appendingPathComponent("usb-drivers")
        let linux = drivers.appendingPathComponent("cartekit.bundle/Contents/Linux")
        try FileManager.default.createDirectory(at: linux, withIntermediateDirectories: true)
        let library = linux.appendingPathComponent("libifdcarte.so")
        try? FileManager.default.removeItem(at: library)
        try FileManager.default.copyItem(at: PCSCSandbox.driver, to: library)
        func array(_ values: [String]) -> String { "<array>" + values.map { "<string>\($0)</string>" }.joined() + "</array>" }
        let plist = """
            <?xml version="1.0" encoding="UTF-8"?>
            <plist version="1.0">
            <dict>
            <key>CFBundleExecutable</key><string>libifdcarte.so</string>
            <key>CFBundleName</key><string>CarteKitVirtualUSB</string>
            <key>ifdVendorID</key>\(array(devices.map { String(format: "0x%04X", $0.vendorID) }))
            <key>ifdProductID</key>\(array(devices.map { String(format: "0x%04X", $0.productID) }))
            <key>ifdFriendlyName</key>\(array(names))
            </dict>
            </plist>

            """
        try plist.write(to: drivers.appendingPathComponent("cartekit.bundle/Contents/Info.plist"), atomically: true, encoding: .utf8)
        return drivers
    }
}
