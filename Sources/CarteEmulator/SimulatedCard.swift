public import CarteCore
public import Logging
import CarteCrypto

/// A generic ISO/IEC 7816-4 card played from a ``CardImage``.
///
/// Supports SELECT (by FID, child DF, EF, parent, DF name/AID, path from the MF or the current DF;
/// FCI, FCP, FMD or no data per P2), READ BINARY (offset and SFI forms), READ RECORD, GET CHALLENGE,
/// VERIFY with a try counter and GET RESPONSE, and answers like a T=0 card (`61xx`, `6Cxx`) when the
/// image says so. Everything else gets the ISO status word a card would give (`6D00`, `6E00`, `6A86`,
/// `6A82`, …).
///
/// Not thread-safe: a ``VirtualSlot`` owns each card and serialises access to it.
public final class SimulatedCard {
    /// The image the card plays.
    public let image: CardImage

    // Flattened file tree: index 0 is the MF.
    struct FileEntry {
        var parent: Int?
        var isDF: Bool
        var fid: UInt16?
        var sfi: UInt8?
        var aid: [UInt8]?
        var children: [Int]
        var read: CardImage.AccessRule
        var data: [UInt8]
        var records: [[UInt8]]?
        var fci: [UInt8]?
    }

    var files: [FileEntry] = []
    var pins: [UInt8: PINState] = [:]

    /// Every file's content and records, in tree order (the fuzz targets check that commands do not
    /// change them: the simulated card has no write command).
    package var fileSnapshot: [[[UInt8]]] { files.map { [$0.data] + ($0.records ?? []) } }
    struct PINState: CustomReflectable {
        var value: [UInt8]
        var maxTries: Int
        var remaining: Int
        var unblockedBy: UInt8?
        var usageCounter: Int?
        var verified = false
        /// `dump` and debuggers never show the value.
        var customMirror: Mirror { Mirror(self, children: ["remaining": remaining, "maxTries": maxTries, "verified": verified, "value": "<redacted>"], displayStyle: .struct) }
    }

    // The state of the channel being served; other open channels wait in `parkedChannels`.
    var currentDF = 0
    var currentEF: Int? = nil
    var currentRecord: Int? = nil
    var pending: [UInt8] = []
    var activeChannel = 0
    /// The channels open besides the basic one (opened by SELECT or MANAGE CHANNEL).
    var openChannels: Set<Int> = [0]
    var parkedChannels: [Int: ChannelState] = [:]
    struct ChannelState {
        var currentDF = 0
        var currentEF: Int? = nil
        var currentRecord: Int? = nil
        var pending: [UInt8] = []
        var environment = SecurityEnvironment()
    }

    /// The keys and algorithms chosen by MSE SET, and the hash PSO HASH left for the signature.
    struct SecurityEnvironment {
        /// Digital signature template (`B6`): key and algorithm reference.
        var signKey: UInt8?
        var signAlgorithm: UInt8?
        /// Authentication template (`A4`).
        var authenticationKey: UInt8?
        /// Confidentiality template (`B8`).
        var decipherKey: UInt8?
        /// Hash template (`AA`): the algorithm PSO HASH uses.
        var hashAlgorithm: DigestAlgorithm?
        /// What the last PSO HASH computed, for PSO CDS without data.
        var hash: (algorithm: DigestAlgorithm, value: [UInt8])?
    }
    var environment = SecurityEnvironment()
    /// Data of a command chain (CLA b5 set) waiting for its last command.
    var chained: (ins: UInt8, p1: UInt8, p2: UInt8, data: [UInt8])?
    /// The image's keys, decoded once.
    let privateKeys: [UInt8: (key: CardImage.Key, rsa: RSAPrivateKey?)]

    /// A phone's application is selected (apCV images).
    var phoneSelected = false
    /// Where a transcript replay is.
    var replayState = ReplayState()
    /// Where the card reports what a log should show (a replay's unexpected commands, at warning level).
    public var logger: Logger?
    /// A phone's signing key, decoded once (apCV images).
    let phoneKey: ECPrivateKey?

    private var rng: SplitMix64
    private let overrides: [[UInt8]: [UInt8]]

    /// Builds a card in its just-reset state.
    public init(image: CardImage) {
        self.image = image
        self.rng = SplitMix64(seed: image.behaviour.challengeSeed)
        var o: [[UInt8]: [UInt8]] = [:]
        for override in image.overrides where o[override.command] == nil { o[override.command] = override.response }
        self.overrides = o
        var keys: [UInt8: (key: CardImage.Key, rsa: RSAPrivateKey?)] = [:]
        for key in image.keys { keys[key.reference] = (key, try? RSAPrivateKey(pem: key.privateKeyPEM)) }
        self.privateKeys = keys
        self.phoneKey = image.apcv.flatMap { try? ECPrivateKey(pem: $0.privateKeyPEM) }
        flatten(.dedicated(image.root), parent: nil)
        reset()
    }

    private func flatten(_ node: CardImage.Node, parent: Int?) {
        let index = files.count
        switch node {
        case .dedicated(let df):
            files.append(FileEntry(parent: parent, isDF: true, fid: df.fid, sfi: nil, aid: df.aid, children: [], read: .always, data: [], records: nil, fci: df.fci))
            for child in df.children {
                files[index].children.append(files.count)
                flatten(child, parent: index)
            }
        case .elementary(let ef):
            var entry = FileEntry(parent: parent, isDF: false, fid: ef.fid, sfi: ef.sfi, aid: nil, children: [], read: ef.read, data: [], records: nil, fci: ef.fci)
            switch ef.content {
            case .transparent(let bytes): entry.data = bytes
            case .records(let records): entry.records = records
            }
            files.append(entry)
        }
    }

    /// Warm reset: back to the MF, no verified PIN, nothing pending. Try counters keep their values
    /// (they live in the card's non-volatile memory).
    public func reset() {
        phoneSelected = false
        replayState.next = 0  // a transcript starts again after a reset
        replayState.used = []
        currentDF = 0
        currentEF = nil
        currentRecord = nil
        pending = []
        activeChannel = 0
        openChannels = [0]
        parkedChannels = [:]
        environment = SecurityEnvironment()
        chained = nil
        if pins.isEmpty {
            for pin in image.pins {
                pins[pin.reference] = PINState(value: pin.value, maxTries: pin.maxTries, remaining: pin.remainingTries, unblockedBy: pin.unblockedBy, usageCounter: pin.usageCounter)
            }
        } else {
            for key in pins.keys { pins[key]!.verified = false }
        }
    }

    /// Tries left for the PIN `reference`, or `nil` if the card has no such PIN.
    public func remainingTries(forPIN reference: UInt8) -> Int? { pins[reference]?.remaining }

    // MARK: - Processing

    /// Processes one command APDU and returns the response bytes (data + SW1 SW2).
    public func process(_ apdu: [UInt8]) -> [UInt8] {
        if !overrides.isEmpty, let r = overrides[apdu] { return r }
        if let replay = image.replay {
            if replay.source == .transcript { return replayAnswer(apdu, replay) }
            // The learned file system serves SELECT, READ BINARY, READ RECORD and GET RESPONSE of the
            // inter-industry class; other commands (GET DATA, VERIFY, a memory card's or a GSM-class
            // volet's reads…) are answered from the transcript, in any order.
            let fromTranscript = apdu.count >= 4 && (apdu[0] & 0x80 != 0 || ![0xA4, 0xB0, 0xB2, 0xC0].contains(apdu[1])
                                                     || (apdu[1] == 0xC0 && replayState.lastFromTranscript))
            replayState.lastFromTranscript = fromTranscript
            if fromTranscript {
                var keyed = replay
                keyed.policy = .keyed
                return replayAnswer(apdu, keyed)
            }
        }
        let command: CommandAPDU
        do {
            command = try CommandAPDU(bytes: apdu)
        } catch {
            return sw(.wrongLength)
        }
        return process(command)
    }

    /// Processes one decoded command APDU.
    public func process(_ c: CommandAPDU) -> [UInt8] {
        if let phone = image.apcv { return processPhone(c, phone) }
        if let memory = image.memory, c.cla == memory.cla { return processMemory(c, memory) }
        if c.cla == 0xA0 && image.behaviour.cps2terVolet { return processCPS2ter(c) }
        // Class checks.
        let cla = c.cla
        if cla == 0xFF { return sw(.claNotSupported) }
        let isInterIndustry = cla & 0x80 == 0
        let base: UInt8 = isInterIndustry ? (cla & 0x40 == 0 ? cla & 0xE0 : 0x40) : cla
        guard image.behaviour.classes.contains(base) || image.behaviour.classes.contains(cla) else {
            return sw(.claNotSupported)
        }
        var c = c
        if isInterIndustry {
            let channel = c.logicalChannel ?? 0
            if channel != activeChannel || !openChannels.contains(channel) {
                guard channel < image.behaviour.logicalChannels else { return sw(.logicalChannelNotSupported) }
                // A closed channel opens with a SELECT (ISO 7816-4 §7.1.2); other commands are refused.
                guard openChannels.contains(channel) || c.ins == 0xA4 else { return sw(.logicalChannelNotSupported) }
                openChannels.insert(channel)
                switchChannel(to: channel)
            }
            if cla & 0x40 == 0 && cla & 0x0C != 0 { return sw(.secureMessagingNotSupported) }
            if c.isChained {
                // Chaining is for the security operations (PSO DECIPHER of a 2048-bit cryptogram).
                guard c.ins == 0x2A || c.ins == 0x88 else { return sw(.commandChainingNotSupported) }
                if let previous = chained, (previous.ins, previous.p1, previous.p2) != (c.ins, c.p1, c.p2) {
                    chained = nil
                    return sw(.lastCommandOfChainExpected)
                }
                chained = (c.ins, c.p1, c.p2, (chained?.data ?? []) + c.data)
                guard chained!.data.count <= 4096 else { chained = nil; return sw(.wrongLength) }
                return sw(.success)
            }
            if let previous = chained {
                chained = nil
                guard (previous.ins, previous.p1, previous.p2) == (c.ins, c.p1, c.p2),
                      let whole = try? CommandAPDU(cla: c.cla, ins: c.ins, p1: c.p1, p2: c.p2, data: previous.data + c.data, le: c.le) else {
                    return sw(.lastCommandOfChainExpected)
                }
                c = whole
            }
        }
        if c.ins != 0xC0 { pending = [] }

        let result: (data: [UInt8], sw: StatusWord)
        switch c.ins {
        case 0xA4: result = select(c)
        case 0xB0: result = readBinary(c)
        case 0xB2: result = readRecord(c)
        case 0x84: result = getChallenge(c)
        case 0x20: result = verify(c)
        case 0x24: result = changeReferenceData(c)
        case 0x2C: result = resetRetryCounter(c)
        case 0xCB: result = getData(c)
        case 0x22: result = manageSecurityEnvironment(c)
        case 0x2A: result = performSecurityOperation(c)
        case 0x88: result = internalAuthenticate(c)
        case 0x70: result = manageChannel(c)
        case 0xC0: return getResponse(c)
        default: return sw(.insNotSupported)
        }
        return shape(c, result.data, result.sw)
    }

    /// Parks the state of the active channel and takes up `channel`'s (opening it at the MF if new).
    private func switchChannel(to channel: Int) {
        parkedChannels[activeChannel] = ChannelState(currentDF: currentDF, currentEF: currentEF, currentRecord: currentRecord, pending: pending, environment: environment)
        let next = parkedChannels.removeValue(forKey: channel) ?? ChannelState()
        currentDF = next.currentDF
        currentEF = next.currentEF
        currentRecord = next.currentRecord
        pending = next.pending
        environment = next.environment
        activeChannel = channel
    }

    /// MANAGE CHANNEL: open (P1 `00`, the card picks the number) or close (P1 `80`, P2 the channel).
    private func manageChannel(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        let limit = image.behaviour.logicalChannels
        guard limit > 1 else { return ([], .insNotSupported) }
        switch c.p1 {
        case 0x00:
            guard c.p2 == 0 else { return ([], .incorrectP1P2) }
            guard let free = (1..<limit).first(where: { !openChannels.contains($0) }) else { return ([], .conditionsOfUseNotSatisfied) }
            openChannels.insert(free)
            parkedChannels[free] = ChannelState()
            return ([UInt8(free)], .success)
        case 0x80:
            let channel = c.p2 == 0 ? activeChannel : Int(c.p2)
            guard channel != 0, channel < limit else { return ([], .incorrectP1P2) }
            openChannels.remove(channel)
            parkedChannels[channel] = nil
            if channel == activeChannel {  // closing the current channel forgets its state
                let fresh = ChannelState()
                (currentDF, currentEF, currentRecord, pending, environment) = (fresh.currentDF, fresh.currentEF, fresh.currentRecord, fresh.pending, fresh.environment)
            }
            return ([], .success)
        default:
            return ([], .incorrectP1P2)
        }
    }

    /// Applies T=0 / T=1 response shaping to a command's natural answer.
    func shape(_ c: CommandAPDU, _ data: [UInt8], _ status: StatusWord) -> [UInt8] {
        if data.isEmpty { return sw(status) }
        if image.behaviour.t0Responses {
            if !c.data.isEmpty || c.le == nil {
                // Case 3/4 under T=0: the data waits for GET RESPONSE.
                if status != .success { return sw(status) }
                pending = data
                return sw(.bytesAvailable(min(data.count, 256)))
            }
            // Case 2: Le must be exact (P3 = 00 means 256).
            let ne = c.le!
            if ne != data.count && data.count <= 256 && (ne > data.count || c.ins != 0xB0) {
                return sw(.wrongLe(exact: data.count))
            }
            return respond(Array(data.prefix(ne)), status)
        }
        // T=1: no Le, no data; otherwise at most Ne bytes.
        guard let ne = c.le else { return sw(status) }
        if data.count > ne { return respond(Array(data.prefix(ne)), status) }  // the first Ne bytes
        return respond(data, status)
    }

    @inline(__always)
    func sw(_ s: StatusWord) -> [UInt8] { [s.sw1, s.sw2] }

    @inline(__always)
    func respond(_ data: [UInt8], _ s: StatusWord) -> [UInt8] {
        var out = data
        out.append(s.sw1)
        out.append(s.sw2)
        return out
    }

    private func getResponse(_ c: CommandAPDU) -> [UInt8] {
        guard !pending.isEmpty else { return sw(.conditionsOfUseNotSatisfied) }
        guard c.data.isEmpty, c.p1 == 0, c.p2 == 0 else { return sw(.incorrectP1P2) }
        let ne = c.le ?? 256
        if image.behaviour.t0Responses && ne > pending.count {
            return sw(.wrongLe(exact: pending.count))
        }
        let chunk = Array(pending.prefix(ne))
        pending.removeFirst(chunk.count)
        if !pending.isEmpty { return respond(chunk, .bytesAvailable(min(pending.count, 256))) }
        return respond(chunk, .success)
    }

    // MARK: Memory cards (B0')

    /// `C0`: the first and last addresses (4 bytes each, big-endian; synthetic layout). `B0`: read Le
    /// bytes from the address in P1-P2.
    private func processMemory(_ c: CommandAPDU, _ m: CardImage.Memory) -> [UInt8] {
        switch c.ins {
        case 0xC0:
            guard let le = c.le, c.data.isEmpty else { return sw(.wrongLength) }
            let info: [UInt8] = [0, 0, UInt8(m.firstAddress >> 8), UInt8(m.firstAddress & 0xFF), 0, 0, UInt8(m.lastAddress >> 8), UInt8(m.lastAddress & 0xFF)]
            guard le == info.count else { return sw(.wrongLe(exact: info.count)) }
            return respond(info, .success)
        case 0xB0:
            guard let le = c.le, c.data.isEmpty else { return sw(.wrongLength) }
            let address = UInt16(c.p1) << 8 | UInt16(c.p2)
            guard address >= m.firstAddress, address <= m.lastAddress else { return sw(.wrongP1P2) }
            let start = Int(address - m.firstAddress) * m.wordSize
            let end = min(start + le, m.data.count)
            var chunk = Array(m.data[start..<end])
            chunk += [UInt8](repeating: 0, count: le - chunk.count)  // past the data: blank memory
            return respond(chunk, .success)
        default:
            return sw(.insNotSupported)
        }
    }

    // MARK: SELECT

    private func select(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        if image.behaviour.selectRejectedP2.contains(c.p2) { return ([], .incorrectP1P2) }
        let p2 = c.p2
        guard p2 & 0xF3 == 0 else { return ([], .incorrectP1P2) }  // only "first occurrence" and the 4 answer forms
        let target: Int?
        switch c.p1 {
        case 0x00:
            if c.data.isEmpty || c.data == [0x3F, 0x00] {
                target = 0
            } else {
                guard c.data.count == 2 else { return ([], .ncInconsistentWithP1P2) }
                target = findByFID(UInt16(c.data[0]) << 8 | UInt16(c.data[1]))
            }
        case 0x01:
            guard c.data.count == 2 else { return ([], .ncInconsistentWithP1P2) }
            let fid = UInt16(c.data[0]) << 8 | UInt16(c.data[1])
            target = files[currentDF].children.first { files[$0].isDF && files[$0].fid == fid }
        case 0x02:
            guard c.data.count == 2 else { return ([], .ncInconsistentWithP1P2) }
            let fid = UInt16(c.data[0]) << 8 | UInt16(c.data[1])
            if fid == 0x3F00 && image.behaviour.securityAttributesInFCP {
                target = 0  // IAS-ECC cards take the MF this way (OpenSC's iasecc_pin_get_policy sends it)
            } else {
                target = files[currentDF].children.first { !files[$0].isDF && files[$0].fid == fid }
            }
        case 0x03:
            guard c.data.isEmpty else { return ([], .ncInconsistentWithP1P2) }
            target = files[currentDF].parent ?? (currentDF == 0 ? nil : 0)
        case 0x04:
            guard !c.data.isEmpty, c.data.count <= 16 else { return ([], .ncInconsistentWithP1P2) }
            target = files.indices.first { files[$0].aid == c.data }
                ?? files.indices.first { files[$0].aid.map { $0.starts(with: c.data) } ?? false }
        case 0x08, 0x09:
            guard !c.data.isEmpty, c.data.count % 2 == 0 else { return ([], .ncInconsistentWithP1P2) }
            var path: [UInt16] = stride(from: 0, to: c.data.count, by: 2).map { UInt16(c.data[$0]) << 8 | UInt16(c.data[$0 + 1]) }
            var at = c.p1 == 0x08 ? 0 : currentDF
            if path.first == 0x3F00 {
                at = 0
                path.removeFirst()
            }
            var found: Int? = at
            for (i, fid) in path.enumerated() {
                guard let here = found, files[here].isDF else { found = nil; break }
                found = files[here].children.first { files[$0].fid == fid && (i == path.count - 1 || files[$0].isDF) }
            }
            target = found
        default:
            return ([], .incorrectP1P2)
        }
        guard let index = target else { return ([], .fileNotFound) }
        let file = files[index]
        if file.isDF {
            currentDF = index
            currentEF = nil
        } else {
            currentDF = file.parent ?? 0
            currentEF = index
        }
        currentRecord = nil
        switch p2 & 0x0C {
        case 0x0C: return ([], .success)
        case 0x04: return (fcp(index), .success)
        case 0x08: return (TLV(tag: 0x64, value: []).encoded(), .success)
        default: return (file.fci ?? TLV(tag: 0x6F, children: fcpObjects(index)).encoded(), .success)
        }
    }

    /// ISO 7816-4 file search for P1 = 00: the current DF itself, its children, its parent, its siblings.
    func findByFID(_ fid: UInt16) -> Int? {
        if files[currentDF].fid == fid { return currentDF }
        if let i = files[currentDF].children.first(where: { files[$0].fid == fid }) { return i }
        if let p = files[currentDF].parent {
            if files[p].fid == fid { return p }
            if let i = files[p].children.first(where: { files[$0].fid == fid }) { return i }
        }
        return nil
    }

    func fcpObjects(_ index: Int) -> [TLV] {
        let f = files[index]
        var objects: [TLV] = []
        if f.isDF {
            objects.append(TLV(tag: 0x82, value: [0x38]))
        } else if let records = f.records {
            objects.append(TLV(tag: 0x82, value: [0x02, 0x21, 0x00, UInt8(min(records.map(\.count).max() ?? 0, 255)), 0x00, UInt8(min(records.count, 255))]))
        } else {
            objects.append(TLV(tag: 0x80, value: [UInt8(f.data.count >> 8 & 0xFF), UInt8(f.data.count & 0xFF)]))
            objects.append(TLV(tag: 0x82, value: [0x01]))
        }
        if let fid = f.fid { objects.append(TLV(tag: 0x83, value: [UInt8(fid >> 8), UInt8(fid & 0xFF)])) }
        if let aid = f.aid { objects.append(TLV(tag: 0x84, value: aid)) }
        if let sfi = f.sfi { objects.append(TLV(tag: 0x88, value: [sfi << 3])) }
        objects.append(TLV(tag: 0x8A, value: [0x05]))
        if image.behaviour.securityAttributesInFCP {
            // Access mode byte 01 (READ) and its condition: 00 always, 12 behind a PIN, FF never.
            let condition: UInt8
            switch f.read {
            case .always: condition = 0x00
            case .pin: condition = 0x12
            case .never: condition = 0xFF
            }
            objects.append(TLV(tag: 0xA1, children: [TLV(tag: 0x8C, value: [0x01, condition])]))
        }
        return objects
    }

    func fcp(_ index: Int) -> [UInt8] {
        if let fci = files[index].fci { return fci }
        return TLV(tag: 0x62, children: fcpObjects(index)).encoded()
    }

    // MARK: READ BINARY / READ RECORD

    func canRead(_ index: Int) -> StatusWord? {
        switch files[index].read {
        case .always: return nil
        case .never: return .securityStatusNotSatisfied
        case .pin(let ref): return pins[ref]?.verified == true ? nil : .securityStatusNotSatisfied
        }
    }

    /// The EF a READ command targets: by SFI (selecting it) or the current EF.
    func targetEF(sfi: UInt8?) -> (Int?, StatusWord?) {
        if let sfi, sfi != 0 {
            guard let i = files[currentDF].children.first(where: { !files[$0].isDF && files[$0].sfi == sfi }) else {
                return (nil, .fileNotFound)
            }
            currentEF = i
            currentRecord = nil
            return (i, nil)
        }
        guard let ef = currentEF else { return (nil, .noCurrentEF) }
        return (ef, nil)
    }

    private func readBinary(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.data.isEmpty else { return ([], .wrongLength) }
        guard let ne = c.le else { return ([], .wrongLength) }
        let sfi: UInt8?
        let offset: Int
        if c.p1 & 0x80 != 0 {
            guard c.p1 & 0x60 == 0 else { return ([], .incorrectP1P2) }
            sfi = c.p1 & 0x1F
            offset = Int(c.p2)
        } else {
            sfi = nil
            offset = Int(c.p1) << 8 | Int(c.p2)
        }
        let (target, error) = targetEF(sfi: sfi)
        guard let index = target else { return ([], error!) }
        if files[index].records != nil { return ([], .incompatibleFileStructure) }
        if let denied = canRead(index) { return ([], denied) }
        let data = files[index].data
        guard offset <= data.count else { return ([], .wrongP1P2) }
        if offset == data.count { return ([], .endOfFileReached) }
        let available = data.count - offset
        let n = min(ne, available)
        let chunk = Array(data[offset..<(offset + n)])
        // Asked for more than what is left (other than "as much as possible", Le = 00): warn.
        if ne > available && !(ne == 256 && !c.isExtended) && ne != 65_536 && !image.behaviour.t0Responses {
            return (chunk, .endOfFileReached)
        }
        return (chunk, .success)
    }

    private func readRecord(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.data.isEmpty, c.le != nil else { return ([], .wrongLength) }
        guard c.p2 & 0x07 == 0x04 else { return ([], .incorrectP1P2) }
        let (target, error) = targetEF(sfi: c.p2 >> 3)
        guard let index = target else { return ([], error!) }
        guard let records = files[index].records else { return ([], .incompatibleFileStructure) }
        if let denied = canRead(index) { return ([], denied) }
        let number = c.p1 == 0 ? (currentRecord ?? 0) : Int(c.p1)
        guard number >= 1, number <= records.count else { return ([], .recordNotFound) }
        currentRecord = number
        return (records[number - 1], .success)
    }

    // MARK: GET CHALLENGE / VERIFY

    private func getChallenge(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.data.isEmpty, c.p1 == 0, c.p2 == 0 else { return ([], .incorrectP1P2) }
        guard let ne = c.le, ne <= 256 else { return ([], .wrongLength) }
        var out: [UInt8] = []
        out.reserveCapacity(ne)
        while out.count < ne {
            var v = rng.next()
            for _ in 0..<8 where out.count < ne {
                out.append(UInt8(v & 0xFF))
                v >>= 8
            }
        }
        return (out, .success)
    }

    private func verify(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.p1 == 0x00 || c.p1 == 0xFF else { return ([], .incorrectP1P2) }
        // Under T=0 a case 1 command travels with P3 = 00, which also reads as "Le = 256": a status
        // query (OpenSC's IAS-ECC driver sends `00 20 00 01 00`).
        let t0CaseOne = image.behaviour.t0Responses && c.data.isEmpty && c.le == 256 && !c.isExtended
        guard c.le == nil || t0CaseOne else { return ([], .wrongLength) }
        guard let ref = pinReference(c.p2), var pin = pins[ref] else { return ([], .referencedDataNotFound) }
        defer { pins[ref] = pin }
        if c.p1 == 0xFF {  // ISO 7816-4 (2013): reset the verification status
            guard c.data.isEmpty else { return ([], .wrongLength) }
            pin.verified = false
            return ([], .success)
        }
        if c.data.isEmpty {  // status query: no try consumed
            if pin.remaining == 0 { return ([], .authenticationMethodBlocked) }
            return ([], pin.verified ? .success : .triesRemaining(pin.remaining))
        }
        if pin.remaining == 0 { return ([], .authenticationMethodBlocked) }
        if constantTimeEqual(c.data, pin.value) {
            pin.remaining = pin.maxTries
            pin.verified = true
            return ([], .success)
        }
        pin.remaining -= 1
        pin.verified = false
        return ([], .triesRemaining(pin.remaining))
    }

    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// A small deterministic generator (SplitMix64): reproducible challenges, and the rounds of `carte sim soak`.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    /// A generator that always plays the same sequence for `seed`.
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
