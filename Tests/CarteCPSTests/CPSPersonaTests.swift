import CarteBundledImages
import CarteCore
import CarteCPS
import CarteCrypto
import CarteEmulator
import CarteImages
import Foundation
import Testing

@Suite("CPx personas and the test PKI")
struct CPSPersonaTests {
    @Test("the bundled image is what its persona builds (keys kept)", arguments: bundledCPS)
    func bundledImagesAreUpToDate(_ bundled: BundledCPS) throws {
        let committed = try #require(BundledImages.image(at: "cps/\(bundled.name).yaml"))
        let image = try CardImageLoader.load(text: committed.text, source: committed.path)
        let keys = try #require(CPSKeyMaterial(image: image))
        let rebuilt = try CPSPersonaCompiler.compile(try cpsPersona(bundled.name), pki: try bundledPKI(), keys: keys,
                                                    source: "CardImages/cps/personas/\(bundled.name).persona.yaml")
        #expect(CardImageWriter.yaml(rebuilt) == committed.text, "rebuild with: carte image build CardImages/cps/personas/\(bundled.name).persona.yaml --pki CardImages/cps/pki --reuse-keys CardImages/cps/\(bundled.name).yaml -o CardImages/cps/\(bundled.name).yaml")
        // The writer's text loads back to the same image.
        var reloaded = try CardImageLoader.load(text: CardImageWriter.yaml(image), source: committed.path)
        reloaded.source = image.source
        #expect(reloaded == image)
    }

    @Test func theTestPKIIsNamedAsATestPKI() throws {
        let pki = try bundledPKI()
        for c in [pki.root, pki.intermediate] {
            #expect(c.subjectText.contains("TEST") && c.subjectText.contains("NOT ANS"))
            #expect(c.isCertificateAuthority)
        }
        try pki.intermediate.verifyChain(intermediates: [], roots: [pki.root], at: testTime)
        #expect(!pki.rootKey.description.contains("BEGIN"))
    }

    @Test func aFreshPKIAndPersonaBuildAWorkingCard() async throws {
        let pki = try TestPKI.generate()
        var persona = try cpsPersona("medecin-liberal")
        persona.keyBits = 1024
        let image = try CPSPersonaCompiler.compile(persona, pki: pki)
        let backend = SimulatorBackend(profiles: [.monoFente])
        try backend.insert(image, into: backend.readerNames[0])
        let reader = try CPSReader(channel: CardChannel(transport: try backend.connectNow(to: backend.readerNames[0])), atr: image.atr)
        let card = try await reader.read()
        #expect(card.certificates.count == 2)
        for c in card.certificates {
            try c.verify(roots: [pki.root], intermediates: [pki.intermediate], at: testTime)
            #expect(try c.certificate.publicKey().bits == 1024)
        }
        let bundled = try bundledPKI()
        #expect(throws: CPSError.self) { try card.certificates[0].verify(roots: [bundled.root], intermediates: [bundled.intermediate], at: testTime) }
    }

    @Test func personaErrorsNameTheLineAndNeverQuoteAPIN() throws {
        let base = try #require(BundledImages.image(at: "cps/personas/medecin-liberal.persona.yaml")).text
        let secret = try CPSPersonaCompiler.load(text: base.replacingOccurrences(of: "  valid-until: \"20291231\"", with: "  valid-until: \"20291231\"\n  pin: \"8642\"\n  puk: \"97531864\""), source: "p.yaml")
        var dumped = ""
        dump(secret, to: &dumped)
        for text in ["\(secret)", String(reflecting: secret), dumped] {
            #expect(!text.contains("8642") && !text.contains("97531864"), "\(text)")
        }
        func error(_ text: String) -> CardImageError? {
            do { _ = try CPSPersonaCompiler.load(text: text, source: "p.yaml"); return nil } catch { return error }
        }
        let shortRPPS = try #require(error(base.replacingOccurrences(of: "id: \"99900000101\"", with: "id: \"999000001\"")))
        #expect(shortRPPS.field == "holder.id" && shortRPPS.line != nil)
        #expect(shortRPPS.description.contains("RPPS"))
        let badPIN = try #require(error(base.replacingOccurrences(of: "  valid-until: \"20291231\"", with: "  valid-until: \"20291231\"\n  pin: \"12x4\"")))
        #expect(badPIN.field == "card.pin")
        #expect(!badPIN.description.contains("12x4"))
        let badDate = try #require(error(base.replacingOccurrences(of: "\"20291231\"", with: "\"20291331\"")))
        #expect(badDate.field == "card.valid-until")
        let unknown = try #require(error(base.replacingOccurrences(of: "    zone-ik: \"02\"", with: "    zone-ikk: \"02\"")))
        #expect(unknown.problem == .unknownField)
        let generation = try #require(error(base.replacingOccurrences(of: "generation: cps3", with: "generation: cps2ter")))
        #expect(generation.field == "card.generation")
        // A persona is not an image: the loader says how to build it.
        let notBuilt = try #require({ () -> CardImageError? in
            do { _ = try CardImageLoader.load(text: base, source: "p.yaml"); return nil } catch let e as CardImageError { return e } catch { return nil }
        }())
        #expect(notBuilt.description.contains("carte image build"))
    }

    @Test func imageKeysAreCheckedAndNeverQuoted() throws {
        let text = try #require(BundledImages.image(at: "cps/medecin-liberal.yaml")).text
        let broken = text.replacingOccurrences(of: "-----BEGIN PRIVATE KEY-----\n      MII", with: "-----BEGIN PRIVATE KEY-----\n      XII")
        #expect(broken != text)
        do {
            _ = try CardImageLoader.load(text: broken, source: "k.yaml")
            Issue.record("a damaged key was accepted")
        } catch {
            #expect(error.field.hasPrefix("keys[") && error.field.hasSuffix(".private-key"))
            #expect(!error.description.contains("XII"))
        }
        let usage = text.replacingOccurrences(of: "usage: [sign, authenticate]", with: "usage: [sing, authenticate]")
        #expect(usage != text)
        #expect(throws: CardImageError.self) { try CardImageLoader.load(text: usage, source: "k.yaml") }
        let image = try CardImageLoader.load(text: text, source: "k.yaml")
        #expect(!"\(image.keys)".contains("PRIVATE KEY"))
        #expect(!"\(image.pins)".contains("31"))
    }
}
