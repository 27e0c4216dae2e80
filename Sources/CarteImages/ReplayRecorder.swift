public import CarteEmulator
public import CarteCore
import Synchronization

/// A transport that records every exchange it carries (command, response, time), for `carte record`.
public final class RecordingTransport: CardTransport {
    private let inner: any CardTransport
    private let log = Mutex<[CardImage.Replay.Exchange]>([])

    /// Records what goes through `inner`.
    public init(_ inner: any CardTransport) { self.inner = inner }

    public var capabilities: TransportCapabilities { inner.capabilities }

    public func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        let clock = ContinuousClock()
        let start = clock.now
        let response = try await inner.transmit(command)
        let ms = (clock.now - start).milliseconds
        log.withLock { $0.append(.init(command: command.map { $0 }, response: response, milliseconds: (ms * 1000).rounded() / 1000)) }
        return response
    }

    /// The exchanges so far, in order.
    public var exchanges: [CardImage.Replay.Exchange] { log.withLock { $0 } }
}

/// Builds a replay image from recorded exchanges: the transcript, and the file system learned from
/// the SELECT, READ BINARY and READ RECORD commands seen (so the image can answer reads in any order).
public enum ReplayRecorder {
    /// A recorded image. `protocolUsed` is the protocol the session ran (T=0 answers `61xx`).
    public static func image(name: String, atr: [UInt8], protocolUsed: TransmissionProtocol, exchanges recorded: [CardImage.Replay.Exchange],
                             recording: CardImage.Recording) -> CardImage {
        // PINs and PUKs are never kept: the data of VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER
        // and ENABLE/DISABLE VERIFICATION become wildcards (any PIN replays the recorded answer).
        let exchanges = recorded.map(withoutSecrets)
        var classes: Set<UInt8> = []
        for e in exchanges { if let cla = e.command.first ?? nil { classes.insert(cla & 0x80 == 0 ? cla & 0xE0 : cla) } }
        let behaviour = CardImage.Behaviour(t0Responses: protocolUsed == .t0, classes: classes.isEmpty ? [0x00] : classes, challengeSeed: 0)
        var image = CardImage(name: name, summary: "Recorded by carte record from \(recording.reader) on \(recording.date): contains the card's data as read",
                              synthetic: false, source: nil, atr: atr, cardProtocol: protocolUsed, behaviour: behaviour,
                              root: learnFileSystem(exchanges))
        image.recorded = recording
        image.replay = CardImage.Replay(source: .transcript, policy: .cursor, transcript: exchanges)
        return image
    }

    /// The instructions whose data is a PIN or PUK (``CardImage/Replay/secretInstructions``).
    public static var secretInstructions: Set<UInt8> { CardImage.Replay.secretInstructions }

    /// Whether a command carries a PIN or PUK (``CardImage/Replay/carriesSecret(_:)``).
    public static func carriesSecret(_ command: [UInt8?]) -> Bool { CardImage.Replay.carriesSecret(command) }

    /// `exchange` with the data of a PIN-carrying command turned into wildcards.
    public static func withoutSecrets(_ exchange: CardImage.Replay.Exchange) -> CardImage.Replay.Exchange {
        CardImage.Replay.withoutSecrets(exchange)
    }

    /// A file being learned.
    struct LearnedFile {
        var fid: UInt16?
        var sfi: UInt8?
        var aid: [UInt8]?
        var isDF: Bool
        var fci: [UInt8]?
        var data: [UInt8] = []
        var records: [Int: [UInt8]] = [:]
        var children: [Int] = []
        var parent: Int?
        /// A read was refused for security (`6982`): the replay refuses it too.
        var protected = false
    }

    /// The file tree the reads imply. Only successful commands teach; GET RESPONSE data is given to the
    /// command that asked for it, and a `6Cxx` resend replaces the first try.
    static func learnFileSystem(_ exchanges: [CardImage.Replay.Exchange]) -> CardImage.DedicatedFile {
        var files = [LearnedFile(fid: 0x3F00, isDF: true)]
        var currentDF = 0
        var currentEF: Int?

        func child(of df: Int, where match: (LearnedFile) -> Bool, make: () -> LearnedFile) -> Int {
            if let i = files[df].children.first(where: { match(files[$0]) }) { return i }
            var f = make()
            f.parent = df
            files.append(f)
            files[df].children.append(files.count - 1)
            return files.count - 1
        }

        // Pair each command with its data (joining GET RESPONSE answers) and final status word.
        var pending: (command: [UInt8], data: [UInt8])?
        var steps: [(command: [UInt8], data: [UInt8], sw: UInt16)] = []
        for e in exchanges {
            let command = e.command.map { $0 ?? 0 }
            // Only inter-industry commands teach files (a memory card's or a GSM-class volet's reads stay in the transcript).
            guard command.count >= 4, e.response.count >= 2, command[0] & 0x80 == 0 else { continue }
            let sw1 = e.response[e.response.count - 2], sw2 = e.response[e.response.count - 1]
            let data = Array(e.response.dropLast(2))
            let isGetResponse = command[1] == 0xC0
            if isGetResponse, var p = pending {
                p.data += data
                if sw1 == 0x61 { pending = p; continue }
                steps.append((p.command, p.data, UInt16(sw1) << 8 | UInt16(sw2)))
                pending = nil
                continue
            }
            // A `61xx` whose data was not fetched: the command still succeeded (a SELECT whose FCI was not wanted).
            if let p = pending { steps.append((p.command, p.data, 0x9000)) }
            pending = nil
            if sw1 == 0x61 { pending = (command, data); continue }
            if sw1 == 0x6C { continue }  // resent with the right Le: the resend teaches
            steps.append((command, data, UInt16(sw1) << 8 | UInt16(sw2)))
        }

        if let p = pending { steps.append((p.command, p.data, 0x9000)) }
        for step in steps {
            let c = step.command
            // A read refused for security: the file stays protected in the replay.
            if step.sw == 0x6982, c[1] == 0xB0 || c[1] == 0xB2 {
                if c[1] == 0xB0, c[2] & 0x80 != 0 {
                    let sfi = c[2] & 0x1F
                    let i = child(of: currentDF, where: { $0.sfi == sfi && !$0.isDF }, make: { LearnedFile(sfi: sfi, isDF: false) })
                    files[i].protected = true
                } else if let ef = currentEF {
                    files[ef].protected = true
                }
                continue
            }
            guard step.sw == 0x9000 || step.sw & 0xFF00 == 0x6200 else { continue }
            let (ins, p1, p2) = (c[1], c[2], c[3])
            let lc = c.count > 5 ? Int(c[4]) : 0
            let body = c.count >= 5 + lc && lc > 0 ? Array(c[5..<(5 + lc)]) : []
            switch ins {
            case 0xA4:
                let fci = step.data.isEmpty ? nil : step.data
                let isDFAnswer = fci.map(describesDF) ?? false
                switch p1 {
                case 0x04:
                    guard !body.isEmpty else { currentDF = 0; currentEF = nil; continue }
                    currentDF = child(of: 0, where: { $0.aid == body }, make: { LearnedFile(aid: body, isDF: true) })
                    if files[currentDF].fci == nil { files[currentDF].fci = fci }
                    currentEF = nil
                case 0x00, 0x01, 0x02:
                    guard body.count == 2 else { continue }
                    let fid = UInt16(body[0]) << 8 | UInt16(body[1])
                    if fid == 0x3F00 { currentDF = 0; currentEF = nil; continue }
                    let df = p1 == 0x01 || (p1 == 0x00 && isDFAnswer)
                    let i = child(of: currentDF, where: { $0.fid == fid }, make: { LearnedFile(fid: fid, isDF: df) })
                    if files[i].fci == nil { files[i].fci = fci }
                    if df { currentDF = i; currentEF = nil } else { currentEF = i }
                case 0x08, 0x09:
                    guard body.count >= 2, body.count % 2 == 0 else { continue }
                    var at = p1 == 0x08 ? 0 : currentDF
                    let fids = stride(from: 0, to: body.count, by: 2).map { UInt16(body[$0]) << 8 | UInt16(body[$0 + 1]) }
                    for (k, fid) in fids.enumerated() {
                        if fid == 0x3F00 && k == 0 { at = 0; continue }
                        let last = k == fids.count - 1
                        let df = !last || isDFAnswer
                        let i = child(of: at, where: { $0.fid == fid }, make: { LearnedFile(fid: fid, isDF: df) })
                        if last {
                            if files[i].fci == nil { files[i].fci = fci }
                            if df { currentDF = i; currentEF = nil } else { currentDF = at; currentEF = i }
                        } else {
                            at = i
                        }
                    }
                default:
                    continue
                }
            case 0xB0:
                var target = currentEF
                var offset = (Int(p1 & 0x7F) << 8) | Int(p2)
                if p1 & 0x80 != 0 {
                    let sfi = p1 & 0x1F
                    target = child(of: currentDF, where: { $0.sfi == sfi && !$0.isDF }, make: { LearnedFile(sfi: sfi, isDF: false) })
                    offset = Int(p2)
                    currentEF = target
                }
                guard let t = target else { continue }
                if files[t].data.count < offset + step.data.count {
                    files[t].data += [UInt8](repeating: 0, count: offset + step.data.count - files[t].data.count)
                }
                files[t].data.replaceSubrange(offset..<(offset + step.data.count), with: step.data)
            case 0xB2 where p2 & 0x07 == 0x04 && p1 > 0:
                var target = currentEF
                let sfi = p2 >> 3
                if sfi != 0 {
                    target = child(of: currentDF, where: { $0.sfi == sfi && !$0.isDF }, make: { LearnedFile(sfi: sfi, isDF: false) })
                    currentEF = target
                }
                guard let t = target else { continue }
                files[t].records[Int(p1)] = step.data
            default:
                continue
            }
        }

        func build(_ i: Int) -> CardImage.Node {
            let f = files[i]
            if f.isDF {
                return .dedicated(CardImage.DedicatedFile(fid: f.fid, aid: f.aid, label: "learned", fci: f.fci, children: f.children.map(build)))
            }
            let content: CardImage.Content
            if !f.records.isEmpty {
                let last = f.records.keys.max() ?? 0
                content = .records((1...max(last, 1)).map { f.records[$0] ?? [] })
            } else {
                content = .transparent(f.data)
            }
            return .elementary(CardImage.ElementaryFile(fid: f.fid, sfi: f.sfi, label: f.protected ? "learned (its reads were refused: 6982)" : "learned",
                                                        read: f.protected && f.data.isEmpty && f.records.isEmpty ? .never : .always, content: content, fci: f.fci))
        }
        guard case .dedicated(let mf) = build(0) else { return CardImage.DedicatedFile(fid: 0x3F00) }
        return mf
    }

    /// Whether a SELECT answer describes a DF: an FCP/FCI file descriptor byte `38` (or DF name tag `84`).
    static func describesDF(_ fci: [UInt8]) -> Bool {
        guard let top = (try? TLV.decode(fci))?.first else { return false }
        if let descriptor = top[0x82]?.value.first { return descriptor & 0x38 == 0x38 }
        return top[0x84] != nil
    }
}
