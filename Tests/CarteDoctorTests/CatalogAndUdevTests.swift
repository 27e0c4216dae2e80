import CarteCore
import CartePCSC
import CarteUSB
import Foundation
import Testing

@testable import CarteDoctor

/// The repository root (for udev/ and Firmware/).
let root: URL = {
    var dir = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { dir.deleteLastPathComponent() }
    return dir
}()

@Suite("Reader catalog and udev rules")
struct CatalogAndUdevTests {
    @Test func theBundledCatalogIsTheFileAndIsConsistent() throws {
        let file = try String(contentsOf: root.appendingPathComponent("Firmware/catalog.yaml"), encoding: .utf8)
        let catalog = try ReaderCatalog.load(text: file, source: "Firmware/catalog.yaml")
        #expect(catalog == ReaderCatalog.bundled)
        #expect(catalog.entries.count >= 17)
        let ids = catalog.entries.flatMap(\.usb)
        #expect(Set(ids).count == ids.count, "a USB id is in two entries")
        #expect(Set(catalog.entries.map(\.id)).count == catalog.entries.count)
        for e in catalog.entries {
            #expect(!e.source.isEmpty && e.source.contains("§7"), "\(e.id) names its source in domain-facts §7")
            if !e.inLibCCID { #expect(e.remedy?.contains("Info.plist") == true, "\(e.id)") }
        }
        let ingenico = try #require(catalog.entry(vendor: 0x0B00, product: 0x0090))
        #expect(!ingenico.inLibCCID && !ingenico.ccidClass)
        #expect(catalog.entry(vendor: 0x1C34, product: 0xAFC0)?.listedFirmware == "1.08")
        #expect(catalog.entry(readerName: "KAPELSE KAP-GO [00025637 TL KAP-GO 1/2] 00 00")?.id == "kapelse-kap-go")
        #expect(catalog.entry(readerName: "AF Care Two 01 00")?.id == "af-care-two")
        #expect(catalog.legacyName("PSS Reader on CPS 00 00") != nil && catalog.legacyName("pss smartcard reader") != nil)
        #expect(catalog.legacyName("AF Care One 00 00") == nil)
        #expect(catalog.legacyAdvice.contains("PC/SC mode"))
    }

    @Test func badCatalogsAreTypedErrors() {
        let head = "format: carte-reader-catalog/1\nlegacy-advice: x\nreaders:\n"
        let cases: [(String, String)] = [
            ("format: other/1", "format"),
            (head + "  - { id: a, name: A, usb: [\"12:34:56\"], layout: x, class: ccid, libccid: listed, source: s }", "is not VVVV:PPPP"),
            (head + "  - { id: a, name: A, usb: [\"1234:5678\"], layout: x, class: ccid, libccid: absent, source: s }", "needs a remedy"),
            (head + "  - { id: a, name: A, usb: [\"1234:5678\"], layout: x, class: odd, libccid: listed, source: s }", "class is"),
            (head + "  - { id: a, name: A, usb: [\"1234:5678\"], layout: x, class: ccid, libccid: listed, source: s, firmware: { listed: \"v2\" } }", "is not a version"),
        ]
        for (text, message) in cases {
            do {
                _ = try ReaderCatalog.load(text: text, source: "t.yaml")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description.contains(message) && error.description.hasPrefix("t.yaml"), "\(error)")
            }
        }
    }

    /// A catalog goes through the same key guard as the card images (CarteYAML): a key that is not text is
    /// refused where it starts, and duplicated sequence keys nested 60 deep (2^60 comparisons in Yams'
    /// duplicate check before the guard: the persona fuzz campaign's timeout) fail at once.
    @Test(.timeLimit(.minutes(1))) func nonTextKeysAreRefusedBeforeYamsComposes() {
        let deep = String(repeating: "[", count: 60) + "x" + String(repeating: "]", count: 60)
        let cases: [(String, String)] = [
            ("format: carte-reader-catalog/1\n[a]: 1\n", "t.yaml:2:1: a key must be text, not a sequence"),
            ("format: carte-reader-catalog/1\nreaders:\n  - ? { id: a }\n    : 1\n", "t.yaml:3:7: a key must be text, not a mapping"),
            ("format: &f carte-reader-catalog/1\n*f : 1\n", "t.yaml:2:1: a key must be text, not an alias"),
            ((0..<50).map { "? \(deep)\n: \($0)\n" }.joined(), "t.yaml:1:3: a key must be text, not a sequence"),
        ]
        for (text, message) in cases {
            do {
                _ = try ReaderCatalog.load(text: text, source: "t.yaml")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description == message)
            }
        }
    }

    @Test func versionsCompareAsNumbers() {
        #expect(Version("1.08")! == Version("1.8")!, "parts compare as numbers")
        #expect(Version("1.10")! > Version("1.9")!)
        #expect(Version("4.22")! > Version("4.19")!)
        #expect(Version("1.0")! == Version("1")!)
        #expect(Version("x") == nil && Version("") == nil && Version("1..2") == nil)
    }

    // MARK: - udev

    /// A minimal udev rules grammar: comma-separated `KEY[{attr}] OP "value"` assignments, GOTO to an existing LABEL.
    func syntaxErrors(_ text: String) -> [String] {
        let keys: Set<String> = ["ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "DRIVER", "DRIVERS", "ENV", "ATTR", "ATTRS", "TAG", "GROUP", "MODE", "OWNER", "GOTO", "LABEL", "RUN", "TEST"]
        let pattern = try! NSRegularExpression(pattern: #"^\s*([A-Z]+)(\{[A-Za-z0-9_./-]+\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*$"#)
        var errors: [String] = []
        var labels: Set<String> = []
        var gotos: [String] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            for part in line.split(separator: ",") {
                let s = String(part)
                guard let m = pattern.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)), let key = Range(m.range(at: 1), in: s).map({ String(s[$0]) }) else {
                    errors.append("line \(n + 1): \"\(s)\" is not KEY OP \"value\"")
                    continue
                }
                if !keys.contains(key) { errors.append("line \(n + 1): unknown key \(key)") }
                let op = Range(m.range(at: 3), in: s).map { String(s[$0]) } ?? ""
                let value = Range(m.range(at: 4), in: s).map { String(s[$0]) } ?? ""
                if ["GROUP", "MODE", "OWNER", "GOTO", "LABEL"].contains(key) && op != "=" { errors.append("line \(n + 1): \(key) takes =") }
                if key == "LABEL" { labels.insert(value) }
                if key == "GOTO" { gotos.append(value) }
            }
        }
        for g in gotos where !labels.contains(g) { errors.append("GOTO \(g) has no LABEL") }
        return errors
    }

    @Test func theRulesAreValidAndCoverEveryCatalogReader() throws {
        let text = try String(contentsOf: root.appendingPathComponent("udev/92-cartekit-readers.rules"), encoding: .utf8)
        #expect(syntaxErrors(text).isEmpty, "\(syntaxErrors(text))")
        #expect(!syntaxErrors("ATTRS{idVendor}==1c34, GROUP=\"pcscd\"").isEmpty, "the checker catches an unquoted value")
        #expect(!syntaxErrors("GOTO=\"nowhere\"").isEmpty, "…and a GOTO without its LABEL")
        let rules = UdevRules(text: text)
        #expect(rules.classRule && rules.group == "pcscd")
        for entry in ReaderCatalog.bundled.entries {
            for id in entry.usb {
                #expect(rules.covers(vendor: id.vendor, product: id.product, ccid: false), "\(entry.name) \(id) has its own line")
            }
        }
        #expect(!rules.covers(vendor: 0x1234, product: 0x5678, ccid: false) && rules.covers(vendor: 0x1234, product: 0x5678, ccid: true))
    }

    @Test func theUdevChecksSeeInstalledRulesCoverageAndTheGroup() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("udev-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var environment = DoctorEnvironment()
        environment.udevRuleDirectories = [dir.path]
        environment.userID = 1000
        environment.userName = "nobody-here"
        let doctor = Doctor(backend: PCSCBackend(), environment: environment, carteVersion: "test")
        let ingenico = USBDevice(bus: 1, address: 9, path: "1-4", vendorID: 0x0B00, productID: 0x0090, bcdDevice: 0x0100, deviceClass: 0,
                                 interfaces: [USBInterface(number: 0, interfaceClass: 0xFF, subclass: 0, interfaceProtocol: 0)])
        let ccid = USBDevice(bus: 1, address: 5, path: "1-2", vendorID: 0x1234, productID: 0x0001, bcdDevice: 0x0100, deviceClass: 0,
                             interfaces: [USBInterface(number: 0, interfaceClass: 0x0B, subclass: 0, interfaceProtocol: 0)])
        // No rules at all.
        var section = doctor.udevSection(.success([ingenico, ccid]))
        #expect(section.checks.first { $0.id == "udev.rules" }?.status == .warn)
        #expect(section.checks.first { $0.id == "udev.1-4" }?.status == .warn)
        // libccid's class rule only: the CCID reader is covered, the vendor-class Ingenico is not.
        try "ACTION!=\"remove\", SUBSYSTEM==\"usb\", ENV{ID_USB_INTERFACES}==\"*:0b0000:*\", GROUP=\"pcscd\"\n".write(to: dir.appendingPathComponent("92_pcscd_ccid.rules"), atomically: true, encoding: .utf8)
        section = doctor.udevSection(.success([ingenico, ccid]))
        #expect(section.checks.first { $0.id == "udev.1-2" }?.status == .ok)
        let notCovered = try #require(section.checks.first { $0.id == "udev.1-4" })
        #expect(notCovered.status == .fail && notCovered.fix?.contains("92-cartekit-readers.rules") == true)
        // CarteKit's rules: both covered.
        try FileManager.default.copyItem(at: root.appendingPathComponent("udev/92-cartekit-readers.rules"), to: dir.appendingPathComponent("92-cartekit-readers.rules"))
        section = doctor.udevSection(.success([ingenico, ccid]))
        #expect(section.checks.filter { $0.id.hasPrefix("udev.1-") }.allSatisfy { $0.status == .ok }, "\(section.checks)")
        // A non-root user: the group check says whether they are in it (no such user here: not a member).
        let group = try #require(section.checks.first { $0.id == "udev.group" })
        #expect(group.status == .info)
    }

    @Test func pcscdRefusalsAreExplainedWithTheirFix() {
        var environment = DoctorEnvironment()
        environment.socketPath = "/run/pcscd/pcscd.comm"
        environment.userName = "pharmacien"
        let doctor = Doctor(backend: PCSCBackend(), environment: environment, carteVersion: "test")
        let polkit = doctor.answerFailure(.backend(code: 0x8010_006A, name: "SCARD_W_SECURITY_VIOLATION", message: "refused"), socketExists: true, socketActivation: true, running: [12])
        #expect(polkit.status == .fail && polkit.title.contains("polkit") && polkit.evidence.joined().contains("pharmacien is NOT authorized"))
        #expect(polkit.fix?.contains("access_pcsc") == true)
        let dead = doctor.answerFailure(.backend(code: 0x8010_001D, name: "SCARD_E_NO_SERVICE", message: ""), socketExists: true, socketActivation: false, running: [])
        #expect(dead.evidence.joined().contains("the socket exists but nobody answers"))
        let off = doctor.answerFailure(.backend(code: 0x8010_001D, name: "SCARD_E_NO_SERVICE", message: ""), socketExists: false, socketActivation: false, running: [])
        #expect(off.evidence.joined().contains("socket activation is off") && off.fix?.contains("systemctl enable --now pcscd.socket") == true)
        let elsewhere = doctor.answerFailure(.backend(code: 0x8010_001D, name: "SCARD_E_NO_SERVICE", message: ""), socketExists: false, socketActivation: true, running: [4242])
        #expect(elsewhere.evidence.joined().contains("4242 serve another socket") && elsewhere.evidence.joined().contains("systemd is not listening"))
    }

    @Test func theTextReportHasStatusesEvidenceFixesAndASummary() {
        let report = DoctorReport(date: "2026-11-23T00:00:00Z", carteVersion: "t", milliseconds: 12, sections: [
            DoctorSection(id: "a", title: "Alpha", checks: [DoctorCheck(id: "a.1", title: "fine", status: .ok, evidence: ["seen"]),
                                                           DoctorCheck(id: "a.2", title: "broken", status: .fail, evidence: ["bad"], fix: "do this")]),
        ])
        let plain = report.text(colour: false)
        #expect(plain.contains("[OK  ] fine") && plain.contains("[FAIL] broken") && plain.contains("→ do this") && plain.contains("1 ok, 1 fail"))
        #expect(!plain.contains("\u{1B}"))
        #expect(report.text(colour: true).contains("\u{1B}[31;1mFAIL"))
        #expect(report.status == .fail && report.check("a.2")?.fix == "do this")
    }
}

/// #38 item 6: every fix the doctor gives is a whole sentence, ending on what to do.
@Suite("Doctor advice")
struct DoctorAdviceTests {
    @Test func theFixesEndOnWhatToDo() {
        for fix in [Doctor.muteFix, Doctor.udevInstall] {
            let last = fix.split(separator: " ").last.map(String.init) ?? ""
            #expect(!["is", "the", "a", "to", "of", "and", "or", "if"].contains(last), "a fix stops mid-sentence: …\(fix.suffix(40))")
        }
        #expect(Doctor.muteFix.contains("replace the reader"))
    }
}
