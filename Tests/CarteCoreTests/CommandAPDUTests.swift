import CarteCore
import PropertyBased
import Testing

@Suite("CommandAPDU")
struct CommandAPDUTests {
    @Test("every ISO 7816-3 case encodes and decodes", arguments: [
        ("00 A4 00 00", APDUCase.case1, 0, nil as Int?),
        ("00 B0 00 00 10", .case2Short, 0, 16),
        ("00 B0 00 00 00", .case2Short, 0, 256),
        ("00 B0 00 00 00 01 00", .case2Extended, 0, 256),
        ("00 B0 00 00 00 00 00", .case2Extended, 0, 65_536),
        ("00 B0 00 00 00 01 01", .case2Extended, 0, 257),
        ("00 A4 04 0C 02 3F 00", .case3Short, 2, nil),
        ("00 D6 00 00 00 00 02 AA BB", .case3Extended, 2, nil),
        ("00 A4 04 00 02 3F 00 00", .case4Short, 2, 256),
        ("00 A4 04 00 02 3F 00 12", .case4Short, 2, 18),
        ("00 2A 9E 9A 00 00 02 AA BB 00 00", .case4Extended, 2, 65_536),
        ("00 2A 9E 9A 00 00 02 AA BB 01 00", .case4Extended, 2, 256),
    ])
    func cases(hex: String, expected: APDUCase, dataCount: Int, le: Int?) throws {
        let bytes = try [UInt8](hex: hex)
        let apdu = try CommandAPDU(bytes: bytes)
        #expect(apdu.apduCase == expected)
        #expect(apdu.data.count == dataCount)
        #expect(apdu.le == le)
        #expect(apdu.encoded() == bytes)
    }

    @Test func builderPicksShortOrExtended() throws {
        #expect(try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 256).encoded() == [0, 0xB0, 0, 0, 0])
        #expect(try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 257).encoded() == [0, 0xB0, 0, 0, 0, 0x01, 0x01])
        #expect(try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 65_536).encoded() == [0, 0xB0, 0, 0, 0, 0, 0])
        let long = [UInt8](repeating: 0xAB, count: 300)
        let e = try CommandAPDU(cla: 0, ins: 0xD6, p1: 0, p2: 0, data: long)
        #expect(e.apduCase == .case3Extended)
        #expect(Array(e.encoded().prefix(7)) == [0, 0xD6, 0, 0, 0, 0x01, 0x2C])
        let forced = try CommandAPDU(cla: 0, ins: 0xB0, p1: 0, p2: 0, le: 16, extended: true)
        #expect(forced.encoded() == [0, 0xB0, 0, 0, 0, 0, 0x10])
    }

    @Test func builderRejectsBadValues() {
        #expect(throws: APDUError.invalidLe(0)) { try CommandAPDU(cla: 0, ins: 0, p1: 0, p2: 0, le: 0) }
        #expect(throws: APDUError.invalidLe(65_537)) { try CommandAPDU(cla: 0, ins: 0, p1: 0, p2: 0, le: 65_537) }
        #expect(throws: APDUError.dataTooLong(count: 65_536)) {
            try CommandAPDU(cla: 0, ins: 0, p1: 0, p2: 0, data: [UInt8](repeating: 0, count: 65_536))
        }
        #expect(throws: APDUError.extendedLengthRequired(dataCount: 0, le: 300)) {
            try CommandAPDU(cla: 0, ins: 0, p1: 0, p2: 0, le: 300, extended: false)
        }
        #expect(throws: APDUError.parameterOutOfRange(name: "offset", value: 0x8000, allowed: 0...0x7FFF)) {
            try CommandAPDU.readBinary(offset: 0x8000)
        }
    }

    @Test("malformed APDUs name the offset", arguments: [
        ("", APDUError.truncated(field: "CLA", offset: 0, needed: 4, available: 0)),
        ("00 A4", .truncated(field: "P1", offset: 2, needed: 2, available: 0)),
        ("00 A4 04 00 05 01 02", .truncated(field: "data (Lc=5)", offset: 5, needed: 5, available: 2)),
        ("00 A4 04 00 02 01 02 03 04", .trailingBytes(offset: 8, count: 1)),
        ("00 B0 00 00 00 01", .truncated(field: "extended length", offset: 5, needed: 2, available: 1)),
        ("00 D6 00 00 00 00 00 01", .zeroExtendedLc(offset: 4)),
        ("00 D6 00 00 00 00 05 01 02", .truncated(field: "data (Lc=5)", offset: 7, needed: 5, available: 2)),
        ("00 D6 00 00 00 00 02 01 02 03", .truncated(field: "extended Le", offset: 9, needed: 2, available: 1)),
        ("00 D6 00 00 00 00 02 01 02 03 04 05", .trailingBytes(offset: 11, count: 1)),
    ])
    func malformed(hex: String, expected: APDUError) throws {
        let bytes = try [UInt8](hex: hex)
        #expect(throws: expected) { try CommandAPDU(bytes: bytes) }
        #expect(expected.offset != nil)
        #expect(expected.description.contains("offset"))
    }

    @Test func caseOneIsNeverExtended() throws {
        let apdu = try CommandAPDU(cla: 0, ins: 0xA4, p1: 0, p2: 0, extended: true)
        #expect(!apdu.isExtended)
        #expect(try CommandAPDU(bytes: apdu.encoded()) == apdu)
    }

    @Test func secretsAreRedactedInEveryTextForm() throws {
        let pin: [UInt8] = Array("1234".utf8) + [0xFF, 0xFF, 0xFF, 0xFF]
        for ins: UInt8 in [0x20, 0x24, 0x26, 0x28, 0x2C] {
            let apdu = try CommandAPDU(cla: 0, ins: ins, p1: 0, p2: 0x81, data: pin)
            #expect(apdu.carriesSecret)
            var dumped = ""
            dump(apdu, to: &dumped)
            for text in [apdu.description, apdu.debugDescription, apdu.redactedHex, "\(apdu)", String(reflecting: apdu), dumped] {
                #expect(!text.contains("31 32 33 34"))
                #expect(text.contains("<redacted 8 bytes>"))
            }
        }
        let select = try CommandAPDU.select(aid: [0xA0, 0x00])
        #expect(!select.carriesSecret)
        #expect(select.description == "00 A4 04 00 02 A0 00 00")
    }

    @Test func classByteHelpers() throws {
        #expect(try CommandAPDU(bytes: [0x03, 0xA4, 0, 0]).logicalChannel == 3)
        #expect(try CommandAPDU(bytes: [0x45, 0xA4, 0, 0]).logicalChannel == 9)
        #expect(try CommandAPDU(bytes: [0xA0, 0xA4, 0, 0]).logicalChannel == nil)
        #expect(try CommandAPDU(bytes: [0x10, 0xA4, 0, 0]).isChained)
        #expect(try !CommandAPDU(bytes: [0x90, 0xA4, 0, 0]).isChained)
    }

    @Test func wellKnownBuilders() throws {
        #expect(try CommandAPDU.readBinary(sfi: 2).encoded() == [0x00, 0xB0, 0x82, 0x00, 0x00])
        #expect(try CommandAPDU.readRecord(1, sfi: 2).encoded() == [0x00, 0xB2, 0x01, 0x14, 0x00])
        #expect(try CommandAPDU.select(fid: 0x2001, p1: 2, p2: 0).encoded() == [0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01])
        #expect(CommandAPDU.getResponse(cla: 0xA0, length: 0x1C).encoded() == [0xA0, 0xC0, 0, 0, 0x1C])
        #expect(CommandAPDU.getResponse(length: 256).encoded() == [0x00, 0xC0, 0, 0, 0x00])
        #expect(try CommandAPDU.verify(reference: 0x81).apduCase == .case1)
    }

    // MARK: Properties


    @Test func encodeDecodeIsIdentity() async {
        await propertyCheck(count: 1000, input: Gen.uint8().array(of: 4...4), Gen.uint8().array(of: 0...300), Gen.int(in: 1...65_536), Gen.int(in: 0...3)) {
            header, data, leRaw, flags in
            let le: Int? = flags & 1 == 0 ? nil : leRaw  // half the cases have no Le (cases 1 and 3)
            let extended = flags & 2 != 0
            guard let apdu = try? CommandAPDU(cla: header[0], ins: header[1], p1: header[2], p2: header[3], data: data, le: le, extended: extended ? true : nil) else {
                Issue.record("valid values rejected: \(data.count) bytes, le \(String(describing: le))")
                return
            }
            let decoded = try? CommandAPDU(bytes: apdu.encoded())
            #expect(decoded == apdu)
            #expect(decoded?.encoded() == apdu.encoded())
        }
    }

    @Test func decodingRandomBytesNeverCrashesAndRoundTrips() async {
        await propertyCheck(count: 2000, input: Gen.uint8().array(of: 0...270)) { bytes in
            if let apdu = try? CommandAPDU(bytes: bytes) {
                #expect(apdu.encoded() == bytes)
            }
        }
    }
}
