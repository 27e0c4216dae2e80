import CarteCore
import CarteCrypto
public import CarteEmulator
import CarteImages
public import Foundation

/// Turns a slot's trace (the daemon's `trace` answer) into a replay image (`carte record`'s format):
/// the transcript of the card's exchanges since it was inserted, and the file system they reveal, so
/// the image replays the session that a bug report describes. PINs were removed by the daemon; their
/// bytes are wildcards, so the replay accepts any PIN with the recorded answer.
public enum ConsoleExport {
    /// A trace that cannot become a replay image.
    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        /// The slot holds no card (nothing to replay).
        case noCard(String)
        /// The card exchanged nothing yet.
        case noExchanges(String)
        /// The daemon's answer lacks a field or has a malformed one.
        case malformed(String)

        public var description: String {
            switch self {
            case .noCard(let s): return "\(s) holds no card: there is nothing to export"
            case .noExchanges(let s): return "the card in \(s) has exchanged nothing yet: there is nothing to export"
            case .malformed(let what): return "the daemon's trace is malformed: \(what)"
            }
        }
    }

    /// The replay image of `trace` and a file name for it (`trace-<slot>-<UTC time>.yaml`).
    public static func image(fromTrace trace: [String: Any], now: Date = Date()) throws(Failure) -> (fileName: String, image: CardImage) {
        guard let slot = trace["slot"] as? String else { throw .malformed("no slot") }
        guard let atrText = trace["atr"] as? String else { throw .noCard(slot) }
        guard let atr = try? [UInt8](hex: atrText), !atr.isEmpty else { throw .malformed("ATR \(atrText)") }
        guard let list = trace["exchanges"] as? [[String: Any]] else { throw .malformed("no exchanges") }
        guard !list.isEmpty else { throw .noExchanges(slot) }
        var exchanges: [CardImage.Replay.Exchange] = []
        for (i, e) in list.enumerated() {
            guard let command = e["command"] as? String, let bytes = CardImage.Replay.Exchange.command(fromText: command[...]), bytes.count >= 4 else { throw .malformed("exchange \(i): command") }
            guard let responseText = e["response"] as? String, let response = try? [UInt8](hex: responseText), response.count >= 2 else {
                throw .malformed("exchange \(i): response")
            }
            exchanges.append(.init(command: bytes, response: response, milliseconds: e["ms"] as? Double))
        }
        let proto: TransmissionProtocol = trace["protocol"] as? String == "T=0" ? .t0 : .t1
        let seconds = Int64(now.timeIntervalSince1970)
        let date = iso8601UTC(seconds)
        let recording = CardImage.Recording(reader: slot, vendor: trace["vendor"] as? String, model: nil, firmware: trace["firmwareVersion"] as? String,
                                            date: date, session: "console")
        let source = (trace["image"] as? String).map { " of the image \"\($0)\"" } ?? ""
        var image = ReplayRecorder.image(name: "Console trace of \(slot)", atr: atr, protocolUsed: proto, exchanges: exchanges, recording: recording)
        image.summary = "Exported by carte sim console from \(slot) on \(date): the exchanges with the card\(source) since it was inserted"
        // A trace of a synthetic card replays synthetic data; anything else holds what the card held.
        if trace["synthetic"] as? Bool == true { image.synthetic = true }
        let stamp = date.filter { $0.isNumber || $0 == "T" || $0 == "Z" }
        let safeSlot = String(slot.map { $0.isLetter || $0.isNumber ? $0 : "-" })
        return ("trace-\(safeSlot)-\(stamp).yaml", image)
    }
}
