import CarteCore
import Testing

@Suite("PC/SC part 10 PIN structures")
struct PINPadStructureTests {
    /// The VERIFY OpenSC builds for an IAS-ECC PIN of 8 padded bytes (reader-pcsc.c): format 0x82, block 8.
    static let cpsVerify = PINVerifyStructure(timeout: 30, timeout2: 30, format: .ascii(blockSize: 8), minimumLength: 4, maximumLength: 8,
                                              template: try! PINCommandTemplate(header: [0x00, 0x20, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 8)))

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
        let template = try PINCommandTemplate(header: [0x00, 0x20, 0x00, 0x81], data: [0x2F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
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
        let template = try PINCommandTemplate(header: [0x00, 0x24, 0x00, 0x01], data: [UInt8](repeating: 0xFF, count: 16))
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
        #expect(throws: PINPadError.invalidTemplate("Lc 8 but 1 bytes follow the header")) { try PINCommandTemplate(bytes: [0x00, 0x20, 0x00, 0x01, 0x08, 0xFF]) }
        // A PIN position past the data field.
        let far = PINVerifyStructure(format: PINFormat(formatString: 0x80 | 0x0F << 3 | 0x02, blockString: 0x08, lengthFormat: 0), minimumLength: 4, maximumLength: 8,
                                     template: try! PINCommandTemplate(header: [0, 0x20, 0, 1], data: [UInt8](repeating: 0xFF, count: 8)))
        #expect { try far.command(digits: Array("1234".utf8)) } throws: { ($0 as? PINPadError).map { "\($0)".hasPrefix("PIN: ") } ?? false }
        // Reserved format 3.
        let reserved = PINVerifyStructure(format: PINFormat(formatString: 0x83, blockString: 0x08, lengthFormat: 0), minimumLength: 4, maximumLength: 8,
                                          template: try! PINCommandTemplate(header: [0, 0x20, 0, 1], data: [UInt8](repeating: 0xFF, count: 8)))
        #expect(throws: PINPadError.invalidField(field: "bmFormatString", reason: "PIN format 3 is reserved")) { try reserved.command(digits: Array("1234".utf8)) }
    }

    @Test func arbitraryFieldsNeverTrapAndStayInTheirBlock() throws {
        var generator = SystemRandomNumberGenerator()
        var formatted = 0
        for _ in 0..<20_000 {
            // Well-formed structures with random PIN fields, templates and digits: the formatter's inputs.
            let format = PINFormat(formatString: .random(in: 0...255, using: &generator), blockString: .random(in: 0...255, using: &generator),
                                   lengthFormat: .random(in: 0...255, using: &generator))
            let data = (0..<Int.random(in: 0...24, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let digits = (0..<Int.random(in: 0...16, using: &generator)).map { _ in UInt8.random(in: 0x30...0x39, using: &generator) }
            let template = try PINCommandTemplate(header: [0, 0x20, 0, 1], data: data)
            let verify = PINVerifyStructure(format: format, minimumLength: 0, maximumLength: 16, template: template)
            let parsed = try PINVerifyStructure(bytes: verify.encoded)
            #expect(parsed == verify || data.isEmpty)
            if let apdu = try? verify.command(digits: digits) {
                formatted += 1
                // Only the data field changes, and only within Lc.
                #expect(apdu.prefix(4) == [0, 0x20, 0, 1] && Int(apdu[4]) == apdu.count - 5)
            }
            let modify = PINModifyStructure(format: format, insertionOffsetOld: .random(in: 0...20, using: &generator), insertionOffsetNew: .random(in: 0...20, using: &generator),
                                            minimumLength: 0, maximumLength: 16, confirmPIN: .random(in: 0...3, using: &generator), template: template)
            #expect(try PINModifyStructure(bytes: modify.encoded).confirmPIN == modify.confirmPIN)
            _ = try? modify.command(current: digits, new: digits.reversed())
            // And arbitrary bytes, with the length field of each layout made consistent half the time.
            var bytes = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for fixed in [19, 24] where bytes.count >= fixed && Bool.random(using: &generator) {
                bytes.replaceSubrange((fixed - 4)..<fixed, with: [UInt8(bytes.count - fixed), 0, 0, 0])
            }
            if let s = try? PINVerifyStructure(bytes: bytes) { _ = try? s.command(digits: digits) }
            if let s = try? PINModifyStructure(bytes: bytes) { _ = try? s.command(current: digits, new: digits) }
        }
        #expect(formatted > 1_000, "the formatter ran on \(formatted) random formats")
    }

    @Test func bcdRightJustifiedBinaryAndByteUnitLengths() throws {
        // BCD, right-justified, 5 digits in a 4-byte block: the odd digit count leaves a pad nibble in front.
        let bcd = PINFormat(formatString: 0x80 | 0x04 | 0x01, blockString: 0x04, lengthFormat: 0)
        var data: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        try bcd.insert(Array("12345".utf8), into: &data)
        #expect(data == [0xFF, 0xF1, 0x23, 0x45])
        // Binary: one byte per digit value.
        let binary = PINFormat(formatString: 0x80, blockString: 0x06, lengthFormat: 0)
        data = [UInt8](repeating: 0xFF, count: 6)
        try binary.insert(Array("9012".utf8), into: &data)
        #expect(data == [0x09, 0x00, 0x01, 0x02, 0xFF, 0xFF])
        // A one-byte length in byte units at byte 0, ASCII PIN from byte 1.
        let counted = PINFormat(formatString: 0x80 | 1 << 3 | 0x02, blockString: 0x80 | 0x09, lengthFormat: 0x10)
        data = [UInt8](repeating: 0x00, count: 9)
        try counted.insert(Array("4321".utf8), into: &data)
        #expect(data == [0x04, 0x34, 0x33, 0x32, 0x31, 0x00, 0x00, 0x00, 0x00])
        // The same in a modify, at the new PIN's offset.
        let template = try PINCommandTemplate(header: [0, 0x24, 0, 1], data: [UInt8](repeating: 0, count: 18))
        let modify = PINModifyStructure(format: counted, insertionOffsetOld: 0, insertionOffsetNew: 9, minimumLength: 4, maximumLength: 8, confirmPIN: 0x03, template: template)
        let apdu = try modify.command(current: Array("1111".utf8), new: Array("22222".utf8))
        #expect(Array(apdu[5...]) == [4, 0x31, 0x31, 0x31, 0x31, 0, 0, 0, 0, 5, 0x32, 0x32, 0x32, 0x32, 0x32, 0, 0, 0])
        // A modify of the new PIN alone may use a variable-length data field.
        let variable = PINModifyStructure(format: PINFormat(formatString: 0x82, blockString: 0, lengthFormat: 0), insertionOffsetOld: 0, insertionOffsetNew: 0,
                                          minimumLength: 4, maximumLength: 8, confirmPIN: 0x01, template: try PINCommandTemplate(bytes: [0, 0x24, 1, 1, 0]))
        #expect(try variable.command(current: nil, new: Array("567890".utf8)) == [0, 0x24, 1, 1, 6, 0x35, 0x36, 0x37, 0x38, 0x39, 0x30])
        // Templates the host cannot build.
        #expect(throws: PINPadError.self) { try PINCommandTemplate(header: [0, 0x20, 0], data: []) }
        #expect(throws: PINPadError.self) { try PINCommandTemplate(header: [0, 0x20, 0, 1], data: [UInt8](repeating: 0, count: 256)) }
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
