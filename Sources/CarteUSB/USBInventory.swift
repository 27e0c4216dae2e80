internal import CLibUSB
import Foundation

/// One interface of a USB device (its first alternate setting).
public struct USBInterface: Sendable, Hashable, Codable {
    /// `bInterfaceNumber`.
    public var number: Int
    /// `bInterfaceClass` (`0B` = CCID, smart card; `FF` = vendor-specific).
    public var interfaceClass: UInt8
    /// `bInterfaceSubClass`.
    public var subclass: UInt8
    /// `bInterfaceProtocol`.
    public var interfaceProtocol: UInt8

    /// An interface.
    public init(number: Int, interfaceClass: UInt8, subclass: UInt8, interfaceProtocol: UInt8) {
        self.number = number
        self.interfaceClass = interfaceClass
        self.subclass = subclass
        self.interfaceProtocol = interfaceProtocol
    }
}

/// A USB device as libusb enumerates it, with the strings sysfs holds (read without opening the
/// device, so no permission is needed).
public struct USBDevice: Sendable, Hashable, Codable {
    /// Bus number.
    public var bus: Int
    /// Device address on the bus.
    public var address: Int
    /// The port path (`1-3`, `1-1.4`): the device's directory name in `/sys/bus/usb/devices`.
    public var path: String
    /// `idVendor`.
    public var vendorID: UInt16
    /// `idProduct`.
    public var productID: UInt16
    /// `bcdDevice`: the device release, which CCID readers use as their firmware version.
    public var bcdDevice: UInt16
    /// `bDeviceClass`.
    public var deviceClass: UInt8
    /// The interfaces of the active (or first) configuration.
    public var interfaces: [USBInterface]
    /// `iManufacturer`, from sysfs.
    public var manufacturer: String?
    /// `iProduct`, from sysfs.
    public var product: String?
    /// `iSerialNumber`, from sysfs.
    public var serial: String?

    /// A device.
    public init(bus: Int, address: Int, path: String, vendorID: UInt16, productID: UInt16, bcdDevice: UInt16, deviceClass: UInt8,
                interfaces: [USBInterface], manufacturer: String? = nil, product: String? = nil, serial: String? = nil) {
        self.bus = bus
        self.address = address
        self.path = path
        self.vendorID = vendorID
        self.productID = productID
        self.bcdDevice = bcdDevice
        self.deviceClass = deviceClass
        self.interfaces = interfaces
        self.manufacturer = manufacturer
        self.product = product
        self.serial = serial
    }

    /// `VVVV:PPPP` in upper-case hexadecimal.
    public var id: String { String(format: "%04X:%04X", vendorID, productID) }
    /// `bcdDevice` as a version, `1.08`.
    public var release: String { String(format: "%x.%02x", bcdDevice >> 8, bcdDevice & 0xFF) }
    /// Whether an interface has the CCID (smart card) class `0B`.
    public var hasCCIDInterface: Bool { interfaces.contains { $0.interfaceClass == 0x0B } || deviceClass == 0x0B }
}

/// Why the USB devices could not be listed.
public enum USBError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `libusb_init` failed (no usbfs, no permission to the USB bus…): libusb's error code and name.
    case unavailable(code: Int32, name: String)
    /// `libusb_get_device_list` failed.
    case enumeration(code: Int32, name: String)

    public var description: String {
        switch self {
        case .unavailable(let code, let name): return "libusb cannot start: \(name) (\(code))"
        case .enumeration(let code, let name): return "libusb cannot list the USB devices: \(name) (\(code))"
        }
    }
}

/// Lists USB devices through libusb-1.0.
public enum USBInventory {
    /// The USB devices present. Blocking (libusb reads sysfs and may open device nodes): call it on a
    /// thread of its own, not on Swift's concurrency pool. `sysfs` is where the string attributes are
    /// read (`/sys/bus/usb/devices`; under a umockdev testbed the same path is redirected).
    public static func devices(sysfs: String = "/sys/bus/usb/devices") throws(USBError) -> [USBDevice] {
        var context: OpaquePointer?
        let rv = libusb_init(&context)
        guard rv == 0, let context else { throw .unavailable(code: rv, name: errorName(rv)) }
        defer { libusb_exit(context) }
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = libusb_get_device_list(context, &list)
        guard count >= 0, let list else { throw .enumeration(code: Int32(truncatingIfNeeded: count), name: errorName(Int32(truncatingIfNeeded: count))) }
        defer { libusb_free_device_list(list, 1) }
        var out: [USBDevice] = []
        for i in 0..<Int(count) {
            guard let device = list[i] else { continue }
            var d = libusb_device_descriptor()
            guard libusb_get_device_descriptor(device, &d) == 0 else { continue }
            let bus = Int(libusb_get_bus_number(device))
            var ports = [UInt8](repeating: 0, count: 8)
            let depth = libusb_get_port_numbers(device, &ports, Int32(ports.count))
            // Root hubs have no port: their sysfs name is usbN.
            let path = depth > 0 ? "\(bus)-" + ports.prefix(Int(depth)).map(String.init).joined(separator: ".") : "usb\(bus)"
            var interfaces: [USBInterface] = []
            var config: UnsafeMutablePointer<libusb_config_descriptor>?
            if libusb_get_active_config_descriptor(device, &config) != 0 { _ = libusb_get_config_descriptor(device, 0, &config) }
            if let config {
                for k in 0..<Int(config.pointee.bNumInterfaces) {
                    let interface = config.pointee.interface[k]
                    guard interface.num_altsetting > 0, let alt = interface.altsetting else { continue }
                    interfaces.append(USBInterface(number: Int(alt.pointee.bInterfaceNumber), interfaceClass: alt.pointee.bInterfaceClass,
                                                   subclass: alt.pointee.bInterfaceSubClass, interfaceProtocol: alt.pointee.bInterfaceProtocol))
                }
                libusb_free_config_descriptor(config)
            }
            func attribute(_ name: String) -> String? {
                guard let data = FileManager.default.contents(atPath: "\(sysfs)/\(path)/\(name)") else { return nil }
                let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                return text.isEmpty ? nil : text
            }
            out.append(USBDevice(bus: bus, address: Int(libusb_get_device_address(device)), path: path, vendorID: d.idVendor, productID: d.idProduct,
                                 bcdDevice: d.bcdDevice, deviceClass: d.bDeviceClass, interfaces: interfaces,
                                 manufacturer: attribute("manufacturer"), product: attribute("product"), serial: attribute("serial")))
        }
        return out.sorted { ($0.bus, $0.path) < ($1.bus, $1.path) }
    }

    static func errorName(_ code: Int32) -> String {
        guard let name = libusb_error_name(code) else { return "LIBUSB_ERROR \(code)" }
        return String(cString: name)
    }

    /// libusb's version (`1.0.26`).
    public static var libraryVersion: String {
        guard let v = libusb_get_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
    }
}
