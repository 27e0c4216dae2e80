import CarteBundledImages
import CarteCore
import CarteEmulator
import CarteImages
import Foundation
import Testing

func fixture(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name).path
}

func bundled(_ path: String) throws -> CardImage {
    let image = try #require(BundledImages.image(at: path))
    return try CardImageLoader.load(text: image.text, source: "bundled:" + path)
}

@Suite("Card image format")
struct CardImageLoaderTests {
    @Test func everyBundledImageLoadsAndSaysItIsSynthetic() throws {
        #expect(BundledImages.all.count >= 2)
        for b in BundledImages.all {
            if CPSPersonaCompiler.isPersona(b.text) {
                // CPx personas are built, not loaded; the format itself requires `synthetic: true`.
                #expect(!(try CPSPersonaCompiler.load(text: b.text, source: b.path)).name.isEmpty)
                continue
            }
            if ApCVPersonaCompiler.isPersona(b.text) {
                // Phone personas too: built (a key is generated), and synthetic by format.
                #expect(!(try ApCVPersonaCompiler.load(text: b.text, source: b.path)).name.isEmpty)
                #expect(throws: CardImageError.self) { try CardImageLoader.load(text: b.text, source: b.path) }
                continue
            }
            let image = try CardImageLoader.load(text: b.text, source: b.path)
            #expect(image.synthetic, "\(b.path) must be labelled synthetic")
            #expect(!image.name.isEmpty)
        }
        // The test PKI shipped with the images is a test PKI, and says so.
        #expect(BundledImages.testPKI.root.contains("BEGIN CERTIFICATE") && BundledImages.testPKI.rootKey.contains("PRIVATE KEY"))
    }

    @Test func bundledCopiesAreTheFilesInCardImages() throws {
        // The embedded text must be byte-for-byte the file in CardImages/ (one source of truth).
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for b in BundledImages.all {
            let onDisk = try String(contentsOf: root.appendingPathComponent("CardImages").appendingPathComponent(b.path), encoding: .utf8)
            #expect(onDisk == b.text)
        }
    }

    @Test func demoVitaleFollowsTheConfirmedFacts() throws {
        let image = try bundled("demo/vitale2-demo.yaml")
        #expect(image.atr == [0x3B, 0x75, 0x13, 0x00, 0x00, 0x45, 0x09, 0xEA, 0x90, 0x00])
        #expect(image.cardProtocol == .t0)
        #expect(image.behaviour.t0Responses)
        #expect(image.root.fid == 0x3F00)
        #expect(image.root.aid == Array("MF_VITALE".utf8).withPrefix([0xD2, 0x50, 0x00, 0x00, 0x02]))
        let vitale = image.root.children.compactMap { node -> CardImage.DedicatedFile? in
            if case .dedicated(let df) = node { return df } else { return nil }
        }.first
        #expect(vitale?.aid == Array("VITALE".utf8).withPrefix([0xD2, 0x50, 0x00, 0x00, 0x02]))
    }

    @Test("malformed images name the file, the line and the field", arguments: [
        ("bad-syntax.yaml", 8, "", "not valid YAML"),
        ("bad-atr.yaml", 5, "card.atr", "historical byte"),
        ("bad-hex.yaml", 13, "filesystem.files[1].files[0].data", "not hexadecimal"),
        ("unknown-field.yaml", 6, "card.protocl", "unknown field"),
        ("missing-synthetic.yaml", 1, "synthetic", "required field is missing"),
        ("future-format.yaml", 1, "format", "unsupported format"),
        ("duplicate-fid.yaml", 10, "filesystem.files[1]", "duplicate file identifier 2F00"),
        ("undefined-pin.yaml", 9, "filesystem.files[0].read", "PIN 81 is not defined"),
        ("primitive-with-children.yaml", 10, "filesystem.files[0].tlv[0].tag", "primitive"),
        ("wrong-protocol.yaml", 6, "card.protocol", "offers T=0"),
        ("unknown-security-operations.yaml", 6, "card.security-operations", "expected ias-ecc or chipdoc"),
    ])
    func malformed(file: String, line: Int, field: String, phrase: String) throws {
        let path = fixture(file)
        do {
            _ = try CardImageLoader.load(path: path)
            Issue.record("\(file) loaded but is malformed")
        } catch {
            #expect(error.file == path)
            #expect(error.line == line, "\(error)")
            #expect(error.field == field, "\(error)")
            #expect(error.description.contains(phrase), "\(error)")
            #expect(error.description.hasPrefix("\(path):\(line)"))
        }
    }

    @Test func specialFilesAreRefusedWithoutReading() {
        // A character device would never end: it must be refused from its type, not read.
        #expect {
            try CardImageLoader.load(path: "/dev/zero")
        } throws: { error in
            guard let e = error as? CardImageError, case .unreadable(let why) = e.problem else { return false }
            return why == "not a regular file"
        }
    }

    @Test func pinErrorsNeverQuoteThePIN() throws {
        let text = """
            format: 1
            name: bad pin
            synthetic: true
            card: { atr: 3B 00 }
            pins: [{ ref: "01", ascii: "12€4" }]
            filesystem: { files: [] }
            """
        #expect {
            try CardImageLoader.load(text: text, source: "inline")
        } throws: { error in
            let message = "\(error)"
            return message.contains("pins[0].ascii") && message.contains("character 3") && !message.contains("12") && !message.contains("€")
        }
        let hex = text.replacingOccurrences(of: "ascii: \"12€4\"", with: "value: 31 32 3G")
        #expect {
            try CardImageLoader.load(text: hex, source: "inline")
        } throws: { error in "\(error)".contains("`pins[0].value`: not hexadecimal bytes") && !"\(error)".contains("31 32") }
        // The loaded PIN never prints its value either.
        let ok = try CardImageLoader.load(text: text.replacingOccurrences(of: "12€4", with: "1234"), source: "inline")
        for shown in ["\(ok)", String(reflecting: ok), "\(ok.pins)"] {
            #expect(!shown.contains("49, 50, 51, 52") && !shown.contains("1234"))
        }
        var dumped = ""
        dump(ok.pins[0], to: &dumped)
        #expect(!dumped.contains("49") && dumped.contains("redacted 4 bytes"))
    }

    @Test func aliasBombsAreBounded() {
        var yaml = "format: 1\nname: bomb\nsynthetic: true\ncard: { atr: 3B 00 }\n"
        yaml += "a0: &a0 [{ tag: 80, text: x }, { tag: 80, text: x }]\n"
        for i in 1...20 { yaml += "a\(i): &a\(i) [*a\(i - 1), *a\(i - 1)]\n" }
        yaml += "filesystem: { files: [{ ef: \"0001\", tlv: [{ tag: A0, children: *a20 }] }] }\n"
        #expect(throws: CardImageError.self) { try CardImageLoader.load(text: yaml, source: "bomb") }
    }

    /// YAML keys that are not text are refused where they start, before Yams sorts duplicated keys
    /// (2^depth comparisons for nested sequences: the persona fuzz target's first timeout).
    @Test(arguments: [
        ("? [a]\n: 1\n", 1, 3, "a sequence"),
        ("format: 1\n[a, b]: 1\n", 2, 1, "a sequence"),
        ("format: 1\nx: &k a\nfiles:\n  - { *k : 2 }\n", 4, 7, "an alias"),
        ("format: 1\n? { a: 1 }\n: 2\n", 2, 3, "a mapping"),
    ])
    func nonTextKeysAreRefused(yaml: String, line: Int, column: Int, kind: String) {
        #expect {
            try CardImageLoader.load(text: yaml, source: "keys.yaml")
        } throws: { error in
            guard let e = error as? CardImageError, case .wrongType(let expected) = e.problem else { return false }
            return e.line == line && e.column == column && expected == "text keys, not \(kind) as a key"
        }
    }

    @Test(.timeLimit(.minutes(1))) func duplicatedDeepKeysDoNotBlowUp() {
        let deep = String(repeating: "[", count: 60) + "x" + String(repeating: "]", count: 60)
        let yaml = (0..<50).map { "? \(deep)\n: \($0)\n" }.joined()
        for load in [{ _ = try CardImageLoader.load(text: yaml, source: "deep.yaml") },
                     { _ = try CPSPersonaCompiler.load(text: yaml, source: "deep.yaml") },
                     { _ = try PersonaCompiler.load(text: yaml, source: "deep.yaml") },
                     { _ = try ReaderProfileLoader.load(text: yaml, source: "deep.yaml") }] as [() throws -> Void] {
            #expect(throws: CardImageError.self) { try load() }
        }
    }

    /// A root DF without FID (`fid: ~`) is written with its `fid: ~`: an empty one used to be written as
    /// a bare `filesystem:` that did not load again, and one with files loaded back as 3F00 (the card-image
    /// campaign's finding, Fuzz/Regressions/card-image/crash-a9c9095e…).
    @Test(arguments: ["filesystem:\n  fid: ~\n", "filesystem: { fid: ~, files: [ { ef: \"2F00\", data: 01 } ] }\n"])
    func aRootWithoutFIDIsWrittenAsIs(filesystem: String) throws {
        let image = try CardImageLoader.load(text: "format: 1\nname: n\nsynthetic: true\ncard: { atr: 3B 00 }\n" + filesystem, source: "root.yaml")
        #expect(image.root.fid == nil)
        #expect(try writtenAndLoaded(image).root == image.root)
    }

    @Test func keyLikeTextInValuesIsNotAKey() throws {
        let image = try CardImageLoader.load(text: """
            format: 1
            name: "[a]: b ? c *d : e"
            synthetic: true
            card: { atr: 3B 00 }
            filesystem: { files: [] }
            """, source: "text.yaml")
        #expect(image.name == "[a]: b ? c *d : e")
    }

    @Test func missingFileIsUnreadable() {
        #expect {
            try CardImageLoader.load(path: "/nonexistent/card.yaml")
        } throws: { error in
            guard let e = error as? CardImageError, case .unreadable(let why) = e.problem else { return false }
            return why == "no such file"
        }
    }

    @Test func contentForms() throws {
        let image = try CardImageLoader.load(text: """
            format: 1
            name: forms
            synthetic: true
            card: { atr: 3B 00 }
            pins: [{ ref: "01", value: 31 32 33 34, tries: 5, remaining: 2 }]
            filesystem:
              files:
                - { ef: "0001", text: "Éa", pad-to: 4, pad-byte: FF }
                - { ef: "0002", tlv: [{ tag: 5F20, text: AB, pad-to: 4 }] }
                - { ef: ~, sfi: 30, records: [01 02, { text: x }] }
            """, source: "inline")
        guard case .elementary(let a) = image.root.children[0], case .transparent(let bytes) = a.content else { Issue.record("EF 0001"); return }
        #expect(bytes == [0xC9, 0x61, 0xFF, 0xFF])  // ISO-8859-1 text, padded
        guard case .elementary(let b) = image.root.children[1], case .transparent(let tlv) = b.content else { Issue.record("EF 0002"); return }
        #expect(tlv == [0x5F, 0x20, 0x04, 0x41, 0x42, 0x20, 0x20])
        guard case .elementary(let c) = image.root.children[2], case .records(let records) = c.content else { Issue.record("records"); return }
        #expect(records == [[1, 2], [0x78]])
        #expect(c.fid == nil && c.sfi == 30)
        #expect(image.pins == [CardImage.PIN(reference: 1, value: [0x31, 0x32, 0x33, 0x34], maxTries: 5, remainingTries: 2)])
        #expect(image.cardProtocol == .t0)
    }

    /// `image` written and loaded again, with the source it had (the one field writing does not keep).
    private func writtenAndLoaded(_ image: CardImage) throws -> CardImage {
        var again = try CardImageLoader.load(text: CardImageWriter.yaml(image), source: "again.yaml")
        again.source = image.source
        return again
    }

    @Test func everyBundledImageIsWrittenAndLoadedAgainTheSame() throws {
        var count = 0
        for b in BundledImages.all where !CPSPersonaCompiler.isPersona(b.text) && !ApCVPersonaCompiler.isPersona(b.text) {
            guard let image = try? CardImageLoader.load(text: b.text, source: b.path) else { continue }
            #expect(try writtenAndLoaded(image) == image, "\(b.path)")
            count += 1
        }
        #expect(count >= 20)
    }

    /// Text YAML would fold, refuse or misread inside quotes: line breaks (LF, CR, NEL, LS, PS), tab,
    /// control characters, the byte-order mark, and a backslash or a quote carrying a combining mark
    /// (one character, two scalars: escaping by character missed them).
    @Test(arguments: ["a\nb", "a\r\nb", "tab\there", "nel\u{85}ls\u{2028}ps\u{2029}", "nul\u{0}del\u{7F}c1\u{9B}",
                      "bom\u{FEFF}", "\\\u{301}n", "\"\u{301}", " lead and trail ", "é€😀\u{10FFFF}", ""])
    func textComesBackScalarForScalar(text: String) throws {
        var image = try bundled("demo/iso-generic.yaml")
        image.name = text
        image.summary = text
        try #require(!image.pins.isEmpty)
        image.pins[0].label = text
        let again = try writtenAndLoaded(image)
        #expect(Array(again.name.unicodeScalars) == Array(text.unicodeScalars))
        #expect(Array((again.summary ?? "-").unicodeScalars) == Array(text.unicodeScalars))
        #expect(Array((again.pins.first?.label ?? "-").unicodeScalars) == Array(text.unicodeScalars))
        #expect(again == image)
    }

    /// A key's PEM is written as a literal block when that gives it back exactly, and quoted otherwise
    /// (text before the armour, blank lines, CR LF, no final line break), never changed.
    @Test func privateKeyTextIsKeptExactly() throws {
        let image = try bundled("cps/medecin-liberal.yaml")
        let pem = try #require(image.keys.first?.privateKeyPEM)
        #expect(CardImageWriter.yaml(image).contains("private-key: |"))
        for variant in [pem, "issued for tests\n\n" + pem, pem + "\n", String(pem.dropLast())] {
            var changed = image
            changed.keys[0].privateKeyPEM = variant
            let again = try writtenAndLoaded(changed)
            #expect(Array(again.keys[0].privateKeyPEM.unicodeScalars) == Array(variant.unicodeScalars))
            #expect(again == changed)
        }
    }

    @Test func transcriptTimesAreKeptToTheMicrosecond() throws {
        let image = try CardImageLoader.load(text: """
            format: 1
            name: timed
            synthetic: true
            card: { atr: 3B 00 }
            filesystem: { files: [] }
            replay:
              transcript:
                - { command: 00 A4 04 00, response: 90 00, ms: 1.23456 }
                - { command: 00 B0 00 00, response: 90 00, ms: 0.0004 }
                - { command: 00 B0 00 01, response: 90 00, ms: 7 }
            """, source: "timed.yaml")
        #expect(image.replay?.transcript.map(\.milliseconds) == [1.235, 0, 7])
        #expect(try writtenAndLoaded(image) == image)
        #expect(throws: CardImageError.self) {
            try CardImageLoader.load(text: "format: 1\nname: t\nsynthetic: true\ncard: { atr: 3B 00 }\nfilesystem: { files: [] }\nreplay: { transcript: [{ command: 00 A4 04 00, response: 90 00, ms: 1e307 }] }\n", source: "huge.yaml")
        }
    }
}

extension Array where Element == UInt8 {
    func withPrefix(_ prefix: [UInt8]) -> [UInt8] { prefix + self }
}
