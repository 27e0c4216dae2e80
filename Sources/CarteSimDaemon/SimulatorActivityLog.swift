public import CarteEmulator
import CarteCore
import Foundation

/// The simulator daemon's record of what its readers do, for consoles and bug reports: a numbered
/// event log (APDU exchanges, power-ups, changes of what a slot holds or is armed with) that control
/// clients read with the `events` request, waiting for new events if they like (long polling), and
/// per slot the exchanges with the card inserted now, which the `trace` request returns for a replay
/// image. Secrets never enter it (the backend removes them before reporting an exchange).
///
/// The log keeps at least the newest ``eventCapacity`` events (at most twice that: it is trimmed a
/// capacity at a time, so recording stays O(1)); a client that asks for older ones is told how many it
/// lost. A slot keeps at least the newest ``sessionCapacity`` exchanges of its card, the same way.
public final class SimulatorActivityLog: @unchecked Sendable {
    /// Events kept at least for `events` requests.
    public static let eventCapacity = 4096
    /// Exchanges kept at least per card for `trace` requests.
    public static let sessionCapacity = 10_000
    /// The longest an `events` request may wait, in milliseconds.
    public static let maximumWaitMilliseconds = 60_000
    /// The most events one `events` answer carries.
    public static let maximumBatch = 1000
    /// About the most bytes of JSON one `events` or `trace` answer carries (at least one event or
    /// exchange), well under the protocol's 1 MiB frame: a trace is read in pages.
    public static let answerBudget = 512 * 1024
    /// About the most bytes of APDUs kept per card (besides ``sessionCapacity``) and in the events.
    public static let byteCapacity = 16 * 1024 * 1024
    /// This log's run: a new daemon numbers its events from 1 again, and a client that sees another
    /// run starts over.
    public let run: String = (0..<8).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()

    /// One numbered event.
    struct Entry {
        let sequence: Int
        /// Milliseconds since 1970 (UTC).
        let at: Int64
        let kind: Kind
    }

    enum Kind {
        case exchange(SlotExchange)
        case power(slot: String, insertion: Int, atr: [UInt8])
        /// `what`: inserted, removed, mute, reader-added, reader-removed, faults, keypad, pad-waiting, pad-done.
        case changed(slot: String?, what: String)
    }

    /// The card a slot holds, as its exchanges show it.
    struct Session {
        var insertion: Int
        var atr: [UInt8]?
        var exchanges: [CardImage.Replay.Exchange] = []
        /// Bytes of APDUs in `exchanges`.
        var bytes = 0
        var dropped = 0
        var failed = 0
    }

    // Guarded by `condition`.
    private var events: [Entry] = []
    /// Bytes of APDUs in `events`.
    private var eventBytes = 0
    private var nextSequence = 1
    private var sessions: [String: Session] = [:]
    private var waitingPads: Set<String> = []
    private var closed = false
    private let condition = NSCondition()

    /// An empty log; ``attach(to:)`` makes it record a backend.
    public init() {}

    /// Records what `backend`'s readers do from now on.
    public func attach(to backend: SimulatorBackend) {
        backend.observe { [weak self] activity in self?.record(activity) }
    }

    /// Records a change the backend does not report itself (keypad entries typed by a control client).
    public func noteChange(slot: String?, what: String) {
        append(.changed(slot: slot, what: what))
    }

    /// Wakes every waiting `events` request and makes later ones return at once (the daemon stops).
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// The sequence number the next event will get.
    public var next: Int {
        condition.lock()
        defer { condition.unlock() }
        return nextSequence
    }

    /// Whether the PIN pad of `slot` is waiting for a PIN now.
    public func padWaiting(_ slot: String) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return waitingPads.contains(slot)
    }

    /// How many exchanges the card in `slot` had (those kept and those dropped).
    public func exchangeCount(_ slot: String) -> Int {
        condition.lock()
        defer { condition.unlock() }
        return sessions[slot].map { $0.exchanges.count + $0.dropped + $0.failed } ?? 0
    }

    func record(_ activity: SlotActivity) {
        switch activity {
        case .exchange(let e):
            append(.exchange(e)) { log in
                log.withSession(e.slot, insertion: e.insertion) { session in
                    guard let response = e.response else {
                        session.failed += 1
                        return
                    }
                    session.exchanges.append(CardImage.Replay.Exchange(command: e.command, response: response,
                                                                       milliseconds: (e.elapsed.milliseconds * 1000).rounded() / 1000))
                    session.bytes += e.command.count + response.count
                    // Trimmed by half at a time (amortised O(1) per exchange) when over the count or the bytes.
                    if session.exchanges.count >= 2 * SimulatorActivityLog.sessionCapacity || session.bytes > SimulatorActivityLog.byteCapacity {
                        let drop = session.exchanges.count / 2
                        session.bytes -= session.exchanges[..<drop].reduce(0) { $0 + $1.command.count + $1.response.count }
                        session.exchanges.removeFirst(drop)
                        session.dropped += drop
                    }
                }
            }
        case .poweredUp(let slot, let insertion, let atr):
            append(.power(slot: slot, insertion: insertion, atr: atr)) { log in
                log.withSession(slot, insertion: insertion) { $0.atr = atr }
            }
        case .padPrompt(let slot, let waiting):
            append(.changed(slot: slot, what: waiting ? "pad-waiting" : "pad-done")) { log in
                if waiting { log.waitingPads.insert(slot) } else { log.waitingPads.remove(slot) }
            }
        case .faultsChanged(let slot):
            append(.changed(slot: slot, what: "faults"))
        case .readerEvent(let event):
            switch event {
            case .readerAdded(let info): append(.changed(slot: info.name, what: "reader-added"))
            case .readerRemoved(let name): append(.changed(slot: name, what: "reader-removed")) { $0.sessions[name] = nil }
            case .cardInserted(let name, _): append(.changed(slot: name, what: "inserted"))
            case .cardRemoved(let name): append(.changed(slot: name, what: "removed"))
            case .cardMute(let name): append(.changed(slot: name, what: "mute"))
            }
        }
    }

    /// Runs `body` on the session of `slot` for the card of `insertion` (a new one when the card
    /// changed), in place (no copy of its exchanges). Under the lock.
    private func withSession(_ slot: String, insertion: Int, _ body: (inout Session) -> Void) {
        if sessions[slot]?.insertion != insertion { sessions[slot] = Session(insertion: insertion) }
        body(&sessions[slot]!)
    }

    private func append(_ kind: Kind, also: (SimulatorActivityLog) -> Void = { _ in }) {
        let at = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        condition.lock()
        events.append(Entry(sequence: nextSequence, at: at, kind: kind))
        eventBytes += SimulatorActivityLog.apduBytes(kind)
        nextSequence += 1
        // Trimmed by half at a time (amortised O(1) per event) when over twice the count or over the bytes.
        if events.count >= 2 * SimulatorActivityLog.eventCapacity || eventBytes > SimulatorActivityLog.byteCapacity {
            let drop = events.count / 2
            eventBytes -= events[..<drop].reduce(0) { $0 + SimulatorActivityLog.apduBytes($1.kind) }
            events.removeFirst(drop)
        }
        also(self)
        condition.broadcast()
        condition.unlock()
    }

    /// The bytes of APDU an event holds.
    static func apduBytes(_ kind: Kind) -> Int {
        if case .exchange(let e) = kind { return e.command.count + (e.response?.count ?? 0) }
        return 0
    }

    /// About the bytes of an event's JSON (hexadecimal is 3 characters a byte).
    static func jsonBytes(_ kind: Kind) -> Int { 3 * apduBytes(kind) + 400 }

    /// The events numbered `since` and after (at most `limit`, and about ``answerBudget`` bytes of
    /// JSON, at least one), waiting up to `waitMilliseconds` for the first when there is none yet;
    /// with the number to ask from next time and how many of those asked for were already dropped.
    func events(since: Int, limit: Int, waitMilliseconds: Int) -> (events: [Entry], next: Int, lost: Int) {
        let deadline = Date(timeIntervalSinceNow: Double(waitMilliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        // A client that asks past the end (the daemon restarted) starts again from what is kept.
        var from = since > nextSequence ? 0 : since
        while from >= nextSequence && !closed {
            if !condition.wait(until: deadline) { break }
        }
        let oldest = events.first?.sequence ?? nextSequence
        let lost = from > 0 && from < oldest ? oldest - from : 0
        from = max(from, oldest)
        let start = events.firstIndex { $0.sequence >= from } ?? events.count
        var end = start
        var bytes = 0
        while end < events.count, end - start < limit {
            bytes += SimulatorActivityLog.jsonBytes(events[end].kind)
            if end > start && bytes > SimulatorActivityLog.answerBudget { break }
            end += 1
        }
        let batch = Array(events[start..<end])
        return (batch, batch.last.map { $0.sequence + 1 } ?? max(from, nextSequence), lost)
    }

    /// A page of the exchanges with the card in `slot` (since it was inserted): those from the
    /// `from`-th kept on (about `budget` bytes of JSON, at least one), the index of the next
    /// page (`nil` after the last), the card's ATR when it was powered up, how many older exchanges
    /// were dropped and how many got no answer (not replayable).
    func trace(_ slot: String, insertion: Int, from: Int, budget: Int = answerBudget) -> (exchanges: [CardImage.Replay.Exchange], next: Int?, atr: [UInt8]?, dropped: Int, failed: Int) {
        condition.lock()
        defer { condition.unlock() }
        guard let s = sessions[slot], s.insertion == insertion else { return ([], nil, nil, 0, 0) }
        let start = min(max(from, 0), s.exchanges.count)
        var end = start
        var bytes = 0
        while end < s.exchanges.count {
            bytes += 3 * (s.exchanges[end].command.count + s.exchanges[end].response.count) + 100
            if end > start && bytes > budget { break }
            end += 1
        }
        return (Array(s.exchanges[start..<end]), end < s.exchanges.count ? end : nil, s.atr, s.dropped, s.failed)
    }

    /// An event as the `events` request answers it (docs/simulator.md, "The activity log").
    static func json(_ entry: Entry) -> [String: Any] {
        var out: [String: Any] = ["seq": entry.sequence, "at": entry.at]
        switch entry.kind {
        case .exchange(let e):
            out["type"] = "exchange"
            out["slot"] = e.slot
            out["insertion"] = e.insertion
            out["command"] = CardImage.Replay.Exchange.text(of: e.command)
            out["redacted"] = e.isRedacted
            out["viaPad"] = e.viaPad
            out["ms"] = (e.elapsed.milliseconds * 1000).rounded() / 1000
            if let r = e.response, r.count >= 2 {
                let sw = StatusWord(sw1: r[r.count - 2], sw2: r[r.count - 1])
                out["response"] = r.hexString(separator: " ")
                out["sw"] = Array(r.suffix(2)).hexString(separator: "")
                out["meaning"] = sw.meaning
            } else {
                out["response"] = e.response.map { $0.hexString(separator: " ") as Any } ?? NSNull()
                out["sw"] = NSNull()
                out["meaning"] = NSNull()
            }
            out["failure"] = e.failure.map { $0 as Any } ?? NSNull()
        case .power(let slot, let insertion, let atr):
            out["type"] = "power"
            out["slot"] = slot
            out["insertion"] = insertion
            out["atr"] = atr.hexString()
        case .changed(let slot, let what):
            out["type"] = "changed"
            out["slot"] = slot.map { $0 as Any } ?? NSNull()
            out["what"] = what
        }
        return out
    }
}
