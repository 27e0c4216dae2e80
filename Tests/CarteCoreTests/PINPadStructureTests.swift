import CarteCore
import Testing

@Suite("PC/SC part 10 PIN structures")
struct PINPadStructureTests {
    /// The VERIFY OpenSC builds for an IAS-ECC PIN of 8 padded bytes (reader-pcsc.c): format 0x82, block 8.
    static let cpsVerify = PINVerifyStructure(timeout: 30, timeout2: 30, format: .ascii(blockSize: 8), minimumLength: 4, maximumLength: 8,
                                              template: PINCommandTemplate(header: [0x00, 0x20, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 8)))

    @Test func verifyStructureLayoutIsPCSCLites() throws {
        let bytes = Self.cpsVerify.encoded
        #expect(bytes.count == 19 + 13)
        #expect(bytes[0] == 30 && bytes[1] == 30)
        #expect(bytes[2] == 0x82 && bytes[3] == 0x08 && bytes[4] == 0x00)
        // wPINMaxExtraDigit = 0xXXYY (XX min, YY max), little-endian: max first.
        #expect(bytes[5] == 8 && bytes[6] == 4)
        #expect(bytes[7] == 0x02)
        #expect(Array(bytes[15..<19]) == [13, 0, 0, 0])
        #expect(Array(bytes[19...]) == [0x00, 0x20, 0x00, 0x01, 0x08] + [UInt8](repeating: 0xFF, count: 8))
        #expect(try PINVerifyStructure(bytes: bytes) == Self.cpsVerify)
    }

    @Test func theReaderFormatsASCIIDigitsIntoThePaddedBlock() throws {
        let apdu = try Self.cpsVerify.command(digits: Array("1234".utf8))
        #expect(apdu == [0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33, 0x34, 0xFF, 0xFF, 0xFF, 0xFF])
        var right = Self.cpsVerify
        right.format.formatString |= 0x04
        #expect(try right.command(digits: Array("1234".utf8)).suffix(8) == [0xFF, 0xFF, 0xFF, 0xFF, 0x31, 0x32, 0x33, 0x34])
        #expect(throws: PINPadError.self) { try Self.cpsVerify.command(digits: Array("123456789".utf8)) }
        #expect(throws: PINPadError.self) { try Self.cpsVerify.command(digits: Array("12a4".utf8)) }
    }

    @Test func iso9564Format2PutsTheLengthInTheFirstNibbleAndBCDDigitsAfter() throws {
        // OpenSC's GLP encoding: bmFormatString 0x41 (bits, position 8, BCD), block 0x48, length at bit 4.
        let template = PINCommandTemplate(header: [0x00, 0x20, 0x00, 0x81], data: [0x2F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let s = PINVerifyStructure(format: PINFormat(formatString: 0x41, blockString: 0x48, lengthFormat: 0x04), minimumLength: 4, maximumLength: 12, template: template)
        #expect(try s.command(digits: Array("12345".utf8)) == [0x00, 0x20, 0x00, 0x81, 0x08, 0x25, 0x12, 0x34, 0x5F, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test func lcZeroMeansAVariableLengthDataField() throws {
        // OpenSC without padding: `00 20 00 ref 00`; the reader sets Lc to the PIN's length.
        let s = PINVerifyStructure(format: PINFormat(formatString: 0x82, blockString: 0, lengthFormat: 0), minimumLength: 4, maximumLength: 8,
                                   template: try PINCommandTemplate(bytes: [0x00, 0x20, 0x00, 0x01, 0x00]))
        #expect(try s.command(digits: Array("98765".utf8)) == [0x00, 0x20, 0x00, 0x01, 0x05, 0x39, 0x38, 0x37, 0x36, 0x35])
        #expect(try PINVerifyStructure(bytes: s.encoded) == s)
    }

    @Test func modifyPlacesTheCurrentAndTheNewPINAtTheirOffsets() throws {
        let template = PINCommandTemplate(header: [0x00, 0x24, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 16))
        let s = PINModifyStructure(format: .ascii(blockSize: 8), insertionOffsetOld: 0, insertionOffsetNew: 8, minimumLength: 4, maximumLength: 8, confirmPIN: 0x03, template: template)
        let bytes = s.encoded
        #expect(bytes.count == 24 + 21)
        #expect(bytes[5] == 0 && bytes[6] == 8 && bytes[7] == 8 && bytes[8] == 4 && bytes[9] == 0x03)
        #expect(Array(bytes[20..<24]) == [21, 0, 0, 0])
        #expect(try PINModifyStructure(bytes: bytes) == s)
        #expect(s.asksCurrentPIN && s.asksConfirmation)
        let apdu = try s.command(current: Array("1234".utf8), new: Array("567890".utf8))
        #expect(apdu == [0x00, 0x24, 0x00, 0x01, 0x10, 0x31, 0x32, 0x33, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0x35, 0x36, 0x37, 0x38, 0x39, 0x30, 0xFF, 0xFF])
    }

    @Test func malformedStructuresAreTypedErrorsNamingTheField() {
        #expect(throws: PINPadError.truncated(structure: "PIN_VERIFY_STRUCTURE", needed: 19, got: 3)) { try PINVerifyStructure(bytes: [1, 2, 3]) }
        var bytes = Self.cpsVerify.encoded
        bytes[15] = 40
        #expect(throws: PINPadError.dataLengthMismatch(structure: "PIN_VERIFY_STRUCTURE", declared: 40, actual: 13)) { try PINVerifyStructure(bytes: bytes) }
        #expect(throws: PINPadError.truncated(structure: "PIN_MODIFY_STRUCTURE", needed: 24, got: 19)) { try PINModifyStructure(bytes: Array(repeating: 0, count: 19)) }
        // A template whose Lc disagrees with its bytes.
        #expect(throws: PINPadError.self) { try PINCommandTemplate(bytes: [0x00, 0x20, 0x00, 0x01, 0x08, 0xFF]) }
        // A PIN position past the data field.
        let far = PINVerifyStructure(format: PINFormat(formatString: 0x80 | 0x0F << 3 | 0x02, blockString: 0x08, lengthFormat: 0), minimumLength: 4, maximumLength: 8,
                                     template: PINCommandTemplate(header: [0, 0x20, 0, 1], data: [UInt8](repeating: 0xFF, count: 8)))
        #expect(throws: PINPadError.self) { try far.command(digits: Array("1234".utf8)) }
        // Reserved format 3.
        let reserved = PINVerifyStructure(format: PINFormat(formatString: 0x83, blockString: 0x08, lengthFormat: 0), minimumLength: 4, maximumLength: 8,
                                          template: PINCommandTemplate(header: [0, 0x20, 0, 1], data: [UInt8](repeating: 0xFF, count: 8)))
        #expect(throws: PINPadError.self) { try reserved.command(digits: Array("1234".utf8)) }
    }

    @Test func arbitraryBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let count = Int.random(in: 0..<64, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if bytes.count >= 19, Bool.random(using: &generator) {
                let n = UInt8(bytes.count - 19)
                bytes[15] = n
                bytes[16] = 0
                bytes[17] = 0
                bytes[18] = 0
            }
            if let s = try? PINVerifyStructure(bytes: bytes) { _ = try? s.command(digits: Array("1234".utf8)) }
            if let s = try? PINModifyStructure(bytes: bytes) { _ = try? s.command(current: Array("1234".utf8), new: Array("5678".utf8)) }
        }
    }

    @Test func featureListsAndPropertiesRoundTrip() {
        let list = Part10.encodeFeatureList([(0x06, 0x4233_0006), (0x12, 0x4233_0012)])
        #expect(list == [0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x12, 0x04, 0x42, 0x33, 0x00, 0x12])
        #expect(Part10.decodeFeatureList(list) == [0x06: 0x4233_0006, 0x12: 0x4233_0012])
        #expect(Part10.featureControlCode(0x06) == 0x4233_0006 && Part10.getFeatureRequest == 0x4200_0D48)
        let props = Part10.encodeProperties([(0x01, 0x0210, 2), (0x06, 4, 1), (0x07, 8, 1), (0x0A, 0x10000, 4)])
        let decoded = Part10.decodeProperties(props)
        #expect(decoded[0x01] == [0x10, 0x02] && decoded[0x0A] == [0, 0, 1, 0])
        let caps = PINPadCapabilities(features: Part10.decodeFeatureList(list), pinProperties: [0x10, 0x02, 0x02, 0x00], tlvProperties: decoded)
        #expect(caps?.verify == true && caps?.modify == false && caps?.lcdLayout == 0x0210 && caps?.minimumPINLength == 4 && caps?.maximumPINLength == 8)
        #expect(PINPadCapabilities(features: [0x12: 0x4233_0012], pinProperties: nil, tlvProperties: [:]) == nil)
        #expect(PINPadStatus(StatusWord(sw1: 0x64, sw2: 0x01)) == .cancelled && PINPadStatus(StatusWord(sw1: 0x63, sw2: 0xC2)) == nil)
    }
}
