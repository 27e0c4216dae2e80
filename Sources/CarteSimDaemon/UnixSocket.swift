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
        switch SocketIO.connect(to: path) {
        case .success(let fd):
            let s = FramedSocket(fd: fd)
            s.setTimeout(timeoutMilliseconds)
            return s
        case .failure(let f):
            throw SocketError(f, path: path)
        }
    }

    /// Send and receive timeout; 0 means none.
    func setTimeout(_ milliseconds: Int) { SocketIO.setTimeout(fd, milliseconds: milliseconds) }

    /// Writes a frame. Returns false when the peer is gone.
    @discardableResult
    func send(_ frame: Frame) -> Bool { SocketIO.sendAll(fd, frame.encoded()) }

    /// Reads a frame (one thread at a time: the connection's own), polling for `spin` first (see
    /// ``FrameReader/next(_:spin:)``).
    func receive(spin: Duration = .zero) throws(WireError) -> Frame {
        let (frame, error) = reader.next(fd, spin: spin)
        if let frame { return frame }
        throw error ?? .closed(midFrame: false)
    }
}

extension SocketError {
    init(_ failure: UnixSocketFailure, path: String) {
        switch failure {
        case .pathLength(let capacity):
            self.init(operation: "socket", path: path, reason: "a Unix socket path must be 1 to \(capacity - 1) bytes long")
        case .system(let call, let code):
            self.init(operation: call, path: path, reason: String(cString: strerror(code)))
        }
    }
}
