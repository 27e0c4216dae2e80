import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import InMemoryLogging
import Logging
import Testing

struct BundledCPS: Sendable, CustomTestStringConvertible {
    let name: String
    var testDescription: String { name }
}

let bundledCPS = BundledImages.cpsImages.map { BundledCPS(name: String($0.path.dropFirst(4).dropLast(5))) }

@Suite("CarteCPS reads and uses every bundled CPx card")
struct CPSReaderTests {
    @Test func thereAreNineCPxImages() {
        #expect(bundledCPS.count == 9)
        #expect(BundledImages.cpsPersonas.count == bundledCPS.count)
    }

    @Test("holder, card and certificates match the persona", arguments: bundledCPS)
    func readMatchesPersona(_ bundled: BundledCPS) async throws {
        let persona = try cpsPersona(bundled.name)
        let b = try CPSBench(bundled.name)
        let card = try await b.reader.read()
        let holder = try #require(card.holder)
        #expect(holder.surname == persona.surname && holder.firstName == persona.firstName)
        #expect(holder.nationalID.number == persona.id && holder.nationalID.type == persona.idType)
        #expect(holder.nationalID.prefixed == persona.idType + persona.id)
        #expect(holder.cardType == persona.type)
        #expect(holder.profession == persona.profession && holder.speciality == persona.speciality)
        #expect(card.card.serial == persona.serial)
        #expect(card.card.issuer == "8025000001")
        #expect(card.card.validUntil?.digits == persona.validUntil)
        #expect(card.card.generation == persona.generation)
        #expect(card.situationsNeedPIN == (persona.generation != .cps3Contactless))  // protected until the PIN is verified
        #expect(card.situations == nil)
        #expect(card.usesSyntheticLayout)
        #expect(card.certificates.count == (persona.generation == .cps3Contactless ? 1 : 2))
        #expect(card.issues.isEmpty, "\(card.issues)")
        let pki = try bundledPKI()
        for c in card.certificates {
            #expect(c.certificate.subjectValue("serialNumber") == persona.idType + persona.id)
            #expect(c.certificate.issuerText.contains("TEST") && c.certificate.issuerText.contains("NOT ANS"))
            if persona.validUntil < "20260615" {
                #expect(throws: CPSError.crypto(CryptoError(.verificationFailed, "certificate has expired"))) {
                    try c.verify(roots: [pki.root], intermediates: [pki.intermediate], at: testTime)
                }
            } else {
                try c.verify(roots: [pki.root], intermediates: [pki.intermediate], at: testTime)
            }
        }
        #expect(card.card.isExpired(on: testDay) == (bundled.name == "expiree"))
    }

    @Test func afterThePINTheSituationsAreReadInAtMost25APDUs() async throws {
        let b = try CPSBench("medecin-liberal")
        try await b.reader.verifyPIN(pin1234)
        let card = try await b.reader.read()
        let situations = try #require(card.situations)
        #expect(situations.count == 1)
        #expect(situations[0].structureName == "CABINET DR DOCTEST")
        #expect(situations[0].practiceMode == "0")
        #expect(situations[0].billingID == "99101011")
        #expect(situations[0].maySignBatches == "1")
        #expect(card.apduCount <= 25, "holder + situations + both certificates took \(card.apduCount) APDUs")
        // Non-contiguous situation files (1 and 3).
        let p = try CPSBench("pharmacien-titulaire")
        try await p.reader.verifyPIN(pin1234)
        #expect(try await p.reader.read().situations?.map(\.file) == [1, 3])
    }

    @Test func aWrongPINIsSentOnceAndReportsTheTriesLeft() async throws {
        let b = try CPSBench("medecin-liberal")
        let wrong = try PINCode("9999")
        for expected in [2, 1] {
            await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: expected)) { try await b.reader.verifyPIN(wrong) }
        }
        await #expect(throws: CPSError.pinBlocked) { try await b.reader.verifyPIN(wrong) }
        // One VERIFY per call, never a retry.
        #expect(b.commands.filter { $0.count > 1 && $0[1] == 0x20 }.count == 3)
        #expect(try await b.reader.pinStatus().blocked)
        await #expect(throws: CPSError.pinBlocked) { try await b.reader.verifyPIN(pin1234) }
        await #expect(throws: CPSError.wrongPIN(which: "PUK", triesLeft: 9)) { try await b.reader.unblockPIN(puk: try PINCode("87654321"), newPIN: try PINCode("4321")) }
        try await b.reader.unblockPIN(puk: puk, newPIN: try PINCode("4321"))
        let status = try await b.reader.pinStatus()
        #expect(status.triesLeft == 3 && status.maxTries == 3 && !status.blocked)
        try await b.reader.verifyPIN(try PINCode("4321"))
        try await b.reader.changePIN(current: try PINCode("4321"), new: pin1234)
        try await b.reader.verifyPIN(pin1234)
    }

    @Test func theBlockedPersonaSaysSoAndItsPUKWorks() async throws {
        let b = try CPSBench("pin-bloque")
        #expect(try await b.reader.pinStatus() == PINStatus(maxTries: 3, triesLeft: 0))
        await #expect(throws: CPSError.pinBlocked) { try await b.reader.verifyPIN(pin1234) }
        try await b.reader.unblockPIN(puk: puk, newPIN: pin1234)
        try await b.reader.verifyPIN(pin1234)
        #expect(CPSError.pinBlocked.description.contains("PUK"))
    }

    @Test("signatures verify with the signature certificate", arguments: [0, 1, 63, 64, 65, 128, 1000])
    func signAndVerify(length: Int) async throws {
        let b = try CPSBench("medecin-liberal")
        let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        await #expect(throws: CPSError.pinRequired("signing")) { try await b.reader.sign(data) }
        try await b.reader.verifyPIN(pin1234)
        let before = b.commands.count
        let signature = try await b.reader.sign(data)
        #expect(b.commands.count - before <= 6)  // SELECT, 2 × MSE, PSO HASH, PSO CDS (+ GET RESPONSE)
        let certificate = try #require(try await b.reader.certificates().first { $0.role == .signature })
        try certificate.verifySignature(signature, of: data)
        #expect(throws: CPSError.self) { try certificate.verifySignature(signature, of: data + [0]) }
    }

    @Test func authenticationAnswersTheChallenge() async throws {
        let b = try CPSBench("medecin-liberal")
        try await b.reader.verifyPIN(pin1234)
        let challenge: [UInt8] = Array(100..<132)
        let answer = try await b.reader.authenticate(challenge: challenge)
        let certificate = try #require(try await b.reader.certificates().first { $0.role == .authentication })
        #expect(try certificate.certificate.publicKey().recover(answer) == challenge)
        await #expect(throws: CPSError.self) { try await b.reader.authenticate(challenge: [UInt8](repeating: 1, count: 103)) }
    }

    @Test func cps4VerifiesSignsChangesAndUnblocksOnTheChipDocChannel() async throws {
        let b = try CPSBench("cps4-medecin")
        #expect(b.reader.generation == .cps4)
        #expect(try await b.reader.pinStatus().triesLeft == 3)
        await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: 2)) { try await b.reader.verifyPIN(try PINCode("0000")) }
        try await b.reader.verifyPIN(pin1234)
        let signature = try await b.reader.sign(Array("ordonnance".utf8))
        let certificate = try #require(try await b.reader.certificates().first { $0.role == .signature })
        try certificate.verifySignature(signature, of: Array("ordonnance".utf8))
        try await b.reader.changePIN(current: pin1234, new: try PINCode("2468"))
        try await b.reader.unblockPIN(puk: puk, newPIN: pin1234)
        try await b.reader.verifyPIN(pin1234)
        #expect(b.commands.contains { $0.first == 0x01 && $0[1] == 0x2C && $0[2] == 0x03 && $0[3] == 0x81 })  // UNBLOCK 2C 03 81
        // No INTERNAL AUTHENTICATE: the host pads the challenge, the card deciphers the block (#34).
        let challenge: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let answer = try await b.reader.authenticate(challenge: challenge)
        let authentication = try #require(try await b.reader.certificates().first { $0.role == .authentication })
        #expect(try authentication.certificate.publicKey().recover(answer) == challenge)
        #expect(!b.commands.contains { $0.count > 1 && $0[1] == 0x88 })
        await #expect(throws: CPSError.self) { try await b.reader.authenticate(challenge: [UInt8](repeating: 1, count: 103)) }
    }

    @Test func theContactlessCardReadsWithoutAPINAndRefusesPINWork() async throws {
        let b = try CPSBench("cps3-sans-contact")
        let card = try await b.reader.read()
        #expect(card.holder?.surname == "DOCTEST")
        #expect(card.certificates.map(\.role) == [.authentication])
        await #expect(throws: CPSError.self) { try await b.reader.pinStatus() }
        await #expect(throws: CPSError.self) { try await b.reader.verifyPIN(pin1234) }
        await #expect(throws: CPSError.self) { try await b.reader.sign([1]) }
    }

    @Test func aCardThatIsNotACPxIsRefused() throws {
        let image = try CardImageLoader.load(text: BundledImages.defaultImage.text, source: "vitale")
        let backend = SimulatorBackend(profiles: [.monoFente])
        try backend.insert(image, into: backend.readerNames[0])
        let channel = CardChannel(transport: try backend.connectNow(to: backend.readerNames[0]))
        #expect(throws: CPSError.self) { try CPSReader(channel: channel, atr: image.atr) }
    }

    @Test func damagedHolderFilesAreIssuesNotCrashes() async throws {
        var image = try cpsImage("medecin-liberal")
        guard case .dedicated(var ias) = image.root.children.first(where: { if case .dedicated(let d) = $0 { return d.fid == 0x0001 } else { return false } }) else {
            Issue.record("no IAS DF")
            return
        }
        for (i, child) in ias.children.enumerated() {
            if case .elementary(var ef) = child, ef.fid == CPSLayout.holderFile {
                ef.content = .transparent([0xE1, 0x7F, 0x01])  // a length past the end
                ias.children[i] = .elementary(ef)
            }
        }
        image.root.children = image.root.children.map { if case .dedicated(let d) = $0, d.fid == 0x0001 { return .dedicated(ias) } else { return $0 } }
        let backend = SimulatorBackend(profiles: [.monoFente])
        try backend.insert(image, into: backend.readerNames[0])
        let channel = CardChannel(transport: try backend.connectNow(to: backend.readerNames[0]), trace: Trace())
        let card = try await CPSReader(channel: channel, atr: image.atr).read()
        #expect(card.holder == nil)
        #expect(card.issues.contains { $0.contains("CPS_NAME_PS") })
        #expect(card.certificates.count == 2)
    }

    @Test func noPINEverReachesALogATraceOrAnError() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "cps-test", factory: { _ in handler })
        logger.logLevel = .trace
        let b = try CPSBench("medecin-liberal", logger: logger)
        var errors: [String] = []
        for attempt in ["9876", "9876"] {
            do { try await b.reader.verifyPIN(try PINCode(attempt)) } catch { errors.append(error.description); errors.append("\(error)") }
        }
        try await b.reader.verifyPIN(pin1234)
        try await b.reader.changePIN(current: pin1234, new: try PINCode("5555"))
        do { try await b.reader.unblockPIN(puk: try PINCode("11112222"), newPIN: try PINCode("6666")) } catch { errors.append(error.description) }
        try await b.reader.unblockPIN(puk: puk, newPIN: try PINCode("7777"))
        try await b.reader.verifyPIN(try PINCode("7777"))
        _ = try await b.reader.sign([1, 2, 3])
        do { _ = try PINCode("12a4") } catch { errors.append(error.description) }
        let everything = b.channel.trace!.formatted() + "\n" + handler.entries.map { "\($0.message)" }.joined(separator: "\n") + "\n" + errors.joined(separator: "\n")
            + "\n\(pin1234) \(String(describing: pin1234)) \(String(reflecting: pin1234))"
        for secret in ["1234", "9876", "5555", "6666", "7777", "12345678", "11112222", "12a4"] {
            #expect(!everything.contains(secret), "\(secret) leaked")
            let hex = Array(secret.utf8).prefix(4).map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            #expect(!everything.contains(hex), "\(secret) leaked in hexadecimal")
        }
        #expect(everything.contains("<redacted"))
        #expect(handler.entries.count > 10)
    }
}
