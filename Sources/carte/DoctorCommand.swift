import ArgumentParser
import CarteDoctor
import CartePCSC
import CarteUSB
import Foundation

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Diagnose pcscd, the readers, their firmware, USB, udev and the cards: what is wrong and how to fix it.",
        discussion: """
            One report in sections — pcscd (installed, version, running, socket, answer, socket activation, \
            auto-exit, polkit), readers (slots, vendor, firmware against CarteKit's reader catalog, serial, \
            features, bi-fente pairs, the legacy GALSS/PSS mode), cards (ATR, card type, a harmless SELECT MF \
            and its latency, a card held exclusively by another program and which programs use PC/SC), USB \
            through libusb (CCID readers, VID:PID, bcdDevice, serial, whether pcscd has a reader for each, \
            the Ingenico 0B00:0090 case) and udev (rules installed and covering the readers, the group they \
            grant). Each check has a status (ok, info, skip, warn, fail), its evidence and the fix.

            Nothing is written to a card: a card is probed (SELECT MF only) when no other program has it \
            open; one in use is reported, not touched. Always uses pcscd \
            (the PC/SC backend); PCSCLITE_CSOCK_NAME selects another pcscd socket.

            --bundle FILE writes a tar.gz for a support ticket: the report (text and JSON), versions, and \
            pcscd's log excerpt (journalctl, or --pcscd-log FILE) with APDU bytes, host and user names removed.

            Exit status: 0 when no check fails (warnings allowed), 7 when one fails.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Also write a support bundle (tar.gz): report, versions, pcscd log excerpt, personal data removed.", valueName: "FILE"))
    var bundle: String?

    @Option(name: .customLong("pcscd-log"), help: ArgumentHelp("The pcscd log to excerpt in the bundle (default: journalctl -u pcscd).", valueName: "FILE"))
    var pcscdLog: String?

    @Flag(help: "No colours in the text report (default: colours on a terminal).")
    var noColor = false

    func run() async throws {
        let logger = global.makeLogger()
        try await reporting(json: global.json) {
            // The files are checked before the report is printed: one JSON document on standard output,
            // the report's or the error's, never both.
            if let bundle { try FileIO.checkWritable(bundle, "the support bundle, --bundle") }
            if let pcscdLog { _ = try FileIO.read(pcscdLog, "pcscd's log, --pcscd-log") }
            let doctor = Doctor(backend: PCSCBackend(logger: logger), carteVersion: CarteVersion.string, logger: logger)
            let report = await doctor.run()
            if global.json { Output.printJSON(report) } else { print(report.text(colour: !noColor && isatty(1) != 0)) }
            if let bundle { try await writeBundle(report, to: bundle) }
            if report.status == .fail { throw ExitCode(CarteExit.diagnosticFailed) }
        }
    }

    /// The support bundle: report.txt, report.json, versions.txt, pcscd-log.txt, with personal data removed.
    func writeBundle(_ report: DoctorReport, to path: String) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("carte-doctor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let redact = Redactor()
        let json = Output.json(report)
        var versions = ["carte \(CarteVersion.withCommit)", "libusb \(USBInventory.libraryVersion)"]
        versions.append(await onDedicatedThread { runProgram("/usr/sbin/pcscd", ["--version"]).output.split(separator: "\n").first.map(String.init) ?? "pcscd: not found" })
        let uname = await onDedicatedThread { runProgram("/bin/uname", ["-srm"]).output }
        versions.append("kernel " + uname.trimmingCharacters(in: .whitespacesAndNewlines))
        if let plist = try? String(contentsOfFile: "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist", encoding: .utf8),
           let r = plist.range(of: "<key>CFBundleShortVersionString</key>") {
            let rest = plist[r.upperBound...]
            if let open = rest.range(of: "<string>"), let close = rest.range(of: "</string>") { versions.append("libccid \(rest[open.upperBound..<close.lowerBound])") }
        } else {
            versions.append("libccid: not installed")
        }
        let log: String
        if let pcscdLog {
            log = String(String(decoding: try FileIO.read(pcscdLog, "pcscd's log, --pcscd-log"), as: UTF8.self)
                .split(separator: "\n", omittingEmptySubsequences: false).suffix(400).joined(separator: "\n"))
        } else if FileManager.default.isExecutableFile(atPath: "/bin/journalctl") {
            log = await onDedicatedThread { runProgram("/bin/journalctl", ["-u", "pcscd", "-n", "400", "--no-pager"]).output }
        } else {
            log = "no journalctl on this machine; give the log with --pcscd-log FILE"
        }
        let files: [(String, String)] = [("report.txt", report.text(colour: false)), ("report.json", json), ("versions.txt", versions.joined(separator: "\n") + "\n"),
                                         ("pcscd-log.txt", Redactor.apduFree(log))]
        for (name, text) in files { try redact(text).write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        let tar = await onDedicatedThread { runProgram("/bin/tar", ["-czf", path, "-C", dir.path, "report.txt", "report.json", "versions.txt", "pcscd-log.txt"]) }
        guard tar.status == 0 else { throw FileIO.failure(path, "the support bundle, --bundle", writing: true) }
        if !global.json { Output.stderr("wrote \(path): report, versions and pcscd's log (APDU bytes, host and user names removed)") }
    }
}

/// Removes what identifies a person or a machine from the bundle's texts.
struct Redactor: Sendable {
    let replacements: [(String, String)]

    init() {
        var r: [(String, String)] = []
        var host = [CChar](repeating: 0, count: 256)
        if gethostname(&host, host.count) == 0 {
            let name = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // The full name and the short one the journal shows.
            r.append((name, "<host>"))
            if let short = name.split(separator: ".").first, short.count < name.count { r.append((String(short), "<host>")) }
        }
        if let home = ProcessInfo.processInfo.environment["HOME"], home.count > 1 { r.append((home, "<home>")) }
        var users = ["USER", "LOGNAME", "SUDO_USER"].compactMap { ProcessInfo.processInfo.environment[$0] }
        if let pw = getpwuid(getuid()), let name = String(validatingCString: pw.pointee.pw_name) { users.append(name) }
        for user in users where user != "root" { r.append((user, "<user>")) }
        replacements = r.filter { $0.0.count >= 2 }.sorted { $0.0.count > $1.0.count }
    }

    /// `text` with the host, home and user names replaced, as whole words only (a host named "dev"
    /// leaves "udev" alone).
    func callAsFunction(_ text: String) -> String {
        replacements.reduce(text) { text, pair in
            let pattern = "(?<![A-Za-z0-9_.-])" + NSRegularExpression.escapedPattern(for: pair.0) + "(?![A-Za-z0-9_-])"
            guard let regex = try? NSRegularExpression(pattern: pattern) else { return text }
            return regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: NSRegularExpression.escapedTemplate(for: pair.1))
        }
    }

    /// The card data in a pcscd log is removed: the bytes of pcscd's `--apdu` lines and of libccid's
    /// traffic dumps (`->` / `<-`, with `LIBCCID_ifdLogLevel` COMM).
    static func apduFree(_ log: String) -> String {
        log.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { line -> String in
            for marker in ["APDU: ", "SW: ", "-> ", "<- "] {
                if let r = line.range(of: marker) { return String(line[..<r.upperBound]) + "[bytes removed]" }
            }
            return String(line)
        }.joined(separator: "\n")
    }
}
