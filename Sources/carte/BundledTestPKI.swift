import CarteBundledImages
import CarteCrypto
import CarteImages

/// The test PKI built into carte (`CardImages/cps/pki/`), which signed the bundled CPx images.
enum BundledTestPKI {
    static func pki() throws(CryptoError) -> TestPKI {
        let f = BundledImages.testPKI
        return try TestPKI.load(rootPEM: f.root, rootKeyPEM: f.rootKey, intermediatePEM: f.intermediate, intermediateKeyPEM: f.intermediateKey)
    }
}
