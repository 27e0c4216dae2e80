public import CarteCore
public import Logging

/// A person on a Carte Vitale (the insured person or a beneficiary).
public struct Beneficiary: Hashable, Sendable {
    /// Position on the card (0 = first `65` template).
    public var index: Int
    /// Surname (tag `80`), trailing spaces removed.
    public var surname: String?
    /// First name (tag `81`).
    public var firstName: String?
    /// Birth date (tag `82`), possibly lunar (see ``VitaleDate/isLunar``).
    public var birthDate: VitaleDate?
    /// Nationality / country (tag `90`), when present.
    public var nationality: String?
    /// The NIR (tag `93`), when it parses; check ``NIR/isKeyValid``.
    public var nir: NIR?

    public init(index: Int) { self.index = index }
}

/// A problem found in the card's data that does not stop the reading: the field is reported invalid
/// (or missing) instead of being silently wrong.
public struct VitaleIssue: Hashable, Sendable, CustomStringConvertible {
    /// The file (`MF_VITALE SFI 2`, `VITALE SFI 2`).
    public var file: String
    /// The person concerned (index), if any.
    public var beneficiary: Int?
    /// The field (`NIR`, `birth date`…), if any.
    public var field: String?
    /// What is wrong.
    public var message: String

    public var description: String {
        [file, beneficiary.map { "person \($0 + 1)" }, field].compactMap { $0 }.joined(separator: ", ") + ": " + message
    }
}

/// What was read from a Carte Vitale.
public struct VitaleCard: Hashable, Sendable {
    /// The card generation.
    public enum Generation: String, Hashable, Sendable {
        case vitale1, vitale2
    }
    public var generation: Generation
    /// The people on the card, in card order.
    public var beneficiaries: [Beneficiary]
    /// Data problems found (invalid NIR key, unpaired templates…).
    public var issues: [VitaleIssue]
    /// How many APDUs the reading took (automatic GET RESPONSE and resends included).
    public var apduCount: Int
}

/// Why a Carte Vitale could not be read.
public enum VitaleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The card has no `MF_VITALE` application: not a Carte Vitale 2 (SELECT answered `sw`).
    case notAVitale(StatusWord)
    /// A file could not be read (`sw` is the card's answer).
    case unreadable(file: String, StatusWord)
    /// A file's content is not BER-TLV.
    case malformed(file: String, TLVError)
    /// The exchange with the card failed.
    case card(CardError)

    public var description: String {
        switch self {
        case .notAVitale(let sw): return "not a Carte Vitale 2: MF_VITALE cannot be selected (\(sw): \(sw.meaning))"
        case .unreadable(let file, let sw): return "\(file) cannot be read (\(sw): \(sw.meaning))"
        case .malformed(let file, let e): return "\(file) is not valid BER-TLV: \(e)"
        case .card(let e): return e.description
        }
    }
}

/// Reads a Carte Vitale 2 through any ``CardChannel`` with the fewest APDUs: SELECT MF_VITALE and
/// VITALE by AID without answer data, and each file by its short identifier (the reads T=0 cards
/// need — `6Cxx` resends, `61xx` GET RESPONSE — are done by the channel).
///
/// Facts used ([C], domain-facts §3): the AIDs, `SFI 2` in `MF_VITALE` holding one `65` template per
/// person with `80` surname, `81` first name, `82` birth date (and `90` when present), `SFI 2` in
/// `VITALE` holding the matching `65` templates with `93` NIR, in the same order, zero padded.
public struct VitaleReader: Sendable {
    /// `D2 50 00 00 02` + "MF_VITALE".
    public static let mfVitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("MF_VITALE".utf8)
    /// `D2 50 00 00 02` + "VITALE".
    public static let vitaleAID: [UInt8] = [0xD2, 0x50, 0x00, 0x00, 0x02] + Array("VITALE".utf8)

    let channel: CardChannel
    let logger: Logger

    /// Creates a reader on `channel`.
    public init(channel: CardChannel, logger: Logger = Logger(label: "cartekit.vitale", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.channel = channel
        self.logger = logger
    }

    /// Reads the card.
    public func read() async throws(VitaleError) -> VitaleCard {
        let before = channel.trace?.nextSequence
        let result = try await channelExclusive { held throws(VitaleError) -> ([TLV], [TLV]) in
            try await select(Self.mfVitaleAID, held, notFound: true)
            let identities = try await readTemplates(sfi: 2, file: "MF_VITALE SFI 2", held)
            try await select(Self.vitaleAID, held, notFound: false)
            let numbers = try await readTemplates(sfi: 2, file: "VITALE SFI 2", held)
            return (identities, numbers)
        }
        var card = VitaleReader.decode(identities: result.0, numbers: result.1)
        if let before, let trace = channel.trace {
            card.apduCount = trace.events(from: before).filter { $0.direction == .toCard }.count
        }
        return card
    }

    private func channelExclusive<T: Sendable>(_ body: (CardChannel.ExclusiveChannel) async throws(VitaleError) -> T) async throws(VitaleError) -> T {
        // Typed errors through the channel's lock: VitaleError travels inside a CardError-typed closure.
        var failure: VitaleError? = nil
        let value: T?
        do throws(CardError) {
            value = try await channel.withExclusiveAccess { held throws(CardError) -> T? in
                do throws(VitaleError) {
                    return try await body(held)
                } catch {
                    failure = error
                    return nil
                }
            }
        } catch {
            throw .card(error)
        }
        if let failure { throw failure }
        return value!
    }

    private func select(_ aid: [UInt8], _ held: CardChannel.ExclusiveChannel, notFound: Bool) async throws(VitaleError) {
        let command = try! CommandAPDU.select(aid: aid, p2: 0x0C, le: nil)
        let response: ResponseAPDU
        do {
            response = try await held.transmit(command)
        } catch {
            throw .card(error)
        }
        guard response.statusWord.isSuccess else {
            if notFound { throw .notAVitale(response.statusWord) }
            throw .unreadable(file: aid == Self.vitaleAID ? "VITALE" : "MF_VITALE", response.statusWord)
        }
    }

    /// Reads a whole transparent file by SFI (then by offset when it is longer than 256 bytes).
    private func readFile(sfi: UInt8, file: String, _ held: CardChannel.ExclusiveChannel) async throws(VitaleError) -> [UInt8] {
        var data: [UInt8] = []
        var command = try! CommandAPDU.readBinary(sfi: sfi)
        while true {
            let response: ResponseAPDU
            do {
                response = try await held.transmit(command)
            } catch {
                throw .card(error)
            }
            let sw = response.statusWord
            if sw == .wrongP1P2 || sw == .endOfFileReached, !data.isEmpty { break }
            guard sw.isSuccess || sw == .endOfFileReached else { throw .unreadable(file: file, sw) }
            data += response.data
            if response.data.count < 256 || sw == .endOfFileReached || data.count > 0x7F00 { break }
            command = try! CommandAPDU.readBinary(offset: data.count)  // the SFI read made the file current
        }
        return data
    }

    private func readTemplates(sfi: UInt8, file: String, _ held: CardChannel.ExclusiveChannel) async throws(VitaleError) -> [TLV] {
        let bytes = try await readFile(sfi: sfi, file: file, held)
        do {
            return try TLV.decode(bytes, allowPadding: true)
        } catch {
            throw .malformed(file: file, error)
        }
    }

    /// Pairs the i-th `65` of MF_VITALE with the i-th `65` of VITALE and decodes every field, flagging
    /// what is invalid rather than guessing.
    public static func decode(identities: [TLV], numbers: [TLV]) -> VitaleCard {
        var issues: [VitaleIssue] = []
        let left = identities.filter { $0.tag == 0x65 }
        let right = numbers.filter { $0.tag == 0x65 }
        if left.count != right.count {
            issues.append(VitaleIssue(file: "VITALE SFI 2", message: "\(right.count) NIR template(s) for \(left.count) person(s): persons are paired in order, the extra ones are reported without a match"))
        }
        var people: [Beneficiary] = []
        for i in 0..<max(left.count, right.count) {
            var b = Beneficiary(index: i)
            if i < left.count {
                let t = left[i]
                b.surname = t[0x80].map { latin1($0.value) }
                b.firstName = t[0x81].map { latin1($0.value) }
                b.nationality = t[0x90].map { latin1($0.value) }
                if let raw = t[0x82] {
                    let text = latin1(raw.value)
                    if let date = VitaleDate(text) {
                        b.birthDate = date
                    } else {
                        issues.append(VitaleIssue(file: "MF_VITALE SFI 2", beneficiary: i, field: "birth date", message: "\"\(text)\" is not YYYYMMDD"))
                    }
                }
                if b.surname == nil { issues.append(VitaleIssue(file: "MF_VITALE SFI 2", beneficiary: i, field: "surname", message: "missing (tag 80)")) }
            }
            if i < right.count {
                if let raw = right[i][0x93] {
                    let text = latin1(raw.value)
                    do {
                        let nir = try NIR(text)
                        b.nir = nir
                        if !nir.isKeyValid {
                            issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: "key \(nir.key) is wrong: the number calls for \(nir.expectedKey)"))
                        }
                    } catch {
                        issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: error.description))
                    }
                } else {
                    issues.append(VitaleIssue(file: "VITALE SFI 2", beneficiary: i, field: "NIR", message: "missing (tag 93)"))
                }
            }
            people.append(b)
        }
        return VitaleCard(generation: .vitale2, beneficiaries: people, issues: issues, apduCount: 0)
    }
}

/// ISO-8859-1 text with trailing spaces and NULs removed (names are space padded).
func latin1(_ bytes: [UInt8]) -> String {
    var scalars = String.UnicodeScalarView()
    for b in bytes { scalars.append(Unicode.Scalar(b)) }
    var s = String(scalars)
    while let last = s.last, last == " " || last == "\0" { s.removeLast() }
    return s
}
