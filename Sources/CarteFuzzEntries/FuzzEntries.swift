// The entry points the libFuzzer targets of Fuzz/ call, one per parser of untrusted input, and that
// the normal test suite replays over every regression input (Fuzz/Regressions/) and seed
// (Fuzz/Corpus/). Each one feeds the bytes to the parser and checks its invariant; a violated
// invariant traps (`preconditionFailure`), which libFuzzer records as a crash. A parser's typed
// error is the expected outcome for bad input, never a finding.
import CarteAgent
import CarteConsole
import CarteCore
import CarteApCV
import CarteBundledImages
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import CarteRights
import CarteSimDaemon
import CarteSimProtocol
import CarteVitale
import Dispatch
import CartePCSC
import Foundation
import Synchronization

/// The fuzz targets by name: `scripts/fuzz.sh` lists them, the `fuzz` executable (Fuzz/) runs the one
/// CARTE_FUZZ_TARGET names, and each has its seeds in `Fuzz/Corpus/<name>`.
public enum FuzzEntries {
    /// Every target and its entry point.
    public static let all: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("atr", atr), ("apdu", apdu), ("tlv", tlv), ("hex-script", hexAndScript), ("channel", channel),
        ("wire", wire), ("pin-structures", pinStructures), ("card-image", cardImage), ("reader-profile", readerProfile),
        ("persona", persona), ("replay-import", replayImport), ("simulated-card", simulatedCard),
        ("card-decoders", cardDecoders), ("apcv", apcv), ("apcv-http", apcvHTTP), ("anonymiser", anonymiser), ("x509", x509),
        ("rights-http", rightsHTTP), ("vpcd", vpcd), ("agent", agent), ("console", console),
        ("pcsc-marshal", pcscMarshal), ("lane", lane),
    ]

    /// Builds the one-time state of the targets (the bundled images) before the first input, so
    /// libFuzzer's per-input leak check does not take a lazy global for a leak.
    public static func prepare() {
        _ = images.count
    }

    /// The entry point named `name`.
    public static func entry(_ name: String) -> (@Sendable ([UInt8]) -> Void)? { all.first { $0.name == name }?.run }

    // MARK: - CarteCore

    /// ATR parsing: a typed error or an ATR whose protocols and description can be read.
    @Sendable public static func atr(_ data: [UInt8]) {
        guard let atr = try? ATR(bytes: data) else { return }
        _ = atr.protocols
        _ = "\(atr)"
    }

    /// Command and response APDUs: what parses re-encodes to the same bytes.
    @Sendable public static func apdu(_ data: [UInt8]) {
        if let c = try? CommandAPDU(bytes: data) {
            guard c.encoded() == data else { preconditionFailure("CommandAPDU re-encodes \(data.hexString()) as \(c.encoded().hexString())") }
            _ = c.redactedHex
        }
        if let r = try? ResponseAPDU(bytes: data) {
            guard r.encoded() == data else { preconditionFailure("ResponseAPDU re-encodes differently") }
        }
    }

    /// BER-TLV: decoding never traps; what decodes re-encodes to bytes that decode to the same objects
    /// (the encoding is canonical: a non-minimal length may shrink, nothing else changes).
    @Sendable public static func tlv(_ data: [UInt8]) {
        if let objects = try? TLV.decode(data, allowPadding: false) {
            let again = objects.flatMap { $0.encoded() }
            guard (try? TLV.decode(again, allowPadding: false)) == objects else { preconditionFailure("TLV \(data.hexString()) re-encodes as \(again.hexString()), which decodes differently") }
            for o in objects { _ = o.dump() }
        }
        _ = try? TLV.decode(data, allowPadding: true)
        _ = try? TLV.decodeSingle(data)
    }

    /// Hexadecimal text and APDU scripts.
    @Sendable public static func hexAndScript(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        if let bytes = try? [UInt8](hex: text) {
            guard (try? [UInt8](hex: bytes.hexString())) == bytes else { preconditionFailure("hex does not round-trip") }
        }
        _ = try? APDUScript(parsing: text)
    }

    /// `CardChannel` against a card answering fuzzed responses: a response or a typed error, and never
    /// more automatic exchanges than the policy allows. Input: policy byte, command selector, then
    /// responses as `length (1 byte) bytes`.
    @Sendable public static func channel(_ data: [UInt8]) {
        guard data.count >= 2 else { return }
        var policy = TransmitPolicy.default
        policy.getResponseOn61 = data[0] & 1 != 0
        policy.getResponseOn9F = data[0] & 2 != 0
        policy.resendOnWrongLe = data[0] & 4 != 0
        policy.commandChaining = data[0] & 8 != 0
        policy.extendedLength = data[0] & 16 != 0
        policy.maxAutomaticExchanges = Int(data[0] >> 5)
        let extended = data[1] & 0x80 != 0
        let commands: [CommandAPDU] = [
            try! CommandAPDU(cla: 0x00, ins: 0xB0, p1: 0, p2: 0, le: 256),
            try! CommandAPDU(cla: 0xA0, ins: 0xC0, p1: 0, p2: 0, le: 0x10),
            try! CommandAPDU(cla: 0x00, ins: 0xD6, p1: 0, p2: 0, data: [UInt8](repeating: 0x5A, count: 600)),
            try! CommandAPDU(cla: 0x00, ins: 0xB0, p1: 0, p2: 0, le: 4000),
            try! CommandAPDU(cla: 0x80, ins: 0xCA, p1: 0x9F, p2: 0x7F, data: [1, 2, 3], le: 0x2D),
            try! CommandAPDU(cla: 0x00, ins: 0xA4, p1: 0x04, p2: 0x00, data: [0xA0, 0, 0, 0, 3]),
        ]
        let command = commands[Int(data[1] & 0x7F) % commands.count]
        let responses = lengthPrefixed(data, from: 2)
        let transport = FuzzedCard(responses: responses, extended: extended)
        let channel = CardChannel(transport: transport, policy: policy)
        _ = runBlocking { try? await channel.transmit(command) }
        // The caller's chained segments are not automatic; everything else is.
        let segments = (command.data.count > 255 && !(extended && policy.extendedLength)) ? (command.data.count - 1) / 255 : 0
        let limit = 1 + segments + policy.maxAutomaticExchanges
        guard transport.exchanges <= limit else { preconditionFailure("\(transport.exchanges) exchanges for a policy allowing \(limit)") }
    }

    // MARK: - Simulator protocol

    /// Frames between the driver, the daemon and control clients; reader descriptions.
    @Sendable public static func wire(_ data: [UInt8]) {
        var i = 0
        while i + 4 <= data.count {
            guard let n = try? Frame.length(fromHeader: data[i..<(i + 4)]) else { return }
            i += 4
            guard i + n <= data.count else { return }
            guard let frame = try? Frame(body: data[i..<(i + n)]) else { return }
            i += n
            guard (try? Frame(body: Array(frame.encoded().dropFirst(4)))) == frame else { preconditionFailure("frame does not round-trip") }
            _ = frame.failure
            _ = readU16(frame.payload, 1)
            _ = readU32(frame.payload, 1)
            if let d = try? ReaderDescription(decoding: frame.payload) {
                _ = try? ReaderDescription(decoding: d.encoded())
            }
        }
    }

    /// The shared-memory lane (#39) as a faulty peer drives it: each byte an operation of either side,
    /// or a raw value written into the state word or a length field (what the other process could
    /// write). Invariants: a command read is never empty, a command or response never longer than its
    /// buffer, nothing is read past the mapping, every call returns (polling for zero time), and the
    /// daemon leaves its polling with the lane closed to the driver.
    @Sendable public static func lane(_ data: [UInt8]) {
        guard let daemon = SharedLane.create(), let driver = daemon.peer() else { return }
        var i = 0
        func take(_ n: Int) -> [UInt8] {
            let out = Array(data[min(i, data.count)..<min(i + n, data.count)])
            i += n
            return out
        }
        func word() -> UInt32 { take(4).reduce(0) { $0 << 8 | UInt32($1) } }
        func payload() -> [UInt8] {
            let n = Int(take(1).first ?? 0)
            // Now and then a command as large as the buffer, or larger.
            if n == 0xFF { return Array(repeating: 0xA5, count: SharedLane.capacity + Int(take(1).first ?? 0) % 3 - 1) }
            return take(n)
        }
        while i < data.count {
            let op = data[i]
            i += 1
            switch op % 9 {
            case 0: driver.corrupt(state: word())
            case 1: driver.corrupt(requestLength: word())
            case 2: daemon.corrupt(responseLength: word())
            case 3:
                switch daemon.poll(spin: .zero, socket: -1) {
                case .request(let command, _):
                    guard !command.isEmpty, command.count <= SharedLane.capacity else { preconditionFailure("lane request of \(command.count) bytes") }
                case .idle:
                    guard daemon.state == .closed || daemon.state == .answeredAndClosed else { preconditionFailure("idle with the lane \(String(describing: daemon.state))") }
                case .malformed(let n):
                    guard n < 1 || n > SharedLane.capacity, daemon.state == .closed else { preconditionFailure("malformed \(n)") }
                }
            case 4:
                let command = payload()
                switch driver.transmit(command, spin: .zero) {
                case .answer(let r): guard r.count <= SharedLane.capacity else { preconditionFailure("answer of \(r.count) bytes") }
                case .malformed(let n): guard n > SharedLane.capacity, driver.state == .closed else { preconditionFailure("malformed answer \(n)") }
                case .notPosted, .onSocket: break
                }
            case 5: driver.closeForSocket()
            case 6: _ = daemon.answer(payload())
            case 7:
                daemon.decline()
                guard daemon.state == .closed else { preconditionFailure("declined, yet \(String(describing: daemon.state))") }
            default: _ = driver.postMalformed(length: word())
            }
        }
    }

    /// What a PC/SC library writes back (#39), read with each platform's description: the reader-state
    /// array (`dwEventState`, `cbAtr`, `rgbAtr`) and the reader multi-string. Invariants: an ATR never
    /// longer than the platform's array, names never empty nor holding a NUL, nothing read past the bytes,
    /// and what the marshaller writes reads back the same.
    @Sendable public static func pcscMarshal(_ data: [UInt8]) {
        for abi in [PCSCABI.linux, .windows, .macOS] {
            let count = data.count / abi.readerState.size
            var states = (0..<count).map { PCSCReaderState(reader: "R \($0)", currentState: UInt32($0)) }
            data.withUnsafeBytes { PCSCMarshal.readReaderStates(&states, abi: abi, from: $0) }
            for s in states where s.atr.count > abi.readerState.atrCapacity {
                preconditionFailure("an ATR of \(s.atr.count) bytes from a \(abi.readerState.atrCapacity)-byte array")
            }
            let unitSize = abi.encoding.unitSize
            let units = data.isEmpty ? 0 : Int(data[0]) * 4
            let names = data.withUnsafeBytes { PCSCMarshal.decodeMultiString($0, units: units, abi: abi) }
            for name in names where name.isEmpty || name.unicodeScalars.contains("\0") {
                preconditionFailure("a reader name \(name.debugDescription) from a multi-string")
            }
            // Written, then read back: the names' encoding and the entries' fields round-trip.
            let encoded = names.flatMap { PCSCMarshal.encodeString($0, abi: abi) } + PCSCMarshal.encodeString("", abi: abi)
            let again = encoded.withUnsafeBytes { PCSCMarshal.decodeMultiString($0, units: encoded.count / unitSize, abi: abi) }
            // UTF-8 bytes that are not valid UTF-8 were repaired once (U+FFFD): the second pass keeps them.
            guard again == names else { preconditionFailure("the multi-string \(names) reads back as \(again)") }
            var buffer = [UInt8](repeating: 0, count: PCSCMarshal.readerStatesByteCount(states.count, abi: abi))
            buffer.withUnsafeMutableBytes { PCSCMarshal.writeReaderStates(states, readerAddresses: states.indices.map { UInt($0) }, abi: abi, into: $0) }
            var back = states.map { PCSCReaderState(reader: $0.reader, currentState: 0) }
            buffer.withUnsafeBytes { PCSCMarshal.readReaderStates(&back, abi: abi, from: $0) }
            for (i, entry) in back.enumerated() where entry.eventState != 0 || !entry.atr.isEmpty {
                preconditionFailure("entry \(i) written with zero output fields reads back \(entry)")
            }
            for (i, _) in states.enumerated() {
                let current = buffer.withUnsafeBytes { PCSCMarshal.load(size: abi.wordSize, at: i * abi.readerState.size + abi.readerState.currentStateOffset, in: $0) }
                if current != UInt64(states[i].currentState) { preconditionFailure("entry \(i)'s current state written as \(current)") }
            }
        }
    }

    /// The vpcd card side (vsmartcard's protocol, what a stock `libifdvpcd.so` in pcscd sends): the first
    /// byte puts a bundled image in a mono-fente slot, or none; the rest is a stream of frames (2-byte
    /// length, body; one cut short ends it, as a closed connection) played against that slot. Every
    /// body is a message that encodes back to it; controls get no answer; an ATR request gets the
    /// card's ATR (empty without a card); an APDU gets an answer that fits a frame: at least a status
    /// word while a card is there, nothing from an empty slot.
    @Sendable public static func vpcd(_ data: [UInt8]) {
        guard let first = data.first, !images.isEmpty else { return }
        let backend = SimulatorBackend()
        guard let name = backend.addReader(.monoFente).first?.name,
              let slot = backend.physicalReaders.first?.slots.first else { preconditionFailure("the mono-fente profile has no slot") }
        let choice = Int(first) % (images.count + 1)
        let empty = choice == images.count
        if !empty {
            do { try backend.insert(images[choice], into: name) } catch { preconditionFailure("a bundled image does not insert: \(error)") }
        }
        var i = 1
        while i + 2 <= data.count, let length = try? VPCD.bodyLength(header: data[i..<(i + 2)]) {
            i += 2
            guard i + length <= data.count else { return }
            let body = Array(data[i..<(i + length)])
            i += length
            let message = VPCDMessage(body: body)
            guard message.body == body, VPCDMessage(body: message.body) == message else { preconditionFailure("the vpcd body \(body.hexString()) does not round-trip") }
            let answer = VPCDCardSide.answer(to: message, slot: slot)
            guard (answer != nil) == message.expectsAnswer else { preconditionFailure("\(message) answered \(answer.map { $0.hexString() } ?? "nothing")") }
            guard let answer else { continue }
            guard let frame = try? VPCD.frame(answer), (try? VPCD.bodyLength(header: frame.prefix(2))) == answer.count, frame.count == answer.count + 2 else {
                preconditionFailure("an answer of \(answer.count) bytes does not fit a vpcd frame")
            }
            let present: [UInt8]? = if case .present(let atr) = slot.slotState { atr } else { nil }
            if case .getATR = message, answer != (present ?? []) { preconditionFailure("the ATR request answered \(answer.hexString())") }
            if case .apdu = message {
                if present != nil, answer.count < 2 { preconditionFailure("a card in the slot answered \(answer.count) bytes") }
                if empty, !answer.isEmpty { preconditionFailure("an empty slot answered \(answer.hexString())") }
            }
        }
    }

    /// PC/SC part 10 structures as any PC/SC client can send them through pcscd, executed by the
    /// formatter with digits from the input.
    @Sendable public static func pinStructures(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let digits = (0..<Int(first & 0x0F)).map { UInt8(0x30 + ($0 * 7 + Int(first)) % 10) }
        let body = Array(data.dropFirst())
        if let v = try? PINVerifyStructure(bytes: body) {
            if let apdu = try? v.command(digits: digits) {
                guard apdu.count >= 6, Int(apdu[4]) == apdu.count - 5 - (v.template.le == nil ? 0 : 1) else { preconditionFailure("a verify APDU whose Lc is wrong") }
            }
            guard (try? PINVerifyStructure(bytes: v.encoded)) == v else { preconditionFailure("verify structure does not round-trip") }
        }
        if let m = try? PINModifyStructure(bytes: body) {
            _ = try? m.command(current: digits, new: digits.reversed())
            guard (try? PINModifyStructure(bytes: m.encoded)) == m else { preconditionFailure("modify structure does not round-trip") }
        }
        _ = PINPadCapabilities(features: Part10.decodeFeatureList(body), pinProperties: body, tlvProperties: Part10.decodeProperties(body))
    }

    // MARK: - Files

    /// Card images (YAML); what loads is written and loads again the same.
    @Sendable public static func cardImage(_ data: [UInt8]) {
        guard data.count <= 1 << 16 else { return }
        let text = String(decoding: data, as: UTF8.self)
        guard let image = try? CardImageLoader.load(text: text, source: "fuzz.yaml") else { return }
        guard var again = try? CardImageLoader.load(text: CardImageWriter.yaml(image), source: "again.yaml") else {
            preconditionFailure("an image that loads does not load again once written")
        }
        again.source = image.source
        precondition(again == image, "an image written and loaded again is not the same image")
    }

    /// Reader profiles (YAML).
    @Sendable public static func readerProfile(_ data: [UInt8]) {
        guard data.count <= 1 << 16 else { return }
        _ = try? ReaderProfileLoader.load(text: String(decoding: data, as: UTF8.self), source: "fuzz.yaml")
    }

    /// Vitale, CPS and apCV personas (YAML), compiled when they load.
    @Sendable public static func persona(_ data: [UInt8]) {
        guard data.count <= 1 << 16 else { return }
        let text = String(decoding: data, as: UTF8.self)
        if let p = try? PersonaCompiler.load(text: text, source: "fuzz.yaml") { _ = PersonaCompiler.compile(p) }
        _ = try? CPSPersonaCompiler.load(text: text, source: "fuzz.yaml")
    }

    /// The replay importers (pcscd `--apdu` logs, pcsc-spy output) and the images they make.
    @Sendable public static func replayImport(_ data: [UInt8]) {
        guard data.count <= 1 << 16 else { return }
        let text = String(decoding: data, as: UTF8.self)
        for format in ReplayImporter.Format.allCases {
            guard let capture = try? ReplayImporter.parse(text, format: format) else { continue }
            _ = try? ReplayImporter.image(capture, source: "fuzz", date: "2026-12-02")
        }
        _ = ReplayImporter.Format.detect(text)
    }

    // MARK: - The simulated card

    /// The bundled images, one per kind, loaded once.
    static let images: [CardImage] = ["demo/vitale2-demo.yaml", "vitale/vitale1.yaml", "cps/medecin-liberal.yaml", "cps/cps4-medecin.yaml",
                                      "cps/cps3-sans-contact.yaml", "cps/cpa.yaml", "apcv/claire-exemple.yaml", "demo/iso-generic.yaml"].compactMap { path in
        BundledImages.image(at: path).flatMap { try? CardImageLoader.load(text: $0.text, source: $0.path) }
    }

    /// Arbitrary command APDUs against a bundled image (the first byte picks it): an answer every
    /// time, at least a status word, and the card's files unchanged (it accepts no write command).
    @Sendable public static func simulatedCard(_ data: [UInt8]) {
        guard let first = data.first, !images.isEmpty else { return }
        let image = images[Int(first) % images.count]
        let card = SimulatedCard(image: image)
        let before = card.fileSnapshot
        var i = 1
        while i < data.count {
            let n = Int(data[i])
            i += 1
            let end = min(data.count, i + n)
            let command = Array(data[i..<end])
            i = end
            let response = card.process(command)
            guard response.count >= 2 else { preconditionFailure("the simulated card answered \(response.count) bytes") }
        }
        guard card.fileSnapshot == before else { preconditionFailure("the card's files changed") }
    }

    /// The card's responses in a fuzz input: from `start` on, each is a length byte and that many
    /// bytes (the last one cut short where the input ends).
    static func lengthPrefixed(_ data: [UInt8], from start: Int) -> [[UInt8]] {
        var responses: [[UInt8]] = []
        var i = start
        while i < data.count {
            let n = Int(data[i])
            i += 1
            let end = min(data.count, i + n)
            responses.append(Array(data[i..<end]))
            i = end
        }
        return responses
    }

    // MARK: - Decoders of card answers

    /// The Vitale and CPx readers, and the apCV phone over NFC, over a card answering fuzzed responses
    /// (same input layout as ``channel(_:)`` after a selector byte; bit 6 of it picks the phone): a card,
    /// a session token or a typed error.
    @Sendable public static func cardDecoders(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let responses = lengthPrefixed(data, from: 1)
        let transport = FuzzedCard(responses: responses, extended: first & 0x80 != 0)
        let channel = CardChannel(transport: transport)
        if first & 0x40 != 0 {
            // A phone's appli carte Vitale over NFC: its answers to SELECT and GET SESSION TOKEN.
            _ = runBlocking { try? await ApCVSource(.nfc(channel), resolver: UnreachableResolver()).sessionToken() }
            return
        }
        switch first & 3 {
        case 0: _ = runBlocking { try? await VitaleReader(channel: channel).read() }
        case 1: _ = runBlocking { try? await VitaleReader(channel: channel).readVitale1() }
        case 2:
            let reader = CPSReader(channel: channel, generation: first & 4 != 0 ? .cps4 : .cps3)
            _ = runBlocking { try? await reader.read() }
        default:
            let reader = CPSReader(channel: channel, generation: .cps3)
            _ = runBlocking { try? await reader.pinStatus() }
            _ = CPSReader.decodePINStatus(Array(data.dropFirst()))
        }
    }

    /// apCV QR payloads and session tokens.
    @Sendable public static func apcv(_ data: [UInt8]) {
        _ = try? SessionToken(bytes: data)
        let text = String(decoding: data, as: UTF8.self)
        if let token = try? QRPayload.decode(text) {
            _ = try? SessionToken(bytes: token)
            guard (try? QRPayload.decode(QRPayload.encode(token))) == token else { preconditionFailure("QR payload does not round-trip") }
        }
    }

    /// The apCV service's HTTP framing without the transport: the raw-byte header guard over the
    /// bytes (a verdict for each byte up to the first refusal or the header's end, the end only on the
    /// LF of an empty line, "too large" only past the limit), the request body, and the service's
    /// answer documents (an identity that decodes encodes back to itself; an error status never yields one).
    @Sendable public static func apcvHTTP(_ data: [UInt8]) {
        let maximum = 256
        var scanner = HTTPHeaderScanner(maximum: maximum)
        scan: for (i, byte) in data.enumerated() {
            switch scanner.feed(byte) {
            case .more: continue
            case .end:
                guard byte == 10, i > 0, data[i - 1] == 10 || (data[i - 1] == 13 && i > 1 && data[i - 2] == 10) else {
                    preconditionFailure("the header ended at byte \(i), which is not the LF of an empty line")
                }
                break scan
            case .refused(.tooLarge):
                guard i + 1 > maximum else { preconditionFailure("too large after \(i + 1) bytes, the limit is \(maximum)") }
                break scan
            case .refused(.folded), .refused(.whitespaceInName):
                guard byte == 32 || byte == 9 else { preconditionFailure("a whitespace refusal on byte \(byte)") }
                break scan
            }
        }
        _ = IdentityRequest.parse(data)
        if let card = try? IdentityDocument.identity(status: 200, body: data) {
            let again = try? IdentityDocument.identity(status: 200, body: encodeJSON(IdentityDocument(identity: card)))
            guard again == card else { preconditionFailure("an identity document does not round-trip") }
        }
        if (try? IdentityDocument.identity(status: 400, body: data)) != nil { preconditionFailure("an error status gave an identity") }
    }

    /// The image anonymiser over a card image (YAML): a typed refusal, or an image that is written,
    /// loads again and is named as anonymised.
    @Sendable public static func anonymiser(_ data: [UInt8]) {
        guard data.count <= 1 << 16 else { return }
        guard let image = try? CardImageLoader.load(text: String(decoding: data, as: UTF8.self), source: "fuzz.yaml") else { return }
        guard let out = runBlocking({ try? await ImageAnonymiser.anonymise(image, seed: 1).image }) else { return }
        guard out.name.hasPrefix("Anonymised "), (try? CardImageLoader.load(text: CardImageWriter.yaml(out), source: "anonymised.yaml")) != nil else {
            preconditionFailure("an anonymised image does not load once written")
        }
    }

    /// X.509 certificates, DER and PEM, through OpenSSL.
    @Sendable public static func x509(_ data: [UInt8]) {
        if let c = try? X509Certificate(der: data) {
            _ = c.subjectValue("CN")
            _ = try? c.publicKey()
        }
        _ = try? X509Certificate(pem: String(decoding: data, as: UTF8.self))
    }
}

/// The resolver of the fuzzed phone: only its software id is used (``ApCVSource/sessionToken()`` checks
/// the audience and never resolves).
struct UnreachableResolver: ApCVResolver {
    let softwareID = ApCVProtocol.Configuration().softwareID
    func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard { throw .unknownSubject }
}

/// A card that answers the fuzzer's responses in order, then `6F00`; counts the exchanges.
final class FuzzedCard: CardTransport, @unchecked Sendable {
    private let state: Mutex<(responses: [[UInt8]], next: Int, exchanges: Int)>
    let capabilities: TransportCapabilities

    init(responses: [[UInt8]], extended: Bool) {
        state = Mutex((responses, 0, 0))
        capabilities = extended ? .extended : .short
    }

    var exchanges: Int { state.withLock { $0.exchanges } }

    func transmit(_ command: [UInt8]) async throws(CardError) -> [UInt8] {
        state.withLock { s in
            s.exchanges += 1
            guard s.next < s.responses.count else { return [0x6F, 0x00] }
            defer { s.next += 1 }
            return s.responses[s.next]
        }
    }
}

/// Runs `body` on the concurrency pool and waits for it (the fuzzer calls from its own thread).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        result.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }

}

extension FuzzEntries {
    // MARK: - CarteRights

    /// The rights service's HTTP framing: the same bytes as a request head (server side) and as an
    /// answer (client side). Each gives a typed refusal or a value that keeps its promises: a NIR with
    /// no space left (regression: `%%2020` once left `%20`), a body no longer than what arrived.
    @Sendable static func rightsHTTP(_ data: [UInt8]) {
        if let request = try? RightsRequest.parse(head: data) {
            precondition(!request.nir.contains(" "), "a parsed NIR still holds a space")
            if let nir = try? RightsService.normalise(nir: request.nir) { precondition(nir.count == 15, "a normalised NIR is not 15 characters") }
        }
        if let body = try? RightsClient.parseResponse(data, nir: "299019900000077") {
            precondition(body.count <= data.count, "a body longer than the answer")
        }
    }
}

extension FuzzEntries {
    // MARK: - CarteAgent

    /// What `carte agent` reads from a page or a program: the same bytes as a JSON-RPC request, as an
    /// Origin header, as the Host/Origin/Authorization headers of an upgrade (one per line) and as an
    /// allow-list file. Each gives a typed refusal or a value that keeps its promises: a request with a
    /// method and an answerable id; an origin that normalises to itself; an admitted caller only with
    /// the agent's own Host and an allowed origin or the token.
    @Sendable static func agent(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        do {
            let request = try AgentRequest.parse(text)
            precondition(!request.method.isEmpty, "a request without a method")
            _ = AgentMessage.result(id: request.id ?? 0, json: "null")
            _ = try? request.string("reader")
            _ = try? request.bool("pin")
        } catch {
            precondition(error.error.code < 0, "a parse failure with an application code")
            _ = AgentMessage.error(id: error.id, error.error)
        }
        if let origin = AgentAccess.normalise(origin: text) {
            precondition(AgentAccess.normalise(origin: origin) == origin, "an origin that does not normalise to itself")
            precondition(origin.hasPrefix("http://") || origin.hasPrefix("https://"), "an origin of another scheme")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let token = String(repeating: "ab", count: 32)
        let access = AgentAccess(port: 9743, allowedOrigins: ["https://app.example.fr"], token: token)
        let hosts = lines.first.map { [$0] } ?? []
        let origins = lines.count > 1 && !lines[1].isEmpty ? [lines[1]] : []
        let authorization = lines.count > 2 ? [lines[2]] : []
        let pairing = lines.count > 3 && lines[3] == "pair"
        if case .success(let caller) = access.admit(hosts: hosts, origins: origins, authorization: authorization, pairing: pairing) {
            precondition(access.isOwn(host: hosts[0]), "admitted with another Host")
            switch caller {
            case .page(let origin): precondition(origin == "https://app.example.fr", "admitted an origin off the list")
            case .localProgram: precondition(origins.isEmpty && authorization == ["Bearer " + token], "admitted a program without the token")
            case .pairing(let origin): precondition(pairing && origin != "https://app.example.fr", "a pairing caller off the pairing path, or already allowed")
            }
        }
        if let entries = try? AgentFiles.origins(text: text, file: "fuzz") {
            for e in entries { precondition(AgentAccess.normalise(origin: e.origin) == e.origin, "an allow-list entry not normalised") }
        }
    }
}

extension FuzzEntries {
    // MARK: - CarteConsole

    /// What `carte sim console` reads from a page: the same bytes as the body of every action, as the
    /// Host/Origin/Content-Type/key headers of a request (one per line), and as a daemon's trace to
    /// export. Each gives a typed error or a value that keeps its promises: an action for a named slot
    /// with a known fault and 1 to 8 keypad entries, an error that never repeats keypad digits; an
    /// action admitted only from the console's own origin with JSON; an export with a transcript.
    @Sendable static func console(_ data: [UInt8]) {
        for action in ConsoleRequest.actions + ["nope"] {
            do {
                let request = try ConsoleRequest.decode(action: action, body: data)
                precondition(!request.slot.isEmpty, "an action without a slot")
                switch request {
                case .fault(_, let name, _, _, _): precondition((SlotFault.names + ["clear", "unplug", "plug"]).contains(name), "an unknown fault")
                case .keypad(_, let entries): precondition((1...8).contains(entries.count), "\(entries.count) keypad entries")
                default: break
                }
            } catch {
                // What was typed on the keypad never comes back in an error.
                let typed = ((try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any])?["entries"] as? [[String: Any]] ?? []
                for entry in typed {
                    // Four digits or more (an error's own numbers are shorter, but for a body too large).
                    if action == "keypad", let digits = entry["digits"] as? String, digits.count >= 4, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) {
                        if case .tooLarge = error { continue }
                        precondition(!error.description.contains(digits), "a keypad error that repeats what was typed")
                    }
                }
            }
        }
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let access = ConsoleAccess(port: 8795, key: String(repeating: "cd", count: 16))
        let hosts = lines.first.map { [$0] } ?? []
        let origins = lines.count > 1 && !lines[1].isEmpty ? [lines[1]] : []
        let types = lines.count > 2 ? [lines[2]] : []
        if access.checkHost(hosts) == nil { precondition(AgentAccess.isLoopback(host: hosts[0], port: 8795), "a Host that is not the console") }
        if access.checkAction(origins: origins, contentTypes: types) == nil {
            precondition(AgentAccess.normalise(origin: origins[0]).map { AgentAccess.isLoopback(host: String($0.dropFirst(7)), port: 8795) } == true, "an action from another origin")
        }
        if lines.count > 3, access.hasKey([lines[3]]) { precondition(lines[3].contains(access.key), "a key header without the key") }
        if let trace = (try? JSONSerialization.jsonObject(with: Data(data))) as? [String: Any], let (_, image) = try? ConsoleExport.image(fromTrace: trace) {
            precondition(image.replay?.transcript.isEmpty == false, "an export without a transcript")
        }
    }
}
