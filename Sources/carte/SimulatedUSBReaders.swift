import CarteEmulator
import CarteSimDaemon
import Foundation

/// The fake USB readers of `carte sim serve --usb`: each virtual reader is also a USB device in a
/// umockdev testbed (run by the embedded `scripts/usb-testbed.py`), so a pcscd started with
/// ``pcscdEnvironment`` and ``drivers`` over `/usr/lib/pcsc/drivers` finds it through its own hotplug,
/// and `unplug` / `plug` remove it from pcscd and bring it back — what a technician's USB cable does.
final class SimulatedUSBReaders: @unchecked Sendable {
    let directory: URL
    let devices: [FakeUSBDevice]
    let drivers: URL
    let testbed: UmockdevTestbed
    /// The variables pcscd needs (the testbed, umockdev's preload, each reader's DEVICENAME).
    let pcscdEnvironment: [String: String]

    /// Builds the devices, the driver bundle and the testbed for `readers` (profile and slot count each).
    init(readers: [(profile: VirtualReaderProfile, slots: Int)], socket: String, driver: String, timeout: Int) throws {
        if let reason = UmockdevTestbed.unavailableReason {
            throw CLIError(kind: "usb", message: "--usb needs \(reason)", exitCode: CarteExit.invalidInput)
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
        do { testbed = try UmockdevTestbed(devices: made, directory: directory) } catch {
            throw CLIError(kind: "usb", message: "\(error)", exitCode: CarteExit.invalidInput)
        }
        var pcscd = testbed.environment
        for (i, d) in made.enumerated() {
            pcscd[d.driverVariable] = "\(socket):reader=\(i):slots=\(readers[i].slots):timeout=\(timeout)"
        }
        pcscdEnvironment = pcscd
    }

    /// Unplugs (`unplug`) or plugs back (`plug`) the reader with this index.
    func fault(reader: Int, name: String) throws -> String {
        guard devices.indices.contains(reader) else { throw CLIError(kind: "usb", message: "no USB reader \(reader)", exitCode: CarteExit.cardOrReader) }
        let device = devices[reader]
        if name == "unplug" { try testbed.unplug(device) } else { try testbed.plug(device) }
        return name == "unplug" ? "USB reader unplugged (\(device.syspath))" : "USB reader plugged back (\(device.syspath))"
    }

    /// What `carte sim status` reports under "usb".
    var status: [String: String] {
        var s = pcscdEnvironment
        s["drivers"] = drivers.path
        return s
    }

    func stop() {
        testbed.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
