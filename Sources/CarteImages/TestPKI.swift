public import CarteCrypto
import Foundation

/// The **test** PKI that signs the certificates of CarteKit's simulated CPx cards: a root and an
/// intermediate authority generated with OpenSSL, named as test authorities. It is not, and must never
/// be presented as, the ANS PKI (IGC-Santé).
public struct TestPKI: Sendable {
    /// The self-signed root ("CarteKit TEST Root CA - NOT ANS").
    public var root: X509Certificate
    /// The root's key.
    public var rootKey: RSAPrivateKey
    /// The intermediate that issues the card certificates ("CarteKit TEST CPx CA - NOT ANS").
    public var intermediate: X509Certificate
    /// The intermediate's key.
    public var intermediateKey: RSAPrivateKey

    /// File names inside a PKI directory.
    public static let rootFile = "test-root-ca.pem"
    public static let rootKeyFile = "test-root-ca.key.pem"
    public static let intermediateFile = "test-cpx-ca.pem"
    public static let intermediateKeyFile = "test-cpx-ca.key.pem"

    /// Assembles a PKI from its parts.
    public init(root: X509Certificate, rootKey: RSAPrivateKey, intermediate: X509Certificate, intermediateKey: RSAPrivateKey) {
        self.root = root
        self.rootKey = rootKey
        self.intermediate = intermediate
        self.intermediateKey = intermediateKey
    }

    /// A new test PKI (two RSA 2048 keys; validity 2024-01-01 to 2050-12-31).
    public static func generate() throws(CryptoError) -> TestPKI {
        let rootKey = try RSAPrivateKey.generate(bits: 2048)
        let intermediateKey = try RSAPrivateKey.generate(bits: 2048)
        let from: Int64 = 1_704_067_200  // 2024-01-01T00:00:00Z
        let to: Int64 = 2_556_143_999    // 2050-12-31T23:59:59Z
        let unit = "Synthetic test PKI - not for production"
        let root = try CertificateBuilder(subject: [("C", "FR"), ("O", "CarteKit"), ("OU", unit), ("CN", "CarteKit TEST Root CA - NOT ANS")],
                                          serial: 1, notBefore: from, notAfter: to, keyUsage: [.keyCertSign, .cRLSign], isCertificateAuthority: true)
            .issue(publicKeyOf: rootKey, issuer: nil, issuerKey: rootKey)
        let intermediate = try CertificateBuilder(subject: [("C", "FR"), ("O", "CarteKit"), ("OU", unit), ("CN", "CarteKit TEST CPx CA - NOT ANS")],
                                                  serial: 2, notBefore: from, notAfter: to, keyUsage: [.keyCertSign, .cRLSign], isCertificateAuthority: true)
            .issue(publicKeyOf: intermediateKey, issuer: root, issuerKey: rootKey)
        return TestPKI(root: root, rootKey: rootKey, intermediate: intermediate, intermediateKey: intermediateKey)
    }

    /// A PKI from the texts of its four PEM files.
    public static func load(rootPEM: String, rootKeyPEM: String, intermediatePEM: String, intermediateKeyPEM: String) throws(CryptoError) -> TestPKI {
        TestPKI(root: try X509Certificate(pem: rootPEM), rootKey: try RSAPrivateKey(pem: rootKeyPEM),
                intermediate: try X509Certificate(pem: intermediatePEM), intermediateKey: try RSAPrivateKey(pem: intermediateKeyPEM))
    }

    /// Loads the four PEM files of `directory`.
    public static func load(directory: String) throws(CryptoError) -> TestPKI {
        func read(_ name: String) throws(CryptoError) -> String {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CryptoError(.invalidInput, "cannot read \(path)") }
            return text
        }
        return try load(rootPEM: try read(rootFile), rootKeyPEM: try read(rootKeyFile), intermediatePEM: try read(intermediateFile), intermediateKeyPEM: try read(intermediateKeyFile))
    }

    /// Loads the PKI of `directory`, or generates one there when the directory holds none.
    /// Returns the PKI and whether it was generated.
    public static func loadOrGenerate(directory: String) throws(CryptoError) -> (TestPKI, generated: Bool) {
        let rootPath = (directory as NSString).appendingPathComponent(rootFile)
        if FileManager.default.fileExists(atPath: rootPath) { return (try load(directory: directory), false) }
        let pki = try generate()
        try pki.write(directory: directory)
        return (pki, true)
    }

    /// Writes the four PEM files (keys with mode 0600) into `directory`, creating it.
    public func write(directory: String) throws(CryptoError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (name, text, secret) in [(Self.rootFile, root.pem, false), (Self.rootKeyFile, rootKey.pem, true),
                                         (Self.intermediateFile, intermediate.pem, false), (Self.intermediateKeyFile, intermediateKey.pem, true)] {
                let path = (directory as NSString).appendingPathComponent(name)
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                if secret { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path) }
            }
        } catch {
            throw CryptoError(.operationFailed, "cannot write the test PKI into \(directory): \(error.localizedDescription)")
        }
    }
}
