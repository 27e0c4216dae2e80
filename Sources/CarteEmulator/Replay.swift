public import CarteCore
import Logging

extension CardImage {
    /// Where and how a recorded image was captured (`carte record`).
    public struct Recording: Sendable, Hashable {
        /// The reader (slot) name.
        public var reader: String
        /// The reader's vendor, model and firmware (IFD version) as it reported them, when it did.
        public var vendor: String?
        /// The reader's model.
        public var model: String?
        /// The firmware version.
        public var firmware: String?
        /// When (ISO 8601, UTC).
        public var date: String
        /// What was run (`vitale`, `cps`…).
        public var session: String

        /// A recording's identity.
        public init(reader: String, vendor: String? = nil, model: String? = nil, firmware: String? = nil, date: String, session: String) {
            self.reader = reader
            self.vendor = vendor
            self.model = model
            self.firmware = firmware
            self.date = date
            self.session = session
        }
    }

    /// How a replay image answers: from its recorded transcript (with a match policy) or from the file
    /// system learned from the reads.
    public struct Replay: Sendable, Hashable {
        /// What answers the commands.
        public enum Source: String, Sendable, Hashable, CaseIterable {
            /// The recorded exchanges, matched by ``Policy``.
            case transcript
            /// The file system (``CardImage/root``), as any card image.
            case filesystem
        }
        /// How a command finds its recorded exchange.
        public enum Policy: String, Sendable, Hashable, CaseIterable {
            /// The n-th command must be the n-th recorded one.
            case strict
            /// The next recorded exchange matching the command, searched from the last one used, then
            /// from the start: tolerates skipped and re-ordered commands.
            case cursor
            /// Any recorded exchange matching the command (its first unused one, else its last one):
            /// order does not matter; `??` in a recorded command matches any byte (challenges, nonces).
            case keyed
        }
        /// One recorded exchange. `command` holds `nil` for a wildcard byte (`??`).
        public struct Exchange: Sendable, Hashable {
            /// The command, with wildcards.
            public var command: [UInt8?]
            /// The response (data and status word).
            public var response: [UInt8]
            /// How long the card took, in milliseconds, as recorded.
            public var milliseconds: Double?

            /// An exchange.
            public init(command: [UInt8?], response: [UInt8], milliseconds: Double? = nil) {
                self.command = command
                self.response = response
                self.milliseconds = milliseconds
            }

            /// Whether `bytes` matches the recorded command.
            public func matches(_ bytes: [UInt8]) -> Bool {
                bytes.count == command.count && zip(bytes, command).allSatisfy { $1 == nil || $1 == $0 }
            }

            /// The command as text, `??` for wildcards.
            public var commandText: String { Exchange.text(of: command) }

            /// `00 20 ?? ??`: hexadecimal bytes separated by spaces, `??` for any (or a removed) byte.
            public static func text(of command: [UInt8?]) -> String { command.map { $0.map { $0.hex } ?? "??" }.joined(separator: " ") }

            /// Reads ``text(of:)``: the bytes, `nil` for each `??`; `nil` when a token is neither.
            public static func command(fromText text: Substring) -> [UInt8?]? {
                var out: [UInt8?] = []
                for token in text.split(separator: " ") {
                    if token == "??" { out.append(nil); continue }
                    guard token.count == 2, let b = UInt8(token, radix: 16) else { return nil }
                    out.append(b)
                }
                return out
            }
        }

        /// What answers.
        public var source: Source
        /// How commands are matched (transcript source).
        public var policy: Policy
        /// The status word an unexpected command gets.
        public var unexpectedStatusWord: StatusWord
        /// The exchanges, in recorded order.
        public var transcript: [Exchange]

        /// A replay section.
        public init(source: Source = .transcript, policy: Policy = .cursor, unexpectedStatusWord: StatusWord = StatusWord(rawValue: 0x6F00), transcript: [Exchange]) {
            self.source = source
            self.policy = policy
            self.unexpectedStatusWord = unexpectedStatusWord
            self.transcript = transcript
        }
    }
}

/// Where a replaying card is in its transcript.
struct ReplayState {
    var next = 0
    var used = Set<Int>()
    /// The last command was answered from the transcript (its GET RESPONSE is too).
    var lastFromTranscript = false
    /// Unexpected commands with the closest expected one (for logs and tests).
    var misses: [String] = []
}

extension SimulatedCard {
    /// Answers `command` from the transcript, or `nil` when the image replays its file system.
    func replayAnswer(_ command: [UInt8], _ replay: CardImage.Replay) -> [UInt8] {
        let t = replay.transcript
        var found: Int?
        switch replay.policy {
        case .strict:
            if replayState.next < t.count, t[replayState.next].matches(command) { found = replayState.next }
        case .cursor:
            let order = Array(replayState.next..<t.count) + Array(0..<min(replayState.next, t.count))
            found = order.first { !replayState.used.contains($0) && t[$0].matches(command) } ?? order.first { t[$0].matches(command) }
        case .keyed:
            found = t.indices.first { !replayState.used.contains($0) && t[$0].matches(command) } ?? t.indices.last { t[$0].matches(command) }
        }
        guard let i = found else {
            let closest = t.indices.min { distance(t[$0], command) < distance(t[$1], command) }
            let expected = replay.policy == .strict && replayState.next < t.count ? replayState.next : closest
            // A PIN never reaches a log: the data of a PIN-carrying command is not shown.
            let shown = CardImage.Replay.carriesSecret(command.map { $0 }) ? Array(command.prefix(5)).hexString() + " <PIN data redacted>" : command.hexString()
            let line = "unexpected command \(shown); closest expected: \(expected.map { "#\($0 + 1) \(CardImage.Replay.withoutSecrets(t[$0]).commandText)" } ?? "none (empty transcript)")"
            if replayState.misses.count < 1000 { replayState.misses.append(line) }
            logger?.warning("replay of \(image.name): \(line)")
            return [replay.unexpectedStatusWord.sw1, replay.unexpectedStatusWord.sw2]
        }
        replayState.used.insert(i)
        replayState.next = i + 1
        return t[i].response
    }

    /// Commands the replay did not expect, each with the closest recorded one.
    public var replayMisses: [String] { replayState.misses }

    /// How far a recorded command is from `command`: another instruction first, then another class,
    /// then each other byte and the difference in length.
    private func distance(_ e: CardImage.Replay.Exchange, _ command: [UInt8]) -> Int {
        func differs(_ i: Int) -> Bool { i < e.command.count && i < command.count && e.command[i] != nil && e.command[i] != command[i] }
        let bytes = zip(e.command, command).filter { $0 != nil && $0 != $1 }.count
        return (differs(1) ? 1000 : 0) + (differs(0) ? 100 : 0) + bytes + abs(e.command.count - command.count)
    }
}

extension CardImage.Replay {
    /// The instructions whose data is a PIN or PUK: VERIFY, CHANGE REFERENCE DATA, ENABLE/DISABLE
    /// VERIFICATION REQUIREMENT, RESET RETRY COUNTER.
    public static let secretInstructions: Set<UInt8> = CommandAPDU.secretInstructions

    /// Whether a command carries a PIN or PUK (an inter-industry secret instruction with data).
    public static func carriesSecret(_ command: [UInt8?]) -> Bool {
        command.count > 5 && (command[1].map { secretInstructions.contains($0) } ?? false)
    }

    /// `exchange` with the data of a PIN-carrying command turned into wildcards.
    public static func withoutSecrets(_ exchange: Exchange) -> Exchange {
        guard carriesSecret(exchange.command) else { return exchange }
        var e = exchange
        for i in 5..<e.command.count { e.command[i] = nil }
        return e
    }
}
