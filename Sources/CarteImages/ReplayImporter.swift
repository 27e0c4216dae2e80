public import CarteEmulator
public import CarteCore
import Foundation

/// Turns captured PC/SC traffic into a replay image (`carte image import`): a `pcscd --apdu` debug log
/// or the text output of `pcsc-spy`. The exchanges become the image's transcript (with their timing)
/// and its file system is learned from them, exactly as for `carte record` (``ReplayRecorder``).
public enum ReplayImporter {
    /// The capture formats understood.
    public enum Format: String, Sendable, CaseIterable {
        /// pcscd's debug log with `--apdu` (`-a`): `APDU:` and `SW:` lines, `Card ATR:`, `Attempting Connect to`,
        /// `Active Protocol:`; from `pcscd --foreground`, the journal or syslog (a prefix before the
        /// 8-digit time delta is ignored).
        case pcscdLog = "pcscd-log"
        /// The output of `pcsc-spy` (with or without `-n`, `-d` or `-t`): `SCardConnect`, `SCardStatus`
        /// and `SCardTransmit` blocks with their buffers.
        case pcscSpy = "pcsc-spy"

        /// Guesses the format from the text.
        public static func detect(_ text: String) -> Format? {
            if text.contains("SCardTransmit") && text.contains("bSendBuffer") { return .pcscSpy }
            if text.contains("APDU: ") { return .pcscdLog }
            return nil
        }
    }

    /// Why a capture could not be imported.
    public enum ImportError: Error, Hashable, Sendable, CustomStringConvertible {
        /// Neither format was recognised (no `APDU:` lines, no `SCardTransmit` blocks).
        case unknownFormat
        /// A line could not be read (`line` is 1-based).
        case malformed(line: Int, String)
        /// The capture holds no complete exchange (for `reader`, when one was named).
        case noExchanges(reader: String?)
        /// The capture shows cards in several readers and does not say which exchange went to which:
        /// name one with `--reader`.
        case severalReaders([String])
        /// The named reader does not appear in the capture (the readers that do).
        case unknownReader(String, seen: [String])
        /// The capture does not show the card's ATR: give it with `--atr`.
        case noATR

        public var description: String {
            switch self {
            case .unknownFormat: return "not a pcscd --apdu log (no \"APDU:\" lines) nor pcsc-spy output (no SCardTransmit blocks)"
            case .malformed(let line, let why): return "line \(line): \(why)"
            case .noExchanges(let reader): return "no complete command and answer\(reader.map { " for \($0)" } ?? "") in the capture"
            case .severalReaders(let names): return "the capture shows several readers (\(names.joined(separator: ", "))): name one with --reader"
            case .unknownReader(let name, let seen): return "no reader \"\(name)\" in the capture (it shows \(seen.isEmpty ? "no reader name" : seen.joined(separator: ", ")))"
            case .noATR: return "the capture does not show the card's ATR: give it with --atr"
            }
        }
    }

    /// What the capture held.
    public struct Capture: Sendable, Hashable {
        /// The reader the exchanges went to, when the capture names it.
        public var reader: String?
        /// The card's ATR, when the capture shows it.
        public var atr: [UInt8]?
        /// The protocol, when the capture shows it.
        public var protocolUsed: TransmissionProtocol?
        /// The complete exchanges, in order.
        public var exchanges: [CardImage.Replay.Exchange]
        /// Commands that got no answer (a failed transmit), skipped.
        public var unanswered: Int
    }

    /// Reads a capture. `reader` selects one reader's exchanges when the capture shows several.
    public static func parse(_ text: String, format: Format, reader: String? = nil) throws(ImportError) -> Capture {
        // Any line ending (a capture saved on Windows has CR LF, one Character in Swift).
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map { stripANSI(String($0)) }
        switch format {
        case .pcscdLog: return try parsePCSCDLog(lines, reader: reader)
        case .pcscSpy: return try parseSpy(lines, reader: reader)
        }
    }

    /// Builds the replay image of a capture (`atr` and `protocolUsed` fill what the capture lacks).
    public static func image(_ capture: Capture, source: String, date: String, atr: [UInt8]? = nil,
                             protocolUsed: TransmissionProtocol? = nil) throws(ImportError) -> CardImage {
        guard let cardATR = atr ?? capture.atr else { throw .noATR }
        guard !capture.exchanges.isEmpty else { throw .noExchanges(reader: capture.reader) }
        let proto = protocolUsed ?? capture.protocolUsed ?? (capture.exchanges.contains { $0.response.count == 2 && $0.response[0] == 0x61 } ? .t0 : .t1)
        let recording = CardImage.Recording(reader: capture.reader ?? "unknown (not in the capture)", date: date, session: "imported from \(source)")
        var image = ReplayRecorder.image(name: "Imported card from \(source)", atr: cardATR, protocolUsed: proto, exchanges: capture.exchanges, recording: recording)
        image.summary = "Imported by carte image import from \(source): contains the card's data as captured"
        return image
    }

    // MARK: - pcscd --apdu

    static func parsePCSCDLog(_ lines: [String], reader wanted: String?) throws(ImportError) -> Capture {
        var readersSeen: [String] = []
        var current: String?
        var connecting = false
        var inserted: String?
        var atrByReader: [String: [UInt8]] = [:]
        var lastATR: [UInt8]?
        var protocolByReader: [String: TransmissionProtocol] = [:]
        var exchanges: [(reader: String?, exchange: CardImage.Replay.Exchange)] = []
        var pending: (command: [UInt8], line: Int)?
        var unanswered = 0
        for (index, line) in lines.enumerated() {
            let number = index + 1
            if let r = line.range(of: "Attempting Connect to ") {
                var name = String(line[r.upperBound...])
                if let u = name.range(of: " using protocol") { name = String(name[..<u.lowerBound]) }
                current = name
                connecting = true
                if !readersSeen.contains(name) { readersSeen.append(name) }
                continue
            }
            if let r = line.range(of: "Card inserted into ") {
                inserted = line[r.upperBound...].trimmed(" ")
                continue
            }
            if let r = line.range(of: "Card ATR: ") {
                let atr = try hexBytes(String(line[r.upperBound...]), line: number)
                if !atr.isEmpty {
                    lastATR = atr
                    // The ATR of the reader being connected to; a card insertion's, of the reader it names.
                    if connecting, let c = current { atrByReader[c] = atr } else if let i = inserted { atrByReader[i] = atr }
                }
                continue
            }
            if line.contains("SCardConnect() hCard Identity") || line.contains("CONNECT for client") { connecting = false }
            if let r = line.range(of: "Active Protocol: ") ?? line.range(of: "Send Protocol: ") {
                let p = line[r.upperBound...].trimmed(" ")
                if let c = current { protocolByReader[c] = p.hasPrefix("T=0") ? .t0 : p.hasPrefix("T=1") ? .t1 : protocolByReader[c] }
                continue
            }
            if let r = line.range(of: "APDU: ") {
                connecting = false
                if pending != nil { unanswered += 1 }
                pending = (try hexBytes(String(line[r.upperBound...]), line: number), number)
                continue
            }
            if let r = line.range(of: "SW: ") {
                guard let p = pending else { throw .malformed(line: number, "an answer (SW:) without a command (APDU:) before it") }
                let response = try hexBytes(String(line[r.upperBound...]), line: number)
                guard response.count >= 2 else { throw .malformed(line: number, "an answer of \(response.count) byte(s): a status word needs 2") }
                guard p.command.count >= 4 else { throw .malformed(line: p.line, "a command of \(p.command.count) byte(s): an APDU has at least 4") }
                let micros = delta(before: r.lowerBound, in: line)
                exchanges.append((current, .init(command: p.command.map { $0 }, response: response, milliseconds: micros.map { Double($0) / 1000 })))
                pending = nil
            }
        }
        if pending != nil { unanswered += 1 }
        let reader = try choose(wanted, seen: readersSeen, used: Set(exchanges.compactMap(\.reader)))
        let mine = exchanges.filter { reader == nil || $0.reader == reader }.map(\.exchange)
        guard !mine.isEmpty else { throw .noExchanges(reader: reader) }
        return Capture(reader: reader, atr: reader.flatMap { atrByReader[$0] } ?? (readersSeen.count <= 1 ? lastATR : nil),
                       protocolUsed: reader.flatMap { protocolByReader[$0] }, exchanges: mine, unanswered: unanswered)
    }

    /// The 8-digit time delta (microseconds) pcscd writes before a message, when present.
    static func delta(before marker: String.Index, in line: String) -> Int? {
        let head = line[..<marker].trimmed(" ")
        guard let last = head.split(separator: " ").last, last.count == 8, last.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(last)
    }

    // MARK: - pcsc-spy

    static func parseSpy(_ lines: [String], reader wanted: String?) throws(ImportError) -> Capture {
        /// One spy line: the function name, an in/out field, or a result.
        enum Item { case function(String), field(out: Bool, String), result(ok: Bool, seconds: Double?), other }
        func item(_ raw: String) -> Item {
            var s = Substring(raw)
            while s.first == " " || s.first == "\t" { s.removeFirst() }
            // `-t` puts a thread number first: "(t1) ".
            if s.first == "(", let close = s.firstIndex(of: ")"), s[s.index(after: s.startIndex)..<close].drop(while: { $0 == "t" }).allSatisfy(\.isNumber) {
                s = s[s.index(after: close)...]
                while s.first == " " { s.removeFirst() }
            }
            if s.hasPrefix("i ") { return .field(out: false, String(s.dropFirst(2))) }
            if s.hasPrefix("o ") { return .field(out: true, String(s.dropFirst(2))) }
            if s.hasPrefix("=> ") {
                let ok = s.contains("SCARD_S_SUCCESS")
                var seconds: Double?
                if let open = s.lastIndex(of: "["), let close = s.lastIndex(of: "]"), open < close,
                   let v = Double(s[s.index(after: open)..<close]), v.isFinite, v >= 0, v < 3600 { seconds = v }
                return .result(ok: ok, seconds: seconds)
            }
            if s.hasPrefix("SCard"), !s.contains(" ") { return .function(String(s)) }
            return .other
        }

        var readersSeen: [String] = []
        var readerOfCard: [String: String] = [:]
        var atrOfReader: [String: [UInt8]] = [:]
        var protocolOfReader: [String: TransmissionProtocol] = [:]
        var exchanges: [(reader: String?, exchange: CardImage.Replay.Exchange)] = []
        var unanswered = 0

        // The current call.
        var function = ""
        var functionLine = 0
        var fields: [(out: Bool, text: String, line: Int)] = []
        var lastConnected: String?

        func buffer(_ name: String, out: Bool, length: Int?) throws(ImportError) -> [UInt8]? {
            guard let start = fields.firstIndex(where: { $0.out == out && $0.text.trimmed(" ") == name }) else { return nil }
            var bytes: [UInt8] = []
            var k = start + 1
            while k < fields.count, fields[k].out == out {
                // A dump line: a 4-digit offset, then 16 bytes in a 47-column hex area, then their ASCII.
                let text = fields[k].text.trimmed(" ")
                let chars = Array(text)
                guard chars.count > 5, chars[4] == " ", chars[0..<4].allSatisfy(\.isHexDigit) else { break }
                let area = String(chars[5..<min(chars.count, 5 + 47)])
                for t in area.split(separator: " ") {
                    guard t.count == 2, t.allSatisfy(\.isHexDigit), let b = UInt8(t, radix: 16) else {
                        throw .malformed(line: fields[k].line, "\"\(t)\" in the \(name) dump is not a hex byte")
                    }
                    bytes.append(b)
                }
                k += 1
            }
            if let length, bytes.count != length { throw .malformed(line: fields[start].line, "\(name) shows \(bytes.count) byte(s), its length says \(length)") }
            return bytes
        }
        func number(_ name: String, out: Bool) -> Int? {
            guard let f = fields.first(where: { $0.out == out && $0.text.hasPrefix(name + " ") }) else { return nil }
            guard let open = f.text.lastIndex(of: "("), let close = f.text.lastIndex(of: ")") , open < close else { return nil }
            return Int(f.text[f.text.index(after: open)..<close])
        }
        func value(_ prefix: String, out: Bool) -> String? {
            fields.first { $0.out == out && $0.text.hasPrefix(prefix) }.map { String($0.text.dropFirst(prefix.count)).trimmed(" ") }
        }

        func finish(ok: Bool, seconds: Double?) throws(ImportError) {
            defer { function = ""; fields = [] }
            let card = value("hCard:", out: false)
            switch function {
            case "SCardConnect":
                guard ok, let name = value("szReader", out: false) else { return }
                if !readersSeen.contains(name) { readersSeen.append(name) }
                lastConnected = name
                if let h = value("phCard", out: true)?.split(separator: " ").first { readerOfCard[String(h)] = name }
                if let p = value("dwActiveProtocol:", out: true) { protocolOfReader[name] = p.hasPrefix("T=0") ? .t0 : p.hasPrefix("T=1") ? .t1 : protocolOfReader[name] }
            case "SCardStatus":
                guard ok, let hex = value("bAtr ", out: true), hex != "NULL" else { return }
                let atr = try hexBytes(hex, line: fields.first { $0.text.hasPrefix("bAtr ") }?.line ?? functionLine)
                if let name = card.flatMap({ readerOfCard[$0] }) ?? lastConnected { atrOfReader[name] = atr }
            case "SCardTransmit":
                guard ok else { unanswered += 1; return }
                guard let command = try buffer("bSendBuffer", out: false, length: number("bSendLength", out: false)),
                      let response = try buffer("bRecvBuffer", out: true, length: number("bRecvLength", out: true)) else {
                    throw .malformed(line: functionLine, "an SCardTransmit without its send or receive buffer")
                }
                guard command.count >= 4, response.count >= 2 else {
                    throw .malformed(line: functionLine, "an SCardTransmit of \(command.count) byte(s) answered by \(response.count)")
                }
                let name = card.flatMap { readerOfCard[$0] } ?? lastConnected
                exchanges.append((name, .init(command: command.map { $0 }, response: response, milliseconds: seconds.map { ($0 * 1_000_000).rounded() / 1000 })))
            default:
                return
            }
        }

        for (index, line) in lines.enumerated() {
            switch item(line) {
            case .function(let name):
                function = name
                functionLine = index + 1
                fields = []
            case .field(let out, let text):
                if !function.isEmpty { fields.append((out, text, index + 1)) }
            case .result(let ok, let seconds):
                if !function.isEmpty { try finish(ok: ok, seconds: seconds) }
            case .other:
                continue
            }
        }
        let reader = try choose(wanted, seen: readersSeen, used: Set(exchanges.compactMap(\.reader)))
        let mine = exchanges.filter { reader == nil || $0.reader == reader }.map(\.exchange)
        guard !mine.isEmpty else { throw .noExchanges(reader: reader) }
        return Capture(reader: reader, atr: reader.flatMap { atrOfReader[$0] } ?? (atrOfReader.count == 1 ? atrOfReader.first?.value : nil),
                       protocolUsed: reader.flatMap { protocolOfReader[$0] }, exchanges: mine, unanswered: unanswered)
    }

    // MARK: - Helpers

    /// The reader to import: the one named, or the only one cards were used in.
    static func choose(_ wanted: String?, seen: [String], used: Set<String>) throws(ImportError) -> String? {
        if let wanted {
            if seen.contains(wanted) { return wanted }
            if let match = seen.first(where: { $0.hasPrefix(wanted) }), seen.filter({ $0.hasPrefix(wanted) }).count == 1 { return match }
            throw .unknownReader(wanted, seen: seen)
        }
        let withTraffic = seen.filter { used.contains($0) }
        if withTraffic.count > 1 { throw .severalReaders(withTraffic) }
        return withTraffic.first ?? seen.last
    }

    static func hexBytes(_ text: String, line: Int) throws(ImportError) -> [UInt8] {
        var out: [UInt8] = []
        for token in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }) {
            guard token.count == 2, token.allSatisfy(\.isHexDigit), let b = UInt8(token, radix: 16) else { throw .malformed(line: line, "\"\(token)\" is not a hex byte") }
            out.append(b)
        }
        return out
    }

    /// Removes terminal colour codes (a log captured from a terminal).
    static func stripANSI(_ s: String) -> String {
        guard s.contains("\u{1B}") else { return s }
        var out = ""
        var escaping = false
        for ch in s {
            if escaping { if ch.isLetter { escaping = false }; continue }
            if ch == "\u{1B}" { escaping = true; continue }
            out.append(ch)
        }
        return out
    }
}

extension StringProtocol {
    func trimmed(_ set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
