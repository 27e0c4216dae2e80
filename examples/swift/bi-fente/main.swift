// Reads the patient's Carte Vitale and signs a document with the professional's CPS, both on one
// bi-fente reader (or two mono-fente readers), through PC/SC.

// snippet.hide
// This file is the code of the article "Reading a patient's Vitale and signing with the professional's
// CPS on a bi-fente reader" (Sources/CarteKit/CarteKit.docc). SwiftPM builds it with the package, and
// the test suite runs it against the virtual bi-fente reader behind a private pcscd, so the article
// cannot rot. Exit status: 0 signed, 1 card or reader problem, 5 PIN refused (as `carte`).
#if canImport(Glibc)
import Glibc
#endif
// snippet.show
import CarteCPS
import CarteKit
import CartePCSC
import CarteVitale

// snippet.setup
let manager = ReaderManager(backend: PCSCBackend())

// snippet.find-pair
/// Waits until a Carte Vitale and a CPx card are inserted, and returns their slots: the two slots of
/// one bi-fente reader when there is one, otherwise two mono-fente readers.
func findReaderPair() async throws(CarteKitError) -> ReaderPair {
    _ = try await manager.waitForCard(timeout: .seconds(60)) { $0.isVitale }
    _ = try await manager.waitForCard(timeout: .seconds(60)) { $0.isCPx }
    guard let pair = try await manager.pairs().first else { throw .noReaderPair }
    return pair
}

// snippet.read-vitale
/// Reads the patient's card. The session holds the slot exclusively and releases it on return.
func readPatientCard(in pair: ReaderPair) async throws(CarteKitError) -> VitaleCard {
    try await manager.withSession(on: pair.vitale, timeout: .seconds(10)) { session throws(CarteKitError) in
        guard case .vitale(let vitale) = session else {
            throw .wrongCard(reader: pair.vitale, expected: "a Carte Vitale", found: session.kind)
        }
        return try await vitale.read()
    }
}

// snippet.sign
/// What the professional's card produced for one document.
struct SignedDocument: Sendable {
    var professional: ProfessionalCard
    var signature: [UInt8]
    var certificate: CPSCertificate
}

/// Verifies the PIN once, reads the professional (the situations need the PIN) and signs `document`
/// with the signature key, all in one exclusive session on the CPx slot.
func sign(_ document: [UInt8], in pair: ReaderPair, pin: PINCode) async throws(CarteKitError) -> SignedDocument {
    try await manager.withSession(on: pair.cpx, timeout: .seconds(30)) { session throws(CarteKitError) in
        guard case .cpx(let cpx) = session else {
            throw .wrongCard(reader: pair.cpx, expected: "a CPx card", found: session.kind)
        }
        // Reading the tries left costs no try.
        if try await cpx.pinStatus().triesLeft == 1 {
            print("Warning: one PIN try left before the card blocks.")
        }
        try await cpx.verifyPIN(pin)  // sent once; CarteKit never retries a VERIFY
        let professional = try await cpx.read()
        let signature = try await cpx.sign(document)
        guard let certificate = professional.certificates.first(where: { $0.role == .signature }) else {
            throw .cpx(.unsupported("the card has no signature certificate"))
        }
        return SignedDocument(professional: professional, signature: signature, certificate: certificate)
    }
}

// snippet.hide
/// The professional types the PIN in the editor's own dialog; here it is one line of standard input.
func askProfessionalForPIN() -> String { readLine(strippingNewline: true) ?? "" }

// snippet.run
/// The whole flow: find the pair, read the patient, sign for them.
func readAndSign() async throws(CarteKitError) {
    let pair = try await findReaderPair()
    print("Vitale in \"\(pair.vitale)\", CPx card in \"\(pair.cpx)\"",
          pair.sameReader ? "(one bi-fente reader)" : "(two readers)")

    let card = try await readPatientCard(in: pair)
    for person in card.beneficiaries {
        print("Beneficiary \(person.index + 1):", person.firstName ?? "?", person.surname ?? "?",
              "NIR", person.nir?.description ?? "none", "born", person.birthDate?.iso ?? "?")
    }
    guard let patient = card.beneficiaries.first else {  // the editor lets the user choose
        print("The card holds no beneficiary.")
        return
    }

    let document = Array("Feuille de soins for \(patient.nir?.description ?? "?")".utf8)
    let pin: PINCode
    do { pin = try PINCode(askProfessionalForPIN()) } catch { throw .cpx(error) }
    let signed = try await sign(document, in: pair, pin: pin)

    // The receiver checks the signature with the certificate (and the chain up to the ANS roots).
    do { try signed.certificate.verifySignature(signed.signature, of: document) } catch { throw .cpx(error) }
    let holder = signed.professional.holder
    print("Signed by", holder?.firstName ?? "?", holder?.surname ?? "?",
          "(\(holder?.nationalID.description ?? "?")),", "\(signed.signature.count)-byte signature verified")
    for situation in signed.professional.situations ?? [] {
        print("Situation \(situation.file):", situation.structureName ?? "?")
    }
}

do {
    try await readAndSign()
} catch .cpx(.wrongPIN(_, let triesLeft)) {
    // Never present the PIN again on your own: ask the professional, who sees the tries left.
    print("Wrong PIN: \(triesLeft) tries left.")
    // snippet.hide
    exit(5)
    // snippet.show
} catch .cpx(.pinBlocked) {
    print("The PIN is blocked: unblock it with the PUK (carte cps pin unblock).")
    // snippet.hide
    exit(5)
    // snippet.show
} catch {
    print("Cannot read and sign: \(error)")  // every CarteKitError says what failed and where
    // snippet.hide
    exit(1)
    // snippet.show
}
