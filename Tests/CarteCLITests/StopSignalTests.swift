import Foundation
import Testing

/// The long-running commands stop on SIGTERM and SIGINT however a script starts them: as a background
/// job of a non-interactive shell (which starts it with SIGINT ignored), under `nohup`, under `setsid`.
@Suite("Stop signals", .serialized)
struct StopSignalTests {
    enum LongRunning: String, CaseIterable, CustomTestStringConvertible {
        case serve = "sim serve"
        case apcvService = "sim apcv-service"
        case watch = "watch"
        var testDescription: String { rawValue }

        func arguments(socket: String) -> [String] {
            switch self {
            case .serve: return ["sim", "serve", "--socket", socket, "--profile", "mono-fente"]
            case .apcvService: return ["sim", "apcv-service", "--listen", "127.0.0.1:0"]
            case .watch: return ["watch", "--json"]
            }
        }
    }

    /// How a QA script or a supervisor starts it (the prefix before the command in the script).
    enum Start: String, CaseIterable, CustomTestStringConvertible {
        case background = ""
        case nohup = "nohup"
        case setsid = "setsid"
        var testDescription: String { rawValue.isEmpty ? "background job" : rawValue }
    }

    @Test(arguments: LongRunning.allCases, Start.allCases)
    func stopsWithinASecondOnEachSignal(command: LongRunning, start: Start) throws {
        for signo in [SIGTERM, SIGINT] {
            let dir = try ScriptedStart.directory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let socket = dir + "/sim.sock"
            let script = try ScriptedStart(directory: dir, prefix: start.rawValue, arguments: command.arguments(socket: socket))
            defer { script.end() }
            try script.waitUntilListening(socket: command == .serve ? socket : nil)
            let sent = ContinuousClock.now
            kill(script.pid, signo)
            let status = try script.waitForExit(seconds: 1)
            let took = ContinuousClock.now - sent
            #expect(status == 0, "\(command.rawValue) (\(start.testDescription)) after signal \(signo): exit \(status.map(String.init) ?? "none within 1 s"); stderr: \(script.stderr)")
            #expect(took < .seconds(1), "\(command.rawValue) took \(took) to stop on signal \(signo)")
            if command == .serve {
                #expect(!FileManager.default.fileExists(atPath: socket), "the daemon removes its socket on signal \(signo)")
            }
        }
    }

    /// `watch --seconds` ends by itself: the signal wait in its task group gives way when the time is up.
    @Test(.timeLimit(.minutes(1))) func watchWithSecondsEndsByItself() throws {
        let started = ContinuousClock.now
        let r = try Carte.run(["watch", "--seconds", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}

/// A command started by `bash -c` the way a script does (`prefix carte ARGS & p=$!; wait $p`): the shell
/// writes the command's PID and, once it ends, its exit status.
final class ScriptedStart {
    let directory: String
    let shell: Process
    let pid: Int32

    static func directory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "ck-signals-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        return String(cString: made)
    }

    init(directory: String, prefix: String, arguments: [String]) throws {
        self.directory = directory
        let quoted = ([Carte.binary.path] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/bash")
        shell.arguments = ["-c", "cd '\(directory)' || exit 1; \(prefix) \(quoted) >out 2>err & p=$!; echo $p >pid; wait $p; echo $? >rc.tmp; mv rc.tmp rc"]
        shell.standardInput = FileHandle.nullDevice
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = FileHandle.nullDevice
        try shell.run()
        var pid: Int32? = nil
        for _ in 0..<500 where pid == nil {
            pid = (try? String(contentsOfFile: directory + "/pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if pid == nil { usleep(10_000) }
        }
        guard let pid else { throw POSIXError(.ESRCH) }
        self.pid = pid
    }

    var stderr: String { (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? "" }

    /// Waits (15 s at most) until the command catches its stop signals (its `carte-signals` thread runs)
    /// and, for a daemon, its socket exists.
    func waitUntilListening(socket: String?) throws {
        for _ in 0..<1500 {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let names = tasks.compactMap { try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8) }
            if names.contains(where: { $0.hasPrefix("carte-signals") }), socket.map({ FileManager.default.fileExists(atPath: $0) }) ?? true { return }
            usleep(10_000)
        }
        Issue.record("the command did not get ready within 15 s: \(stderr)")
        throw POSIXError(.ETIMEDOUT)
    }

    /// The command's exit status once the shell has seen it end, or `nil` if it has not within `seconds`.
    func waitForExit(seconds: Double) throws -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let text = try? String(contentsOfFile: directory + "/rc", encoding: .utf8) {
                return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            usleep(5_000)
        } while Date() < deadline
        return nil
    }

    /// Kills what is left (a command that did not stop), by PID, and the shell.
    func end() {
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if shell.isRunning { shell.terminate() }
        shell.waitUntilExit()
    }
}
