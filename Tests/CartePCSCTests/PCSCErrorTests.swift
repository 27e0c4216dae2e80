import CarteCore
import CartePCSC
import Testing

@Suite("PC/SC errors and reader data (no pcscd needed)")
struct PCSCErrorTests {
    @Test func everyKnownCodeHasANameAMeaningAndRoundTrips() {
        #expect(PCSCError.allKnown.count >= 60)
        for e in PCSCError.allKnown {
            #expect(e.name.hasPrefix("SCARD_"))
            #expect(!e.meaning.isEmpty && e.meaning != "Unknown PC/SC error")
            #expect(PCSCError(code: Int(Int32(bitPattern: e.rawValue))) == e)
            #expect(e.description.contains(e.hex))
        }
    }

    @Test func theFieldComplaintsCarryARemedy() {
        #expect(PCSCError.noService.description == "SCARD_E_NO_SERVICE (0x8010001D): The smart card resource manager is not running — pcscd is not running: start it (systemctl start pcscd.socket) or install it (apt-get install pcscd)")
        #expect(PCSCError.securityViolation.hint?.contains("polkit") == true)
        #expect(PCSCError.sharingViolation.hint?.contains("another program") == true)
        #expect(PCSCError.noReadersAvailable.hint?.contains("carte doctor") == true)
    }

    @Test func unknownCodesRoundTrip() {
        let odd = PCSCError(rawValue: 0x8010_00FE)
        #expect(odd.name == "SCARD_0x801000FE")
        #expect(odd.meaning == "Unknown PC/SC error")
        #expect(odd.hint == nil)
    }

    @Test func mappingToTheReaderNeutralErrors() {
        #expect(PCSCError.removedCard.cardError(reader: "R") == .cardRemoved(reader: "R"))
        #expect(PCSCError.noSmartcard.cardError(reader: "R") == .noCard(reader: "R"))
        #expect(PCSCError.resetCard.cardError(reader: "R") == .cardReset(reader: "R"))
        #expect(PCSCError.sharingViolation.cardError(reader: "R") == .sharingViolation(reader: "R"))
        #expect(PCSCError.readerUnavailable.cardError(reader: "R") == .readerUnavailable(reader: "R"))
        guard case .backend(let code, let name, let message) = PCSCError.noService.cardError(reader: "R") else {
            Issue.record("no service must stay a backend error with its code")
            return
        }
        #expect(code == 0x8010_001D && name == "SCARD_E_NO_SERVICE" && message.contains("pcscd is not running"))
        #expect(PCSCError.serviceStopped.meansServiceGone && !PCSCError.removedCard.meansServiceGone)
    }

    /// pcscd answers SCARD_E_INVALID_VALUE on a handle whose reader was unplugged (seen in the hotplug
    /// test): on an open connection that is the reader gone, not a bad parameter.
    @Test func invalidValueOnAConnectionMeansTheReaderLeft() {
        #expect(PCSCError.invalidValue.connectionError(reader: "R") == .readerUnavailable(reader: "R"))
        #expect(PCSCError.removedCard.connectionError(reader: "R") == .cardRemoved(reader: "R"))
        if case .backend(let code, _, _) = PCSCError.invalidValue.cardError(reader: "R") { #expect(code == 0x8010_0011) } else { Issue.record("cardError keeps the code") }
    }

    @Test func featureListsAndTLVProperties() {
        let list: [UInt8] = [0x12, 0x04, 0x42, 0x33, 0x00, 0x12, 0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x07, 0x02, 0x01]  // last one truncated
        #expect(PCSCFeature.decodeFeatureList(list) == [0x12: 0x4233_0012, 0x06: 0x4233_0006])
        #expect(PCSCFeature.decodeTLVProperties([0x0A, 0x04, 0x00, 0x00, 0x01, 0x00, 0x0B, 0x02, 0x34, 0x1C, 0x0C, 0x09]) == [0x0A: [0, 0, 1, 0], 0x0B: [0x34, 0x1C]])
        #expect(PCSCFeature.name(of: 0x06) == "pin-verify")
        var a = PCSCReaderAttributes(features: [:])
        a.ifdVersion = 0x0108_0000
        #expect(a.firmwareVersion == "1.08")
        a.ifdVersion = 0x0422_0000
        #expect(a.firmwareVersion == "4.22")
    }
}
