import ArgumentParser
import CarteAgent
import CarteBundledWeb
import CarteCore
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
        subcommands: [Serve.self, Allow.self, Deny.self, List.self, Token.self],
        defaultSubcommand: Serve.self
    )

    /// The port pages connect to by default.
    static let defaultPort = 9743

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
        @Option(help: ArgumentHelp("Also serve the demo page on http://127.0.0.1:PORT (0: a port the system chooses); its origin is allowed for this run.", valueName: "PORT"))
        var demoPort: Int?
        @Flag(help: "Stop when the process that started the agent ends (for test harnesses).")
        var exitWithParent = false

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
            if let demoPort, !(0...65535).contains(demoPort) { throw ValidationError("--demo-port must be 0 to 65535, not \(demoPort)") }
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
                let service = AgentService(manager: manager, trust: try BundledTestPKI.trust(), agentVersion: CarteVersion.withCommit, logger: logger,
                                           evaluationDay: date.flatMap { VitaleDate(iso: $0) })
                let server: AgentServer
                let demo: AgentDemoServer?
                do throws(AgentStartError) {
                    demo = try demoPort.map { port throws(AgentStartError) in try AgentDemoServer(files: BundledWeb.files, port: port, logger: logger) }
                    server = try AgentServer(service: service, port: port, allowedOrigins: allowed + [demo?.origin].compactMap { $0 }, token: token, logger: logger)
                } catch {
                    throw CLIError(kind: "socket", message: error.description, exitCode: CarteExit.invalidInput)
                }
                // The first line of standard output is the agent's address; the second, with --demo-port, the page's.
                var lines = "listening on ws://127.0.0.1:\(server.port)\(AgentServer.path)\n"
                if let demo { lines += "demo page on \(demo.origin)/?agent=\(server.port)\n" }
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

    struct Allow: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "allow", abstract: "Allow a page's origin (your own allow-list).")
        @Argument(help: ArgumentHelp("The origin: scheme://host[:port] (http or https).", valueName: "ORIGIN"))
        var origin: String
        func run() throws {
            do throws(AgentFiles.Problem) {
                let o = try AgentFiles().allow(origin)
                print("allowed \(o) (a running agent reads the allow-lists when it starts: restart it)")
            } catch {
                Output.stderr("error: \(error)")
                throw ExitCode(CarteExit.invalidInput)
            }
        }
    }

    struct Deny: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "deny", abstract: "Remove a page's origin from your allow-list.")
        @Argument(help: ArgumentHelp("The origin: scheme://host[:port].", valueName: "ORIGIN"))
        var origin: String
        func run() throws {
            do throws(AgentFiles.Problem) {
                let removed = try AgentFiles().deny(origin)
                print(removed ? "removed \(AgentAccess.normalise(origin: origin) ?? origin)" : "\(origin) was not on your allow-list")
            } catch {
                Output.stderr("error: \(error)")
                throw ExitCode(CarteExit.invalidInput)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the allowed origins and the file allowing each.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            do throws(AgentFiles.Problem) {
                let all = try AgentFiles().allowedOrigins()
                if global.json {
                    Output.printJSON(OriginsReport(origins: all.map { .init(origin: $0.origin, file: $0.file) }))
                } else if all.isEmpty {
                    print("no origin is allowed (carte agent allow ORIGIN)")
                } else {
                    for o in all { print("\(o.origin)\t\(o.file)") }
                }
            } catch {
                Output.stderr("error: \(error)")
                throw ExitCode(CarteExit.invalidInput)
            }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token", abstract: "Print the token local programs present (made on first use, readable by you only).")
        func run() throws {
            do throws(AgentFiles.Problem) { print(try AgentFiles().token()) } catch {
                Output.stderr("error: \(error)")
                throw ExitCode(CarteExit.invalidInput)
            }
        }
    }
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
