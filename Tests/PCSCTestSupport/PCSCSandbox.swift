import CartePCSC
import CarteSimDaemon
import Foundation

/// A private pcscd (in its own mount namespace, a tmpfs over /run/pcscd) loading libifdcarte.so, and
/// the simulator daemon it talks to: started once per test process, driven by the tests, stopped at exit.
///
/// The client library finds the private pcscd through `PCSCLITE_CSOCK_NAME`, which points at a symbolic
/// link to `/proc/<pcscd>/root/run/pcscd/pcscd.comm` (the socket inside the namespace). libpcsclite reads
/// that variable once per process, so a restarted pcscd is reached by re-pointing the link.
/// The system's pcscd, if any, is never touched.
package final class PCSCSandbox: @unchecked Sendable {
    /// Why the sandbox cannot run here, or `nil` when it can.
    package static let unavailableReason: String? = {
        if let reason = PrivatePCSCD.unavailableReason { return reason + "; CI runs as root" }
        if !FileManager.default.isExecutableFile(atPath: carteBinary.path) { return "\(carteBinary.path) is not built" }
        if !FileManager.default.fileExists(atPath: driver.path) { return "\(driver.path) is not built (swift build --product ifdcarte)" }
        return nil
    }()

    /// Whether PC/SC tests run: when the sandbox works, and always on CI (where a missing piece must fail, not skip).
    package static let enabled: Bool = {
        if let reason = unavailableReason {
            print("PC/SC integration tests: \(ProcessInfo.processInfo.environment["CI"] == "true" ? "FAILING" : "skipped"): \(reason)")
        }
        return unavailableReason == nil || ProcessInfo.processInfo.environment["CI"] == "true"
    }()

    package static let buildDirectory: URL = {
        if let dir = ProcessInfo.processInfo.environment["CARTE_BUILD_DIR"] { return URL(fileURLWithPath: dir) }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }()
    /// The repository's root directory (for tests that compile or read its files).
    package static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    package static let carteBinary = buildDirectory.appendingPathComponent("carte")
    package static let driver = buildDirectory.appendingPathComponent("libifdcarte.so")

    /// The sandbox shared by every PC/SC test of this process.
    package static let shared: Result<PCSCSandbox, SandboxError> = {
        if let reason = unavailableReason { return .failure(SandboxError(reason)) }
        do {
            let sandbox = try PCSCSandbox()
            atexit { PCSCSandbox.cleanupAtExit() }
            return .success(sandbox)
        } catch let error as SandboxError {
            return .failure(error)
        } catch {
            return .failure(SandboxError("\(error)"))
        }
    }()

    package struct SandboxError: Error, CustomStringConvertible {
        package let description: String
        package init(_ d: String) { description = d }
    }

    package let directory: URL
    package let socket: String
    package let clientSocket: String
    package private(set) var daemon: Process?
    package let pcscd: PrivatePCSCD
    private static let started = NSLock()
    nonisolated(unsafe) private static var processes: [Process] = []

    private init() throws {
        // A fresh private directory (mkdtemp, 0700): pcscd runs as root and loads what reader.conf.d declares.
        directory = URL(fileURLWithPath: try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-pcsc"))
        socket = directory.appendingPathComponent("sim.sock").path
        pcscd = PrivatePCSCD(configurationDirectory: directory.appendingPathComponent("reader.conf.d").path, workDirectory: directory.path)
        clientSocket = pcscd.clientSocket
        setenv("PCSCLITE_CSOCK_NAME", clientSocket, 1)
        try startDaemon()
        // A 2-second driver timeout: a mute-card fault is reported in 2 s, not 30 (no APDU here takes long).
        try readerConf(socket: socket, into: directory.appendingPathComponent("reader.conf.d"), timeout: 2000)
        try startPCSCD()
    }

    /// Starts `carte sim serve` with a bi-fente and a mono-fente reader (the generic card in the mono-fente).
    package func startDaemon() throws {
        daemon = try serve(socket: socket, ["--profile", "bi-fente", "--profile", "mono-fente", "--profile", "contactless",
                                            "--image", "CarteKit Virtual Mono-fente 01 00=bundled:demo/iso-generic.yaml"])
    }

    /// Starts another simulator daemon on `socket` (`carte sim serve` with `arguments`: profiles, images,
    /// --usb…) for a test that needs its own readers; it ends with the test process. Returns once it answers.
    package func serve(socket: String, _ arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = PCSCSandbox.carteBinary
        p.arguments = ["sim", "serve", "--exit-with-parent", "--socket", socket] + arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        PCSCSandbox.track(p)
        try waitFor("the simulator daemon on \(socket)") { (try? SimulatorControlClient(path: socket).send(["op": "status"])) != nil }
        return p
    }

    /// Declares the readers of the daemon at `socket` to a pcscd: `carte sim reader-conf` into `directory`.
    package func readerConf(socket: String, into directory: URL, timeout: Int? = nil) throws {
        let writer = try run(PCSCSandbox.carteBinary.path, ["sim", "reader-conf", "--socket", socket, "--out", directory.path, "--driver", PCSCSandbox.driver.path]
                             + (timeout.map { ["--timeout", String($0)] } ?? []))
        guard writer.status == 0 else { throw SandboxError("carte sim reader-conf failed: \(writer.stderr)") }
    }

    /// Kills the daemon with SIGKILL (a crash).
    package func killDaemon() {
        guard let p = daemon else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        daemon = nil
    }

    /// Starts (or restarts) the private pcscd; the client link follows it.
    package func startPCSCD() throws {
        try pcscd.start()
    }

    /// Stops the private pcscd.
    package func stopPCSCD() {
        pcscd.stop()
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    package func waitFor(_ what: String, seconds: Double = 15, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? condition()) == true { return }
            usleep(20_000)
        }
        throw SandboxError("timed out waiting for \(what)")
    }

    /// Sends a control request to the daemon.
    @discardableResult
    package func control(_ request: [String: any Sendable]) throws -> [String: Any] {
        let answer = try SimulatorControlClient(path: socket).send(request)
        guard answer["ok"] as? Bool == true else { throw SandboxError("daemon refused \(request): \(answer["error"] ?? "?")") }
        return answer
    }

    /// Runs a program to completion with the sandbox's PC/SC socket (or what `environment` says:
    /// another pcscd's socket, a umockdev testbed…); returns status and output.
    package func run(_ executable: String, _ arguments: [String], timeout: Double = 30, stdin: String? = nil,
             environment extra: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PCSCLITE_CSOCK_NAME"] = clientSocket
        for (k, v) in extra { environment[k] = v }
        p.environment = environment
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        let timer = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        timer.cancel()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    private static func track(_ p: Process) {
        started.lock()
        processes.append(p)
        started.unlock()
    }

    /// Stops every process the sandbox started, by PID.
    private static func cleanupAtExit() {
        if case .success(let s) = shared { s.pcscd.stop() }
        started.lock()
        let all = processes
        started.unlock()
        for p in all where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
        }
        for p in all where p.isRunning {
            usleep(100_000)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        // The private directory (sockets, logs, images, recorded files) goes too.
        if case .success(let s) = shared { try? FileManager.default.removeItem(at: s.directory) }
    }
}

/// The sandbox, or a test failure explaining why it cannot run.
package func sandbox() throws -> PCSCSandbox {
    try PCSCSandbox.shared.get()
}
