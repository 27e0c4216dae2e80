public import CarteEmulator
import CarteCore
import Foundation

/// Writes a ``CardImage`` in the `carte-image/1` text format (what `carte image build` produces).
/// Loading the text gives the same image back.
public enum CardImageWriter {
    /// The YAML text of `image`.
    public static func yaml(_ image: CardImage) -> String {
        var out: [String] = []
        func hex(_ b: [UInt8]) -> String { b.isEmpty ? "\"\"" : b.hexString() }
        /// A file identifier, or `~` for a file without one (what the loader reads back as none).
        func fid(_ f: UInt16?) -> String { f.map { quote($0.hex) } ?? "~" }
        if let r = image.recorded {
            out.append("# Written by `carte record` from \(r.reader) on \(r.date): the card's data as read (anonymise before sharing).")
        } else {
            out.append("# Written by `carte image build`\(image.source.map { " from \($0)" } ?? "")\(image.synthetic ? " — SYNTHETIC" : "").")
        }
        out.append("format: carte-image/\(CardImage.currentFormat)")
        out.append("name: \(quote(image.name))")
        out.append("synthetic: \(image.synthetic)")
        if let s = image.summary { out.append("description: \(quote(s))") }
        out.append("card:")
        out.append("  atr: \(image.atr.hexString())")
        out.append("  protocol: \(image.cardProtocol)")
        out.append("  t0-responses: \(image.behaviour.t0Responses)")
        out.append("  classes: [\(image.behaviour.classes.sorted().map { quote($0.hex) }.joined(separator: ", "))]")
        if !image.behaviour.selectRejectedP2.isEmpty {
            out.append("  select-rejected-p2: [\(image.behaviour.selectRejectedP2.sorted().map { quote($0.hex) }.joined(separator: ", "))]")
        }
        out.append("  challenge-seed: \(image.behaviour.challengeSeed)")
        if image.behaviour.cps2terVolet { out.append("  cps2ter-volet: true") }
        if image.behaviour.securityAttributesInFCP { out.append("  security-attributes-in-fcp: true") }
        if image.behaviour.logicalChannels != 1 { out.append("  logical-channels: \(image.behaviour.logicalChannels)") }
        if image.behaviour.securityOperations != .iasECC { out.append("  security-operations: \(image.behaviour.securityOperations.rawValue)") }
        if let m = image.memory {
            out.append("  memory:")
            out.append("    class: \(quote(m.cla.hex))")
            out.append("    first-address: \(quote(m.firstAddress.hex))")
            out.append("    word-size: \(m.wordSize)")
            out.append("    data: \(hex(m.data))")
        }
        if !image.pins.isEmpty {
            out.append("pins:")
            for p in image.pins {
                out.append("  - ref: \(quote(p.reference.hex))")
                out.append("    value: \(hex(p.value))")
                out.append("    tries: \(p.maxTries)")
                out.append("    remaining: \(p.remainingTries)")
                if let l = p.label { out.append("    label: \(quote(l))") }
                if let u = p.unblockedBy { out.append("    unblocked-by: \(quote(u.hex))") }
                if let u = p.usageCounter { out.append("    usage-counter: \(u)") }
            }
        }
        if !image.keys.isEmpty {
            out.append("keys:")
            for k in image.keys {
                out.append("  - ref: \(quote(k.reference.hex))")
                if let l = k.label { out.append("    label: \(quote(l))") }
                out.append("    usage: [\(CardImage.Key.Usage.allCases.filter(k.usages.contains).map(\.rawValue).joined(separator: ", "))]")
                out.append("    use: \(quote(k.use.description))")
                out.append(contentsOf: block("    private-key", k.privateKeyPEM, indent: "      "))
            }
        }
        if let phone = image.apcv {
            out.append("apcv:                        # SYNTHETIC appli carte Vitale (docs/apcv.md)")
            out.append("  aid: \(phone.aid.hexString())")
            out.append("  key-id: \(quote(phone.keyID))")
            out.append("  subject: \(phone.subject.hexString())")
            out.append("  token-lifetime: \(phone.tokenLifetime)")
            out.append("  identity: \(quote(phone.identity))")
            out.append("  consent: \(phone.consent.rawValue)")
            out.append(contentsOf: block("  private-key", phone.privateKeyPEM, indent: "    "))
        }
        if let r = image.recorded {
            out.append("recorded:")
            out.append("  reader: \(quote(r.reader))")
            if let v = r.vendor { out.append("  vendor: \(quote(v))") }
            if let v = r.model { out.append("  model: \(quote(v))") }
            if let v = r.firmware { out.append("  firmware: \(quote(v))") }
            out.append("  date: \(quote(r.date))")
            out.append("  session: \(quote(r.session))")
        }
        if let r = image.replay {
            out.append("replay:")
            out.append("  source: \(r.source.rawValue)")
            out.append("  policy: \(r.policy.rawValue)")
            out.append("  unexpected-sw: \(quote(r.unexpectedStatusWord.rawValue.hex))")
            out.append("  transcript:")
            for e in r.transcript {
                let ms = e.milliseconds.map { ", ms: " + String(format: "%.3f", $0) } ?? ""
                out.append("    - { command: \(quote(e.commandText)), response: \(quote(e.response.hexString()))\(ms) }")
            }
        }
        if !image.faults.isEmpty {
            out.append("faults:")
            for f in image.faults {
                var line = "  - { at: \(f.atAPDU), fault: "
                switch f.fault {
                case .removeBefore: line += "remove-before"
                case .removeDuring: line += "remove-during"
                case .removeAfter: line += "remove-after"
                case .mute(let n): line += "mute, count: \(n)"
                case .slow(let d): line += "slow, ms: \(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)"
                case .statusWord(let sw, let n): line += "sw, sw: \(quote(sw.rawValue.hex)), count: \(n)"
                case .warmReset: line += "reset"
                }
                out.append(line + " }")
            }
        }
        if !image.keypad.isEmpty {
            out.append("keypad:")
            for e in image.keypad {
                func ms(_ d: Duration) -> String {
                    let v = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
                    return v > 0 ? ", after-ms: \(v)" : ""
                }
                switch e {
                case .digits(let d, let after): out.append("  - { digits: \(quote(d.text))\(ms(after)) }")
                case .cancel(let after): out.append("  - { cancel: true\(ms(after)) }")
                case .timeout: out.append("  - { timeout: true }")
                }
            }
        }
        func dedicated(_ df: CardImage.DedicatedFile, _ indent: String, root: Bool) {
            if root {
                // Always the root's `fid`: without it an empty root would be written as `filesystem:` (null,
                // which does not load), and a root without FID would load back as 3F00 (the default).
                out.append("filesystem:")
                out.append("\(indent)fid: \(fid(df.fid))")
            } else {
                out.append("\(indent.dropLast(2))- df: \(fid(df.fid))")
            }
            if let aid = df.aid { out.append("\(indent)aid: \(aid.hexString())") }
            if let l = df.label { out.append("\(indent)label: \(quote(l))") }
            if let fci = df.fci { out.append("\(indent)fci: \(hex(fci))") }
            guard !df.children.isEmpty else { return }
            out.append("\(indent)files:")
            for child in df.children {
                switch child {
                case .dedicated(let sub): dedicated(sub, indent + "    ", root: false)
                case .elementary(let ef):
                    out.append("\(indent)  - ef: \(fid(ef.fid))")
                    let i = indent + "    "
                    if let sfi = ef.sfi { out.append("\(i)sfi: \(sfi)") }
                    if let l = ef.label { out.append("\(i)label: \(quote(l))") }
                    if ef.read != .always { out.append("\(i)read: \(ef.read)") }
                    if ef.synthetic { out.append("\(i)synthetic: true") }
                    if let fci = ef.fci { out.append("\(i)fci: \(hex(fci))") }
                    switch ef.content {
                    case .transparent(let bytes): out.append("\(i)data: \(hex(bytes))")
                    case .records(let records):
                        out.append("\(i)records:")
                        for r in records { out.append("\(i)  - \(hex(r))") }
                    }
                }
            }
        }
        dedicated(image.root, "  ", root: true)
        if !image.overrides.isEmpty {
            out.append("overrides:")
            for o in image.overrides { out.append("  - { command: \(hex(o.command)), response: \(hex(o.response)) }") }
        }
        return out.joined(separator: "\n") + "\n"
    }
}

/// `text` as a YAML double-quoted scalar that loads back to exactly the same Unicode scalars: the
/// backslash and the quote are escaped, and so is every scalar YAML would not keep as it is — the
/// control characters (which it refuses), the line breaks (which it folds into spaces: LF, CR, NEL,
/// LS, PS), the tab and the byte-order mark. Escaping works on scalars, not characters, so a
/// backslash followed by a combining mark is escaped too.
private func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        let v = scalar.value
        switch v {
        case 0x5C: out += "\\\\"
        case 0x22: out += "\\\""
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case _ where keptAsIs(scalar): out.unicodeScalars.append(scalar)
        case 0..<0x100: out += "\\x" + UInt8(v).hex
        case 0x100...0xFFFF: out += "\\u" + UInt16(v).hex
        default: out += "\\U" + UInt16(v >> 16).hex + UInt16(v & 0xFFFF).hex
        }
    }
    return out + "\""
}

/// `key: |` and the text's lines when a literal block gives back exactly `text` (lines that are not
/// empty, start with no blank, hold nothing `quote` would escape but the quote and the
/// backslash, and one final line break); otherwise `key: "…"`, double-quoted.
private func block(_ key: String, _ text: String, indent: String) -> [String] {
    let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
    let literal = lines.count > 1 && lines.last!.isEmpty && lines.dropLast().allSatisfy { line in
        guard let first = line.first, first != " " else { return false }
        return line.allSatisfy(keptAsIs)
    }
    guard literal else { return ["\(key): \(quote(text))"] }
    return ["\(key): |"] + lines.dropLast().map { indent + String(String.UnicodeScalarView($0)) }
}

/// Whether YAML keeps `scalar` as it is inside a quoted scalar or a literal block: the printable
/// characters of YAML 1.1 but its line breaks (NEL, LS, PS) and the byte-order mark.
private func keptAsIs(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x20...0x7E, 0xA0...0x2027, 0x202A...0xD7FF, 0xE000...0xFEFE, 0xFF00...0xFFFD, 0x10000...0x10FFFF: true
    default: false
    }
}
