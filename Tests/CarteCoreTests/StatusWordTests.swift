import CarteCore
import Testing

@Suite("StatusWord and ResponseAPDU")
struct StatusWordTests {
    @Test func namedConstantsHaveTheirISOValues() {
        #expect(StatusWord.success.rawValue == 0x9000)
        #expect(StatusWord.wrongLength.rawValue == 0x6700)
        #expect(StatusWord.securityStatusNotSatisfied.rawValue == 0x6982)
        #expect(StatusWord.authenticationMethodBlocked.rawValue == 0x6983)
        #expect(StatusWord.fileNotFound.rawValue == 0x6A82)
        #expect(StatusWord.incorrectP1P2.rawValue == 0x6A86)
        #expect(StatusWord.insNotSupported.rawValue == 0x6D00)
        #expect(StatusWord.claNotSupported.rawValue == 0x6E00)
        #expect(StatusWord.wrongLe(exact: 0x23) == StatusWord(sw1: 0x6C, sw2: 0x23))
        #expect(StatusWord.bytesAvailable(0x1C) == StatusWord(sw1: 0x61, sw2: 0x1C))
    }

    @Test("CPS2ter words of domain-facts §5.4", arguments: [
        (StatusWord.cps2terHeaderCorrupt, UInt16(0x9240), "header corrupt"),
        (.cps2terBadAddressOrLength, 0x9402, "address or length"),
        (.cps2terFileNotFound, 0x9404, "file not found"),
        (.cps2terFileIncompatible, 0x9408, "incompatible"),
        (.cps2terPINNotActivated, 0x9802, "not activated"),
        (.cps2terPINIncorrect, 0x9804, "PIN incorrect"),
        (.cps2terPINInvalidated, 0x9808, "PIN invalidated"),
        (.cps2terFileInvalidated, 0x9810, "file invalidated"),
        (.cps2terPINLocked, 0x9840, "PIN locked"),
    ])
    func cps2ter(word: StatusWord, raw: UInt16, phrase: String) {
        #expect(word.rawValue == raw)
        #expect(word.meaning.contains(phrase))
        #expect(word.meaning.hasPrefix("CPS2ter"))
    }

    @Test func triesRemaining() {
        #expect(StatusWord(rawValue: 0x63C2).remainingTries == 2)
        #expect(StatusWord(rawValue: 0x63C0).remainingTries == 0)
        #expect(StatusWord(rawValue: 0x6300).remainingTries == nil)
        #expect(StatusWord(rawValue: 0x63C2).meaning == "Verification failed: 2 tries left")
        #expect(StatusWord(rawValue: 0x63C1).meaning == "Verification failed: 1 try left")
        #expect(StatusWord.triesRemaining(3).rawValue == 0x63C3)
    }

    @Test func lengthsFromStatusWords() {
        #expect(StatusWord(rawValue: 0x6110).responseBytesAvailable == 16)
        #expect(StatusWord(rawValue: 0x6100).responseBytesAvailable == 256)
        #expect(StatusWord(rawValue: 0x9F22).responseBytesAvailable == 0x22)
        #expect(StatusWord(rawValue: 0x6C05).exactLength == 5)
        #expect(StatusWord(rawValue: 0x6C00).exactLength == 256)
        #expect(StatusWord.success.exactLength == nil)
        #expect(StatusWord(rawValue: 0x6C05).meaning.contains("Le = 5"))
    }

    @Test func unknownWordsRoundTripAndStillGetAGroupMeaning() {
        let odd = StatusWord(rawValue: 0x6A99)
        #expect(odd.rawValue == 0x6A99)
        #expect(odd.sw1 == 0x6A && odd.sw2 == 0x99)
        #expect(odd.meaning == "Wrong parameters P1-P2")
        #expect(StatusWord(rawValue: 0x1234).meaning == "Unknown status word")
        #expect(odd.description == "6A 99")
        #expect(StatusWord.endOfFileReached.isWarning)
        #expect(StatusWord(rawValue: 0x9012).isSuccess(forClass: 0xA0))
        #expect(!StatusWord(rawValue: 0x9012).isSuccess(forClass: 0x00))
        #expect(StatusWord.success.isSuccess(forClass: 0x00))
        #expect(!StatusWord.fileNotFound.isWarning)
    }

    @Test func responseAPDU() throws {
        let r = try ResponseAPDU(bytes: [0x01, 0x02, 0x90, 0x00])
        #expect(r.data == [1, 2])
        #expect(r.isSuccess)
        #expect(r.encoded() == [1, 2, 0x90, 0])
        #expect(try ResponseAPDU(bytes: [0x6A, 0x82]).statusWord == .fileNotFound)
        #expect(throws: ResponseError.tooShort(count: 1)) { try ResponseAPDU(bytes: [0x90]) }
        #expect(throws: ResponseError.tooShort(count: 0)) { try ResponseAPDU(bytes: []) }
    }
}
