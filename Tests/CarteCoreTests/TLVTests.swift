import CarteCore
import PropertyBased
import Testing

@Suite("BER-TLV")
struct TLVTests {
    @Test func vitaleBeneficiaryTemplateWithPadding() throws {
        // 65 { 80 "NOM" 81 "PRENOM" 82 "19601020" } then 00 padding, as on a Vitale 2 (domain-facts §3.4).
        let bytes: [UInt8] = [0x65, 0x17, 0x80, 0x03] + Array("NOM".utf8) + [0x81, 0x06] + Array("PRENOM".utf8)
            + [0x82, 0x08] + Array("19601020".utf8) + [UInt8](repeating: 0, count: 20)
        let objects = try TLV.decode(bytes)
        #expect(objects.count == 1)
        let person = objects[0]
        #expect(person.tag == 0x65)
        #expect(person.tag.isConstructed)
        #expect(person[0x80]?.value == Array("NOM".utf8))
        #expect(person.find(path: [0x82])?.value == Array("19601020".utf8))
        #expect(person[0x81]?.offset == 7)
        #expect(throws: TLVError.invalidTag(offset: 25)) { try TLV.decode(bytes, allowPadding: false) }
    }

    @Test func multiByteTagsAndLongLengths() throws {
        let value = [UInt8](repeating: 0xAB, count: 300)
        let cert = TLV(tag: 0x7F21, children: [TLV(tag: 0x5F37, value: value), TLV(tag: 0x5F38, value: [1, 2, 3])])
        let encoded = cert.encoded()
        #expect(Array(encoded.prefix(4)) == [0x7F, 0x21, 0x82, 0x01])
        let decoded = try #require(try TLV.decodeSingle(encoded))
        #expect(decoded == cert)
        #expect(decoded[0x5F37]?.value.count == 300)
        #expect(TLVTag(rawValue: 0x5F37).bytes == [0x5F, 0x37])
        #expect(TLVTag(rawValue: 0x9F7F01).bytes == [0x9F, 0x7F, 0x01])
        #expect(TLV.encodeLength(127) == [0x7F])
        #expect(TLV.encodeLength(128) == [0x81, 0x80])
        #expect(TLV.encodeLength(65_536) == [0x83, 0x01, 0x00, 0x00])
    }

    @Test func deepNestingAndSiblings() throws {
        // E0 { A0 { 82 … 82 … } 80 … 80 … }, the EF 2001 pointer shape (domain-facts §3.3).
        let map = TLV(tag: 0xE0, children: [
            TLV(tag: 0xA0, children: [TLV(tag: 0x82, value: [0, 1, 0, 0, 0xD2]), TLV(tag: 0x82, value: [0, 2, 0, 0, 0xD2])]),
            TLV(tag: 0x80, value: Array("NIR     ".utf8) + [0, 1, 0, 2]),
            TLV(tag: 0x80, value: Array("IDENT   ".utf8) + [0, 2, 0, 3]),
        ])
        let decoded = try TLV.decode(map.encoded())
        #expect(decoded == [map])
        #expect(decoded[0][0xA0]?.all(0x82).count == 2)
        #expect(decoded[0].all(0x80).count == 2)
        #expect(decoded[0].dump().contains("80 (12) 4E 49 52 20"))
    }

    @Test("malformed TLV names the offset", arguments: [
        ([0x5F] as [UInt8], TLVError.truncatedTag(offset: 1)),
        ([0x5F, 0x81], .truncatedTag(offset: 2)),
        ([0x5F, 0x81, 0x81, 0x81, 0x01, 0x00], .tagTooLong(offset: 0)),
        ([0x80], .truncatedLength(offset: 1)),
        ([0x80, 0x80], .indefiniteLength(offset: 1)),
        ([0x80, 0x85, 1, 1, 1, 1, 1], .lengthTooLong(offset: 1)),
        ([0x80, 0x82, 0x01], .truncatedLength(offset: 1)),
        ([0x80, 0x05, 0x01], .truncatedValue(offset: 1, declared: 5, available: 1)),
        ([0x65, 0x04, 0x80, 0x05, 0x41, 0x42], .truncatedValue(offset: 3, declared: 5, available: 2)),
        ([0x90, 0x00, 0x65, 0x02, 0x80, 0x01], .truncatedValue(offset: 5, declared: 1, available: 0)),
    ])
    func malformed(bytes: [UInt8], expected: TLVError) {
        #expect(throws: expected) { try TLV.decode(bytes) }
    }

    @Test func nestingLimit() {
        var bytes: [UInt8] = [0x80, 0x00]
        for _ in 0..<40 { bytes = [0xA1, UInt8(bytes.count)] + bytes }
        #expect(throws: TLVError.self) { try TLV.decode(bytes) }
        do {
            _ = try TLV.decode(bytes)
        } catch {
            guard case .nestingTooDeep = error else { Issue.record("expected nestingTooDeep, got \(error)"); return }
        }
    }

    @Test func baseOffsetIsAddedToErrors() {
        #expect(throws: TLVError.truncatedValue(offset: 101, declared: 5, available: 1)) {
            try TLV.decode([0x80, 0x05, 0x01], baseOffset: 100)
        }
    }

    // MARK: Properties

    static func tree(depth: Int, seed: [UInt8]) -> TLV {
        var it = seed.makeIterator()
        func next() -> UInt8 { it.next() ?? 0x41 }
        func build(_ depth: Int) -> TLV {
            let kind = next()
            let multi = kind & 0x40 != 0
            if depth > 0 && kind & 1 == 1 {
                let tag: TLVTag = multi ? TLVTag(rawValue: 0x7F00 | UInt32(next() & 0x7F)) : TLVTag(rawValue: 0xA0 | UInt32(next() & 0x1E))
                let count = Int(next() % 4)
                return TLV(tag: tag, children: (0..<count).map { _ in build(depth - 1) })
            }
            let tag: TLVTag = multi ? TLVTag(rawValue: 0x5F00 | UInt32(next() & 0x7F)) : TLVTag(rawValue: 0x80 | UInt32(next() & 0x1E))
            let length = Int(next()) * (kind & 2 == 2 ? 3 : 1)
            return TLV(tag: tag, value: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        }
        return build(depth)
    }

    @Test func encodeDecodeIsIdentity() async {
        await propertyCheck(count: 500, input: Gen.uint8().array(of: 0...64), Gen.int(in: 0...5)) { seed, depth in
            let tlv = TLVTests.tree(depth: depth, seed: seed)
            let decoded = try? TLV.decode(tlv.encoded(), allowPadding: false)
            #expect(decoded == [tlv])
        }
    }

    @Test func decodingRandomBytesNeverCrashes() async {
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...200)) { bytes in
            if let objects = try? TLV.decode(bytes, allowPadding: false) {
                #expect(objects.flatMap { $0.encoded() }.count <= bytes.count)
            }
            _ = try? TLV.decode(bytes)
        }
    }
}
