public import CarteCore
import Foundation
import Synchronization

/// A virtual reader's PIN pad (PC/SC part 10 class-2/3 reader): what the reader announces and how
/// its simulated keypad behaves. The values are **synthetic** defaults in the range real health
/// readers use; every one is configurable in the reader profile (`pin-pad:` in `carte-reader/1`).
public struct PINPadProfile: Sendable, Hashable, Codable {
    /// `FEATURE_VERIFY_PIN_DIRECT` is offered.
    public var verify: Bool
    /// `FEATURE_MODIFY_PIN_DIRECT` is offered.
    public var modify: Bool
    /// Whether the reader lists its pad in `CM_IOCTL_GET_FEATURE_REQUEST`. `false` models a reader
    /// whose keypad exists but whose firmware or driver does not announce it (host software then
    /// cannot use it; `carte doctor` warns about a catalog reader known to have one).
    public var announced: Bool
    /// Display characters per line and lines (`wLcdLayout` = lines << 8 | characters); 0 lines: none.
    public var displayCharacters: Int
    /// See ``displayCharacters``.
    public var displayLines: Int
    /// `bMinPINSize` and `bMaxPINSize` the reader reports.
    public var minimumPINLength: Int
    /// See ``minimumPINLength``.
    public var maximumPINLength: Int
    /// `bEntryValidationCondition` the reader supports (libccid reports `07` for most readers).
    public var entryValidationCondition: UInt8
    /// `bTimeOut2` the reader reports.
    public var timeout2: UInt8
    /// Seconds the keypad waits when a structure's `bTimerOut` is 0.
    public var defaultTimeoutSeconds: Int
    /// Entries typed on the keypad as soon as the reader is plugged in (tests, demonstrations).
    public var script: [KeypadEntry]

    /// A profile; see the properties for the defaults.
    public init(verify: Bool = true, modify: Bool = true, announced: Bool = true, displayCharacters: Int = 16, displayLines: Int = 2,
                minimumPINLength: Int = 4, maximumPINLength: Int = 8, entryValidationCondition: UInt8 = 0x02, timeout2: UInt8 = 0,
                defaultTimeoutSeconds: Int = 30, script: [KeypadEntry] = []) {
        self.verify = verify
        self.modify = modify
        self.announced = announced
        self.displayCharacters = displayCharacters
        self.displayLines = displayLines
        self.minimumPINLength = minimumPINLength
        self.maximumPINLength = maximumPINLength
        self.entryValidationCondition = entryValidationCondition
        self.timeout2 = timeout2
        self.defaultTimeoutSeconds = defaultTimeoutSeconds
        self.script = script
    }

    /// `wLcdLayout`: lines in the high byte, characters in the low byte; 0 without a display.
    public var lcdLayout: UInt16 {
        displayLines <= 0 || displayCharacters <= 0 ? 0 : UInt16(min(displayLines, 255)) << 8 | UInt16(min(displayCharacters, 255))
    }

    /// What host software learns from the reader (`nil` when the pad is not announced).
    public var capabilities: PINPadCapabilities? {
        guard announced, verify || modify else { return nil }
        return PINPadCapabilities(verify: verify, modify: modify, lcdLayout: lcdLayout, entryValidationCondition: entryValidationCondition,
                                  timeout2: timeout2, minimumPINLength: minimumPINLength, maximumPINLength: maximumPINLength)
    }

    /// The feature names the reader announces, as `ReaderInfo.features` lists them.
    public var featureNames: [String] {
        guard announced else { return [] }
        return (verify ? ["pin-verify"] : []) + (modify ? ["pin-modify"] : []) + ["ifd-pin-properties"]
    }
}

/// One entry on a simulated keypad. The digits are secret: descriptions and mirrors show only
/// how many there are.
public enum KeypadEntry: Sendable, Hashable, Codable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Digits typed then validated, `after` the reader starts waiting for them.
    case digits(KeypadDigits, after: Duration)
    /// The cancel key, pressed `after` the reader starts waiting.
    case cancel(after: Duration)
    /// Nobody types: the reader reports a timeout at once (as if its time had run out).
    case timeout

    public var description: String {
        switch self {
        case .digits(let d, let after): return "\(d.count) digits" + (after > .zero ? " after \(after)" : "")
        case .cancel(let after): return "cancel" + (after > .zero ? " after \(after)" : "")
        case .timeout: return "timeout"
        }
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["entry": description], displayStyle: .enum) }
}

/// Digits typed on a simulated keypad: ASCII `0`–`9`, 1 to 16 of them, never shown.
///
/// Decoding checks them like ``init(_:)``; encoding refuses (a profile or image holding a keypad
/// script is written as YAML by `CardImageWriter`, never as JSON by accident).
public struct KeypadDigits: Sendable, Hashable, Codable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let bytes: [UInt8]

    /// Decodes a string of digits, checked as ``init(_:)`` checks it.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description)) }
    }

    /// Always throws: keypad digits are never encoded.
    public func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(self, .init(codingPath: encoder.codingPath, debugDescription: "keypad digits are secret and are not encoded"))
    }

    /// Accepts 1 to 16 digits 0-9; the error never repeats the input.
    public init(_ text: String) throws(KeypadError) {
        let b = Array(text.utf8)
        guard (1...16).contains(b.count) else { throw .invalidDigits("a keypad entry has 1 to 16 digits, this one has \(b.count) characters") }
        guard b.allSatisfy({ (0x30...0x39).contains($0) }) else { throw .invalidDigits("a keypad has only the digits 0-9") }
        bytes = b
    }

    /// How many digits.
    public var count: Int { bytes.count }

    /// The digits as text, for the one place that must send them on (a console's keypad request to the
    /// daemon over its private socket). Never log or print it.
    package var secretText: String { String(decoding: bytes, as: UTF8.self) }
    /// The digits, for the image writer only (a card image holds its PINs in clear anyway).
    package var text: String { String(decoding: bytes, as: UTF8.self) }
    public var description: String { "<\(bytes.count) digits redacted>" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    /// Whether two entries are equal, in constant time.
    func matches(_ other: KeypadDigits) -> Bool {
        guard bytes.count == other.bytes.count else { return false }
        var diff: UInt8 = 0
        for i in bytes.indices { diff |= bytes[i] ^ other.bytes[i] }
        return diff == 0
    }
}

/// Why a keypad entry cannot be scripted.
public enum KeypadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The digits are not 1 to 16 digits 0-9 (the message never repeats them).
    case invalidDigits(String)
    /// The slot's reader has no PIN pad.
    case noPINPad(reader: String)

    public var description: String {
        switch self {
        case .invalidDigits(let why): return "invalid keypad entry: \(why)"
        case .noPINPad(let r): return "reader \"\(r)\" has no PIN pad (its profile has no pin-pad section)"
        }
    }
}

/// Why a PIN-pad operation did not reach the card.
public enum PINPadFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// The reader has no PIN pad, or does not offer this operation.
    case unsupported(String)
    /// The structure is malformed (the reader refuses it as libccid does: not supported).
    case malformed(PINPadError)
    /// The card is gone or does not answer.
    case card(CardError)

    public var description: String {
        switch self {
        case .unsupported(let why): return "PIN pad: \(why)"
        case .malformed(let e): return "PIN pad: \(e)"
        case .card(let e): return e.description
        }
    }
}

/// A reader's keypad: a queue of scripted entries, consumed one per PIN typed.
public final class VirtualKeypad: Sendable {
    private let queue = Mutex<[KeypadEntry]>([])
    /// Entries consumed so far (for status).
    private let consumed = Mutex(0)

    /// An empty keypad, or one with `script` queued.
    public init(script: [KeypadEntry] = []) {
        queue.withLock { $0 = script }
    }

    /// Queues entries, typed in order by the next PIN prompts.
    public func type(_ entries: [KeypadEntry]) {
        queue.withLock { $0 += entries }
    }

    /// Forgets every queued entry.
    public func clear() {
        queue.withLock { $0.removeAll() }
    }

    /// Entries waiting to be typed.
    public var pending: Int { queue.withLock { $0.count } }
    /// Entries typed so far.
    public var typed: Int { consumed.withLock { $0 } }

    /// Takes the next entry, waiting up to `timeout` for one to be queued; `nil` when none came.
    /// Gives up early (`nil`) when `abandon` says so (the card was removed). Blocking: call from a
    /// thread of your own.
    func next(within timeout: Duration, abandon: () -> Bool) -> (KeypadEntry, waited: Duration)? {
        let clock = ContinuousClock()
        let start = clock.now
        while true {
            if let e = queue.withLock({ q -> KeypadEntry? in q.isEmpty ? nil : q.removeFirst() }) {
                consumed.withLock { $0 += 1 }
                return (e, clock.now - start)
            }
            if clock.now - start >= timeout || abandon() { return nil }
            Thread.sleep(forTimeInterval: 0.010)
        }
    }
}

extension VirtualSlot {
    /// Answers `FEATURE_VERIFY_PIN_DIRECT` with the structure `bytes`: takes the PIN from the keypad,
    /// builds the VERIFY from the template and sends it to the card (faults apply). Returns the card's
    /// response or the pad's own `64 00` (timeout), `64 01` (cancel) or `64 03` (length out of range).
    /// Blocks while the keypad waits: call from a thread of your own.
    ///
    /// - Parameters:
    ///   - insertion: the card the caller talks to (``insertionCount`` when its connection was made);
    ///     a card swapped since then is not sent the PIN. `nil`: the card present when the prompt starts.
    ///   - abandon: polled while the keypad waits; `true` ends the prompt without sending anything
    ///     (the daemon passes "the driver's connection is gone").
    public func verifyOnPad(_ bytes: [UInt8], insertion: Int? = nil, abandon: @escaping () -> Bool = { false }) -> Result<[UInt8], PINPadFailure> {
        guard let pad = pinPad, pad.verify else { return .failure(.unsupported("\(info.name) has no PIN verification on its pad")) }
        let structure: PINVerifyStructure
        do { structure = try PINVerifyStructure(bytes: bytes) } catch { return .failure(.malformed(error)) }
        let session = PadSession(slot: self, profile: pad, timeout: structure.timeout, timeout2: structure.timeout2,
                                 minimum: structure.minimumLength, maximum: structure.maximumLength, insertion: insertion, abandon: abandon)
        if let failure = session.checkCard() { return .failure(failure) }
        activity.report(.padPrompt(slot: info.name, waiting: true))
        defer { activity.report(.padPrompt(slot: info.name, waiting: false)) }
        let digits: KeypadDigits
        switch session.take(first: true) {
        case .typed(let d): digits = d
        case .status(let sw): return .success(sw)
        case .failed(let f): return .failure(f)
        }
        let command: [UInt8]
        do { command = try structure.command(digits: digits.bytes) } catch { return .failure(.malformed(error)) }
        return session.send(command)
    }

    /// Answers `FEATURE_MODIFY_PIN_DIRECT`: takes the current PIN (when `bConfirmPIN` asks), the new
    /// PIN and its confirmation (when asked) from the keypad; `64 02` when the two new entries differ.
    public func modifyOnPad(_ bytes: [UInt8], insertion: Int? = nil, abandon: @escaping () -> Bool = { false }) -> Result<[UInt8], PINPadFailure> {
        guard let pad = pinPad, pad.modify else { return .failure(.unsupported("\(info.name) has no PIN modification on its pad")) }
        let structure: PINModifyStructure
        do { structure = try PINModifyStructure(bytes: bytes) } catch { return .failure(.malformed(error)) }
        if structure.numberOfMessages > 3 && structure.numberOfMessages != 0xFF {
            return .failure(.malformed(.invalidField(field: "bNumberMessage", reason: "\(structure.numberOfMessages) messages (0…3 or FF)")))
        }
        let session = PadSession(slot: self, profile: pad, timeout: structure.timeout, timeout2: structure.timeout2,
                                 minimum: structure.minimumLength, maximum: structure.maximumLength, insertion: insertion, abandon: abandon)
        if let failure = session.checkCard() { return .failure(failure) }
        activity.report(.padPrompt(slot: info.name, waiting: true))
        defer { activity.report(.padPrompt(slot: info.name, waiting: false)) }
        var entries: [KeypadDigits] = []
        let count = (structure.asksCurrentPIN ? 1 : 0) + 1 + (structure.asksConfirmation ? 1 : 0)
        for i in 0..<count {
            switch session.take(first: i == 0) {
            case .typed(let d): entries.append(d)
            case .status(let sw): return .success(sw)
            case .failed(let f): return .failure(f)
            }
        }
        let current = structure.asksCurrentPIN ? entries[0] : nil
        let new = entries[structure.asksCurrentPIN ? 1 : 0]
        if structure.asksConfirmation, !new.matches(entries[count - 1]) { return .success(PINPadStatus.confirmationMismatch.statusWord.bytes) }
        let command: [UInt8]
        do { command = try structure.command(current: current?.bytes, new: new.bytes) } catch { return .failure(.malformed(error)) }
        return session.send(command)
    }
}

/// One PIN prompt on a slot's pad: limits, timeouts and the card it started with.
private struct PadSession {
    let slot: VirtualSlot
    let profile: PINPadProfile
    let timeout: UInt8
    let timeout2: UInt8
    let minimum: Int
    let maximum: Int
    let insertion: Int
    let abandon: () -> Bool

    init(slot: VirtualSlot, profile: PINPadProfile, timeout: UInt8, timeout2: UInt8, minimum: UInt8, maximum: UInt8, insertion: Int?, abandon: @escaping () -> Bool) {
        self.abandon = abandon
        self.slot = slot
        self.profile = profile
        self.timeout = timeout
        self.timeout2 = timeout2
        // A minimum above the maximum means an exact length (as vsmartcard's reader reads it).
        self.minimum = Int(minimum)
        self.maximum = max(Int(maximum), Int(minimum))
        self.insertion = insertion ?? slot.insertionCount
    }

    enum Taken {
        case typed(KeypadDigits)
        case status([UInt8])
        case failed(PINPadFailure)
    }

    func checkCard() -> PINPadFailure? {
        switch slot.slotState {
        case .empty: return .card(.noCard(reader: slot.info.name))
        case .mute: return .card(.cardMute(reader: slot.info.name, timeout: .zero))
        case .present: return slot.insertionCount == insertion ? nil : .card(.cardRemoved(reader: slot.info.name))
        }
    }

    /// Waits for one entry: the first waits `bTimerOut` seconds (the profile's default for 0), later
    /// ones `bTimerOut2` (or the first timeout again for 0).
    func take(first: Bool) -> Taken {
        let seconds = first || timeout2 == 0 ? (timeout == 0 ? profile.defaultTimeoutSeconds : Int(timeout)) : Int(timeout2)
        let limit = Duration.seconds(max(seconds, 1))
        let removed = { slot.insertionCount != insertion }
        guard let (entry, waited) = slot.keypad.next(within: limit, abandon: { removed() || abandon() }) else {
            if removed() { return .failed(.card(.cardRemoved(reader: slot.info.name))) }
            if abandon() { return .failed(.card(.cancelled)) }
            return .status(PINPadStatus.timeout.statusWord.bytes)
        }
        // An entry typed later than the prompt allows is a timeout; otherwise wait until it is typed.
        func waitUntil(_ after: Duration) -> Taken? {
            let left = limit - waited
            if after > left {
                PadSession.sleep(left)
                return .status(PINPadStatus.timeout.statusWord.bytes)
            }
            PadSession.sleep(after)
            if removed() { return .failed(.card(.cardRemoved(reader: slot.info.name))) }
            return abandon() ? .failed(.card(.cancelled)) : nil
        }
        switch entry {
        case .timeout:
            return .status(PINPadStatus.timeout.statusWord.bytes)
        case .cancel(let after):
            return waitUntil(after) ?? .status(PINPadStatus.cancelled.statusWord.bytes)
        case .digits(let d, let after):
            if let outcome = waitUntil(after) { return outcome }
            guard (minimum...maximum).contains(d.count) else { return .status(PINPadStatus.lengthOutOfRange.statusWord.bytes) }
            return .typed(d)
        }
    }

    /// Sends the command the reader built, unless the card changed while the PIN was typed.
    func send(_ command: [UInt8]) -> Result<[UInt8], PINPadFailure> {
        if let failure = checkCard() { return .failure(failure) }
        if abandon() { return .failure(.card(.cancelled)) }
        switch slot.transmitWithFaults(command, viaPad: true) {
        case .answer(let r, let delay):
            if let delay { PadSession.sleep(delay) }  // a slow card is slow under the pad too
            return .success(r)
        case .noAnswer(let delay):
            if let delay { PadSession.sleep(delay) }
            return .failure(.card(.cardMute(reader: slot.info.name, timeout: delay ?? .zero)))
        case .failure(let e): return .failure(.card(e))
        }
    }

    static func sleep(_ d: Duration) {
        // One call: Thread.sleep takes any length (usleep, used before, stopped below one second).
        guard d > .zero else { return }
        let (s, attoseconds) = d.components
        Thread.sleep(forTimeInterval: Double(s) + Double(attoseconds) / 1e18)
    }
}

extension SimulatedConnection: PINPadTransport {
    /// The pad of the slot's reader, as host software sees it (`nil` without one or when it is not announced).
    public func pinPadCapabilities() async throws(CardError) -> PINPadCapabilities? {
        slot.pinPad?.capabilities
    }

    /// Runs ``VirtualSlot/verifyOnPad(_:)`` on a thread of its own (the keypad waits block).
    public func verifyPINOnPad(_ structure: PINVerifyStructure) async throws(CardError) -> [UInt8] {
        try await onPad { $0.verifyOnPad(structure.encoded, insertion: $1) }
    }

    /// Runs ``VirtualSlot/modifyOnPad(_:)`` on a thread of its own.
    public func modifyPINOnPad(_ structure: PINModifyStructure) async throws(CardError) -> [UInt8] {
        try await onPad { $0.modifyOnPad(structure.encoded, insertion: $1) }
    }

    private func onPad(_ body: @escaping @Sendable (VirtualSlot, Int) -> Result<[UInt8], PINPadFailure>) async throws(CardError) -> [UInt8] {
        let insertion = try checkUsable()
        guard slot.pinPad?.capabilities != nil else { throw .unsupported("reader \"\(slot.info.name)\" has no PIN pad") }
        let slot = self.slot
        // The keypad wait runs on a thread of its own and does not see task cancellation: a
        // caller's deadline takes effect once the reader answers.
        let result = await runOnOwnThread { body(slot, insertion) }
        switch result {
        case .success(let r): return r
        case .failure(.card(let e)): throw e
        case .failure(let f): throw .unsupported(f.description)
        }
    }
}

/// Runs `body` on a new detached thread and returns its result (keeps blocking work off the
/// cooperative pool).
func runOnOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    return await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
