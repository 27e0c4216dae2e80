import CarteCore
import CarteCPS
import CartePCSC

import CarteVitale
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

extension SharedSandboxTests {
    /// Inserts `image` into the bi-fente's slot `slot` through the daemon and waits until pcscd shows it.
    func insertAndWait(_ s: PCSCSandbox, _ backend: PCSCBackend, slot: Int, image: String) async throws {
        let name = slot == 0 ? biFente0 : biFente1
        _ = try? s.control(["op": "remove", "reader": 0, "slot": slot])
        try await waitUntil("slot \(slot) empty") { try await backend.state(of: name) == .empty }
        try s.control(["op": "insert", "reader": 0, "slot": slot, "image": image])
        try await waitUntil("the card in slot \(slot)") { if case .present = try await backend.state(of: name) { return true } else { return false } }
    }

    /// VERIFY commands in a trace.
    func verifies(_ trace: Trace) -> Int {
        trace.events.filter { $0.direction == .toCard && $0.bytes.count > 1 && $0.bytes[1] == 0x20 }.count
    }

    func fault(_ s: PCSCSandbox, slot: Int, _ fields: [String: any Sendable]) throws {
        var request: [String: any Sendable] = ["op": "fault", "reader": 0, "slot": slot]
        for (k, v) in fields { request[k] = v }
        try s.control(request)
    }

    /// Each fault of a slot, through pcscd, gives CarteKit's documented typed error or recovery.
    @Test func faultsThroughPCSCDGiveTypedErrors() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 0]); _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }
        func vitaleRead() async throws -> Result<VitaleCard, VitaleError> {
            let connection = try await backend.connect(to: biFente0, share: .exclusive, protocols: [.t0, .t1])
            let result: Result<VitaleCard, VitaleError>
            do { result = .success(try await VitaleReader(channel: CardChannel(transport: connection, trace: Trace())).read()) } catch { result = .failure(error) }
            try? await connection.disconnect(.leave)  // before the next read connects exclusively
            return result
        }

        // The card pulled out before, during or after an APDU: the reading fails with cardRemoved.
        for name in ["remove-before", "remove-during", "remove-after"] {
            try await insertAndWait(s, backend, slot: 0, image: "bundled:demo/vitale2-demo.yaml")
            try fault(s, slot: 0, ["fault": name])
            let r = try await vitaleRead()
            guard case .failure(.card(let e)) = r else { Issue.record("\(name): \(r)"); continue }
            switch e {
            case .cardRemoved, .noCard: break
            default: Issue.record("\(name): \(e)")
            }
            try await waitUntil("\(name): pcscd sees the card gone") { try await backend.state(of: biFente0) == .empty }
        }

        // A mute card: no answer; the driver's timeout (2 s here) fires and the caller gets cardMute.
        try await insertAndWait(s, backend, slot: 0, image: "bundled:demo/vitale2-demo.yaml")
        try fault(s, slot: 0, ["fault": "mute", "count": 1])
        let muted = try await vitaleRead()
        guard case .failure(.card(let muteError)) = muted else { Issue.record("mute: \(muted)"); return }
        #expect({ if case .cardMute = muteError { return true } else { return false } }(), "mute: \(muteError)")
        // Then the card answers again, and the next reading works.
        let again = try await vitaleRead()
        #expect((try? again.get())?.beneficiaries.count == 3, "after mute: \(again)")

        // A slow card: the reading takes longer and succeeds.
        try fault(s, slot: 0, ["fault": "slow", "ms": 40])
        let clock = ContinuousClock()
        let start = clock.now
        let slow = try await vitaleRead()
        let slowCard = try #require(try? slow.get(), "slow: \(slow)")
        #expect(slowCard.beneficiaries.count == 3)
        #expect(clock.now - start >= .milliseconds(40 * slowCard.apduCount), "each of the \(slowCard.apduCount) APDUs delayed")
        try fault(s, slot: 0, ["fault": "clear"])

        // A chosen status word: the reading reports what the card said, typed.
        try fault(s, slot: 0, ["fault": "sw", "sw": "6F00", "count": 1])
        let sw = try await vitaleRead()
        guard case .failure(let swError) = sw else { Issue.record("sw: \(sw)"); return }
        #expect("\(swError)".contains("6F 00") || "\(swError)".contains("6F00"), "\(swError)")
        #expect((try? (try await vitaleRead()).get())?.beneficiaries.count == 3, "the next reading is clean")

        // A warm reset between the PIN and the signature: the card forgot the PIN; the signature is
        // refused with a typed error, never made without the PIN, and the PIN is not presented again.
        try await insertAndWait(s, backend, slot: 1, image: "bundled:cps/medecin-liberal.yaml")
        let connection = try await backend.connect(to: biFente1, share: .exclusive, protocols: [.t0, .t1])
        let trace = Trace(capacity: 256)
        let cps = try CPSReader(channel: CardChannel(transport: connection, trace: trace), atr: await connection.atrBytes)
        try await cps.verifyPIN(try PINCode("1234"))
        try fault(s, slot: 1, ["fault": "reset"])
        await #expect(throws: CPSError.self) { _ = try await cps.sign(Array("ordonnance".utf8)) }
        #expect(verifies(trace) == 1, "one VERIFY only")
        try? await connection.disconnect(.leave)

        // The card pulled out during a VERIFY: the caller is told the card is gone; the PIN is not resent.
        try await insertAndWait(s, backend, slot: 1, image: "bundled:cps/medecin-liberal.yaml")
        let second = try await backend.connect(to: biFente1, share: .exclusive, protocols: [.t0, .t1])
        let trace2 = Trace(capacity: 256)
        let cps2 = try CPSReader(channel: CardChannel(transport: second, trace: trace2), atr: await second.atrBytes)
        try fault(s, slot: 1, ["fault": "remove-during"])
        do {
            try await cps2.verifyPIN(try PINCode("1234"))
            Issue.record("a VERIFY on a removed card succeeded")
        } catch {
            guard case .card(let e) = error, case .cardRemoved = e else { Issue.record("\(error)"); return }
        }
        #expect(verifies(trace2) == 1, "one VERIFY only")
        try? await second.disconnect(.leave)
        // Leave the reader empty, as pcscd sees it, for the next test.
        _ = try? s.control(["op": "remove", "reader": 0, "slot": 0])
        _ = try? s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitForBiFente(backend, filled: false)
    }
}
