import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import Foundation
import Testing

/// One conversation the official ANS Cryptolib had with a virtual card (`scripts/cryptolib-record.sh`):
/// its header (`# key: value`) and, in order, every command with the answer the card gave, and the
/// card's power-ups and resets.
struct CryptolibConversation {
    enum Event {
        case reset
        case exchange(command: [UInt8], response: [UInt8], line: Int)
    }

    let name: String
    var header: [String: [String]] = [:]
    var events: [Event] = []

    static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("cryptolib")

    /// Every recorded conversation's name (file name without `.conversation`).
    static var names: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".conversation") }.map { String($0.dropLast(".conversation".count)) }.sorted()
    }

    init(name: String) throws {
        self.name = name
        let text = try String(contentsOf: Self.directory.appendingPathComponent("\(name).conversation"), encoding: .utf8)
        var pending: (command: [UInt8], line: Int)?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let body = line.dropFirst().trimmingCharacters(in: .whitespaces)
                if let colon = body.firstIndex(of: ":") {
                    header[String(body[..<colon]), default: []].append(body[body.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }
            } else if line == "reset" {
                events.append(.reset)
            } else if line.hasPrefix("APDU: ") {
                pending = (try [UInt8](hex: line.dropFirst(6)), i + 1)
            } else if line.hasPrefix("SW: ") {
                let p = try #require(pending, "\(name):\(i + 1): an answer without its command")
                events.append(.exchange(command: p.command, response: try [UInt8](hex: line.dropFirst(4)), line: p.line))
                pending = nil
            } else {
                Issue.record("\(name):\(i + 1): unexpected line \(line)")
            }
        }
    }

    /// `key=02 mechanism=SHA256-RSA-PKCS plaintext=…` of the `verify` header.
    var verification: [String: String] {
        var out: [String: String] = [:]
        for item in (header["verify"]?.first ?? "").split(separator: " ") {
            let parts = item.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }
}

@Suite("The ANS Cryptolib's conversations with the virtual CPS3 and CPS4, replayed")
struct CryptolibConversationTests {
    /// What #34 asks to be proven for each card: the conversations that must be there.
    static let required = [
        "cps3-list", "cps3-login-objects", "cps3-sign-sha256", "cps3-sign-sha1", "cps3-sign-rsa-pkcs", "cps3-sign-rsa-pkcs-auth",
        "cps3-decrypt", "cps3-wrong-pin", "cps3-change-pin", "cps3-block-unblock", "cps3-blocked",
        "cps4-list", "cps4-login-objects", "cps4-sign-sha256", "cps4-sign-sha1", "cps4-sign-rsa-pkcs", "cps4-decrypt",
        "cps4-wrong-pin", "cps4-change-pin", "cps4-block-unblock",
        "cps4-sign-sha256-rsa-pkcs-pss-key02", "cps4-sign-sha256-rsa-pkcs-pss-key01",
        "cps4-sign-sha1-rsa-pkcs-pss-key02", "cps4-sign-sha1-rsa-pkcs-pss-key01",
    ]

    @Test func everyOperationHasItsRecordedConversation() {
        let present = Set(CryptolibConversation.names)
        for name in Self.required { #expect(present.contains(name), "Fixtures/cryptolib/\(name).conversation is missing") }
    }

    /// The image a conversation was recorded with (`# image: bundled:cps/…`).
    static func image(of c: CryptolibConversation) throws -> CardImage {
        let source = try #require(c.header["image"]?.first, "\(c.name): no image")
        let path = String(try #require(source.split(separator: ":", maxSplits: 1).last))
        let bundled = try #require(BundledImages.image(at: path), "\(c.name): no bundled image \(path)")
        return try CardImageLoader.load(text: bundled.text, source: bundled.path)
    }

    /// Replays every command against a new card built from the same image and checks each answer is
    /// the one recorded, byte for byte; an RSA-PSS signature (randomised) is checked by verifying it.
    /// Then the result of the operation (signature, plaintext) is checked against the card's
    /// certificate, in the recorded answers and in the replayed ones.
    @Test(arguments: CryptolibConversation.names)
    func replaysAndEverySignatureVerifies(_ name: String) throws {
        let c = try CryptolibConversation(name: name)
        let image = try Self.image(of: c)
        let card = SimulatedCard(image: image)
        let verify = c.verification
        let pss = verify["mechanism"]?.contains("PSS") == true
        var exchanges = 0
        var recorded = ResultCollector(), replayed = ResultCollector()
        for event in c.events {
            switch event {
            case .reset:
                card.reset()
                recorded.reset()
                replayed.reset()
            case .exchange(let command, let response, let line):
                exchanges += 1
                let answer = card.process(command)
                if pss, Self.isSignature(command), response.count > 2 {
                    #expect(answer.count == response.count && answer.suffix(2) == response.suffix(2),
                            "\(name):\(line): \(command.hexString()) answered \(answer.count) bytes \(StatusWord(sw1: answer[answer.count - 2], sw2: answer[answer.count - 1])), recorded \(response.count) bytes \(StatusWord(sw1: response[response.count - 2], sw2: response[response.count - 1]))")
                } else if answer != response {
                    Issue.record("\(name):\(line): \(command.hexString())\n  recorded \(response.hexString())\n  replayed \(answer.hexString())")
                }
                recorded.add(command, response)
                replayed.add(command, answer)
            }
        }
        #expect(exchanges > 0, "\(name): no exchange")
        guard let key = verify["key"], let mechanism = verify["mechanism"] else { return }
        let material = try #require(CPSKeyMaterial(image: image), "\(name): the image has no key material")
        let certificate = key == "01" ? material.authenticationCertificate : try #require(material.signatureCertificate)
        let publicKey = try certificate.publicKey()
        let message = try [UInt8](hex: try #require(c.header["message"]?.first, "\(name): no message"))
        for (which, result) in [("recorded", recorded.result), ("replayed", replayed.result)] {
            let output = try #require(result, "\(name): no \(which) signature or plaintext")
            switch mechanism {
            case "SHA256-RSA-PKCS": try publicKey.verify(signature: output, digest: SHA256.digest(message), algorithm: .sha256)
            case "SHA1-RSA-PKCS": try publicKey.verify(signature: output, digest: SHA1.digest(message), algorithm: .sha1)
            case "RSA-PKCS": #expect(try publicKey.recover(output) == message, "\(name): the \(which) signature does not give back the DigestInfo")
            case "SHA256-RSA-PKCS-PSS": try publicKey.verifyPSS(signature: output, digest: SHA256.digest(message), algorithm: .sha256)
            case "SHA1-RSA-PKCS-PSS": try publicKey.verifyPSS(signature: output, digest: SHA1.digest(message), algorithm: .sha1)
            case "RSA-PKCS-DECRYPT":
                let expected = try [UInt8](hex: try #require(verify["plaintext"]))
                // A CPS3 answers the message; a CPS4 the whole block, whose padding the host removes.
                let plaintext = output.count == publicKey.modulusBytes ? Self.message(ofBlockType2: output) : output
                #expect(plaintext == expected, "\(name): the \(which) deciphering is not the enciphered secret")
            default:
                Issue.record("\(name): unknown mechanism \(mechanism)")
            }
        }
    }

    /// The PIN counters end where the conversation left them: blocked, or back to the maximum.
    @Test func theCardsEndInTheStateTheCryptolibLeftThem() throws {
        for (name, expected) in [("cps3-block-unblock", 3), ("cps4-block-unblock", 3), ("cps3-wrong-pin", 2), ("cps4-wrong-pin", 2), ("cps3-blocked", 0)] {
            let c = try CryptolibConversation(name: name)
            let card = SimulatedCard(image: try Self.image(of: c))
            for case .exchange(let command, _, _) in c.events { _ = card.process(command) }
            #expect(card.remainingTries(forPIN: 0x01) == expected, "\(name): PIN tries left")
        }
    }

    static func isSignature(_ command: [UInt8]) -> Bool {
        command.count >= 4 && command[1] == 0x2A && command[2] == 0x9E && command[3] == 0x9A
    }

    static func message(ofBlockType2 block: [UInt8]) -> [UInt8]? {
        guard block.count > 11, block[0] == 0, block[1] == 2, let zero = block[2...].firstIndex(of: 0) else { return nil }
        return Array(block[(zero + 1)...])
    }
}

/// The output of the last security operation of a conversation (PSO CDS, PSO DECIPHER, INTERNAL
/// AUTHENTICATE), with what GET RESPONSE fetched after a `61xx`.
struct ResultCollector {
    private(set) var result: [UInt8]?
    private var collecting: [UInt8]?

    mutating func reset() { collecting = nil }

    mutating func add(_ command: [UInt8], _ response: [UInt8]) {
        guard command.count >= 4, response.count >= 2 else { return }
        let data = Array(response.dropLast(2)), sw1 = response[response.count - 2], sw2 = response[response.count - 1]
        let ins = command[1], p1p2 = UInt16(command[2]) << 8 | UInt16(command[3])
        let isOperation = (ins == 0x2A && (p1p2 == 0x9E9A || p1p2 == 0x8086)) || ins == 0x88
        if isOperation && command[0] & 0x10 == 0 {
            collecting = data
        } else if ins == 0xC0, collecting != nil {
            collecting! += data
        } else {
            collecting = nil
            return
        }
        if sw1 == 0x90 && sw2 == 0x00 {
            if let done = collecting, !done.isEmpty { result = done }
            collecting = nil
        } else if sw1 != 0x61 {
            collecting = nil
        }
    }
}
