package import CarteCore
import Foundation

/// `SCardTransmit` called in a loop on the caller's thread through the loaded library, with nothing of
/// CarteKit's in between: the reference `carte bench pcsc` measures CarteKit's own paths against.
/// Blocking: call it from a thread of its own, never from the cooperative pool.
package final class PCSCRawExchange {
    private let provider: any PCSCProvider
    private let context: UInt64
    private let card: UInt64
    private let activeProtocol: UInt32
    private var response = [UInt8](repeating: 0, count: maxBufferSizeExtended)

    /// Connects (shared) to the card in `reader` with a context of its own.
    package init(reader: String) throws(CardError) {
        switch PCSCProviders.system {
        case .success(let p): provider = p
        case .failure(let e): throw e.cardError
        }
        switch provider.establishContext() {
        case .success(let c): context = c
        case .failure(let e): throw e.cardError(reader: reader)
        }
        switch provider.connect(context, reader: reader, share: SCard.shareShared, protocols: SCard.protocolT0 | SCard.protocolT1) {
        case .success(let c): (card, activeProtocol) = (c.card, c.activeProtocol)
        case .failure(let e):
            _ = provider.releaseContext(context)
            throw e.cardError(reader: reader)
        }
    }

    deinit {
        _ = provider.disconnect(card, disposition: SCard.leaveCard)
        _ = provider.releaseContext(context)
    }

    /// Sends `command` `count` times; each round trip's time in microseconds.
    package func roundTrips(_ command: [UInt8], count: Int) throws(CardError) -> [Double] {
        let clock = ContinuousClock()
        var times: [Double] = []
        times.reserveCapacity(count)
        for _ in 0..<count {
            let start = clock.now
            let result = command.withUnsafeBytes { tx in
                response.withUnsafeMutableBytes { rx in provider.transmit(card, protocol: activeProtocol, command: tx, response: rx) }
            }
            let elapsed = clock.now - start
            if case .failure(let e) = result { throw e.cardError(reader: "") }
            let (seconds, attoseconds) = elapsed.components
            times.append(Double(seconds) * 1e6 + Double(attoseconds) / 1e12)
        }
        return times
    }
}
