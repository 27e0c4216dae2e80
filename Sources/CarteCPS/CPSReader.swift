public import CarteCore
public import CarteCrypto
public import Logging

/// Reads and uses a CPx card (CPS3, CPS3 contactless, CPS4) through any ``CardChannel``.
///
/// APDUs ([C], domain-facts §5.3–§5.5): SELECT with P1 `02`/`04`/`09` and P2 `0C` (never `00`, which
/// a CPS3 refuses); the CHV status by GET DATA `CB 3F FF` after selecting the MF; VERIFY `20`, CHANGE
/// `24` and RESET RETRY COUNTER `2C` with the PIN reference as P2; MSE SET, PSO HASH (the host hashes
/// every whole block but the last and the card finishes), PSO COMPUTE DIGITAL SIGNATURE `2A 9E 9A`,
/// INTERNAL AUTHENTICATE `88` and PSO DECIPHER `2A 80 86`. A CPS4 does its PIN and key commands on
/// logical channel 1 with the ChipDoc applet.
///
/// **A PIN is sent once.** VERIFY, CHANGE and RESET RETRY COUNTER go out with ``TransmitPolicy/raw``
/// (no automatic exchange at all) and are never repeated, whatever the answer; a wrong PIN reports
/// the tries left. Traces and logs show these commands redacted.
public struct CPSReader: Sendable {
    /// What is configurable because it is not public ([P]/[U] in domain-facts §5).
    public struct Configuration: Sendable, Hashable {
        /// VERIFY P2 of the holder's PIN. `01`: [C] from a real card's GET DATA capture (CHV 01).
        public var pinReference: UInt8 = 0x01
        /// Reference of the PUK (CPS4 VERIFY before UNBLOCK). **Synthetic** default `02`.
        public var pukReference: UInt8 = 0x02
        /// Bytes a PIN or PUK is padded to in VERIFY data, and the padding byte. **Synthetic**
        /// defaults (8 bytes, `FF`); the CPS2ter VERIFY carries 8 bytes ([C] `A0 20 00 ref 08`).
        public var pinBlockLength: Int = 8
        public var pinPadding: UInt8 = 0xFF
        /// Key references for MSE SET on a CPS3. **Synthetic** defaults.
        public var authenticationKey: UInt8 = 0x81
        public var signatureKey: UInt8 = 0x82
        /// MSE algorithm byte for the hash template (`40` = SHA-256, [C] ANS `pkcs15-sec.c`).
        public var hashAlgorithm: UInt8 = 0x40
        /// MSE algorithm byte for the signature template: `42` = SHA-256 with RSA PKCS#1 v1.5 ([C] ANS
        /// `pkcs15-sec.c`, the IAS-ECC reference; `12` is SHA-1).
        public var signatureAlgorithm: UInt8 = 0x42
        /// MSE algorithm byte for RSA PKCS#1 v1.5 authentication (INTERNAL AUTHENTICATE): `02` ([C] ANS `pkcs15-sec.c`).
        public var rsaAlgorithm: UInt8 = 0x02
        /// MSE algorithm byte for RSA PKCS#1 v1.5 deciphering: `1A` ([C] ANS `pkcs15-sec.c`).
        public var decipherAlgorithm: UInt8 = 0x1A
        /// The CPS4 authentication (and deciphering) key: `20` ([C] the ANS Cryptolib's `CPS4_AUTH_PRIV_KEY_ID`).
        public var chipDocAuthenticationKey: UInt8 = 0x20
        /// The CPS4 signature key. **Synthetic** default `21` (the Cryptolib takes it from the PrKDF).
        public var chipDocSignatureKey: UInt8 = 0x21
        /// The CPS4 signature algorithm: `28` = SHA-256 with RSA PKCS#1 v1.5 ([C] the Cryptolib's `cards.h`).
        public var chipDocSignatureAlgorithm: UInt8 = 0x28
        /// Bytes asked per READ BINARY (256 = Le `00`; the ANS driver uses up to `E7` = 231). Values
        /// outside 1…65536 are brought back into that range.
        public var readChunk: Int = 256
        /// The PIN's try counter maximum, reported by a CPS4 whose PIN is verified (its status query
        /// then says only "verified"). **Synthetic** default 3 ([P] production cards, §5.6).
        public var pinMaxTries: Int = 3
        /// Seconds the reader's PIN pad waits for the holder (`bTimerOut`; OpenSC uses 30).
        public var pinPadTimeout: UInt8 = 30

        /// The defaults described on each property.
        public init() {}
    }

    let channel: CardChannel
    /// The generation this reader drives.
    public let generation: CPSGeneration
    /// The configuration.
    public let configuration: Configuration
    let logger: Logger

    /// A reader for the card whose ATR is `atr`; throws ``CPSError/notACPS(_:)`` when the ATR is not a CPx one.
    public init(channel: CardChannel, atr: [UInt8], configuration: Configuration = Configuration(), logger: Logger = Logger(label: "cartekit.cps", factory: { _ in SwiftLogNoOpLogHandler() })) throws(CPSError) {
        guard let generation = CPSGeneration.from(atr: atr) else { throw .notACPS("the ATR \(atr.hexString()) is not a CPS3, CPS3 contactless or CPS4 ATR") }
        self.init(channel: channel, generation: generation, configuration: configuration, logger: logger)
    }

    /// A reader for a card of a known generation.
    public init(channel: CardChannel, generation: CPSGeneration, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "cartekit.cps", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.channel = channel
        self.generation = generation
        self.configuration = configuration
        self.logger = logger
    }

    typealias Held = CardChannel.ExclusiveChannel

    private func exclusive<T: Sendable>(_ body: (Held) async throws(CPSError) -> T) async throws(CPSError) -> T {
        try await channel.withExclusiveAccess(wrapping: CPSError.card, body)
    }

    private func send(_ held: Held, _ command: CommandAPDU, policy: TransmitPolicy? = nil) async throws(CPSError) -> ResponseAPDU {
        do {
            return try await held.transmit(command, policy: policy)
        } catch {
            throw .card(error)
        }
    }

    private func apdu(_ cla: UInt8, _ ins: UInt8, _ p1: UInt8, _ p2: UInt8, _ data: [UInt8] = [], le: Int? = nil) -> CommandAPDU {
        // Every command built here has valid lengths (data ≤ 65535, Le in 1…65536).
        try! CommandAPDU(cla: cla, ins: ins, p1: p1, p2: p2, data: data, le: le)
    }

    private func apduCount(since before: Int?) -> Int {
        guard let before, let trace = channel.trace else { return 0 }
        return trace.commandCount(from: before)
    }

    // MARK: - Reading

    /// Reads the card, the holder, the situations (when readable: they need the PIN on a real card
    /// and on CarteKit's images) and, with `certificates`, both certificates.
    public func read(certificates: Bool = true) async throws(CPSError) -> ProfessionalCard {
        let before = channel.trace?.nextSequence
        var card = try await exclusive { held throws(CPSError) -> ProfessionalCard in
            var result = ProfessionalCard(card: CPSCardInfo(generation: generation))
            try await readSerial(held, into: &result)
            try await selectApplication(held)
            let cardTLV = try await readTemplate(held, CPSLayout.cardFile, "CPS_ID_CARD", CPSLayout.cardTemplate, &result.issues)
            let holderTLV = try await readTemplate(held, CPSLayout.holderFile, "CPS_NAME_PS", CPSLayout.holderTemplate, &result.issues)
            let infoTLV = try await readTemplate(held, CPSLayout.infoFile, "CPS_INFO_PS", CPSLayout.infoTemplate, &result.issues)
            if let t = cardTLV { Self.decodeCard(t, into: &result.card) }
            if let h = holderTLV { result.holder = Self.decodeHolder(h, info: infoTLV) }
            let indexes: [Int]
            if let raw = infoTLV?.children?.first(where: { $0.tag == CPSLayout.Info.situationIndexes })?.value {
                indexes = raw.map(Int.init).filter { (1...16).contains($0) }
            } else {
                indexes = Array(1...16)  // a card without CarteKit's index: probe the 16 files
            }
            if generation != .cps3Contactless {  // not readable over the contactless interface (§5.3)
                (result.situations, result.situationsNeedPIN) = try await readSituations(held, indexes: indexes, &result.issues)
            }
            result.usesSyntheticLayout = cardTLV != nil || holderTLV != nil || infoTLV != nil
            if certificates { result.certificates = try await readCertificates(held, &result.issues) }
            return result
        }
        card.apduCount = apduCount(since: before)
        return card
    }

    /// Reads only the two certificates.
    public func certificates() async throws(CPSError) -> [CPSCertificate] {
        try await exclusive { held throws(CPSError) -> [CPSCertificate] in
            try await selectApplication(held)
            var issues: [String] = []
            let certs = try await readCertificates(held, &issues)
            if certs.isEmpty, let first = issues.first { throw .malformed(file: "certificates", first) }
            return certs
        }
    }

    /// EF.SN.ICC (`3F00/D003`, 12 bytes: `5A 0A`, the issuer `80 25 00 00 01`, the serial in BCD, a
    /// final nibble `F`), read by path from the MF.
    private func readSerial(_ held: Held, into result: inout ProfessionalCard) async throws(CPSError) {
        let select = try await send(held, apdu(0x00, 0xA4, 0x09, 0x0C, [0x3F, 0x00, UInt8(CPSLayout.efSNICC >> 8), UInt8(CPSLayout.efSNICC & 0xFF)]))
        guard select.isSuccess else {
            result.issues.append("EF.SN.ICC: SELECT answered \(select.statusWord)")
            return
        }
        let read = try await send(held, apdu(0x00, 0xB0, 0, 0, le: 12))
        guard read.isSuccess, read.data.count == 12 else {
            result.issues.append("EF.SN.ICC: READ BINARY answered \(read.statusWord) with \(read.data.count) bytes (12 expected)")
            return
        }
        let d = read.data
        guard d[0] == 0x5A, Array(d[2...6]) == CPSLayout.issuerNumber else {
            result.issues.append("EF.SN.ICC: no ANS issuer number at bytes 2-6 (\(d.hexString()))")
            return
        }
        result.card.issuer = CPSLayout.issuerNumber.hexString(separator: "")
        var digits = Array(d[7...11]).hexString(separator: "")
        while digits.last == "F" { digits.removeLast() }
        // The last PAN digit is a check digit (Luhn), not part of the serial.
        if !digits.isEmpty { digits.removeLast() }
        result.card.serial = digits
    }

    /// SELECT of the IAS application (contact or contactless AID) with P2 `0C`.
    private func selectApplication(_ held: Held) async throws(CPSError) {
        let aid = generation == .cps3Contactless ? CPSLayout.contactlessAID : CPSLayout.iasAID
        let r = try await send(held, apdu(0x00, 0xA4, 0x04, 0x0C, aid))
        guard r.isSuccess else { throw .notACPS("SELECT of the IAS application \(aid.hexString(separator: "")) answered \(r.statusWord) (\(r.statusWord.meaning))") }
    }

    /// Selects an EF of the current DF by FID (P1 `02`, P2 `0C`) and reads it whole. A certificate's
    /// DER header tells its length, so no read is wasted.
    private func readFile(_ held: Held, _ fid: UInt16, _ name: String) async throws(CPSError) -> [UInt8] {
        let select = try await send(held, apdu(0x00, 0xA4, 0x02, 0x0C, [UInt8(fid >> 8), UInt8(fid & 0xFF)]))
        guard select.isSuccess else { throw .unreadable(file: name, select.statusWord) }
        var data: [UInt8] = []
        var expected: Int? = nil
        let chunk = min(max(configuration.readChunk, 1), 65_536)
        while data.count < 0x7FFF {
            let want = expected.map { min($0 - data.count, chunk) } ?? chunk
            if want <= 0 { break }
            let r = try await send(held, apdu(0x00, 0xB0, UInt8(data.count >> 8), UInt8(data.count & 0xFF), le: want))
            let sw = r.statusWord
            if (sw == .wrongP1P2 || sw == .endOfFileReached) && r.data.isEmpty && !data.isEmpty { break }
            guard sw.isSuccess || sw == .endOfFileReached else { throw .unreadable(file: name, sw) }
            data += r.data
            if expected == nil { expected = Self.derLength(data) }
            if r.data.count < want || sw == .endOfFileReached { break }
            if expected == nil && r.data.count < chunk { break }
        }
        return data
    }

    /// The total length of a DER/BER object from its header (`nil` when not known yet).
    static func derLength(_ data: [UInt8]) -> Int? {
        guard data.count >= 2 else { return nil }
        var i = 1
        if data[0] & 0x1F == 0x1F {  // multi-byte tag
            while i < data.count && data[i] & 0x80 != 0 { i += 1 }
            i += 1
        }
        guard i < data.count else { return nil }
        let first = Int(data[i])
        if first < 0x80 { return i + 1 + first }
        let n = first & 0x7F
        guard n >= 1, n <= 3, i + n < data.count else { return nil }
        var length = 0
        for k in 1...n { length = length << 8 | Int(data[i + k]) }
        return i + 1 + n + length
    }

    /// Reads one of the synthetic template files; absent or foreign content is an issue, not an error.
    private func readTemplate(_ held: Held, _ fid: UInt16, _ name: String, _ tag: TLVTag, _ issues: inout [String]) async throws(CPSError) -> TLV? {
        let bytes: [UInt8]
        do {
            bytes = try await readFile(held, fid, name)
        } catch .unreadable(_, let sw) {
            issues.append("\(name) (\(fid.hex), CarteKit's synthetic layout): not readable (\(sw))")
            return nil
        }
        guard let t = try? TLV.decodeSingle(bytes), t.tag == tag, CPSLayout.numberedFields(t) != nil || tag == CPSLayout.cardTemplate || tag == CPSLayout.infoTemplate else {
            issues.append("\(name) (\(fid.hex)): not in CarteKit's synthetic layout, ignored")
            return nil
        }
        guard t.children?.first?.tag == CPSLayout.marker else {
            issues.append("\(name) (\(fid.hex)): no CarteKit marker, ignored")
            return nil
        }
        return t
    }

    private func readSituations(_ held: Held, indexes: [Int], _ issues: inout [String]) async throws(CPSError) -> ([PracticeSituation]?, Bool) {
        var out: [PracticeSituation] = []
        for index in indexes {
            let fid = CPSLayout.firstSituation + UInt16(index - 1)
            let bytes: [UInt8]
            do {
                bytes = try await readFile(held, fid, "CPS_ACTIVITY_\(index < 10 ? "0" : "")\(index)_PS")
            } catch .unreadable(_, let sw) where sw == .securityStatusNotSatisfied {
                return (nil, true)  // protected: the PIN is needed
            } catch .unreadable(_, let sw) where sw == .fileNotFound {
                continue
            } catch .unreadable(let file, let sw) {
                issues.append("\(file) (\(fid.hex)): not readable (\(sw)), ignored")
                continue
            }
            guard let t = try? TLV.decodeSingle(bytes), t.tag == CPSLayout.situationTemplate, let fields = CPSLayout.numberedFields(t) else {
                issues.append("situation \(index) (\(fid.hex)): not in CarteKit's synthetic layout, ignored")
                continue
            }
            out.append(PracticeSituation(file: index, fields: fields))
        }
        return (out, false)
    }

    private func readCertificates(_ held: Held, _ issues: inout [String]) async throws(CPSError) -> [CPSCertificate] {
        var out: [CPSCertificate] = []
        var files = [(CPSCertificate.Role.authentication, CPSLayout.authenticationCertificateFile)]
        // The contactless interface has no signature key, hence no signature certificate (§5.3).
        if generation != .cps3Contactless { files.append((.signature, CPSLayout.signatureCertificateFile)) }
        for (role, fid) in files {
            let der: [UInt8]
            do {
                der = try await readFile(held, fid, role.label)
            } catch .unreadable(let file, let sw) {
                issues.append("\(file) (\(fid.hex)): not readable (\(sw))")
                continue
            }
            do {
                out.append(CPSCertificate(role: role, certificate: try X509Certificate(der: der)))
            } catch {
                issues.append("\(role.label) (\(fid.hex)): \(error)")
            }
        }
        return out
    }

    static func decodeCard(_ t: TLV, into card: inout CPSCardInfo) {
        for c in t.children ?? [] {
            let v = CPSLayout.text(c.value)
            switch c.tag {
            case CPSLayout.Card.serial: if card.serial == nil { card.serial = v }
            case CPSLayout.Card.validFrom: card.validFrom = CardDate(v)
            case CPSLayout.Card.validUntil: card.validUntil = CardDate(v)
            case CPSLayout.Card.issuer: if card.issuer == nil { card.issuer = v }
            default: break
            }
        }
    }

    static func decodeHolder(_ t: TLV, info: TLV?) -> ProfessionalHolder? {
        guard let f = CPSLayout.numberedFields(t), let surname = f[6], let number = f[3] else { return nil }
        var holder = ProfessionalHolder(cardType: CPxType(ssvCode: f[1] ?? ""), cardTypeCode: f[1] ?? "",
                                        nationalID: NationalID(type: f[2] ?? "", number: number, key: f[4]),
                                        civility: f[5], surname: surname, firstName: f[7] ?? "")
        for c in info?.children ?? [] {
            let v = CPSLayout.text(c.value)
            switch c.tag {
            case CPSLayout.Info.profession: holder.profession = v
            case CPSLayout.Info.professionLabel: holder.professionLabel = v
            case CPSLayout.Info.speciality: holder.speciality = v
            case CPSLayout.Info.specialityLabel: holder.specialityLabel = v
            default: break
            }
        }
        return holder
    }

    // MARK: - PIN

    /// The PIN block: the digits, padded (see ``Configuration``).
    private func block(_ pin: PINCode) -> [UInt8] {
        pin.digits + [UInt8](repeating: configuration.pinPadding, count: max(0, configuration.pinBlockLength - pin.count))
    }

    /// Selects the ChipDoc applet on logical channel 1 (CPS4).
    private func selectChipDoc(_ held: Held) async throws(CPSError) {
        let r = try await send(held, apdu(0x01, 0xA4, 0x04, 0x0C, CPSLayout.chipDocAID))
        guard r.isSuccess else { throw .notACPS("SELECT of the ChipDoc applet on channel 1 answered \(r.statusWord)") }
    }

    private var securityClass: UInt8 { generation == .cps4 ? 0x01 : 0x00 }

    /// The PIN's try counter, without consuming a try: GET DATA of the CHV on a CPS3, a VERIFY without
    /// data (ISO 7816-4 status query) on a CPS4.
    public func pinStatus() async throws(CPSError) -> PINStatus {
        if generation == .cps3Contactless { throw .unsupported("the contactless interface of a CPS3 has no PIN object") }
        return try await exclusive { held throws(CPSError) -> PINStatus in
            if generation == .cps4 {
                try await selectChipDoc(held)
                let r = try await send(held, apdu(0x01, 0x20, 0x00, configuration.pinReference), policy: .raw)
                switch r.statusWord {
                case .success: return PINStatus(maxTries: nil, triesLeft: configuration.pinMaxTries, verified: true)  // verified: the counter is full
                case .authenticationMethodBlocked: return PINStatus(maxTries: nil, triesLeft: 0, verified: false)
                case let sw where sw.sw1 == 0x63 && sw.sw2 & 0xF0 == 0xC0: return PINStatus(maxTries: nil, triesLeft: Int(sw.sw2 & 0x0F), verified: false)
                case let sw: throw .operationRefused("the PIN status query", sw)
                }
            }
            let mf = try await send(held, apdu(0x00, 0xA4, 0x09, 0x0C, [0x3F, 0x00]))
            guard mf.isSuccess else { throw .operationRefused("SELECT of the MF", mf.statusWord) }
            let header: [UInt8] = [0x4D, 0x08, 0x70, 0x06, 0xBF, 0x81, configuration.pinReference, 0x02, 0xA0, 0x80]
            let r = try await send(held, apdu(0x00, 0xCB, 0x3F, 0xFF, header, le: 256))
            guard r.isSuccess else { throw .operationRefused("GET DATA of the PIN status", r.statusWord) }
            guard let status = Self.decodePINStatus(r.data) else { throw .malformed(file: "GET DATA of CHV \(configuration.pinReference.hex)", "no 9A/9B objects in \(r.data.hexString())") }
            return status
        }
    }

    /// Decodes a GET DATA answer `70 { BF 81 xx { A0 { 9A max, 9B left, 9D usage } } }` (or the A0
    /// template alone); `nil` without a `9B` object.
    public static func decodePINStatus(_ data: [UInt8]) -> PINStatus? {
        guard let objects = try? TLV.decode(data) else { return nil }
        func find(_ tag: TLVTag, in list: [TLV]) -> TLV? {
            for o in list {
                if o.tag == tag { return o }
                if let c = o.children, let f = find(tag, in: c) { return f }
            }
            return nil
        }
        // Counters are one or two bytes; anything longer is not a counter.
        func int(_ t: TLV?) -> Int? { t.flatMap { $0.value.count <= 2 ? $0.value.reduce(0) { $0 << 8 | Int($1) } : nil } }
        guard let left = int(find(0x9B, in: objects)) else { return nil }
        return PINStatus(maxTries: int(find(0x9A, in: objects)), triesLeft: left, usageLeft: int(find(0x9D, in: objects)))
    }

    /// Interprets the answer to a command carrying a PIN (`which`: "PIN" or "PUK").
    private func pinOutcome(_ sw: StatusWord, which: String, what: String) throws(CPSError) {
        switch sw {
        case .success: return
        case .authenticationMethodBlocked, .referenceDataNotUsable: throw which == "PUK" ? .pukBlocked : .pinBlocked
        case let sw where sw.sw1 == 0x63 && sw.sw2 & 0xF0 == 0xC0:
            let tries = Int(sw.sw2 & 0x0F)
            if tries == 0 { throw which == "PUK" ? .pukBlocked : .pinBlocked }
            throw .wrongPIN(which: which, triesLeft: tries)
        case .securityStatusNotSatisfied: throw .pinRequired(what)
        default: throw .operationRefused(what, sw)
        }
    }

    /// Presents the PIN once. Throws ``CPSError/wrongPIN(which:triesLeft:)`` with the tries left, or
    /// ``CPSError/pinBlocked``; never sends it again.
    public func verifyPIN(_ pin: PINCode) async throws(CPSError) {
        if generation == .cps3Contactless { throw .unsupported("the contactless interface of a CPS3 has no PIN object") }
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 { try await selectChipDoc(held) }
            let r = try await send(held, apdu(securityClass, 0x20, 0x00, configuration.pinReference, block(pin)), policy: .raw)
            try pinOutcome(r.statusWord, which: "PIN", what: "VERIFY")
        }
    }

    /// Changes the PIN: CHANGE REFERENCE DATA with the current and the new PIN (CPS3); VERIFY then
    /// CHANGE with the new PIN only (CPS4, §5.5).
    public func changePIN(current: PINCode, new: PINCode) async throws(CPSError) {
        if generation == .cps3Contactless { throw .unsupported("the contactless interface of a CPS3 has no PIN object") }
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 {
                try await selectChipDoc(held)
                let v = try await send(held, apdu(0x01, 0x20, 0x00, configuration.pinReference, block(current)), policy: .raw)
                try pinOutcome(v.statusWord, which: "PIN", what: "VERIFY")
                let c = try await send(held, apdu(0x01, 0x24, 0x01, configuration.pinReference, block(new)), policy: .raw)
                try pinOutcome(c.statusWord, which: "PIN", what: "CHANGE REFERENCE DATA")
                return
            }
            let r = try await send(held, apdu(0x00, 0x24, 0x00, configuration.pinReference, block(current) + block(new)), policy: .raw)
            try pinOutcome(r.statusWord, which: "PIN", what: "CHANGE REFERENCE DATA")
        }
    }

    /// Unblocks the PIN with the PUK and sets `newPIN`: RESET RETRY COUNTER with PUK ‖ new PIN (CPS3);
    /// VERIFY of the PUK, UNBLOCK `2C 03`, then CHANGE with the new PIN (CPS4, §5.5).
    public func unblockPIN(puk: PINCode, newPIN: PINCode) async throws(CPSError) {
        if generation == .cps3Contactless { throw .unsupported("the contactless interface of a CPS3 has no PIN object") }
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 {
                try await selectChipDoc(held)
                let v = try await send(held, apdu(0x01, 0x20, 0x00, configuration.pukReference, block(puk)), policy: .raw)
                try pinOutcome(v.statusWord, which: "PUK", what: "VERIFY of the PUK")
                // UNBLOCK names the PIN with bit 8 set ([C] the Cryptolib's card-cps4.c: `2C 03 <ref | 80>`).
                let u = try await send(held, apdu(0x01, 0x2C, 0x03, configuration.pinReference | 0x80), policy: .raw)
                try pinOutcome(u.statusWord, which: "PUK", what: "UNBLOCK")
                let c = try await send(held, apdu(0x01, 0x24, 0x01, configuration.pinReference, block(newPIN)), policy: .raw)
                try pinOutcome(c.statusWord, which: "PIN", what: "CHANGE REFERENCE DATA")
                return
            }
            let r = try await send(held, apdu(0x00, 0x2C, 0x00, configuration.pinReference, block(puk) + block(newPIN)), policy: .raw)
            try pinOutcome(r.statusWord, which: "PUK", what: "RESET RETRY COUNTER")
        }
    }

    // MARK: - PIN on the reader's PIN pad

    /// The reader's PIN pad when this card's PIN can be entered on it, `nil` otherwise (no pad, the
    /// pad is not announced, or a contactless CPS3, which has no PIN). Callers enter the PIN on the
    /// host only when this is `nil` or when the user asks.
    public func pinPad() async -> PINPadCapabilities? {
        guard generation != .cps3Contactless, let pad = await channel.pinPad(), pad.verify else { return nil }
        return pad
    }

    /// The PIN limits the structures announce: what the pad accepts, within the card's block.
    private func padLimits(_ pad: PINPadCapabilities) -> (UInt8, UInt8) {
        let block = min(configuration.pinBlockLength, 15)
        let minimum = max(4, pad.minimumPINLength ?? 4)
        let maximum = max(minimum, min(block, pad.maximumPINLength ?? block))
        return (UInt8(minimum), UInt8(maximum))
    }

    private func requirePad(modify: Bool) async throws(CPSError) -> PINPadCapabilities {
        if generation == .cps3Contactless { throw .unsupported("the contactless interface of a CPS3 has no PIN object") }
        guard let pad = await channel.pinPad() else { throw .unsupported("the reader has no PIN pad: enter the PIN on the computer") }
        guard pad.verify, !modify || pad.modify else { throw .unsupported("the reader's PIN pad cannot \(modify ? "change" : "verify") a PIN") }
        return pad
    }

    private func padVerifyStructure(_ pad: PINPadCapabilities, reference: UInt8) -> PINVerifyStructure {
        let block = min(configuration.pinBlockLength, 15)
        let (minimum, maximum) = padLimits(pad)
        // 4 header bytes, at most 15 data bytes: always a valid template.
        let template = try! PINCommandTemplate(header: [securityClass, 0x20, 0x00, reference], data: [UInt8](repeating: configuration.pinPadding, count: block))
        return PINVerifyStructure(timeout: configuration.pinPadTimeout, format: .ascii(blockSize: block), minimumLength: minimum, maximumLength: maximum,
                                  numberOfMessages: pad.lcdLayout == 0 ? 0 : 1, template: template)
    }

    private func padModifyStructure(_ pad: PINPadCapabilities, header: [UInt8], withCurrent: Bool) -> PINModifyStructure {
        let block = max(1, min(configuration.pinBlockLength, 15))
        let (minimum, maximum) = padLimits(pad)
        // 4 header bytes, at most 30 data bytes: always a valid template.
        let template = try! PINCommandTemplate(header: header, data: [UInt8](repeating: configuration.pinPadding, count: block * (withCurrent ? 2 : 1)))
        return PINModifyStructure(timeout: configuration.pinPadTimeout, format: .ascii(blockSize: block), insertionOffsetOld: 0, insertionOffsetNew: withCurrent ? UInt8(block) : 0,
                                  minimumLength: minimum, maximumLength: maximum, confirmPIN: withCurrent ? 0x03 : 0x01,
                                  numberOfMessages: pad.lcdLayout == 0 ? 0 : (withCurrent ? 3 : 2), messageIndexes: withCurrent ? [0, 1, 2] : [1, 2, 2], template: template)
    }

    private func padOutcome(_ r: ResponseAPDU, which: String, what: String) throws(CPSError) {
        if let status = PINPadStatus(r.statusWord) { throw .pinPad(status) }
        try pinOutcome(r.statusWord, which: which, what: what)
    }

    private func padVerify(_ held: Held, _ pad: PINPadCapabilities, reference: UInt8, which: String) async throws(CPSError) {
        let r: ResponseAPDU
        do { r = try await held.verifyPINOnPad(padVerifyStructure(pad, reference: reference)) } catch { throw .card(error) }
        try padOutcome(r, which: which, what: "VERIFY on the PIN pad")
    }

    private func padModify(_ held: Held, _ pad: PINPadCapabilities, header: [UInt8], withCurrent: Bool, which: String, what: String) async throws(CPSError) {
        let r: ResponseAPDU
        do { r = try await held.modifyPINOnPad(padModifyStructure(pad, header: header, withCurrent: withCurrent)) } catch { throw .card(error) }
        try padOutcome(r, which: which, what: what)
    }

    /// Has the holder type the PIN on the reader's PIN pad: the reader builds the VERIFY, so the PIN
    /// never passes through the host. Sent once. Throws ``CPSError/pinPad(_:)`` when the entry is
    /// cancelled, times out or has the wrong length, ``CPSError/wrongPIN(which:triesLeft:)`` with the
    /// tries left, and ``CPSError/unsupported(_:)`` when the reader has no pad.
    public func verifyPINOnPad() async throws(CPSError) {
        let pad = try await requirePad(modify: false)
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 { try await selectChipDoc(held) }
            try await padVerify(held, pad, reference: configuration.pinReference, which: "PIN")
        }
    }

    /// Changes the PIN on the pad: the current PIN, the new one and its confirmation are typed on
    /// the reader (CPS3: one CHANGE REFERENCE DATA; CPS4: VERIFY, then CHANGE with the new PIN).
    public func changePINOnPad() async throws(CPSError) {
        let pad = try await requirePad(modify: true)
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 {
                try await selectChipDoc(held)
                try await padVerify(held, pad, reference: configuration.pinReference, which: "PIN")
                try await padModify(held, pad, header: [0x01, 0x24, 0x01, configuration.pinReference], withCurrent: false, which: "PIN", what: "CHANGE REFERENCE DATA on the PIN pad")
                return
            }
            try await padModify(held, pad, header: [0x00, 0x24, 0x00, configuration.pinReference], withCurrent: true, which: "PIN", what: "CHANGE REFERENCE DATA on the PIN pad")
        }
    }

    /// Unblocks the PIN on the pad: the PUK, then the new PIN and its confirmation are typed on the
    /// reader (CPS3: RESET RETRY COUNTER with PUK ‖ new PIN; CPS4: VERIFY of the PUK, UNBLOCK, CHANGE).
    public func unblockPINOnPad() async throws(CPSError) {
        let pad = try await requirePad(modify: true)
        try await exclusive { held throws(CPSError) in
            if generation == .cps4 {
                try await selectChipDoc(held)
                try await padVerify(held, pad, reference: configuration.pukReference, which: "PUK")
                // UNBLOCK names the PIN with bit 8 set ([C] the Cryptolib's card-cps4.c: `2C 03 <ref | 80>`).
                let u = try await send(held, apdu(0x01, 0x2C, 0x03, configuration.pinReference | 0x80), policy: .raw)
                try pinOutcome(u.statusWord, which: "PUK", what: "UNBLOCK")
                try await padModify(held, pad, header: [0x01, 0x24, 0x01, configuration.pinReference], withCurrent: false, which: "PIN", what: "CHANGE REFERENCE DATA on the PIN pad")
                return
            }
            // The "current PIN" of the structure is the PUK here.
            try await padModify(held, pad, header: [0x00, 0x2C, 0x00, configuration.pinReference], withCurrent: true, which: "PUK", what: "RESET RETRY COUNTER on the PIN pad")
        }
    }

    // MARK: - Keys

    private func mse(_ held: Held, template: UInt8, key: UInt8, algorithm: UInt8) async throws(CPSError) {
        let command: CommandAPDU
        if generation == .cps4 {
            // ChipDoc ([C] the ANS Cryptolib's card-cps4.c): DST `91 02 <alg> <key | 80>` (bit 8: "the
            // data is a hash"), CT `83 01 <key>`.
            command = template == 0xB6 ? apdu(0x01, 0x22, 0x81, 0xB6, [0x91, 0x02, algorithm, key | 0x80])
                                       : apdu(0x01, 0x22, 0x41, template, [0x83, 0x01, key])
        } else {
            command = apdu(0x00, 0x22, 0x41, template, [0x80, 0x01, algorithm, 0x84, 0x01, key])
        }
        let r = try await send(held, command)
        guard r.isSuccess else { throw .operationRefused("MSE SET (template \(template.hex), key \(key.hex))", r.statusWord) }
    }

    /// Signs `data` with the signature key: SHA-256, PKCS#1 v1.5. On a CPS3 the host hashes every
    /// whole 64-byte block but the last and the card finishes the hash (PSO HASH), then signs
    /// (PSO CDS `2A 9E 9A`, [C]); on a CPS4 the host hashes and PSO CDS carries the digest, after MSE
    /// SET `91 02 28 <key | 80>` ([C] the ANS Cryptolib). The PIN must have been verified
    /// (``CPSError/pinRequired(_:)`` otherwise).
    public func sign(_ data: [UInt8]) async throws(CPSError) -> [UInt8] {
        if generation == .cps3Contactless { throw .unsupported("a CPS3 does not sign over its contactless interface (domain-facts §5.3)") }
        return try await exclusive { held throws(CPSError) -> [UInt8] in
            if generation == .cps4 {
                try await selectChipDoc(held)
                try await mse(held, template: 0xB6, key: configuration.chipDocSignatureKey, algorithm: configuration.chipDocSignatureAlgorithm)
                let r = try await send(held, apdu(0x01, 0x2A, 0x9E, 0x9A, SHA256.digest(data), le: 256))
                try signatureOutcome(r)
                return r.data
            }
            try await selectApplication(held)
            try await mse(held, template: 0xB6, key: configuration.signatureKey, algorithm: configuration.signatureAlgorithm)
            let h = try await send(held, apdu(0x00, 0x22, 0x41, 0xAA, [0x80, 0x01, configuration.hashAlgorithm]))
            guard h.isSuccess else { throw .operationRefused("MSE SET of the hash algorithm", h.statusWord) }
            // The host hashes the whole blocks before the last (1…64 bytes) one.
            let split = data.isEmpty ? 0 : (data.count - 1) / 64 * 64
            var sha = SHA256()
            sha.update(data[0..<split])
            var payload: [UInt8]
            if split == 0 {
                payload = [0x90, 0x00]
            } else {
                let bits = UInt64(split) * 8
                payload = [0x90, 40] + sha.stateBytes + (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
            }
            let last = Array(data[split...])
            payload += [0x80, UInt8(last.count)] + last
            let hr = try await send(held, apdu(0x00, 0x2A, 0x90, 0xA0, payload))
            guard hr.isSuccess else { throw .operationRefused("PSO HASH", hr.statusWord) }
            let r = try await send(held, apdu(0x00, 0x2A, 0x9E, 0x9A, le: 256))
            try signatureOutcome(r)
            return r.data
        }
    }

    /// Signs a SHA-256 digest computed elsewhere (a web page's, through `carte agent`) with the signature
    /// key, PKCS#1 v1.5. Only a CPS4 takes a whole digest (PSO CDS carries it, after MSE SET
    /// `91 02 28 <key | 80>`, [C] the ANS Cryptolib); a CPS3 finishes the hash itself from the message's
    /// last block (PSO HASH), so it cannot sign a bare digest: ``CPSError/unsupported(_:)``, and the
    /// caller signs the data with ``sign(_:)`` instead. The PIN must have been verified.
    public func sign(digest: [UInt8]) async throws(CPSError) -> [UInt8] {
        guard digest.count == 32 else { throw .unsupported("a SHA-256 digest has 32 bytes, not \(digest.count)") }
        guard generation == .cps4 else {
            throw .unsupported("a \(generation == .cps3Contactless ? "CPS3 over contactless" : "CPS3") finishes the hash itself (PSO HASH over the message's last block): it signs data, not a digest computed elsewhere")
        }
        return try await exclusive { held throws(CPSError) -> [UInt8] in
            try await selectChipDoc(held)
            try await mse(held, template: 0xB6, key: configuration.chipDocSignatureKey, algorithm: configuration.chipDocSignatureAlgorithm)
            let r = try await send(held, apdu(0x01, 0x2A, 0x9E, 0x9A, digest, le: 256))
            try signatureOutcome(r)
            return r.data
        }
    }

    private func signatureOutcome(_ r: ResponseAPDU) throws(CPSError) {
        switch r.statusWord {
        case .success where !r.data.isEmpty: return
        case .securityStatusNotSatisfied: throw .pinRequired("signing")
        case let sw: throw .operationRefused("PSO COMPUTE DIGITAL SIGNATURE", sw)
        }
    }

    /// Authenticates with the authentication key: the PKCS#1 v1.5 block type 1 of `challenge` (at most
    /// 40 % of the modulus) raised to the private key. A CPS3 does it with INTERNAL AUTHENTICATE; a
    /// CPS4 has none and deciphers the block the host padded (PSO DECIPHER, as the ANS Cryptolib does:
    /// domain-facts §5.1).
    public func authenticate(challenge: [UInt8]) async throws(CPSError) -> [UInt8] {
        guard !challenge.isEmpty, challenge.count <= 102 else { throw .unsupported("a challenge of \(challenge.count) bytes (1 to 102 for a 2048-bit key: 40 % of the modulus)") }
        if generation == .cps4 {
            return try await exclusive { held throws(CPSError) -> [UInt8] in
                // The block is as long as the modulus: the authentication certificate says how long.
                try await selectApplication(held)
                let der = try await readFile(held, CPSLayout.authenticationCertificateFile, CPSCertificate.Role.authentication.label)
                let modulus: Int
                do throws(CryptoError) { modulus = try X509Certificate(der: der).publicKey().modulusBytes } catch { throw .crypto(error) }
                guard challenge.count * 10 <= modulus * 4 else { throw .unsupported("a challenge of \(challenge.count) bytes (at most 40 % of the \(modulus * 8)-bit modulus)") }
                try await selectChipDoc(held)
                try await mse(held, template: 0xB8, key: configuration.chipDocAuthenticationKey, algorithm: 0)
                let r = try await send(held, apdu(0x01, 0x2A, 0x80, 0x86, Self.blockType1(challenge, modulusBytes: modulus), le: 256))
                switch r.statusWord {
                case .success where r.data.count == modulus: return r.data
                case .securityStatusNotSatisfied: throw .pinRequired("authentication")
                case let sw: throw .operationRefused("PSO DECIPHER (authentication)", sw)
                }
            }
        }
        return try await exclusive { held throws(CPSError) -> [UInt8] in
            try await selectApplication(held)
            try await mse(held, template: 0xA4, key: configuration.authenticationKey, algorithm: configuration.rsaAlgorithm)
            let r = try await send(held, apdu(0x00, 0x88, 0x00, 0x00, challenge, le: 256))
            switch r.statusWord {
            case .success where !r.data.isEmpty: return r.data
            case .securityStatusNotSatisfied: throw .pinRequired("authentication")
            case let sw: throw .operationRefused("INTERNAL AUTHENTICATE", sw)
            }
        }
    }

    /// Deciphers a PKCS#1 v1.5 cryptogram made for the authentication certificate's key: PSO DECIPHER
    /// `2A 80 86` (command chaining when needed). A CPS3 takes the padding indicator `81` and answers
    /// the message; a CPS4 takes the bare cryptogram and answers the whole block, whose padding the
    /// host checks and removes ([C] the ANS Cryptolib's card-cps4.c).
    public func decipher(_ cryptogram: [UInt8]) async throws(CPSError) -> [UInt8] {
        if generation == .cps3Contactless { throw .unsupported("deciphering over the contactless interface") }
        guard !cryptogram.isEmpty, cryptogram.count <= 1024 else { throw .unsupported("a cryptogram of \(cryptogram.count) bytes (1 to 1024: an RSA key of at most 8192 bits)") }
        return try await exclusive { held throws(CPSError) -> [UInt8] in
            let r: ResponseAPDU
            if generation == .cps4 {
                try await selectChipDoc(held)
                try await mse(held, template: 0xB8, key: configuration.chipDocAuthenticationKey, algorithm: 0)
                r = try await send(held, apdu(0x01, 0x2A, 0x80, 0x86, cryptogram, le: 256))
            } else {
                try await selectApplication(held)
                try await mse(held, template: 0xB8, key: configuration.authenticationKey, algorithm: configuration.decipherAlgorithm)
                r = try await send(held, apdu(0x00, 0x2A, 0x80, 0x86, [0x81] + cryptogram, le: 256))
            }
            switch r.statusWord {
            case .success:
                guard generation == .cps4 else { return r.data }
                guard let message = Self.removeBlockType2(r.data) else { throw .operationRefused("PSO DECIPHER (the block is not PKCS#1 v1.5 padded: wrong key or cryptogram)", r.statusWord) }
                return message
            case .securityStatusNotSatisfied: throw .pinRequired("deciphering")
            case let sw: throw .operationRefused("PSO DECIPHER", sw)
            }
        }
    }

    /// `00 01 FF… 00 <data>`: PKCS#1 v1.5 block type 1 (RFC 8017 §9.2) of `modulusBytes` bytes.
    static func blockType1(_ data: [UInt8], modulusBytes: Int) -> [UInt8] {
        [0x00, 0x01] + [UInt8](repeating: 0xFF, count: modulusBytes - data.count - 3) + [0x00] + data
    }

    /// The message of a PKCS#1 v1.5 block type 2 (`00 02 <8+ non-zero bytes> 00 <message>`), or `nil`.
    static func removeBlockType2(_ block: [UInt8]) -> [UInt8]? {
        guard block.count >= 11, block[0] == 0x00, block[1] == 0x02,
              let end = block[2...].firstIndex(of: 0x00), end >= 10 else { return nil }
        return Array(block[(end + 1)...])
    }
}

extension CPSCertificate {
    /// Checks the certificate chain up to `roots` at `time` (seconds since 1970, UTC).
    public func verify(roots: [X509Certificate], intermediates: [X509Certificate], at time: Int64) throws(CPSError) {
        do {
            try certificate.verifyChain(intermediates: intermediates, roots: roots, at: time)
        } catch {
            throw .crypto(error)
        }
    }

    /// Checks that `signature` is this certificate's key's PKCS#1 v1.5 SHA-256 signature of `data`.
    public func verifySignature(_ signature: [UInt8], of data: [UInt8]) throws(CPSError) {
        do {
            try certificate.publicKey().verify(signature: signature, digest: SHA256.digest(data), algorithm: .sha256)
        } catch {
            throw .crypto(error)
        }
    }
}
