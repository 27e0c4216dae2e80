#if canImport(Glibc)
import Glibc
#endif

/// Blocking stream-socket helpers shared by the driver, the daemon and the vpcd card side.
public enum SocketIO {
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
