import CarteCore
import CarteCrypto
import CarteKit
public import CartePCSC
public import CarteUSB
import Foundation
public import Logging

/// Where `carte doctor` looks (every path can be changed, for tests and unusual systems).
public struct DoctorEnvironment: Sendable {
    /// Where pcscd may be installed.
    public var pcscdPaths = ["/usr/sbin/pcscd", "/usr/bin/pcscd", "/usr/local/sbin/pcscd"]
    /// The client socket libpcsclite uses (`PCSCLITE_CSOCK_NAME`, else `/run/pcscd/pcscd.comm`).
    public var socketPath: String
    /// systemd unit directories (where `pcscd.socket` is installed).
    public var systemdUnitDirectories = ["/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"]
    /// Where an enabled `pcscd.socket` is linked.
    public var socketsWants = "/etc/systemd/system/sockets.target.wants/pcscd.socket"
    /// pcsc-lite's polkit policy.
    public var polkitPolicies = ["/usr/share/polkit-1/actions/org.debian.pcsc-lite.policy", "/usr/share/polkit-1/actions/org.debian.pcsc-lite.policy.in"]
    /// udev rule directories.
    public var udevRuleDirectories = ["/etc/udev/rules.d", "/lib/udev/rules.d", "/usr/lib/udev/rules.d"]
    /// The USB driver bundles pcscd loads.
    public var driverDirectory = "/usr/lib/pcsc/drivers"
    /// `/proc`.
    public var proc = "/proc"
    /// The user the report is about (the real uid).
    public var userID: UInt32 = getuid()
    /// Its name.
    public var userName: String? = getpwuid(getuid()).flatMap { String(validatingCString: $0.pointee.pw_name) }

    /// The paths of this machine and process.
    public init() {
        socketPath = ProcessInfo.processInfo.environment["PCSCLITE_CSOCK_NAME"] ?? "/run/pcscd/pcscd.comm"
    }
}

/// Runs `carte doctor`'s checks: pcscd, readers (firmware against the catalog), cards (a harmless read
/// and its latency), USB devices (through libusb), udev rules and group. Nothing it does changes a
/// card or a reader: a card is probed (SELECT MF only) when no other program has it open.
public struct Doctor: Sendable {
    /// The PC/SC backend the checks use.
    public var backend: PCSCBackend
    /// The reader catalog readers and USB devices are matched against.
    public var catalog: ReaderCatalog
    /// Where to look.
    public var environment: DoctorEnvironment
    /// Where the checks log (debug).
    public var logger: Logger
    /// Lists USB devices (blocking; run on a thread of its own).
    public var usbDevices: @Sendable () throws(USBError) -> [USBDevice]
    /// Round trips per card for the latency figure.
    public var probeRoundTrips = 5
    /// The version written in the report.
    public var carteVersion: String

    /// A doctor; ``run()`` runs the checks.
    public init(backend: PCSCBackend, catalog: ReaderCatalog = .bundled, environment: DoctorEnvironment = DoctorEnvironment(), carteVersion: String,
                logger: Logger = Logger(label: "cartekit.doctor", factory: { _ in SwiftLogNoOpLogHandler() }),
                usbDevices: @escaping @Sendable () throws(USBError) -> [USBDevice] = { () throws(USBError) in try USBInventory.devices() }) {
        self.backend = backend
        self.catalog = catalog
        self.environment = environment
        self.carteVersion = carteVersion
        self.logger = logger
        self.usbDevices = usbDevices
    }

    /// Runs every check.
    public func run() async -> DoctorReport {
        let clock = ContinuousClock()
        let start = clock.now
        // USB enumeration and the pcscd version run on threads of their own while PC/SC is asked.
        async let usb = onThread { () -> Result<[USBDevice], USBError> in
            do throws(USBError) { return .success(try usbDevices()) } catch { return .failure(error) }
        }
        async let version = onThread { pcscdVersion() }
        let pcsc = await pcscSection(version: await version)
        let (readersSection, cardsSection, readers) = await readerSections(pcscAnswered: pcsc.answered)
        let usbResult = await usb
        let usbSection = usbChecks(usbResult, readers: readers, pcscAnswered: pcsc.answered)
        let udev = udevSection(usbResult)
        let ms = (clock.now - start).milliseconds
        return DoctorReport(date: iso8601UTC(currentUnixTime()), carteVersion: carteVersion, milliseconds: (ms * 10).rounded() / 10,
                            sections: [pcsc.section, readersSection, cardsSection, usbSection, udev])
    }

    // MARK: - pcscd

    struct PCSCOutcome {
        var section: DoctorSection
        var answered: Bool
    }

    func pcscSection(version: (path: String, version: String?)?) async -> PCSCOutcome {
        var checks: [DoctorCheck] = []
        // Installed.
        if let version {
            checks.append(DoctorCheck(id: "pcscd.installed", title: "pcscd is installed", status: .ok,
                                      evidence: ["\(version.path)" + (version.version.map { ", pcsc-lite \($0)" } ?? ", version unknown")]))
        } else {
            checks.append(DoctorCheck(id: "pcscd.installed", title: "pcscd is not installed", status: .fail,
                                      evidence: ["none of " + environment.pcscdPaths.joined(separator: ", ")],
                                      fix: "sudo apt install pcscd libccid"))
        }
        // Running.
        let processes = pcscdProcesses()
        let unitInstalled = environment.systemdUnitDirectories.contains { FileManager.default.fileExists(atPath: "\($0)/pcscd.socket") }
        let socketEnabled = FileManager.default.fileExists(atPath: environment.socketsWants)
        if processes.isEmpty {
            checks.append(DoctorCheck(id: "pcscd.running", title: "pcscd is not running", status: socketEnabled ? .info : .warn,
                                      evidence: [socketEnabled ? "socket activation is on: systemd starts pcscd when a program connects" : "no pcscd process"],
                                      fix: socketEnabled ? nil : "sudo systemctl enable --now pcscd.socket"))
        } else {
            checks.append(DoctorCheck(id: "pcscd.running", title: "pcscd is running", status: .ok,
                                      evidence: processes.map { "pid \($0.pid): \($0.commandLine)" }))
        }
        // Socket activation and auto-exit.
        if unitInstalled {
            checks.append(DoctorCheck(id: "pcscd.socket-activation", title: socketEnabled ? "socket activation is enabled" : "socket activation is installed but not enabled",
                                      status: socketEnabled ? .ok : .warn, evidence: [socketEnabled ? environment.socketsWants : "pcscd.socket is not in sockets.target.wants"],
                                      fix: socketEnabled ? nil : "sudo systemctl enable --now pcscd.socket"))
        } else {
            checks.append(DoctorCheck(id: "pcscd.socket-activation", title: "no systemd socket unit for pcscd", status: .info,
                                      evidence: ["no pcscd.socket in " + environment.systemdUnitDirectories.joined(separator: ", ")]))
        }
        if let auto = processes.first(where: { $0.arguments.contains("--auto-exit") || $0.arguments.contains("-x") }) {
            checks.append(DoctorCheck(id: "pcscd.auto-exit", title: "pcscd exits when idle (--auto-exit)", status: .info,
                                      evidence: ["pid \(auto.pid) stops after its idle delay; socket activation restarts it on the next connection"]))
        }
        // The socket and the answer.
        let socketExists = isSocket(environment.socketPath)
        checks.append(DoctorCheck(id: "pcscd.socket", title: socketExists ? "pcscd's socket is there" : "pcscd's socket is missing",
                                  status: socketExists ? .ok : .fail, evidence: [environment.socketPath],
                                  fix: socketExists ? nil : "start pcscd: sudo systemctl start pcscd.socket pcscd (or sudo pcscd)"))
        let clock = ContinuousClock()
        let start = clock.now
        var answered = false
        do {
            let names = try await backend.readerNames()
            answered = true
            checks.append(DoctorCheck(id: "pcscd.answers", title: "pcscd answers", status: .ok,
                                      evidence: ["SCardEstablishContext and SCardListReaders in \(milliseconds(clock.now - start)) ms; \(names.count) reader slot(s)"]))
        } catch {
            checks.append(answerFailure(error, socketExists: socketExists, socketActivation: socketEnabled, running: processes.map(\.pid)))
        }
        // polkit.
        if let policy = environment.polkitPolicies.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            checks.append(DoctorCheck(id: "pcscd.polkit", title: "polkit decides which users may use pcscd", status: .info,
                                      evidence: [policy + " (actions access_pcsc and access_card)"]))
        }
        return PCSCOutcome(section: DoctorSection(id: "pcscd", title: "pcscd (PC/SC daemon)", checks: checks), answered: answered)
    }

    func answerFailure(_ error: CardError, socketExists: Bool, socketActivation: Bool, running: [Int32]) -> DoctorCheck {
        let name: String
        if case .backend(_, let n, _) = error { name = n } else { name = "\(error)" }
        switch name {
        case "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED":
            var why: String
            if socketExists {
                why = "the socket exists but nobody answers: pcscd stopped or crashed"
            } else if socketActivation {
                why = "no socket although pcscd.socket is enabled: systemd is not listening (stopped, or failed)"
            } else {
                why = "no socket: pcscd is not running and socket activation is off"
            }
            if !running.isEmpty && !socketExists {
                why += "; the pcscd process(es) \(running.map(String.init).joined(separator: ", ")) serve another socket (another mount namespace or a private pcscd)"
            }
            return DoctorCheck(id: "pcscd.answers", title: "pcscd does not answer (\(name))", status: .fail,
                               evidence: ["\(name): the PC/SC library found no pcscd at \(environment.socketPath) (\(why))"],
                               fix: "start pcscd: sudo systemctl enable --now pcscd.socket && sudo systemctl restart pcscd.socket; then check: systemctl status pcscd.socket pcscd")
        case "SCARD_W_SECURITY_VIOLATION", "SCARD_E_NO_ACCESS":
            return DoctorCheck(id: "pcscd.answers", title: "pcscd refuses this user (polkit)", status: .fail,
                               evidence: ["\(name): \"\(environment.userName ?? "uid \(environment.userID)") is NOT authorized for action: access_pcsc\" in pcscd's log"],
                               fix: "allow the user with a polkit rule for org.debian.pcsc-lite.access_pcsc and access_card (/etc/polkit-1/rules.d/), or run the software in the user's active session")
        default:
            return DoctorCheck(id: "pcscd.answers", title: "pcscd answered with an error", status: .fail, evidence: ["\(error)"],
                               fix: "read pcscd's log: journalctl -u pcscd --since today")
        }
    }

    // MARK: - Readers and cards

    /// One physical reader as pcscd shows it.
    struct SeenReader: Sendable {
        var physical: String
        var slots: [ReaderInfo]
        var attributes: PCSCReaderAttributes?
        var entry: ReaderCatalog.Entry?
    }

    func readerSections(pcscAnswered: Bool) async -> (DoctorSection, DoctorSection, [SeenReader]) {
        guard pcscAnswered else {
            let skip = DoctorCheck(id: "readers.skipped", title: "readers not checked", status: .skip, evidence: ["pcscd does not answer (see above)"])
            return (DoctorSection(id: "readers", title: "Readers", checks: [skip]),
                    DoctorSection(id: "cards", title: "Cards", checks: [DoctorCheck(id: "cards.skipped", title: "cards not checked", status: .skip, evidence: ["pcscd does not answer"])]), [])
        }
        let infos: [ReaderInfo]
        do { infos = try await backend.readers() } catch {
            return (DoctorSection(id: "readers", title: "Readers", checks: [DoctorCheck(id: "readers.list", title: "the readers cannot be listed", status: .fail, evidence: ["\(error)"])]),
                    DoctorSection(id: "cards", title: "Cards", checks: [DoctorCheck(id: "cards.skipped", title: "cards not checked", status: .skip, evidence: ["the readers cannot be listed (see Readers)"])]), [])
        }
        var order: [String] = []
        var grouped: [String: [ReaderInfo]] = [:]
        for info in infos {
            if grouped[info.physicalReader] == nil { order.append(info.physicalReader) }
            grouped[info.physicalReader, default: []].append(info)
        }
        var seen: [SeenReader] = []
        for physical in order {
            let slots = grouped[physical] ?? []
            let attributes = await backend.attributes(of: slots[0].name)
            var entry: ReaderCatalog.Entry?
            if let v = attributes?.usbVendorID, let p = attributes?.usbProductID { entry = catalog.entry(vendor: v, product: p) }
            if entry == nil { entry = catalog.entry(readerName: physical) }
            seen.append(SeenReader(physical: physical, slots: slots, attributes: attributes, entry: entry))
        }
        var readerChecks: [DoctorCheck] = []
        if seen.isEmpty {
            readerChecks.append(DoctorCheck(id: "readers.none", title: "pcscd knows no reader", status: .fail,
                                            evidence: ["SCardListReaders: no reader"],
                                            fix: "plug the reader in (another USB port, no hub); if the USB section lists it, follow its fix; a serial or virtual reader needs its reader.conf.d entry and a pcscd restart"))
        }
        for r in seen { readerChecks.append(readerCheck(r)) }

        var cardChecks: [DoctorCheck] = []
        for r in seen {
            for slot in r.slots { if let c = await cardCheck(slot) { cardChecks.append(c) } }
        }
        if seen.isEmpty {
            // Every section says something: no reader, so no card could be checked.
            cardChecks.append(DoctorCheck(id: "cards.skipped", title: "cards not checked", status: .skip, evidence: ["pcscd knows no reader (see Readers)"]))
        } else if cardChecks.isEmpty {
            cardChecks.append(DoctorCheck(id: "cards.none", title: "no card in any slot", status: .info, evidence: ["insert a card to test the slot, its contacts and the card's answer"]))
        }
        return (DoctorSection(id: "readers", title: "Readers", checks: readerChecks), DoctorSection(id: "cards", title: "Cards", checks: cardChecks), seen)
    }

    func readerCheck(_ r: SeenReader) -> DoctorCheck {
        var evidence: [String] = []
        let contact = r.slots.filter { !$0.isContactless }
        evidence.append("\(r.slots.count) slot(s): " + r.slots.map { "\($0.name)\($0.isContactless ? " (contactless)" : "")" }.joined(separator: ", "))
        if contact.count >= 2 { evidence.append("bi-fente: \(contact[0].name) and \(contact[1].name) can hold the Vitale and the CPx card side by side") }
        let info = r.slots[0]
        evidence.append("vendor \(info.vendor ?? "unknown"), firmware \(info.firmwareVersion ?? "unknown"), serial \(info.serialNumber ?? "unknown")")
        if let v = r.attributes?.usbVendorID, let p = r.attributes?.usbProductID { evidence.append("USB \(v.hex):\(p.hex)") }
        if !info.features.isEmpty {
            evidence.append("features: " + info.features.joined(separator: ", "))
        }
        // FEATURE_VERIFY_PIN_DIRECT / MODIFY_PIN_DIRECT, or the START/FINISH pairs of older readers.
        let announcesPad = ["pin-verify", "pin-modify", "verify-pin-start", "modify-pin-start"].contains { info.features.contains($0) }
        if announcesPad {
            evidence.append(Self.pinPadEvidence(features: info.features, pad: r.attributes?.pinPad))
        }
        if let legacy = catalog.legacyName(r.physical) {
            return DoctorCheck(id: "reader.\(r.physical)", title: "\(r.physical): legacy GALSS/PSS mode (TL 3.30)", status: .fail,
                               evidence: evidence + ["the name \"\(legacy.pattern)…\" is the GALSS/PSS stack's (\(legacy.source))"], fix: catalog.legacyAdvice)
        }
        guard let entry = r.entry else {
            return DoctorCheck(id: "reader.\(r.physical)", title: "\(r.physical)", status: .ok, evidence: evidence + ["not in CarteKit's reader catalog"])
        }
        evidence.append("catalog: \(entry.name) — \(entry.layout)")
        if entry.pinPad && !announcesPad {
            return DoctorCheck(id: "reader.\(r.physical)", title: "\(r.physical): the \(entry.name) has a PIN pad but the reader announces none", status: .warn,
                               evidence: evidence + ["CM_IOCTL_GET_FEATURE_REQUEST lists no FEATURE_VERIFY_PIN_DIRECT or FEATURE_MODIFY_PIN_DIRECT; the catalog says this model has a PIN pad (\(entry.source))"],
                               fix: "software will ask for the PIN on the computer instead of the reader's keypad: make sure pcscd uses libccid for this reader (not a generic or vendor driver), update libccid and the reader's firmware, and check the reader's own PIN-pad setting")
        }
        if let listed = entry.listedFirmware.flatMap(Version.init), let firmware = info.firmwareVersion, let reported = Version(firmware) {
            if reported < listed {
                return DoctorCheck(id: "reader.\(r.physical)", title: "\(r.physical): firmware \(firmware) is older than the \(listed) libccid lists", status: .warn,
                                   evidence: evidence + ["libccid's descriptor for the \(entry.name) shows bcdDevice \(listed) (\(entry.source))"],
                                   fix: "update the reader's firmware to \(listed) or later with the vendor's tool (or ask the vendor's support); CarteKit knows \(listed) works with pcscd")
            }
            evidence.append("firmware \(firmware) is at least the \(listed) libccid lists")
        }
        return DoctorCheck(id: "reader.\(r.physical)", title: "\(r.physical)", status: .ok, evidence: evidence)
    }

    /// "secure PIN entry: verify and modify, display 16x2, PIN 4–8 digits…" from the part 10 answers.
    static func pinPadEvidence(features: [String], pad: PINPadCapabilities?) -> String {
        let verify = features.contains("pin-verify") || features.contains("verify-pin-start")
        let modify = features.contains("pin-modify") || features.contains("modify-pin-start")
        var parts = [[verify ? "verify" : nil, modify ? "modify" : nil].compactMap { $0 }.joined(separator: " and ")]
        if let pad {
            parts.append(pad.lcdLayout == 0 ? "no display" : "display \(pad.lcdLayout & 0xFF)x\(pad.lcdLayout >> 8) (characters x lines)")
            if let lo = pad.minimumPINLength, let hi = pad.maximumPINLength { parts.append("PIN \(lo)–\(hi) digits") }
            parts.append("bEntryValidationCondition \(pad.entryValidationCondition.hex)")
            parts.append("bTimeOut2 \(pad.timeout2)")
        }
        return "secure PIN entry (PC/SC part 10): " + parts.joined(separator: ", ")
    }

    /// A slot with a card: its ATR, kind, a SELECT MF and the round-trip time; `nil` for an empty slot.
    func cardCheck(_ slot: ReaderInfo) async -> DoctorCheck? {
        let state: SlotState
        do { state = try await backend.state(of: slot.name) } catch {
            return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): state unknown", status: .warn, evidence: ["\(error)"])
        }
        switch state {
        case .empty:
            return nil
        case .mute:
            return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card does not answer its reset (mute)", status: .warn,
                               evidence: ["SCardGetStatusChange: SCARD_STATE_MUTE"], fix: Doctor.muteFix)
        case .present(let atr):
            var evidence = ["ATR \(atr.hexString())"]
            if let parsed = try? ATR(bytes: atr) {
                evidence.append("protocols " + parsed.protocols.map { "\($0)" }.joined(separator: ", "))
            } else {
                evidence.append("the ATR is not valid ISO 7816-3")
            }
            let kind = CardKind.fromATR(atr)
            let label = KnownATR.identify(atr).first?.label ?? (kind == .apcv ? "a phone (appli carte Vitale, likely)" : "a card CarteKit does not know")
            evidence.append("card: \(label) (\(kind.name))")
            // Exclusive: the probe runs only when no other program has the card open, so it never changes
            // the current file (or anything else) under another program's session.
            let connection: any CardConnection
            do {
                connection = try await backend.connect(to: slot.name, share: .exclusive, protocols: [.t0, .t1])
            } catch .sharingViolation {
                let holders = pcscClients()
                let programs = holders.isEmpty ? ["no other PC/SC program found (it may run as another user)"] : ["programs using PC/SC: " + holders.joined(separator: ", ")]
                // Shared access tells whether the other program holds the card exclusively or only has it open.
                if let shared = try? await backend.connect(to: slot.name, share: .shared, protocols: [.t0, .t1]) {
                    try? await shared.disconnect(.leave)
                    return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card is in use by another program (not probed)", status: .info,
                                       evidence: evidence + ["SCardConnect exclusive: SCARD_E_SHARING_VIOLATION; shared: accepted"] + programs)
                }
                return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card is held exclusively by another program", status: .warn,
                                   evidence: evidence + ["SCardConnect: SCARD_E_SHARING_VIOLATION"] + programs,
                                   fix: "close the program holding the card (\(holders.first ?? "see the list")), or make it release the card between operations; then retry")
            } catch {
                return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card cannot be opened", status: .warn, evidence: evidence + ["\(error)"],
                                   fix: "remove and insert the card again; if it persists, try another card to tell a card fault from a reader fault")
            }
            var times: [Double] = []
            var answer: [UInt8] = []
            let clock = ContinuousClock()
            do {
                for _ in 0..<max(1, probeRoundTrips) {
                    let start = clock.now
                    answer = try await connection.transmit([0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])
                    times.append(milliseconds(clock.now - start))
                }
            } catch {
                try? await connection.disconnect(.leave)
                if case .cardMute = error {
                    return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card does not answer commands (mute)", status: .warn,
                                       evidence: evidence + ["SELECT MF: \(error)"], fix: Doctor.muteFix)
                }
                return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): the card fails a harmless command", status: .warn,
                                   evidence: evidence + ["SELECT MF: \(error)"], fix: "remove and insert the card again; try another card")
            }
            try? await connection.disconnect(.leave)
            times.sort()
            let median = times[times.count / 2]
            let sw = answer.count >= 2 ? answer.suffix(2).hexString(separator: "") : "?"
            evidence.append("SELECT MF answered \(sw) in \(String(format: "%.2f", median)) ms (median of \(times.count); the slowest \(String(format: "%.2f", times.last ?? 0)) ms)")
            return DoctorCheck(id: "card.\(slot.name)", title: "\(slot.name): \(label) answers", status: median > 500 ? .warn : .ok, evidence: evidence,
                               fix: median > 500 ? "a round trip over 500 ms: check the reader's cable and hub, and the card's contacts" : nil)
        }
    }

    static let muteFix = "take the card out, check it is inserted chip first and face up, wipe the chip; if another card answers in this slot, the card is faulty (ask for a replacement); if none does, the slot is at fault: clean its contacts with a cleaning card, or replace the reader"

    // MARK: - USB

    func usbChecks(_ result: Result<[USBDevice], USBError>, readers: [SeenReader], pcscAnswered: Bool) -> DoctorSection {
        let devices: [USBDevice]
        switch result {
        case .failure(let e):
            return DoctorSection(id: "usb", title: "USB (libusb \(USBInventory.libraryVersion))",
                                 checks: [DoctorCheck(id: "usb.list", title: "USB devices cannot be listed", status: .skip, evidence: [e.description])])
        case .success(let d): devices = d
        }
        let candidates = devices.filter { $0.hasCCIDInterface || catalog.entry(vendor: $0.vendorID, product: $0.productID) != nil }
        var checks: [DoctorCheck] = []
        if candidates.isEmpty {
            checks.append(DoctorCheck(id: "usb.none", title: "no USB smart card reader", status: .info,
                                      evidence: ["\(devices.count) USB device(s), none with a CCID interface or in the catalog"]))
        }
        let ccidInstalled = FileManager.default.fileExists(atPath: "\(environment.driverDirectory)/ifd-ccid.bundle/Contents/Info.plist")
        for d in candidates {
            let entry = catalog.entry(vendor: d.vendorID, product: d.productID)
            var evidence = ["\(d.id) at \(d.path) (bus \(d.bus), address \(d.address)): \(d.manufacturer ?? "?") \(d.product ?? "?")",
                            "bcdDevice \(d.release), serial \(d.serial ?? "none"), interfaces " + d.interfaces.map { String(format: "%02X", $0.interfaceClass) }.joined(separator: " ")]
            if let entry { evidence.append("catalog: \(entry.name) (\(entry.inLibCCID ? "listed by libccid" : "NOT listed by libccid"))") }
            let claimed = readers.first { r in
                if let v = r.attributes?.usbVendorID, let p = r.attributes?.usbProductID, v == d.vendorID && p == d.productID { return true }
                if let serial = d.serial, r.physical.contains("(\(serial))") { return true }
                if let entry, r.physical.lowercased().hasPrefix(entry.name.lowercased()) { return true }
                if let product = d.product, r.physical.lowercased().hasPrefix(product.lowercased()) { return true }
                return false
            }
            var status = CheckStatus.ok
            var fix: String?
            var title = "\(d.id) \(entry?.name ?? d.product ?? "USB reader")"
            if let claimed {
                evidence.append("pcscd's reader: \(claimed.physical)")
            } else if pcscAnswered {
                status = .warn
                title += ": pcscd has no reader for it"
                if let entry, !entry.inLibCCID {
                    fix = entry.remedy
                } else if !ccidInstalled {
                    fix = "install libccid (sudo apt install libccid), then unplug and plug the reader back"
                } else {
                    fix = "check the udev section (permissions) and pcscd's log (journalctl -u pcscd); unplug and plug the reader back"
                }
            } else {
                evidence.append("pcscd does not answer: whether it has a reader for this device is unknown")
            }
            if status == .ok, let entry, let listed = entry.listedFirmware.flatMap(Version.init), let reported = Version(d.release), reported < listed {
                status = .warn
                title += ": firmware \(d.release) is older than the \(listed) libccid lists"
                fix = "update the reader's firmware to \(listed) or later with the vendor's tool"
            }
            checks.append(DoctorCheck(id: "usb.\(d.path)", title: title, status: status, evidence: evidence, fix: fix))
        }
        return DoctorSection(id: "usb", title: "USB (libusb \(USBInventory.libraryVersion))", checks: checks)
    }

    // MARK: - udev

    func udevSection(_ usb: Result<[USBDevice], USBError>) -> DoctorSection {
        var checks: [DoctorCheck] = []
        var files: [(path: String, rules: UdevRules)] = []
        for dir in environment.udevRuleDirectories {
            for name in ["92-cartekit-readers.rules", "92_pcscd_ccid.rules"] {
                let path = "\(dir)/\(name)"
                if let text = try? String(contentsOfFile: path, encoding: .utf8) { files.append((path, UdevRules(text: text))) }
            }
        }
        let readersOnUSB: Bool
        if case .success(let devices) = usb {
            readersOnUSB = devices.contains { $0.hasCCIDInterface || catalog.entry(vendor: $0.vendorID, product: $0.productID) != nil }
        } else {
            readersOnUSB = true  // unknown: assume there are
        }
        if files.isEmpty {
            // Without a USB reader plugged in, nothing needs them yet.
            checks.append(DoctorCheck(id: "udev.rules", title: "no smart card reader udev rules", status: readersOnUSB ? .warn : .info,
                                      evidence: ["neither 92-cartekit-readers.rules nor libccid's 92_pcscd_ccid.rules in " + environment.udevRuleDirectories.joined(separator: ", ")],
                                      fix: Doctor.udevInstall))
        } else {
            checks.append(DoctorCheck(id: "udev.rules", title: "udev rules for readers are installed", status: .ok, evidence: files.map(\.path)))
        }
        if case .success(let devices) = usb {
            for d in devices where d.hasCCIDInterface || catalog.entry(vendor: d.vendorID, product: d.productID) != nil {
                let covering = files.first { $0.rules.covers(vendor: d.vendorID, product: d.productID, ccid: d.hasCCIDInterface) }
                if let covering {
                    checks.append(DoctorCheck(id: "udev.\(d.path)", title: "\(d.id) is covered by \(covering.path)", status: .ok,
                                              evidence: ["group \(covering.rules.group ?? "pcscd")"]))
                } else {
                    checks.append(DoctorCheck(id: "udev.\(d.path)", title: "\(d.id) is not covered by any reader udev rule", status: files.isEmpty ? .warn : .fail,
                                              evidence: [d.hasCCIDInterface ? "a CCID-class interface, but no class rule" : "no CCID-class interface and no VID:PID line for it"],
                                              fix: Doctor.udevInstall))
                }
            }
        }
        // The group the rules grant.
        if environment.userID == 0 {
            checks.append(DoctorCheck(id: "udev.group", title: "running as root: group membership does not apply", status: .info))
        } else if let group = getgrnam("pcscd") {
            let gid = group.pointee.gr_gid
            var count: Int32 = 64
            var groups = [gid_t](repeating: 0, count: 64)
            let name = environment.userName ?? ""
            if getgrouplist(name, getgid(), &groups, &count) < 0 {
                // More groups than room: `count` now says how many.
                groups = [gid_t](repeating: 0, count: Int(max(count, 1)))
                _ = getgrouplist(name, getgid(), &groups, &count)
            }
            let member = groups.prefix(Int(max(0, count))).contains(gid)
            checks.append(DoctorCheck(id: "udev.group", title: member ? "\(name) is in the pcscd group" : "\(name) is not in the pcscd group", status: member ? .ok : .info,
                                      evidence: ["the rules give the pcscd group access to the USB readers; pcscd uses it, programs talk to pcscd"],
                                      fix: member ? nil : "only needed to open readers without pcscd: sudo usermod -aG pcscd \(name), then log out and in"))
        } else {
            checks.append(DoctorCheck(id: "udev.group", title: "no pcscd group", status: .info, evidence: ["getgrnam(\"pcscd\"): none; the rules' GROUP=\"pcscd\" has no effect"],
                                      fix: "sudo groupadd --system pcscd, then reload the udev rules"))
        }
        return DoctorSection(id: "udev", title: "udev (device permissions)", checks: checks)
    }

    static let udevInstall = "sudo install -m 0644 udev/92-cartekit-readers.rules /etc/udev/rules.d/ && sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=usb --action=change (udev/README.md)"

    // MARK: - Helpers

    struct PCSCDProcess {
        var pid: Int32
        var arguments: [String]
        var commandLine: String { arguments.joined(separator: " ") }
    }

    func pcscdProcesses() -> [PCSCDProcess] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: environment.proc)) ?? []
        var out: [PCSCDProcess] = []
        for e in entries {
            guard let pid = Int32(e) else { continue }
            guard let comm = try? String(contentsOfFile: "\(environment.proc)/\(e)/comm", encoding: .utf8), comm.trimmingCharacters(in: .whitespacesAndNewlines) == "pcscd" else { continue }
            let raw = FileManager.default.contents(atPath: "\(environment.proc)/\(e)/cmdline") ?? Data()
            out.append(PCSCDProcess(pid: pid, arguments: raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }))
        }
        return out.sorted { $0.pid < $1.pid }
    }

    /// Other programs using libpcsclite (the candidates for a card held exclusively), as `name (pid N)`.
    func pcscClients() -> [String] {
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: environment.proc)) ?? []
        var out: [String] = []
        for e in entries {
            guard let pid = Int32(e), pid != me else { continue }
            guard let maps = try? String(contentsOfFile: "\(environment.proc)/\(e)/maps", encoding: .utf8), maps.contains("libpcsclite") || maps.contains("libpcscspy") else { continue }
            let comm = (try? String(contentsOfFile: "\(environment.proc)/\(e)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            out.append("\(comm) (pid \(pid))")
        }
        return out.sorted()
    }

    func pcscdVersion() -> (path: String, version: String?)? {
        guard let path = environment.pcscdPaths.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        let text = runProgram(path, ["--version"]).output
        guard let r = text.range(of: "pcsc-lite version ") else { return (path, nil) }
        let version = text[r.upperBound...].prefix { $0.isNumber || $0 == "." }
        return (path, String(version.hasSuffix(".") ? version.dropLast() : version))
    }

    func isSocket(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFSOCK
    }
}

/// The parts of a udev rules file that say which USB devices get which group.
struct UdevRules {
    var classRule = false
    var ids: Set<String> = []
    var group: String?

    init(text: String) {
        for line in text.split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            guard !l.hasPrefix("#"), !l.isEmpty else { continue }
            if l.contains("ID_USB_INTERFACES}==\"*:0b0000:*\"") { classRule = true }
            if let v = value(of: "ATTRS{idVendor}==", in: l) ?? value(of: "ATTR{idVendor}==", in: l),
               let p = value(of: "ATTRS{idProduct}==", in: l) ?? value(of: "ATTR{idProduct}==", in: l) {
                ids.insert("\(v.lowercased()):\(p.lowercased())")
            }
            if group == nil, let g = value(of: "GROUP=", in: l) { group = g }
        }
    }

    func covers(vendor: UInt16, product: UInt16, ccid: Bool) -> Bool {
        (ccid && classRule) || ids.contains("\(vendor.hex.lowercased()):\(product.hex.lowercased())")
    }

    private func value(of key: String, in line: String) -> String? {
        guard let r = line.range(of: key) else { return nil }
        let rest = line[r.upperBound...]
        guard rest.first == "\"", let end = rest.dropFirst().firstIndex(of: "\"") else { return nil }
        return String(rest[rest.index(after: rest.startIndex)..<end])
    }
}

/// Runs a program to completion (standard output and error together, no input) and returns its exit
/// status and output; status -1 when it cannot start. Blocking: call it on a thread of its own.
public func runProgram(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    p.standardInput = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return (-1, "cannot run \(path)") }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Milliseconds, rounded to 0.01.
func milliseconds(_ d: Duration) -> Double { (d.milliseconds * 100).rounded() / 100 }

/// Runs a blocking body on a thread of its own (never on the concurrency pool).
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
