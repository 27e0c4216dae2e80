#if os(Linux)
// A private pcscd in its own mount namespace: Linux only (pcsc-lite, unshare).
import Foundation
import Synchronization

/// A pcscd of one's own, for tests and benchmarks: started in a private mount namespace with a tmpfs
/// over `/run/pcscd` (`unshare --mount`, root only), reading only the reader.conf.d directory given,
/// so the system's pcscd and its readers are never touched.
///
/// Clients reach it through ``clientSocket``, a symbolic link to the socket inside the namespace
/// (`/proc/<pid>/root/run/pcscd/pcscd.comm`). Point `PCSCLITE_CSOCK_NAME` at it *before the first PC/SC
/// call of the process* (libpcsclite reads it once); after ``restart()`` the link follows the new daemon.
/// pcscd runs under `timeout`, so it can never outlive its time limit, and ``stop()`` ends it by PID.
public final class PrivatePCSCD: @unchecked Sendable {
    /// Why a private pcscd cannot run on this machine, or `nil` when it can.
    public static var unavailableReason: String? {
        if getuid() != 0 { return "a private pcscd needs root (unshare --mount)" }
        for tool in ["/usr/bin/unshare", "/usr/sbin/pcscd", "/usr/bin/timeout"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing (scripts/bootstrap.sh installs it)"
        }
        return nil
    }

    /// The reader.conf.d directory pcscd reads.
    public let configurationDirectory: String
    /// The link clients connect through (set `PCSCLITE_CSOCK_NAME` to it).
    public let clientSocket: String
    /// pcscd's output (with `debug`, its `-d` log).
    public let logPath: String
    private let debug: Bool
    private let maximumLifetime: Int
    private let isolateNetwork: Bool
    private let usbDrivers: String?
    private let environment: [String: String]
    private let process = Mutex<Process?>(nil)
    private let log = Mutex<FileHandle?>(nil)

    /// Creates a new private directory (mode 0700, unpredictable name) under the temporary directory.
    public static func makeWorkDirectory(prefix: String) throws -> String {
        var template = Array((NSTemporaryDirectory() + "/" + prefix + "-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw PrivatePCSCDError("mkdtemp failed: \(String(cString: strerror(errno)))") }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Describes a private pcscd; nothing starts until ``start()``.
    /// - Parameters:
    ///   - workDirectory: where the client link and the log go.
    ///   - maximumLifetime: seconds after which pcscd is stopped whatever happens.
    ///   - isolateNetwork: also give pcscd a network namespace of its own with only a loopback interface
    ///     (for drivers such as vpcd that listen on every interface: nothing outside can reach them).
    ///   - usbDrivers: a directory of USB driver bundles (`*.bundle/Contents/Info.plist`) that pcscd's
    ///     hotplug uses instead of the machine's (which are always hidden from a private pcscd).
    ///   - environment: variables added to pcscd's environment (a umockdev testbed's `UMOCKDEV_DIR`
    ///     and `LD_PRELOAD`, so its hotplug sees fake USB readers).
    public init(configurationDirectory: String, workDirectory: String, debug: Bool = false, maximumLifetime: Int = 1800, isolateNetwork: Bool = false,
                usbDrivers: String? = nil, environment: [String: String] = [:]) {
        self.usbDrivers = usbDrivers
        self.environment = environment
        self.isolateNetwork = isolateNetwork
        self.configurationDirectory = configurationDirectory
        self.clientSocket = URL(fileURLWithPath: workDirectory).appendingPathComponent("pcscd.comm").path
        self.logPath = URL(fileURLWithPath: workDirectory).appendingPathComponent("pcscd.log").path
        self.debug = debug
        self.maximumLifetime = maximumLifetime
    }

    deinit { stop() }

    /// The PID of the running pcscd wrapper (`timeout`, inside the namespace), if any.
    public var pid: Int32? { process.withLock { $0?.processIdentifier } }

    /// The network namespace file of the running pcscd (with `isolateNetwork`), for `setns`.
    public var networkNamespacePath: String? { pid.map { "/proc/\($0)/ns/net" } }

    /// Starts pcscd and waits (up to `timeout` seconds) for its socket.
    public func start(timeout: Double = 15) throws {
        if let reason = PrivatePCSCD.unavailableReason { throw PrivatePCSCDError(reason) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        let quoted = PrivatePCSCD.shellQuoted(configurationDirectory)
        if !environment.isEmpty {
            var all = ProcessInfo.processInfo.environment
            for (k, v) in environment { all[k] = v }
            p.environment = all
        }
        p.arguments = ["--mount"] + (isolateNetwork ? ["--net"] : []) + ["--propagation", "private", "sh", "-c",
                       (isolateNetwork ? "ip link set lo up && " : "")
                       // USB reader drivers (bundles) are hidden in the namespace: this pcscd must not
                       // claim the machine's real readers from the system's pcscd.
                       + (usbDrivers.map { "mount --bind \(PrivatePCSCD.shellQuoted($0)) /usr/lib/pcsc/drivers && " }
                          ?? "for b in /usr/lib/pcsc/drivers/*.bundle; do [ -d \"$b\" ] && mount -t tmpfs -o ro tmpfs \"$b\"; done; ")
                       + "mkdir -p /run/pcscd && mount -t tmpfs -o mode=0755 tmpfs /run/pcscd && exec timeout --kill-after=5 \(maximumLifetime) pcscd --foreground \(debug ? "--debug --apdu " : "")-c \(quoted)"]
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let handle = FileHandle(forWritingAtPath: logPath)
        p.standardOutput = handle
        p.standardError = handle
        log.withLock { old in
            try? old?.close()
            old = handle
        }
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process.withLock { $0 = p }
        let inside = "/proc/\(p.processIdentifier)/root/run/pcscd/pcscd.comm"
        let deadline = Date().addingTimeInterval(timeout)
        while !FileManager.default.fileExists(atPath: inside) {
            guard p.isRunning else { throw PrivatePCSCDError("pcscd exited at start; see \(logPath)") }
            guard Date() < deadline else {
                stop()
                throw PrivatePCSCDError("pcscd did not create its socket within \(timeout) s; see \(logPath)")
            }
            usleep(10_000)
        }
        let temporary = clientSocket + ".new"
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.createSymbolicLink(atPath: temporary, withDestinationPath: inside)
        guard rename(temporary, clientSocket) == 0 else { throw PrivatePCSCDError("cannot create \(clientSocket)") }
    }

    /// Stops pcscd (SIGTERM to the process started, SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard let p = process.withLock({ p -> Process? in
            defer { p = nil }
            return p
        }) else { return }
        if p.isRunning {
            // `timeout` passes SIGTERM on to pcscd; if that is not enough, pcscd is killed by PID too
            // (killing only `timeout` would leave pcscd behind).
            let children = PrivatePCSCD.children(of: p.processIdentifier)
            p.terminate()
            let deadline = Date().addingTimeInterval(6)
            while p.isRunning && Date() < deadline { usleep(10_000) }
            if p.isRunning {
                for child in children { kill(child, SIGKILL) }
                kill(p.processIdentifier, SIGKILL)
            }
        }
        p.waitUntilExit()
        log.withLock { handle in
            try? handle?.close()
            handle = nil
        }
    }

    /// `text` quoted for `sh`.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The direct children of `pid` (from /proc).
    static func children(of pid: Int32) -> [Int32] {
        let path = "/proc/\(pid)/task/\(pid)/children"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Stops and starts pcscd again (clients following ``clientSocket`` reach the new one).
    public func restart() throws {
        stop()
        try start()
    }
}

/// A private pcscd that could not start.
public struct PrivatePCSCDError: Error, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ d: String) { description = d }
}

#endif
