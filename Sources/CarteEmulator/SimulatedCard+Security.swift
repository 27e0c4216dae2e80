import CarteCore
import CarteCrypto

// The IAS-ECC style security commands a CPS3/CPS4 answers (domain-facts §5.3, §5.5): GET DATA of a
// PIN's status, CHANGE REFERENCE DATA, RESET RETRY COUNTER with the PUK, MSE SET, PSO HASH /
// COMPUTE DIGITAL SIGNATURE / DECIPHER and INTERNAL AUTHENTICATE, with real RSA keys through OpenSSL.
extension SimulatedCard {
    /// IAS-ECC data object class bytes in a GET DATA `BF <class> <ref>` header (the class with bit 8,
    /// "local to the current application", set).
    static let chvClass: UInt8 = 0x81
    /// The class of an RSA private key SDO (`10` | `80`).
    static let privateKeyClass: UInt8 = 0x90

    /// GET DATA `CB 3F FF` with the extended header list `4D … 70 … BF <class> <ref> <n> <tag> 80`:
    /// an IAS-ECC security data object (SDO), as OpenSC's `iasecc` driver asks for it
    /// (docs/research/opensc-iasecc-0.23.md §1).
    ///
    /// - CHV (class `81`, needs the MF selected, otherwise `6A88` as OpenSC logged): tag `A0` gives the
    ///   DOCP as a real CPx answers it (OpenSC issue 2275: `9A` maximum tries, `9B` tries left, `9D`
    ///   usage counter, `A1 { 8C … }` access rules); tag `7F41` gives the PIN's maximum (`80`) and
    ///   minimum (`81`) lengths, never its value (**synthetic**: a real CPx's `7F41` answer is not public).
    /// - RSA private key (class `90`, ref = key reference without bit 8): tag `A0` gives the DOCP with
    ///   the key size in bytes (`80`) and the access rules of its operations (`A1 { 8C … }`), built from
    ///   the image's key usages and use condition (**synthetic** encoding of IAS-ECC's scheme); tag `7F48`
    ///   (the private components) gets `6A80`: they never leave the card.
    /// - Anything else (the security environments `BF FB`, unknown objects): `6A88`, as a real CPx
    ///   answers a security environment request (OpenSC issue 2275).
    func getData(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.p1 == 0x3F, c.p2 == 0xFF else { return ([], .referencedDataNotFound) }
        guard let request = Self.sdoRequest(c.data) else { return ([], .incorrectData) }
        switch request.cls {
        case Self.chvClass:
            guard currentDF == 0 else { return ([], .referencedDataNotFound) }
            guard let pin = pins[request.ref] else { return ([], .referencedDataNotFound) }
            switch request.tag {
            case 0xA0:
                var tries = pin.remaining
                if pin.usageCounter == 0 { tries = 0 }  // the CPS3 contact interface reports 0 then
                var inner: [TLV] = [TLV(tag: 0x9A, value: [UInt8(clamping: pin.maxTries)]), TLV(tag: 0x9B, value: [UInt8(clamping: tries)])]
                if let usage = pin.usageCounter {
                    inner.append(TLV(tag: 0x9D, value: usage > 0xFF ? [UInt8(usage >> 8 & 0xFF), UInt8(usage & 0xFF)] : [UInt8(usage)]))
                }
                // AMB F3: CHANGE 00 (always), VERIFY 00, RESET 13 (user authentication, SE 3: the PUK),
                // PUT DATA FF (never), GET DATA 00 — a real CPx's rules (OpenSC issue 2275).
                inner.append(TLV(tag: 0xA1, children: [TLV(tag: 0x8C, value: [0xF3, 0x00, 0x00, 0x13, 0xFF, 0x00])]))
                return (Self.sdoAnswer(request, TLV(tag: 0xA0, children: inner)), .success)
            case 0x7F41:
                let length = UInt8(clamping: pin.value.count)
                let data = TLV(tag: 0x7F41, children: [TLV(tag: 0x80, value: [length]), TLV(tag: 0x81, value: [min(length, 4)])])
                return (Self.sdoAnswer(request, data), .success)
            default:
                return ([], .incorrectData)
            }
        case Self.privateKeyClass:
            guard let entry = privateKeys[request.ref | 0x80] ?? privateKeys[request.ref] else { return ([], .referencedDataNotFound) }
            switch request.tag {
            case 0xA0:
                let bytes = entry.rsa?.modulusBytes ?? 0
                let rule: UInt8
                switch entry.key.use {
                case .always: rule = 0x00
                case .never: rule = 0xFF
                case .pin: rule = 0x12  // user authentication in SE 2 (synthetic number)
                }
                // AMB bits: 40 PSO COMPUTE DIGITAL SIGNATURE, 20 INTERNAL AUTHENTICATE, 10 PSO DECIPHER,
                // 01 GET DATA (always); each set bit is followed by its rule, in that order.
                var amb: UInt8 = 0x01
                var rules: [UInt8] = []
                for (bit, usage) in [(UInt8(0x40), CardImage.Key.Usage.sign), (0x20, .authenticate), (0x10, .decipher)] where entry.key.usages.contains(usage) {
                    amb |= bit
                    rules.append(rule)
                }
                let docp = TLV(tag: 0xA0, children: [
                    TLV(tag: 0x80, value: [UInt8(bytes >> 8 & 0xFF), UInt8(bytes & 0xFF)]),
                    TLV(tag: 0xA1, children: [TLV(tag: 0x8C, value: [amb] + rules + [0x00])]),
                ])
                return (Self.sdoAnswer(request, docp), .success)
            default:  // 7F48, the private components, never leave the card; nor does anything else
                return ([], .incorrectData)
            }
        default:
            return ([], .referencedDataNotFound)
        }
    }

    /// The object and tag an SDO GET DATA names: `4D L { 70 L { BF <class> <ref> L { <tag> 80 } } }`,
    /// or `nil` when the data field is not that shape.
    static func sdoRequest(_ data: [UInt8]) -> (cls: UInt8, ref: UInt8, tag: UInt32)? {
        guard data.count >= 8, data[0] == 0x4D, Int(data[1]) == data.count - 2, data[2] == 0x70, Int(data[3]) == data.count - 4,
              data[4] == 0xBF, Int(data[7]) == data.count - 8 else { return nil }
        let list = data[8...]
        guard list.last == 0x80, list.count == 2 || list.count == 3 else { return nil }
        let tag = list.dropLast().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return (data[5], data[6], tag)
    }

    /// `70 L { BF <class> <ref> L { object } }`: how an IAS-ECC card wraps an SDO it returns.
    static func sdoAnswer(_ request: (cls: UInt8, ref: UInt8, tag: UInt32), _ object: TLV) -> [UInt8] {
        let body = object.encoded()
        var sdo: [UInt8] = [0xBF, request.cls, request.ref]
        sdo += berLength(body.count)
        sdo += body
        return [0x70] + berLength(sdo.count) + sdo
    }

    static func berLength(_ n: Int) -> [UInt8] {
        n < 0x80 ? [UInt8(n)] : n <= 0xFF ? [0x81, UInt8(n)] : [0x82, UInt8(n >> 8), UInt8(n & 0xFF)]
    }

    /// The PIN a P2 names: its reference as the image gives it, or, with bit 8 set (ISO 7816-4: "specific
    /// reference data", the CPS4 UNBLOCK `2C 03 81` of the Cryptolib), the same number without it.
    func pinReference(_ p2: UInt8) -> UInt8? {
        if pins[p2] != nil { return p2 }
        if p2 & 0x80 != 0, pins[p2 & 0x7F] != nil { return p2 & 0x7F }
        return nil
    }

    /// Checks `candidate` against the PIN `reference`, consuming a try when it is wrong.
    /// Returns `nil` when it matched.
    private func check(_ reference: UInt8, _ candidate: ArraySlice<UInt8>) -> StatusWord? {
        guard var pin = pins[reference] else { return .referencedDataNotFound }
        defer { pins[reference] = pin }
        if pin.remaining == 0 { return .authenticationMethodBlocked }
        if constantTimeEqual(Array(candidate), pin.value) {
            pin.remaining = pin.maxTries
            pin.verified = true
            return nil
        }
        pin.remaining -= 1
        pin.verified = false
        return .triesRemaining(pin.remaining)  // 63C0 on the last try, 6983 afterwards
    }

    /// CHANGE REFERENCE DATA: P1 `00` carries the current and the new value (same length each); P1 `01`
    /// only the new value, allowed once the PIN (or its PUK) was verified in this session (CPS4 after UNBLOCK).
    func changeReferenceData(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.le == nil else { return ([], .wrongLength) }
        guard let ref = pinReference(c.p2), let pin = pins[ref] else { return ([], .referencedDataNotFound) }
        let n = pin.value.count
        switch c.p1 {
        case 0x00:
            guard c.data.count == 2 * n else { return ([], .wrongLength) }
            if let failure = check(ref, c.data.prefix(n)) { return ([], failure) }
            pins[ref]!.value = Array(c.data.suffix(n))
            return ([], .success)
        case 0x01:
            guard c.data.count == n else { return ([], .wrongLength) }
            let pukVerified = pin.unblockedBy.flatMap { pins[$0]?.verified } ?? false
            guard pin.verified || pukVerified else { return ([], .securityStatusNotSatisfied) }
            pins[ref]!.value = c.data
            pins[ref]!.remaining = pin.maxTries
            // A PUK verification allows one change (the CPS4 unblocking), then must be presented again;
            // the PIN itself is not verified by being set.
            if !pin.verified, let puk = pin.unblockedBy { pins[puk]!.verified = false }
            return ([], .success)
        default:
            return ([], .incorrectP1P2)
        }
    }

    /// RESET RETRY COUNTER of PIN P2 with its PUK. P1 `00`: PUK + new PIN; `01`: PUK (counter reset
    /// only); `02`: new PIN, PUK verified before; `03`: no data, PUK verified before (CPS4 UNBLOCK).
    func resetRetryCounter(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.le == nil else { return ([], .wrongLength) }
        guard let ref = pinReference(c.p2), let pin = pins[ref] else { return ([], .referencedDataNotFound) }
        guard let pukRef = pin.unblockedBy, let puk = pins[pukRef] else { return ([], .conditionsOfUseNotSatisfied) }
        let n = pin.value.count, m = puk.value.count
        var newValue: [UInt8]?
        switch c.p1 {
        case 0x00:
            guard c.data.count == m + n else { return ([], .wrongLength) }
            if let failure = check(pukRef, c.data.prefix(m)) { return ([], failure) }
            newValue = Array(c.data.suffix(n))
        case 0x01:
            guard c.data.count == m else { return ([], .wrongLength) }
            if let failure = check(pukRef, c.data[...]) { return ([], failure) }
        case 0x02:
            guard c.data.count == n else { return ([], .wrongLength) }
            guard puk.verified else { return ([], .securityStatusNotSatisfied) }
            newValue = c.data
        case 0x03:
            guard c.data.isEmpty else { return ([], .wrongLength) }
            guard puk.verified else { return ([], .securityStatusNotSatisfied) }
        default:
            return ([], .incorrectP1P2)
        }
        pins[ref]!.remaining = pin.maxTries
        pins[ref]!.verified = false
        if let newValue { pins[ref]!.value = newValue }
        // The PUK counts once: presented in the data (P1 00/01) it leaves no lasting verification, and a
        // PUK verified before is used up by setting a new PIN (P1 02). After P1 03 it still allows the
        // CHANGE P1 01 that sets the new PIN (CPS4 UNBLOCK, §5.5), which then uses it up.
        if c.p1 != 0x03 { pins[pukRef]!.verified = false }
        return ([], .success)
    }

    // MARK: Algorithm references

    /// IAS-ECC algorithm references per template (the ANS Cryptolib's `card-cps3.c` and `pkcs15-sec.c`,
    /// OpenSC's `iasecc`): AT `02` RSA PKCS#1 v1.5; CT `1A` RSA PKCS#1 v1.5 deciphering; HT `10` SHA-1,
    /// `40` SHA-256; DST `12` SHA-1 with RSA PKCS#1 v1.5, `42` SHA-256 with RSA PKCS#1 v1.5. Another
    /// reference is refused with `6A80` (incorrect data), as ISO 7816-4 and IAS-ECC answer MSE SET.
    static let iasHashAlgorithms: [UInt8: DigestAlgorithm] = [0x10: .sha1, 0x40: .sha256]
    static let iasSignatureAlgorithms: [UInt8: DigestAlgorithm] = [0x12: .sha1, 0x42: .sha256]
    static let iasAuthenticationAlgorithms: Set<UInt8> = [0x02]
    static let iasDecipherAlgorithms: Set<UInt8> = [0x1A]

    /// ChipDoc signature algorithms in `91 02 <algorithm> <key>` ([C] the ANS Cryptolib's `cards.h`):
    /// `0A` SHA-1 / `28` SHA-256 with RSA PKCS#1 v1.5, `15` SHA-1 / `2C` SHA-256 with RSA-PSS. The
    /// Cryptolib marks `09`, `1E`, `27`, `29`, `2A`, `2B`, `2D` and `2E` "not implemented": `6A80`.
    static let chipDocSignatureAlgorithms: [UInt8: (DigestAlgorithm, pss: Bool)] = [
        0x0A: (.sha1, false), 0x28: (.sha256, false), 0x15: (.sha1, true), 0x2C: (.sha256, true),
    ]

    /// The image's key `reference` if it may be used for `usage`; `6A88` when the card has no such key
    /// or the key is not for that use (never another key in its place).
    private func key(_ reference: UInt8?, for usage: CardImage.Key.Usage) -> (UInt8?, StatusWord?) {
        if let reference {
            guard let entry = privateKeys[reference], entry.key.usages.contains(usage) else { return (nil, .referencedDataNotFound) }
            return (reference, nil)
        }
        // No key named: the card's one key for that use (the CPS3's DST without `84`, as the Cryptolib
        // sends it). Several candidates: the lowest reference, always the same one.
        guard let only = privateKeys.values.map(\.key).filter({ $0.usages.contains(usage) }).map(\.reference).min() else { return (nil, .referencedDataNotFound) }
        return (only, nil)
    }

    /// MSE SET (P1 `41` or `81`; P2 `B6` signature, `A4` authentication, `B8` deciphering, `AA` hash)
    /// in the card's dialect (``CardImage/Behaviour/securityOperations``); MSE RESTORE (P1 `F3`).
    func manageSecurityEnvironment(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        if c.p1 == 0xF3 {  // RESTORE
            environment = SecurityEnvironment()
            return ([], .success)
        }
        guard c.p1 == 0x41 || c.p1 == 0x81 else { return ([], .incorrectP1P2) }
        guard [0xB6, 0xA4, 0xB8, 0xAA].contains(c.p2) else { return ([], .incorrectP1P2) }
        guard let objects = try? TLV.decode(c.data, allowPadding: false) else { return ([], .incorrectData) }
        var algorithm: UInt8?
        var reference: UInt8?
        var chipDocKeyByte: UInt8?
        for o in objects {
            switch o.tag.rawValue {
            case 0x80: if o.value.count == 1 { algorithm = o.value[0] } else { return ([], .incorrectData) }
            case 0x83, 0x84: if o.value.count == 1 { reference = o.value[0] } else { return ([], .incorrectData) }
            case 0x91 where image.behaviour.securityOperations == .chipDoc:
                guard o.value.count == 2 else { return ([], .incorrectData) }
                algorithm = o.value[0]
                chipDocKeyByte = o.value[1]
            default: return ([], .incorrectData)
            }
        }
        switch image.behaviour.securityOperations {
        case .iasECC: return iasMSE(c.p2, algorithm: algorithm, reference: reference)
        case .chipDoc: return chipDocMSE(c.p2, algorithm: algorithm, reference: reference, keyByte: chipDocKeyByte)
        }
    }

    private func iasMSE(_ template: UInt8, algorithm: UInt8?, reference: UInt8?) -> (data: [UInt8], sw: StatusWord) {
        switch template {
        case 0xAA:
            guard let algorithm, let digest = Self.iasHashAlgorithms[algorithm] else { return ([], .incorrectData) }
            environment.hashAlgorithm = digest
            environment.hash = nil
        case 0xB6:
            if let algorithm, Self.iasSignatureAlgorithms[algorithm] == nil { return ([], .incorrectData) }
            let (ref, failure) = key(reference, for: .sign)
            guard let ref else { return ([], failure!) }
            (environment.signKey, environment.signAlgorithm) = (ref, algorithm)
        case 0xA4:
            if let algorithm, !Self.iasAuthenticationAlgorithms.contains(algorithm) { return ([], .incorrectData) }
            let (ref, failure) = key(reference, for: .authenticate)
            guard let ref else { return ([], failure!) }
            environment.authenticationKey = ref
        default:  // B8
            if let algorithm, !Self.iasDecipherAlgorithms.contains(algorithm) { return ([], .incorrectData) }
            let (ref, failure) = key(reference, for: .decipher)
            guard let ref else { return ([], failure!) }
            environment.decipherKey = ref
        }
        return ([], .success)
    }

    /// ChipDoc (domain-facts §5.5): DST `81 B6 { 91 02 <algorithm> <key | 80> }`; CT `41 B8 { 83 01 <key> }`,
    /// which also serves the authentication key (no INTERNAL AUTHENTICATE: the host pads, the card
    /// deciphers). No hash template and no authentication template (`6A86`).
    private func chipDocMSE(_ template: UInt8, algorithm: UInt8?, reference: UInt8?, keyByte: UInt8?) -> (data: [UInt8], sw: StatusWord) {
        switch template {
        case 0xB6:
            guard let algorithm, let keyByte, reference == nil else { return ([], .incorrectData) }
            guard Self.chipDocSignatureAlgorithms[algorithm] != nil else { return ([], .incorrectData) }
            // Bit 8 of the key byte: "the data of PSO CDS is a hash" (the Cryptolib always sets it);
            // what the applet does without it is not public, so it is refused rather than guessed.
            guard keyByte & 0x80 != 0 else { return ([], .incorrectData) }
            let (ref, failure) = key(keyByte & 0x7F, for: .sign)
            guard let ref else { return ([], failure!) }
            (environment.signKey, environment.signAlgorithm) = (ref, algorithm)
        case 0xB8:
            guard algorithm == nil, let reference else { return ([], .incorrectData) }
            let (ref, failure) = key(reference, for: .decipher)
            guard let ref else { return ([], failure!) }
            environment.decipherKey = ref
        default:
            return ([], .incorrectP1P2)
        }
        return ([], .success)
    }

    /// The key a security operation uses, once its use condition holds.
    private func usableKey(_ ref: UInt8?) -> (RSAPrivateKey?, StatusWord?) {
        guard let ref, let entry = privateKeys[ref] else { return (nil, .conditionsOfUseNotSatisfied) }
        switch entry.key.use {
        case .always: break
        case .never: return (nil, .securityStatusNotSatisfied)
        case .pin(let p): if pins[p]?.verified != true { return (nil, .securityStatusNotSatisfied) }
        }
        guard let rsa = entry.rsa else { return (nil, .noPreciseDiagnosis) }
        return (rsa, nil)
    }

    /// PSO: HASH (`90 A0`, IAS-ECC), COMPUTE DIGITAL SIGNATURE (`9E 9A`), DECIPHER (`80 86`).
    func performSecurityOperation(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        switch (c.p1, c.p2) {
        case (0x90, 0xA0) where image.behaviour.securityOperations == .iasECC:
            return psoHash(c)
        case (0x9E, 0x9A):
            switch image.behaviour.securityOperations {
            case .iasECC: return iasSignature(c)
            case .chipDoc: return chipDocSignature(c)
            }
        case (0x80, 0x86):
            return decipher(c)
        default:
            return ([], .incorrectP1P2)
        }
    }

    /// PSO HASH with the algorithm of MSE SET HT (`6985` without one). The data is one of:
    /// `80 L <message>` (the card hashes it all, as the Cryptolib sends it); `90 00 80 L <tail>`
    /// (the same, under an empty `90`); `90 <n> <digest>` (the host's digest, `n` the algorithm's
    /// length); `90 <n + 8> <state> <bit count> 80 L <last block>` (the host hashed every whole
    /// 64-byte block but the last, the card finishes: `n` = 20 for SHA-1, 32 for SHA-256).
    private func psoHash(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard let algorithm = environment.hashAlgorithm else { return ([], .conditionsOfUseNotSatisfied) }
        environment.hash = nil
        guard let objects = try? TLV.decode(c.data, allowPadding: false), !objects.isEmpty, objects.count <= 2 else { return ([], .incorrectData) }
        let intermediate = objects.first { $0.tag.rawValue == 0x90 }?.value
        let message = objects.first { $0.tag.rawValue == 0x80 }?.value
        guard objects.allSatisfy({ [0x80, 0x90].contains($0.tag.rawValue) }), objects.count == (intermediate == nil ? 0 : 1) + (message == nil ? 0 : 1) else {
            return ([], .incorrectData)
        }
        let stateLength = algorithm.length
        let digest: [UInt8]
        switch (intermediate?.count, message) {
        case (nil, let message?), (0?, let message?):
            digest = algorithm.digest(message)
        case (stateLength?, nil):
            digest = intermediate!
        case ((stateLength + 8)?, let tail?) where !tail.isEmpty && tail.count <= 64:
            let bits = intermediate!.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard bits % 8 == 0, let finished = algorithm.finishing(state: Array(intermediate!.prefix(stateLength)), byteCount: bits / 8, last: tail) else {
                return ([], .incorrectData)
            }
            digest = finished
        default:
            return ([], .incorrectData)
        }
        environment.hash = (algorithm, digest)
        return ([], .success)
    }

    /// IAS-ECC PSO CDS: without data, the digest PSO HASH left (its algorithm must be the one MSE SET
    /// DST named, `6985` otherwise); with data, a digest of the DST algorithm's length, or (no DST
    /// algorithm named) a whole DigestInfo. Always PKCS#1 v1.5 over the DigestInfo of that algorithm.
    private func iasSignature(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        let (key, failure) = usableKey(environment.signKey)
        guard let key else { return ([], failure!) }
        let named = environment.signAlgorithm.flatMap { Self.iasSignatureAlgorithms[$0] }
        defer { environment.hash = nil }
        let digestInfo: [UInt8]
        if c.data.isEmpty {
            guard let hash = environment.hash else { return ([], .conditionsOfUseNotSatisfied) }
            if let named, named != hash.algorithm { return ([], .conditionsOfUseNotSatisfied) }
            digestInfo = hash.algorithm.digestInfoPrefix + hash.value
        } else if let named {
            guard c.data.count == named.length else { return ([], .incorrectData) }
            digestInfo = named.digestInfoPrefix + c.data
        } else {
            guard DigestAlgorithm.fromDigestInfo(c.data) != nil else { return ([], .incorrectData) }
            digestInfo = c.data
        }
        guard let signature = try? key.signRaw(digestInfo) else { return ([], .incorrectData) }
        return (signature, .success)
    }

    /// ChipDoc PSO CDS: the data is the digest of MSE SET's algorithm (20 or 32 bytes), signed with
    /// PKCS#1 v1.5 or RSA-PSS (MGF1 with the same hash, a salt as long as the digest: **synthetic**,
    /// the applet's salt length is not public).
    private func chipDocSignature(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        // A ChipDoc algorithm is only ever set with bit 8 of the key byte ("a hash"): MSE refuses the rest.
        guard let algorithm = environment.signAlgorithm, let (digest, pss) = Self.chipDocSignatureAlgorithms[algorithm] else {
            return ([], .conditionsOfUseNotSatisfied)
        }
        let (key, failure) = usableKey(environment.signKey)
        guard let key else { return ([], failure!) }
        guard c.data.count == digest.length else { return ([], .incorrectData) }
        let signature = pss ? try? key.signPSS(digest: c.data, algorithm: digest) : try? key.sign(digest: c.data, algorithm: digest)
        guard let signature else { return ([], .incorrectData) }
        return (signature, .success)
    }

    /// PSO DECIPHER with the key of MSE SET CT. IAS-ECC: padding indicator `81` and a PKCS#1 v1.5
    /// cryptogram, answered with the message. ChipDoc: the bare cryptogram (exactly the modulus),
    /// answered with the whole RSA block; the host checks and removes the padding (deciphering), or
    /// sent a block it padded itself (authentication, the CPS4's replacement for INTERNAL AUTHENTICATE).
    private func decipher(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        let (key, failure) = usableKey(environment.decipherKey)
        switch image.behaviour.securityOperations {
        case .iasECC:
            guard c.data.first == 0x81 else { return ([], .incorrectData) }
            guard let key else { return ([], failure!) }
            guard let plain = try? key.decrypt(Array(c.data.dropFirst())) else { return ([], .incorrectData) }
            return (plain, .success)
        case .chipDoc:
            guard let key else { return ([], failure!) }
            guard c.data.count == key.modulusBytes else { return ([], .wrongLength) }
            guard let block = try? key.privateOperation(c.data) else { return ([], .incorrectData) }
            return (block, .success)
        }
    }

    /// INTERNAL AUTHENTICATE: PKCS#1 v1.5 block type 1 over the challenge (at most 40 % of the modulus).
    /// A ChipDoc card has none (`6D00`).
    func internalAuthenticate(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        if image.behaviour.securityOperations == .chipDoc { return ([], .insNotSupported) }
        guard c.p1 == 0, c.p2 == 0 else { return ([], .incorrectP1P2) }
        let (key, failure) = usableKey(environment.authenticationKey)
        guard let key else { return ([], failure!) }
        guard !c.data.isEmpty, c.data.count * 10 <= key.modulusBytes * 4 else { return ([], .wrongLength) }
        guard let answer = try? key.signRaw(c.data) else { return ([], .incorrectData) }
        return (answer, .success)
    }
}
