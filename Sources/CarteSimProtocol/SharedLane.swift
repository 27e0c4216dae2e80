import CSimLane
#if canImport(Glibc)
import Glibc
#endif

/// A shared-memory lane for the APDUs of one driver connection: the daemon creates it (an anonymous,
/// sealed memory file handed over the connection with `SCM_RIGHTS`), both sides map it, and while the
/// daemon polls it a command and its response cross without a system call on either side. The socket
/// stays the connection: everything else (presence, power, control, failures, the answers the daemon
/// is slow to give) and its end (either side gone) go through it.
///
/// One word, the *state*, says who may touch the buffers:
///
/// | state | meaning | next |
/// |---|---|---|
/// | `closed` | nobody polls: the driver uses the socket | daemon opens it after answering an APDU |
/// | `open` | the daemon polls | driver posts (`posted`); the daemon or the driver closes it |
/// | `posted` | a command is in the request buffer | daemon answers (`answered`) or declines (`closed`); the driver stops waiting (`waitingOnSocket`) |
/// | `answered` | the response is in the response buffer | driver takes it (`open`); the daemon stops polling (`answeredAndClosed`) |
/// | `waitingOnSocket` | the driver waits on the socket for this command's reply | daemon replies on the socket (`closed`) |
/// | `answeredAndClosed` | the response is there, the daemon polls no more | driver takes it (`closed`) |
///
/// Every reply that does not cross the lane crosses the socket, so a driver that stops waiting, a
/// daemon that is slow (a delay fault, a keypad) or does not answer (a mute fault), and either side's
/// death are all handled by the socket as without a lane. Lengths read from the other side are checked
/// against the buffer's capacity before use.
package final class SharedLane: @unchecked Sendable {
    /// The state word's values (see the type's documentation).
    package enum State: UInt32, Sendable {
        case closed = 0
        case open = 1
        case posted = 2
        case answered = 3
        case waitingOnSocket = 4
        case answeredAndClosed = 5
    }

    /// Bytes per direction: an extended command (4 + 3 + 65 535 + 3 bytes) or response (65 536 + 2) fits.
    package static let capacity = 65_552
    static let magicOffset = 4
    static let requestLengthOffset = 64
    static let responseLengthOffset = 128
    static let dataOffset = 192
    /// The lane file's size: the header and both buffers, in whole pages.
    package static let size = (dataOffset + 2 * capacity + 4095) / 4096 * 4096
    /// "CKL1": the lane layout of this version.
    static let magic: UInt32 = 0x434B_4C31

    private let base: UnsafeMutableRawPointer
    /// The memory file (the daemon's, to hand to the driver); -1 on the driver's side (closed once mapped).
    package let fd: Int32
    private var word: UnsafeMutablePointer<UInt32> { base.assumingMemoryBound(to: UInt32.self) }

    private init(base: UnsafeMutableRawPointer, fd: Int32) {
        self.base = base
        self.fd = fd
    }

    deinit {
        munmap(base, SharedLane.size)
        if fd >= 0 { close(fd) }
    }

    private static func map(_ fd: Int32) -> UnsafeMutableRawPointer? {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else { return nil }
        return p
    }

    /// Daemon: a new lane, closed; `nil` (errno set) when the system refuses the memory file or mapping.
    package static func create() -> SharedLane? {
        let fd = simlane_memfd("cartekit-lane", size)
        guard fd >= 0 else { return nil }
        guard let p = map(fd) else {
            close(fd)
            return nil
        }
        p.storeBytes(of: magic, toByteOffset: magicOffset, as: UInt32.self)
        simlane_store(p.assumingMemoryBound(to: UInt32.self), State.closed.rawValue)
        return SharedLane(base: p, fd: fd)
    }

    /// Driver: maps the lane file `fd` the daemon handed over, and closes `fd`. `nil` unless it is a
    /// sealed file of exactly ``size`` bytes (so it can never shrink under the mapping) of this layout.
    package static func adopt(_ fd: Int32) -> SharedLane? {
        defer { close(fd) }
        guard simlane_check(fd, size) == 1, let p = map(fd) else { return nil }
        guard p.load(fromByteOffset: magicOffset, as: UInt32.self) == magic else {
            munmap(p, size)
            return nil
        }
        return SharedLane(base: p, fd: -1)
    }

    /// The current state (for tests and diagnostics); `nil` for a value no side writes.
    package var state: State? { State(rawValue: simlane_load(word)) }

    private func cas(_ from: State, _ to: State) -> Bool { simlane_cas(word, from.rawValue, to.rawValue) == 1 }

    private func length(at offset: Int) -> Int { Int(base.load(fromByteOffset: offset, as: UInt32.self)) }

    private func write(_ bytes: [UInt8], lengthAt: Int, dataAt: Int) {
        base.storeBytes(of: UInt32(bytes.count), toByteOffset: lengthAt, as: UInt32.self)
        bytes.withUnsafeBytes { (base + dataAt).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    // MARK: Driver side

    /// What became of a command offered to the lane.
    package enum Reply: Equatable, Sendable {
        /// The daemon's response came through the lane.
        case answer([UInt8])
        /// The command was taken (or is being waited for) but its reply, if any, comes on the socket.
        case onSocket
        /// The daemon does not poll the lane (or the command does not fit): send it on the socket.
        case notPosted
        /// The daemon wrote a response length beyond the buffer: the connection cannot be trusted.
        case malformed(Int)
    }

    /// Driver: posts `command` when the daemon polls, and polls for the response for up to `spin` (a
    /// simulated card answers in microseconds); after that the driver waits on the socket (``Reply/onSocket``).
    package func transmit(_ command: [UInt8], spin: Duration) -> Reply {
        guard !command.isEmpty, command.count <= SharedLane.capacity, simlane_load(word) == State.open.rawValue else { return .notPosted }
        write(command, lengthAt: SharedLane.requestLengthOffset, dataAt: SharedLane.dataOffset)
        guard cas(.open, .posted) else { return .notPosted }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + spin
        while true {
            let s = simlane_load(word)
            if s == State.answered.rawValue || s == State.answeredAndClosed.rawValue {
                // (The daemon may stop polling meanwhile: answered becomes answeredAndClosed, never closed,
                // so a response that came is never mistaken for one sent on the socket.)
                let n = length(at: SharedLane.responseLengthOffset)
                let response = n <= SharedLane.capacity
                    ? [UInt8](UnsafeRawBufferPointer(start: base + SharedLane.dataOffset + SharedLane.capacity, count: n)) : nil
                if !cas(.answered, response == nil ? .closed : .open) { simlane_store(word, State.closed.rawValue) }
                guard let response else { return .malformed(n) }
                return .answer(response)
            }
            if s != State.posted.rawValue { return .onSocket }  // the daemon took it and replies on the socket
            if clock.now >= deadline {
                if cas(.posted, .waitingOnSocket) { return .onSocket }
                continue  // answered or closed meanwhile
            }
            // Lets the daemon's thread run if it waits for this processor (it costs nothing otherwise).
            sched_yield()
        }
    }

    /// Driver: closes the lane before a request on the socket, so the daemon stops polling at once.
    package func closeForSocket() { _ = cas(.open, .closed) }

    // MARK: Daemon side

    /// What the daemon found while polling.
    package enum Poll: Equatable, Sendable {
        /// A command; the driver already waits on the socket for its reply when `driverOnSocket`.
        case request([UInt8], driverOnSocket: Bool)
        /// Nothing within the polling time, or the driver closed the lane, or the socket has something
        /// (a request, or its end): read the socket. The lane is closed (or holds an answer the driver
        /// has yet to take: `answeredAndClosed`).
        case idle
        /// The driver wrote a request length outside 1…``capacity``. The lane is closed.
        case malformed(Int)
    }

    /// Daemon: opens the lane and polls it for up to `spin` (a card application's next APDU usually
    /// follows within one pcscd round trip), looking at `socket` now and then.
    package func poll(spin: Duration, socket: Int32) -> Poll {
        _ = cas(.closed, .open)
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + spin
        var nextSocketLook = start + .microseconds(8)
        var turns = 0
        // A few turns of pure polling, then a look at the clock and a yield of the processor at every
        // turn (the threads the next request comes through, pcscd's and its client's, may need this
        // processor: two cores here).
        while true {
            let s = simlane_load(word)
            switch State(rawValue: s) {
            case .posted?, .waitingOnSocket?:
                let n = length(at: SharedLane.requestLengthOffset)
                guard n >= 1, n <= SharedLane.capacity else {
                    simlane_store(word, State.closed.rawValue)
                    return .malformed(n)
                }
                let command = [UInt8](UnsafeRawBufferPointer(start: base + SharedLane.dataOffset, count: n))
                return .request(command, driverOnSocket: s == State.waitingOnSocket.rawValue)
            case .open?, .answered?:
                turns &+= 1
                guard turns >= 32 else {
                    simlane_relax()
                    continue
                }
                let now = clock.now
                var leave = now >= deadline
                if !leave && now >= nextSocketLook {
                    nextSocketLook = now + .microseconds(8)
                    var byte: UInt8 = 0
                    leave = recv(socket, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                }
                if leave {
                    // An answer not taken yet stays the driver's to take.
                    if s == State.open.rawValue ? cas(.open, .closed) : cas(.answered, .answeredAndClosed) { return .idle }
                    continue  // the driver posted or took the answer meanwhile
                }
                sched_yield()
            case .answeredAndClosed?:
                return .idle  // (not while polling: the driver takes its answer and closes the lane)
            case .closed?, nil:
                // The driver closed it (its request comes on the socket), or wrote a value no side writes.
                simlane_store(word, State.closed.rawValue)
                return .idle
            }
        }
    }

    /// Daemon: answers the command taken by ``poll(spin:socket:)`` through the lane. False when it
    /// cannot (the driver waits on the socket, or the response does not fit): the lane is then closed
    /// and the reply must go on the socket.
    package func answer(_ response: [UInt8]) -> Bool {
        if response.count <= SharedLane.capacity {
            write(response, lengthAt: SharedLane.responseLengthOffset, dataAt: SharedLane.dataOffset + SharedLane.capacity)
            if cas(.posted, .answered) { return true }
        }
        simlane_store(word, State.closed.rawValue)
        return false
    }

    /// Daemon: the command taken is not answered through the lane (the reply, if any, goes on the
    /// socket). Closes the lane; call it before writing that reply.
    package func decline() { simlane_store(word, State.closed.rawValue) }

    /// Test support: writes a raw value into the state word or a length field, as a faulty peer would.
    package func corrupt(state: UInt32? = nil, requestLength: UInt32? = nil, responseLength: UInt32? = nil) {
        if let requestLength { base.storeBytes(of: requestLength, toByteOffset: SharedLane.requestLengthOffset, as: UInt32.self) }
        if let responseLength { base.storeBytes(of: responseLength, toByteOffset: SharedLane.responseLengthOffset, as: UInt32.self) }
        if let state { simlane_store(word, state) }
    }

    /// Test support: posts a command of announced length `length` with no such bytes, as a faulty driver
    /// would; false when the daemon does not poll.
    package func postMalformed(length: UInt32) -> Bool {
        base.storeBytes(of: length, toByteOffset: SharedLane.requestLengthOffset, as: UInt32.self)
        return cas(.open, .posted)
    }

    /// Test support: a second mapping of this lane's file, as the driver's process would have.
    package func peer() -> SharedLane? {
        guard fd >= 0 else { return nil }
        return SharedLane.adopt(dup(fd))
    }
}

extension SharedLane {
    /// What a driver's ``MessageType/lane`` request came to.
    package enum Negotiation {
        /// The daemon handed over a lane, mapped.
        case lane(SharedLane)
        /// The daemon answered without a (usable) lane: the connection goes on, on the socket only.
        case refused
        /// No well-formed reply came: the connection is unusable.
        case broken
    }

    /// Driver: asks the daemon for a lane on connection `socket`, which has no other exchange under way.
    package static func negotiate(on socket: Int32) -> Negotiation {
        guard SocketIO.sendAll(socket, Frame(.lane).encoded()) else { return .broken }
        // The reply is one small frame, sent in one message with the descriptor attached.
        var buffer = [UInt8](repeating: 0, count: 512)
        var passed: Int32 = -1
        let n = buffer.withUnsafeMutableBytes { simlane_receive_fd(socket, $0.baseAddress, $0.count, &passed) }
        func fail(_ outcome: Negotiation) -> Negotiation {
            if passed >= 0 { close(passed) }
            return outcome
        }
        guard n >= 5, let length = try? Frame.length(fromHeader: buffer[0..<4]), n == 4 + length,
            let frame = try? Frame(body: buffer[4..<n])
        else { return fail(.broken) }
        guard frame.type == .ok, passed >= 0, readU32(frame.payload, 0) == UInt32(size) else { return fail(.refused) }
        guard let lane = adopt(passed) else { return .refused }  // adopt closed it
        return .lane(lane)
    }

    /// Daemon: the ``MessageType/ok`` reply to a lane request, with this lane's file attached.
    /// False when the peer is gone.
    package func sendOffer(on socket: Int32) -> Bool {
        let bytes = Frame(.ok, bigEndian(UInt32(SharedLane.size))).encoded()
        return bytes.withUnsafeBytes { simlane_send_fd(socket, $0.baseAddress, $0.count, fd) } == bytes.count
    }
}
