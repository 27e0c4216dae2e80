#if canImport(Glibc)
import Glibc
#endif

/// Why a Unix-domain socket could not be set up.
package enum UnixSocketFailure: Error, Sendable, Equatable {
    /// The path is empty or does not fit `sun_path` (`capacity` bytes, the final NUL included).
    case pathLength(capacity: Int)
    /// A system call failed: its name and `errno`.
    case system(call: String, errno: Int32)
}

/// Blocking stream-socket helpers shared by the driver, the daemon and the vpcd card side.
public enum SocketIO {
    /// Checks that `path` fits a Unix-domain socket address.
    package static func checkPath(_ path: String) throws(UnixSocketFailure) {
        if case .failure(let f) = address(of: path) { throw f }
    }

    /// Binds `fd` to the Unix-domain socket address `path`.
    package static func bind(_ fd: Int32, to path: String) throws(UnixSocketFailure) {
        let address: sockaddr_un
        switch SocketIO.address(of: path) {
        case .success(let a): address = a
        case .failure(let f): throw f
        }
        let rc = withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw .system(call: "bind", errno: errno) }
    }

    /// The address of the Unix-domain socket at `path`.
    static func address(of path: String) -> Result<sockaddr_un, UnixSocketFailure> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return .failure(.pathLength(capacity: capacity)) }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        return .success(address)
    }

    /// A blocking stream socket connected to the Unix-domain socket at `path` (closed again on failure).
    package static func connect(to path: String) -> Result<Int32, UnixSocketFailure> {
        let address: sockaddr_un
        switch SocketIO.address(of: path) {
        case .success(let a): address = a
        case .failure(let f): return .failure(f)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failure(.system(call: "socket", errno: errno)) }
        let rc = withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let failure = UnixSocketFailure.system(call: "connect", errno: errno)
            close(fd)
            return .failure(failure)
        }
        return .success(fd)
    }

    /// Sets the send and receive timeouts of `fd`; 0 means none.
    package static func setTimeout(_ fd: Int32, milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes every byte (retrying on `EINTR`, never raising `SIGPIPE`). False when the peer is gone
    /// or the send timeout expired.
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Reads exactly `count` bytes (retrying on `EINTR`). `nil` when the peer closed the connection,
    /// an error occurred or the receive timeout expired.
    public static func receiveExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            offset += n
        }
        return out
    }
}

/// Reads frames from a stream socket with as few `recv` calls as possible: one call usually brings a
/// whole frame (header and body), where reading the header and the body apart takes two.
public struct FrameReader {
    private var buffer: [UInt8] = []
    private var start = 0
    /// Where `recv` writes, allocated on the first read and reused.
    private var chunk: [UInt8] = []

    public init() {}

    /// The next frame, or `nil` when the peer closed, a timeout expired or the frame is malformed
    /// (`error` says which).
    ///
    /// `spin`: how long to poll the socket (non-blocking reads, yielding the processor between them)
    /// before sleeping in a blocking read. An answer that comes within it costs no wake-up of a
    /// sleeping thread, which on a busy or virtual machine is most of a local round trip; the cost is
    /// at most `spin` of processor time per frame, and only while frames flow.
    public mutating func next(_ fd: Int32, spin: Duration = .zero) -> (frame: Frame?, error: WireError?) {
        var spinUntil: ContinuousClock.Instant? = spin > .zero ? ContinuousClock.now + spin : nil
        while true {
            let available = buffer.count - start
            if available >= 4 {
                let length: Int
                do {
                    length = try Frame.length(fromHeader: buffer[start..<(start + 4)])
                } catch {
                    return (nil, error)
                }
                if available >= 4 + length {
                    let body = (start + 4)..<(start + 4 + length)
                    start += 4 + length
                    let result: (frame: Frame?, error: WireError?)
                    do {
                        result = (try Frame(body: buffer[body]), nil)
                    } catch {
                        result = (nil, error)
                    }
                    if start == buffer.count {
                        buffer.removeAll(keepingCapacity: true)
                        start = 0
                    }
                    return result
                }
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            if chunk.isEmpty { chunk = [UInt8](repeating: 0, count: 16_384) }
            if let until = spinUntil {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    buffer += chunk[..<n]
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    if ContinuousClock.now < until {
                        // Let another thread of this processor run (two cores here: the thread the
                        // answer has to come from may need this one).
                        sched_yield()
                        continue
                    }
                    spinUntil = nil  // nothing yet: sleep until it comes
                    continue
                }
                // Closed or failed: the blocking read below says which.
                spinUntil = nil
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return (nil, .closed(midFrame: !buffer.isEmpty)) }
            buffer += chunk[..<n]
        }
    }
}
