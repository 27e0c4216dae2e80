import ArgumentParser
import CarteConsole
import CarteCore
import CarteEmulator
import CartePCSC
import CarteSimDaemon
import Foundation
import Logging

struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Run and drive the simulator daemon that serves virtual readers to pcscd.",
        discussion: """
            The daemon (carte sim serve) hosts virtual readers with card images. pcscd sees them through \
            CarteKit's driver, libifdcarte.so, declared by the files carte sim reader-conf writes; every \
            PC/SC program (pcsc_scan, opensc-tool, pyscard, your software) then sees the virtual readers. \
            Cards are inserted and removed at run time with carte sim insert/remove. See docs/simulator.md.
            """,
        subcommands: [Serve.self, Console.self, Insert.self, Remove.self, Fault.self, Keypad.self, Status.self, ReaderConf.self, Soak.self, ApCVServiceCommand.self, ApCVQR.self, RightsServiceCommand.self]
    )

    struct SocketOption: ParsableArguments {
        @Option(name: .customLong("socket"), help: ArgumentHelp("The daemon's Unix socket.", valueName: "PATH"))
        var path: String
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Start the simulator daemon on a Unix socket (runs until interrupted).",
            discussion: """
                The socket is created with mode 0600. SIGTERM or SIGINT (Ctrl-C) stops the daemon within a second and removes its socket, also when a script starts it in the background, under nohup or setsid (docs/simulator.md).

                --usb also makes each virtual reader a fake USB device in a umockdev testbed (Debian umockdev), for a \
                pcscd that finds it through its own hotplug instead of reader.conf.d: start that pcscd with the \
                environment and the driver bundle `carte sim status --json` reports under "usb" (docs/simulator.md). \
                `carte sim fault READER 0 unplug` then removes the reader from pcscd, and `plug` brings it back.
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @OptionGroup var simulator: SimulatorOptions
        @Flag(help: "Stop when the process that started the daemon ends (for test harnesses: no daemon is ever left behind).")
        var exitWithParent = false
        @Option(help: ArgumentHelp("Also play the card of the first slot (or --vpcd-slot) for a stock vsmartcard vpcd listening at HOST:PORT (vpcd's default: 127.0.0.1:35963).", valueName: "HOST:PORT"))
        var vpcd: String?
        @Option(help: ArgumentHelp("The slot --vpcd plays: a slot name or unique prefix.", valueName: "SLOT"))
        var vpcdSlot: String?
        @Flag(help: "Let --vpcd reach a non-loopback address (off by default: card images stay on this machine).")
        var vpcdAllowRemote = false
        @Flag(help: "Also show the readers as fake USB devices (umockdev) that a pcscd finds by hotplug and that unplug and plug back.")
        var usb = false
        @Option(help: ArgumentHelp("With --usb: CarteKit's pcscd driver (default: libifdcarte.so next to carte).", valueName: "PATH"))
        var driver: String?
        @Option(help: ArgumentHelp("With --usb: milliseconds the driver waits for a card's answer.", valueName: "MS"))
        var timeout: Int = 30_000
        @Option(help: ArgumentHelp("Also serve the QA console (carte sim console) on 127.0.0.1:PORT (0: any free port); its address goes to standard output.", valueName: "PORT"))
        var console: Int?

        func validate() throws {
            guard (100...600_000).contains(timeout) else { throw ValidationError("--timeout must be in 100...600000 milliseconds, not \(timeout)") }
            if let console { guard (0...65535).contains(console) else { throw ValidationError("--console must be 0 to 65535, not \(console)") } }
        }

        /// The fake USB readers (--usb), or `nil`.
        func makeUSBReaders(_ backend: SimulatorBackend) throws -> SimulatedUSBReaders? {
            guard usb else { return nil }
            return try SimulatedUSBReaders(readers: backend.physicalReaders.map { ($0.profile, $0.slots.count) }, socket: socket.path,
                                           driver: driver ?? defaultDriverPath(), timeout: timeout)
        }

        static func readerFaults(_ readers: SimulatedUSBReaders?) -> (@Sendable (Int, String) throws -> String)? {
            guard let readers else { return nil }
            return { reader, fault in try readers.fault(reader: reader, name: fault) }
        }

        func run() async throws {
            // First: a SIGTERM during start-up still stops the daemon cleanly once it is up.
            StopSignals.shared.install()
            var logger = global.makeLogger()
            if global.verbose == 0 { logger.logLevel = .info }
            try await reporting(json: global.json) {
                let backend = try simulator.makeBackend(logger: logger)
                let usbReaders = try makeUSBReaders(backend)
                let server = SimulatorServer(backend: backend, path: socket.path, logger: logger, loadImage: { try SimulatorOptions.loadImage($0) },
                                             readerFaults: Serve.readerFaults(usbReaders), usb: usbReaders?.status)
                do {
                    try server.start()
                } catch {
                    usbReaders?.stop()
                    throw CLIError(kind: "socket", message: "\(error)", exitCode: CarteExit.cardOrReader)
                }
                let consoleServer: ConsoleServer?
                do {
                    consoleServer = try console.map { try startConsole(socket: socket.path, port: $0, logger: logger) }
                } catch {
                    server.stop()
                    usbReaders?.stop()
                    throw error
                }
                if let consoleServer { announceConsole(consoleServer, socket: socket.path, json: global.json) }
                for reader in backend.physicalReaders {
                    Output.stderr("serving \(reader.profile.name) (\(reader.slots.count) slot\(reader.slots.count == 1 ? "" : "s"))")
                }
                if let usbReaders {
                    Output.stderr("USB testbed \(usbReaders.testbed.root): start pcscd with the environment and drivers of `carte sim status --json` (\"usb\")")
                }
                var vpcdSide: VPCDCardSide? = nil
                // However the daemon ends from here (signal, bad --vpcd), its socket is removed.
                defer {
                    consoleServer?.stop()
                    vpcdSide?.stop()
                    server.stop()
                    usbReaders?.stop()
                }
                if let vpcd {
                    let parts = vpcd.split(separator: ":")
                    guard parts.count == 2, let port = UInt16(parts[1]) else {
                        throw CLIError(kind: "usage", message: "--vpcd takes HOST:PORT (for example 127.0.0.1:35963)", exitCode: ExitCode.validationFailure.rawValue)
                    }
                    let slots = backend.physicalReaders.flatMap(\.slots)
                    let candidates = vpcdSlot.map { name in slots.filter { $0.info.name == name || $0.info.name.hasPrefix(name) } } ?? Array(slots.prefix(1))
                    guard candidates.count == 1, let slot = candidates.first else {
                        throw CLIError(kind: "usage", message: "--vpcd-slot must name one slot: \(slots.map(\.info.name).joined(separator: ", "))", exitCode: ExitCode.validationFailure.rawValue)
                    }
                    do {
                        let side = try VPCDCardSide(slot: slot, host: String(parts[0]), port: port, mode: .connect, allowRemote: vpcdAllowRemote, logger: logger)
                        try side.start()
                        vpcdSide = side
                    } catch {
                        throw CLIError(kind: "socket", message: "\(error)", exitCode: CarteExit.cardOrReader)
                    }
                    Output.stderr("playing \(slot.info.name) for vpcd at \(vpcd)")
                }
                if exitWithParent {
                    let parent = getppid()
                    let watcher = Thread {
                        while getppid() == parent { usleep(200_000) }
                        consoleServer?.stop()
                        server.stop()
                        usbReaders?.stop()
                        Foundation.exit(0)
                    }
                    watcher.start()
                }
                // Wait for SIGINT/SIGTERM (caught since the command started), then remove the socket.
                let signo = await StopSignals.shared.wait()
                Output.stderr("simulator daemon stopped (\(signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "cancelled"))")
            }
        }
    }

    struct Insert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "insert", abstract: "Insert a card image into a slot of the running daemon.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @Flag(help: "Insert a mute card (present, but it does not answer the reset).")
        var mute = false
        @Argument(help: "The reader: its index (carte sim status) or a unique name prefix.")
        var reader: String
        @Argument(help: "The slot index (0 for the first slot).")
        var slot: Int
        @Argument(help: "The card image: a file, or bundled:PATH.")
        var image: String
        @OptionGroup var wait: WaitOption

        func run() async throws {
            let logger = global.makeLogger()
            // Paths are resolved here: the daemon may run in another directory.
            let imageArgument = image.hasPrefix("bundled:") ? image : URL(fileURLWithPath: image).standardizedFileURL.path
            try await control(global: global, socket: socket.path, ["op": "insert", "reader": readerArgument(reader), "slot": slot, "image": imageArgument, "mute": mute],
                              wait: wait.seconds.map { (seconds: $0, expect: mute ? .mute : .present, logger: logger) })
        }
    }

    struct Fault: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fault",
            abstract: "Inject a fault into a slot of the running daemon (what real cards and readers do in the field).",
            discussion: """
                FAULT is one of:
                  remove-before   the card is pulled out before the next APDU reaches it
                                  (nothing runs)
                  remove-during   the next APDU runs on the card, which is pulled out
                                  before answering
                  remove-after    the next APDU is answered, then the card is pulled out
                  mute            the next --count APDUs get no answer: the driver's
                                  timeout fires (carte sim reader-conf --timeout sets it)
                  slow            every APDU is answered after --ms milliseconds
                  sw              the next --count APDUs are answered with --sw alone
                                  (they do not run)
                  reset           the card is warm-reset before the next APDU (its
                                  volatile state is lost; pcscd is not told)
                  clear           disarm every fault of the slot
                  unplug          the whole reader is unplugged: pcscd removes it
                                  (daemon started with --usb)
                  plug            the reader is plugged back: pcscd adds it again (--usb)

                An insertion clears a slot's faults. A card image can schedule faults itself \
                (faults:, CardImages/README.md). A reader of reader.conf.d cannot be unplugged \
                (pcscd never removes those): start the daemon with --usb. To crash the daemon, \
                kill it.
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @Argument(help: "The reader: its index (carte sim status) or a unique name prefix.")
        var reader: String
        @Argument(help: "The slot index (0 for the first slot).")
        var slot: Int
        @Argument(help: "The fault (see above).")
        var fault: String
        @Option(help: "APDUs the fault lasts for (mute, sw).")
        var count: Int?
        @Option(help: "Delay per APDU in milliseconds (slow).")
        var ms: Int?
        @Option(help: ArgumentHelp("The status word to answer (sw), e.g. 6F00.", valueName: "HEX"))
        var sw: String?

        func validate() throws {
            guard SlotFault.names.contains(fault) || SimulatorServer.readerFaultNames.contains(fault) || fault == "clear" else {
                throw ValidationError("unknown fault \"\(fault)\": \((SlotFault.names + SimulatorServer.readerFaultNames).joined(separator: ", ")) or clear")
            }
            if let count, !(1...10_000).contains(count) { throw ValidationError("--count is 1 to 10000 APDUs, not \(count)") }
            if let ms, !(0...600_000).contains(ms) { throw ValidationError("--ms is 0 to 600000 milliseconds, not \(ms)") }
        }

        func run() async throws {
            _ = global.makeLogger()
            var request: [String: any Sendable] = ["op": "fault", "reader": readerArgument(reader), "slot": slot, "fault": fault]
            if let count { request["count"] = count }
            if let ms { request["ms"] = ms }
            if let sw { request["sw"] = sw }
            try await control(global: global, socket: socket.path, request)
        }
    }

    struct Keypad: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keypad",
            abstract: "Type on the PIN pad of a virtual reader (what the holder's fingers do).",
            discussion: """
                A reader whose profile has a pin-pad section (bi-fente-pinpad) takes the PIN \
                on its own keypad when software asks it to (PC/SC part 10 \
                FEATURE_VERIFY_PIN_DIRECT / MODIFY_PIN_DIRECT): the reader builds the VERIFY \
                itself, so the PIN never passes through the host. This command queues what \
                the next prompts get, in order:
                  --digits 1234   digits typed, then the validation key (repeat for a
                                  change: current PIN, new PIN, confirmation)
                  --cancel        the cancel key: the reader answers 64 01
                  --timeout       nobody types: the reader answers 64 00 at once
                  --after MS      each entry is typed MS milliseconds after the prompt
                                  starts; later than the prompt's timeout (bTimerOut),
                                  the reader answers 64 00

                An entry shorter or longer than the prompt allows gets 64 03; a confirmation \
                that differs gets 64 02. Without a queued entry, a prompt waits for one until \
                its timeout (the host's bTimerOut, or the profile's default-timeout), then \
                answers 64 00. The digits are never logged or reported, only how many there \
                are.
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @Argument(help: "The reader: its index (carte sim status) or a unique name prefix.")
        var reader: String
        @Argument(help: "The slot index (0 for the first slot).")
        var slot: Int
        @Option(name: .customLong("digits"), help: ArgumentHelp("Digits typed, then validated (repeatable, in order).", valueName: "DIGITS"))
        var digits: [String] = []
        @Flag(help: "Press the cancel key (after the digits entries, if any).")
        var cancel = false
        @Flag(help: "Type nothing: the prompt times out at once (after the digits entries, if any).")
        var timeout = false
        @Option(help: ArgumentHelp("Type each entry this many milliseconds after its prompt starts.", valueName: "MS"))
        var after: Int = 0
        @Flag(help: "Forget the entries queued before this command.")
        var clear = false

        func validate() throws {
            guard !(cancel && timeout) else { throw ValidationError("--cancel and --timeout are exclusive") }
            guard !digits.isEmpty || cancel || timeout || clear else { throw ValidationError("say what to type: --digits, --cancel or --timeout (or --clear)") }
            guard (0...600_000).contains(after) else { throw ValidationError("--after is 0 to 600000 milliseconds") }
            for d in digits {
                // Checked here too, so a typo is refused before the daemon is asked (the message never repeats the digits).
                do { _ = try KeypadDigits(d) } catch { throw ValidationError(error.description) }
            }
        }

        func run() async throws {
            _ = global.makeLogger()
            var entries: [[String: any Sendable]] = digits.map { ["digits": $0, "afterMs": after] }
            if cancel { entries.append(["cancel": true, "afterMs": after]) }
            if timeout { entries.append(["timeout": true]) }
            try await control(global: global, socket: socket.path, ["op": "keypad", "reader": readerArgument(reader), "slot": slot, "entries": entries, "clear": clear])
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove the card from a slot of the running daemon.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @Argument(help: "The reader: its index or a unique name prefix.")
        var reader: String
        @Argument(help: "The slot index.")
        var slot: Int
        @OptionGroup var wait: WaitOption

        func run() async throws {
            let logger = global.makeLogger()
            try await control(global: global, socket: socket.path, ["op": "remove", "reader": readerArgument(reader), "slot": slot],
                              wait: wait.seconds.map { (seconds: $0, expect: .empty, logger: logger) })
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the daemon's readers, slots and cards.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption

        func run() async throws {
            _ = global.makeLogger()
            try await control(global: global, socket: socket.path, ["op": "status"])
        }
    }

    struct ReaderConf: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reader-conf",
            abstract: "Write the reader.conf.d entries that make pcscd load the virtual readers of a running daemon.",
            discussion: """
                One file (cartekit-readers) with an entry per virtual reader, in the daemon's order, each with \
                LIBPATH pointing at libifdcarte.so. For a \
                private pcscd: pcscd -f -c DIR. System-wide: write them into /etc/reader.conf.d and restart \
                pcscd; remove them (rm /etc/reader.conf.d/cartekit-*) and restart pcscd to undo.
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SocketOption
        @Option(help: ArgumentHelp("Directory to write the entries into (created if missing).", valueName: "DIR"))
        var out: String
        @Option(help: ArgumentHelp("The driver to load. Default: libifdcarte.so next to carte.", valueName: "PATH"))
        var driver: String?
        @Option(help: "Milliseconds the driver waits for a card answer before reporting a communication error.")
        var timeout: Int = 30_000

        func validate() throws {
            guard (100...600_000).contains(timeout) else { throw ValidationError("--timeout must be in 100...600000 milliseconds") }
        }

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                let socketPath = URL(fileURLWithPath: socket.path).standardizedFileURL.path
                let driverPath = driver.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? defaultDriverPath()
                guard FileManager.default.isReadableFile(atPath: driverPath) else {
                    throw CLIError(kind: "usage", message: "driver \(driverPath) not found; build it (swift build --product ifdcarte) or give --driver", exitCode: CarteExit.invalidInput)
                }
                let status = try await askDaemon(socketPath, ["op": "status"])
                let readers = status["readers"] as? [[String: Any]] ?? []
                let uid = status["uid"] as? Int
                try FileIO.makeDirectory(out, "the reader.conf.d entries, --out")
                // Entries of an earlier run (another set of readers) would declare readers that no longer exist.
                for old in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] where old.hasPrefix("cartekit-") {
                    try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: out).appendingPathComponent(old).path)
                }
                // One file holding every reader in the daemon's order: pcscd numbers readers in the order
                // it reads them, and it reads the files of a directory in no fixed order.
                var entries: [String] = []
                for reader in readers {
                    guard let index = reader["index"] as? Int, let name = reader["name"] as? String, let slots = reader["slots"] as? [Any] else { continue }
                    entries.append(try ReaderConf.entry(name: name, socket: socketPath, reader: index, slots: slots.count, timeout: timeout, driver: driverPath, uid: uid))
                }
                var written: [String] = []
                if !entries.isEmpty {
                    let file = URL(fileURLWithPath: out).appendingPathComponent("cartekit-readers").path
                    try FileIO.write(entries.joined(separator: "\n"), to: file, "the reader.conf.d entries")
                    written.append(file)
                }
                if global.json {
                    Output.printJSON(ReaderConfReport(files: written, driver: driverPath, socket: socketPath))
                } else {
                    for f in written { print(f) }
                }
            }
        }

        /// One reader.conf entry. pcscd's configuration lexer takes only letters, digits and `=/-._@:`
        /// in a value, so paths with other characters are refused here rather than misread by pcscd.
        /// `uid` makes the driver talk only to a daemon running as that user (`SO_PEERCRED`); `lane: false`
        /// keeps its APDUs on the socket (no shared-memory lane).
        static func entry(name: String, socket: String, reader: Int, slots: Int, timeout: Int, driver: String, uid: Int?, lane: Bool = true) throws -> String {
            func check(_ value: String, _ what: String) throws {
                let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=/-._@:")
                guard value.allSatisfy({ allowed.contains($0) }) else {
                    throw CLIError(kind: "usage", message: "\(what) \(value) has characters pcscd's reader.conf cannot hold (use letters, digits and =/-._@:)", exitCode: CarteExit.invalidInput)
                }
            }
            try check(socket, "the socket path")
            try check(driver, "the driver path")
            return """
                # CarteKit virtual reader \(reader) (synthetic), served by `carte sim serve --socket \(socket)`.
                # Written by `carte sim reader-conf`; remove the file and restart pcscd to undo.
                FRIENDLYNAME "\(name)"
                DEVICENAME   \(socket):reader=\(reader):slots=\(slots):timeout=\(timeout)\(uid.map { ":uid=\($0)" } ?? "")\(lane ? "" : ":lane=0")
                LIBPATH      \(driver)
                CHANNELID    0

                """
        }
    }
}

/// `carte sim reader-conf --json`, schema `carte.reader-conf/1`.
struct ReaderConfReport: Encodable {
    var schema = "carte.reader-conf/1"
    let files: [String]
    let driver: String
    let socket: String
}

/// A one-shot flag (first `take()` returns true).
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false
    func take() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if taken { return false }
        taken = true
        return true
    }
}

/// `libifdcarte.so` in the directory of the running `carte`.
func defaultDriverPath() -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libifdcarte.so").standardizedFileURL.path
}

private func readerArgument(_ text: String) -> any Sendable {
    Int(text) ?? text
}

/// Sends a control request on a thread of its own and returns the answer, or throws a CLI error.
func askDaemon(_ socket: String, _ request: [String: any Sendable]) async throws -> [String: Any] {
    let result: Result<SendableDictionary, CLIError> = await onDedicatedThread {
        do {
            let answer = try SimulatorControlClient(path: socket).send(request)
            if answer["ok"] as? Bool != true {
                let message = answer["error"] as? String ?? "the daemon refused the request"
                // The daemon says what kind of failure it was: a card image it cannot load is the
                // caller's input (exit 2), a reader or slot it does not have is exit 3.
                switch answer["kind"] as? String {
                case "image": return .failure(CLIError(kind: "image", message: message, exitCode: CarteExit.invalidInput))
                case "reader": return .failure(CLIError(kind: "reader", message: message, exitCode: CarteExit.cardOrReader))
                default: return .failure(CLIError(kind: "simulator", message: message, exitCode: CarteExit.cardOrReader))
                }
            }
            return .success(SendableDictionary(value: answer))
        } catch {
            return .failure(CLIError(kind: "simulator", message: "cannot reach the simulator daemon: \(error) (is `carte sim serve --socket \(socket)` running?)", exitCode: CarteExit.cardOrReader))
        }
    }
    return try result.get().value
}

/// JSON answers cross from the I/O thread to the command (read-only afterwards).
struct SendableDictionary: @unchecked Sendable {
    let value: [String: Any]
}

/// `--wait SECONDS` of `carte sim insert` and `remove`.
struct WaitOption: ParsableArguments {
    @Option(name: .customLong("wait"), help: ArgumentHelp(
        "Return only once pcscd reports the slot's new state (a card event seen, the card present, mute or gone), waiting at most SECONDS; exit 3 if it does not. For scripts that insert, then read through pcscd.",
        valueName: "SECONDS"))
    var seconds: Double?

    func validate() throws {
        if let seconds, !(seconds > 0 && seconds <= 600) { throw ValidationError("--wait takes a number of seconds above 0 and at most 600, not \(seconds)") }
    }
}

/// What `--wait` waits for pcscd to report.
enum ExpectedSlotState {
    case present, mute, empty

    func matches(_ state: SlotState) -> Bool {
        switch (self, state) {
        case (.present, .present), (.mute, .mute), (.empty, .empty): return true
        default: return false
        }
    }
}

private func control(global: GlobalOptions, socket: String, _ request: [String: any Sendable],
                     wait: (seconds: Double, expect: ExpectedSlotState, logger: Logger)? = nil) async throws {
    try await SimCommand.Status().reporting(json: global.json) {
        // Through pcscd (libpcsclite, PCSCLITE_CSOCK_NAME as every client): the event counts before.
        let pcsc = wait.map { PCSCBackend(logger: $0.logger) }
        var before: [String: Int] = [:]
        if let pcsc {
            let names: [String]
            do { names = try await pcsc.readerNames() } catch {
                throw CLIError(kind: "reader", message: "--wait: cannot ask pcscd: \(error)", exitCode: CarteExit.cardOrReader)
            }
            for name in names { before[name] = try? await pcsc.stateAndEventCount(of: name).eventCount }
        }
        let answer = try await askDaemon(socket, request)
        if let pcsc, let wait, let name = answer["reader"] as? String {
            guard let initial = before[name] else {
                throw CLIError(kind: "reader", message: "--wait: pcscd does not show \(name) (is it started with this daemon's readers? carte sim reader-conf)", exitCode: CarteExit.cardOrReader)
            }
            let deadline = ContinuousClock.now + .milliseconds(Int(wait.seconds * 1000))
            while true {
                let now = try? await pcsc.stateAndEventCount(of: name)
                // A removal from an empty slot changes nothing pcscd could report: its state is enough.
                if let now, wait.expect.matches(now.state), now.eventCount != initial || (wait.expect == .empty && request["op"] as? String == "remove") { break }
                guard ContinuousClock.now < deadline else {
                    throw CLIError(kind: "reader", message: "--wait: pcscd did not report the new state of \(name) within \(wait.seconds) s (it shows \(now.map { "\($0.state)" } ?? "no state"))", exitCode: CarteExit.cardOrReader)
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        if global.json {
            var object = answer
            object["schema"] = "carte.sim/1"
            object.removeValue(forKey: "ok")
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if let readers = answer["readers"] as? [[String: Any]] {
            for r in readers {
                let pad = (r["pinPad"] as? [String: Any]).map { p in (p["announced"] as? Bool == false) ? ", PIN pad (not announced)" : ", PIN pad" } ?? ""
                print("\(r["index"] ?? "?"): \(r["name"] ?? "?")  [\(r["profile"] ?? "?"), firmware \(r["firmwareVersion"] ?? "?")\(pad)]")
                for s in r["slots"] as? [[String: Any]] ?? [] {
                    var line = "   slot \(s["slot"] ?? "?"): \(s["state"] ?? "?")"
                    if let atr = s["atr"] as? String { line += " \(atr)" }
                    if let image = s["image"] as? String { line += " — \(image)" }
                    if let keypad = s["keypad"] as? [String: Any], let pending = keypad["pending"] as? Int, pending > 0 { line += " (keypad: \(pending) entries queued)" }
                    print(line)
                }
            }
        } else if let reader = answer["reader"] as? String {
            if let pending = answer["pending"] as? Int {
                print("ok: \(reader) (keypad: \(pending) \(pending == 1 ? "entry" : "entries") queued)")
            } else {
                print("ok: \(reader)")
            }
        }
    }
}
