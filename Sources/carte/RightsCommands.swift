import ArgumentParser
import CarteApCV
import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteImages
import CarteKit
import CarteRights
import CarteVitale
import Foundation
import Logging

/// The CPx card's authentication key as a TLS client key: each handshake signature is one
/// INTERNAL AUTHENTICATE (MSE SET AT + `88`), the private key never leaves the card.
struct CardTLSKey: TLSClientKey {
    let cps: CPSReader
    let certificate: X509Certificate
    func sign(digestInfo: [UInt8]) async throws -> [UInt8] { try await cps.authenticate(challenge: digestInfo) }
}

/// PEM certificates from a file (one or more), for trust options.
func loadCertificates(_ path: String, option: String) throws -> [X509Certificate] {
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw CLIError(kind: "usage", message: "\(option): cannot read \(path)", exitCode: CarteExit.invalidInput)
    }
    var certificates: [X509Certificate] = []
    var rest = Substring(text)
    while let begin = rest.range(of: "-----BEGIN CERTIFICATE-----"), let end = rest.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<rest.endIndex) {
        do { certificates.append(try X509Certificate(pem: String(rest[begin.lowerBound..<end.upperBound]))) } catch {
            throw CLIError(kind: "certificate", message: "\(option) \(path): \(error.message)", exitCode: CarteExit.invalidInput)
        }
        rest = rest[end.upperBound...]
    }
    guard !certificates.isEmpty else { throw CLIError(kind: "certificate", message: "\(option) \(path): no PEM certificate in the file", exitCode: CarteExit.invalidInput) }
    return certificates
}

extension SimCommand {
    struct RightsServiceCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rights-service",
            abstract: "Serve a SYNTHETIC online rights-consultation service over mutual TLS on a loopback address (runs until interrupted).",
            discussion: """
            What a CDR-like Internet service does with a professional's card (docs/pkcs11.md): the client authenticates \
            with its CPx card's authentication certificate in a mutual TLS 1.2 handshake (RSA PKCS#1 v1.5 signatures, \
            the only ones a CPx card makes), then GET /rights/v1/<NIR>[?date=YYYY-MM-DD] answers carte.rights/1: the \
            person's part of what carte read --json gives for the Vitale card holding that NIR (docs/json.md). A client \
            without a certificate, with an expired one, or one not issued by the trusted CA (default: the bundled TEST \
            CPx CA) is refused during the handshake with the TLS alert saying why, and the refusal is logged on \
            standard error. The server's certificate is made at start, issued by the bundled TEST root \
            (CardImages/cps/pki/test-root-ca.pem, what clients trust: curl --cacert, carte rights). Only 127.0.0.0/8 \
            and ::1 are accepted; port 0 lets the system choose; the first line of standard output is the address. \
            Everything is synthetic: the real services' protocol is not public.
            """
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("The loopback address and port to listen on.", valueName: "HOST:PORT"))
        var listen: String = "127.0.0.1:0"
        @Option(name: .customLong("image"), help: ArgumentHelp("A Vitale card image or persona whose people the service knows (repeatable; default: the demo Vitale 2 and every bundled Vitale persona).", valueName: "IMAGE"))
        var images: [String] = []
        @Option(name: .customLong("client-ca"), help: ArgumentHelp("PEM file of the CA(s) client certificates must chain to, root included (repeatable; default: the bundled TEST root and TEST CPx CA).", valueName: "FILE"))
        var clientCAs: [String] = []
        @Option(help: ArgumentHelp("Seconds a connection has for its handshake and request.", valueName: "SECONDS"))
        var timeout: Double = 5
        @Flag(help: "Stop when the process that started the service ends (for test harnesses).")
        var exitWithParent = false

        func validate() throws {
            guard (0.05...60).contains(timeout) else { throw ValidationError("--timeout must be within 0.05…60 seconds") }
        }

        func run() async throws {
            StopSignals.shared.install()
            var logger = global.makeLogger()
            if global.verbose == 0 { logger.logLevel = .info }
            try await reporting(json: global.json) {
                let endpoint: LoopbackEndpoint
                do throws(RightsError) { endpoint = try rightsEndpoint(listen) } catch {
                    throw CLIError(kind: "usage", message: error.description, exitCode: ExitCode.validationFailure.rawValue)
                }
                try ListenCheck.check(host: endpoint.host, port: endpoint.port, option: "--listen")
                let specs = images.isEmpty ? ([BundledImages.defaultImage] + BundledImages.vitalePersonas).map { "bundled:" + $0.path } : images
                var cards: [VitaleCard] = []
                for spec in specs {
                    let image = try SimulatorOptions.loadImage(spec)
                    do { cards.append(try await ApCVSimulation.readInMemory(image)) } catch {
                        throw CLIError(kind: "image", message: "\(spec) cannot be read as a Carte Vitale: \(error)", exitCode: CarteExit.invalidInput)
                    }
                }
                let pki: TestPKI
                do { pki = try BundledTestPKI.pki() } catch {
                    throw CLIError(kind: "internal", message: "the bundled test PKI: \(error)", exitCode: CarteExit.unexpected)
                }
                var roots = [pki.root], intermediates = [pki.intermediate]
                if !clientCAs.isEmpty {
                    let all = try clientCAs.flatMap { try loadCertificates($0, option: "--client-ca") }
                    roots = all.filter { $0.subjectText == $0.issuerText }
                    intermediates = all.filter { $0.subjectText != $0.issuerText }
                    guard !roots.isEmpty else { throw CLIError(kind: "certificate", message: "--client-ca: no root (self-issued) certificate given", exitCode: CarteExit.invalidInput) }
                }
                let server: RightsServer
                do throws(RightsError) {
                    server = try RightsServer(service: RightsService(cards: cards), endpoint: endpoint, issuer: pki.root, issuerKey: pki.rootKey,
                                              clientRoots: roots, clientIntermediates: intermediates, connectionTimeout: timeout, logger: logger)
                } catch {
                    throw CLIError(kind: "socket", message: error.description, exitCode: CarteExit.invalidInput)
                }
                FileHandle.standardOutput.write(Data("listening on https://\(server.endpoint)\n".utf8))
                await serveUntilStopped(exitWithParent: exitWithParent) { server.stop() }
                let outcomes = server.outcomes.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }
                Output.stderr("rights service stopped: " + (outcomes.isEmpty ? "no connection" : outcomes.joined(separator: ", ")))
            }
        }
    }
}

struct RightsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rights",
        abstract: "Ask the (synthetic) online rights service for a patient's rights, authenticating with the CPx card over mutual TLS.",
        discussion: """
            Verifies the card's PIN (on the reader's pad when it has one, otherwise asked or read from standard input), \
            then connects to --service with TLS 1.2: the handshake's client signature is made by the card \
            (INTERNAL AUTHENTICATE with its authentication key; the private key never leaves the card) and the \
            authentication certificate is presented. The service's certificate must chain to --cacert (default: the \
            bundled TEST root). Prints the answer (carte.rights/1 with --json, docs/json.md), or says why the service \
            refused: no such person (exit 8), the card's certificate refused (expired, another CA: exit 8), the PIN \
            (exit 5), the card or reader (exit 3).
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var common: CPSCommand.Common
    @Option(help: ArgumentHelp("The patient's NIR: 13 characters and the 2-digit key (spaces allowed).", valueName: "NIR"))
    var nir: String
    @Option(help: ArgumentHelp("The rights service's loopback address (carte sim rights-service).", valueName: "HOST:PORT"))
    var service: String
    @Option(help: ArgumentHelp("The date rights are evaluated on (default: the service's today).", valueName: "YYYY-MM-DD"))
    var date: String?
    @Option(help: ArgumentHelp("PEM file of the CA(s) the service's certificate must chain to (default: the bundled TEST root).", valueName: "FILE"))
    var cacert: String?
    @Flag(name: .customLong("host-pin"), help: "Enter the PIN on this computer even when the reader has a PIN pad.")
    var hostPIN = false

    func validate() throws {
        if let date, date.count != 10 || VitaleDate(date.replacingOccurrences(of: "-", with: "")) == nil {
            throw ValidationError("--date takes a calendar date YYYY-MM-DD, not \"\(date)\"")
        }
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let endpoint: LoopbackEndpoint
            let normalised: String
            do throws(RightsError) {
                endpoint = try rightsEndpoint(service)
                normalised = try RightsService.normalise(nir: nir)
            } catch {
                throw CLIError(kind: "usage", message: error.description, exitCode: ExitCode.validationFailure.rawValue)
            }
            // A mistyped NIR is said now, before the PIN, the card and the TLS handshake are spent on it.
            if let parsed = try? NIR(normalised), !parsed.isKeyValid {
                let expected = parsed.expectedKey < 10 ? "0\(parsed.expectedKey)" : "\(parsed.expectedKey)"
                throw CLIError(kind: "usage", message: "--nir \(normalised): its key is \(normalised.suffix(2)), its 13 characters call for \(expected) (a typing error?)",
                               exitCode: ExitCode.validationFailure.rawValue)
            }
            let roots: [X509Certificate]
            if let cacert { roots = try loadCertificates(cacert, option: "--cacert") } else { roots = [try BundledTestPKI.trust().roots[0]] }

            var session = try await CPSCommand.open(common, logger: logger)
            let onPad = hostPIN ? false : await session.cps.pinPad() != nil
            var pin: PINCode? = nil
            if !onPad {
                // The secret before the card work, so a prompt never waits with the card held.
                await session.close()
                pin = try SecretInput.read("PIN")
                session = try await CPSCommand.open(common, logger: logger)
            } else if global.json { Output.stderr("enter the PIN on the reader") } else { print("enter the PIN on the reader"); fflush(nil) }
            let certificate: X509Certificate
            do throws(CPSError) {
                if let pin { try await session.cps.verifyPIN(pin) } else { try await session.cps.verifyPINOnPad() }
                guard let c = try await session.cps.certificates().first(where: { $0.role == .authentication }) else {
                    throw CPSError.unsupported("the card has no authentication certificate")
                }
                certificate = c.certificate
            } catch {
                await session.close()
                throw CPSCommand.cliError(error)
            }
            let start = session.trace.nextSequence
            let reply: RightsReply
            do throws(RightsError) {
                reply = try await RightsClient.fetch(nir: normalised, date: date, endpoint: endpoint, roots: roots, key: CardTLSKey(cps: session.cps, certificate: certificate))
            } catch {
                await session.close()
                switch error {
                case .invalidEndpoint, .invalidNIR, .invalidDate: throw CLIError(kind: "usage", message: error.description, exitCode: ExitCode.validationFailure.rawValue)
                case .cardSignature: throw CLIError(kind: "cps", message: error.description, exitCode: CarteExit.cardOrReader)
                case .unknownNIR, .serviceError:
                    // The service answered with its error document: with --json it is what is printed
                    // (docs/json.md, carte.rights-error/1), exit 8 either way.
                    if global.json {
                        let (status, code, message): (Int, String, String)
                        if case .serviceError(let s, let c, let m) = error { (status, code, message) = (s, c, m) } else { (status, code, message) = (404, "unknown-nir", error.description) }
                        Output.printJSON(RightsErrorReport(status: status, error: code, message: message))
                        throw ExitCode(CarteExit.rightsRefused)
                    }
                    throw CLIError(kind: "rights", message: error.description, exitCode: CarteExit.rightsRefused)
                default: throw CLIError(kind: "rights", message: error.description, exitCode: CarteExit.rightsRefused)
                }
            }
            let apdus = session.trace.commandCount(from: start)
            await session.close()
            logger.debug("rights: TLS handshake \(String(format: "%.1f", reply.handshakeSeconds * 1000)) ms, card signature \(String(format: "%.1f", reply.signatureSeconds * 1000)) ms in \(apdus) APDUs")
            if global.json {
                FileHandle.standardOutput.write(Data(reply.json))
                FileHandle.standardOutput.write(Data("\n".utf8))
                return
            }
            let object = (try? JSONSerialization.jsonObject(with: Data(reply.json))) as? [String: Any] ?? [:]
            let vitale = object["vitale"] as? [String: Any] ?? [:]
            let person = (vitale["people"] as? [[String: Any]])?.first ?? [:]
            let professional = object["professional"] as? [String: Any] ?? [:]
            print("rights service \(endpoint) — asked as \(professional["name"] as? String ?? "?") (\(professional["identifier"] as? String ?? "?")), SYNTHETIC data")
            print("\(person["firstName"] as? String ?? "?") \(person["surname"] as? String ?? "?"), NIR \(object["nir"] as? String ?? normalised)")
            var rights = "rights on \(object["date"] as? String ?? "?"): \(person["rights"] as? String ?? "unknown")"
            if let until = person["rightsOpenUntil"] as? String { rights += " until \(until)" }
            if person["c2s"] as? Bool == true { rights += ", C2S" }
            if let ald = person["ald"] as? [String], !ald.isEmpty { rights += ", ALD " + ald.joined(separator: " ") }
            print(rights)
            print("mutual TLS: the card signed the handshake (\(reply.signatures) signature, \(apdus) APDUs)")
        }
    }
}

/// The service's `carte.rights-error/1` document as `carte rights --json` prints it.
struct RightsErrorReport: Encodable {
    var schema = "carte.rights-error/1"
    let status: Int
    let error: String
    let message: String
}
