import ArgumentParser
import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteKit

import CarteEmulator
import CarteImages
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct CPSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cps",
        abstract: "Use a professional's CPx card (CPS, CPE, CPF, CPA): holder, situations, PIN, certificates, signature.",
        discussion: """
            Works on the first slot holding a CPx card (CPS3, CPS3 contactless, CPS4), or on --reader. With the \
            in-memory simulator (the default), a bi-fente reader holds the demo Vitale 2 and the synthetic \
            CPS3 of a médecin libéral (bundled:cps/medecin-liberal.yaml) unless --image says otherwise; each \
            command then starts from a freshly inserted card. With --backend pcsc the card keeps its state \
            (PIN verified, tries left) between commands.

            PINs and PUKs are read from the terminal without echo, or one per line from standard input when it \
            is not a terminal (scripts); never from the command line. They never appear in a log, a trace, an \
            error or JSON. A PIN is sent once: a wrong PIN is reported with the tries left, never retried.

            Holder and situation data use CarteKit's synthetic encoding (the real one is not public), and the \
            certificates of CarteKit's images come from a TEST PKI, never the ANS one.
            """,
        subcommands: [Info.self, PIN.self, Certs.self, Sign.self]
    )

    /// Options shared by the cps commands.
    struct Common: ParsableArguments {
        @OptionGroup var backendChoice: BackendOptions
        @OptionGroup var simulator: SimulatorOptions
        @Option(name: .shortAndLong, help: ArgumentHelp("Reader (slot) holding the CPx card: its name or a unique prefix.", valueName: "NAME"))
        var reader: String?
    }

    /// The images the simulator starts with for `carte cps`: a Vitale and a CPS on the bi-fente reader.
    static let defaultImages = ["bundled:" + BundledImages.defaultImage.path, "bundled:cps/medecin-liberal.yaml"]

    /// An open session on the CPx card.
    struct Session {
        let reader: String
        let connection: any CardConnection
        let cps: CPSReader
        let trace: Trace

        func close() async { try? await connection.disconnect(.leave) }
    }

    static func open(_ common: Common, logger: Logger) async throws -> Session {
        let backend = try common.simulator.makeAnyBackend(common.backendChoice.backend, logger: logger, defaultImages: defaultImages)
        let name = try await chooseCPSReader(backend, requested: common.reader)
        let connection = try await backend.connect(to: name, share: .exclusive, protocols: [.t0, .t1])
        let trace = Trace()
        let channel = CardChannel(transport: connection, trace: trace, logger: logger)
        do {
            let cps = try CPSReader(channel: channel, atr: await connection.atrBytes, logger: logger)
            return Session(reader: name, connection: connection, cps: cps, trace: trace)
        } catch {
            try? await connection.disconnect(.leave)
            throw CLIError(kind: "cps", message: "reader \"\(name)\": \(error.description)", exitCode: CarteExit.cardOrReader)
        }
    }

    /// The named reader, or the first slot whose card has a CPx ATR (``WantedCard/cpx``).
    static func chooseCPSReader(_ backend: any ReaderBackend, requested: String?) async throws -> String {
        try await chooseReader(backend, requested: requested, wanted: .cpx)
    }

    /// Maps a CPx failure to the message and exit code of `carte --help`.
    static func cliError(_ error: CPSError) -> CLIError {
        switch error {
        case .wrongPIN, .pinBlocked, .pukBlocked, .pinRequired, .pinPad: return CLIError(kind: "pin", message: error.description, exitCode: CarteExit.pinRefused)
        case .invalidPINFormat: return CLIError(kind: "pin", message: error.description, exitCode: CarteExit.invalidInput)
        case .malformed: return CLIError(kind: "cps", message: error.description, exitCode: CarteExit.invalidInput)
        default: return CLIError(kind: "cps", message: error.description, exitCode: CarteExit.cardOrReader)
        }
    }

    // MARK: - info

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "info",
            abstract: "Show the card, its holder, the practice situations and the certificates.",
            discussion: "Situations are protected by the PIN: with --with-pin the PIN is asked (or read from standard input) and verified first; otherwise they are reported as protected."
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Flag(name: .customLong("with-pin"), help: "Verify the PIN first so the situations can be read.")
        var withPIN = false

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let pin = withPIN ? try SecretInput.read("PIN") : nil
                let session = try await CPSCommand.open(common, logger: logger)
                let card: ProfessionalCard
                var pinStatus: PINStatus? = nil
                do throws(CPSError) {
                    if let pin { try await session.cps.verifyPIN(pin) }
                    card = try await session.cps.read()
                    if session.cps.generation != .cps3Contactless { pinStatus = try? await session.cps.pinStatus() }
                } catch {
                    await session.close()
                    throw CPSCommand.cliError(error)
                }
                await session.close()
                let report = CPSReport(card, reader: session.reader, pin: pinStatus, roots: try BundledTestPKI.trust())
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }
    }

    // MARK: - pin

    struct PIN: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pin",
            abstract: "PIN status, verification, change and unblocking with the PUK.",
            discussion: """
                status   tries left, without consuming a try (GET DATA on a CPS3)
                verify   present the PIN once; a wrong PIN reports the tries left
                change   current PIN, then the new PIN (twice on a terminal)
                unblock  the PUK, then the new PIN (twice on a terminal)

                On a reader with a PIN pad (PC/SC part 10, e.g. the bi-fente-pinpad profile), \
                the PIN, PUK and new PIN are typed on the reader, which builds the commands \
                itself: they never pass through this computer. --host-pin asks for them here \
                instead.

                Exit code 5 when the card refuses the PIN or PUK (wrong, blocked) or the \
                PIN-pad entry is cancelled, times out or has the wrong length.
                """
        )
        enum Action: String, ExpressibleByArgument, CaseIterable { case status, verify, change, unblock }

        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Argument(help: "status, verify, change or unblock.")
        var action: Action
        @Flag(name: .customLong("host-pin"), help: "Enter the PIN on this computer even when the reader has a PIN pad.")
        var hostPIN = false

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                var session = try await CPSCommand.open(common, logger: logger)
                // On a reader with a PIN pad the holder types on the reader: the PIN never reaches this computer.
                let pad = action == .status || hostPIN ? nil : await session.cps.pinPad()
                let onPad = pad != nil
                var secrets: [PINCode] = []
                if !onPad && action != .status {
                    // Secrets before the card work, so a prompt never waits with the card held.
                    await session.close()
                    switch action {
                    case .status: break
                    case .verify: secrets = [try SecretInput.read("PIN")]
                    case .change: secrets = [try SecretInput.read("current PIN"), try SecretInput.readNew("new PIN")]
                    case .unblock: secrets = [try SecretInput.read("PUK"), try SecretInput.readNew("new PIN")]
                    }
                    session = try await CPSCommand.open(common, logger: logger)
                }
                var report = PINReport(reader: session.reader, action: action.rawValue)
                if action != .status { report.entry = onPad ? "pin-pad" : "host" }
                if onPad {
                    let prompt: String
                    switch action {
                    case .status, .verify: prompt = "enter the PIN on the reader"
                    case .change: prompt = "enter the current PIN, then the new PIN twice, on the reader"
                    case .unblock: prompt = "enter the PUK, then the new PIN twice, on the reader"
                    }
                    if global.json { Output.stderr(prompt) } else { print(prompt); fflush(nil) }
                }
                do throws(CPSError) {
                    switch action {
                    case .status: break
                    case .verify: if onPad { try await session.cps.verifyPINOnPad() } else { try await session.cps.verifyPIN(secrets[0]) }
                    case .change: if onPad { try await session.cps.changePINOnPad() } else { try await session.cps.changePIN(current: secrets[0], new: secrets[1]) }
                    case .unblock: if onPad { try await session.cps.unblockPINOnPad() } else { try await session.cps.unblockPIN(puk: secrets[0], newPIN: secrets[1]) }
                    }
                    report.result = "ok"
                    if let s = try? await session.cps.pinStatus() { report.status(s) }
                } catch {
                    report.fail(error)
                    if let s = try? await session.cps.pinStatus() { report.status(s) }
                    await session.close()
                    if global.json { Output.printJSON(report) } else { Output.stderr("error: \(report.message)") }
                    throw ExitCode(CPSCommand.cliError(error).exitCode)
                }
                await session.close()
                report.message = report.messageForSuccess()
                if global.json { Output.printJSON(report) } else { print(report.message) }
            }
        }
    }

    // MARK: - certs

    struct Certs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "certs",
            abstract: "List the card's certificates and check their chain.",
            discussion: "The chain is checked with OpenSSL against the bundled TEST root and intermediate (CardImages/cps/pki), or against --root and --intermediate (PEM files) for other cards."
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Option(help: ArgumentHelp("Trusted root certificate (PEM).", valueName: "FILE"))
        var root: String?
        @Option(help: ArgumentHelp("Intermediate certificate (PEM).", valueName: "FILE"))
        var intermediate: String?
        @Flag(help: "Also print each certificate in PEM.")
        var pem = false

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let trust = try loadCertificateTrust()
                let session = try await CPSCommand.open(common, logger: logger)
                let certificates: [CPSCertificate]
                do throws(CPSError) {
                    certificates = try await session.cps.certificates()
                } catch {
                    await session.close()
                    throw CPSCommand.cliError(error)
                }
                await session.close()
                let report = CertsReport(reader: session.reader, certificates: certificates, trust: trust, withPEM: pem)
                if global.json { Output.printJSON(report) } else { print(report.text) }
            }
        }

        private func loadCertificateTrust() throws -> CertificateTrust {
            guard root != nil || intermediate != nil else { return try BundledTestPKI.trust() }
            func load(_ path: String?) throws -> [X509Certificate] {
                guard let path else { return [] }
                let text = try FileIO.readText(path, "a trusted certificate, PEM")
                do { return [try X509Certificate(pem: text)] } catch {
                    throw CLIError(kind: "certificate", message: "\(path): \(error.message)", exitCode: CarteExit.invalidInput)
                }
            }
            return CertificateTrust(roots: try load(root), intermediates: try load(intermediate))
        }
    }

    // MARK: - sign

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign",
            abstract: "Sign a file with the signature key (SHA-256, PKCS#1 v1.5) and check the signature with the certificate.",
            discussion: "Asks for the PIN (or reads it from standard input) and verifies it once, then signs. The signature is checked with the card's signature certificate before it is reported."
        )
        @OptionGroup var global: GlobalOptions
        @OptionGroup var common: Common
        @Argument(help: "The file to sign.")
        var file: String
        @Option(name: .shortAndLong, help: ArgumentHelp("Write the raw signature here.", valueName: "SIGNATURE"))
        var output: String?
        @Flag(help: "Sign even when the signature certificate is expired or not yet valid (tests of what a verifier does with such a signature).")
        var allowInvalidCertificate = false

        func run() async throws {
            let logger = global.makeLogger()
            try await reporting(json: global.json) {
                let data = try FileIO.read(file, "the file to sign")
                // The output is checked before the PIN is asked and the card signs.
                if let output { try FileIO.checkWritable(output, "the signature, -o") }
                let session = try await CPSCommand.open(common, logger: logger)
                // A signature whose certificate is out of its validity is worth nothing: said before
                // the PIN is asked, a try spent or anything signed.
                if !allowInvalidCertificate {
                    let certificates: [CPSCertificate]
                    do throws(CPSError) { certificates = try await session.cps.certificates() } catch {
                        await session.close()
                        throw CPSCommand.cliError(error)
                    }
                    if let signing = certificates.first(where: { $0.role == .signature })?.certificate {
                        let now = currentUnixTime()
                        if now > signing.notAfter || now < signing.notBefore {
                            await session.close()
                            let when = now > signing.notAfter ? "expired on \(iso8601UTC(signing.notAfter))" : "is valid only from \(iso8601UTC(signing.notBefore))"
                            throw CLIError(kind: "certificate", message: "the card's signature certificate \(when): a signature made with it would not be valid; nothing was signed (--allow-invalid-certificate signs anyway)",
                                           exitCode: CarteExit.cardOrReader)
                        }
                    }
                }
                let pin: PINCode
                do { pin = try SecretInput.read("PIN") } catch {
                    await session.close()
                    throw error
                }
                let signature: [UInt8]
                let certificate: CPSCertificate
                let apdus: Int
                do throws(CPSError) {
                    try await session.cps.verifyPIN(pin)
                    let start = session.trace.nextSequence
                    signature = try await session.cps.sign(Array(data))
                    apdus = session.trace.commandCount(from: start)
                    guard let c = try await session.cps.certificates().first(where: { $0.role == .signature }) else {
                        throw CPSError.unsupported("the card has no signature certificate to check the signature with")
                    }
                    certificate = c
                    try certificate.verifySignature(signature, of: Array(data))
                } catch {
                    await session.close()
                    throw CPSCommand.cliError(error)
                }
                await session.close()
                if let output {
                    try FileIO.write(Data(signature), to: output, "the signature, -o")
                }
                let report = SignReport(reader: session.reader, file: file, sha256: SHA256.digest(Array(data)).hexString(separator: "").lowercased(),
                                        signature: Data(signature).base64EncodedString(), certificate: certificate.certificate.subjectText,
                                        verified: true, apduCount: apdus)
                if global.json { Output.printJSON(report) } else {
                    print("signed \(file) (SHA-256 \(report.sha256)) in \(apdus) APDUs")
                    print("signature (base64): \(report.signature)")
                    print("checked with: \(report.certificate)")
                }
            }
        }
    }
}

extension BundledTestPKI {
    /// The bundled TEST root and intermediate as trust anchors.
    static func trust() throws -> CertificateTrust {
        do {
            let pki = try pki()
            return CertificateTrust(roots: [pki.root], intermediates: [pki.intermediate])
        } catch {
            throw CLIError(kind: "internal", message: "the bundled test PKI cannot be loaded: \(error.message)", exitCode: CarteExit.unexpected)
        }
    }
}

// MARK: - Secrets

/// Gives the terminal its echo back when a signal ends the program during a secret prompt (Ctrl-C,
/// Ctrl-\\, a hang-up, a kill): the handlers restore the saved settings, then let the signal do
/// what it would have done.
enum EchoGuard {
    nonisolated(unsafe) private static var saved = termios()
    private static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP]
    nonisolated(unsafe) private static var previous: [Int32: sigaction] = [:]

    static func arm(restoring settings: termios) {
        saved = settings
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                // Only async-signal-safe calls: tcsetattr, write, sigaction, raise.
                _ = tcsetattr(STDIN_FILENO, TCSANOW, &EchoGuard.saved)
                _ = write(STDERR_FILENO, "\n", 1)
                var original = sigaction()
                original.__sigaction_handler.sa_handler = SIG_DFL
                sigemptyset(&original.sa_mask)
                _ = sigaction(number, &original, nil)
                _ = raise(number)
            }
            sigemptyset(&action.sa_mask)
            var old = sigaction()
            if sigaction(signal, &action, &old) == 0 { previous[signal] = old }
        }
    }

    static func disarm() {
        for (signal, var old) in previous { _ = sigaction(signal, &old, nil) }
        previous = [:]
    }
}

/// Reads PINs and PUKs: from the terminal without echo, or one line of standard input.
enum SecretInput {
    /// One secret. The value never reaches a message: errors only say what is wrong with its shape.
    static func read(_ what: String) throws -> PINCode {
        let text = try line(prompt: "\(what): ")
        do { return try PINCode(text) } catch { throw CPSCommand.cliError(error) }
    }

    /// A new secret, typed twice on a terminal.
    static func readNew(_ what: String) throws -> PINCode {
        let first = try read(what)
        guard isatty(STDIN_FILENO) == 1 else { return first }
        let again = try line(prompt: "\(what) again: ")
        guard (try? PINCode(again)).map({ $0.matches(first) }) == true else {
            throw CLIError(kind: "pin", message: "the two entries of the \(what) differ", exitCode: CarteExit.invalidInput)
        }
        return first
    }

    private static func line(prompt: String) throws -> String {
        if isatty(STDIN_FILENO) == 1 {
            FileHandle.standardError.write(Data(prompt.utf8))
            var saved = termios()
            let haveTerminal = tcgetattr(STDIN_FILENO, &saved) == 0
            if haveTerminal {
                var quiet = saved
                quiet.c_lflag &= ~tcflag_t(ECHO)
                EchoGuard.arm(restoring: saved)
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
            }
            defer {
                if haveTerminal {
                    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
                    EchoGuard.disarm()
                }
                FileHandle.standardError.write(Data("\n".utf8))
            }
            guard let text = readLine(strippingNewline: true) else {
                throw CLIError(kind: "pin", message: "no \(prompt.dropLast(2)) entered", exitCode: CarteExit.invalidInput)
            }
            return text
        }
        guard let text = readLine(strippingNewline: true) else {
            throw CLIError(kind: "pin", message: "expected the \(prompt.dropLast(2)) on a line of standard input", exitCode: CarteExit.invalidInput)
        }
        return text.hasSuffix("\r") ? String(text.dropLast()) : text
    }
}
