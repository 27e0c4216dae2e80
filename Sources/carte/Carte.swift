import ArgumentParser
internal import CBuildInfo
import CarteApCV
import CarteCore
import CarteKit
import Foundation
import Logging

/// `carte` — the CarteKit command-line tool.
@main
struct Carte: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "carte",
        abstract: "Read and test French health smart cards (Carte Vitale, CPx) and their readers.",
        discussion: """
            Commands that talk to cards use CarteKit's in-memory virtual readers by default, loaded with \
            the bundled synthetic demo Vitale 2 unless --image says otherwise; --backend pcsc uses the \
            readers pcscd knows (real ones, or virtual ones served by carte sim serve).

            JSON output (--json) is versioned by its "schema" field; see docs/json.md.

            CHOOSING A CARD: with no --reader, a command takes the first slot, in the \
            order of the readers, whose card it works on, judged by the ATR: read and \
            demo a Carte Vitale, else a phone with the appli carte Vitale, else a card \
            whose ATR says nothing (probed when read), never a CPx card; cps and rights \
            a CPx card; apdu and record any card. --reader takes a reader's name or a \
            prefix naming only one.

            EXIT CODES:
              0   success
              1   unexpected failure (a bug: please report it)
              2   invalid input: malformed hex, APDU, ATR, TLV, card image or script; a
                  file that cannot be read or written (the message says which and why)
              3   reader or card problem: no such reader, no card, card removed or mute
              4   the card answered with an error status word (only with --fail-on-status)
              5   the card refused the PIN or PUK (wrong, blocked) or needs it first
                  (carte cps)
              6   an appli carte Vitale token was refused: forged, signed by an unknown
                  key, for another software, expired, already used, or for no known
                  person (carte read)
              7   carte doctor found a failing check (its report says what and how to
                  fix it)
              8   the rights service refused the request or the card's certificate, or
                  cannot be reached (carte rights)
              64  invalid command line (unknown option, missing argument, unknown
                  command)
            """,
        version: CarteVersion.withCommit,
        subcommands: [ReadCommand.self, RecordCommand.self, DoctorCommand.self, ATRCommand.self, APDUCommand.self, ReadersCommand.self, DemoCommand.self, CPSCommand.self, RightsCommand.self, ImageCommand.self, SimCommand.self, WatchCommand.self, AgentCommand.self, BenchCommand.self]
    )

    /// ArgumentParser's entry point, plus one step: a long-running command (``StopSignals/commands``)
    /// catches SIGINT and SIGTERM as soon as its arguments are parsed, before it does anything else.
    nonisolated static func main() async {
        // `carte help WORDS…` for a command that does not exist would print the top-level help and
        // succeed (ArgumentParser's behaviour): say so instead, with the usage exit code.
        let words = Array(CommandLine.arguments.dropFirst())
        if words.first == "help", let unknown = unknownCommand(words.dropFirst().prefix { !$0.hasPrefix("-") }) {
            Output.stderr("error: carte has no command \"\(unknown)\"; carte --help lists the commands")
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try parseAsRoot(joiningNegativeValues(words))
            let kind = ObjectIdentifier(type(of: command))
            if StopSignals.commands.contains(where: { ObjectIdentifier($0) == kind }) { StopSignals.shared.install() }
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// `--ms -5` as `--ms=-5`: ArgumentParser reads a token starting with `-` as an option, and would say
/// "Missing value for '--ms <ms>'" instead of what is wrong with -5 (each option's own check says it).
func joiningNegativeValues(_ words: [String]) -> [String] {
    var out: [String] = []
    for word in words {
        if let last = out.last, last.hasPrefix("--"), !last.contains("="), word.count > 1, word.hasPrefix("-"),
           Double(word) != nil {
            out[out.count - 1] = last + "=" + word
        } else {
            out.append(word)
        }
    }
    return out
}

/// The command path `words` (after `help`) fails to name: the whole path so far, or `nil` when it names
/// a command.
func unknownCommand(_ words: some Collection<String>) -> String? {
    var command: any ParsableCommand.Type = Carte.self
    var path: [String] = []
    for word in words {
        path.append(word)
        guard let next = command.configuration.subcommands.first(where: { $0._commandName == word }) else { return path.joined(separator: " ") }
        command = next
    }
    return nil
}

/// The version of the tool and of the JSON schemas it writes.
enum CarteVersion {
    static let string = "0.1.0"
    /// The commit the binary was built from (Package.swift: CBuildInfo), "unknown" outside git.
    static let commit = String(cString: cartekit_build_commit())
    /// What `carte --version` prints: the version and the commit.
    static let withCommit = "\(string) (commit \(commit))"
}

/// Exit codes documented in `carte --help`.
enum CarteExit {
    static let success: Int32 = 0
    static let unexpected: Int32 = 1
    static let invalidInput: Int32 = 2
    static let cardOrReader: Int32 = 3
    static let statusWord: Int32 = 4
    static let pinRefused: Int32 = 5
    static let tokenRefused: Int32 = 6
    static let diagnosticFailed: Int32 = 7
    static let rightsRefused: Int32 = 8
}

/// Options shared by every command.
struct GlobalOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Log more (repeat for APDU-level trace logs on standard error).")
    var verbose: Int

    @Flag(help: "Write versioned JSON on standard output instead of text.")
    var json = false

    /// Bootstraps logging once (only the CLI does this; libraries take a Logger).
    func makeLogger() -> Logger {
        let level: Logger.Level = verbose >= 2 ? .trace : verbose == 1 ? .debug : .warning
        LoggingBootstrap.once(level: level)
        var logger = Logger(label: "carte")
        logger.logLevel = level
        return logger
    }
}

enum LoggingBootstrap {
    private static let done = NSLock()
    nonisolated(unsafe) private static var bootstrapped = false

    static func once(level: Logger.Level) {
        done.lock()
        defer { done.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

// MARK: - Output helpers

enum Output {
    static func json<T: Encodable>(_ value: T) -> String { jsonText(value) }

    static func printJSON<T: Encodable>(_ value: T) {
        print(json(value))
    }

    static func stderr(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// The JSON written on standard output for a failed command when `--json` is set (schema `carte.error/1`).
struct ErrorJSON: Encodable {
    let schema = "carte.error/1"
    let error: Detail
    struct Detail: Encodable {
        let kind: String
        let message: String
        let offset: Int?
        let exitCode: Int32
    }
}

/// An error a command reports to the user, with its exit code.
struct CLIError: Error, CustomStringConvertible {
    let kind: String
    let message: String
    let offset: Int?
    let exitCode: Int32

    init(kind: String, message: String, offset: Int? = nil, exitCode: Int32) {
        self.kind = kind
        self.message = message
        self.offset = offset
        self.exitCode = exitCode
    }

    /// The message (what `"\(error)"` shows, in a daemon's answer as anywhere).
    var description: String { message }

    static func from(_ error: any Error) -> CLIError {
        switch error {
        case let e as CLIError: return e
        case let e as CocoaError where e.isFileError || e.filePath != nil:
            // A file operation no command wrapped: say which file and why, not "error 512".
            guard let path = e.filePath ?? e.url?.path else {
                return CLIError(kind: "file", message: "a file operation failed (\(e.code.rawValue))", exitCode: CarteExit.invalidInput)
            }
            let writing = [.fileWriteUnknown, .fileWriteNoPermission, .fileWriteOutOfSpace, .fileWriteVolumeReadOnly, .fileWriteFileExists,
                           .fileWriteInvalidFileName, .fileWriteInapplicableStringEncoding].contains(e.code)
            return FileIO.failure(path, writing ? "writing" : "reading", writing: writing)
        case let e as ValidationError:
            return CLIError(kind: "usage", message: e.message, exitCode: ExitCode.validationFailure.rawValue)
        case let e as HexError:
            let offset: Int
            switch e {
            case .invalidCharacter(_, let o), .oddNumberOfDigits(let o): offset = o
            }
            return CLIError(kind: "hex", message: e.description, offset: offset, exitCode: CarteExit.invalidInput)
        case let e as APDUError: return CLIError(kind: "apdu", message: e.description, offset: e.offset, exitCode: CarteExit.invalidInput)
        case let e as ATRError: return CLIError(kind: "atr", message: e.description, offset: e.offset, exitCode: CarteExit.invalidInput)
        case let e as TLVError: return CLIError(kind: "tlv", message: e.description, offset: e.offset, exitCode: CarteExit.invalidInput)
        case let e as ApCVError:
            let code: Int32
            switch e.category {
            case .malformed: code = CarteExit.invalidInput
            case .refused: code = CarteExit.tokenRefused
            case .unavailable: code = CarteExit.cardOrReader
            case .internal: code = CarteExit.unexpected
            }
            return CLIError(kind: "apcv", message: e.description, exitCode: code)
        case let e as CardError:
            if case .invalidCommand(let inner) = e {
                return CLIError(kind: "apdu", message: inner.description, offset: inner.offset, exitCode: CarteExit.invalidInput)
            }
            return CLIError(kind: "card", message: e.description, exitCode: CarteExit.cardOrReader)
        default:
            return CLIError(kind: "internal", message: String(describing: error), exitCode: CarteExit.unexpected)
        }
    }

    /// Reports the error (text on standard error, or JSON on standard output) and exits.
    func report(json: Bool) -> ExitCode {
        if json {
            Output.printJSON(ErrorJSON(error: .init(kind: kind, message: message, offset: offset, exitCode: exitCode)))
        } else {
            Output.stderr("error: \(message)")
        }
        return ExitCode(exitCode)
    }
}

/// Runs a blocking `body` on a new thread and returns its result, leaving the cooperative pool free.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning every error into a reported message and a documented exit code.
    func reporting(json: Bool, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CLIError.from(error).report(json: json)
        }
    }
}
