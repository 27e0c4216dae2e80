import Foundation
import Testing

/// #38: the defects a new user found, each with the kind of defect checked wherever it occurs.
@Suite("What a new user found (#38)", .serialized)
struct NewUserDefectTests {
    // MARK: Item 2 — which card a command takes

    @Test func readTakesAVitaleOrAPhoneNeverACPS() throws {
        // A CPS in the bi-fente, a phone on the contactless reader: the phone is read.
        let phone = try Carte.run(["read", "--json", "--profile", "bi-fente", "--profile", "contactless",
                                   "--image", "CarteKit Virtual Bi-fente 00 01=bundled:cps/medecin-liberal.yaml",
                                   "--image", "CarteKit Virtual Contactless=bundled:apcv/claire-exemple.yaml"])
        #expect(phone.status == 0, "\(phone.stderr)")
        #expect(phone.json["generation"] as? String == "apcv")
        // The phone's reader listed first, a Vitale in the bi-fente: the card is preferred.
        let card = try Carte.run(["read", "--json", "--profile", "contactless", "--profile", "bi-fente",
                                  "--image", "CarteKit Virtual Contactless=bundled:apcv/claire-exemple.yaml",
                                  "--image", "CarteKit Virtual Bi-fente 01 00=bundled:vitale/twins.yaml"])
        #expect(card.status == 0, "\(card.stderr)")
        #expect(card.json["generation"] as? String == "vitale2" && card.json["reader"] as? String == "CarteKit Virtual Bi-fente 01 00")
        // Only a CPS: read says there is no Vitale and names what it saw, without touching the CPS.
        let none = try Carte.run(["read", "--profile", "bi-fente", "--image", "CarteKit Virtual Bi-fente 00 01=bundled:cps/medecin-liberal.yaml"])
        #expect(none.status == 3 && none.stderr.contains("no Carte Vitale") && none.stderr.contains("Bi-fente 00 01 (CPS3"), "\(none.stderr)")
        // And cps takes the CPS whatever slot comes first.
        let cps = try Carte.run(["cps", "info", "--json", "--profile", "bi-fente", "--image", "CarteKit Virtual Bi-fente 00 00=bundled:vitale/twins.yaml",
                                 "--image", "CarteKit Virtual Bi-fente 00 01=bundled:cps/medecin-liberal.yaml"])
        #expect(cps.status == 0 && cps.json["reader"] as? String == "CarteKit Virtual Bi-fente 00 01", "\(cps.stderr)")
    }

    @Test func readerNamesAmbiguousOrAbsentAreSaidAsSuch() throws {
        let ambiguous = try Carte.run(["apdu", "--profile", "bi-fente", "--reader", "CarteKit Virtual Bi-fente", "00A4000000"])
        #expect(ambiguous.status == 3 && ambiguous.stderr.contains("names several readers"), "\(ambiguous.stderr)")
        let noReader = try Carte.run(["read", "--backend", "pcsc", "--json"], environment: ["PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"])
        #expect(!noReader.stdout.contains("(any)"), "\(noReader.stdout)")
        let empty = try Carte.run(["apdu", "--profile", "bi-fente", "--no-card", "00A4000000"])
        #expect(empty.status == 3 && empty.stderr.contains("no card in any reader"), "\(empty.stderr)")
    }

    // MARK: Item 3 — errors that are messages

    @Test func fileErrorsSayWhichFileForWhatAndWhy() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("carte-files-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("doc.txt").path
        try "ordonnance".write(toFile: file, atomically: true, encoding: .utf8)
        let missing = dir.appendingPathComponent("nothing/here.yaml").path
        let cases: [([String], String?, String)] = [
            (["image", "build", "bundled:cps/personas/medecin-liberal.persona.yaml", "-o", dir.path], nil, "it is a directory"),
            (["image", "build", "bundled:cps/personas/medecin-liberal.persona.yaml", "-o", missing], nil, "does not exist"),
            (["record", "-o", dir.path], nil, "it is a directory"),
            (["cps", "sign", dir.appendingPathComponent("nofile").path], "1234\n", "no such file"),
            (["cps", "sign", file, "-o", dir.path], "1234\n", "it is a directory"),
            (["apdu", "--script", dir.path], nil, "it is a directory"),
            (["doctor", "--json", "--bundle", missing], nil, "does not exist"),
            (["doctor", "--pcscd-log", dir.appendingPathComponent("none.log").path, "--bundle", dir.appendingPathComponent("b.tgz").path], nil, "no such file"),
        ]
        for (arguments, stdin, why) in cases {
            let r = try Carte.run(arguments + ["--json"], stdin: stdin)
            let error = r.json["error"] as? [String: Any] ?? [:]
            #expect(r.status == 2, "\(arguments): \(r.status) \(r.stdout) \(r.stderr)")
            #expect(error["kind"] as? String == "file", "\(arguments): \(r.stdout)")
            #expect((error["message"] as? String)?.contains(why) == true, "\(arguments): \(r.stdout)")
            // One JSON document, nothing raw.
            #expect(r.stdout.components(separatedBy: "\"schema\"").count == 2 && !r.stdout.contains("NSCocoaErrorDomain") && !r.stderr.contains("NSCocoaErrorDomain"), "\(arguments): \(r.stdout)")
        }
        // Nothing was signed when the output could not be written (the PIN was not even asked for).
        let sign = try Carte.run(["cps", "sign", file, "-o", dir.path], stdin: "1234\n")
        #expect(!sign.stdout.contains("signed"))
    }

    @Test func aDaemonRefusingAnImageSaysWhyWithExit2() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("carte-daemon-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("sim.sock").path
        let daemon = Process()
        daemon.executableURL = Carte.binary
        daemon.arguments = ["sim", "serve", "--socket", socket, "--profile", "bi-fente"]
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
        defer { daemon.terminate(); daemon.waitUntilExit() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
        for (image, why) in [("nofile.yaml", "no such file"), (dir.path, "it is a directory"), ("bundled:nope.yaml", "no bundled image")] {
            let r = try Carte.run(["sim", "insert", "--socket", socket, "0", "0", image, "--json"])
            let error = r.json["error"] as? [String: Any] ?? [:]
            #expect(r.status == 2 && error["kind"] as? String == "image", "\(image): \(r.stdout)")
            let message = error["message"] as? String ?? ""
            #expect(message.contains(why) && !message.contains("CLIError"), "\(image): \(message)")
        }
        let slot = try Carte.run(["sim", "insert", "--socket", socket, "0", "7", "bundled:demo/vitale2-demo.yaml", "--json"])
        #expect(slot.status == 3 && (slot.json["error"] as? [String: Any])?["kind"] as? String == "reader", "\(slot.stdout)")
    }

    // MARK: Item 11 — help

    /// ArgumentParser wraps help at 80 columns: a hard-wrapped line longer than that, or a list line,
    /// comes out broken mid-phrase. Every command's discussion keeps its hard lines within 80 columns.
    @Test func everyHelpTextFitsEightyColumns() throws {
        let dump = try Carte.run(["--experimental-dump-help"])
        let root = try #require((try? JSONSerialization.jsonObject(with: Data(dump.stdout.utf8))) as? [String: Any])
        var problems: [String] = []
        func walk(_ command: [String: Any], _ path: String) {
            let lines = (command["discussion"] as? String ?? "").components(separatedBy: "\n")
            for (i, line) in lines.enumerated() where line.count > 80 {
                // A paragraph on one line is wrapped by ArgumentParser at word boundaries: fine, as long
                // as the next line starts something else (a blank line, an indented list, the end).
                let alone = !line.hasPrefix(" ") && (i == lines.count - 1 || lines[i + 1].isEmpty || lines[i + 1].hasPrefix(" "))
                if !alone { problems.append("\(path): \(line)") }
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] { walk(sub, path + " " + (sub["commandName"] as? String ?? "?")) }
        }
        walk(try #require(root["command"] as? [String: Any]), "carte")
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        // The exit codes as the user sees them: every line a code or its indented continuation.
        let help = try Carte.run(["--help"]).stdout
        let exitCodes = help.components(separatedBy: "EXIT CODES:\n")[1].components(separatedBy: "\n\n")[0]
        for line in exitCodes.components(separatedBy: "\n") { #expect(line.hasPrefix("  "), "\(line)") }
        for code in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "64"] { #expect(exitCodes.contains("  \(code) "), "exit code \(code)") }
    }

    @Test func helpForACommandThatDoesNotExistIsAnError() throws {
        for words in [["help", "nope"], ["help", "cps", "nope"]] {
            let r = try Carte.run(words)
            #expect(r.status == 64 && r.stderr.contains("no command") && r.stdout.isEmpty, "\(words): \(r.status) \(r.stderr)")
        }
        let real = try Carte.run(["help", "cps", "pin"])
        #expect(real.status == 0 && real.stdout.contains("PIN status"))
    }

    @Test func theREADMECommandsAreRunnableAsWritten() throws {
        let readme = try String(contentsOf: Carte.repository.appendingPathComponent("README.md"), encoding: .utf8)
        // Every `carte sim keypad` the README shows names the daemon's socket.
        for line in readme.components(separatedBy: "\n") where line.contains("sim keypad") && !line.contains("--socket") {
            #expect(readme.contains("sim keypad --socket"), "README: \(line)")
        }
        for code in ["7 `carte doctor`", "8 the rights service"] { #expect(readme.contains(code), "README exit codes: \(code)") }
    }
}

extension NewUserDefectTests {
    // MARK: Item 4 — the terminal after Ctrl-C at a PIN prompt

    /// A real terminal (a pty made by Python's `pty`): the prompt turns echo off; Ctrl-C ends the
    /// program by SIGINT and the terminal has its echo back.
    @Test(arguments: ["\u{03}"])
    func anInterruptedPINPromptGivesTheTerminalItsEchoBack(_ key: String) throws {
        let script = """
            import os, pty, sys, termios, time, select
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[1], [sys.argv[1], 'cps', 'pin', 'verify'])
            buf = b''
            deadline = time.time() + 30
            while b'PIN: ' not in buf and time.time() < deadline:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try: buf += os.read(fd, 1024)
                    except OSError: break
            time.sleep(0.5)
            during = termios.tcgetattr(fd)[3] & termios.ECHO != 0
            os.write(fd, sys.argv[2].encode())
            _, status = os.waitpid(pid, 0)
            after = termios.tcgetattr(fd)[3] & termios.ECHO != 0
            print(b'PIN: ' in buf, during, after, os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script, Carte.binary.path, key]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let expectedSignal = "2"  // SIGINT, as without the prompt
        #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == "True False True \(expectedSignal)", "prompt, echo during, echo after, signal: \(text)")
    }
}

extension NewUserDefectTests {
    // MARK: Item 5 — carte watch

    @Test func watchSaysWhatIsThereThenTheChangesAndFailsWithoutReaders() throws {
        let r = try Carte.run(["watch", "--json", "--seconds", "0.5"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        let events = lines.map { "\($0["event"] ?? "?") \($0["reader"] ?? "?")" }
        #expect(events == ["reader-present CarteKit Virtual Bi-fente 00 00", "card-present CarteKit Virtual Bi-fente 00 00",
                           "reader-present CarteKit Virtual Bi-fente 00 01"], "\(r.stdout)")
        #expect(lines.allSatisfy { $0["schema"] as? String == "carte.event/1" })
        #expect(lines[1]["atr"] as? String == "3B 75 13 00 00 45 09 EA 90 00")
        // No pcscd: said at once (exit 3), not a silence until Ctrl-C.
        let start = Date()
        let none = try Carte.run(["watch", "--backend", "pcsc", "--json"], environment: ["PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"])
        #expect(none.status == 3 && Date().timeIntervalSince(start) < 10, "\(none.stdout)")
        #expect((none.json["error"] as? [String: Any])?["message"] as? String ?? "" != "", "\(none.stdout)")
    }
}

extension NewUserDefectTests {
    // MARK: Item 8 — checks done before the work, not after

    @Test func whatCanBeCheckedFirstIsCheckedFirst() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("carte-expired-\(getpid()).txt").path
        try "ordonnance".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        // An expired card: nothing signed, the PIN not even asked for (standard input left unread).
        let expired = try Carte.run(["cps", "sign", file, "--image", "bundled:cps/expiree.yaml", "--json"], stdin: "1234\n")
        let error = expired.json["error"] as? [String: Any] ?? [:]
        #expect(expired.status == 3 && error["kind"] as? String == "certificate" && (error["message"] as? String)?.contains("expired on 2024-06-30") == true, "\(expired.stdout)")
        let anyway = try Carte.run(["cps", "sign", file, "--image", "bundled:cps/expiree.yaml", "--allow-invalid-certificate", "--json"], stdin: "1234\n")
        #expect(anyway.status == 0 && anyway.json["verified"] as? Bool == true, "\(anyway.stdout)\(anyway.stderr)")
        // A NIR whose key is wrong: said before any PIN, card or TLS (no service listens on port 9).
        let nir = try Carte.run(["rights", "--nir", "172056912304599", "--service", "127.0.0.1:9"], stdin: "1234\n")
        #expect(nir.status == 64 && nir.stderr.contains("call for 22"), "\(nir.stderr)")
        // A software id no token can carry.
        for id in ["", String(repeating: "X", count: 33)] {
            let qr = try Carte.run(["sim", "apcv-qr", "--software-id", id])
            #expect(qr.status == 64 && qr.stderr.contains("1 to 32 bytes"), "\(qr.stderr)")
        }
        #expect(try Carte.run(["sim", "apcv-qr", "--software-id", String(repeating: "X", count: 32)]).status == 0)
        // A card given where a phone is expected, an image with --no-card: refused, not dropped.
        let notPhone = try Carte.run(["sim", "apcv-service", "--listen", "127.0.0.1:0", "--phone", "bundled:vitale/twins.yaml"])
        #expect(notPhone.status == 2 && notPhone.stderr.contains("is not a phone image"), "\(notPhone.stderr)")
        let readPhone = try Carte.run(["read", "--qr", "APCV1:AAAA", "--apcv-phone", "bundled:vitale/twins.yaml"])
        #expect(readPhone.status == 2 && readPhone.stderr.contains("is not a phone image"), "\(readPhone.stderr)")
        let noCard = try Carte.run(["apdu", "--no-card", "--image", "bundled:vitale/twins.yaml", "00A4000000"])
        #expect(noCard.status == 64 && noCard.stderr.contains("--no-card"), "\(noCard.stderr)")
    }

    // MARK: Item 9 — wording

    @Test func messagesSayWhatHappened() throws {
        // A port in use: said as such, exit 2 (not "cannot be reached", not a reader problem).
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        _ = listen(listener, 1)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        for service in ["apcv-service", "rights-service"] {
            let r = try Carte.run(["sim", service, "--listen", "127.0.0.1:\(port)"])
            #expect(r.status == 2 && r.stderr.contains("already in use") && !r.stderr.contains("cannot be reached"), "\(service): \(r.stderr)")
        }
        // A directory given as a reader profile: said as such (not "larger than 1 MiB").
        let profile = try Carte.run(["apdu", "--profile", FileManager.default.temporaryDirectory.path, "00A4000000"])
        #expect(profile.status == 2 && profile.stderr.contains("it is a directory"), "\(profile.stderr)")
        // Negative durations: the option's own check, not "Missing value".
        for arguments in [["watch", "--seconds", "-1"], ["sim", "fault", "--socket", "/nonexistent", "0", "0", "slow", "--ms", "-5"],
                          ["sim", "keypad", "--socket", "/nonexistent", "0", "0", "--after", "-3", "--digits", "1234"]] {
            let r = try Carte.run(arguments)
            #expect(r.status == 64 && !r.stderr.contains("Missing value") && r.stderr.contains(arguments.first { $0.hasPrefix("--") && $0 != "--socket" && $0 != "--digits" }!), "\(arguments): \(r.stderr)")
        }
        // A card record cannot tell apart: no "is unknown card".
        let record = try Carte.run(["record", "-o", FileManager.default.temporaryDirectory.appendingPathComponent("r-\(getpid()).yaml").path, "--image", "bundled:demo/iso-generic.yaml"])
        #expect(record.status == 3 && !record.stderr.contains("is unknown") && record.stderr.contains("--session"), "\(record.stderr)")
    }
}
