import CarteCore
import CarteCPS
import CarteEmulator
import CarteImages
import Foundation
import InMemoryLogging
import Logging
import Testing

/// The CPx PIN taken on the virtual reader's PIN pad (PC/SC part 10), in memory.
@Suite("CarteCPS uses the reader's PIN pad")
struct CPSPINPadTests {
    static func digits(_ text: String, after ms: Int = 0) -> KeypadEntry { .digits(try! KeypadDigits(text), after: .milliseconds(ms)) }

    @Test func theReaderSaysItHasAPadAndAReaderWithoutOneDoesNot() async throws {
        let plain = try CPSBench("medecin-liberal")
        #expect(await plain.reader.pinPad() == nil)
        await #expect(throws: CPSError.self) { try await plain.reader.verifyPINOnPad() }
        let padded = try CPSBench("medecin-liberal", pinPad: PINPadProfile())
        let pad = try #require(await padded.reader.pinPad())
        #expect(pad.verify && pad.modify && pad.minimumPINLength == 4 && pad.maximumPINLength == 8 && pad.lcdLayout == 0x0210)
        // A pad the reader does not announce cannot be used.
        let hidden = try CPSBench("medecin-liberal", pinPad: PINPadProfile(announced: false))
        #expect(await hidden.reader.pinPad() == nil)
        // The contactless CPS3 has no PIN at all.
        let contactless = try CPSBench("cps3-sans-contact", pinPad: PINPadProfile())
        #expect(await contactless.reader.pinPad() == nil)
    }

    @Test func aPINTypedOnThePadVerifiesAndNeverReachesTheHost() async throws {
        let log = InMemoryLogHandler()
        var logger = Logger(label: "test", factory: { _ in log })
        logger.logLevel = .trace
        let b = try CPSBench("medecin-liberal", logger: logger, pinPad: PINPadProfile())
        b.slot.keypad.type([Self.digits("1234")])
        try await b.reader.verifyPINOnPad()
        // The PIN is verified: signing works without a host PIN.
        let signature = try await b.reader.sign(Array("ordonnance".utf8))
        #expect(signature.count == 256)
        // The trace has the template the host sent (padding, redacted), marked pin-pad, and never the digits.
        let events = try #require(b.channel.trace?.events)
        let pad = try #require(events.first { $0.marker == .pinPad && $0.direction == .toCard })
        #expect(pad.redactedLength == 8 && pad.line.contains("[pin-pad]"))
        let everything = events.map(\.line).joined(separator: "\n") + log.entries.map { "\($0)" }.joined(separator: "\n")
        #expect(!everything.contains("31 32 33 34") && !everything.contains("1234"))
        #expect(b.slot.keypad.pending == 0 && b.slot.keypad.typed == 1)
    }

    @Test func aWrongPINOnThePadReportsTheTriesLeftAndIsSentOnce() async throws {
        let b = try CPSBench("medecin-liberal", pinPad: PINPadProfile())
        b.slot.keypad.type([Self.digits("9999"), Self.digits("9999"), Self.digits("9999"), Self.digits("1234")])
        await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: 2)) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.wrongPIN(which: "PIN", triesLeft: 1)) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.pinBlocked) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.pinBlocked) { try await b.reader.verifyPINOnPad() }
        #expect(try await b.reader.pinStatus().blocked)
        #expect(b.commands.filter { $0.count > 1 && $0[1] == 0x20 }.count == 4)
    }

    @Test func cancelTimeoutAndLengthAreThePadsOwnAnswersAndCostNoTry() async throws {
        let b = try CPSBench("medecin-liberal", pinPad: PINPadProfile(defaultTimeoutSeconds: 1))
        b.slot.keypad.type([.cancel(after: .milliseconds(20)), .timeout, Self.digits("123"), Self.digits("123456789")])
        await #expect(throws: CPSError.pinPad(.cancelled)) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.pinPad(.timeout)) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.pinPad(.lengthOutOfRange)) { try await b.reader.verifyPINOnPad() }
        await #expect(throws: CPSError.pinPad(.lengthOutOfRange)) { try await b.reader.verifyPINOnPad() }
        #expect(try await b.reader.pinStatus().triesLeft == 3)
        // Nothing queued: the keypad waits for its timeout (bTimerOut), then answers 64 00.
        var configuration = CPSReader.Configuration()
        configuration.pinPadTimeout = 1
        let quick = CPSReader(channel: b.channel, generation: .cps3, configuration: configuration)
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: CPSError.pinPad(.timeout)) { try await quick.verifyPINOnPad() }
        #expect(clock.now - start >= .milliseconds(900))
        // An entry typed later than the prompt allows is a timeout too.
        b.slot.keypad.type([Self.digits("1234", after: 1_500)])
        await #expect(throws: CPSError.pinPad(.timeout)) { try await quick.verifyPINOnPad() }
        // One typed while the prompt waits is taken (typed from a thread of its own, 200 ms into a
        // 20-second prompt: the pool may be busy in a loaded run).
        configuration.pinPadTimeout = 20
        let patient = CPSReader(channel: b.channel, generation: .cps3, configuration: configuration)
        let keypad = b.slot.keypad
        let typist = Thread {
            Thread.sleep(forTimeInterval: 0.2)
            keypad.type([Self.digits("1234")])
        }
        typist.start()
        try await patient.verifyPINOnPad()
        #expect(keypad.pending == 0)
        #expect(CPSError.pinPad(.cancelled).description.contains("cancelled"))
    }

    @Test func changeAndUnblockOnThePad() async throws {
        let b = try CPSBench("medecin-liberal", pinPad: PINPadProfile())
        // Change: current, new, confirmation; a differing confirmation is refused by the pad (64 02).
        b.slot.keypad.type([Self.digits("1234"), Self.digits("5678"), Self.digits("5679")])
        await #expect(throws: CPSError.pinPad(.confirmationMismatch)) { try await b.reader.changePINOnPad() }
        b.slot.keypad.type([Self.digits("1234"), Self.digits("5678"), Self.digits("5678")])
        try await b.reader.changePINOnPad()
        try await b.reader.verifyPIN(try PINCode("5678"))
        // Unblock: block it, then PUK, new PIN, confirmation.
        for _ in 0..<3 { try? await b.reader.verifyPIN(try PINCode("0000")) }
        #expect(try await b.reader.pinStatus().blocked)
        b.slot.keypad.type([Self.digits("12345678"), Self.digits("2468"), Self.digits("2468")])
        try await b.reader.unblockPINOnPad()
        try await b.reader.verifyPIN(try PINCode("2468"))
    }

    @Test func cps4OnThePadUsesTheChipDocChannel() async throws {
        let b = try CPSBench("cps4-medecin", pinPad: PINPadProfile())
        b.slot.keypad.type([Self.digits("1234")])
        try await b.reader.verifyPINOnPad()
        b.slot.keypad.type([Self.digits("1234"), Self.digits("4321"), Self.digits("4321")])
        try await b.reader.changePINOnPad()
        try await b.reader.verifyPIN(try PINCode("4321"))
        let pad = try #require(b.channel.trace?.events.last { $0.marker == .pinPad && $0.direction == .toCard })
        #expect(pad.bytes.prefix(3) == [0x01, 0x24, 0x01])
    }

    @Test func anImagesKeypadScriptIsTypedForItsCardAndDroppedWithIt() async throws {
        var image = try cpsImage("medecin-liberal")
        image.keypad = [Self.digits("1234"), Self.digits("1234")]
        var profile = VirtualReaderProfile.monoFente
        profile.pinPad = PINPadProfile()
        let backend = SimulatorBackend(profiles: [profile])
        let name = backend.readerNames[0]
        let keypad = backend.physicalReaders[0].slots[0].keypad
        try backend.insert(image, into: name)
        #expect(keypad.pending == 2)
        let reader = try CPSReader(channel: CardChannel(transport: try backend.connectNow(to: name)), atr: image.atr)
        try await reader.verifyPINOnPad()
        #expect(keypad.pending == 1)
        try backend.remove(from: name)
        #expect(keypad.pending == 0, "the entries scripted for the card that left are not typed for the next")
        try backend.insert(image, into: name)
        try backend.insert(image, into: name)  // a replacement does not double them
        #expect(keypad.pending == 2)
    }

    @Test func laterEntriesOfAChangeWaitBTimeOut2() async throws {
        let b = try CPSBench("medecin-liberal", pinPad: PINPadProfile())
        let template = try PINCommandTemplate(header: [0x00, 0x24, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 16))
        let change = PINModifyStructure(timeout: 30, timeout2: 1, format: .ascii(blockSize: 8), insertionOffsetOld: 0, insertionOffsetNew: 8,
                                        minimumLength: 4, maximumLength: 8, confirmPIN: 0x03, template: template)
        // The second entry comes 1.5 s after its prompt: past bTimeOut2 (1 s), though within bTimerOut (30 s).
        b.slot.keypad.type([Self.digits("1234"), Self.digits("5678", after: 1_500), Self.digits("5678")])
        let r = try await b.channel.modifyPINOnPad(change)
        #expect(PINPadStatus(r.statusWord) == .timeout)
        #expect(try await b.reader.pinStatus().triesLeft == 3)
        try await b.reader.verifyPIN(pin1234)  // unchanged
    }

    @Test func removingTheCardDuringTheEntryIsATypedError() async throws {
        let b = try CPSBench("medecin-liberal", pinPad: PINPadProfile())
        let name = b.slot.info.name
        // The card is pulled out by a thread of its own: a task could wait for a free thread of the
        // cooperative pool (2 here) longer than the pad's 30 s while other suites block theirs, and the
        // prompt would then time out instead (seen once in a loaded CI run).
        let backend = b.backend
        let pull = Thread {
            usleep(200_000)
            try? backend.remove(from: name)
        }
        pull.start()
        // Removed while the keypad waits (or, in a loaded run, already before the prompt started).
        await #expect {
            try await b.reader.verifyPINOnPad()
        } throws: { error in
            error as? CPSError == .card(.cardRemoved(reader: name)) || error as? CPSError == .card(.noCard(reader: name))
        }
        #expect(try b.backend.image(in: name) == nil, "the card was pulled out")
    }
}
