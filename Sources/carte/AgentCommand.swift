import ArgumentParser
import CarteAgent
import CarteBundledWeb
import CarteCore
import CarteDoctor
import CarteKit
import CarteVitale
import Foundation
import Logging

/// `carte agent`: the cards of this workstation for web pages (docs/agent.md).
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Serve the readers and cards to web pages: protocol carte.agent/1 over a loopback WebSocket.",
        discussion: """
            carte agent serve runs as the workstation's user and listens on 127.0.0.1 and ::1 only. A page may \
            connect when its origin is allowed (carte agent allow ORIGIN, or the administrator's \
            /etc/cartekit/agent-origins); a local program (no Origin) presents the token of carte agent token. \
            The Host header must be the agent's own address (DNS-rebinding names are refused). docs/agent.md \
            documents the protocol, its errors and the JavaScript client (web/cartekit-agent.js).
            """,
        subcommands: [Serve.self, Allow.self, Deny.self, List.self, Pair.self, Token.self, Trust.self],
        defaultSubcommand: Serve.self
    )

    /// The port pages connect to by default: `ws://`, and `wss://` on the next one.
    static let defaultPort = 9743
    static let defaultTLSPort = 9744

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Run the agent (until interrupted).",
            discussion: """
                The first line of standard output is the address (ws://127.0.0.1:PORT/carte.agent/1). Every \
                refused connection is logged on standard error with its reason; a PIN never is, and NIRs only \
                at debug level (-vv). SIGTERM or SIGINT stops it.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Readers to serve: pcsc (the readers pcscd knows, the default) or simulator (in-memory virtual readers).")
        var backend: BackendKind = .pcsc
        @OptionGroup var simulator: SimulatorOptions
        @OptionGroup var apcv: ApCVOptions
        @Option(help: ArgumentHelp("The TCP port on 127.0.0.1 and ::1 (0: one the system chooses).", valueName: "PORT"))
        var port: Int = AgentCommand.defaultPort
        @Option(name: .customLong("allow"), help: ArgumentHelp("Also allow this origin for this run (repeatable), beside the allow-lists.", valueName: "ORIGIN"))
        var origins: [String] = []
        @Option(help: ArgumentHelp("Evaluate the rights of a Vitale on this date (YYYY-MM-DD) instead of today.", valueName: "DATE"))
        var date: String?
        @Option(help: ArgumentHelp("The TCP port of wss:// on 127.0.0.1 and ::1, with the certificate of the agent's local CA (0: one the system chooses).", valueName: "PORT"))
        var tlsPort: Int = AgentCommand.defaultTLSPort
        @Flag(help: "Serve ws:// only (no local CA, no wss://).")
        var noTLS = false
        @Option(help: ArgumentHelp("Also serve the demo page on http://127.0.0.1:PORT (0: a port the system chooses); its origin is allowed for this run.", valueName: "PORT"))
        var demoPort: Int?
        @Flag(help: "Stop when the process that started the agent ends (for test harnesses).")
        var exitWithParent = false

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
            if let demoPort, !(0...65535).contains(demoPort) { throw ValidationError("--demo-port must be 0 to 65535, not \(demoPort)") }
            guard (0...65535).contains(tlsPort) else { throw ValidationError("--tls-port must be 0 to 65535, not \(tlsPort)") }
            for o in origins where AgentAccess.normalise(origin: o) == nil {
                throw ValidationError("--allow takes an origin (scheme://host[:port]), not \"\(o.prefix(80))\"")
            }
            if let date, VitaleDate(iso: date) == nil { throw ValidationError("--date takes a calendar date YYYY-MM-DD, not \"\(date)\"") }
            try validateSoftwareID(apcv.softwareID)
        }

        func run() async throws {
            StopSignals.shared.install()
            var logger = global.makeLogger()
            if global.verbose == 0 { logger.logLevel = .notice }
            try await reporting(json: global.json) {
                let files = AgentFiles()
                let allowed: [String]
                let token: String
                do throws(AgentFiles.Problem) {
                    allowed = try files.allowedOrigins().map(\.origin) + origins
                    token = try files.token()
                } catch {
                    throw CLIError(kind: "file", message: error.description, exitCode: CarteExit.invalidInput)
                }
                // The simulator holds the demo Vitale and a CPS (as for carte cps) unless --image says otherwise.
                let readers = try simulator.makeAnyBackend(backend, logger: logger, defaultImages: CPSCommand.defaultImages)
                let inserted = backend == .simulator ? try simulator.namedImages() : []
                let manager = ReaderManager(backend: readers, apcvResolver: try await apcv.resolver(inserted: inserted), logger: logger)
                let allowList = AgentAllowList(files: files, fixed: origins)
                let serviceLogger = logger
                let service = AgentService(manager: manager, trust: try BundledTestPKI.trust(), agentVersion: CarteVersion.withCommit, logger: logger,
                                           evaluationDay: date.flatMap { VitaleDate(iso: $0) }, pairing: AgentPairing(files: files), allowList: allowList,
                                           announce: { origin, code in AgentCommand.announce(origin: origin, code: code, logger: serviceLogger) })
                var tls: AgentTLS.Material? = nil
                if !noTLS {
                    do throws(AgentFiles.Problem) { tls = try AgentTLS(files: files).material() } catch {
                        throw CLIError(kind: "file", message: error.description, exitCode: CarteExit.invalidInput)
                    }
                }
                let server: AgentServer
                let demo: AgentDemoServer?
                do throws(AgentStartError) {
                    // The demo page over https when wss:// is served (a page and its agent alike).
                    demo = try demoPort.map { port throws(AgentStartError) in try AgentDemoServer(files: BundledWeb.files, port: port, tls: tls, logger: logger) }
                    server = try AgentServer(service: service, port: port, tlsPort: tlsPort, tls: tls, allowedOrigins: allowed + [demo?.origin].compactMap { $0 },
                                             token: token, allowList: allowList, logger: logger)
                } catch {
                    throw CLIError(kind: "socket", message: error.description, exitCode: CarteExit.invalidInput)
                }
                // Standard output, for scripts and tests: the ws:// address, then the wss:// one, then the demo page.
                var lines = "listening on ws://127.0.0.1:\(server.port)\(AgentServer.path)\n"
                if let tlsPort = server.tlsPort { lines += "listening on wss://127.0.0.1:\(tlsPort)\(AgentServer.path)\n" }
                if let demo { lines += "demo page on \(demo.origin)/?agent=\(server.tlsPort ?? server.port)\n" }
                FileHandle.standardOutput.write(Data(lines.utf8))
                Output.stderr("carte agent on \(server.addresses.joined(separator: " and ")); \(server.access.allowedOrigins.count) allowed origin(s); token in \(files.tokenFile)")
                await serveUntilStopped(exitWithParent: exitWithParent) {
                    server.stop()
                    demo?.stop()
                }
                Output.stderr("carte agent stopped")
            }
        }
    }

    /// Tells the user at the screen that a page asks to be paired: standard error (the agent's log), and
    /// a desktop notification when a session bus and notify-send are there (libnotify-bin).
    static func announce(origin: String, code: String, logger: Logger) {
        Output.stderr("pairing: \(origin) asks to use the cards; if that is the page you are using, run: carte agent pair \(code)")
        let env = ProcessInfo.processInfo.environment
        guard env["DBUS_SESSION_BUS_ADDRESS"] != nil, FileManager.default.isExecutableFile(atPath: "/usr/bin/notify-send") else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/notify-send")
        p.arguments = ["--app-name=CarteKit", "CarteKit: \(origin) asks to use your cards", "If that is the page you are using, run: carte agent pair \(code)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { logger.debug("notify-send: \(error)") }
    }

    struct Pair: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pair",
            abstract: "Allow the page that shows this pairing code (it asked the running agent for it).",
            discussion: "Says which origin the code is for and, on a terminal, asks before allowing it (--yes does not ask). A code lasts 5 minutes and is used once.")
        @Argument(help: ArgumentHelp("The 6-digit code the page shows.", valueName: "CODE"))
        var code: String
        @Flag(help: "Allow without asking.")
        var yes = false

        func run() throws {
            let files = AgentFiles()
            let pairing = AgentPairing(files: files)
            var origin = ""
            try reportingFileProblems { () throws(AgentPairing.Failure) in origin = try pairing.origin(of: code) }
            if !yes && isatty(STDIN_FILENO) == 1 {
                FileHandle.standardError.write(Data("allow \(origin) to use the cards of this workstation? [y/N] ".utf8))
                guard let answer = readLine(), ["y", "yes", "o", "oui"].contains(answer.lowercased()) else {
                    print("not allowed")
                    return
                }
            }
            try reportingFileProblems { () throws(AgentPairing.Failure) in _ = try pairing.take(code: code) }
            try reportingFileProblems { () throws(AgentFiles.Problem) in try files.allow(origin) }
            print("paired \(origin)")
        }
    }

    struct Allow: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "allow", abstract: "Allow a page's origin (your own allow-list).")
        @Argument(help: ArgumentHelp("The origin: scheme://host[:port] (http or https).", valueName: "ORIGIN"))
        var origin: String
        func run() throws {
            try reportingFileProblems { () throws(AgentFiles.Problem) in
                let o = try AgentFiles().allow(origin)
                print("allowed \(o) (a running agent admits it from its next connection)")
            }
        }
    }

    struct Deny: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "deny", abstract: "Remove a page's origin from your allow-list.")
        @Argument(help: ArgumentHelp("The origin: scheme://host[:port].", valueName: "ORIGIN"))
        var origin: String
        func run() throws {
            try reportingFileProblems { () throws(AgentFiles.Problem) in
                let removed = try AgentFiles().deny(origin)
                print(removed ? "removed \(AgentAccess.normalise(origin: origin) ?? origin)" : "\(origin) was not on your allow-list")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the allowed origins and the file allowing each.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try reportingFileProblems(json: global.json) { () throws(AgentFiles.Problem) in
                let all = try AgentFiles().allowedOrigins()
                if global.json {
                    Output.printJSON(OriginsReport(origins: all.map { .init(origin: $0.origin, file: $0.file) }))
                } else if all.isEmpty {
                    print("no origin is allowed (carte agent allow ORIGIN)")
                } else {
                    for o in all { print("\(o.origin)\t\(o.file)") }
                }
            }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token", abstract: "Print the token local programs present (made on first use, readable by you only).")
        func run() throws {
            try reportingFileProblems { () throws(AgentFiles.Problem) in print(try AgentFiles().token()) }
        }
    }
}

extension AgentCommand {
    struct Trust: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "trust",
            abstract: "Add or remove the agent's local CA for Chromium and Firefox (your NSS databases) and, with --system, the system store.",
            discussion: """
                The CA is made on the agent's first run (or here), for you only: its key is readable by you alone, and \
                it is name-constrained to localhost, 127.0.0.1 and ::1, so it can vouch for no other host. Chromium \
                reads ~/.pki/nssdb, Firefox each profile's own database (restart them). Uses certutil (Debian \
                libnss3-tools); --system writes /usr/local/share/ca-certificates and runs update-ca-certificates (root).
                """
        )
        enum Action: String, ExpressibleByArgument, CaseIterable { case install, remove }
        @Argument(help: "install or remove")
        var action: Action
        @Flag(help: "Also the system store (root).")
        var system = false

        static let nickname = "CarteKit agent local CA"

        func run() throws {
            let files = AgentFiles()
            let tls = AgentTLS(files: files)
            try reportingFileProblems { () throws(AgentFiles.Problem) in _ = try tls.material() }
            let certutil = ["/usr/bin/certutil", "/bin/certutil"].first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let certutil else {
                Output.stderr("error: certutil is not installed (Debian package libnss3-tools): apt install libnss3-tools")
                throw ExitCode(CarteExit.invalidInput)
            }
            let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
            var databases = [home + "/.pki/nssdb"]
            for root in [home + "/.mozilla/firefox", home + "/snap/firefox/common/.mozilla/firefox"] {
                for profile in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where FileManager.default.fileExists(atPath: "\(root)/\(profile)/cert9.db") {
                    databases.append("\(root)/\(profile)")
                }
            }
            var failed = false
            for db in databases {
                let r: (status: Int32, output: String)
                switch action {
                case .install:
                    if db.hasSuffix("/.pki/nssdb") && !FileManager.default.fileExists(atPath: db + "/cert9.db") {
                        try? FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                        _ = runProgram(certutil, ["-N", "-d", "sql:" + db, "--empty-password"])
                    }
                    _ = runProgram(certutil, ["-D", "-d", "sql:" + db, "-n", Trust.nickname])   // a CA of an earlier run
                    r = runProgram(certutil, ["-A", "-d", "sql:" + db, "-t", "C,,", "-n", Trust.nickname, "-i", tls.caCertificate])
                case .remove:
                    r = runProgram(certutil, ["-D", "-d", "sql:" + db, "-n", Trust.nickname])
                }
                if r.status == 0 || (action == .remove && r.output.contains("could not find")) {
                    print("\(action == .install ? "trusted in" : "removed from") \(db)")
                } else {
                    failed = true
                    Output.stderr("error: \(db): certutil: \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))")
                }
            }
            if system {
                let target = "/usr/local/share/ca-certificates/cartekit-agent-\(NSUserName()).crt"
                do {
                    if action == .install {
                        try FileManager.default.createDirectory(atPath: "/usr/local/share/ca-certificates", withIntermediateDirectories: true)
                        try String(contentsOfFile: tls.caCertificate, encoding: .utf8).write(toFile: target, atomically: true, encoding: .utf8)
                    } else if FileManager.default.fileExists(atPath: target) {
                        try FileManager.default.removeItem(atPath: target)
                    }
                    let r = runProgram("/usr/sbin/update-ca-certificates", ["--fresh"])
                    if r.status == 0 { print("\(action == .install ? "trusted in" : "removed from") the system store (\(target))") } else {
                        failed = true
                        Output.stderr("error: update-ca-certificates: \(r.output.suffix(300))")
                    }
                } catch {
                    failed = true
                    Output.stderr("error: \(target): \((error as NSError).localizedDescription) (the system store needs root)")
                }
            }
            if failed { throw ExitCode(CarteExit.invalidInput) }
        }
    }
}

/// Runs a `carte agent` file command: a problem with an allow-list, the token, the certificates or a
/// pairing code is reported as every CLI error is (`error: …`, or `carte.error/1` with `--json`), kind
/// `file`, exit 2.
func reportingFileProblems<E: Error & CustomStringConvertible>(json: Bool = false, _ body: () throws(E) -> Void) throws {
    do { try body() } catch { throw CLIError(kind: "file", message: error.description, exitCode: CarteExit.invalidInput).report(json: json) }
}

/// `carte agent list --json`, schema `carte.agent.origins/1`.
struct OriginsReport: Encodable {
    struct Entry: Encodable {
        var origin: String
        var file: String
    }
    var schema = "carte.agent.origins/1"
    var origins: [Entry]
}
