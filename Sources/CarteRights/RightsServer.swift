public import CarteApCV
public import CarteCrypto
import CarteKit
import CarteVitale
import COpenSSL
import Foundation
public import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Parses a loopback `HOST:PORT` (an `https://` prefix and a trailing `/` are allowed).
public func rightsEndpoint(_ text: String) throws(RightsError) -> LoopbackEndpoint {
    var t = text
    if t.hasPrefix("https://") { t.removeFirst("https://".count) }
    do { return try LoopbackEndpoint(t) } catch {
        throw .invalidEndpoint("\"\(text)\": the rights service and its clients use a loopback HOST:PORT only (127.0.0.0/8 or ::1)")
    }
}

/// The synthetic online rights-consultation service over mutual TLS: `carte sim rights-service`.
///
/// It listens on a loopback address only. TLS 1.2 with RSA PKCS#1 v1.5 signatures (what a CPx card
/// can sign); its own certificate is issued by the TEST PKI; a client certificate is **required**
/// and must chain to the trusted TEST CPx CA, be valid now and carry the clientAuth usage, otherwise
/// the handshake fails with the TLS alert saying why (no certificate, unknown CA, expired…) and the
/// refusal is logged with the reason. Then `GET /rights/v1/<NIR>[?date=YYYY-MM-DD]` answers
/// `carte.rights/1` (200), or `carte.rights-error/1` (400 malformed request or NIR, 404 unknown NIR,
/// 405 another method). One answer per connection; each connection has `connectionTimeout` for its
/// handshake and request, and at most `maximumConnections` are served at once (more wait in the
/// kernel's backlog). Each connection runs on a thread of its own; call ``stop()`` when done.
public final class RightsServer: Sendable {
    /// The address actually bound (the system's port when 0 was asked).
    public let endpoint: LoopbackEndpoint
    /// The server's certificate (issued by the TEST PKI for `127.0.0.1`, `::1` and `localhost`).
    public let certificate: X509Certificate
    /// Connections served at once, at most.
    public let maximumConnections = 8
    /// Seconds a connection has for its handshake and its request.
    public let connectionTimeout: Double

    /// What happened on one connection, as the log reports it.
    public enum Outcome: String, Sendable, CaseIterable {
        /// `carte.rights/1` was sent.
        case answered
        /// The client presented no certificate.
        case noClientCertificate = "no-client-certificate"
        /// The client's certificate does not chain to the trusted CA.
        case untrustedClientCertificate = "untrusted-client-certificate"
        /// The client's certificate is outside its validity period.
        case expiredClientCertificate = "expired-client-certificate"
        /// The handshake failed for another reason (protocol, cipher, a broken signature).
        case handshakeFailed = "handshake-failed"
        /// The request was malformed, too large, too slow, or named a bad or unknown NIR.
        case refusedRequest = "refused-request"
    }

    private let service: RightsService
    private let context: ContextBox
    private let listener: Int32
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)
    private let counts = Mutex<[Outcome: Int]>([:])

    /// How many connections ended with each outcome so far.
    public var outcomes: [Outcome: Int] { counts.withLock { $0 } }

    /// Sets up TLS (a new server key, its certificate issued by `pki`'s root), binds `endpoint` and
    /// starts accepting. `clientRoots` and `clientIntermediates` are the CAs client certificates must
    /// chain to (the TEST root and the TEST CPx CA).
    public init(service: RightsService, endpoint: LoopbackEndpoint, issuer: X509Certificate, issuerKey: RSAPrivateKey,
                clientRoots: [X509Certificate], clientIntermediates: [X509Certificate], connectionTimeout: Double = 5,
                logger: Logger) throws(RightsError) {
        self.service = service
        self.logger = logger
        self.connectionTimeout = min(max(connectionTimeout, 0.05), 60)
        // The server's own identity, made fresh at each start (test keys only).
        let key: RSAPrivateKey
        let certificate: X509Certificate
        do {
            key = try RSAPrivateKey.generate(bits: 2048)
            let now = currentUnixTime()
            var builder = CertificateBuilder(subject: [("C", "FR"), ("O", "CarteKit TEST - synthetic"), ("CN", "CarteKit TEST rights service (synthetic)")],
                                             serial: UInt64(now), notBefore: now - 3600, notAfter: now + 30 * 86_400,
                                             keyUsage: [.digitalSignature, .keyEncipherment], extendedKeyUsage: ["serverAuth"])
            builder.subjectAlternativeNames = ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
            certificate = try builder.issue(publicKeyOf: key, issuer: issuer, issuerKey: issuerKey)
        } catch {
            throw .setup("the server certificate: \(error)")
        }
        self.certificate = certificate

        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw .setup("SSL_CTX_new: \(TLS.lastReason("?"))") }
        let box = ContextBox(ctx)
        guard carte_ssl_ctx_set_min_proto(ctx, carte_tls1_2_version) == 1, carte_ssl_ctx_set_max_proto(ctx, carte_tls1_2_version) == 1,
              carte_ssl_ctx_set1_sigalgs(ctx, TLS.pkcs1SignatureAlgorithms) == 1,
              carte_ssl_ctx_set1_client_sigalgs(ctx, TLS.pkcs1SignatureAlgorithms) == 1 else {
            throw .setup("TLS 1.2 / PKCS#1 settings: \(TLS.lastReason("?"))")
        }
        guard SSL_CTX_use_certificate(ctx, certificate.x509) == 1, SSL_CTX_use_PrivateKey(ctx, key.key) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            throw .setup("the server certificate or key: \(TLS.lastReason("?"))")
        }
        // Clients need the issuer when it is not a root they trust directly.
        if X509_check_issued(issuer.x509, issuer.x509) != X509_V_OK {
            X509_up_ref(issuer.x509)
            _ = carte_ssl_ctx_add_extra_chain_cert(ctx, issuer.x509)
        }
        guard !clientRoots.isEmpty, TLS.trust(ctx, (clientRoots + clientIntermediates).map(\.x509)) else { throw .setup("no CA to check client certificates against") }
        // The CAs the client may pick a certificate for (CertificateRequest certificate_authorities).
        for ca in clientIntermediates + clientRoots { _ = SSL_CTX_add_client_CA(ctx, ca.x509) }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        SSL_CTX_set_verify_depth(ctx, 4)
        _ = SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)
        _ = carte_ssl_ctx_set_session_cache_off(ctx)
        _ = SSL_CTX_set_options(ctx, UInt64(carte_ssl_op_no_ticket) | UInt64(carte_ssl_op_no_renegotiation))
        self.context = box

        // The listening socket: loopback only, checked by LoopbackEndpoint.
        let bound: (fd: Int32, port: UInt16)? = TLS.withAddress(host: endpoint.host, port: endpoint.port) { address, length, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return nil }
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            guard bind(fd, address, length) == 0, listen(fd, 16) == 0 else { close(fd); return nil }
            var storage = sockaddr_storage()
            var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let port: UInt16 = withUnsafeMutablePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &size) }
                if family == AF_INET6 { return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
            return (fd, port)
        } ?? nil
        guard let bound else { throw .setup("cannot listen on \(endpoint): \(String(cString: strerror(errno)))") }
        listener = bound.fd
        self.endpoint = endpoint.with(port: bound.port)
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "carte rights-service accept"
        thread.start()
    }

    /// Stops accepting: the listening socket is shut down here and closed by the accept thread as it
    /// ends; connections being served finish on their own (each within its timeout). The server and its
    /// socket live until then, whoever holds it.
    public func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        defer { close(listener) }
        while !stopped.load(ordering: .acquiring) {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if stopped.load(ordering: .acquiring) { return }  // stop() shut the listener down
                if errno != EINTR && errno != ECONNABORTED {
                    logger.warning("rights-service: accept failed (\(String(cString: strerror(errno)))); going on")
                    usleep(50_000)
                }
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            while active.load(ordering: .acquiring) >= maximumConnections && !stopped.load(ordering: .acquiring) { usleep(5_000) }
            active.add(1, ordering: .acquiringAndReleasing)
            let thread = Thread { [self] in
                serve(fd)
                close(fd)
                active.subtract(1, ordering: .acquiringAndReleasing)
            }
            thread.name = "carte rights-service connection"
            thread.start()
        }
    }

    private func record(_ outcome: Outcome, _ peer: String, _ detail: String) {
        counts.withLock { $0[outcome, default: 0] += 1 }
        // NIRs are health identifiers: a successful answer names its NIR at debug level only.
        if outcome == .answered {
            logger.info("rights-service: \(peer): answered")
            logger.debug("rights-service: \(peer): \(detail)")
        } else {
            logger.warning("rights-service: refused \(peer): \(outcome.rawValue): \(TLS.printable(detail))")
        }
    }

    private func serve(_ fd: Int32) {
        TLS.blockSIGPIPE()
        TLS.setTimeouts(fd, seconds: connectionTimeout)
        let deadline = Deadline(fd: fd, seconds: connectionTimeout)
        defer { deadline.finish() }
        let peer = Self.peerName(fd)
        guard let ssl = SSL_new(context.ctx) else { return }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        _ = TLS.drainErrors()
        guard SSL_accept(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            let reason = deadline.expired ? "no complete handshake within \(connectionTimeout) s" : TLS.lastReason("the connection closed during the handshake")
            switch Int32(verify) {
            case X509_V_OK where reason.contains("did not return a certificate") || reason.contains("peer did not return"):
                record(.noClientCertificate, peer, "no client certificate")
            case X509_V_OK:
                record(.handshakeFailed, peer, reason)
            case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID:
                record(.expiredClientCertificate, peer, TLS.verifyText(verify))
            default:
                record(.untrustedClientCertificate, peer, TLS.verifyText(verify))
            }
            return
        }
        let professional = Self.professional(ssl)
        let (status, body, detail) = respond(ssl, professional)
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large", 408: "Request Timeout"][status] ?? "Error"
        let message = TLS.httpMessage(startLine: "HTTP/1.1 \(status) \(reason)", headers: [("Content-Type", "application/json")], body: body)
        _ = TLS.writeAll(ssl, message)
        _ = SSL_shutdown(ssl)
        record(status == 200 ? .answered : .refusedRequest, peer, "\(professional.name ?? "?"): \(detail)")
    }

    /// Reads one request and builds the answer: status, body, and what the log says.
    private func respond(_ ssl: OpaquePointer, _ professional: RightsService.Professional) -> (Int, [UInt8], String) {
        func refuse(_ status: Int, _ kind: String, _ message: String) -> (Int, [UInt8], String) {
            (status, RightsErrorDocument(status: status, error: kind, message: message).json(), "\(status) \(kind): \(message)")
        }
        guard let head = TLS.readHead(ssl, limit: 8192) else {
            return refuse(400, "bad-request", "no complete request head within 8 KiB and \(connectionTimeout) s")
        }
        let request: RightsRequest
        do { request = try RightsRequest.parse(head: head) } catch { return refuse(error.status, error.kind, error.message) }
        var day: VitaleDate
        if let date = request.date { day = date } else {
            do { day = try VitaleDate.todayInParis() } catch { return refuse(500, "internal", "cannot form today's date") }
        }
        do {
            let answer = try service.answer(nir: request.nir, on: day, professional: professional)
            return (200, answer.json(), "rights of \(answer.nir) on \(answer.date)")
        } catch {
            switch error {
            case .unknownNIR: return refuse(404, "unknown-nir", "no one with this NIR")
            default: return refuse(400, "invalid-nir", error.description)
            }
        }
    }

    private static func professional(_ ssl: OpaquePointer) -> RightsService.Professional {
        // The certificate object takes the reference SSL_get1_peer_certificate gave.
        guard let peer = SSL_get1_peer_certificate(ssl) else { return .init(name: nil, identifier: nil, certificateSerial: "?", issuer: "?") }
        let certificate = X509Certificate(owning: peer)
        return .init(name: certificate.subjectValue("CN"), identifier: certificate.subjectValue("serialNumber"), certificateSerial: certificate.serialNumber, issuer: certificate.issuerText)
    }

    private static func peerName(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { p -> String in
            guard p.withMemoryRebound(to: sockaddr.self, capacity: 1, { getpeername(fd, $0, &size) }) == 0 else { return "?" }
            var host = [CChar](repeating: 0, count: 64)
            if p.pointee.ss_family == sa_family_t(AF_INET6) {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { a in
                    var addr = a.pointee.sin6_addr
                    inet_ntop(AF_INET6, &addr, &host, 64)
                    return "[\(TLS.text(host))]:\(UInt16(bigEndian: a.pointee.sin6_port))"
                }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { a in
                var addr = a.pointee.sin_addr
                inet_ntop(AF_INET, &addr, &host, 64)
                return "\(TLS.text(host)):\(UInt16(bigEndian: a.pointee.sin_port))"
            }
        }
    }
}

/// Owns an `SSL_CTX` (OpenSSL contexts may be shared by threads once set up).
final class ContextBox: @unchecked Sendable {
    let ctx: OpaquePointer
    init(_ ctx: OpaquePointer) { self.ctx = ctx }
    deinit { SSL_CTX_free(ctx) }
}
