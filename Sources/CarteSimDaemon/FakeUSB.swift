public import Foundation

/// A fake USB smart card reader for a umockdev testbed (`scripts/usb-testbed.py`): what pcscd's hotplug
/// (libudev) and libusb see of a real reader — sysfs attributes, uevent properties and the binary
/// descriptors — so a reader can be plugged and unplugged behind a real pcscd.
public struct FakeUSBDevice: Sendable, Hashable {
    /// The sysfs path under `/sys` (`/devices/pci0000:00/0000:00:14.0/usb1/1-3`).
    public var syspath: String
    /// `idVendor`.
    public var vendorID: UInt16
    /// `idProduct`.
    public var productID: UInt16
    /// `bcdDevice` (a CCID reader's firmware release, `0x0108` = 1.08).
    public var bcdDevice: UInt16
    /// `iManufacturer` (sysfs `manufacturer`).
    public var manufacturer: String
    /// `iProduct` (sysfs `product`).
    public var product: String
    /// `iSerialNumber` (sysfs `serial`), if any: pcscd puts it in the reader's name.
    public var serial: String?
    /// The interface class: `0B` (CCID) or `FF` (vendor-specific).
    public var interfaceClass: UInt8
    /// The USB bus.
    public var bus: Int
    /// The device number on the bus.
    public var number: Int

    /// A device.
    public init(syspath: String, vendorID: UInt16, productID: UInt16, bcdDevice: UInt16 = 0x0100, manufacturer: String, product: String,
                serial: String? = nil, interfaceClass: UInt8 = 0x0B, bus: Int = 1, number: Int) {
        self.syspath = syspath
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.manufacturer = manufacturer
        self.product = product
        self.serial = serial
        self.interfaceClass = interfaceClass
        self.bus = bus
        self.number = number
    }

    /// The umockdev description of the device and its one interface.
    public var umockdevDescription: String {
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
        let device: [UInt8] = [0x12, 0x01] + le(0x0200) + [0x00, 0x00, 0x00, 0x40] + le(vendorID) + le(productID) + le(bcdDevice)
            + [0x01, 0x02, serial == nil ? 0x00 : 0x03, 0x01]
        let configuration: [UInt8] = [0x09, 0x02] + le(18) + [0x01, 0x01, 0x00, 0x80, 0x32] + [0x09, 0x04, 0x00, 0x00, 0x00, interfaceClass, 0x00, 0x00, 0x00]
        lines.append("H: descriptors=" + (device + configuration).map { String(format: "%02X", $0) }.joined())
        lines += ["A: speed=12", "A: bDeviceClass=00", "A: bNumInterfaces= 1", "A: busnum=\(bus)", "A: devnum=\(number)", "",
                  "P: \(syspath)/\(syspath.split(separator: "/").last ?? ""):1.0", "E: DEVTYPE=usb_interface", "E: SUBSYSTEM=usb",
                  "E: INTERFACE=\(interfaceClass)/0/0", String(format: "A: bInterfaceClass=%02x", interfaceClass),
                  "A: bInterfaceSubClass=00", "A: bInterfaceProtocol=00", "A: bInterfaceNumber=00", "A: bNumEndpoints=00"]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes a USB driver bundle directory (`cartekit.bundle/Contents/{Info.plist,Linux/libifdcarte.so}`)
    /// that makes pcscd's hotplug load CarteKit's driver (a copy of `driver`) for `devices`, named `names`.
    /// Mount it over `/usr/lib/pcsc/drivers` in a private pcscd's namespace (`PrivatePCSCD(usbDrivers:)`).
    public static func writeDriverBundle(in directory: URL, driver: String, devices: [FakeUSBDevice], names: [String]) throws -> URL {
        let drivers = directory.appendingPathComponent("usb-drivers")
        let linux = drivers.appendingPathComponent("cartekit.bundle/Contents/Linux")
        try FileManager.default.createDirectory(at: linux, withIntermediateDirectories: true)
        let library = linux.appendingPathComponent("libifdcarte.so")
        try? FileManager.default.removeItem(at: library)
        try FileManager.default.copyItem(atPath: driver, toPath: library.path)
        func array(_ values: [String]) -> String { "<array>" + values.map { "<string>\(xmlEscaped($0))</string>" }.joined() + "</array>" }
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

    /// The environment variable that gives the driver a fake USB reader's DEVICENAME.
    public var driverVariable: String { String(format: "CARTEKIT_USB_%04x_%04x", vendorID, productID) }
}

private func xmlEscaped(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}
