public import CarteApCV
public import CarteCrypto
import COpenSSL
import Foundation
import Synchronization
import CarteVitale

#if canImport(Glibc)
import Glibc
#endif

/// A private key the TLS client signs with, wherever it lives: on a CPx card (CarteCPS's
/// `authenticate(challenge:)`, INTERNAL AUTHENTICATE), or in software for comparison.
public protocol TLSClientKey: Sendable {
    /// The certificate the client presents (its public key is the key's).
    var certificate: X509Certificate { get }
    /// The PKCS#1 v1.5 signature (block type 01) of `digestInfo`, the DER DigestInfo OpenSSL gives
    /// for the TLS 1.2 CertificateVerify. Errors are reported as ``RightsError/cardSignature(_:)``.
    func sign(digestInfo: [UInt8]) async throws -> [UInt8]
    /// The same signature made on the calling thread without suspending, for keys that can (a software
    /// key), or `nil` to use ``sign(digestInfo:)``. The TLS thread then never waits for Swift's
    /// concurrency pool, which a busy process may keep occupied.
    func signImmediately(digestInfo: [UInt8]) throws -> [UInt8]?
}

extension TLSClientKey {
    /// By default a key signs asynchronously only.
    public func signImmediately(digestInfo: [UInt8]) throws -> [UInt8]? { nil }
}

/// A software RSA key and its certificate (the reference the card is measured against).
public struct SoftwareTLSClientKey: TLSClientKey {
    public let certificate: X509Certificate
    private let key: RSAPrivateKey
    /// A key and the certificate for it.
    public init(certificate: X509Certificate, key: RSAPrivateKey) {
        self.certificate = certificate
        self.key = key
    }
    public func sign(digestInfo: [UInt8]) async throws -> [UInt8] { try key.signRaw(digestInfo) }
    public func signImmediately(digestInfo: [UInt8]) throws -> [UInt8]? { try key.signRaw(digestInfo) }
}

/// The answer of the rights service, as `carte rights` reports it.
public struct RightsReply: Sendable {
    /// The `carte.rights/1` document, as received.
    public let json: [UInt8]
    /// How many times the client key signed (1 per full handshake).
    public let signatures: Int
    /// Seconds the TLS handshake took (connection included).
    public let handshakeSeconds: Double
    /// Seconds the key's signature took within it.
    public let signatureSeconds: Double
}

/// The client of the synthetic rights service: mutual TLS 1.2 where the client's signature comes from
/// a ``TLSClientKey`` (the card), then `GET /rights/v1/<NIR>`. The private key never leaves the key's
/// holder: OpenSSL only sees an RSA public key whose private operation calls back into it.
public enum RightsClient {
    /// Asks `endpoint` for the rights of `nir` (on `date`, `YYYY-MM-DD`, or the service's today),
    /// trusting `roots` for the service's certificate and signing the handshake with `key`.
    public static func fetch(nir: String, date: String? = nil, endpoint: LoopbackEndpoint, roots: [X509Certificate],
                             key: (any TLSClientKey)?, timeout: Double = 10) async throws(RightsError) -> RightsReply {
        let normalised = try RightsService.normalise(nir: nir)
        if let date, VitaleDate(iso: date) == nil { throw .invalidDate(String(date.prefix(32))) }
        let signer = key.map { Signer($0) }
        let result: Result<RightsReply, RightsError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Result { () throws(RightsError) -> RightsReply in
                    try exchange(nir: normalised, date: date, endpoint: endpoint, roots: roots, signer: signer, timeout: timeout)
                })
            }
            thread.name = "carte rights client"
            thread.start()
        }
        return try result.get()
    }

    /// The blocking exchange, on the client's own thread.
    static func exchange(nir: String, date: String?, endpoint: LoopbackEndpoint, roots: [X509Certificate], signer: Signer?, timeout: Double) throws(RightsError) -> RightsReply {
        let started = ContinuousClock.now
        TLS.blockSIGPIPE()
        _ = TLS.drainErrors()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw .setup("SSL_CTX_new: \(TLS.lastReason("?"))") }
        defer { SSL_CTX_free(ctx) }
        guard carte_ssl_ctx_set_min_proto(ctx, carte_tls1_2_version) == 1, carte_ssl_ctx_set_max_proto(ctx, carte_tls1_2_version) == 1,
              carte_ssl_ctx_set1_sigalgs(ctx, TLS.pkcs1SignatureAlgorithms) == 1 else { throw .setup("TLS 1.2 settings: \(TLS.lastReason("?"))") }
        guard TLS.trust(ctx, roots.map(\.x509)) else { throw .setup("no trust store") }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        var cardKey: OpaquePointer? = nil
        defer { if let cardKey { EVP_PKEY_free(cardKey) } }
        if let signer {
            guard let pkey = signer.makeKey() else { throw .setup("the client key: \(TLS.lastReason("?"))") }
            cardKey = pkey
            guard SSL_CTX_use_certificate(ctx, signer.key.certificate.x509) == 1, SSL_CTX_use_PrivateKey(ctx, pkey) == 1 else {
                throw .setup("the client certificate does not match its key: \(TLS.lastReason("?"))")
            }
        }

        // Connect (loopback only: LoopbackEndpoint checked the host).
        let fd: Int32 = TLS.withAddress(host: endpoint.host, port: endpoint.port) { address, length, family -> Int32 in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return -1 }
            TLS.setTimeouts(fd, seconds: timeout)
            guard connect(fd, address, length) == 0 else { close(fd); return -1 }
            return fd
        } ?? -1
        guard fd >= 0 else { throw .serviceUnavailable("\(endpoint): \(String(cString: strerror(errno)))") }
        // The whole exchange (the card's signature included) within `timeout`.
        let deadline = Deadline(fd: fd, seconds: timeout)
        defer {
            deadline.finish()
            close(fd)
        }
        guard let ssl = SSL_new(ctx) else { throw .setup("SSL_new") }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        if let param = SSL_get0_param(ssl) {
            // The service's certificate must name the address reached.
            if endpoint.host.contains(":") || endpoint.host.first?.isNumber == true {
                _ = X509_VERIFY_PARAM_set1_ip_asc(param, endpoint.host)
            } else {
                _ = X509_VERIFY_PARAM_set1_host(param, endpoint.host, 0)
            }
        }
        if SSL_connect(ssl) != 1 {
            let reason = TLS.lastReason("")
            if let failure = signer?.failure { throw .cardSignature(failure) }
            if deadline.expired { throw .serviceUnavailable("no complete handshake with \(endpoint) within \(timeout) s") }
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK { throw .untrustedService("the service's certificate: \(TLS.verifyText(verify))") }
            if reason.contains("alert") { throw .refusedByService(alert: reason) }
            if reason.isEmpty || reason.contains("eof") { throw .serviceUnavailable("\(endpoint) closed the connection during the handshake") }
            throw .untrustedService(reason)
        }
        let handshake = ContinuousClock.now - started
        // TLS 1.2 sends the client's alert-free refusal after Finished; a read sees it (or the answer).
        let dateQuery = date.map { "?date=\($0)" } ?? ""
        let request = TLS.httpMessage(startLine: "GET /rights/v1/\(nir)\(dateQuery) HTTP/1.1", headers: [("Host", "\(endpoint)"), ("Accept", "application/json")], body: [])
        guard TLS.writeAll(ssl, request) else { throw mapAfterHandshake(TLS.lastReason("the connection closed")) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while response.count <= 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n <= 0 {
                let code = SSL_get_error(ssl, n)
                if deadline.expired || code == SSL_ERROR_WANT_READ { throw .protocolError("no complete answer within \(timeout) s") }
                if code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && !response.isEmpty) { break }
                if response.isEmpty { throw mapAfterHandshake(TLS.lastReason("the service closed the connection without answering")) }
                break
            }
            response += chunk[0..<Int(n)]
        }
        guard response.count <= 4 << 20 else { throw .protocolError("the answer exceeds 4 MiB") }
        _ = SSL_shutdown(ssl)
        let body = try parseResponse(response, nir: nir)
        return RightsReply(json: body, signatures: signer?.count ?? 0, handshakeSeconds: TLS.seconds(handshake), signatureSeconds: signer?.seconds ?? 0)
    }

    /// The body of a `200` answer of the service, or the typed error its status and error document
    /// say (untrusted bytes: the fuzz target `rights-http` checks this never traps).
    package static func parseResponse(_ response: [UInt8], nir: String) throws(RightsError) -> [UInt8] {
        guard let end = TLS.headEnd(response), let head = String(validating: response[..<end], as: UTF8.self) else {
            throw .protocolError("the answer has no complete HTTP head")
        }
        let lines = head.components(separatedBy: "\r\n")
        let status = lines[0].split(separator: " ")
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), status[1].count == 3, let code = Int(status[1]) else {
            throw .protocolError("malformed status line \"\(lines[0].prefix(64))\"")
        }
        var body = Array(response[(end + 4)...])
        if let lengthLine = lines.first(where: { $0.lowercased().hasPrefix("content-length:") }) {
            let value = lengthLine.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)
            guard value.count <= 9, value.allSatisfy(\.isASCII), let n = Int(value), n >= 0, n <= body.count else {
                throw .protocolError("the answer is shorter than its Content-Length (or the length is malformed)")
            }
            body = Array(body.prefix(n))
        }
        guard code == 200 else {
            let document = try? JSONDecoder().decode(RightsErrorDocument.self, from: Data(body))
            if code == 404, document?.error == "unknown-nir" { throw .unknownNIR(nir) }
            throw .serviceError(status: code, error: document.map { String($0.error.prefix(64)) } ?? "", message: document.map { String($0.message.prefix(512)) } ?? "no error document")
        }
        return body
    }

    /// A failure right after the handshake: in TLS 1.2 a server that rejects the client certificate
    /// after reading it sends its alert then.
    private static func mapAfterHandshake(_ reason: String) -> RightsError {
        reason.contains("alert") ? .refusedByService(alert: reason) : .protocolError(reason)
    }
}

/// Bridges OpenSSL's private-key callback (on the client's thread) to the asynchronous key.
final class Signer: @unchecked Sendable {
    let key: any TLSClientKey
    private let state = Mutex<(count: Int, seconds: Double, failure: String?)>((0, 0, nil))
    var count: Int { state.withLock { $0.count } }
    var seconds: Double { state.withLock { $0.seconds } }
    var failure: String? { state.withLock { $0.failure } }

    /// The RSA_METHOD of the key ``makeKey()`` made (freed with the signer, which outlives the key).
    private var method: OpaquePointer? = nil

    init(_ key: any TLSClientKey) { self.key = key }
    deinit { if let method { RSA_meth_free(method) } }

    /// Records why the signature failed (what the client reports as ``RightsError/cardSignature(_:)``).
    func fail(_ why: String) { state.withLock { $0.failure = why } }

    /// Blocks the calling (TLS) thread until the key has signed: at once when the key can sign without
    /// suspending, otherwise through a task and a semaphore (60 s at most, for a card that never answers).
    func signBlocking(_ digestInfo: [UInt8]) -> [UInt8]? {
        let started = ContinuousClock.now
        let outcome: Result<[UInt8], any Error>
        do throws(any Error) {
            if let signature = try key.signImmediately(digestInfo: digestInfo) {
                outcome = .success(signature)
            } else {
                let semaphore = DispatchSemaphore(value: 0)
                let result = Mutex<Result<[UInt8], any Error>?>(nil)
                let key = self.key
                Task {
                    let r: Result<[UInt8], any Error>
                    do { r = .success(try await key.sign(digestInfo: digestInfo)) } catch { r = .failure(error) }
                    result.withLock { $0 = r }
                    semaphore.signal()
                }
                guard semaphore.wait(timeout: .now() + 60) == .success else {
                    fail("the card did not answer within 60 s")
                    return nil
                }
                outcome = result.withLock { $0 }!
            }
        } catch {
            outcome = .failure(error)
        }
        let elapsed = TLS.seconds(ContinuousClock.now - started)
        return state.withLock { s in
            s.count += 1
            s.seconds += elapsed
            switch outcome {
            case .success(let signature): return signature
            case .failure(let error):
                s.failure = "\(error)"
                return nil
            }
        }
    }

    /// An RSA key holding only the certificate's public part, whose private operation (PKCS#1 type 01,
    /// the only one TLS 1.2 with PKCS#1 signature algorithms asks for) calls ``signBlocking(_:)``.
    /// The returned key holds this signer unretained: it must not outlive it.
    func makeKey() -> OpaquePointer? {
        guard method == nil, let publicKey = X509_get0_pubkey(key.certificate.x509) else { return nil }
        guard let rsaPublic = EVP_PKEY_get1_RSA(publicKey) else { return nil }
        defer { RSA_free(rsaPublic) }
        var n: OpaquePointer? = nil, e: OpaquePointer? = nil
        RSA_get0_key(rsaPublic, &n, &e, nil)
        guard let n, let e, let method = RSA_meth_dup(RSA_get_default_method()) else { return nil }
        self.method = method
        _ = RSA_meth_set1_name(method, "CarteKit card key")
        _ = RSA_meth_set_priv_enc(method, { length, from, to, rsa, padding -> Int32 in
            guard let rsa, let from, let to, padding == carte_rsa_pkcs1_padding, let context = carte_rsa_get_app_data(rsa) else { return -1 }
            let signer = Unmanaged<Signer>.fromOpaque(context).takeUnretainedValue()
            let digestInfo = Array(UnsafeBufferPointer(start: from, count: Int(length)))
            guard var signature = signer.signBlocking(digestInfo) else { return -1 }
            let size = Int(RSA_size(rsa))
            // A signature with its leading zero bytes dropped is still the modulus-size block.
            if signature.count < size { signature = [UInt8](repeating: 0, count: size - signature.count) + signature }
            guard signature.count == size else {
                signer.fail("the card returned \(signature.count) bytes for a \(size)-byte key")
                return -1
            }
            signature.withUnsafeBufferPointer { to.update(from: $0.baseAddress!, count: $0.count) }
            return Int32(size)
        })
        guard let rsa = RSA_new() else { return nil }
        defer { RSA_free(rsa) }
        // The method is set before the key is wrapped, so OpenSSL treats the key as foreign (legacy path).
        guard RSA_set_method(rsa, method) == 1, RSA_set0_key(rsa, BN_dup(n), BN_dup(e), nil) == 1 else { return nil }
        _ = carte_rsa_set_app_data(rsa, Unmanaged.passUnretained(self).toOpaque())
        guard let pkey = EVP_PKEY_new() else { return nil }
        guard EVP_PKEY_set1_RSA(pkey, rsa) == 1 else { EVP_PKEY_free(pkey); return nil }
        return pkey
    }
}
