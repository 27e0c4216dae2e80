import CarteCore
internal import CPCSCLite
import Foundation
import Logging
import Synchronization

/// Turns `SCardGetStatusChange` into ``ReaderEvent``s.
///
/// One dedicated thread and context per stream. Each round lists the readers (reader arrivals and
/// departures between two waits are found by the difference), then waits on every reader plus the
/// `\\?PnP?\Notification` pseudo-reader. The per-reader event counter (upper 16 bits of
/// `dwEventState`) catches a card removed and reinserted between two waits. When pcscd goes away,
/// every reader is reported removed; the monitor re-establishes its context every 250 ms and reports
/// the readers again when pcscd is back. Ending the stream cancels the wait with `SCardCancel`.
enum PCSCEventMonitor {
    static func stream(logger: Logger, backend: PCSCBackend) -> AsyncStream<ReaderEvent> {
        let (stream, continuation) = AsyncStream<ReaderEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let monitor = Monitor(continuation: continuation, logger: logger, backend: backend)
        continuation.onTermination = { _ in monitor.stop() }
        PCSCExitGuard.register(monitor) { [weak monitor] in monitor?.stop() }
        monitor.context.worker.enqueue { monitor.run() }
        return stream
    }

    final class Monitor: Sendable {
        let context = PCSCContext(name: "cartekit.pcsc.events")
        let continuation: AsyncStream<ReaderEvent>.Continuation
        let logger: Logger
        /// Told when a reader goes away, so its cached attributes are read again if it comes back.
        weak let backend: PCSCBackend?
        private let stopped = Mutex(false)

        init(continuation: AsyncStream<ReaderEvent>.Continuation, logger: Logger, backend: PCSCBackend) {
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
            var state: DWORD
        }

        /// The loop; runs on the monitor's worker thread until the stream ends.
        func run() {
            var known: [String: Known] = [:]
            var names: [String] = []
            var pnpState: DWORD = DWORD(SCARD_STATE_UNAWARE)
            var first = true
            defer {
                context.drop()
                PCSCExitGuard.unregister(self)
                continuation.finish()
            }
            while !isStopped {
                let ctx: SCARDCONTEXT
                switch context.ensure() {
                case .success(let c): ctx = c
                case .failure(let e):
                    if !known.isEmpty { logger.debug("pcscd unavailable (\(e.name)); reporting readers removed") }
                    reportAllRemoved(&known, &names)
                    pause()
                    continue
                }
                // Readers now, and the difference with the last round.
                let current: [String]
                switch listReaders(ctx) {
                case .success(let list): current = list
                case .failure(let e):
                    if e.meansServiceGone {
                        context.drop()
                        reportAllRemoved(&known, &names)
                        pnpState = DWORD(SCARD_STATE_UNAWARE)
                        pause()
                    } else {
                        logger.debug("SCardListReaders failed: \(e)")
                        pause()
                    }
                    continue
                }
                for gone in names where !current.contains(gone) {
                    backend?.forgetAttributes(of: gone)
                    if let k = known.removeValue(forKey: gone), k.state & DWORD(SCARD_STATE_PRESENT) != 0 {
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
                        if case .success(let a) = readReaderAttributes(ctx, added) { attributes = a } else { attributes = nil }
                        continuation.yield(.readerAdded(PCSCBackend.info(name: added, all: current, attributes: attributes)))
                    }
                    known[added] = Known(state: DWORD(SCARD_STATE_UNAWARE))
                }
                names = current

                // Wait for a change on any reader or on the reader list.
                let all = [PCSCBackend.pnpNotification] + names
                let cNames = all.map { strdup($0) }
                defer { cNames.forEach { free($0) } }
                var states = [SCARD_READERSTATE](repeating: SCARD_READERSTATE(), count: all.count)
                for i in states.indices {
                    states[i].szReader = UnsafePointer(cNames[i])
                    states[i].dwCurrentState = i == 0 ? pnpState : known[all[i]]?.state ?? DWORD(SCARD_STATE_UNAWARE)
                }
                // A bounded wait: SCardCancel only interrupts a wait already in progress, so a stop
                // requested just before this call is seen within a second.
                let rv = SCardGetStatusChange(ctx, first ? 0 : 1_000, &states, DWORD(states.count))
                let error = check(rv)
                if let error {
                    if error == .cancelled || error == .timeout {
                        if first { first = false }
                        continue
                    }
                    if error == .unknownReader { continue }
                    if error.meansServiceGone {
                        context.drop()
                        reportAllRemoved(&known, &names)
                        pnpState = DWORD(SCARD_STATE_UNAWARE)
                        pause()
                        continue
                    }
                    logger.debug("SCardGetStatusChange failed: \(error)")
                    pause()
                    continue
                }
                pnpState = states[0].dwEventState & ~DWORD(SCARD_STATE_CHANGED)
                for i in 1..<states.count {
                    let name = all[i]
                    let new = states[i].dwEventState
                    let old = known[name]?.state ?? DWORD(SCARD_STATE_UNAWARE)
                    if new & DWORD(SCARD_STATE_UNKNOWN) != 0 { continue }  // gone: next listing reports it
                    if !first { report(name: name, old: old, new: new, atr: ATR.removingPadding(withUnsafeBytes(of: states[i].rgbAtr) { Array($0.prefix(Int(states[i].cbAtr))) }).atr) }
                    known[name] = Known(state: new & ~DWORD(SCARD_STATE_CHANGED))
                }
                first = false
            }
        }

        /// Emits the card events implied by a state change of one reader.
        func report(name: String, old: DWORD, new: DWORD, atr: [UInt8]) {
            let present = DWORD(SCARD_STATE_PRESENT)
            let mute = DWORD(SCARD_STATE_MUTE)
            let wasPresent = old & present != 0
            let isPresent = new & present != 0
            let counterChanged = old != DWORD(SCARD_STATE_UNAWARE) && (old >> 16) != (new >> 16)
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
                if let k = known[name], k.state & DWORD(SCARD_STATE_PRESENT) != 0 {
                    continuation.yield(.cardRemoved(reader: name))
                }
                continuation.yield(.readerRemoved(name: name))
            }
            known = [:]
            names = []
        }

        /// Sleeps a quarter of a second, waking early when the stream ends.
        func pause() {
            for _ in 0..<25 where !isStopped { usleep(10_000) }
        }
    }
}
