import Foundation

/// The agent's files: the allow-lists of origins and the local programs' token (docs/agent.md).
///
/// - `/etc/cartekit/agent-origins`: the administrator's allow-list (read only by the agent).
/// - `~/.config/cartekit/agent-origins`: the user's own (`carte agent allow|deny`).
/// - `~/.config/cartekit/agent-token`: the token, made on first use, mode 0600 in a 0700 folder.
///
/// An allow-list file has one origin per line; `#` starts a comment; a line that is not an origin is
/// reported with its file and line, never skipped silently.
public struct AgentFiles: Sendable {
    /// The administrator's allow-list.
    public var systemOrigins: String
    /// The user's folder (`~/.config/cartekit`).
    public var userDirectory: String

    /// The files of the user running the agent (`XDG_CONFIG_HOME` respected).
    public init(systemOrigins: String = "/etc/cartekit/agent-origins", userDirectory: String? = nil) {
        self.systemOrigins = systemOrigins
        if let userDirectory {
            self.userDirectory = userDirectory
        } else {
            let env = ProcessInfo.processInfo.environment
            let config = env["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.config")
            self.userDirectory = config + "/cartekit"
        }
    }

    /// The user's allow-list file.
    public var userOrigins: String { userDirectory + "/agent-origins" }
    /// The token file.
    public var tokenFile: String { userDirectory + "/agent-token" }

    /// A file problem, with the file and the line.
    public struct Problem: Error, Hashable, Sendable, CustomStringConvertible {
        /// The file (empty when the problem is an argument, not a file's content).
        public var file: String
        /// The line (1-based), or 0 for the whole file.
        public var line: Int
        /// What is wrong.
        public var reason: String
        public var description: String { file.isEmpty ? reason : line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
    }

    /// An origin and where it is allowed.
    public struct AllowedOrigin: Hashable, Sendable {
        /// The origin, normalised.
        public var origin: String
        /// The file that allows it.
        public var file: String
    }

    /// Every allowed origin: the administrator's, then the user's. A missing file allows nothing.
    public func allowedOrigins() throws(Problem) -> [AllowedOrigin] {
        try AgentFiles.origins(in: systemOrigins) + AgentFiles.origins(in: userOrigins)
    }

    /// Reads one allow-list file.
    public static func origins(in path: String) throws(Problem) -> [AllowedOrigin] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Problem(file: path, line: 0, reason: "cannot be read as UTF-8 text (\((error as NSError).localizedDescription))")
        }
        return try origins(text: text, file: path)
    }

    /// Parses the text of an allow-list file (`file` names it in problems).
    public static func origins(text: String, file path: String) throws(Problem) -> [AllowedOrigin] {
        var out: [AllowedOrigin] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if line.isEmpty { continue }
            guard let origin = AgentAccess.normalise(origin: line) else {
                throw Problem(file: path, line: i + 1, reason: "\"\(line.prefix(80))\" is not an origin (scheme://host[:port], http or https)")
            }
            out.append(AllowedOrigin(origin: origin, file: path))
        }
        return out
    }

    /// Adds `origin` to the user's allow-list (once). Returns the normalised origin.
    @discardableResult
    public func allow(_ origin: String) throws(Problem) -> String {
        guard let o = AgentAccess.normalise(origin: origin) else {
            throw Problem(file: "", line: 0, reason: "\"\(origin.prefix(80))\" is not an origin (scheme://host[:port], http or https)")
        }
        let current = try AgentFiles.origins(in: userOrigins).map(\.origin)
        guard !current.contains(o) else { return o }
        try write(userOrigins, (current + [o]).joined(separator: "\n") + "\n")
        return o
    }

    /// Removes `origin` from the user's allow-list; `false` if it was not there. An origin of the
    /// administrator's file cannot be removed by the user (the problem says so).
    @discardableResult
    public func deny(_ origin: String) throws(Problem) -> Bool {
        guard let o = AgentAccess.normalise(origin: origin) else {
            throw Problem(file: "", line: 0, reason: "\"\(origin.prefix(80))\" is not an origin (scheme://host[:port], http or https)")
        }
        let current = try AgentFiles.origins(in: userOrigins).map(\.origin)
        if !current.contains(o) {
            if try AgentFiles.origins(in: systemOrigins).contains(where: { $0.origin == o }) {
                throw Problem(file: systemOrigins, line: 0, reason: "\(o) is allowed by the administrator's file; only they can remove it")
            }
            return false
        }
        let kept = current.filter { $0 != o }
        try write(userOrigins, kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n")
        return true
    }

    /// The token, made (32 random bytes, hex) on first use in a file only the user can read.
    public func token() throws(Problem) -> String {
        if FileManager.default.fileExists(atPath: tokenFile) {
            var info = stat()
            guard stat(tokenFile, &info) == 0 else { throw Problem(file: tokenFile, line: 0, reason: "cannot be examined: \(String(cString: strerror(errno)))") }
            guard info.st_mode & 0o077 == 0 else {
                throw Problem(file: tokenFile, line: 0, reason: "is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it, or delete it for a new token")
            }
            guard info.st_uid == getuid() else { throw Problem(file: tokenFile, line: 0, reason: "belongs to another user") }
            let text: String
            do { text = try String(contentsOfFile: tokenFile, encoding: .utf8) } catch {
                throw Problem(file: tokenFile, line: 0, reason: "cannot be read")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count == 64, token.allSatisfy(\.isHexDigit) else { throw Problem(file: tokenFile, line: 1, reason: "is not a token (64 hex digits): delete it for a new one") }
            return token
        }
        // SystemRandomNumberGenerator: the kernel's getrandom(2), a cryptographic source.
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            .map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        try write(tokenFile, token + "\n")
        return token
    }

    /// Writes a file of the user's folder atomically, mode 0600, the folder 0700.
    private func write(_ path: String, _ text: String) throws(Problem) {
        if !FileManager.default.fileExists(atPath: userDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: userDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw Problem(file: userDirectory, line: 0, reason: "cannot be created (\((error as NSError).localizedDescription))")
            }
        }
        try AgentFiles.writePrivate(path, text)
    }

    /// Writes `text` to `path` atomically (a temporary file renamed over it), mode 0600, synced.
    static func writePrivate(_ path: String, _ text: String) throws(Problem) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Problem(file: path, line: 0, reason: "cannot be written: \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Problem(file: path, line: 0, reason: "cannot be written: \(String(cString: strerror(errno)))")
        }
    }
}
