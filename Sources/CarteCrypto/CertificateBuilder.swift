internal import COpenSSL

/// Issues X.509 v3 certificates with OpenSSL: the test PKI of the simulated CPx cards, and the local CA
/// of `carte agent` (`wss://` on loopback).
///
/// Nothing here belongs to the ANS PKI; callers name their authorities as test authorities.
public struct CertificateBuilder: Sendable {
    /// The subject, as (attribute short name, UTF-8 value) pairs, most significant first (`C`, `O`, …, `CN`).
    public var subject: [(String, String)]
    /// Serial number (positive).
    public var serial: UInt64
    /// Start of validity (seconds since 1970, UTC).
    public var notBefore: Int64
    /// End of validity (seconds since 1970, UTC).
    public var notAfter: Int64
    /// Key usage bits (`critical`).
    public var keyUsage: Set<X509Certificate.KeyUsage>
    /// Whether the certificate is a CA (basic constraints `CA:TRUE`, critical).
    public var isCertificateAuthority: Bool
    /// Extended key usage short names (`clientAuth`, `emailProtection`…), if any.
    public var extendedKeyUsage: [String] = []
    /// Subject alternative names in OpenSSL's configuration syntax (`IP:127.0.0.1`, `DNS:localhost`):
    /// what a TLS client checks a server's address against.
    public var subjectAlternativeNames: [String] = []
    /// Name constraints of a CA in OpenSSL's configuration syntax (`permitted;DNS:localhost`,
    /// `permitted;IP:127.0.0.1/255.255.255.255`), marked critical: the names its certificates may hold.
    public var permittedNames: [String] = []

    /// Creates a builder.
    public init(subject: [(String, String)], serial: UInt64, notBefore: Int64, notAfter: Int64, keyUsage: Set<X509Certificate.KeyUsage>, isCertificateAuthority: Bool = false, extendedKeyUsage: [String] = []) {
        self.subject = subject
        self.serial = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.keyUsage = keyUsage
        self.isCertificateAuthority = isCertificateAuthority
        self.extendedKeyUsage = extendedKeyUsage
    }

    /// Issues the certificate for `publicKey`, signed (SHA-256 with RSA) by `issuerKey`; `issuer` is the
    /// issuer's certificate, or `nil` for a self-signed root.
    public func issue(publicKeyOf subjectKey: RSAPrivateKey, issuer: X509Certificate?, issuerKey: RSAPrivateKey) throws(CryptoError) -> X509Certificate {
        guard let x = X509_new() else { throw .openSSL(.operationFailed, "certificate creation") }
        var owned = true
        defer { if owned { X509_free(x) } }
        guard X509_set_version(x, 2) == 1,
              let serialBN = BN_new() else { throw .openSSL(.operationFailed, "certificate creation") }
        defer { BN_free(serialBN) }
        BN_set_word(serialBN, UInt(serial))
        guard BN_to_ASN1_INTEGER(serialBN, X509_get_serialNumber(x)) != nil else { throw .openSSL(.operationFailed, "certificate serial") }
        guard ASN1_TIME_set(X509_getm_notBefore(x), time_t(notBefore)) != nil,
              ASN1_TIME_set(X509_getm_notAfter(x), time_t(notAfter)) != nil else { throw .openSSL(.operationFailed, "certificate validity") }
        guard let name = X509_NAME_new() else { throw .openSSL(.operationFailed, "certificate subject") }
        defer { X509_NAME_free(name) }
        for (type, value) in subject {
            let bytes = Array(value.utf8)
            guard X509_NAME_add_entry_by_txt(name, type, carte_mbstring_utf8, bytes, Int32(bytes.count), -1, 0) == 1 else {
                throw .openSSL(.invalidInput, "certificate subject attribute \(type)")
            }
        }
        guard X509_set_subject_name(x, name) == 1,
              X509_set_issuer_name(x, issuer.map { X509_get_subject_name($0.x509) } ?? name) == 1,
              X509_set_pubkey(x, subjectKey.key) == 1 else { throw .openSSL(.operationFailed, "certificate names") }

        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, issuer?.x509 ?? x, x, nil, nil, 0)
        var extensions: [(Int32, String)] = []
        extensions.append((NID_basic_constraints, isCertificateAuthority ? "critical,CA:TRUE" : "critical,CA:FALSE"))
        let usage = X509Certificate.KeyUsage.allCases.filter(keyUsage.contains).map(\.rawValue)
        if !usage.isEmpty { extensions.append((NID_key_usage, "critical," + usage.joined(separator: ","))) }
        if !extendedKeyUsage.isEmpty { extensions.append((NID_ext_key_usage, extendedKeyUsage.joined(separator: ","))) }
        if !subjectAlternativeNames.isEmpty { extensions.append((NID_subject_alt_name, subjectAlternativeNames.joined(separator: ","))) }
        if !permittedNames.isEmpty { extensions.append((NID_name_constraints, "critical," + permittedNames.map { "permitted;" + $0 }.joined(separator: ","))) }
        extensions.append((NID_subject_key_identifier, "hash"))
        if issuer != nil || isCertificateAuthority { extensions.append((NID_authority_key_identifier, "keyid:always")) }
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else { throw .openSSL(.invalidInput, "certificate extension \(value)") }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x, ext, -1) == 1 else { throw .openSSL(.operationFailed, "certificate extension") }
        }
        guard X509_sign(x, issuerKey.key, EVP_sha256()) > 0 else { throw .openSSL(.operationFailed, "certificate signature") }
        owned = false
        return X509Certificate(owning: x)
    }
}
