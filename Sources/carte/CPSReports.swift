import CarteCore
import CarteCPS
import CarteCrypto
import CarteKit
import Foundation

/// `carte cps pin --json`, schema `carte.cps-pin/1` (docs/json.md). Never holds a PIN.
struct PINReport: Encodable {
    var schema = "carte.cps-pin/1"
    let reader: String
    let action: String
    /// `ok`, `wrong-pin`, `wrong-puk`, `pin-blocked`, `puk-blocked`, `pin-required`, `pin-pad-cancelled`,
    /// `pin-pad-timeout`, `pin-pad-length`, `pin-pad-mismatch`, `refused`.
    var result = "ok"
    /// Where the PIN was typed: `pin-pad` (the reader's keypad) or `host`; absent for `status`.
    var entry: String?
    var triesLeft: Int?
    var maxTries: Int?
    var blocked: Bool?
    var message = ""

    init(reader: String, action: String) {
        self.reader = reader
        self.action = action
    }

    mutating func status(_ s: PINStatus) {
        triesLeft = s.triesLeft
        maxTries = s.maxTries
        blocked = s.blocked
    }

    mutating func fail(_ error: CPSError) {
        message = error.description
        switch error {
        case .wrongPIN(let which, _): result = which == "PUK" ? "wrong-puk" : "wrong-pin"
        case .pinBlocked: result = "pin-blocked"
        case .pukBlocked: result = "puk-blocked"
        case .pinRequired: result = "pin-required"
        case .pinPad(.cancelled): result = "pin-pad-cancelled"
        case .pinPad(.timeout): result = "pin-pad-timeout"
        case .pinPad(.lengthOutOfRange): result = "pin-pad-length"
        case .pinPad(.confirmationMismatch): result = "pin-pad-mismatch"
        default: result = "refused"
        }
    }

    func messageForSuccess() -> String {
        let tries = triesLeft.map { t in blocked == true ? "PIN blocked: unblock it with the PUK (carte cps pin unblock)" : "\(t)\(maxTries.map { "/\($0)" } ?? "") tries left" } ?? "status unknown"
        switch action {
        case "verify": return "PIN verified (\(tries))"
        case "change": return "PIN changed (\(tries))"
        case "unblock": return "PIN unblocked and set (\(tries))"
        default: return "PIN: \(tries)"
        }
    }
}

/// `carte cps certs --json`, schema `carte.cps-certs/1` (docs/json.md).
struct CertsReport: Encodable {
    var schema = "carte.cps-certs/1"
    let reader: String
    let trustedRoots: [String]
    let certificates: [CertificatePart]

    init(reader: String, certificates: [CPSCertificate], trust: CertificateTrust, withPEM: Bool) {
        self.reader = reader
        trustedRoots = trust.roots.map(\.subjectText)
        self.certificates = certificates.map { CertificatePart($0, trust: trust, withPEM: withPEM) }
    }

    var text: String {
        var out = certificates.map(\.text)
        out.append("checked against: \(trustedRoots.joined(separator: "; "))")
        for c in certificates { if let pem = c.pem { out.append(pem) } }
        return out.joined(separator: "\n")
    }
}

/// `carte cps sign --json`, schema `carte.cps-sign/1` (docs/json.md).
struct SignReport: Encodable {
    var schema = "carte.cps-sign/1"
    let reader: String
    let file: String
    /// SHA-256 of the file, lowercase hex.
    let sha256: String
    /// The PKCS#1 v1.5 signature, base64.
    let signature: String
    var algorithm = "sha256WithRSAEncryption (PKCS#1 v1.5)"
    /// Subject of the certificate the signature was checked with.
    let certificate: String
    let verified: Bool
    /// APDUs of the signature itself (MSE, PSO HASH, PSO CDS).
    let apduCount: Int
}
