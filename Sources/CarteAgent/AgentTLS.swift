public import CarteCrypto
import Foundation

/// The certificates of `wss://` (docs/agent.md, "wss:// and the local CA"): a CA made on first run for
/// this user only, name-constrained to `localhost`, `127.0.0.1` and `::1` (it cannot vouch for any other
/// host, even if its key were stolen), and the agent's server certificate issued by it, renewed when
/// it has less than 30 days left. In `~/.config/cartekit/agent-tls/`, keys mode 0600.
public struct AgentTLS: Sendable {
    /// The folder.
    public var directory: String

    /// The folder of `files` (`~/.config/cartekit/agent-tls`).
    public init(files: AgentFiles) {
        directory = files.userDirectory + "/agent-tls"
    }

    /// The CA's certificate (what `carte agent trust install` adds to the browsers).
    public var caCertificate: String { directory + "/ca.pem" }
    var caKey: String { directory + "/ca-key.pem" }
    var serverCertificate: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server-key.pem" }

    /// What the TLS listener needs.
    public struct Material: Sendable {
        /// The server certificate then the CA's, PEM.
        public var chainPEM: String
        /// The server's key, PEM.
        public var keyPEM: String
        /// The CA certificate.
        public var ca: X509Certificate
    }

    /// The names the CA may vouch for, and the server certificate holds.
    static let permitted = ["DNS:localhost", "IP:127.0.0.1/255.255.255.255", "IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    static let serverNames = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]

    /// Loads the CA and the server certificate, making them on first use (the server certificate again
    /// when it expires within 30 days).
    public func material(now: Int64 = currentUnixTime()) throws(AgentFiles.Problem) -> Material {
        try makeDirectory()
        let ca: X509Certificate
        let caKey: RSAPrivateKey
        if FileManager.default.fileExists(atPath: caCertificate) {
            ca = try read(caCertificate) { text throws(CryptoError) in try X509Certificate(pem: text) }
            caKey = try readSecret(self.caKey) { text throws(CryptoError) in try RSAPrivateKey(pem: text) }
        } else {
            do {
                caKey = try RSAPrivateKey.generate(bits: 2048)
                var builder = CertificateBuilder(subject: [("O", "CarteKit"), ("CN", "CarteKit agent local CA (\(NSUserName())@\(ProcessInfo.processInfo.hostName))")],
                                                 serial: UInt64.random(in: 1...UInt64(Int64.max)), notBefore: now - 3600, notAfter: now + 10 * 365 * 86_400,
                                                 keyUsage: [.keyCertSign, .cRLSign], isCertificateAuthority: true)
                builder.permittedNames = AgentTLS.permitted
                ca = try builder.issue(publicKeyOf: caKey, issuer: nil, issuerKey: caKey)
            } catch {
                throw AgentFiles.Problem(file: caCertificate, line: 0, reason: "the local CA cannot be made: \(error)")
            }
            try write(self.caKey, caKey.pem)
            try write(caCertificate, ca.pem)
        }
        var server: X509Certificate? = nil
        var serverKey: RSAPrivateKey? = nil
        if FileManager.default.fileExists(atPath: serverCertificate), FileManager.default.fileExists(atPath: self.serverKey) {
            let c = try read(serverCertificate) { text throws(CryptoError) in try X509Certificate(pem: text) }
            if c.notAfter - now > 30 * 86_400, (try? c.verifyChain(intermediates: [], roots: [ca], at: now)) != nil {
                server = c
                serverKey = try readSecret(self.serverKey) { text throws(CryptoError) in try RSAPrivateKey(pem: text) }
            }
        }
        if server == nil || serverKey == nil {
            do {
                let key = try RSAPrivateKey.generate(bits: 2048)
                var builder = CertificateBuilder(subject: [("O", "CarteKit"), ("CN", "localhost")], serial: UInt64.random(in: 1...UInt64(Int64.max)),
                                                 notBefore: now - 3600, notAfter: min(now + 365 * 86_400, ca.notAfter),
                                                 keyUsage: [.digitalSignature, .keyEncipherment], extendedKeyUsage: ["serverAuth"])
                builder.subjectAlternativeNames = AgentTLS.serverNames
                server = try builder.issue(publicKeyOf: key, issuer: ca, issuerKey: caKey)
                serverKey = key
            } catch {
                throw AgentFiles.Problem(file: serverCertificate, line: 0, reason: "the server certificate cannot be made: \(error)")
            }
            try write(self.serverKey, serverKey!.pem)
            try write(serverCertificate, server!.pem)
        }
        return Material(chainPEM: server!.pem + ca.pem, keyPEM: serverKey!.pem, ca: ca)
    }

    private func makeDirectory() throws(AgentFiles.Problem) {
        guard !FileManager.default.fileExists(atPath: directory) else { return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw AgentFiles.Problem(file: directory, line: 0, reason: "cannot be created (\((error as NSError).localizedDescription))")
        }
    }

    private func read<T>(_ path: String, _ parse: (String) throws(CryptoError) -> T) throws(AgentFiles.Problem) -> T {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw AgentFiles.Problem(file: path, line: 0, reason: "cannot be read: delete the folder \(directory) for new certificates")
        }
        do { return try parse(text) } catch {
            throw AgentFiles.Problem(file: path, line: 0, reason: "is not a valid PEM file (\(error)): delete the folder \(directory) for new certificates")
        }
    }

    /// Reads a key, refusing one that others can read.
    private func readSecret<T>(_ path: String, _ parse: (String) throws(CryptoError) -> T) throws(AgentFiles.Problem) -> T {
        var info = stat()
        guard stat(path, &info) == 0 else { throw AgentFiles.Problem(file: path, line: 0, reason: "is missing: delete the folder \(directory) for new certificates") }
        guard info.st_mode & 0o077 == 0, info.st_uid == getuid() else {
            throw AgentFiles.Problem(file: path, line: 0, reason: "is readable by others or not yours (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it")
        }
        return try read(path, parse)
    }

    private func write(_ path: String, _ text: String) throws(AgentFiles.Problem) {
        try AgentFiles.writePrivate(path, text)
    }
}
