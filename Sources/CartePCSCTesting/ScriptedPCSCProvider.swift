package import CartePCSC
import Foundation
import Synchronization
#if os(Windows)
import WinSDK
#endif

/// A PC/SC resource manager in memory that behaves as one platform's does, for testing on Linux what
/// CartePCSC does on Windows and macOS (and, for reference, on Linux).
///
/// It plays, from ``CartePCSC/PCSCBehaviour`` and ``CartePCSC/PCSCABI``:
/// - **pcsc-lite**: `\\?PnP?\Notification` whose event state's upper word counts reader events;
///   reader states whose upper word counts card events; `SCARD_W_REMOVED_CARD` after a removal or swap;
///   `SCARD_E_INSUFFICIENT_BUFFER` for a response longer than the buffer.
/// - **Windows**: the notification reader returns at once unless the upper word of its current state
///   holds the number of readers; the service stops when the last reader leaves (the old contexts get
///   `SCARD_E_SERVICE_STOPPED`, a new one `SCARD_E_NO_SERVICE`) and starts with the next reader;
///   `SCARD_E_UNSUPPORTED_FEATURE` numbered `0x80100022`.
/// - **macOS**: no notification reader (`SCARD_E_UNKNOWN_READER` if asked), no event counter;
///   `SCARD_W_RESET_CARD` after a card swap; a response longer than the buffer cut to it without an error.
///
/// Tests change the world (``plugReader(_:)``, ``insert(_:into:)``, ``remove(from:)``, ``swap(_:into:)``,
/// ``resetByAnotherProgram(_:)``, ``unplugReader(_:)``) from any thread; waiting calls wake up.
/// Codes are returned in the platform's numbering and normalised by the ABI description, as the
/// loaded library's are.
package final class ScriptedPCSCProvider: PCSCProvider, @unchecked Sendable {
    package let abi: PCSCABI
    package let behaviour: PCSCBehaviour

    /// A card: its ATR and how it answers.
    package struct Card: Sendable {
        package var atr: [UInt8]
        package var respond: @Sendable ([UInt8]) -> [UInt8]

        package init(atr: [UInt8], respond: @escaping @Sendable ([UInt8]) -> [UInt8]) {
            self.atr = atr
            self.respond = respond
        }
    }

    /// What the provider saw, for the tests' assertions.
    package struct Record: Sendable {
        /// `SCardListReaders` calls.
        package var listCalls = 0
        /// `SCardGetStatusChange` calls.
        package var statusCalls = 0
        /// Calls that named `\\?PnP?\Notification`.
        package var pnpCalls = 0
        /// Windows: calls whose notification entry did not carry the reader count (they return at once).
        package var pnpCountMismatches = 0
        /// Contexts refused with `SCARD_E_NO_SERVICE` while the service was stopped.
        package var refusedContexts = 0
        /// Calls on a context of a stopped service (`SCARD_E_SERVICE_STOPPED`).
        package var stoppedContextCalls = 0
        /// Responses cut to the buffer (macOS).
        package var truncatedResponses = 0
        /// Exchanges refused with `SCARD_W_RESET_CARD`.
        package var resetAnswers = 0
        /// The threads `SCardTransmit` was called on (each once).
        package var transmitThreads: [UInt] = []
    }

    private struct Reader {
        var name: String
        var card: Card?
        /// Counts insertions and removals (pcsc-lite and Windows put it in the upper word).
        var events: UInt32 = 0
        /// Changes with every card put in, so a handle knows its card is gone.
        var generation = 0
        var resets = 0
    }

    private struct Handle {
        var context: UInt64
        var reader: String
        var generation: Int
        var resets: Int
        var activeProtocol: UInt32
    }

    private struct World {
        var readers: [Reader] = []
        /// Upper word of the notification reader's state on pcsc-lite: reader arrivals and departures.
        var readerEvents: UInt32 = 0
        var running = true
        /// Contexts of an earlier run of the service are stale.
        var serviceRun = 1
        var contexts: [UInt64: Int] = [:]
        var cancelled: Set<UInt64> = []
        var handles: [UInt64: Handle] = [:]
        var next: UInt64 = 0x1000
        var record = Record()
    }

    private let condition = NSCondition()
    private var world = World()

    /// A manager playing `platform`'s behaviour; `waitMilliseconds` shortens the event monitor's rounds.
    package init(platform: PCSCPlatform, waitMilliseconds: UInt32 = 100) {
        abi = platform.abi
        var b = platform.behaviour
        b.waitMilliseconds = waitMilliseconds
        behaviour = b
        // Windows's service does not run while no reader is there.
        world.running = !b.serviceStopsWithLastReader
    }

    /// What the provider saw so far.
    package var record: Record { locked { $0.record } }

    // MARK: Changing the world

    package func plugReader(_ name: String) {
        change { w in
            if !w.running { w.running = true }  // a reader starts a stopped service
            w.readers.append(Reader(name: name))
            w.readerEvents &+= 1
        }
    }

    package func unplugReader(_ name: String) {
        change { w in
            w.readers.removeAll { $0.name == name }
            w.readerEvents &+= 1
            if w.readers.isEmpty && behaviour.serviceStopsWithLastReader {
                w.running = false
                w.serviceRun += 1
            }
        }
    }

    package func insert(_ card: Card, into reader: String) {
        changeReader(reader) { r in
            r.card = card
            r.events &+= 1
            r.generation += 1
        }
    }

    package func remove(from reader: String) {
        changeReader(reader) { r in
            r.card = nil
            r.events &+= 1
        }
    }

    /// Another card in place of the one there, faster than the state can be watched.
    package func swap(_ card: Card, into reader: String) {
        changeReader(reader) { r in
            r.card = card
            r.events &+= 2
            r.generation += 1
        }
    }

    /// Another program resets the card (its handles get `SCARD_W_RESET_CARD` once).
    package func resetByAnotherProgram(_ reader: String) {
        changeReader(reader) { $0.resets += 1 }
    }

    /// Changes the reader named `name` (nothing when there is none) and wakes the waiting calls.
    private func changeReader(_ name: String, _ body: (inout Reader) -> Void) {
        change { w in
            guard let i = w.readers.firstIndex(where: { $0.name == name }) else { return }
            body(&w.readers[i])
        }
    }

    /// The calling thread, as a number (pthread_t is an integer on Linux, a pointer on Darwin).
    package static var currentThread: UInt {
        #if canImport(Darwin)
        return UInt(bitPattern: pthread_self())
        #elseif os(Windows)
        return UInt(GetCurrentThreadId())
        #else
        return UInt(pthread_self())
        #endif
    }

    private func change(_ body: (inout World) -> Void) {
        condition.lock()
        body(&world)
        condition.broadcast()
        condition.unlock()
    }

    private func locked<T>(_ body: (inout World) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(&world)
    }

    // MARK: Codes in the platform's numbering

    private func fail(_ e: PCSCError) -> PCSCError {
        // Returned as the library would (Windows numbers this one differently), then normalised as the loader does.
        let native = e == .unsupportedFeature ? abi.unsupportedFeatureCode : e.rawValue
        return PCSCError(rawValue: abi.normalise(Int64(Int32(bitPattern: native))))
    }

    /// The context is valid (`nil`) or why not. Lock held.
    private func checkContext(_ context: UInt64, _ w: inout World) -> PCSCError? {
        guard let run = w.contexts[context] else { return fail(.invalidHandle) }
        if run != w.serviceRun || !w.running {
            w.record.stoppedContextCalls += 1
            return fail(.serviceStopped)
        }
        return nil
    }

    private func readerWord(_ r: Reader) -> UInt32 {
        let counter: UInt32 = abi.platform == .macOS ? 0 : (r.events & 0xFFFF) << 16
        return counter | (r.card == nil ? 0x0010 /* EMPTY */ : 0x0020 /* PRESENT */)
    }

    // MARK: PCSCProvider

    package func establishContext() -> Result<UInt64, PCSCError> {
        locked { w in
            guard w.running else {
                w.record.refusedContexts += 1
                return .failure(fail(.noService))
            }
            w.next += 1
            w.contexts[w.next] = w.serviceRun
            return .success(w.next)
        }
    }

    package func releaseContext(_ context: UInt64) -> PCSCError? {
        locked { w in w.contexts.removeValue(forKey: context) == nil ? fail(.invalidHandle) : nil }
    }

    package func cancel(_ context: UInt64) -> PCSCError? {
        change { w in _ = w.cancelled.insert(context) }
        return nil
    }

    package func listReaders(_ context: UInt64) -> Result<[String], PCSCError> {
        locked { w in
            w.record.listCalls += 1
            if let e = checkContext(context, &w) { return .failure(e) }
            if w.readers.isEmpty { return .failure(fail(.noReadersAvailable)) }
            return .success(w.readers.map(\.name))
        }
    }

    package func getStatusChange(_ context: UInt64, timeoutMilliseconds: UInt32, _ states: inout [PCSCReaderState]) -> PCSCError? {
        condition.lock()
        defer { condition.unlock() }
        world.record.statusCalls += 1
        let pnp = PCSCBackend.pnpNotification
        if states.contains(where: { $0.reader == pnp }) { world.record.pnpCalls += 1 }
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMilliseconds) / 1000)
        while true {
            if let e = checkContext(context, &world) { return e }
            if world.cancelled.remove(context) != nil { return fail(.cancelled) }
            var changed = false
            for i in states.indices {
                let entry = states[i]
                let word: UInt32
                if entry.reader == pnp {
                    switch behaviour.plugAndPlay {
                    case .polling:
                        return fail(.unknownReader)  // macOS has no notification reader
                    case .readerCount:
                        word = UInt32(world.readers.count) << 16
                        if entry.currentState >> 16 != word >> 16 {
                            world.record.pnpCountMismatches += 1
                            changed = true
                        }
                    case .eventCounter:
                        word = (world.readerEvents & 0xFFFF) << 16
                        if entry.currentState != word { changed = true }
                    }
                    states[i].eventState = word | (changed ? 0x0002 : 0)
                    continue
                }
                guard let reader = world.readers.first(where: { $0.name == entry.reader }) else {
                    states[i].eventState = 0x0004 | 0x0002  // UNKNOWN | CHANGED
                    changed = true
                    continue
                }
                let readerState = readerWord(reader)
                let differs = entry.currentState == 0 || entry.currentState & ~0x0002 != readerState
                states[i].eventState = readerState | (differs ? 0x0002 : 0)
                states[i].atr = reader.card?.atr ?? []
                if differs { changed = true }
            }
            if changed { return nil }
            if timeoutMilliseconds == 0 || !condition.wait(until: deadline) { return fail(.timeout) }
        }
    }

    package func connect(_ context: UInt64, reader: String, share: UInt32, protocols: UInt32) -> Result<(card: UInt64, activeProtocol: UInt32), PCSCError> {
        locked { w in
            if let e = checkContext(context, &w) { return .failure(e) }
            guard let r = w.readers.first(where: { $0.name == reader }) else { return .failure(fail(.unknownReader)) }
            if share != 3 /* DIRECT */ && r.card == nil { return .failure(fail(.noSmartcard)) }
            w.next += 1
            let active: UInt32 = share == 3 ? 0 : 2
            w.handles[w.next] = Handle(context: context, reader: reader, generation: r.generation, resets: r.resets, activeProtocol: active)
            return .success((w.next, active))
        }
    }

    /// The handle's card is still the one it connected to (`nil`), or the error this platform gives. Lock held.
    private func checkCard(_ card: UInt64, _ w: inout World) -> PCSCError? {
        guard let h = w.handles[card] else { return fail(.invalidHandle) }
        if let e = checkContext(h.context, &w) { return e }
        guard let r = w.readers.first(where: { $0.name == h.reader }) else { return fail(.readerUnavailable) }
        guard r.card != nil else { return fail(.removedCard) }
        if r.generation != h.generation {
            // A swap: macOS says "reset", the others "removed".
            if behaviour.resetMayMeanSwap {
                w.record.resetAnswers += 1
                return fail(.resetCard)
            }
            return fail(.removedCard)
        }
        if r.resets != h.resets {
            w.handles[card]?.resets = r.resets
            w.record.resetAnswers += 1
            return fail(.resetCard)
        }
        return nil
    }

    package func reconnect(_ card: UInt64, share: UInt32, protocols: UInt32, initialization: UInt32) -> Result<UInt32, PCSCError> {
        locked { w in
            guard let h = w.handles[card] else { return .failure(fail(.invalidHandle)) }
            if let e = checkContext(h.context, &w) { return .failure(e) }
            guard let r = w.readers.first(where: { $0.name == h.reader }), r.card != nil else { return .failure(fail(.noSmartcard)) }
            w.handles[card]?.generation = r.generation
            w.handles[card]?.resets = r.resets
            return .success(2)
        }
    }

    package func disconnect(_ card: UInt64, disposition: UInt32) -> PCSCError? {
        locked { w in w.handles.removeValue(forKey: card) == nil ? fail(.invalidHandle) : nil }
    }

    package func beginTransaction(_ card: UInt64) -> PCSCError? { locked { w in checkCard(card, &w) } }

    package func endTransaction(_ card: UInt64, disposition: UInt32) -> PCSCError? {
        locked { w in w.handles[card] == nil ? fail(.invalidHandle) : nil }
    }

    package func transmit(_ card: UInt64, protocol: UInt32, command: UnsafeRawBufferPointer, response: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError> {
        let thread = ScriptedPCSCProvider.currentThread
        let checked: Result<Card, PCSCError> = locked { w in
            if !w.record.transmitThreads.contains(thread) { w.record.transmitThreads.append(thread) }
            if let e = checkCard(card, &w) { return .failure(e) }
            let h = w.handles[card]!
            guard let present = w.readers.first(where: { $0.name == h.reader })?.card else { return .failure(fail(.removedCard)) }
            return .success(present)
        }
        let responder: Card
        switch checked {
        case .success(let c): responder = c
        case .failure(let e): return .failure(e)
        }
        let answer = responder.respond(Array(command))
        if answer.count > response.count {
            guard behaviour.truncatesLongResponses else { return .failure(fail(.insufficientBuffer)) }
            locked { $0.record.truncatedResponses += 1 }
            response.copyBytes(from: answer.prefix(response.count))
            return .success(response.count)
        }
        response.copyBytes(from: answer)
        return .success(answer.count)
    }

    package func control(_ card: UInt64, code: UInt32, input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer) -> Result<Int, PCSCError> {
        locked { w in
            guard w.handles[card] != nil else { return .failure(fail(.invalidHandle)) }
            // No part 10 feature: an empty list for the feature request, the platform's "unsupported" otherwise.
            return code == abi.getFeatureRequest ? .success(0) : .failure(fail(.unsupportedFeature))
        }
    }

    package func status(_ card: UInt64) -> Result<PCSCCardStatus, PCSCError> {
        locked { w in
            if let e = checkCard(card, &w) { return .failure(e) }
            let h = w.handles[card]!
            let atr = w.readers.first(where: { $0.name == h.reader })?.card?.atr ?? []
            return .success(PCSCCardStatus(state: abi.normaliseCardStatus(abi.statusIsEnumeration ? 6 : 0x40), activeProtocol: h.activeProtocol, atr: atr))
        }
    }

    package func attribute(_ card: UInt64, id: UInt32) -> Result<[UInt8], PCSCError> {
        locked { w in
            guard w.handles[card] != nil else { return .failure(fail(.invalidHandle)) }
            return .failure(fail(.unsupportedFeature))
        }
    }
}
