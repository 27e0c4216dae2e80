import CartePCSC
import CarteSimulator
import Foundation

/// Fake USB devices that programs started with ``environment`` see (libudev, libusb), plugged and
/// unplugged on request: a umockdev testbed driven by `scripts/usb-testbed.py` (the doctor's USB tests;
/// `carte sim serve --usb` runs the same script for its readers).
final class USBTestbed: @unchecked Sendable {
    typealias Device = FakeUSBDevice

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
        try devices.map(\.umockdevDescription).joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
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
}
