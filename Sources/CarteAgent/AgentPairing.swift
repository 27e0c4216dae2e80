public import CarteCrypto
import Foundation
import Synchronization

/// Pairing (docs/agent.md, "Pairing"): a page whose origin is on no allow-list asks the agent for a
/// code, shows it, and the user confirms it with `carte agent pair CODE`, which adds the origin to the
/// user's allow-list. The request is a file only the user can read (`~/.config/cartekit/agent-pairing/CODE`,
/// holding the origin and its expiry), so the confirming command, another process, finds it; the agent
/// sees the allow-list change at the next connection.
public final class AgentPairing: Sendable {
    /// The folder of pending requests.
    public let directory: String
    /// How long a code is valid.
    public static let lifetime: Int64 = 300
    /// Pending codes at most, in all and per origin.
    static let maximum = 16
    static let maximumPerOrigin = 3
    private let lock = Mutex(())

    /// The pairing folder of `files`.
    public init(files: AgentFiles) {
        directory = files.userDirectory + "/agent-pairing"
    }

    /// Why a pairing failed.
    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        /// No pending request has that code (never made, or already used).
        case unknownCode
        /// The code expired.
        case expired
        /// Too many codes are pending (for this origin, or in all).
        case tooMany
        /// A file could not be read or written.
        case file(String)
        public var description: String {
            switch self {
            case .unknownCode: "no page asked for that code (or it was used already)"
            case .expired: "that code expired (codes last \(AgentPairing.lifetime / 60) minutes): ask the page for a new one"
            case .tooMany: "too many pairing codes are pending: confirm or let them expire"
            case .file(let why): why
            }
        }
    }

    /// A new code for `origin` (6 digits), valid ``lifetime`` seconds.
    public func request(origin: String, now: Int64 = currentUnixTime()) throws(Failure) -> String {
        try lock.withLock { _ throws(Failure) -> String in
            try makeDirectory()
            var pending = 0, forOrigin = 0
            for (code, entry) in entries() {
                if entry.expires <= now { unlink(path(code)); continue }
                pending += 1
                if entry.origin == origin { forOrigin += 1 }
            }
            guard pending < AgentPairing.maximum, forOrigin < AgentPairing.maximumPerOrigin else { throw .tooMany }
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<20 {
                let code = String(format: "%06d", Int.random(in: 0...999_999, using: &generator))
                let fd = open(path(code), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if fd < 0 { if errno == EEXIST { continue }; throw .file("\(path(code)): \(String(cString: strerror(errno)))") }
                let text = Array("\(origin)\n\(now + AgentPairing.lifetime)\n".utf8)
                let written = text.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                close(fd)
                guard written == text.count else { unlink(path(code)); throw .file("\(path(code)): cannot be written") }
                return code
            }
            throw .tooMany
        }
    }

    /// Takes the request of `code` (once): its origin. Expired or unknown codes fail.
    public func take(code: String, now: Int64 = currentUnixTime()) throws(Failure) -> String {
        try lock.withLock { _ throws(Failure) -> String in
            let origin = try self.origin(of: code, now: now)
            unlink(path(code))
            return origin
        }
    }

    /// The origin a pending code is for, without taking it (to show the user what they confirm). An
    /// expired code is removed and fails with ``Failure/expired``; an unknown one with ``Failure/unknownCode``.
    public func origin(of code: String, now: Int64 = currentUnixTime()) throws(Failure) -> String {
        guard code.count == 6, code.allSatisfy({ $0.isASCII && $0.isNumber }), let entry = entry(code) else { throw .unknownCode }
        guard entry.expires > now else {
            unlink(path(code))
            throw .expired
        }
        return entry.origin
    }

    private func path(_ code: String) -> String { directory + "/" + code }

    private func entry(_ code: String) -> (origin: String, expires: Int64)? {
        guard let text = try? String(contentsOfFile: path(code), encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n")
        guard lines.count == 2, let origin = AgentAccess.normalise(origin: String(lines[0])), let expires = Int64(lines[1]) else { return nil }
        return (origin, expires)
    }

    private func entries() -> [(String, (origin: String, expires: Int64))] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { code in entry(code).map { (code, $0) } }
    }

    private func makeDirectory() throws(Failure) {
        guard !FileManager.default.fileExists(atPath: directory) else { return }
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw .file("\(directory): cannot be created")
        }
    }
}

/// The allow-lists as the running agent sees them: the administrator's and the user's files, read
/// again when they change (a `carte agent allow` or a pairing takes effect at the next connection),
/// plus the origins given for the run.
public final class AgentAllowList: Sendable {
    private let files: AgentFiles
    private let fixed: Set<String>
    private let state = Mutex<(stamp: [String: Int], origins: Set<String>)>(([:], []))

    /// The allow-lists of `files`, and `fixed` origins.
    public init(files: AgentFiles, fixed: [String]) {
        self.files = files
        self.fixed = Set(fixed.compactMap { AgentAccess.normalise(origin: $0) })
    }

    /// Whether `origin` (normalised) is allowed now.
    public func contains(_ origin: String) -> Bool {
        if fixed.contains(origin) { return true }
        let stamp = Dictionary(uniqueKeysWithValues: [files.systemOrigins, files.userOrigins].map { path -> (String, Int) in
            var info = stat()
            return (path, stat(path, &info) == 0 ? Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec) ^ Int(info.st_size) : -1)
        })
        return state.withLock { s in
            if s.stamp != stamp {
                // A file that cannot be parsed now keeps what was allowed before (the agent logged the
                // problem at start; `carte agent list` shows it).
                if let all = try? files.allowedOrigins() { s.origins = Set(all.map(\.origin)) }
                s.stamp = stamp
            }
            return s.origins.contains(origin)
        }
    }
}
