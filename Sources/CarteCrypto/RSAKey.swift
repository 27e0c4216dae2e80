internal import COpenSSL

/// The digest algorithms CarteKit signs with (PKCS#1 v1.5 DigestInfo prefixes of RFC 8017 §9.2).
public enum DigestAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// SHA-1: still declared by CPx cards and asked for by the ANS Cryptolib (`CKM_SHA1_RSA_PKCS`).
    case sha1 = "SHA-1"
    case sha256 = "SHA-256"

    /// The DER DigestInfo header that precedes the hash in a PKCS#1 v1.5 signature.
    public var digestInfoPrefix: [UInt8] {
        switch self {
        case .sha1: return [0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00, 0x04, 0x14]
        case .sha256: return [0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]
        }
    }

    /// The digest length in bytes.
    public var length: Int {
        switch self {
        case .sha1: return 20
        case .sha256: return 32
        }
    }

    /// The digest of `data`.
    public func digest<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        switch self {
        case .sha1: return SHA1.digest(data)
        case .sha256: return SHA256.digest(data)
        }
    }

    /// The digest of a message the host hashed up to `byteCount` bytes (a whole number of blocks),
    /// leaving `state` (big-endian, the digest's length), followed by `last`: what a card finishing
    /// the hash computes (PSO HASH with tag `90`). `nil` when `state` or `byteCount` do not fit.
    public func finishing(state: [UInt8], byteCount: UInt64, last: [UInt8]) -> [UInt8]? {
        guard state.count == length else { return nil }
        let words = stride(from: 0, to: state.count, by: 4).map { i in state[i..<(i + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        switch self {
        case .sha1:
            guard var h = SHA1(state: words, byteCount: byteCount) else { return nil }
            h.update(last)
            return h.finalize()
        case .sha256:
            guard var h = SHA256(state: words, byteCount: byteCount) else { return nil }
            h.update(last)
            return h.finalize()
        }
    }

    /// The algorithm whose DigestInfo `data` is (prefix and a digest of the right length), and the digest.
    public static func fromDigestInfo(_ data: [UInt8]) -> (DigestAlgorithm, [UInt8])? {
        for a in allCases where data.count == a.digestInfoPrefix.count + a.length && data.starts(with: a.digestInfoPrefix) {
            return (a, Array(data.suffix(a.length)))
        }
        return nil
    }

    /// OpenSSL's message digest.
    var evp: OpaquePointer? {
        switch self {
        case .sha1: return EVP_sha1()
        case .sha256: return EVP_sha256()
        }
    }
}

/// An RSA private key held by OpenSSL (`EVP_PKEY`). Used by the simulated cards and by the test PKI.
///
/// Its text forms never show the key; ``pem`` does, on purpose, for writing card images.
public final class RSAPrivateKey: @unchecked Sendable, CustomStringConvertible {
    // Immutable after init; OpenSSL allows concurrent use of one EVP_PKEY for sign/decrypt.
    package let key: OpaquePointer

    private init(owning key: OpaquePointer) { self.key = key }
    deinit { EVP_PKEY_free(key) }

    /// Generates a new key of `bits` bits (public exponent 65537).
    public static func generate(bits: Int = 2048) throws(CryptoError) -> RSAPrivateKey {
        guard (512...8192).contains(bits) else { throw CryptoError(.invalidInput, "RSA key size \(bits) is outside 512...8192") }
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nil) else { throw .openSSL(.operationFailed, "RSA key generation") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, Int32(bits)) == 1 else {
            throw .openSSL(.operationFailed, "RSA key generation")
        }
        var out: OpaquePointer?
        guard EVP_PKEY_keygen(ctx, &out) == 1, let out else { throw .openSSL(.operationFailed, "RSA key generation") }
        return RSAPrivateKey(owning: out)
    }

    /// Loads a PEM private key (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`, unencrypted).
    public convenience init(pem: String) throws(CryptoError) {
        let key = try readPrivateKeyPEM(pem)
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            throw CryptoError(.invalidKey, "the key is not an RSA key")
        }
        self.init(owning: key)
    }

    /// The key in PEM (PKCS#8, unencrypted). Secret material: only for writing test card images.
    public var pem: String { privateKeyPEMText(key) }

    /// The modulus size in bytes (the size of every signature and cryptogram).
    public var modulusBytes: Int { Int(EVP_PKEY_get_size(key)) }

    /// The public half.
    public var publicKey: RSAPublicKey {
        // A key's own public half always decodes.
        return try! RSAPublicKey(subjectPublicKeyInfo: publicKeyDER(key))
    }

    public var description: String { "RSA private key (\(modulusBytes * 8) bits, <redacted>)" }

    /// PKCS#1 v1.5 signature of an already computed digest (the card's PSO COMPUTE DIGITAL SIGNATURE).
    public func sign(digest: [UInt8], algorithm: DigestAlgorithm) throws(CryptoError) -> [UInt8] {
        guard digest.count == algorithm.length else { throw CryptoError(.invalidInput, "a \(algorithm.rawValue) digest is \(algorithm.length) bytes, got \(digest.count)") }
        return try signRaw(algorithm.digestInfoPrefix + digest)
    }

    /// PKCS#1 v1.5 block type 1 padding of `data`, then the private-key operation (the card's
    /// INTERNAL AUTHENTICATE, and the second half of a signature). `data` must leave 11 bytes of padding.
    public func signRaw(_ data: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard data.count <= modulusBytes - 11 else { throw CryptoError(.invalidInput, "\(data.count) bytes is too long for a \(modulusBytes * 8)-bit PKCS#1 v1.5 signature (at most \(modulusBytes - 11))") }
        return try withContext(EVP_PKEY_sign_init, "signing") { ctx throws(CryptoError) in
            var length = modulusBytes
            var out = [UInt8](repeating: 0, count: length)
            guard EVP_PKEY_sign(ctx, &out, &length, data, data.count) == 1 else { throw .openSSL(.operationFailed, "RSA signing") }
            return Array(out.prefix(length))
        }
    }

    /// RSASSA-PSS signature (RFC 8017 §8.1) of an already computed digest: MGF1 with the same hash,
    /// a salt as long as the digest. Randomised: two signatures of one digest differ.
    public func signPSS(digest: [UInt8], algorithm: DigestAlgorithm) throws(CryptoError) -> [UInt8] {
        guard digest.count == algorithm.length else { throw CryptoError(.invalidInput, "a \(algorithm.rawValue) digest is \(algorithm.length) bytes, got \(digest.count)") }
        return try withContext(EVP_PKEY_sign_init, "PSS signing", padding: carte_rsa_pkcs1_pss_padding) { ctx throws(CryptoError) in
            guard EVP_PKEY_CTX_set_signature_md(ctx, algorithm.evp) == 1, EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, carte_rsa_pss_saltlen_digest) == 1 else {
                throw .openSSL(.operationFailed, "PSS parameters")
            }
            var length = modulusBytes
            var out = [UInt8](repeating: 0, count: length)
            guard EVP_PKEY_sign(ctx, &out, &length, digest, digest.count) == 1 else { throw .openSSL(.operationFailed, "RSA-PSS signing") }
            return Array(out.prefix(length))
        }
    }

    /// The bare private-key operation (RSA with no padding) on a block of exactly the modulus size,
    /// numerically below the modulus: what a CPS4 does for PSO DECIPHER, leaving the host to check
    /// and remove the padding (domain-facts §5.5).
    public func privateOperation(_ block: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard block.count == modulusBytes else { throw CryptoError(.invalidInput, "a block for this key is \(modulusBytes) bytes, got \(block.count)") }
        return try withContext(EVP_PKEY_decrypt_init, "the RSA private operation", padding: carte_rsa_no_padding) { ctx throws(CryptoError) in
            var length = modulusBytes
            var out = [UInt8](repeating: 0, count: length)
            guard EVP_PKEY_decrypt(ctx, &out, &length, block, block.count) == 1 else { throw .openSSL(.invalidInput, "the RSA private operation (the block is not below the modulus)") }
            return [UInt8](repeating: 0, count: modulusBytes - length) + out.prefix(length)
        }
    }

    /// PKCS#1 v1.5 decryption (block type 2) of a cryptogram of exactly the modulus size.
    public func decrypt(_ cryptogram: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard cryptogram.count == modulusBytes else { throw CryptoError(.invalidInput, "a cryptogram for this key is \(modulusBytes) bytes, got \(cryptogram.count)") }
        return try withContext(EVP_PKEY_decrypt_init, "deciphering") { ctx throws(CryptoError) in
            var length = modulusBytes
            var out = [UInt8](repeating: 0, count: length)
            guard EVP_PKEY_decrypt(ctx, &out, &length, cryptogram, cryptogram.count) == 1 else { throw .openSSL(.verificationFailed, "RSA deciphering (bad padding or wrong key)") }
            return Array(out.prefix(length))
        }
    }

    private func withContext<T>(_ initialise: (OpaquePointer?) -> Int32, _ what: String, padding: Int32 = carte_rsa_pkcs1_padding, _ body: (OpaquePointer) throws(CryptoError) -> T) throws(CryptoError) -> T {
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw .openSSL(.operationFailed, what) }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard initialise(ctx) == 1, EVP_PKEY_CTX_set_rsa_padding(ctx, padding) == 1 else { throw .openSSL(.operationFailed, what) }
        // OpenSSL 3.2+ answers a bad PKCS#1 v1.5 cryptogram with random bytes ("implicit rejection");
        // a card must refuse it instead. The parameter does not exist before 3.2: its failure is ignored.
        _ = EVP_PKEY_CTX_ctrl_str(ctx, "rsa_pkcs1_implicit_rejection", "0")
        ERR_clear_error()
        return try body(ctx)
    }
}

/// An RSA public key (`SubjectPublicKeyInfo`), for verifying card signatures and enciphering for a card.
public final class RSAPublicKey: @unchecked Sendable, Hashable {
    package let key: OpaquePointer
    /// The DER `SubjectPublicKeyInfo`.
    public let der: [UInt8]

    /// Decodes a DER `SubjectPublicKeyInfo` holding an RSA key.
    public convenience init(subjectPublicKeyInfo der: [UInt8]) throws(CryptoError) {
        let decoded: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var p: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_PUBKEY(nil, &p, buffer.count)
        }
        guard let decoded else { throw .openSSL(.invalidKey, "not a DER public key") }
        try self.init(owning: decoded)
    }

    /// Takes ownership of an `EVP_PKEY` (from a certificate).
    init(owning key: OpaquePointer) throws(CryptoError) {
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            throw CryptoError(.invalidKey, "the public key is not an RSA key")
        }
        self.key = key
        der = publicKeyDER(key)
    }

    deinit { EVP_PKEY_free(key) }

    public static func == (a: RSAPublicKey, b: RSAPublicKey) -> Bool { a.der == b.der }
    public func hash(into h: inout Hasher) { h.combine(der) }

    /// The modulus size in bytes.
    public var modulusBytes: Int { Int(EVP_PKEY_get_size(key)) }
    /// The modulus size in bits.
    public var bits: Int { Int(EVP_PKEY_get_bits(key)) }

    /// Checks a PKCS#1 v1.5 signature over `digest`; throws ``CryptoError/Kind/verificationFailed`` if it does not match.
    public func verify(signature: [UInt8], digest: [UInt8], algorithm: DigestAlgorithm) throws(CryptoError) {
        let recovered = try recover(signature)
        guard recovered == algorithm.digestInfoPrefix + digest else {
            throw CryptoError(.verificationFailed, "the signature does not match the \(algorithm.rawValue) digest of the data")
        }
    }

    /// Checks an RSASSA-PSS signature over `digest` (MGF1 with the same hash, any salt length);
    /// throws ``CryptoError/Kind/verificationFailed`` if it does not match.
    public func verifyPSS(signature: [UInt8], digest: [UInt8], algorithm: DigestAlgorithm) throws(CryptoError) {
        guard signature.count == modulusBytes else { throw CryptoError(.verificationFailed, "a signature by this key is \(modulusBytes) bytes, got \(signature.count)") }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw .openSSL(.operationFailed, "verifying") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_verify_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_padding(ctx, carte_rsa_pkcs1_pss_padding) == 1,
              EVP_PKEY_CTX_set_signature_md(ctx, algorithm.evp) == 1, EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, carte_rsa_pss_saltlen_auto) == 1 else {
            throw .openSSL(.operationFailed, "verifying")
        }
        guard EVP_PKEY_verify(ctx, signature, signature.count, digest, digest.count) == 1 else {
            ERR_clear_error()
            throw CryptoError(.verificationFailed, "the RSA-PSS signature does not match the \(algorithm.rawValue) digest")
        }
    }

    /// Undoes the public-key operation and the PKCS#1 v1.5 block type 1 padding: what the card signed
    /// (an INTERNAL AUTHENTICATE answer gives back the challenge).
    public func recover(_ signature: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard signature.count == modulusBytes else { throw CryptoError(.verificationFailed, "a signature by this key is \(modulusBytes) bytes, got \(signature.count)") }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw .openSSL(.operationFailed, "verifying") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_verify_recover_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_padding(ctx, carte_rsa_pkcs1_padding) == 1 else { throw .openSSL(.operationFailed, "verifying") }
        var length = modulusBytes
        var out = [UInt8](repeating: 0, count: length)
        guard EVP_PKEY_verify_recover(ctx, &out, &length, signature, signature.count) == 1 else {
            throw .openSSL(.verificationFailed, "the signature does not verify with this public key")
        }
        return Array(out.prefix(length))
    }

    /// PKCS#1 v1.5 encryption (block type 2) of `message` for the holder of the private key.
    public func encrypt(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard message.count <= modulusBytes - 11 else { throw CryptoError(.invalidInput, "\(message.count) bytes is too long to encipher with a \(bits)-bit key") }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw .openSSL(.operationFailed, "enciphering") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_encrypt_init(ctx) == 1, EVP_PKEY_CTX_set_rsa_padding(ctx, carte_rsa_pkcs1_padding) == 1 else { throw .openSSL(.operationFailed, "enciphering") }
        var length = modulusBytes
        var out = [UInt8](repeating: 0, count: length)
        guard EVP_PKEY_encrypt(ctx, &out, &length, message, message.count) == 1 else { throw .openSSL(.operationFailed, "enciphering") }
        return Array(out.prefix(length))
    }
}

/// Decodes an unencrypted PEM private key of any algorithm (the caller checks which). An encrypted
/// key is an error, never a passphrase prompt on the terminal.
func readPrivateKeyPEM(_ pem: String) throws(CryptoError) -> OpaquePointer {
    let bytes = Array(pem.utf8)
    let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
        guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
        defer { BIO_free(bio) }
        return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in -1 }, nil)
    }
    guard let key else { throw .openSSL(.invalidKey, "not a PEM private key") }
    return key
}

/// An unencrypted PKCS#8 PEM of a private key ("" if OpenSSL cannot write it).
func privateKeyPEMText(_ key: OpaquePointer) -> String {
    guard let bio = BIO_new(BIO_s_mem()) else { return "" }
    defer { BIO_free(bio) }
    guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { return "" }
    return readAll(bio)
}

/// Reads everything a memory BIO holds as text.
func readAll(_ bio: OpaquePointer) -> String {
    let n = Int(carte_bio_pending(bio))
    guard n > 0 else { return "" }
    var out = [UInt8](repeating: 0, count: n)
    let read = BIO_read(bio, &out, Int32(n))
    return String(decoding: out.prefix(Int(max(read, 0))), as: UTF8.self)
}
