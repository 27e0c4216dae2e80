import CarteBundledScripts
public import Foundation

/// A umockdev testbed holding fake USB devices (``FakeUSBDevice``), run by `scripts/usb-testbed.py`
/// (embedded): programs started with ``environment`` see the devices through libudev and libusb, and
/// ``unplug(_:)`` / ``plug(_:)`` send the udev events of a cable pulled out and plugged back. Used by
/// `carte sim serve --usb` and by the tests (the doctor's USB tree).
public final class UmockdevTestbed: @unchecked Sendable {
    /// Why it failed to start or to answer.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// umockdev's preload library, which redirects /sys, /dev and the udev netlink socket.
    public static let preload = "libumockdev-preload.so.0"

    /// Why a testbed cannot run here (a missing Debian package), or `nil`.
    public static var unavailableReason: String? {
        let lib = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        if !lib.contains(where: { FileManager.default.fileExists(atPath: "\($0)/\(preload)") }) {
            return "umockdev is not installed (Debian umockdev; scripts/bootstrap.sh installs it)"
        }
        if !lib.contains(where: { FileManager.default.fileExists(atPath: "\($0)/girepository-1.0/UMockdev-1.0.typelib") }) {
            return "gir1.2-umockdev-1.0 is not installed (scripts/bootstrap.sh installs it)"
        }
        return nil
    }

    /// The testbed's root directory (`UMOCKDEV_DIR`).
    public let root: String
    private let process: Process
    private let input: FileHandle
    private let output: FileHandle
    private let lock = NSLock()

    /// Starts a testbed holding `devices`; its description and the script are written in `directory`.
    public init(devices: [FakeUSBDevice], directory: URL) throws {
        if let reason = UmockdevTestbed.unavailableReason { throw Failure(description: reason) }
        let script = directory.appendingPathComponent("usb-testbed.py")
        try BundledScripts.usbTestbed.write(to: script, atomically: true, encoding: .utf8)
        let description = directory.appendingPathComponent("devices.umockdev")
        try devices.map(\.umockdevDescription).joined(separator: "\n").write(to: description, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script.path, description.path]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = UmockdevTestbed.preload  // the helper's uevents go through umockdev's libudev
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        input = stdin.fileHandleForWriting
        output = stdout.fileHandleForReading
        let first = UmockdevTestbed.line(output) ?? ""
        guard first.hasPrefix("/") else {
            process.terminate()
            throw Failure(description: "the umockdev testbed did not start (\(first.isEmpty ? "no answer" : first))")
        }
        root = first
    }

    /// What a program needs in its environment to see the testbed.
    public var environment: [String: String] { ["UMOCKDEV_DIR": root, "LD_PRELOAD": UmockdevTestbed.preload] }

    /// Sends the `remove` uevents of `device` and its interface, then removes them.
    public func unplug(_ device: FakeUSBDevice) throws { try command("unplug \(device.syspath)") }
    /// Adds `device` back and sends its `add` uevents.
    public func plug(_ device: FakeUSBDevice) throws { try command("plug \(device.syspath)") }

    private func command(_ text: String) throws {
        lock.lock()
        defer { lock.unlock() }
        input.write(Data((text + "\n").utf8))
        let answer = UmockdevTestbed.line(output) ?? "no answer (the testbed ended)"
        guard answer == "ok" else { throw Failure(description: "\(text): \(answer)") }
    }

    /// Ends the testbed (its directory is removed by the script).
    public func stop() {
        try? input.write(contentsOf: Data("quit\n".utf8))
        try? input.close()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// One line of the script's answers, `nil` when it ended.
    private static func line(_ handle: FileHandle) -> String? {
        var bytes: [UInt8] = []
        while true {
            guard let b = handle.readData(ofLength: 1).first else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if b == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(b)
        }
    }
}
