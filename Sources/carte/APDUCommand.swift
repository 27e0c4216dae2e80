import ArgumentParser
import CarteCore

import CarteEmulator
import CarteImages
import CarteKit
import Foundation

struct APDUCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apdu",
        abstract: "Send APDUs to a card and print the responses with their meaning.",
        discussion: """
            Give the commands as arguments (one APDU each, in hexadecimal) or in a script file \
            (--script): one APDU per line, '#' comments, 'reset' to reset the card, 'exit' to stop — \
            the pcsc-tools scriptor format. By default GET RESPONSE (61xx), resend with the right Le \
            (6Cxx) and command chaining happen automatically and are shown as auto: lines; --raw turns \
            them off. The data of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER is never printed.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Reader (slot) to use: its name or a unique prefix. Default: the first slot holding a card.", valueName: "NAME"))
    var reader: String?

    @Option(help: ArgumentHelp("Read the APDUs from a script file ('-' for standard input).", valueName: "FILE"))
    var script: String?

    @Flag(help: "Send each command exactly as given: no automatic GET RESPONSE, resend or chaining.")
    var raw = false

    @Flag(help: "Exit with code 4 when a final status word is not 90 00.")
    var failOnStatus = false

    @Argument(help: "APDUs in hexadecimal, one per argument (quote APDUs written with spaces).")
    var apdus: [String] = []

    func validate() throws {
        if script == nil && apdus.isEmpty { throw ValidationError("give APDUs as arguments or a --script file") }
        if script != nil && !apdus.isEmpty { throw ValidationError("give APDUs as arguments or a --script file, not both") }
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let steps = try await loadSteps()
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            let name = try await chooseReader(backend, requested: reader)
            let connection = try await backend.connect(to: name, share: .shared, protocols: [.t0, .t1])
            let trace = Trace()
            let channel = CardChannel(transport: connection, policy: raw ? .raw : .default, trace: trace, logger: logger)
            var report = APDUReport(reader: name, atr: await connection.atrBytes.hexString(), exchanges: [])
            var worst: StatusWord? = nil
            if !global.json {
                print("Reader: \(name)")
                print("ATR:    \(report.atr)")
            }
            for step in steps {
                switch step {
                case .reset:
                    try await connection.reconnect(share: .shared, initialization: .reset)
                    report.exchanges.append(.init(line: nil, command: "reset", events: [], data: "", sw: "", meaning: "card reset, ATR \(await connection.atrBytes.hexString())"))
                    if !global.json { print("reset  (ATR \(await connection.atrBytes.hexString()))") }
                case .command(let command, let line):
                    let before = trace.nextSequence
                    let response = try await channel.transmit(command)
                    let events = trace.events(from: before)
                    let exchange = APDUReport.Exchange(
                        line: line, command: command.redactedHex,
                        events: events.map { .init(direction: $0.direction == .toCard ? "command" : "response", bytes: $0.hex, marker: $0.marker?.rawValue) },
                        data: response.data.hexString(), sw: response.statusWord.description, meaning: response.statusWord.meaning)
                    report.exchanges.append(exchange)
                    if !response.statusWord.isSuccess(forClass: command.cla) && worst == nil { worst = response.statusWord }
                    if !global.json {
                        for e in events { print(e.line) }
                        print("   \(response.statusWord): \(response.statusWord.meaning)\(response.data.isEmpty ? "" : " (\(response.data.count) data byte\(response.data.count == 1 ? "" : "s"))")")
                    }
                }
            }
            try? await connection.disconnect(.leave)
            if global.json { Output.printJSON(report) }
            if failOnStatus, let worst {
                if !global.json { Output.stderr("error: status word \(worst) (\(worst.meaning))") }
                throw ExitCode(CarteExit.statusWord)
            }
        }
    }

    private func loadSteps() async throws -> [APDUScript.Step] {
        if let script {
            // Reading may block (a pipe, a slow disk): do it on a thread of its own, not on the cooperative pool.
            let read: Result<String, CLIError> = await onDedicatedThread {
                if script == "-" {
                    let data = FileHandle.standardInput.readDataToEndOfFile()
                    return .success(String(decoding: data, as: UTF8.self))
                }
                do {
                    return .success(try FileIO.readText(script, "the APDU script"))
                } catch {
                    return .failure(CLIError.from(error))
                }
            }
            let text = try read.get()
            do {
                return try APDUScript(parsing: text).steps
            } catch {
                throw CLIError(kind: "script", message: "\(script == "-" ? "<stdin>" : script): \(error.description)", exitCode: CarteExit.invalidInput)
            }
        }
        var steps: [APDUScript.Step] = []
        for (i, text) in apdus.enumerated() {
            do {
                steps.append(.command(try CommandAPDU(bytes: try [UInt8](hex: text)), line: i + 1))
            } catch {
                let inner = CLIError.from(error)
                throw CLIError(kind: inner.kind, message: "APDU argument \(i + 1): \(inner.message)", offset: inner.offset, exitCode: inner.exitCode)
            }
        }
        return steps
    }
}

/// What a command looks for when no `--reader` is given: the one rule of `carte --help` ("CHOOSING A
/// CARD").
enum WantedCard {
    /// Any card (`apdu`, `record`, `watch`…).
    case any
    /// The patient's identity (`read`): a Carte Vitale by its ATR, else a likely phone with the appli
    /// carte Vitale, else a card whose ATR says nothing (probed when read); never a CPx card.
    case vitale
    /// A CPx card by its ATR (`cps …`, `rights`).
    case cpx

    /// What "no … in any reader" says is missing.
    var missing: String {
        switch self {
        case .any: return "card"
        case .vitale: return "Carte Vitale, nor phone with the appli carte Vitale,"
        case .cpx: return "CPx card"
        }
    }
}

/// The requested reader (its name or a unique prefix), or the first slot, in the backend's order,
/// holding the card `wanted` (``WantedCard``). When no slot does, the error names the cards seen.
func chooseReader(_ backend: any ReaderBackend, requested: String?, wanted: WantedCard = .any) async throws -> String {
    let readers = try await backend.readers()
    if let requested {
        if let exact = readers.first(where: { $0.name == requested }) { return exact.name }
        let matches = readers.filter { $0.name.hasPrefix(requested) }
        if matches.count == 1 { return matches[0].name }
        if matches.count > 1 {
            throw CLIError(kind: "reader", message: "\"\(requested)\" names several readers: \(matches.map(\.name).joined(separator: ", ")); give more of the name",
                           exitCode: CarteExit.cardOrReader)
        }
        throw CardError.noSuchReader(requested, available: readers.map(\.name))
    }
    guard !readers.isEmpty else {
        throw CLIError(kind: "reader", message: "no reader at all (with --backend pcsc: pcscd knows none; carte doctor says why)", exitCode: CarteExit.cardOrReader)
    }
    var cards: [(name: String, kind: CardKind, label: String)] = []
    for r in readers {
        if case .present(let atr) = try await backend.state(of: r.name) {
            let kind = CardKind.fromATR(atr)
            cards.append((r.name, kind, KnownATR.identify(atr).first?.label ?? kind.description))
        }
    }
    let choice: String?
    switch wanted {
    case .any: choice = cards.first?.name
    case .cpx: choice = cards.first { $0.kind.isCPx }?.name
    case .vitale:
        choice = cards.first { $0.kind.isVitale }?.name ?? cards.first { $0.kind == .apcv }?.name
            ?? cards.first { if case .unknown = $0.kind { return true } else { return false } }?.name
    }
    if let choice { return choice }
    if cards.isEmpty {
        if readers.count == 1 { throw CardError.noCard(reader: readers[0].name) }
        throw CLIError(kind: "card", message: "no card in any reader (\(readers.map(\.name).joined(separator: ", ")))", exitCode: CarteExit.cardOrReader)
    }
    throw CLIError(kind: "card", message: "no \(wanted.missing) in any reader; cards seen: " + cards.map { "\($0.name) (\($0.label))" }.joined(separator: ", "),
                   exitCode: CarteExit.cardOrReader)
}

/// `carte apdu --json` output, schema `carte.apdu/1` (docs/json.md).
struct APDUReport: Encodable {
    var schema = "carte.apdu/1"
    let reader: String
    let atr: String
    var exchanges: [Exchange]

    struct Exchange: Encodable {
        /// Script line or argument number.
        let line: Int?
        /// The command as given (secrets redacted), or `reset`.
        let command: String
        /// Every APDU that crossed the reader for this command, automatic ones marked.
        let events: [Event]
        /// Final response data (concatenated across GET RESPONSE).
        let data: String
        /// Final status word.
        let sw: String
        let meaning: String
    }
    struct Event: Encodable {
        let direction: String
        let bytes: String
        let marker: String?
    }
}
