import CarteSimProtocol
import Glibc
import Synchronization

/// The configuration pcscd hands the driver in `DEVICENAME`:
/// `<socket path>:reader=<n>:slots=<k>[:timeout=<ms>][:uid=<uid>][:lane=0]` (reader.conf values take letters, digits and
/// `/._-:=`; `#` would start a comment).
struct DeviceConfig: Sendable {
    var socketPath: String
    var reader: UInt16
    var slots: Int
    /// Receive timeout for card commands (a slow card may take this long).
    var timeoutMilliseconds: Int
    /// The uid the daemon must run as (checked with `SO_PEERCRED`), when the entry says.
    var daemonUID: UInt32?
    /// Whether APDUs may take a shared-memory lane (`lane=0` keeps them on the socket).
    var lane = true

    /// The configuration of a reader.conf DEVICENAME, or of a USB device pcscd's hotplug found
    /// (`usb:VVVV/PPPP:libudev:…`): that one is in pcscd's environment, `CARTEKIT_USB_VVVV_PPPP`
    /// holding a DEVICENAME (how the tests' fake USB readers, made with umockdev, reach the daemon).
    init?(resolving device: String) {
        let usb = Array("usb:".utf8)
        let bytes = Array(device.utf8)
        guard bytes.starts(with: usb) else {
            self.init(parsing: device)
            return
        }
        // "usb:" + 4 hex + "/" + 4 hex
        guard bytes.count >= 13, bytes[8] == UInt8(ascii: "/") else { return nil }
        let vid = String(decoding: bytes[4..<8], as: UTF8.self).lowercased()
        let pid = String(decoding: bytes[9..<13], as: UTF8.self).lowercased()
        guard let value = getenv("CARTEKIT_USB_\(vid)_\(pid)") else { return nil }
        self.init(parsing: String(cString: value))
    }

    init?(parsing device: String) {
        // The last ":reader=" separates the path from the options (no Foundation in the driver).
        let bytes = Array(device.utf8)
        let marker = Array(":reader=".utf8)
        guard bytes.count > marker.count,
            let cut = stride(from: bytes.count - marker.count, through: 0, by: -1).first(where: { bytes[$0..<($0 + marker.count)].elementsEqual(marker) })
        else { return nil }
        socketPath = String(decoding: bytes[..<cut], as: UTF8.self)
        let options = String(decoding: bytes[(cut + 1)...], as: UTF8.self)
        reader = 0
        slots = 1
        timeoutMilliseconds = 30_000
        for pair in options.split(separator: ":") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let value = Int(kv[1]) else { return nil }
            switch kv[0] {
            case "reader": reader = UInt16(clamping: value)
            case "slots": slots = min(max(value, 1), 16)
            case "timeout": timeoutMilliseconds = min(max(value, 100), 600_000)
            case "uid": daemonUID = UInt32(clamping: value)
            case "lane": lane = value != 0
            default: return nil
            }
        }
        guard !socketPath.isEmpty, socketPath.utf8.count < 108 else { return nil }
    }
}

/// One slot's connection to the simulator daemon. Every call is bounded by a timeout; when the daemon
/// is gone the link fails at once (connect on a missing socket fails immediately), so pcscd never blocks.
final class SlotLink: @unchecked Sendable {
    let config: DeviceConfig
    let slot: UInt16
    private let lock = Mutex(())
    private var fd: Int32 = -1
    /// The timeout the socket has, to skip setting it again.
    private var appliedTimeout: Int?
    private var reader = FrameReader()
    /// The shared-memory lane the daemon handed over (APDUs cross it without a system call), if any.
    private var lane: SharedLane?
    private var description: ReaderDescription?
    private var atr: [UInt8] = []
    private var lastInsertion: UInt32?
    private var lastReported: SlotPresence?
    /// Until when presence reports "absent" after a card swap was seen.
    private var absentUntil: ContinuousClock.Instant?
    /// Longer than pcscd's presence poll (400 ms), so pcscd's own poll is sure to see the removal even
    /// if pcscd also asks for presence elsewhere (and ignores the answer) in between.
    static let swapAbsence: Duration = .milliseconds(600)
    /// How long pcscd's thread polls for the daemon's answer before sleeping: a simulated card answers in
    /// microseconds, so most answers are taken without waking a sleeping thread (see
    /// `FrameReader.next(_:spin:)`); a slow or mute card costs at most this much processor time.
    static let answerSpin: Duration = .microseconds(50)

    /// Set while a secure PIN entry holds the connection (see ``beginPINEntry()``).
    /// Holds the last presence reported too, readable without `lock`.
    private let pinEntry = Mutex<(active: Bool, last: SlotPresence?)>((false, nil))

    /// Marks the start of a secure PIN entry: presence answers from the last state until it ends.
    func beginPINEntry() { pinEntry.withLock { $0.active = true } }
    /// Marks its end.
    func endPINEntry() { pinEntry.withLock { $0.active = false } }

    /// The reader description from the last attach (kept when the daemon goes away).
    var cachedDescription: ReaderDescription? { lock.withLock { _ in description } }
    /// The ATR of the last power-up (pcscd asks for it with `TAG_IFD_ATR`).
    var cachedATR: [UInt8] {
        get { lock.withLock { _ in atr } }
        set { lock.withLock { _ in atr = newValue } }
    }

    init(config: DeviceConfig, slot: UInt16) {
        self.config = config
        self.slot = slot
    }

    deinit { if fd >= 0 { close(fd) } }

    enum Failure: Error {
        case unreachable
        case failed(WireFailure, String)
    }

    /// Sends one request and returns the payload of the `ok` answer. `timeout` in milliseconds.
    ///
    /// A request is sent again on a fresh connection only when it certainly did not run: the
    /// connection broke before the request was written (a restarted daemon), or the daemon did not
    /// know the connection. After a receive failure or timeout a command may have reached the card,
    /// so it is never repeated (a VERIFY or a signature must not run twice).
    func request(_ type: MessageType, _ payload: [UInt8] = [], timeout: Int) -> Result<[UInt8], Failure> {
        lock.withLock { _ in
            for attempt in 0..<2 {
                if fd < 0 {
                    guard open() else { return .failure(.unreachable) }
                }
                setTimeout(timeout)
                let outcome: Exchange
                if type == .transmit, let lane {
                    switch lane.transmit(payload, spin: SlotLink.answerSpin) {
                    case .answer(let response): return .success(response)
                    case .onSocket: outcome = receive()
                    case .notPosted: outcome = exchange(Frame(type, payload))
                    case .malformed:
                        closeLink()
                        return .failure(.unreachable)
                    }
                } else {
                    lane?.closeForSocket()
                    outcome = exchange(Frame(type, payload))
                }
                switch outcome {
                case .reply(let reply):
                    if reply.type == .ok { return .success(reply.payload) }
                    if let f = reply.failure {
                        if f.code == .notAttached && attempt == 0 { closeLink(); continue }
                        return .failure(.failed(f.code, f.message))
                    }
                    return .failure(.failed(.other, "unexpected reply"))
                case .notSent:
                    closeLink()
                    if attempt == 0 { continue }
                    return .failure(.unreachable)
                case .noReply:
                    closeLink()
                    return .failure(.unreachable)
                }
            }
            return .failure(.unreachable)
        }
    }

    /// Presence. When the daemon's insertion counter moved since the last call while a card is present
    /// (a card swapped, possibly within one 400 ms poll), the slot reads "absent" for ``swapAbsence``,
    /// so pcscd reports a removal and then an insertion of the new card.
    func presence(timeout: Int) -> SlotPresence? {
        // While the keypad takes a PIN the connection is busy: the card is still the one being used.
        // (Read without `lock`, which the PIN entry's request holds.)
        if let held = pinEntry.withLock({ $0.active ? ($0.last ?? .present) : nil }) { return held }
        guard case .success(let bytes) = request(.presence, timeout: timeout), let first = bytes.first,
            let state = SlotPresence(rawValue: first)
        else { return nil }
        guard let insertion = readU32(bytes, 1) else { return state }
        let now = ContinuousClock.now
        return lock.withLock { _ -> SlotPresence in
            // Only a swap under a card pcscd believes present needs the absence: after an absence
            // pcscd sees the new card as an insertion anyway.
            if let last = lastInsertion, last != insertion, state != .absent, lastReported != .absent {
                absentUntil = now + SlotLink.swapAbsence
            }
            lastInsertion = insertion
            var reported = state
            if let until = absentUntil {
                if now < until { reported = .absent } else { absentUntil = nil }
            }
            lastReported = reported
            pinEntry.withLock { $0.last = reported }
            return reported
        }
    }

    /// Opens, says hello and attaches to the slot. Called with the lock held.
    private func open() -> Bool {
        guard case .success(let s) = SocketIO.connect(to: config.socketPath) else { return false }
        if let expected = config.daemonUID {
            // Only a daemon running as the expected user may play cards to pcscd.
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (declared only under _GNU_SOURCE).
            var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
            var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
            guard getsockopt(s, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.1 == expected else {
                close(s)
                return false
            }
        }
        fd = s
        setTimeout(2_000)
        guard case .reply(let h) = exchange(.hello(.driver)), h.type == .ok else {
            closeLink()
            return false
        }
        let attach = bigEndianU16(config.reader) + bigEndianU16(slot)
        guard case .reply(let a) = exchange(Frame(.attach, attach)), a.type == .ok, let d = try? ReaderDescription(decoding: a.payload) else {
            closeLink()
            return false
        }
        description = d
        if config.lane {
            switch SharedLane.negotiate(on: fd) {
            case .lane(let l): lane = l
            case .refused: break
            case .broken:
                closeLink()
                return false
            }
        }
        return true
    }

    private func closeLink() {
        if fd >= 0 { close(fd) }
        fd = -1
        appliedTimeout = nil
        reader = FrameReader()
        lane = nil
    }

    /// Sets the socket's timeouts, unless they already have this value (two system calls saved per request).
    private func setTimeout(_ milliseconds: Int) {
        guard appliedTimeout != milliseconds else { return }
        SocketIO.setTimeout(fd, milliseconds: milliseconds)
        appliedTimeout = milliseconds
    }

    private enum Exchange {
        case reply(Frame)
        /// The request was not (completely) written: it did not run.
        case notSent
        /// Written, but no valid answer came (timeout, closed): it may have run.
        case noReply
    }

    /// Writes a frame and reads the answer.
    private func exchange(_ frame: Frame) -> Exchange {
        guard SocketIO.sendAll(fd, frame.encoded()) else { return .notSent }
        return receive()
    }

    /// Reads the answer to a request already made (on the socket or through the lane).
    private func receive() -> Exchange {
        guard let reply = reader.next(fd, spin: SlotLink.answerSpin).frame else { return .noReply }
        return .reply(reply)
    }
}

/// Every reader pcscd opened through this driver, by reader number (`Lun >> 16`).
let configurations = Mutex<[UInt: DeviceConfig]>([:])
/// Every slot link, by `Lun`.
let links = Mutex<[UInt: SlotLink]>([:])

/// The link for `lun` (created on first use: pcscd opens slot 0 only and addresses the others directly).
func link(for lun: UInt) -> SlotLink? {
    if let existing = links.withLock({ $0[lun] }) { return existing }
    guard let config = configurations.withLock({ $0[lun >> 16] }) else { return nil }
    let slot = UInt16(lun & 0xFFFF)
    guard Int(slot) < config.slots else { return nil }
    let new = SlotLink(config: config, slot: slot)
    return links.withLock { l in
        if let raced = l[lun] { return raced }
        l[lun] = new
        return new
    }
}
