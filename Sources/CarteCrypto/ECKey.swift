internal import COpenSSL

/// An ECDSA P-256 private key held by OpenSSL (`EVP_PKEY`): the signing key of a (synthetic) appli
/// carte Vitale, which signs its session tokens.
///
/// Its text forms never show the key; ``pem`` does, on purpose, for writing phone images.
public final class ECPrivateKey: @unchecked Sendable, CustomStringConvertible {
    // Immutable after init; OpenSSL allows concurrent signatures with one EVP_PKEY.
    let key: OpaquePointer

    private init(owning key: OpaquePointer) { self.key = key }
    deinit { EVP_PKEY_free(key) }

    /// Generates a new P-256 (prime256v1) key.
    public static func generateP256() throws(CryptoError) -> ECPrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else { throw .openSSL(.operationFailed, "EC key generation") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1 else {
            throw .openSSL(.operationFailed, "EC key generation")
        }
        var out: OpaquePointer?
        guard EVP_PKEY_generate(ctx, &out) == 1, let out else { throw .openSSL(.operationFailed, "EC key generation") }
        return ECPrivateKey(owning: out)
    }

    /// Loads a PEM private key (`BEGIN PRIVATE KEY` or `BEGIN EC PRIVATE KEY`, unencrypted) on the P-256 curve.
    public convenience init(pem: String) throws(CryptoError) {
        let key = try readPrivateKeyPEM(pem)
        do { try checkP256(key) } catch {
            EVP_PKEY_free(key)
            throw error
        }
        self.init(owning: key)
    }

    /// The key in PEM (PKCS#8, unencrypted). Secret material: only for writing test images.
    public var pem: String { privateKeyPEMText(key) }

    /// The public half.
    public var publicKey: ECPublicKey {
        // A key's own public half always encodes and decodes.
        try! ECPublicKey(subjectPublicKeyInfo: publicKeyDER(key))
    }

    public var description: String { "EC P-256 private key (<redacted>)" }

    /// The ECDSA signature (SHA-256) of `message`, DER-encoded (`ECDSA-Sig-Value`, 70 to 72 bytes).
    public func sign(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { throw .openSSL(.operationFailed, "ECDSA signing") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { throw .openSSL(.operationFailed, "ECDSA signing") }
        var length = 0
        guard EVP_DigestSign(ctx, nil, &length, message, message.count) == 1 else { throw .openSSL(.operationFailed, "ECDSA signing") }
        var out = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(ctx, &out, &length, message, message.count) == 1 else { throw .openSSL(.operationFailed, "ECDSA signing") }
        return Array(out.prefix(length))
    }
}

/// An ECDSA P-256 public key (`SubjectPublicKeyInfo`), for checking session-token signatures.
public final class ECPublicKey: @unchecked Sendable, Hashable {
    let key: OpaquePointer
    /// The DER `SubjectPublicKeyInfo`.
    public let der: [UInt8]

    /// Decodes a DER `SubjectPublicKeyInfo` holding a P-256 key.
    public init(subjectPublicKeyInfo der: [UInt8]) throws(CryptoError) {
        let decoded: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var p: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_PUBKEY(nil, &p, buffer.count)
        }
        guard let decoded else { throw .openSSL(.invalidKey, "not a DER public key") }
        do { try checkP256(decoded) } catch {
            EVP_PKEY_free(decoded)
            throw error
        }
        key = decoded
        self.der = publicKeyDER(decoded)
    }

    /// Decodes a PEM public key (`BEGIN PUBLIC KEY`) on the P-256 curve.
    public convenience init(pem: String) throws(CryptoError) {
        let bytes = Array(pem.utf8)
        let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let key else { throw .openSSL(.invalidKey, "not a PEM public key") }
        let der = publicKeyDER(key)
        EVP_PKEY_free(key)
        try self.init(subjectPublicKeyInfo: der)
    }

    deinit { EVP_PKEY_free(key) }

    /// The key in PEM (`BEGIN PUBLIC KEY`).
    public var pem: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PUBKEY(bio, key) == 1 else { return "" }
        return readAll(bio)
    }

    public static func == (a: ECPublicKey, b: ECPublicKey) -> Bool { a.der == b.der }
    public func hash(into h: inout Hasher) { h.combine(der) }

    /// Checks a DER ECDSA signature (SHA-256) of `message`; throws
    /// ``CryptoError/Kind/verificationFailed`` when it does not match or is not a valid signature.
    public func verify(signature: [UInt8], of message: [UInt8]) throws(CryptoError) {
        guard let ctx = EVP_MD_CTX_new() else { throw .openSSL(.operationFailed, "ECDSA verification") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { throw .openSSL(.operationFailed, "ECDSA verification") }
        let result = EVP_DigestVerify(ctx, signature, signature.count, message, message.count)
        ERR_clear_error()
        guard result == 1 else { throw CryptoError(.verificationFailed, "the ECDSA signature does not verify with this public key") }
    }
}

/// Throws unless `key` is an EC key on P-256.
private func checkP256(_ key: OpaquePointer) throws(CryptoError) {
    guard EVP_PKEY_get_base_id(key) == EVP_PKEY_EC else { throw CryptoError(.invalidKey, "the key is not an EC key") }
    var name = [CChar](repeating: 0, count: 64)
    var length = 0
    guard EVP_PKEY_get_group_name(key, &name, name.count, &length) == 1 else { throw CryptoError(.invalidKey, "the EC key has no named curve") }
    let curve = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard curve == "prime256v1" || curve == "P-256" else { throw CryptoError(.invalidKey, "the EC key is on \(curve), not P-256") }
}

/// The DER `SubjectPublicKeyInfo` of `key`.
func publicKeyDER(_ key: OpaquePointer) -> [UInt8] {
    var p: UnsafeMutablePointer<UInt8>? = nil
    let n = i2d_PUBKEY(key, &p)
    defer { if let p { CRYPTO_free(p, #fileID, #line) } }
    return n > 0 && p != nil ? Array(UnsafeBufferPointer(start: p, count: Int(n))) : []
}

/// `count` bytes from OpenSSL's cryptographically secure generator (token ids, nonces).
public func secureRandomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: max(count, 0))
    guard count > 0 else { return out }
    guard RAND_bytes(&out, Int32(count)) == 1 else { throw .openSSL(.operationFailed, "the random generator") }
    return out
}
