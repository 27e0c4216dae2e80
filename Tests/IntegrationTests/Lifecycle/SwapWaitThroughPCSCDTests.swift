import CarteCore
import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

extension SharedSandboxTests {
    /// #38 item 1: `carte sim insert --wait` returns once pcscd reports the swapped card, so a read
    /// right after sees it, with its own 10-byte ATR (never pcsc-lite's 33-byte padded buffer).
    @Test func aCardSwappedWithWaitIsReadRightAfterWithItsOwnATR() async throws {
        let s = try sandbox()
        let carte = PCSCSandbox.carteBinary.path
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 0]) }
        for round in 0..<5 {
            let insert = try s.run(carte, ["sim", "insert", "--socket", s.socket, "0", "0", "bundled:demo/vitale2-demo.yaml", "--wait", "5"])
            #expect(insert.status == 0, "round \(round): \(insert.stderr)")
            let read = try s.run(carte, ["apdu", "--backend", "pcsc", "--reader", biFente0, "--json", "00A4000000"])
            #expect(read.status == 0, "round \(round): \(read.stderr)")
            let json = (try? JSONSerialization.jsonObject(with: Data(read.stdout.utf8))) as? [String: Any] ?? [:]
            #expect(json["atr"] as? String == "3B 75 13 00 00 45 09 EA 90 00", "round \(round): \(read.stdout)")
        }
        let remove = try s.run(carte, ["sim", "remove", "--socket", s.socket, "0", "0", "--wait", "5"])
        #expect(remove.status == 0, "\(remove.stderr)")
        let none = try s.run(carte, ["apdu", "--backend", "pcsc", "--reader", biFente0, "00A4000000"])
        #expect(none.status == 3 && none.stderr.contains("no card"), "\(none.stderr)")
        // Removing from an empty slot: nothing for pcscd to report, its state is enough.
        #expect(try s.run(carte, ["sim", "remove", "--socket", s.socket, "0", "0", "--wait", "5"]).status == 0)
        // Without a pcscd to ask, --wait says so (exit 3) and inserts nothing.
        let nobody = try s.run(carte, ["sim", "insert", "--socket", s.socket, "0", "0", "bundled:demo/vitale2-demo.yaml", "--wait", "1"],
                               environment: ["PCSCLITE_CSOCK_NAME": s.directory.appendingPathComponent("no-pcscd.comm").path])
        #expect(nobody.status == 3 && nobody.stderr.contains("--wait: cannot ask pcscd"), "\(nobody.stderr)")
        #expect(try s.run(carte, ["sim", "insert", "--socket", s.socket, "0", "0", "x.yaml", "--wait", "0"]).status == 64)
    }
}

extension SharedSandboxTests {
    /// #38 item 10: taking out a card that does not answer ends the exchange waiting on it at once
    /// (not after the driver's 30 s), and pcscd, no longer blocked in it, shows the slot empty.
    @Test func removingAMuteCardEndsTheReadWaitingOnIt() async throws {
        let s = try sandbox()
        let carte = PCSCSandbox.carteBinary.path
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 0]) }
        #expect(try s.run(carte, ["sim", "insert", "--socket", s.socket, "0", "0", "bundled:demo/vitale2-demo.yaml", "--wait", "5"]).status == 0)
        try s.control(["op": "fault", "reader": 0, "slot": 0, "fault": "mute", "count": 5])
        let started = ContinuousClock.now
        let read = Task.detached { try s.run(carte, ["read", "--backend", "pcsc", "--reader", biFente0], timeout: 60) }
        try await Task.sleep(for: .milliseconds(1500))
        try s.control(["op": "remove", "reader": 0, "slot": 0])
        let result = try await read.value
        let took = ContinuousClock.now - started
        #expect(result.status == 3 && result.stderr.contains("removed"), "\(result.status) \(result.stderr)")
        #expect(took < .seconds(10), "the read ended after \(took), its driver timeout is 30 s")
        let readers = try s.run(carte, ["readers", "--backend", "pcsc"])
        #expect(readers.stdout.contains("\(biFente0)  [contact]: empty"), "\(readers.stdout)")
    }
}
