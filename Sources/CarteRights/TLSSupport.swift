import COpenSSL
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// OpenSSL and socket plumbing shared by the server and the client. Every call here blocks: it runs
/// on the dedicated threads of ``RightsServer`` and ``RightsClient``, never on Swift's concurrency pool.
enum TLS {
    /// Signature algorithms both sides use: RSA PKCS#1 v1.5 only, the one thing a CPx card's
    /// INTERNAL AUTHENTICATE can produce (no RSA-PSS), hence also TLS 1.2 (TLS 1.3 requires PSS).
    static let pkcs1SignatureAlgorithms = "RSA+SHA256:RSA+SHA384:RSA+SHA512"

    /// The errors OpenSSL queued on this thread, oldest first, and the queue emptied.
    static func drainErrors() -> [String] {
        var out: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            out.append(text(buffer))
        }
        return out
    }

    /// The reason part of one OpenSSL error string (`error:0A000418:SSL routines::tlsv1 alert unknown ca`).
    static func reasonPart(_ error: String) -> String {
        error.split(separator: ":", omittingEmptySubsequences: false).last.map { String($0) }.flatMap { $0.isEmpty ? nil : $0 } ?? error
    }

    /// The reason part of OpenSSL's last queued error (`tlsv1 alert unknown ca`), or `fallback`.
    static func lastReason(_ fallback: String) -> String { drainErrors().last.map(reasonPart) ?? fallback }

    /// A NUL-terminated C buffer as text.
    static func text(_ chars: [CChar]) -> String { String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }

    /// A duration in seconds.
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    /// The text OpenSSL gives a certificate verification result.
    static func verifyText(_ code: Int) -> String { String(cString: X509_verify_cert_error_string(code)) }

    /// Reads until `\r\n\r\n` (at most `limit` bytes): the head of an HTTP message (a GET has no body).
    static func readHead(_ ssl: OpaquePointer, limit: Int) -> [UInt8]? {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while data.count <= limit {
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            guard n > 0 else { return nil }
            data += chunk[0..<Int(n)]
            if let end = headEnd(data) { return Array(data[..<end]) }
        }
        return nil
    }

    /// Where `\r\n\r\n` starts, if present.
    static func headEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 { return i }
        return nil
    }

    /// Writes everything (or fails).
    static func writeAll(_ ssl: OpaquePointer, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard n > 0 else { return false }
            offset += Int(n)
        }
        return true
    }

    /// Send and receive timeouts on a socket, so a stalled peer never holds a thread forever.
    static func setTimeouts(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A socket address for a loopback host (`127.x.y.z` or `::1`) and port.
    static func withAddress<R>(host: String, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t, Int32) -> R) -> R? {
        if host.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &a.sin6_addr) == 1 else { return nil }
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6) } }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { return nil }
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET) } }
    }

    /// Adds certificates to a context's trust store.
    static func trust(_ ctx: OpaquePointer, _ certificates: [OpaquePointer]) -> Bool {
        guard let store = SSL_CTX_get_cert_store(ctx) else { return false }
        for c in certificates where X509_STORE_add_cert(store, c) != 1 {
            // An identical certificate already present is fine.
            _ = drainErrors()
        }
        return true
    }

    /// Blocks SIGPIPE on the calling thread: a peer that goes away makes a write fail with EPIPE
    /// instead of ending the process (OpenSSL's socket writes do not pass MSG_NOSIGNAL). Only the
    /// service's and client's own threads call it; the process's signal dispositions are left alone.
    static func blockSIGPIPE() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// What a peer sent, made safe for one log line: control characters become `?`.
    static func printable(_ text: some StringProtocol) -> String {
        String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) })
    }

    /// A minimal HTTP/1.1 message (`Connection: close`, `Content-Length`).
    static func httpMessage(startLine: String, headers: [(String, String)], body: [UInt8]) -> [UInt8] {
        var text = startLine + "\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        text += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(text.utf8) + body
    }
}

/// A whole-exchange deadline for one socket: when it passes, the socket is shut down, so every
/// blocked read or write (inside a TLS handshake too) returns at once. `SO_RCVTIMEO` alone bounds each
/// read, not a peer that trickles a byte at a time. Call ``finish()`` before closing the socket: the
/// watchdog then never touches a descriptor number the system may have given to another file.
final class Deadline: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var fired = false
    private let fd: Int32

    init(fd: Int32, seconds: Double) {
        self.fd = fd
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            defer { lock.unlock() }
            if !done {
                fired = true
                shutdown(fd, Int32(SHUT_RDWR))
            }
        }
    }

    /// Whether the deadline passed before ``finish()``.
    var expired: Bool { lock.lock(); defer { lock.unlock() }; return fired }

    /// The exchange is over (the socket is about to be closed).
    func finish() { lock.lock(); done = true; lock.unlock() }
}
