import CarteCore
import CarteEmulator
import CarteImages
import CarteSimDaemon
import CarteSimProtocol
import Testing

/// The vpcd card side without its socket: what each message vpcd sends decodes to, and what the slot
/// answers (the stock vpcd through pcscd is in ClientsThroughPCSCDTests).
@Suite("vpcd card side (in memory)")
struct VPCDCardSideTests {
    let selectMF: [UInt8] = [0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]

    func slot(image: String?, mute: Bool = false) throws -> (SimulatorBackend, VirtualSlot) {
        let backend = SimulatorBackend(profiles: [.monoFente])
        if let image { try backend.insert(try bundled(image), into: backend.readerNames[0], mute: mute) }
        return (backend, try #require(backend.physicalReaders.first?.slots.first))
    }

    @Test func oneByteBodiesAreControlsEveryOtherBodyAnAPDU() {
        #expect(VPCDMessage(body: [0x00]) == .powerOff)
        #expect(VPCDMessage(body: [0x01]) == .powerOn)
        #expect(VPCDMessage(body: [0x02]) == .reset)
        #expect(VPCDMessage(body: [0x04]) == .getATR)
        #expect(VPCDMessage(body: [0x03]) == .unknownControl(0x03))
        #expect(VPCDMessage(body: []) == .apdu([]))
        #expect(VPCDMessage(body: [0x00, 0x00]) == .apdu([0x00, 0x00]))
        #expect(VPCDMessage(body: selectMF) == .apdu(selectMF))
        for body: [UInt8] in [[0x00], [0x01], [0x02], [0x04], [0xFF], [], selectMF] {
            #expect(VPCDMessage(body: body).body == body)
        }
        #expect(VPCDMessage.getATR.expectsAnswer && VPCDMessage.apdu([]).expectsAnswer)
        #expect(![VPCDMessage.powerOff, .powerOn, .reset, .unknownControl(9)].contains { $0.expectsAnswer })
    }

    @Test func framesHaveATwoByteBigEndianLength() throws {
        #expect(try VPCD.bodyLength(header: [0x01, 0x02]) == 258)
        #expect(try VPCD.bodyLength(header: [0xFF, 0xFF][...]) == 0xFFFF)
        #expect(throws: VPCDError.header(count: 1)) { try VPCD.bodyLength(header: [0x01]) }
        #expect(throws: VPCDError.header(count: 3)) { try VPCD.bodyLength(header: [0, 0, 0]) }
        #expect(try VPCD.frame([0x90, 0x00]) == [0x00, 0x02, 0x90, 0x00])
        #expect(try VPCD.frame([]) == [0x00, 0x00])
        let largest = try VPCD.frame([UInt8](repeating: 0xAB, count: 0xFFFF))
        #expect(largest.count == 0x10001 && largest.prefix(2) == [0xFF, 0xFF])
        #expect(throws: VPCDError.bodyTooLarge(0x10000)) { try VPCD.frame([UInt8](repeating: 0, count: 0x10000)) }
        #expect("\(VPCDError.bodyTooLarge(0x10000))".contains("65535"))
    }

    @Test func aCardAnswersTheATRAndItsAPDUsControlsGetNoAnswer() throws {
        let (backend, slot) = try slot(image: "demo/iso-generic.yaml")
        let image = try #require(slot.image)
        #expect(VPCDCardSide.answer(to: .powerOn, slot: slot) == nil)
        #expect(VPCDCardSide.answer(to: .getATR, slot: slot) == image.atr)
        let answer = try #require(VPCDCardSide.answer(to: .apdu(selectMF), slot: slot))
        // The same command as a PC/SC client sends it gets the same answer from the same card.
        let connection = try backend.connectNow(to: backend.readerNames[0])
        #expect(answer == (try connection.transmitNow(selectMF)))
        #expect(try ResponseAPDU(bytes: answer).statusWord == .success)
        #expect(VPCDCardSide.answer(to: .apdu([]), slot: slot)?.count == 2, "an empty APDU still gets a status word")
        #expect(VPCDCardSide.answer(to: .reset, slot: slot) == nil)
        #expect(VPCDCardSide.answer(to: .powerOff, slot: slot) == nil)
        #expect(VPCDCardSide.answer(to: .unknownControl(0x07), slot: slot) == nil)
        #expect(slot.apduCount == 3)
    }

    @Test func anEmptyOrMuteSlotAnswersEmptyBodies() throws {
        for (image, mute) in [(nil, false), ("demo/iso-generic.yaml", true)] as [(String?, Bool)] {
            let (_, slot) = try slot(image: image, mute: mute)
            #expect(VPCDCardSide.answer(to: .getATR, slot: slot) == [])
            #expect(VPCDCardSide.answer(to: .apdu(selectMF), slot: slot) == [])
            #expect(VPCDCardSide.answer(to: .powerOn, slot: slot) == nil)
        }
    }

    @Test func aCardPulledOutAfterAnAnswerLeavesEmptyAnswers() throws {
        let (_, slot) = try slot(image: "demo/iso-generic.yaml")
        slot.inject(.removeAfter)
        #expect(VPCDCardSide.answer(to: .apdu(selectMF), slot: slot)?.suffix(2) == [0x90, 0x00])
        #expect(VPCDCardSide.answer(to: .getATR, slot: slot) == [])
        #expect(VPCDCardSide.answer(to: .apdu(selectMF), slot: slot) == [])
    }
}
