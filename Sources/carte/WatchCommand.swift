import ArgumentParser
import CarteCore
import Foundation

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Print reader and card events as they happen (Ctrl-C to stop).",
        discussion: """
            It first reports what is there when it starts (reader-present, card-present, card-mute), then \
            every change (reader-added, reader-removed, card-inserted, card-removed, card-mute). With \
            --json, one JSON object per line (schema carte.event/1): time, event, reader, atr. SIGINT \
            (Ctrl-C) and SIGTERM stop it with exit code 0, also when it runs in a script's background or \
            under nohup. Exit 3 at once when the readers cannot be listed (with --backend pcsc: pcscd is \
            not running or does not answer).
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var backendChoice: BackendOptions
    @OptionGroup var simulator: SimulatorOptions

    @Option(help: "Stop after this many seconds (default: run until interrupted).")
    var seconds: Double?

    func validate() throws {
        if let seconds, !(seconds > 0 && seconds <= 31_536_000) { throw ValidationError("--seconds is a duration above 0 (at most a year), not \(seconds)") }
    }

    func run() async throws {
        StopSignals.shared.install()
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            let backend = try simulator.makeAnyBackend(backendChoice.backend, logger: logger)
            let events = backend.events()
            let json = global.json
            // What is there now, said first; a backend that cannot list its readers is an error now,
            // not a silence forever.
            let readers: [ReaderInfo]
            do { readers = try await backend.readers() } catch {
                throw CLIError(kind: "reader", message: "cannot list the readers: \(error)", exitCode: CarteExit.cardOrReader)
            }
            let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            @Sendable func emit(_ kind: String, _ reader: String, _ atr: [UInt8]?) throws {
                let time = timeStyle.format(Date())
                if json {
                    // `atr` is null for the events without a card (docs/json.md: absent values are null).
                    let object: [String: Any] = ["schema": "carte.event/1", "time": time, "event": kind, "reader": reader, "atr": atr.map { $0.hexString() } ?? NSNull()]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    print("\(time)  \(kind)  \(reader)\(atr.map { "  " + $0.hexString() } ?? "")")
                }
                fflush(nil)  // one line at a time, also into a pipe (carte watch --json | jq)
            }
            for reader in readers {
                try emit("reader-present", reader.name, nil)
                switch try? await backend.state(of: reader.name) {
                case .present(let atr)?: try emit("card-present", reader.name, atr)
                case .mute?: try emit("card-mute", reader.name, nil)
                default: break
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in events {
                        let (kind, reader, atr): (String, String, [UInt8]?) = {
                            switch event {
                            case .readerAdded(let info): return ("reader-added", info.name, nil)
                            case .readerRemoved(let name): return ("reader-removed", name, nil)
                            case .cardInserted(let name, let atr): return ("card-inserted", name, atr)
                            case .cardRemoved(let name): return ("card-removed", name, nil)
                            case .cardMute(let name): return ("card-mute", name, nil)
                            }
                        }()
                        try emit(kind, reader, atr)
                    }
                }
                // The first of: the events end, the time is up, SIGINT/SIGTERM.
                group.addTask { _ = await StopSignals.shared.wait() }
                if let seconds {
                    group.addTask { try await Task.sleep(for: .milliseconds(Int(seconds * 1000))) }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }
}
