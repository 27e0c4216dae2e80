internal import COpenSSL
#if canImport(Glibc)
internal import Glibc
#endif

/// An X.509 certificate decoded by OpenSSL: the fields a health professional's software shows and checks.
public final class X509Certificate: @unchecked Sendable, Hashable, CustomStringConvertible {
    package let x509: OpaquePointer
    /// The DER encoding, as stored on the card.
    public let der: [UInt8]

    /// One attribute of a distinguished name.
    public struct NameEntry: Hashable, Sendable {
        /// OpenSSL's short name of the attribute type (`CN`, `O`, `OU`, `C`, `serialNumber`, …) or its dotted OID.
        public var type: String
        /// The value as UTF-8.
        public var value: String
    }

    /// A key usage bit of RFC 5280 §4.2.1.3.
    public enum KeyUsage: String, Hashable, Sendable, CaseIterable {
        case digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly
    }

    /// Decodes a DER certificate; trailing bytes (a card file padded with `00` or `FF`) are ignored.
    public init(der input: [UInt8]) throws(CryptoError) {
        var consumed = 0
        let decoded: OpaquePointer? = input.withUnsafeBufferPointer { buffer in
            var p: UnsafePointer<UInt8>? = buffer.baseAddress
            let x = d2i_X509(nil, &p, buffer.count)
            if x != nil, let p, let base = buffer.baseAddress { consumed = base.distance(to: p) }
            return x
        }
        guard let decoded else { throw .openSSL(.invalidCertificate, "not a DER X.509 certificate") }
        x509 = decoded
        der = Array(input.prefix(consumed))
    }

    /// Decodes the first certificate of a PEM text.
    public convenience init(pem: String) throws(CryptoError) {
        let bytes = Array(pem.utf8)
        let decoded: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_X509(bio, nil, nil, nil)
        }
        guard let decoded else { throw .openSSL(.invalidCertificate, "not a PEM certificate") }
        defer { X509_free(decoded) }
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_X509(decoded, &p)
        defer { if let p { CRYPTO_free(p, #fileID, #line) } }
        guard n > 0, let p else { throw .openSSL(.invalidCertificate, "cannot encode the certificate") }
        try self.init(der: Array(UnsafeBufferPointer(start: p, count: Int(n))))
    }

    /// Takes ownership of an `X509*` (from the builder, or a TLS peer's certificate).
    package init(owning x509: OpaquePointer) {
        self.x509 = x509
        var p: UnsafeMutablePointer<UInt8>? = nil
        let n = i2d_X509(x509, &p)
        der = n > 0 && p != nil ? Array(UnsafeBufferPointer(start: p, count: Int(n))) : []
        if let p { CRYPTO_free(p, #fileID, #line) }
    }

    deinit { X509_free(x509) }

    public static func == (a: X509Certificate, b: X509Certificate) -> Bool { a.der == b.der }
    public func hash(into h: inout Hasher) { h.combine(der) }

    /// The certificate in PEM.
    public var pem: String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, x509) == 1 else { return "" }
        return readAll(bio)
    }

    /// The subject's attributes, in order.
    public var subject: [NameEntry] { Self.entries(X509_get_subject_name(x509)) }
    /// The issuer's attributes, in order.
    public var issuer: [NameEntry] { Self.entries(X509_get_issuer_name(x509)) }
    /// The subject as one line (`CN=…, O=…`), most significant attribute last as OpenSSL prints it.
    public var subjectText: String { subject.map { "\($0.type)=\($0.value)" }.joined(separator: ", ") }
    /// The issuer as one line.
    public var issuerText: String { issuer.map { "\($0.type)=\($0.value)" }.joined(separator: ", ") }
    /// The first value of a subject attribute (`"CN"`, `"serialNumber"`, …).
    public func subjectValue(_ type: String) -> String? { subject.first { $0.type == type }?.value }

    /// The serial number in hexadecimal.
    public var serialNumber: String {
        guard let serial = X509_get0_serialNumber(x509), let bn = ASN1_INTEGER_to_BN(serial, nil) else { return "" }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return "" }
        defer { CRYPTO_free(hex, #fileID, #line) }
        return String(cString: hex)
    }

    /// Start of validity, in seconds since 1970-01-01 UTC.
    public var notBefore: Int64 { Self.seconds(X509_get0_notBefore(x509)) }
    /// End of validity, in seconds since 1970-01-01 UTC.
    public var notAfter: Int64 { Self.seconds(X509_get0_notAfter(x509)) }

    /// The key usage bits, empty when the extension is absent.
    public var keyUsage: Set<KeyUsage> {
        guard let ext = carte_x509_get_ext_d2i(x509, NID_key_usage) else { return [] }
        defer { carte_asn1_bit_string_free(ext) }
        var out: Set<KeyUsage> = []
        for (bit, usage) in KeyUsage.allCases.enumerated() where carte_asn1_bit_string_get_bit(ext, Int32(bit)) == 1 { out.insert(usage) }
        return out
    }

    /// Whether the basic-constraints extension says this is a certificate authority.
    public var isCertificateAuthority: Bool {
        guard let ext = carte_x509_get_ext_d2i(x509, NID_basic_constraints) else { return false }
        defer { carte_basic_constraints_free(ext) }
        return carte_basic_constraints_is_ca(ext) == 1
    }

    /// The subject public key (RSA).
    public func publicKey() throws(CryptoError) -> RSAPublicKey {
        guard let key = X509_get_pubkey(x509) else { throw .openSSL(.invalidKey, "the certificate's public key cannot be decoded") }
        return try RSAPublicKey(owning: key)
    }

    public var description: String { "X.509 \(subjectText) (issuer \(issuerText), serial \(serialNumber))" }

    /// Verifies the chain from this certificate through `intermediates` up to one of `roots`, at time
    /// `at` (seconds since 1970, UTC). Throws ``CryptoError/Kind/verificationFailed`` with OpenSSL's
    /// reason ("certificate has expired", "unable to get local issuer certificate", …).
    public func verifyChain(intermediates: [X509Certificate], roots: [X509Certificate], at time: Int64) throws(CryptoError) {
        guard let store = X509_STORE_new() else { throw .openSSL(.operationFailed, "certificate store") }
        defer { X509_STORE_free(store) }
        for root in roots { X509_STORE_add_cert(store, root.x509) }
        guard let chain = carte_sk_x509_new() else { throw .openSSL(.operationFailed, "certificate chain") }
        defer { carte_sk_x509_free(chain) }
        for c in intermediates { _ = carte_sk_x509_push(chain, c.x509) }
        guard let ctx = X509_STORE_CTX_new() else { throw .openSSL(.operationFailed, "certificate verification") }
        defer { X509_STORE_CTX_free(ctx) }
        guard X509_STORE_CTX_init(ctx, store, x509, chain) == 1 else { throw .openSSL(.operationFailed, "certificate verification") }
        X509_STORE_CTX_set_time(ctx, 0, time_t(time))
        let ok = withExtendedLifetime((roots, intermediates)) { X509_verify_cert(ctx) }
        if ok != 1 {
            let code = X509_STORE_CTX_get_error(ctx)
            let reason = X509_verify_cert_error_string(Int(code)).map { String(cString: $0) } ?? "error \(code)"
            ERR_clear_error()
            throw CryptoError(.verificationFailed, reason)
        }
    }

    // MARK: Helpers

    static func entries(_ name: OpaquePointer?) -> [NameEntry] {
        guard let name else { return [] }
        var out: [NameEntry] = []
        for i in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, i), let object = X509_NAME_ENTRY_get_object(entry), let data = X509_NAME_ENTRY_get_data(entry) else { continue }
            let nid = OBJ_obj2nid(object)
            var type = nid != NID_undef ? OBJ_nid2sn(nid).map { String(cString: $0) } ?? "" : ""
            if type.isEmpty {
                var buffer = [CChar](repeating: 0, count: 128)
                let n = OBJ_obj2txt(&buffer, Int32(buffer.count), object, 1)
                // OBJ_obj2txt returns the full length even when it had to truncate.
                type = n > 0 ? String(decoding: buffer.prefix(min(Int(n), buffer.count - 1)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
            }
            var utf8: UnsafeMutablePointer<UInt8>? = nil
            let n = ASN1_STRING_to_UTF8(&utf8, data)
            let value = n >= 0 && utf8 != nil ? String(decoding: UnsafeBufferPointer(start: utf8, count: Int(n)), as: UTF8.self) : ""
            if let utf8 { CRYPTO_free(utf8, #fileID, #line) }
            out.append(NameEntry(type: type, value: value))
        }
        return out
    }

    static func seconds(_ time: UnsafePointer<ASN1_TIME>?) -> Int64 {
        guard let time else { return 0 }
        var t = tm()
        guard ASN1_TIME_to_tm(time, &t) == 1 else { return 0 }
        return Int64(timegm(&t))
    }
}

/// Formats seconds since 1970 (UTC) as `YYYY-MM-DDTHH:MM:SSZ`.
public func iso8601UTC(_ seconds: Int64) -> String {
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}

/// The current time in seconds since 1970 (UTC).
public func currentUnixTime() -> Int64 { Int64(time(nil)) }
