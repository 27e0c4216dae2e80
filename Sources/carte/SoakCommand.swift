import ArgumentParser
import CarteCore
import CartePCSC
import CarteEmulator
import CarteImages
import Foundation
import Synchronization
import Logging

extension SimCommand {
    struct Soak: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "soak",
            abstract: "Random field faults during Vitale and CPS reads through a private pcscd: counts of clean reads, typed errors, recoveries, crashes and hangs.",
            discussion: """
                Root only (a private pcscd in its own mount namespace, Unix sockets only). A virtual bi-fente reader \
                holds the demo Vitale and the médecin libéral's CPS. Each round arms one random fault (or none) on one \
                slot — card removed before, during or after an APDU, mute card (the driver's timeout, --driver-timeout, \
                fires), slow card, a chosen status word, warm reset — then reads that card with a separate \
                `carte read` or `carte cps info` process, bounded by --read-timeout. Outcomes: clean (exit 0), typed \
                error (a documented exit code and a carte.error/1 document), untyped (exit 1: a defect), crash (killed \
                by a signal), hang (killed at the read timeout). After an error the card is put back and read again: \
                a clean second read is a recovery. Stops after --faults rounds or --seconds, whichever comes first. \
                Exit status 0 only with no crash, no hang and no untyped failure. Full soak: carte sim soak --faults 1000. \
                SIGINT or SIGTERM ends the read in flight, stops the private pcscd and daemon, and prints the report \
                of the rounds run so far (interrupted: true).
                """
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Rounds (each arms one fault, or none, then reads).")
        var faults: Int = 100
        @Option(help: "Stop after this many seconds even if rounds remain.")
        var seconds: Int = 900
        @Option(help: "Seed of the random choices (the same seed plays the same rounds).")
        var seed: UInt64 = 1
        @Option(help: "Milliseconds the driver waits for a card's answer (what a mute card costs).")
        var driverTimeout: Int = 600
        @Option(help: "Seconds a read may take before it is counted as a hang and killed.")
        var readTimeout: Int = 20

        func validate() throws {
            guard (1...1_000_000).contains(faults) else { throw ValidationError("--faults must be 1...1000000") }
            guard (1...86_400).contains(seconds) else { throw ValidationError("--seconds must be 1...86400") }
            guard (100...30_000).contains(driverTimeout) else { throw ValidationError("--driver-timeout must be 100...30000 ms") }
            guard (2...600).contains(readTimeout) else { throw ValidationError("--read-timeout must be 2...600 s") }
        }

        func run() async throws {
            StopSignals.shared.install()
            // A stop ends the read in flight at once (its round is not counted).
            StopSignals.shared.onStop { _ in
                if let pid = SoakChild.current.withLock({ $0 }) { kill(pid, SIGKILL) }
            }
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let vitale = try SimulatorOptions.loadImage("bundled:demo/vitale2-demo.yaml")
                let cps = try SimulatorOptions.loadImage("bundled:cps/medecin-liberal.yaml")
                let setup = try PrivateVirtualReader.start(profile: .biFente, images: [vitale, cps], logger: logger, timeout: driverTimeout)
                defer { setup.stop() }
                let client = PCSCBackend(logger: logger)
                var names: [String] = []
                for _ in 0..<500 where names.count < 2 && StopSignals.shared.received == nil {
                    names = (try? await client.readerNames()) ?? []
                    if names.count < 2 { try await Task.sleep(for: .milliseconds(20)) }
                }
                guard names.count == 2 || StopSignals.shared.received != nil else { throw CLIError(kind: "soak", message: "pcscd shows no bi-fente reader; see \(setup.pcscd.logPath)", exitCode: CarteExit.cardOrReader) }
                let slots = setup.backend.readerNames
                var rng = SplitMix64(seed: seed)
                var report = SoakReport(seed: seed, driverTimeoutMilliseconds: driverTimeout)
                let clock = ContinuousClock()
                let start = clock.now
                for round in 0..<faults {
                    if clock.now - start > .seconds(seconds) { break }
                    if StopSignals.shared.received != nil { break }
                    let onCPS = Bool.random(using: &rng)
                    let slot = onCPS ? 1 : 0
                    let fault = randomFault(&rng)
                    // Both cards in place and seen by pcscd, no fault left from the round before.
                    for (i, image) in [vitale, cps].enumerated() where setup.backend.slotIsEmpty(slots[i]) {
                        try setup.backend.insert(image, into: slots[i])
                    }
                    for i in 0..<2 { try setup.backend.clearFaults(in: slots[i]) }
                    try await waitPresent(client, names)
                    if let fault { try setup.backend.inject(fault, into: slots[slot]) }
                    let name = fault.map { "\($0)".components(separatedBy: " (").first ?? "\($0)" } ?? "none"
                    let first = readOnce(onCPS: onCPS, reader: names[slot])
                    if StopSignals.shared.received != nil { break }
                    report.count(first, fault: name, round: round)
                    if case .typedError = first {
                        // Put the card back (a removal fault took it), clear the faults, read again.
                        try setup.backend.clearFaults(in: slots[slot])
                        if setup.backend.slotIsEmpty(slots[slot]) { try setup.backend.insert(onCPS ? cps : vitale, into: slots[slot]) }
                        try await waitPresent(client, names)
                        let second = readOnce(onCPS: onCPS, reader: names[slot])
                        if StopSignals.shared.received != nil { break }
                        if case .clean = second { report.recoveries += 1 } else { report.count(second, fault: "\(name) (second read)", round: round) }
                    }
                }
                report.seconds = Double((clock.now - start).components.seconds)
                report.interrupted = StopSignals.shared.received != nil
                if global.json { Output.printJSON(report) } else { print(report.text) }
                if report.crashes > 0 || report.hangs > 0 || report.untyped > 0 { throw ExitCode(CarteExit.unexpected) }
            }
        }

        private func randomFault(_ rng: inout SplitMix64) -> SlotFault? {
            switch Int.random(in: 0..<9, using: &rng) {
            case 0: return nil
            case 1: return .removeBefore
            case 2: return .removeDuring
            case 3: return .removeAfter
            case 4: return .mute(count: 1)
            case 5: return .slow(.milliseconds(Int.random(in: 5...40, using: &rng)))
            case 6: return .statusWord(StatusWord(rawValue: [0x6F00, 0x6A82, 0x6982, 0x6D00, 0x6581].randomElement(using: &rng)!), count: 1)
            case 7: return .warmReset
            default: return .statusWord(StatusWord(rawValue: 0x6A86), count: Int.random(in: 1...3, using: &rng))
            }
        }

        /// Waits (up to 5 s) until pcscd sees a card in both slots.
        private func waitPresent(_ client: PCSCBackend, _ names: [String]) async throws {
            for _ in 0..<250 where StopSignals.shared.received == nil {
                var present = 0
                for n in names { if case .present = (try? await client.state(of: n)) ?? .empty { present += 1 } }
                if present == names.count { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        /// One read by a separate `carte` process, classified.
        private func readOnce(onCPS: Bool, reader: String) -> SoakOutcome {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
            if !FileManager.default.isExecutableFile(atPath: p.executableURL!.path), let exe = Bundle.main.executableURL { p.executableURL = exe }
            p.arguments = (onCPS ? ["cps", "info"] : ["read"]) + ["--backend", "pcsc", "-r", reader, "--json"]
            let out = Pipe()
            p.standardOutput = out
            // Standard error goes to a file: a crashing child's backtrace is kept for the report.
            let errPath = NSTemporaryDirectory() + "cartekit-soak-\(getpid())-stderr"
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            defer { try? FileManager.default.removeItem(atPath: errPath) }
            p.standardError = FileHandle(forWritingAtPath: errPath) ?? FileHandle.nullDevice
            p.standardInput = FileHandle.nullDevice
            // Forgotten as soon as it ends, before its PID can be reused: a stop signal kills only a live read.
            p.terminationHandler = { _ in SoakChild.current.withLock { $0 = nil } }
            do { try p.run() } catch { return .untyped("cannot start carte: \(error)") }
            SoakChild.current.withLock { $0 = p.isRunning ? p.processIdentifier : nil }
            defer { SoakChild.current.withLock { $0 = nil } }
            if StopSignals.shared.received != nil { kill(p.processIdentifier, SIGKILL) }
            let killed = OnceFlag()
            let timer = DispatchWorkItem {
                if p.isRunning, killed.take() { kill(p.processIdentifier, SIGKILL) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(readTimeout), execute: timer)
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            timer.cancel()
            if !killed.take() { return .hang }
            if p.terminationReason == .uncaughtSignal {
                let backtrace = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
                return .crash(Int(p.terminationStatus), String(backtrace.prefix(3000)))
            }
            let status = p.terminationStatus
            if status == 0 { return .clean }
            let text = String(decoding: data, as: UTF8.self)
            if [2, 3, 4, 5, 6].contains(status), text.contains("\"schema\" : \"carte.error/1\"") {
                let kind = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]).flatMap { ($0["error"] as? [String: Any])?["kind"] as? String } ?? "?"
                return .typedError(kind)
            }
            return .untyped("exit \(status): \(text.prefix(300))")
        }
    }
}

/// The read process in flight, for a stop signal to end it.
enum SoakChild {
    static let current = Mutex<Int32?>(nil)
}

enum SoakOutcome {
    case clean
    case typedError(String)
    case untyped(String)
    case crash(Int, String)
    case hang
}

/// `carte sim soak --json`, schema `carte.soak/1` (docs/json.md).
struct SoakReport: Encodable {
    var schema = "carte.soak/1"
    let seed: UInt64
    let driverTimeoutMilliseconds: Int
    var rounds = 0
    var clean = 0
    var typedErrors = 0
    var recoveries = 0
    var untyped = 0
    var crashes = 0
    var hangs = 0
    var seconds = 0.0
    /// Whether SIGINT or SIGTERM ended the soak before its rounds or time were done.
    var interrupted = false
    /// Rounds by fault: how many, and their outcomes.
    var byFault: [String: [String: Int]] = [:]
    /// The first untyped failures, crashes and hangs (round, fault, detail).
    var problems: [String] = []

    mutating func count(_ outcome: SoakOutcome, fault: String, round: Int) {
        if !fault.hasSuffix("(second read)") { rounds += 1 }
        let key: String
        switch outcome {
        case .clean: clean += 1; key = "clean"
        case .typedError(let kind): typedErrors += 1; key = "typed error (\(kind))"
        case .untyped(let why): untyped += 1; key = "untyped"; note("round \(round) \(fault): untyped failure: \(why)")
        case .crash(let signal, let stderr):
            crashes += 1; key = "crash"
            note("round \(round) \(fault): killed by signal \(signal)" + (stderr.isEmpty ? "" : "; its standard error begins: \(stderr)"))
        case .hang: hangs += 1; key = "hang"; note("round \(round) \(fault): no end within the read timeout")
        }
        byFault[fault, default: [:]][key, default: 0] += 1
    }

    private mutating func note(_ line: String) {
        if problems.count < 20 { problems.append(line) }
    }

    var text: String {
        var lines = ["carte sim soak: \(rounds) rounds in \(Int(seconds)) s\(interrupted ? " (interrupted)" : "") (seed \(seed), driver timeout \(driverTimeoutMilliseconds) ms)", "",
                     "clean reads   \(clean)", "typed errors  \(typedErrors)", "recoveries    \(recoveries)",
                     "untyped       \(untyped)  (must be 0)", "crashes       \(crashes)  (must be 0)", "hangs         \(hangs)  (must be 0)", ""]
        for (fault, outcomes) in byFault.sorted(by: { $0.key < $1.key }) {
            lines.append("  \(fault): " + outcomes.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if !problems.isEmpty { lines += [""] + problems }
        return lines.joined(separator: "\n")
    }
}

extension SimulatorBackend {
    /// Whether the slot `name` holds no card (read synchronously: the simulator never suspends).
    func slotIsEmpty(_ name: String) -> Bool {
        physicalReaders.flatMap(\.slots).first { $0.info.name == name }?.slotState == .empty
    }
}
