import CartePCSC
import Foundation

/// A program started the way a QA script starts it, as a background job of a non-interactive shell
/// (`PREFIX PROGRAM ARGS & p=$!; wait $p`, PREFIX being empty, `nohup` or `setsid`): the shell writes
/// the job's PID and, once it ends, its exit status, into a private directory of its own (mkdtemp),
/// where the job's standard output and error go too.
package final class ScriptedJob {
    package let directory: String
    package let pid: Int32
    private let shell: Process

    /// Starts `executable arguments` under `prefix` and waits (5 s at most) for the shell to report its PID.
    package init(_ executable: String, _ arguments: [String], prefix: String = "", environment: [String: String] = [:]) throws {
        directory = try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-job")
        let command = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/bash")
        shell.arguments = ["-c", "cd '\(directory)' || exit 1; \(prefix) \(command) >out 2>err & p=$!; echo $p >pid; wait $p; echo $? >rc.tmp; mv rc.tmp rc"]
        if !environment.isEmpty { shell.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        shell.standardInput = FileHandle.nullDevice
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = FileHandle.nullDevice
        try shell.run()
        var pid: Int32? = nil
        for _ in 0..<500 where pid == nil {
            pid = (try? String(contentsOfFile: directory + "/pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if pid == nil { usleep(10_000) }
        }
        guard let pid else {
            shell.terminate()
            throw PCSCSandbox.SandboxError("the shell did not start \(executable)")
        }
        self.pid = pid
    }

    /// A fresh private directory (mkdtemp, 0700) for what a test gives the job, such as a socket path.
    package static func makeDirectory() throws -> String {
        try PrivatePCSCD.makeWorkDirectory(prefix: "cartekit-job-files")
    }

    /// A file the job or the shell wrote (`out`, `err`), or "".
    package func output(_ name: String) -> String {
        (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
    }

    /// Whether the job catches its stop signals yet (carte's `carte-signals` thread runs).
    package var catchesSignals: Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.contains { ((try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("carte-signals") }
    }

    /// Sends `signo`; returns the job's exit status once the shell has seen it end (`nil`: not within
    /// `seconds`) and how long that took.
    package func stop(_ signo: Int32, seconds: Double) -> (status: Int32?, took: Duration) {
        let sent = ContinuousClock.now
        kill(pid, signo)
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let status = Int32(output("rc").trimmingCharacters(in: .whitespacesAndNewlines)) { return (status, ContinuousClock.now - sent) }
            usleep(5_000)
        } while Date() < deadline
        return (nil, ContinuousClock.now - sent)
    }

    /// Kills what is left (a job that did not stop), by PID, ends the shell and removes the directory.
    package func end() {
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if shell.isRunning { shell.terminate() }
        shell.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
