public import CarteEmulator
import CarteCore
package import CarteSimProtocol
import Foundation
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Plays the card side ("vicc") of vsmartcard's vpcd protocol for one virtual slot, so a site with a
/// stock vpcd driver in pcscd can use CarteKit card images.
///
/// Protocol: ``VPCD`` and ``VPCDMessage`` (CarteSimProtocol) — 2-byte length frames, vpcd speaking
/// first, 1-byte bodies for controls (`00` power off, `01` power on, `02` reset, `04` get ATR), any other
/// body a command APDU answered with the response APDU (``answer(to:slot:)``). `TCP_QUICKACK` is set
/// before every read, which avoids the 40 ms delayed-ACK stall of vpcd versions that send the length
/// and the body in two writes.
///
/// Two modes: ``Mode/connect`` dials a listening vpcd (its default mode, port 35963 + slot);
/// ``Mode/listen`` waits for a vpcd in "reversed" mode (`DEVICENAME host:port`). Only loopback addresses
/// are accepted unless `allowRemote` is set.
public final class VPCDCardSide: Sendable {
    /// How the TCP connection is made.
    public enum Mode: Sendable, Equatable {
        /// Connect to a vpcd listening at host:port (retrying every 500 ms until it is there).
        case connect
        /// Listen at host:port for a vpcd in reversed mode.
        case listen
    }

    /// The slot whose card is played.
    public let slot: VirtualSlot
    /// The vpcd host (IPv4; loopback unless allowed).
    public let host: String
    /// The vpcd port (35963 + slot for a stock vpcd).
    public let port: UInt16
    /// Whether the card side dials vpcd or waits for it.
    public let mode: Mode
    /// A network namespace (`/proc/<pid>/ns/net`) to dial or listen in, instead of the daemon's own.
    public let networkNamespace: String?
    private let logger: Logger
    private let stopped = Mutex(false)
    private let sockets = Mutex<Set<Int32>>([])
    private let bound = Mutex<UInt16?>(nil)

    /// In listen mode, the port actually bound (useful with port 0: the system picks a free one).
    public var boundPort: UInt16? { bound.withLock { $0 } }

    /// Validates the address (loopback only unless `allowRemote`).
    public init(slot: VirtualSlot, host: String, port: UInt16, mode: Mode, allowRemote: Bool = false, networkNamespace: String? = nil, logger: Logger) throws(SocketError) {
        self.networkNamespace = networkNamespace
        guard allowRemote || host == "localhost" || host.hasPrefix("127.") else {
            throw SocketError(operation: "vpcd", path: "\(host):\(port)", reason: "only loopback addresses are allowed (pass --vpcd-allow-remote to override)")
        }
        self.slot = slot
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = port
        self.mode = mode
        self.logger = logger
    }

    /// Starts serving on a thread of its own.
    public func start() throws(SocketError) {
        if mode == .listen {
            let fd = try listenSocket()
            track(fd)
            let t = Thread { [self] in
                defer { release(fd) }
                while !isStopped {
                    let client = accept(fd, nil, nil)
                    if client < 0 { if isStopped { return }; usleep(50_000); continue }
                    track(client)
                    serve(client)
                    release(client)
                }
            }
            t.name = "cartekit.vpcd"
            t.start()
        } else {
            let t = Thread { [self] in
                if let networkNamespace {
                    // Only this thread moves into the namespace (setns on a network namespace is per thread).
                    let ns = open(networkNamespace, O_RDONLY)
                    let entered = ns >= 0 && enterNetworkNamespace(ns)
                    if ns >= 0 { close(ns) }
                    guard entered else {
                        logger.error("vpcd: cannot enter the network namespace \(networkNamespace): \(String(cString: strerror(errno)))")
                        return
                    }
                }
                while !isStopped {
                    if let fd = try? dial() {
                        track(fd)
                        serve(fd)
                        release(fd)
                    }
                    if !isStopped { usleep(500_000) }
                }
            }
            t.name = "cartekit.vpcd"
            t.start()
        }
    }

    /// Stops serving and closes the sockets.
    public func stop() {
        stopped.withLock { $0 = true }
        for fd in sockets.withLock({ $0 }) {
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    private var isStopped: Bool { stopped.withLock { $0 } }
    private func track(_ fd: Int32) { sockets.withLock { _ = $0.insert(fd) } }
    /// Closes a socket and forgets it (so `stop()` never touches a number reused by another socket).
    private func release(_ fd: Int32) {
        sockets.withLock { s in
            s.remove(fd)
            close(fd)
        }
    }

    private func address() throws(SocketError) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else {
            throw SocketError(operation: "vpcd", path: "\(host):\(port)", reason: "not an IPv4 address")
        }
        return a
    }

    private func listenSocket() throws(SocketError) -> Int32 {
        var a = try address()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket", "\(host):\(port)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 4) == 0 else {
            let e = SocketError.errno("bind", "\(host):\(port)")
            close(fd)
            throw e
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        bound.withLock { $0 = UInt16(bigEndian: actual.sin_port) }
        return fd
    }

    private func dial() throws(SocketError) -> Int32 {
        var a = try address()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket", "\(host):\(port)") }
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            let e = SocketError.errno("connect", "\(host):\(port)")
            close(fd)
            throw e
        }
        return fd
    }

    /// Answers vpcd until it closes the connection (the caller closes the socket).
    private func serve(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        logger.info("vpcd connected for \(slot.info.name)")
        while !isStopped {
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
            guard let header = SocketIO.receiveExactly(fd, 2), let length = try? VPCD.bodyLength(header: header) else { return }
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
            guard let body = length == 0 ? [] : SocketIO.receiveExactly(fd, length) else { return }
            let message = VPCDMessage(body: body)
            if case .unknownControl(let b) = message { logger.debug("vpcd: unknown control byte \(b)") }
            guard let answer = Self.answer(to: message, slot: slot) else { continue }
            // One write: length and body together (two writes are what stalls vpcd on delayed ACKs).
            guard let frame = try? VPCD.frame(answer), SocketIO.sendAll(fd, frame) else { return }
        }
    }

    /// What the card side sends back for `message` on `slot` (nil: no answer). Power on and reset
    /// power the card up (vpcd asks for the ATR next); an APDU is answered with the card's response, an
    /// empty body when there is no card; the answer always fits a frame (a response longer than
    /// ``VPCD/maximumBody`` becomes `6F00`, as a card that cannot answer says it).
    package static func answer(to message: VPCDMessage, slot: VirtualSlot) -> [UInt8]? {
        switch message {
        case .powerOff, .unknownControl: return nil
        case .powerOn, .reset:
            _ = slot.powerUp()
            return nil
        case .getATR:
            if case .present(let atr) = slot.slotState { return atr }
            return []
        case .apdu(let command):
            switch slot.transmitRaw(command) {
            case .success(let r): return r.count > VPCD.maximumBody ? [0x6F, 0x00] : r
            case .failure: return []  // no card: an empty answer
            }
        }
    }
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread. glibc declares `setns` only under `_GNU_SOURCE`,
/// which Swift's Glibc module does not set, so the symbol is looked up at run time.
private func enterNetworkNamespace(_ fd: Int32) -> Bool {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(nil, "setns") else { return false }
    let setns = unsafeBitCast(symbol, to: SetNS.self)
    let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET, <linux/sched.h>
    return setns(fd, cloneNewNet) == 0
}
