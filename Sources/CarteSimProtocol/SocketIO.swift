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

/// Reads frames from a stream socket with as few `recv` calls as possible: one call usually brings a
/// whole frame (header and body), where reading the header and the body apart takes two.
public struct FrameReader {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    /// The next frame, or `nil` when the peer closed, a timeout expired or the frame is malformed
    /// (`error` says which).
    public mutating func next(_ fd: Int32) -> (frame: Frame?, error: WireError?) {
        while true {
            let available = buffer.count - start
            if available >= 4 {
                let header = Array(buffer[start..<(start + 4)])
                let length: Int
                do {
                    length = try Frame.length(fromHeader: header)
                } catch {
                    return (nil, error)
                }
                if available >= 4 + length {
                    let body = Array(buffer[(start + 4)..<(start + 4 + length)])
                    start += 4 + length
                    if start == buffer.count {
                        buffer.removeAll(keepingCapacity: true)
                        start = 0
                    }
                    do {
                        return (try Frame(body: body), nil)
                    } catch {
                        return (nil, error)
                    }
                }
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: 16_384)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return (nil, .closed(midFrame: !buffer.isEmpty)) }
            buffer += chunk[..<n]
        }
    }
}
