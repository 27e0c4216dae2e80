import CarteApCV
import CarteApCVHTTP
import CarteBundledImages
import CarteCore
import CarteKit
import CartePCSC

import CarteVitale
import CarteEmulator
import CarteImages
import Foundation
import PCSCTestSupport
import Testing

extension SharedSandboxTests {
    /// The done-when of the apCV issue: one persona read from a virtual Vitale 2 card, from a virtual
    /// phone over NFC on the contactless slot and from its QR payload, all through the private pcscd
    /// and the CLI, gives the same identity in `carte read --json`; tokens go through the simulated
    /// service over HTTP on loopback, where a replay is refused.
    @Test func aPersonaFromACardAPhoneAndAQRCodeGivesTheSameIdentityThroughPCSCD() async throws {
        let s = try sandbox()
        try s.control(["op": "insert", "reader": 0, "slot": 0, "image": "bundled:demo/vitale2-demo.yaml"])
        try s.control(["op": "insert", "reader": 2, "slot": 0, "image": "bundled:apcv/claire-exemple.yaml"])
        let backend = PCSCBackend()
        defer {
            _ = try? s.control(["op": "remove", "reader": 0, "slot": 0])
            _ = try? s.control(["op": "remove", "reader": 2, "slot": 0])
        }
        try await waitUntil("the card and the phone seen by pcscd") {
            let a = try await backend.state(of: biFente0), b = try await backend.state(of: contactless)
            return a != .empty && b == .present(atr: ApCVProtocol.phoneATR)
        }

        // The simulated insurer's service, as its own process on a loopback port chosen by the system.
        let service = try ApCVServiceProcess()
        defer { service.stop() }

        func identity(_ arguments: [String]) throws -> (status: Int32, identity: NSDictionary?, json: [String: Any]?, stderr: String) {
            let r = try s.run(PCSCSandbox.carteBinary.path, ["read", "--json", "--date", "2026-06-15"] + arguments)
            guard let object = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return (r.status, nil, nil, r.stderr + r.stdout) }
            let card = object["card"] as? [String: Any] ?? [:]
            let part: NSDictionary = ["people": object["people"] ?? [], "issues": object["issues"] ?? [], "amo": card["amo"] ?? NSNull(),
                                      "mutuelle": card["mutuelle"] ?? NSNull(), "workAccident": card["workAccident"] ?? NSNull()]
            return (r.status, part, object, r.stderr)
        }
        let card = try identity(["--backend", "pcsc", "-r", biFente0])
        #expect(card.status == 0 && card.json?["generation"] as? String == "vitale2", "\(card.stderr)")
        let phone = try identity(["--backend", "pcsc", "-r", contactless, "--apcv-service", service.address])
        #expect(phone.status == 0 && phone.json?["generation"] as? String == "apcv", "\(phone.stderr)")
        #expect(phone.json?["reader"] as? String == contactless && phone.json?["apduCount"] as? Int == 2)
        let qrText = try s.run(PCSCSandbox.carteBinary.path, ["sim", "apcv-qr", "bundled:apcv/claire-exemple.yaml"]).stdout
        let qr = try identity(["--qr", qrText.trimmingCharacters(in: .whitespacesAndNewlines), "--apcv-service", service.address])
        #expect(qr.status == 0 && qr.json?["reader"] as? String == "qr", "\(qr.stderr)")
        let people = try #require(card.identity?["people"] as? [Any])
        #expect(people.count == 3)
        #expect(phone.identity == card.identity, "NFC: \(String(describing: phone.identity))")
        #expect(qr.identity == card.identity, "QR: \(String(describing: qr.identity))")

        // The same QR code a second time: the service refuses the replay (exit 6, typed message).
        let replay = try s.run(PCSCSandbox.carteBinary.path, ["read", "--qr", "-", "--apcv-service", service.address], stdin: qrText)
        #expect(replay.status == 6 && replay.stderr.contains("already used"), "\(replay.stderr)")
        // The in-process service (no --apcv-service) reads the phone through pcscd too.
        let local = try identity(["--backend", "pcsc", "-r", contactless])
        #expect(local.status == 0 && local.identity == card.identity, "\(local.stderr)")
        // ReaderManager over PC/SC with an HTTP resolver: the editor's code for cards and phones.
        let manager = ReaderManager(backend: backend, apcvResolver: HTTPApCVResolver(endpoint: try LoopbackEndpoint(service.address), softwareID: "CARTEKIT-DEMO-LGO"))
        #expect(try await manager.slots().first { $0.info.name == contactless }?.card == .apcv)
        let viaManager = try await manager.readVitale(on: contactless)
        let cardViaManager = try await manager.readVitale(on: biFente0)
        #expect(viaManager.beneficiaries == cardViaManager.beneficiaries && viaManager.generation == .apcv)

        // A phone whose holder declines: the CLI says so (exit 3).
        try s.control(["op": "remove", "reader": 2, "slot": 0])
        try await waitUntil("the first phone gone") { try await backend.state(of: contactless) == .empty }
        try s.control(["op": "insert", "reader": 2, "slot": 0, "image": "bundled:apcv/refus.yaml"])
        try await waitUntil("the declining phone") { try await backend.state(of: contactless) == .present(atr: ApCVProtocol.phoneATR) }
        let declined = try s.run(PCSCSandbox.carteBinary.path, ["read", "--backend", "pcsc", "-r", contactless, "--apcv-service", service.address])
        #expect(declined.status == 3 && declined.stderr.contains("the holder declined or did not confirm on the phone (69 85"), "\(declined.stderr)")
        // The service stopped: the CLI says it cannot be reached (exit 3).
        service.stop()
        let down = try s.run(PCSCSandbox.carteBinary.path, ["read", "--qr", qrText, "--apcv-service", service.address])
        #expect(down.status == 3 && down.stderr.contains("cannot be reached"), "\(down.stderr)")

        try s.control(["op": "remove", "reader": 0, "slot": 0])
        try s.control(["op": "remove", "reader": 2, "slot": 0])
        try await waitUntil("the slots empty") {
            let a = try await backend.state(of: biFente0), b = try await backend.state(of: contactless)
            return a == .empty && b == .empty
        }
    }
}

/// `carte sim apcv-service --listen 127.0.0.1:0` as a child process; its address is the first line it prints.
final class ApCVServiceProcess: @unchecked Sendable {
    let process = Process()
    let address: String

    init() throws {
        process.executableURL = PCSCSandbox.carteBinary
        process.arguments = ["sim", "apcv-service", "--listen", "127.0.0.1:0", "--exit-with-parent"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line: [UInt8] = []
        let handle = out.fileHandleForReading
        while line.last != 0x0A, line.count < 200 {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { break }
            line += byte
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("listening on http://") else {
            process.terminate()
            throw PCSCSandbox.SandboxError("carte sim apcv-service did not start: \(text)")
        }
        address = String(text.dropFirst("listening on http://".count))
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}
