import Foundation
import Testing

@Suite("carte doctor (no pcscd needed)")
struct DoctorCLITests {
    @Test func withoutPCSCDItSaysSoAndHowToStartIt() throws {
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("no-pcscd-\(getpid()).comm").path
        let r = try Carte.run(["doctor", "--json"], environment: ["PCSCLITE_CSOCK_NAME": socket])
        #expect(r.status == 7, "a failing check is exit 7: \(r.stderr)")
        #expect(r.json["schema"] as? String == "carte.doctor/1")
        let sections = r.json["sections"] as? [[String: Any]] ?? []
        #expect(sections.compactMap { $0["id"] as? String } == ["pcscd", "readers", "cards", "usb", "udev"])
        let checks = sections.flatMap { $0["checks"] as? [[String: Any]] ?? [] }
        let answers = try #require(checks.first { $0["id"] as? String == "pcscd.answers" })
        #expect(answers["status"] as? String == "fail")
        #expect((answers["evidence"] as? [String])?.first?.contains(socket) == true)
        #expect((answers["fix"] as? String)?.contains("systemctl") == true)
        #expect(checks.allSatisfy { ["ok", "info", "skip", "warn", "fail"].contains($0["status"] as? String ?? "") })

        let text = try Carte.run(["doctor", "--no-color"], environment: ["PCSCLITE_CSOCK_NAME": socket])
        #expect(text.status == 7 && text.stdout.contains("[FAIL] pcscd does not answer (SCARD_E_NO_SERVICE)") && text.stdout.contains("Summary:"), "\(text.stdout)")
        let help = try Carte.run(["doctor", "--help"])
        #expect(help.stdout.contains("--bundle") && help.stdout.contains("--json") && help.stdout.contains("7 when one fails"))
        let top = try Carte.run(["--help"])
        #expect(top.stdout.contains("doctor") && top.stdout.contains("7   carte doctor found a failing check"))
    }
}
