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
        guard let pin = pins[c.p2] else { return ([], .referencedDataNotFound) }
        let n = pin.value.count
        switch c.p1 {
        case 0x00:
            guard c.data.count == 2 * n else { return ([], .wrongLength) }
            if let failure = check(c.p2, c.data.prefix(n)) { return ([], failure) }
            pins[c.p2]!.value = Array(c.data.suffix(n))
            return ([], .success)
        case 0x01:
            guard c.data.count == n else { return ([], .wrongLength) }
            let pukVerified = pin.unblockedBy.flatMap { pins[$0]?.verified } ?? false
            guard pin.verified || pukVerified else { return ([], .securityStatusNotSatisfied) }
            pins[c.p2]!.value = c.data
            pins[c.p2]!.remaining = pin.maxTries
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
        guard let pin = pins[c.p2] else { return ([], .referencedDataNotFound) }
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
        pins[c.p2]!.remaining = pin.maxTries
        pins[c.p2]!.verified = false
        if let newValue { pins[c.p2]!.value = newValue }
        // The PUK counts once: presented in the data (P1 00/01) it leaves no lasting verification, and a
        // PUK verified before is used up by setting a new PIN (P1 02). After P1 03 it still allows the
        // CHANGE P1 01 that sets the new PIN (CPS4 UNBLOCK, §5.5), which then uses it up.
        if c.p1 != 0x03 { pins[pukRef]!.verified = false }
        return ([], .success)
    }

    /// MSE SET (P1 `41` or `81`; P2 `B6` signature, `A4` authentication, `B8` deciphering, `AA` hash)
    /// with `80` algorithm, `83`/`84` key reference, or `91` (algorithm, key) as the CPS4 sends it.
    func manageSecurityEnvironment(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        if c.p1 == 0xF3 {  // RESTORE
            environment = SecurityEnvironment()
            return ([], .success)
        }
        guard c.p1 == 0x41 || c.p1 == 0x81 else { return ([], .incorrectP1P2) }
        guard let objects = try? TLV.decode(c.data, allowPadding: false) else { return ([], .incorrectData) }
        var algorithm: UInt8?
        var reference: UInt8?
        for o in objects {
            switch o.tag.rawValue {
            case 0x80: if o.value.count == 1 { algorithm = o.value[0] } else { return ([], .incorrectData) }
            case 0x83, 0x84: if o.value.count == 1 { reference = o.value[0] } else { return ([], .incorrectData) }
            case 0x91:
                guard o.value.count == 2 else { return ([], .incorrectData) }
                algorithm = o.value[0]
                if o.value[1] != 0x80 { reference = o.value[1] }
            default: return ([], .incorrectData)
            }
        }
        if c.p2 == 0xAA { return ([], .success) }  // hash template: nothing to remember
        let usage: CardImage.Key.Usage
        switch c.p2 {
        case 0xB6: usage = .sign
        case 0xA4: usage = .authenticate
        case 0xB8: usage = .decipher
        default: return ([], .incorrectP1P2)
        }
        // A CPS4 may leave the key implicit (`80` in tag 91): the one key with that usage.
        let ref = reference ?? privateKeys.values.first { $0.key.usages.contains(usage) }?.key.reference
        guard let ref, let entry = privateKeys[ref], entry.key.usages.contains(usage) else { return ([], .referencedDataNotFound) }
        environment.algorithm = algorithm
        switch usage {
        case .sign: environment.signKey = ref
        case .authenticate: environment.authenticationKey = ref
        case .decipher: environment.decipherKey = ref
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

    /// PSO: HASH (`90 A0`), COMPUTE DIGITAL SIGNATURE (`9E 9A`), DECIPHER (`80 86`).
    func performSecurityOperation(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        switch (c.p1, c.p2) {
        case (0x90, 0xA0):
            guard let objects = try? TLV.decode(c.data, allowPadding: false) else { return ([], .incorrectData) }
            let hashObject = objects.first { $0.tag.rawValue == 0x90 }?.value
            let tail = objects.first { $0.tag.rawValue == 0x80 }?.value
            switch (hashObject?.count, tail) {
            case (0?, let tail?) where tail.count <= 64:
                environment.hash = SHA256.digest(tail)  // the host hashed nothing
            case (32?, nil):
                environment.hash = hashObject
            case (40?, let tail?) where tail.count <= 64:
                // The host hashed every block but the last: 32 bytes of state and the 8-byte bit count.
                let stateBytes = hashObject!.prefix(32)
                let bits = hashObject!.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                var words: [UInt32] = []
                for start in stride(from: stateBytes.startIndex, to: stateBytes.endIndex, by: 4) {
                    var word: UInt32 = 0
                    for b in stateBytes[start..<(start + 4)] { word = word << 8 | UInt32(b) }
                    words.append(word)
                }
                guard bits % 8 == 0, var sha = SHA256(state: words, byteCount: bits / 8) else { return ([], .incorrectData) }
                sha.update(tail)
                environment.hash = sha.finalize()
            default:
                return ([], .incorrectData)
            }
            return ([], .success)
        case (0x9E, 0x9A):
            let (key, failure) = usableKey(environment.signKey)
            guard let key else { return ([], failure!) }
            let signature: [UInt8]?
            if c.data.isEmpty {
                guard let hash = environment.hash else { return ([], .conditionsOfUseNotSatisfied) }
                signature = try? key.sign(digest: hash, algorithm: .sha256)
            } else if c.data.count == 32 {
                signature = try? key.sign(digest: c.data, algorithm: .sha256)
            } else if c.data.starts(with: DigestAlgorithm.sha256.digestInfoPrefix) {
                signature = try? key.signRaw(c.data)
            } else {
                return ([], .incorrectData)
            }
            environment.hash = nil
            guard let signature else { return ([], .incorrectData) }
            return (signature, .success)
        case (0x80, 0x86):
            guard c.data.first == 0x81 else { return ([], .incorrectData) }
            let (key, failure) = usableKey(environment.decipherKey)
            guard let key else { return ([], failure!) }
            guard let plain = try? key.decrypt(Array(c.data.dropFirst())) else { return ([], .incorrectData) }
            return (plain, .success)
        default:
            return ([], .incorrectP1P2)
        }
    }

    /// INTERNAL AUTHENTICATE: PKCS#1 v1.5 block type 1 over the challenge (at most 40 % of the modulus).
    func internalAuthenticate(_ c: CommandAPDU) -> (data: [UInt8], sw: StatusWord) {
        guard c.p1 == 0, c.p2 == 0 else { return ([], .incorrectP1P2) }
        let (key, failure) = usableKey(environment.authenticationKey)
        guard let key else { return ([], failure!) }
        guard !c.data.isEmpty, c.data.count * 10 <= key.modulusBytes * 4 else { return ([], .wrongLength) }
        guard let answer = try? key.signRaw(c.data) else { return ([], .incorrectData) }
        return (answer, .success)
    }
}
