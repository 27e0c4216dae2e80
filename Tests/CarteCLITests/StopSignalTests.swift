import Foundation
import PCSCTestSupport
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
            let dir = try ScriptedJob.makeDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let socket = dir + "/sim.sock"
            let job = try ScriptedJob(Carte.binary.path, command.arguments(socket: socket), prefix: start.rawValue)
            defer { job.end() }
            try waitUntilReady(job, socket: command == .serve ? socket : nil)
            let (status, took) = job.stop(signo, seconds: 1)
            #expect(status == 0, "\(command.rawValue) (\(start.testDescription)) after signal \(signo): exit \(status.map(String.init) ?? "none within 1 s"); stderr: \(job.output("err"))")
            #expect(took < .seconds(1), "\(command.rawValue) took \(took) to stop on signal \(signo)")
            if command == .serve {
                #expect(!FileManager.default.fileExists(atPath: socket), "the daemon removes its socket on signal \(signo)")
            }
        }
    }

    /// Waits (15 s at most) until the job catches its stop signals and, for a daemon, its socket exists.
    func waitUntilReady(_ job: ScriptedJob, socket: String?) throws {
        for _ in 0..<1500 {
            if job.catchesSignals, socket.map({ FileManager.default.fileExists(atPath: $0) }) ?? true { return }
            usleep(10_000)
        }
        Issue.record("the command did not get ready within 15 s: \(job.output("err"))")
        throw POSIXError(.ETIMEDOUT)
    }

    /// `watch --seconds` ends by itself: the signal wait in its task group gives way when the time is up.
    @Test(.timeLimit(.minutes(1))) func watchWithSecondsEndsByItself() throws {
        let started = ContinuousClock.now
        let r = try Carte.run(["watch", "--seconds", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
