import Foundation

/// Reading and writing the files a command is given, with errors that say which file, what it was
/// for and why (kind `file`, exit 2): Foundation's own errors say "The operation could not be
/// completed" and nothing else on Linux.
enum FileIO {
    /// The whole content of `path` (`what` says what the file is for: "the file to sign").
    static func read(_ path: String, _ what: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw failure(path, what, writing: false)
        }
    }

    /// The content of `path` as UTF-8 text.
    static func readText(_ path: String, _ what: String) throws -> String {
        let data = try read(path, what)
        guard let text = String(data: data, encoding: .utf8) else {
            throw CLIError(kind: "file", message: "cannot read \(path) (\(what)): it is not UTF-8 text", exitCode: CarteExit.invalidInput)
        }
        return text
    }

    /// Writes `data` to `path` (replacing a file there, never a directory), atomically.
    static func write(_ data: Data, to path: String, _ what: String) throws {
        // A directory is refused before anything is written (an atomic write would fail anyway,
        // with no reason given).
        if isDirectory(path) { throw failure(path, what, writing: true) }
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw failure(path, what, writing: true)
        }
    }

    /// Fails now, before any work, when `path` cannot be written: a directory, or a missing or
    /// read-only directory.
    static func checkWritable(_ path: String, _ what: String) throws {
        if isDirectory(path) { throw failure(path, what, writing: true) }
        var st = stat()
        if stat(path, &st) == 0 {
            if access(path, W_OK) != 0 { throw failure(path, what, writing: true) }
            return
        }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if stat(parent, &st) != 0 || st.st_mode & S_IFMT != S_IFDIR || access(parent, W_OK) != 0 { throw failure(path, what, writing: true) }
    }

    /// Writes `text` as UTF-8 to `path`.
    static func write(_ text: String, to path: String, _ what: String) throws {
        try write(Data(text.utf8), to: path, what)
    }

    /// Creates the directory `path` (and its parents) unless it exists; says why it cannot.
    static func makeDirectory(_ path: String, _ what: String) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw CLIError(kind: "file", message: "cannot use \(path) (\(what)): it is a file, not a directory", exitCode: CarteExit.invalidInput)
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CLIError(kind: "file", message: "cannot create the directory \(path) (\(what)): \(reason(path, writing: true))", exitCode: CarteExit.invalidInput)
        }
    }

    /// The error for a failed read or write of `path`.
    static func failure(_ path: String, _ what: String, writing: Bool) -> CLIError {
        CLIError(kind: "file", message: "cannot \(writing ? "write" : "read") \(path) (\(what)): \(reason(path, writing: writing))", exitCode: CarteExit.invalidInput)
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    /// Why `path` cannot be read or written, found by looking at it and at its directory.
    static func reason(_ path: String, writing: Bool) -> String {
        var st = stat()
        if stat(path, &st) == 0 {
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR { return "it is a directory" }
            if !writing && type != S_IFREG { return "it is not a regular file" }
            if access(path, writing ? W_OK : R_OK) != 0 { return errnoText(errno) }
            return writing ? "the file could not be replaced (is its directory writable and not full?)" : "the file could not be read"
        }
        let missing = errno
        guard writing else { return missing == ENOENT ? "no such file" : errnoText(missing) }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if stat(parent, &st) != 0 { return "the directory \(parent) does not exist" }
        if st.st_mode & S_IFMT != S_IFDIR { return "\(parent) is not a directory" }
        if access(parent, W_OK) != 0 { return "\(parent): \(errnoText(errno))" }
        return errnoText(missing)
    }

    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "error \(code)" }
        return String(decoding: UnsafeRawBufferPointer(start: text, count: strlen(text)), as: UTF8.self).lowercased()
    }
}

/// Says before a service starts whether its loopback address can be listened on, in words: a port in
/// use is the user's to change (exit 2), not a card or reader problem, and not "cannot be reached".
enum ListenCheck {
    static func check(host: String, port: UInt16, option: String) throws {
        guard port != 0 else { return }  // the system chooses a free port
        let v6 = host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var result: Int32
        if v6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { return }
            result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return }
            result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard result != 0 else { return }
        let code = errno
        let endpoint = v6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        let why: String
        switch code {
        case EADDRINUSE: why = "the port is already in use by another program: give another one, or \(v6 ? "[::1]" : host):0 to let the system choose"
        case EACCES: why = "ports below 1024 need root: give a port from 1024 up, or 0"
        case EADDRNOTAVAIL: why = "this machine has no such address"
        default: why = FileIO.errnoText(code)
        }
        throw CLIError(kind: "socket", message: "cannot listen on \(endpoint) (\(option)): \(why)", exitCode: CarteExit.invalidInput)
    }
}
