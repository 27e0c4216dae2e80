import Synchronization

/// One event of a ``Trace``: a command sent to the card or a response received from it.
public struct TraceEvent: Hashable, Sendable {
    /// Which way the bytes travelled.
    public enum Direction: String, Hashable, Sendable {
        /// A command APDU sent to the card (shown `>`).
        case toCard
        /// A response APDU received from the card (shown `<`).
        case fromCard
    }

    /// Why an exchange was made automatically by a ``CardChannel`` rather than asked for by the caller.
    public enum Marker: String, Hashable, Sendable {
        /// GET RESPONSE after `61xx` (or `9Fxx` on class `A0`).
        case getResponse = "auto:get-response"
        /// Resend with the exact Le after `6Cxx`.
        case resendWithCorrectLe = "auto:resend-le"
        /// One segment of a chained command (CLA bit `b5` set on all but the last).
        case chainedSegment = "auto:chain"
        /// A command the reader's PIN pad completed with the PIN typed on its keypad: the bytes are
        /// the template the host sent (the PIN itself never reached the host).
        case pinPad = "pin-pad"
    }

    /// Position in the trace, from 0, never reused even when old events are dropped.
    public var sequence: Int
    /// Direction of the bytes.
    public var direction: Direction
    /// Time since the trace started.
    public var time: Duration
    /// The bytes. For a secret-bearing command (VERIFY, CHANGE/RESET REFERENCE DATA) the data field is
    /// removed and ``redactedLength`` says how long it was.
    public var bytes: [UInt8]
    /// The length of the data removed from a secret-bearing command, `nil` when nothing was removed.
    public var redactedLength: Int?
    /// Set on exchanges made automatically by the channel.
    public var marker: Marker?

    /// The bytes in hexadecimal, with `<redacted N bytes>` in place of a removed secret.
    public var hex: String {
        guard let redactedLength else { return bytes.hexString() }
        // Header and Lc stay; the secret is replaced; a trailing Le (if any) follows.
        let header = bytes.prefix(bytes.count >= 7 && bytes[4] == 0 ? 7 : 5)
        var s = header.hexString() + " <redacted \(redactedLength) bytes>"
        let tail = bytes.dropFirst(header.count)
        if !tail.isEmpty { s += " " + tail.hexString() }
        return s
    }

    /// `> 00 A4 …` / `< 90 00` with markers and redaction shown.
    public var line: String {
        (direction == .toCard ? "> " : "< ") + hex + (marker.map { "  [\($0.rawValue)]" } ?? "")
    }
}

/// An ordered record of the exchanges with a card, with timestamps, directions and markers.
///
/// Secrets never enter it: the data of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER is
/// removed when the event is recorded (see ``CommandAPDU/carriesSecret``). The trace keeps at most
/// ``capacity`` events and counts the ones it dropped.
public final class Trace: Sendable {
    private struct Storage {
        var events: [TraceEvent] = []
        var head = 0
        var next = 0
        var dropped = 0
    }

    private let storage = Mutex(Storage())
    private let start: ContinuousClock.Instant
    /// The maximum number of events kept (the oldest are dropped first).
    public let capacity: Int

    /// Creates an empty trace keeping at most `capacity` events.
    public init(capacity: Int = 100_000) {
        precondition(capacity > 0, "trace capacity must be positive")
        self.capacity = capacity
        self.start = ContinuousClock.now
    }

    /// Records a command, redacting secrets. `encoded` is `command.encoded()` when the caller has it
    /// already (it is not encoded a second time).
    public func recordCommand(_ command: CommandAPDU, encoded: [UInt8]? = nil, marker: TraceEvent.Marker? = nil) {
        if command.carriesSecret && !command.data.isEmpty {
            var head: [UInt8] = [command.cla, command.ins, command.p1, command.p2]
            if command.isExtended {
                head += [0, UInt8(command.data.count >> 8), UInt8(command.data.count & 0xFF)]
            } else {
                head.append(UInt8(command.data.count))
            }
            if let le = command.le {
                head += command.isExtended ? [UInt8((le & 0xFFFF) >> 8), UInt8(le & 0xFF)] : [UInt8(le & 0xFF)]
            }
            append(.toCard, head, redacted: command.data.count, marker: marker)
        } else {
            append(.toCard, encoded ?? command.encoded(), redacted: nil, marker: marker)
        }
    }

    /// Records raw command bytes, redacting secrets when they decode as a secret-bearing APDU.
    /// Bytes that do not decode, but whose INS is a secret-bearing instruction, are reduced to their header.
    public func recordCommand(bytes: [UInt8], marker: TraceEvent.Marker? = nil) {
        if let command = try? CommandAPDU(bytes: bytes) {
            recordCommand(command, marker: marker)
        } else if bytes.count > 4, CommandAPDU.secretInstructions.contains(bytes[1]) {
            append(.toCard, Array(bytes.prefix(4)), redacted: bytes.count - 4, marker: marker)
        } else {
            append(.toCard, bytes, redacted: nil, marker: marker)
        }
    }

    /// Records a response.
    public func recordResponse(_ bytes: [UInt8], marker: TraceEvent.Marker? = nil) {
        append(.fromCard, bytes, redacted: nil, marker: marker)
    }

    private func append(_ direction: TraceEvent.Direction, _ bytes: [UInt8], redacted: Int?, marker: TraceEvent.Marker?) {
        let time = ContinuousClock.now - start
        storage.withLock { s in
            let event = TraceEvent(sequence: s.next, direction: direction, time: time, bytes: bytes, redactedLength: redacted, marker: marker)
            s.next += 1
            if s.events.count < capacity {
                s.events.append(event)
            } else {
                s.events[s.head] = event
                s.head = (s.head + 1) % capacity
                s.dropped += 1
            }
        }
    }

    /// The events kept, oldest first.
    public var events: [TraceEvent] {
        storage.withLock { s in Array(s.events[s.head...] + s.events[..<s.head]) }
    }

    /// The sequence number the next recorded event will get.
    public var nextSequence: Int { storage.withLock { $0.next } }

    /// The events kept whose sequence number is at least `sequence`, oldest first. Only those are
    /// copied (sequence numbers are consecutive: the kept events are the last ones recorded).
    public func events(from sequence: Int) -> [TraceEvent] {
        storage.withLock { s in
            let (skip, count) = Self.window(s, from: sequence)
            var out: [TraceEvent] = []
            out.reserveCapacity(count - skip)
            for i in skip..<count { out.append(s.events[(s.head + i) % count]) }
            return out
        }
    }

    /// How many commands (events to the card) the trace kept from sequence number `sequence` on,
    /// without copying them (what a reader counts as the APDUs of an operation).
    public func commandCount(from sequence: Int) -> Int {
        storage.withLock { s in
            let (skip, count) = Self.window(s, from: sequence)
            var commands = 0
            for i in skip..<count where s.events[(s.head + i) % count].direction == .toCard { commands += 1 }
            return commands
        }
    }

    /// The kept events to skip (older than `sequence`) and the number kept.
    private static func window(_ s: Storage, from sequence: Int) -> (skip: Int, count: Int) {
        let count = s.events.count
        let oldest = s.next - count
        return (min(count, max(0, sequence - oldest)), count)
    }

    /// How many events were dropped because the trace was full.
    public var droppedCount: Int { storage.withLock { $0.dropped } }

    /// Removes every event.
    public func removeAll() {
        storage.withLock { $0 = Storage(next: $0.next) }
    }

    /// One line per event (see ``TraceEvent/line``), prefixed by the time in milliseconds.
    public func formatted() -> String {
        events.map { e in
            let (s, a) = e.time.components
            let micros = s * 1_000_000 + a / 1_000_000_000_000
            let ms = "\(micros / 1000).\(String(repeating: "0", count: 3 - String(micros % 1000).count))\(micros % 1000)"
            return "[\(ms) ms] " + e.line
        }.joined(separator: "\n")
    }
}
