import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CartePCSC
import Foundation
import PCSCTestSupport
import Testing

extension SharedSandboxTests {
    /// #34: the virtual CPS4 through pcscd, with CarteCPS and the CLI as on the CPS3 (ChipDoc on logical
    /// channel 1, T=1); OpenSC, which has no CPS4 driver, does not take it — the card does not pretend.
    @Test func aCPS4SignsDeciphersAuthenticatesAndManagesItsPINThroughPCSCD() async throws {
        let s = try sandbox()
        let backend = PCSCBackend()
        try s.control(["op": "insert", "reader": 0, "slot": 1, "image": "bundled:cps/cps4-medecin.yaml"])
        defer { _ = try? s.control(["op": "remove", "reader": 0, "slot": 1]) }
        let atr = try [UInt8](hex: "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")
        try await waitUntil("the CPS4 in slot 1") { try await backend.state(of: biFente1) == .present(atr: atr) }

        let connection = try await backend.connect(to: biFente1, share: .exclusive, protocols: [.t0, .t1])
        #expect(await connection.activeProtocol == .t1)
        let channel = CardChannel(transport: connection, trace: Trace())
        let cps = try CPSReader(channel: channel, atr: await connection.atrBytes)
        #expect(cps.generation == .cps4)
        #expect(try await cps.pinStatus().triesLeft == 3)
        await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: 2)) { try await cps.verifyPIN(try PINCode("9999")) }
        try await cps.verifyPIN(try PINCode("1234"))
        let card = try await cps.read()
        #expect(card.holder?.surname == "QUATRETEST" && card.apduCount <= 25)
        let data = Array("e-prescription".utf8)
        let signature = try await cps.sign(data)
        try #require(card.certificates.first { $0.role == .signature }).verifySignature(signature, of: data)
        let authentication = try #require(card.certificates.first { $0.role == .authentication }).certificate.publicKey()
        // Deciphering: the bare 256-byte cryptogram, the whole block back, its padding removed on the host.
        #expect(try await cps.decipher(try authentication.encrypt(Array("session".utf8))) == Array("session".utf8))
        let challenge: [UInt8] = Array(1...32)
        #expect(try authentication.recover(try await cps.authenticate(challenge: challenge)) == challenge)
        try await cps.changePIN(current: try PINCode("1234"), new: try PINCode("2468"))
        for _ in 0..<3 { _ = try? await cps.verifyPIN(try PINCode("0000")) }
        #expect(try await cps.pinStatus().triesLeft == 0)
        try await cps.unblockPIN(puk: try PINCode("12345678"), newPIN: try PINCode("1234"))
        try await cps.verifyPIN(try PINCode("1234"))
        try await connection.disconnect(.reset)

        // The CLI, through pcscd: nothing secret in its output.
        let signFile = s.directory.appendingPathComponent("cps4-to-sign.txt").path
        try "ordonnance".write(toFile: signFile, atomically: true, encoding: .utf8)
        let sign = try s.run(PCSCSandbox.carteBinary.path, ["cps", "sign", signFile, "--backend", "pcsc", "--json", "-vv"], stdin: "1234\n")
        #expect(sign.status == 0, "\(sign.stderr)")
        #expect(sign.stdout.contains("\"verified\" : true"), "\(sign.stdout)")
        #expect(!(sign.stdout + sign.stderr).contains("31 32 33 34"))
        let info = try s.run(PCSCSandbox.carteBinary.path, ["cps", "info", "--backend", "pcsc", "--json"])
        #expect(info.stdout.contains("\"generation\" : \"cps4\""), "\(info.stdout)\(info.stderr)")

        // OpenSC 0.23 has no CPS4 driver: it does not take the card.
        let name = try s.run("/usr/bin/opensc-tool", ["-r", "1", "-n"])
        #expect(name.stdout.contains("Unsupported card"), "\(name.stdout)\(name.stderr)")
        let certs = try s.run("/usr/bin/pkcs15-tool", ["-r", "1", "--list-certificates"])
        #expect(certs.status != 0 && !certs.stdout.contains("Certificat"), "\(certs.stdout)")

        try s.control(["op": "remove", "reader": 0, "slot": 1])
        try await waitUntil("slot 1 empty") { try await backend.state(of: biFente1) == .empty }
    }
}
