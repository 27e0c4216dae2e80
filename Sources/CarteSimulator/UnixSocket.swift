import CarteSimProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a socket operation failed: the system call, its errno text and the path.
public struct SocketError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The failing call (`bind`, `connect`, …).
    public var operation: String
    /// The socket path.
    public var path: String
    /// `strerror(errno)`, or a protocol message.
    public var reason: String

    /// Describes a failed socket operation.
    public init(operation: String, path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.reason = reason
    }

    static func errno(_ operation: String, _ path: String) -> SocketError {
        SocketError(operation: operation, path: path, reason: String(cString: strerror(Glibc.errno)))
    }

    public var description: String { "\(operation) \(path): \(reason)" }
}

/// A connected Unix-domain stream socket speaking the framed protocol (blocking I/O; use it from
/// threads of its own, never from Swift's cooperative pool).
final class FramedSocket: @unchecked Sendable {
    let fd: Int32
    private var reader = FrameReader()

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Connects to `path`, with send/receive timeouts.
    static func connect(to path: String, timeoutMilliseconds: Int = 5_000) throws(SocketError) -> FramedSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket", path) }
        var address = try socketAddress(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = SocketError.errno("connect", path)
            close(fd)
            throw e
        }
        let s = FramedSocket(fd: fd)
        s.setTimeout(timeoutMilliseconds)
        return s
    }

    /// Send and receive timeout; 0 means none.
    func setTimeout(_ milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes a frame. Returns false when the peer is gone.
    @discardableResult
    func send(_ frame: Frame) -> Bool { writeAll(frame.encoded()) }

    /// Reads a frame (one thread at a time: the connection's own).
    func receive() throws(WireError) -> Frame {
        let (frame, error) = reader.next(fd)
        if let frame { return frame }
        throw error ?? .closed(midFrame: false)
    }

    func writeAll(_ bytes: [UInt8]) -> Bool { SocketIO.sendAll(fd, bytes) }

    func readExactly(_ count: Int) -> [UInt8]? { SocketIO.receiveExactly(fd, count) }
}

func socketAddress(_ path: String) throws(SocketError) -> sockaddr_un {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
        throw SocketError(operation: "socket", path: path, reason: "a Unix socket path must be 1 to \(capacity - 1) bytes long")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        for (i, b) in bytes.enumerated() { buffer[i] = b }
    }
    return address
}
