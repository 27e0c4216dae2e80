import CarteCore
import Testing

@Suite("Hex")
struct HexTests {
    @Test func parsesCommonSpellings() throws {
        #expect(try [UInt8](hex: "00 A4 04 00") == [0x00, 0xA4, 0x04, 0x00])
        #expect(try [UInt8](hex: "00a40400") == [0x00, 0xA4, 0x04, 0x00])
        #expect(try [UInt8](hex: "00:A4-04\n00") == [0x00, 0xA4, 0x04, 0x00])
        #expect(try [UInt8](hex: "") == [])
    }

    @Test func rejectsWithOffsets() {
        #expect(throws: HexError.invalidCharacter("G", offset: 3)) { try [UInt8](hex: "00 G4") }
        #expect(throws: HexError.oddNumberOfDigits(offset: 3)) { try [UInt8](hex: "00 A 04") }
        #expect(throws: HexError.oddNumberOfDigits(offset: 2)) { try [UInt8](hex: "00A") }
        #expect(throws: HexError.invalidCharacter("é", offset: 1)) { try [UInt8](hex: "0é") }
    }

    @Test func formats() {
        #expect([UInt8]([0x3B, 0x0A]).hexString() == "3B 0A")
        #expect([UInt8]([0x3B, 0x0A]).hexString(separator: "") == "3B0A")
        #expect(UInt16(0x2F00).hex == "2F00")
    }
}
