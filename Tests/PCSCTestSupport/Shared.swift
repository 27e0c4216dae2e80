import CarteCore
import CartePCSC
import Foundation

/// Reader names of the shared sandbox's daemon (bi-fente, mono-fente, contactless), as pcscd lists them.
package let biFente0 = "CarteKit Virtual Bi-fente 00 00"
package let biFente1 = "CarteKit Virtual Bi-fente 00 01"
package let monoFente = "CarteKit Virtual Mono-fente 01 00"
package let contactless = "CarteKit Virtual Contactless 02 00"
package let vitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45]

/// Collects a stream's events with one iterator for the stream's whole life (an `AsyncStream` ends
/// when its iterator goes away), and hands them to tests in order.
package final class EventCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ReaderEvent] = []
    private var consumed = 0
    private var pump: Task<Void, Never>?

    package init(_ stream: AsyncStream<ReaderEvent>) {
        pump = Task { [weak self] in
            for await event in stream { self?.append(event) }
        }
    }

    deinit { pump?.cancel() }

    private func append(_ event: ReaderEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    /// The next event (after those already returned) matching `match`, waiting up to `seconds`.
    package func next(seconds: Double = 10, where match: (ReaderEvent) -> Bool) async -> ReaderEvent? {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            let found: ReaderEvent? = {
                lock.lock()
                defer { lock.unlock() }
                guard let index = events[consumed...].firstIndex(where: match) else { return nil }
                consumed = index + 1
                return events[index]
            }()
            if let found { return found }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}


/// Polls `condition` every 20 ms for up to `seconds`.
package func waitUntil(_ what: String, seconds: Double = 15, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw PCSCSandbox.SandboxError("timed out waiting for \(what)")
}

/// Waits until pcscd sees a card in both slots of the bi-fente (`filled`), or none.
package func waitForBiFente(_ backend: PCSCBackend, filled: Bool) async throws {
    try await waitUntil(filled ? "both cards seen by pcscd" : "both slots empty") {
        let a = try await backend.state(of: biFente0), b = try await backend.state(of: biFente1)
        if filled, case .present = a, case .present = b { return true }
        return !filled && a == .empty && b == .empty
    }
}
