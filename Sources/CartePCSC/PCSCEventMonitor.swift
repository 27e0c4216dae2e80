import CarteCore
import Foundation
import Logging
import Synchronization

/// Turns `SCardGetStatusChange` into ``ReaderEvent``s.
///
/// One dedicated thread and context per stream. Each round lists the readers (reader arrivals and
/// departures between two waits are found by the difference), then waits on every reader plus, where
/// the platform has it, the `\\?PnP?\Notification` pseudo-reader (``PCSCBehaviour/plugAndPlay``:
/// pcsc-lite wants its previous event state back, Windows the number of readers in the upper word;
/// macOS has none, so the round's bounded wait is also the polling of `SCardListReaders`). The per-reader event counter (upper 16 bits of
/// `dwEventState`) catches a card removed and reinserted between two waits. When pcscd goes away,
/// every reader is reported removed; the monitor re-establishes its context every 250 ms and reports
/// the readers again when pcscd is back. Ending the stream cancels the wait with `SCardCancel`.
enum PCSCEventMonitor {
    static func stream(logger: Logger, backend: PCSCBackend) -> AsyncStream<ReaderEvent> {
        let (stream, continuation) = AsyncStream<ReaderEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let monitor = Monitor(continuation: continuation, logger: logger, backend: backend, provider: backend.provider)
        continuation.onTermination = { _ in monitor.stop() }
        PCSCExitGuard.register(monitor) { [weak monitor] in monitor?.stop() }
        monitor.context.worker.enqueue { monitor.run() }
        return stream
    }

    final class Monitor: Sendable {
        let context: PCSCContext
        let continuation: AsyncStream<ReaderEvent>.Continuation
        let logger: Logger
        /// Told when a reader goes away, so its cached attributes are read again if it comes back.
        weak let backend: PCSCBackend?
        private let stopped = Mutex(false)

        init(continuation: AsyncStream<ReaderEvent>.Continuation, logger: Logger, backend: PCSCBackend, provider: Result<any PCSCProvider, PCSCUnavailable>) {
            self.context = PCSCContext(name: "cartekit.pcsc.events", provider: provider)
            self.continuation = continuation
            self.logger = logger
            self.backend = backend
        }

        func stop() {
            stopped.withLock { $0 = true }
            context.cancel()
        }

        var isStopped: Bool { stopped.withLock { $0 } || PCSCExitGuard.isExiting }

        struct Known {
            var state: UInt32
        }

        /// The loop; runs on the monitor's worker thread until the stream ends.
        func run() {
            var known: [String: Known] = [:]
            var names: [String] = []
            var pnpState = SCard.stateUnaware
            var first = true
            defer {
                context.drop()
                PCSCExitGuard.unregister(self)
                continuation.finish()
            }
            while !isStopped {
                let provider: any PCSCProvider
                let ctx: UInt64
                switch context.ensure() {
                case .success(let (p, c)): (provider, ctx) = (p, c)
                case .failure(let e):
                    if !known.isEmpty { logger.debug("PC/SC service unavailable (\(e.name)); reporting readers removed") }
                    reportAllRemoved(&known, &names)
                    // No service, so no reader was there when the stream started: every reader seen
                    // once it runs (pcscd started later, Windows's service started by a reader) is new.
                    first = false
                    if e == .notInstalled {
                        logger.error("\(backend?.unavailability?.description ?? e.description)")
                        return
                    }
                    pause()
                    continue
                }
                let behaviour = provider.behaviour
                // Readers now, and the difference with the last round.
                let current: [String]
                switch listReaders(provider, ctx) {
                case .success(let list): current = list
                case .failure(let e):
                    if e.meansServiceGone {
                        context.drop()
                        reportAllRemoved(&known, &names)
                        pnpState = SCard.stateUnaware
                        pause()
                    } else {
                        logger.debug("SCardListReaders failed: \(e)")
                        pause()
                    }
                    continue
                }
                for gone in names where !current.contains(gone) {
                    backend?.forgetAttributes(of: gone)
                    if let k = known.removeValue(forKey: gone), k.state & SCard.statePresent != 0 {
                        continuation.yield(.cardRemoved(reader: gone))
                    }
                    continuation.yield(.readerRemoved(name: gone))
                }
                for added in current where !names.contains(added) {
                    // Only a reader plugged in after the stream started is announced, with its attributes.
                    // The readers already there are not read: their attribute reads (SCARD_SHARE_DIRECT
                    // handles) would race with the caller's own exclusive connections.
                    if !first {
                        let attributes: PCSCReaderAttributes?
                        if case .success(let a) = readReaderAttributes(provider, ctx, added) { attributes = a } else { attributes = nil }
                        continuation.yield(.readerAdded(PCSCBackend.info(name: added, all: current, attributes: attributes)))
                    }
                    known[added] = Known(state: SCard.stateUnaware)
                }
                names = current

                // Wait for a change on any reader or on the reader list.
                let withPnP = behaviour.plugAndPlay != .polling
                var states: [PCSCReaderState] = []
                if withPnP {
                    let pnpCurrent: UInt32
                    switch behaviour.plugAndPlay {
                    case .readerCount: pnpCurrent = UInt32(truncatingIfNeeded: names.count) << 16 | (pnpState & 0xFFFF)
                    default: pnpCurrent = pnpState
                    }
                    states.append(PCSCReaderState(reader: PCSCBackend.pnpNotification, currentState: pnpCurrent))
                }
                for name in names { states.append(PCSCReaderState(reader: name, currentState: known[name]?.state ?? SCard.stateUnaware)) }
                if states.isEmpty {
                    // Nothing to wait on (no reader, no notification reader): poll the list again later.
                    first = false
                    pause(milliseconds: behaviour.waitMilliseconds)
                    continue
                }
                // A bounded wait: SCardCancel only interrupts a wait already in progress, so a stop
                // requested just before this call is seen within a second.
                let error = provider.getStatusChange(ctx, timeoutMilliseconds: first ? 0 : behaviour.waitMilliseconds, &states)
                if let error {
                    if error == .cancelled || error == .timeout {
                        if first { first = false }
                        continue
                    }
                    if error == .unknownReader { continue }
                    if error.meansServiceGone {
                        context.drop()
                        reportAllRemoved(&known, &names)
                        pnpState = SCard.stateUnaware
                        pause()
                        continue
                    }
                    logger.debug("SCardGetStatusChange failed: \(error)")
                    pause()
                    continue
                }
                let readerStates = withPnP ? states.dropFirst() : states[...]
                if withPnP { pnpState = states[0].eventState & ~SCard.stateChanged }
                for entry in readerStates {
                    let name = entry.reader
                    let new = entry.eventState
                    let old = known[name]?.state ?? SCard.stateUnaware
                    if new & SCard.stateUnknown != 0 { continue }  // gone: next listing reports it
                    if !first { report(name: name, old: old, new: new, atr: ATR.removingPadding(entry.atr).atr) }
                    known[name] = Known(state: new & ~SCard.stateChanged)
                }
                first = false
            }
        }

        /// Emits the card events implied by a state change of one reader.
        func report(name: String, old: UInt32, new: UInt32, atr: [UInt8]) {
            let present = SCard.statePresent
            let mute = SCard.stateMute
            let wasPresent = old & present != 0
            let isPresent = new & present != 0
            let counterChanged = old != SCard.stateUnaware && (old >> 16) != (new >> 16)
            if wasPresent && isPresent && counterChanged {
                // Removed and reinserted between two waits.
                continuation.yield(.cardRemoved(reader: name))
                continuation.yield(new & mute != 0 ? .cardMute(reader: name) : .cardInserted(reader: name, atr: atr))
            } else if wasPresent && !isPresent {
                continuation.yield(.cardRemoved(reader: name))
            } else if !wasPresent && isPresent {
                continuation.yield(new & mute != 0 ? .cardMute(reader: name) : .cardInserted(reader: name, atr: atr))
            } else if isPresent && new & mute != 0 && old & mute == 0 {
                continuation.yield(.cardMute(reader: name))
            }
        }

        func reportAllRemoved(_ known: inout [String: Known], _ names: inout [String]) {
            for name in names {
                if let k = known[name], k.state & SCard.statePresent != 0 {
                    continuation.yield(.cardRemoved(reader: name))
                }
                continuation.yield(.readerRemoved(name: name))
            }
            known = [:]
            names = []
        }

        /// Sleeps (a quarter of a second by default), waking early when the stream ends.
        func pause(milliseconds: UInt32 = 250) {
            for _ in 0..<max(1, milliseconds / 10) where !isStopped { Thread.sleep(forTimeInterval: 0.010) }
        }
    }
}
