import CarteCore
import Foundation
import PropertyBased
import Testing

/// Every ATR of domain-facts §1, with the convention, protocols and family it must decode to.
struct KnownCardATR: Sendable, CustomTestStringConvertible {
    let hex: String
    let convention: ATR.Convention
    let protocols: [TransmissionProtocol]
    let family: ATRFamily
    var testDescription: String { hex }
}

/// Read from `Tests/Shared/domain-facts-atrs.tsv` (shared with the CLI tests).
let domainFactsATRs: [KnownCardATR] = {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Shared/domain-facts-atrs.tsv")
    let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
        let f = line.split(separator: "\t").map(String.init)
        return KnownCardATR(
            hex: f[0],
            convention: f[1] == "inverse" ? .inverse : .direct,
            protocols: f[2].split(separator: ",").map { TransmissionProtocol(rawValue: UInt8($0.dropFirst(2))!) },
            family: ATRFamily(rawValue: f[3])!)
    }
}()

@Suite("ATR")
struct ATRTests {
    @Test func theTableIsComplete() {
        #expect(domainFactsATRs.count == 24)
    }

    @Test("domain-facts §1 ATRs decode with the right convention, protocols and family", arguments: domainFactsATRs)
    func domainFacts(_ card: KnownCardATR) throws {
        let atr = try ATR(hex: card.hex)
        #expect(atr.convention == card.convention)
        #expect(atr.protocols == card.protocols)
        #expect(KnownATR.identify(atr.bytes).first?.family == card.family)
        #expect(atr.bytes == (try [UInt8](hex: card.hex)))
        // TCK present exactly when a protocol other than T=0 is offered.
        #expect((atr.tck != nil) == card.protocols.contains { $0 != .t0 })
    }

    @Test func vitale2Parameters() throws {
        let atr = try ATR(hex: "3B 75 13 00 00 45 09 EA 90 00")
        #expect(atr.fi == 372)
        #expect(atr.di == 4)
        #expect(atr.fMaxMHz == 5)
        #expect(atr.historicalBytes == [0x45, 0x09, 0xEA, 0x90, 0x00])
        #expect(atr.historicalObjects == nil)  // category 4x: proprietary
        #expect(atr.namedInterfaceBytes.map(\.name) == ["TA1", "TB1", "TC1"])
    }

    @Test func cps3HistoricalBytesAreCompactTLV() throws {
        let atr = try ATR(hex: "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
        #expect(atr.waitingIntegerT0 == 0x2A)
        let objects = try #require(atr.historicalObjects)
        #expect(objects.map(\.tag) == [1, 6, 8])
        #expect(objects[1].value == [0x80, 0x00, 0x03, 0x10])
        #expect(objects.last?.value == [0x00, 0x90, 0x00])
    }

    @Test func cps4AndContactlessDetails() throws {
        let cps4 = try ATR(hex: "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")
        #expect(cps4.di == 12)
        #expect(cps4.tck == 0x44)
        let cl = try ATR(hex: "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E")
        #expect(cl.isPCSCContactless)
        #expect(cl.defaultProtocol == .t1)
        let t1 = try ATR(hex: "3B 8A 81 31 FE 45 80 31 C1 73 C8 40 00 82 90 00 18")
        #expect(t1.ifsc == 254)
        #expect(t1.bwi == 4 && t1.cwi == 5)
        #expect(t1.protocols == [.t1])
    }

    @Test("malformed ATRs are rejected with the offset", arguments: [
        ("", ATRError.empty),
        ("3A 00", .invalidTS(0x3A)),
        ("03 65", .invalidTS(0x03)),
        ("3B", .truncated(expected: "T0", offset: 1)),
        ("3B 75 13 00", .truncated(expected: "TC1", offset: 4)),
        ("3B 80", .truncated(expected: "TD1", offset: 2)),
        ("3B 75 13 00 00 45 09", .truncated(expected: "historical byte 3 of 5", offset: 7)),
        ("3B 81 01 AA", .missingTCK(offset: 4)),
        ("3B 81 01 AA 00", .tckMismatch(offset: 4, found: 0x00, expected: 0x2A)),
        ("3B 75 13 00 00 45 09 EA 90 00 00", .trailingBytes(offset: 10, count: 1)),
    ])
    func malformed(hex: String, expected: ATRError) throws {
        let bytes = try [UInt8](hex: hex)
        #expect(throws: expected) { try ATR(bytes: bytes) }
        #expect(expected.description.contains(expected == .empty ? "empty" : "offset"))
    }

    @Test func specificModeImposesTheProtocol() throws {
        // TA2 = 81: specific mode T=1; TD1 offers T=0 then TD2 T=1.
        let atr = try ATR(hex: "3B 80 90 81 01 90")
        #expect(atr.specificMode?.protocol == .t1)
        #expect(atr.defaultProtocol == .t1)
    }

    @Test func tooLong() throws {
        // 15 TD bytes chaining T=0 (no TCK needed) plus 15 historical bytes: 2 + 15 + 15 = 32, then extra.
        var bytes: [UInt8] = [0x3B, 0x8F] + [UInt8](repeating: 0x80, count: 15) + [0x00] + [UInt8](repeating: 0x11, count: 15)
        bytes += [0x00, 0x00]
        #expect(throws: ATRError.tooLong(count: bytes.count)) { try ATR(bytes: bytes) }
    }

    // MARK: Properties

    @Test func randomBytesNeverCrash() async {
        await propertyCheck(count: 3000, input: Gen.uint8().array(of: 0...40)) { tail in
            for ts: UInt8 in [0x3B, 0x3F] {
                if let atr = try? ATR(bytes: [ts] + tail) {
                    #expect(atr.bytes == [ts] + tail)
                    #expect(!atr.protocols.isEmpty)
                }
            }
        }
    }

    /// Builds structurally valid ATRs from random interface bytes and checks the decoder gives them back.
    @Test func generatedATRsDecodeToWhatWasEncoded() async {
        await propertyCheck(count: 1000, input: Gen.uint8().array(of: 0...4), Gen.uint8().array(of: 0...15), Gen.uint8().array(of: 24...24)) {
            protocolsRaw, historical, values in
            // Groups: each with a random presence mask; TD chains the protocols.
            var bytes: [UInt8] = [0x3B]
            var groups: [(ta: UInt8?, tb: UInt8?, tc: UInt8?, td: UInt8?)] = []
            let protocols = protocolsRaw.map { $0 % 3 == 2 ? UInt8(15) : $0 % 2 }
            var v = values.makeIterator()
            for i in 0...protocols.count {
                let mask = v.next()!
                let ta: UInt8? = mask & 1 != 0 ? v.next()! : nil
                let tb: UInt8? = mask & 2 != 0 ? v.next()! : nil
                let tc: UInt8? = mask & 4 != 0 ? v.next()! : nil
                let td: UInt8? = i < protocols.count ? protocols[i] : nil
                groups.append((ta, tb, tc, td))
            }
            func y(_ g: (ta: UInt8?, tb: UInt8?, tc: UInt8?, td: UInt8?)) -> UInt8 {
                (g.ta != nil ? 1 : 0) | (g.tb != nil ? 2 : 0) | (g.tc != nil ? 4 : 0) | (g.td != nil ? 8 : 0)
            }
            bytes.append(y(groups[0]) << 4 | UInt8(historical.count))
            for (i, g) in groups.enumerated() {
                if let ta = g.ta { bytes.append(ta) }
                if let tb = g.tb { bytes.append(tb) }
                if let tc = g.tc { bytes.append(tc) }
                if let td = g.td { bytes.append((i + 1 < groups.count ? y(groups[i + 1]) : 0) << 4 | td) }
            }
            bytes += historical
            let needsTCK = protocols.contains { $0 != 0 }
            if needsTCK { bytes.append(bytes.dropFirst().reduce(0, ^)) }
            guard bytes.count <= 33 else { return }
            guard let atr = try? ATR(bytes: bytes) else {
                Issue.record("valid ATR rejected: \(bytes.hexString())")
                return
            }
            #expect(atr.historicalBytes == historical)
            #expect(atr.interfaceGroups.count == groups.count)
            for (decoded, g) in zip(atr.interfaceGroups, groups) {
                #expect(decoded.ta == g.ta && decoded.tb == g.tb && decoded.tc == g.tc && decoded.td.map { $0 & 0x0F } == g.td)
            }
            let expected = protocols.filter { $0 != 15 }.reduce(into: [UInt8]()) { if !$0.contains($1) { $0.append($1) } }
            #expect(atr.protocols.map(\.rawValue) == (expected.isEmpty ? [0] : expected))
            #expect((atr.tck != nil) == needsTCK)
        }
    }
}

@Suite("pcsc-lite's padded ATR buffer")
struct ATRPaddingTests {
    @Test func zerosAfterAWholeATRAreRemovedAndSaid() throws {
        let atr = try [UInt8](hex: "3B 75 13 00 00 45 09 EA 90 00")
        #expect(ATR.removingPadding(atr) == (atr, false))
        let padded = atr + [UInt8](repeating: 0, count: 23)
        let trimmed = ATR.removingPadding(padded)
        #expect(trimmed.atr == atr && trimmed.padded)
        // A T=1 ATR keeps its TCK; trailing bytes that are not zeros, or a truncated ATR, are left as they are.
        let cps4 = try [UInt8](hex: "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44")
        #expect(ATR.removingPadding(cps4 + [0, 0, 0]) == (cps4, true))
        #expect(ATR.removingPadding(atr + [0, 1]) == (atr + [0, 1], false))
        #expect(ATR.removingPadding(Array(atr.prefix(5))) == (Array(atr.prefix(5)), false))
        #expect(ATR.removingPadding([]) == ([], false))
    }
}
