import ArgumentParser
import CarteBundledImages
import CarteBundledWeb
import CarteConsole
import CarteEmulator
import CarteImages
import Foundation
import Logging

extension SimCommand {
    struct Console: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "console",
            abstract: "Serve the QA console of a running simulator daemon: a page to see and drive its readers.",
            discussion: """
                The page shows each virtual reader and its slots, the card in each (kind, image, \
                ATR, synthetic), and lets a tester insert a bundled or uploaded image, remove a \
                card, arm every fault of carte sim fault, type on a PIN pad (digits, cancel, time \
                out) and follow each slot's APDU trace (PINs redacted), filter it and export it as \
                a replay image. Changes made elsewhere (carte sim insert, another console) show at \
                once.

                The console listens on 127.0.0.1 only and prints its address, which carries a key \
                for this run in its fragment (#key=…; other users of the machine share loopback): \
                open that address. \
                Requests must name this console in Host; actions must come from its own page \
                (Origin). Runs until interrupted. The daemon may start after the console and \
                restart under it. See docs/simulator.md.
                """
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var socket: SimCommand.SocketOption
        @Option(help: ArgumentHelp("The port on 127.0.0.1 (0: any free port).", valueName: "PORT"))
        var port: Int = 0
        @Flag(help: "Stop when the process that started the console ends (for test harnesses).")
        var exitWithParent = false

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535, not \(port)") }
        }

        func run() async throws {
            StopSignals.shared.install()
            var logger = global.makeLogger()
            if global.verbose == 0 { logger.logLevel = .info }
            try await reporting(json: global.json) {
                let server = try startConsole(socket: socket.path, port: port, logger: logger)
                announceConsole(server, socket: socket.path, json: global.json)
                Output.stderr("carte sim console for \(socket.path) on 127.0.0.1:\(server.port); open the address above")
                await serveUntilStopped(exitWithParent: exitWithParent) { server.stop() }
                Output.stderr("carte sim console stopped")
            }
        }
    }
}

/// Starts the QA console for the daemon at `socket` on 127.0.0.1:`port` (also `carte sim serve --console`).
func startConsole(socket: String, port: Int, logger: Logger) throws -> ConsoleServer {
    do {
        return try ConsoleServer(.init(socket: socket, port: port, files: BundledWeb.console, images: consoleImages()), logger: logger)
    } catch {
        throw CLIError(kind: "socket", message: error.description, exitCode: CarteExit.invalidInput)
    }
}

/// Prints where the console is, at once (not through stdio's buffer: a script reads it while the
/// console runs): `console on ADDRESS`, or with `json` one line of `carte.console/1`.
func announceConsole(_ server: ConsoleServer, socket: String, json: Bool) {
    let report: [String: Any] = ["schema": "carte.console/1", "address": server.address, "port": server.port, "socket": socket]
    let document = (try? JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .withoutEscapingSlashes])).map { String(decoding: $0, as: UTF8.self) }
    let line = json ? document ?? "{}" : "console on \(server.address)"
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The bundled images the console offers: spec, name, group (the folder), synthetic, summary.
func consoleImages() -> [[String: String]] {
    BundledImages.all.compactMap { bundled -> [String: String]? in
        guard let image = try? CardImageLoader.load(text: bundled.text, source: "bundled:" + bundled.path) else { return nil }
        return ["spec": "bundled:" + bundled.path, "name": image.name, "group": String(bundled.path.split(separator: "/").first ?? "other"),
                "synthetic": image.synthetic ? "true" : "false", "summary": image.summary ?? ""]
    }
}
