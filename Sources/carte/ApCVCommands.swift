import ArgumentParser
import CarteApCV
import CarteApCVHTTP
import CarteBundledImages
import CarteCore
import CarteCrypto
import CarteKit
import CarteEmulator
import CarteImages
import CarteVitale
import Dispatch
import Foundation

/// How `carte read` resolves appli carte Vitale tokens (phone by NFC, or `--qr`).
struct ApCVOptions: ParsableArguments {
    @Option(name: .customLong("apcv-service"),
            help: ArgumentHelp("Resolve appli carte Vitale tokens with the service at HOST:PORT (loopback only; carte sim apcv-service). Default: the simulated service in process, knowing the bundled phones and those given with --image.",
                               valueName: "HOST:PORT"))
    var service: String?

    @Option(name: .customLong("software-id"),
            help: ArgumentHelp("The professional software's id: sent to the phone and checked as the token's audience.", valueName: "ID"))
    var softwareID: String = ApCVProtocol.Configuration().softwareID

    func validate() throws { try validateSoftwareID(softwareID) }

    @Option(name: .customLong("apcv-phone"),
            help: ArgumentHelp("A phone image the in-process service also knows (repeatable; for --qr payloads of phones not inserted).", valueName: "IMAGE"))
    var phones: [String] = []

    /// The resolver the options choose. `inserted` are the images inserted into the simulator (their
    /// phones join the in-process service).
    func resolver(inserted: [CardImage]) async throws -> any ApCVResolver {
        if let service {
            do throws(ApCVError) { return HTTPApCVResolver(endpoint: try LoopbackEndpoint(service), softwareID: softwareID) } catch {
                throw CLIError(kind: "usage", message: error.description, exitCode: ExitCode.validationFailure.rawValue)
            }
        }
        let extra = try phones.map { try SimulatorOptions.loadImage($0) }
        for (name, image) in zip(phones, extra) where image.apcv == nil {
            throw CLIError(kind: "image", message: "\(name) is not a phone image (no apcv section): --apcv-phone takes phones only", exitCode: CarteExit.invalidInput)
        }
        // The inserted images that are phones join the service; the cards among them are not phones.
        return try await ApCVOptions.inProcessService(phones: inserted.filter { $0.apcv != nil } + extra).resolver(for: softwareID)
    }

    /// The simulated service knowing the bundled phones and `phones`.
    static func inProcessService(phones: [CardImage], names: [String] = []) async throws -> ApCVService {
        // An image that is not a phone would be dropped without a word: say so.
        for (i, image) in phones.enumerated() where image.apcv == nil {
            throw CLIError(kind: "image", message: "\(i < names.count ? names[i] : image.name) is not a phone image (no apcv section): --phone takes phones only", exitCode: CarteExit.invalidInput)
        }
        let bundled = try BundledImages.apcvImages.map { try SimulatorOptions.loadImage("bundled:" + $0.path) }
        var seen = Set<String>()
        let all = (phones + bundled).filter { image in
            guard let key = image.apcv?.keyID else { return false }
            return seen.insert(key).inserted
        }
        do throws(ApCVSimulation.SetupError) {
            return try await ApCVSimulation.service(phones: all, loadImage: { try SimulatorOptions.loadImage($0) })
        } catch {
            throw CLIError(kind: "image", message: error.description, exitCode: CarteExit.invalidInput)
        }
    }
}

/// A token's audience (tag `83`) is 1 to 32 bytes (docs/apcv.md): another software id would make
/// tokens the readers refuse, or send the phone what it refuses.
func validateSoftwareID(_ id: String) throws {
    let n = id.utf8.count
    guard (1...32).contains(n) else {
        throw ValidationError("--software-id must be 1 to 32 bytes (a token's audience, docs/apcv.md), not \(n)")
    }
}

extension SimCommand {
    struct ApCVServiceCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apcv-service",
            abstract: "Serve the SYNTHETIC appli carte Vitale identity service over HTTP on a loopback address (runs until interrupted).",
            discussion: """
            The simulated insurer's service of the appli carte Vitale (docs/apcv.md): POST /apcv/v1/identity with \
            {"token": "<Base64>", "software-id": "<id>"} answers carte.apcv-identity/1, or carte.apcv-error/1 when the \
            token is malformed, forged, signed by an unknown key, for another software, expired, or already used. It \
            knows the bundled phones (CardImages/apcv/) and those given with --phone. Only 127.0.0.0/8 and ::1 are \
            accepted: nothing listens on other interfaces. Port 0 lets the system choose; the address is printed.
            """
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("The loopback address and port to listen on.", valueName: "HOST:PORT"))
        var listen: String = "127.0.0.1:0"
        @Option(help: ArgumentHelp("A phone image the service also knows (repeatable).", valueName: "IMAGE"))
        var phone: [String] = []
        @Flag(help: "Stop when the process that started the service ends (for test harnesses).")
        var exitWithParent = false

        func run() async throws {
            StopSignals.shared.install()
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                let endpoint: LoopbackEndpoint
                do throws(ApCVError) { endpoint = try LoopbackEndpoint(listen) } catch {
                    throw CLIError(kind: "usage", message: error.description, exitCode: ExitCode.validationFailure.rawValue)
                }
                try ListenCheck.check(host: endpoint.host, port: endpoint.port, option: "--listen")
                let service = try await ApCVOptions.inProcessService(phones: try phone.map { try SimulatorOptions.loadImage($0) }, names: phone)
                let server: ApCVHTTPServer
                do throws(ApCVError) { server = try ApCVHTTPServer(service: service, endpoint: endpoint) } catch {
                    // This side could not listen: not a service "that cannot be reached".
                    let why: String
                    if case .serviceUnavailable(let reason) = error { why = reason } else { why = error.description }
                    throw CLIError(kind: "socket", message: why, exitCode: CarteExit.invalidInput)
                }
                // The first line of standard output is the address, for scripts and tests.
                FileHandle.standardOutput.write(Data("listening on http://\(server.endpoint)\n".utf8))
                await serveUntilStopped(exitWithParent: exitWithParent) { server.stop() }
                Output.stderr("apCV service stopped after \(server.servedCount) request(s)")
            }
        }
    }

    struct ApCVQR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apcv-qr",
            abstract: "Print the QR payload a (virtual) phone with the SYNTHETIC appli carte Vitale shows now.",
            discussion: "Each run gives a new single-use token, valid for the phone's token lifetime. Feed it to carte read --qr."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("The phone image.", valueName: "IMAGE"))
        var image: String = "bundled:apcv/claire-exemple.yaml"
        @Option(name: .customLong("software-id"), help: ArgumentHelp("The software the code is for (the token's audience).", valueName: "ID"))
        var softwareID: String = ApCVProtocol.Configuration().softwareID

        func validate() throws { try validateSoftwareID(softwareID) }

        func run() async throws {
            _ = global.makeLogger()
            try await reporting(json: global.json) {
                guard let phone = try SimulatorOptions.loadImage(image).apcv else {
                    throw CLIError(kind: "image", message: "\(image) is not a phone image (no apcv section)", exitCode: CarteExit.invalidInput)
                }
                let payload: String
                do throws(CryptoError) { payload = try phone.qrPayload(for: softwareID) } catch {
                    throw CLIError(kind: "image", message: "\(image): \(error.message)", exitCode: CarteExit.invalidInput)
                }
                if global.json {
                    Output.printJSON(QRReport(payload: payload, keyID: phone.keyID, softwareID: softwareID, lifetime: phone.tokenLifetime))
                } else {
                    print(payload)
                }
            }
        }

        /// `carte.apcv-qr/1`.
        struct QRReport: Encodable {
            var schema = "carte.apcv-qr/1"
            let payload: String
            let keyID: String
            let softwareID: String
            let lifetime: Int
        }
    }
}

/// Waits for SIGINT or SIGTERM (or, with `exitWithParent`, for the process that started this one to
/// end, polled on a thread of its own), then runs `stop`: the end of every long-running loopback service.
func serveUntilStopped(exitWithParent: Bool, stop: @escaping @Sendable () -> Void) async {
    if exitWithParent {
        let parent = getppid()
        Thread {
            while getppid() == parent { usleep(200_000) }
            stop()
            Foundation.exit(0)
        }.start()
    }
    _ = await StopSignals.shared.wait()
    stop()
}
