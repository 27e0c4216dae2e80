public import CarteEmulator
import CarteCore
import CarteSimProtocol
import Foundation
public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The simulator daemon's socket server (`carte sim serve`): hosts the virtual readers of a
/// ``SimulatorBackend`` for the pcscd driver (`libifdcarte.so`) and for control clients
/// (`carte sim insert/remove/status`, tests), on one Unix-domain socket created with mode 0600.
///
/// One thread per connection, blocking I/O (never on Swift's cooperative pool). The protocol is in
/// `CarteSimProtocol`; control requests are JSON (documented in docs/simulator.md).
public final class SimulatorServer: Sendable {
    /// The backend whose readers are served.
    public let backend: SimulatorBackend
    /// The socket path.
    public let path: String
    private let loadImage: @Sendable (String) throws -> CardImage
    private let logger: Logger
    private let listener = Mutex<Int32>(-1)
    private let stopped = Mutex(false)
    private let clients = Mutex<Set<Int32>>([])
    /// The driver connection waiting for the answer a mute card does not give, per slot name: when
    /// the card is taken out (or another put in), that wait ends with "no card" at once, as a real
    /// reader reports the removal of the card it was talking to, instead of running to the driver's
    /// timeout while pcscd, blocked in the exchange, keeps showing the card.
    /// Exchanges answered whose recording (the activity log, reader events) is still to be done: the
    /// daemon answers first and records right after, and a control request waits for these first, so that
    /// it never misses an exchange its client has seen answered.
    private let pendingRecords = Atomic<Int>(0)

    /// APDUs answered through a driver's shared-memory lane, by slot name, since the daemon started.
    private let laneAnswers = Mutex<[String: Int]>([:])
    private let unanswered = Mutex<[String: FramedSocket]>([:])

    /// The most connections served at once (pcscd needs one per slot; control clients are short-lived).
    public static let maximumConnections = 256
    /// How long a new connection may take to say hello.
    public static let helloDeadlineMilliseconds = 10_000

    /// Creates a server; call ``start()`` to listen.
    /// - Parameter loadImage: turns an image argument of a control request (a path, `bundled:…`) into an image.
    /// - Parameter readerFaults: plays a reader-level fault (`unplug`, `plug`) on a physical reader (its
    ///   index) and returns what to report, or throws why it cannot; `nil` when the daemon has no way to
    ///   unplug a reader (only pcscd's hotplug removes readers: `carte sim serve --usb`).
    /// - Parameter usb: what `status` reports under `"usb"` (the fake USB readers' pcscd environment).
    public init(backend: SimulatorBackend, path: String, logger: Logger, loadImage: @escaping @Sendable (String) throws -> CardImage,
                readerFaults: (@Sendable (_ reader: Int, _ fault: String) throws -> String)? = nil, usb: [String: String]? = nil) {
        self.usb = usb
        self.backend = backend
        self.path = path
        self.logger = logger
        self.loadImage = loadImage
        self.readerFaults = readerFaults
        activity.attach(to: backend)
    }

    private let readerFaults: (@Sendable (Int, String) throws -> String)?
    private let usb: [String: String]?
    /// What the readers do, for the `events` and `trace` requests (consoles, bug reports).
    public let activity = SimulatorActivityLog()

    /// The faults played on a whole reader rather than a slot.
    public static let readerFaultNames = ["unplug", "plug"]

    /// Binds the socket (mode 0600; a stale socket file is replaced, a live one is an error) and starts
    /// accepting connections on a thread of its own.
    public func start() throws(SocketError) {
        do { try SocketIO.checkPath(path) } catch { throw SocketError(error, path: path) }
        // A socket file left by a daemon that died is replaced; one that answers belongs to a live daemon.
        if FileManager.default.fileExists(atPath: path) {
            if (try? FramedSocket.connect(to: path, timeoutMilliseconds: 500)) != nil {
                throw SocketError(operation: "bind", path: path, reason: "another simulator daemon is already serving this socket")
            }
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK {
                unlink(path)
            } else {
                throw SocketError(operation: "bind", path: path, reason: "the path exists and is not a socket")
            }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .errno("socket", path) }
        do {
            try SocketIO.bind(fd, to: path)
        } catch {
            close(fd)
            throw SocketError(error, path: path)
        }
        // 0600 before listen: nobody can connect in between, and no process-wide umask is touched.
        guard chmod(path, 0o600) == 0 else {
            let e = SocketError.errno("chmod", path)
            close(fd)
            unlink(path)
            throw e
        }
        guard listen(fd, 64) == 0 else {
            let e = SocketError.errno("listen", path)
            close(fd)
            throw e
        }
        listener.withLock { $0 = fd }
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "cartekit.sim.accept"
        thread.start()
        logger.info("simulator daemon listening on \(path)")
    }

    /// Stops accepting, closes the socket and removes its file.
    public func stop() {
        let fd = listener.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        stopped.withLock { $0 = true }
        activity.close()
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            unlink(path)
        }
        // Connections end too: a stopped daemon serves nobody (their threads see the shutdown and exit).
        for client in clients.withLock({ $0 }) { shutdown(client, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop(_ fd: Int32) {
        while !stopped.withLock({ $0 }) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                if stopped.withLock({ $0 }) { return }
                logger.error("accept failed on \(path): \(String(cString: strerror(errno)))")
                usleep(10_000)
                continue
            }
            let admitted = clients.withLock { c -> Bool in
                guard c.count < SimulatorServer.maximumConnections else { return false }
                c.insert(client)
                return true
            }
            guard admitted else {
                logger.warning("refusing a connection on \(path): \(SimulatorServer.maximumConnections) already open")
                close(client)
                continue
            }
            let connection = FramedSocket(fd: client)
            connection.setTimeout(SimulatorServer.helloDeadlineMilliseconds)
            let thread = Thread { [self] in
                serve(connection)
                clients.withLock { _ = $0.remove(client) }
            }
            thread.name = "cartekit.sim.connection"
            thread.start()
        }
    }

    // MARK: Connections

    private enum Role {
        case unknown, driver, control
    }

    /// How long a driver connection's thread polls for the next request after answering an APDU (on the
    /// connection's shared-memory lane when it has one, else on its socket), before sleeping. APDUs come
    /// in bursts (a Vitale read is 8 in a row): within one, the next request arrives about one pcscd round
    /// trip later and is taken without waking a sleeping thread; after the burst the thread sleeps. At
    /// most this much processor time per APDU, none for presence polls. Longer than two round trips, so
    /// a caller that hands each APDU to another thread (two more thread switches) still finds the
    /// daemon polling (`carte bench pcsc` measures what it saves).
    static let driverSpin: Duration = .microseconds(150)

    private func serve(_ socket: FramedSocket) {
        defer { unanswered.withLock { waits in waits = waits.filter { $0.value !== socket } } }
        var role = Role.unknown
        var spin = false
        var attached: VirtualSlot? = nil
        var description: ReaderDescription? = nil
        // The driver's shared-memory lane, once it asked for one: after an APDU the next one is polled
        // for there (no system call on either side), the socket after that.
        var lane: SharedLane? = nil
        defer { lane?.decline() }
        while true {
            if spin, let lane, let slot = attached, let d = description {
                switch lane.poll(spin: SimulatorServer.driverSpin, socket: socket.fd) {
                case .idle:
                    spin = false
                case .malformed(let length):
                    spin = false
                    guard socket.send(.failure(.badRequest, "lane request of \(length) bytes (1...\(SharedLane.capacity))")) else { return }
                    continue
                case .request(let command, let driverOnSocket):
                    let served = serve(Frame(.transmit, command), slot: slot, description: d, on: socket) { answer in
                        if answer.type == .ok, !driverOnSocket, lane.answer(answer.payload) {
                            // (Counted once the driver has its answer: off the round trip.)
                            laneAnswers.withLock { $0[slot.info.name, default: 0] += 1 }
                            return true
                        }
                        lane.decline()
                        return socket.send(answer)
                    }
                    if !served.answered {
                        // No answer (a mute card): the driver waits on its socket, the daemon too.
                        lane.decline()
                        spin = false
                    }
                    guard served.connected else { return }
                    continue
                }
            }
            let frame: Frame
            do {
                // A driver's next request usually follows its answer within one pcscd round trip:
                // poll for it briefly before sleeping (see driverSpin).
                frame = try socket.receive(spin: spin ? SimulatorServer.driverSpin : .zero)
            } catch {
                if case .closed(midFrame: false) = error { return }
                logger.debug("dropping a connection: \(error)")
                _ = socket.send(.failure(.badRequest, "\(error)"))
                return
            }
            let reply: Frame
            switch (frame.type, role) {
            case (.hello, .unknown):
                guard frame.payload.count >= 3, let version = readU16(frame.payload, 1) else {
                    reply = .failure(.badRequest, "hello needs a role byte and a 2-byte version")
                    break
                }
                guard version == Wire.version else {
                    reply = .failure(.badRequest, "protocol version \(version) is not supported (this daemon speaks \(Wire.version))")
                    break
                }
                switch ConnectionRole(rawValue: frame.payload[0]) {
                case .driver: role = .driver
                case .control: role = .control
                case nil:
                    reply = .failure(.badRequest, "unknown role \(frame.payload[0])")
                    _ = socket.send(reply)
                    return
                }
                reply = Frame(.ok)
                socket.setTimeout(0)  // said hello: no deadline (pcscd's connections idle between polls)
            case (.hello, _):
                reply = .failure(.badRequest, "hello was already received")
            case (_, .unknown):
                reply = .failure(.notAttached, "say hello first")
            case (.attach, .driver):
                guard let reader = readU16(frame.payload, 0), let slot = readU16(frame.payload, 2) else {
                    reply = .failure(.badRequest, "attach needs a 2-byte reader and a 2-byte slot")
                    break
                }
                let readers = backend.physicalReaders
                guard Int(reader) < readers.count, Int(slot) < readers[Int(reader)].slots.count else {
                    reply = .failure(.noSuchSlot, "no reader \(reader) slot \(slot) (the daemon has \(readers.count) reader(s))")
                    break
                }
                let entry = readers[Int(reader)]
                attached = entry.slots[Int(slot)]
                let d = SimulatorServer.describe(entry.profile, slot: Int(slot))
                description = d
                reply = Frame(.ok, d.encoded())
            case (.presence, .driver), (.power, .driver), (.transmit, .driver), (.control, .driver):
                guard let slot = attached, let d = description else {
                    reply = .failure(.notAttached, "attach to a slot first")
                    break
                }
                spin = frame.type == .transmit
                guard serve(frame, slot: slot, description: d, on: socket, deliver: socket.send).connected else { return }
                continue
            case (.lane, .driver):
                guard attached != nil, lane == nil else {
                    reply = .failure(.badRequest, lane == nil ? "attach to a slot before asking for a lane" : "this connection has a lane already")
                    break
                }
                guard let created = SharedLane.create() else {
                    reply = .failure(.unsupported, "no shared-memory lane: \(String(cString: strerror(errno)))")
                    break
                }
                lane = created
                guard created.sendOffer(on: socket.fd) else { return }
                continue
            case (.controlRequest, .control):
                reply = Frame(.ok, Array(controlRequest(frame.payload).utf8))
            default:
                reply = .failure(.badRequest, "\(frame.type) is not valid on a \(role == .driver ? "driver" : "control") connection")
            }
            guard socket.send(reply) else { return }
        }
    }

    /// The description the driver reports to pcscd for a reader with `profile`.
    static func describe(_ profile: VirtualReaderProfile, slot: Int) -> ReaderDescription {
        ReaderDescription(
            name: profile.name, vendor: profile.vendor, model: profile.model ?? profile.name, ifdVersion: profile.ifdVersion,
            serialNumber: profile.serialNumber ?? "", slotCount: profile.slots.count,
            contactless: profile.slots[slot].contactless,
            maxAPDUDataSize: profile.features.contains("extended-apdu") ? 0x10000 : 0,
            usbVendorID: profile.usbVendorID ?? 0, usbProductID: profile.usbProductID ?? 0)
    }

    private func failure(_ error: CardError) -> Frame {
        switch error {
        case .noCard, .cardRemoved: return .failure(.noCard, error.description)
        case .cardMute: return .failure(.mute, error.description)
        default: return .failure(.other, error.description)
        }
    }

    /// Runs one driver request that came on `socket` (or its lane) and hands the reply to `deliver`
    /// (false when the peer is gone), then records an APDU's exchange (see ``pendingRecords``). Without
    /// a reply (a mute card) the slot remembers that the driver waits, so that the card's removal ends
    /// the wait.
    private func serve(_ frame: Frame, slot: VirtualSlot, description: ReaderDescription, on socket: FramedSocket,
                       deliver: (Frame) -> Bool) -> (answered: Bool, connected: Bool) {
        // A new request: whatever the driver waited for before, it no longer does.
        unanswered.withLock { waits in if waits[slot.info.name] === socket { waits[slot.info.name] = nil } }
        var record: (@Sendable () -> Void)? = nil
        defer {
            if let record {
                record()
                pendingRecords.subtract(1, ordering: .sequentiallyConsistent)
            }
        }
        guard let answer = driverRequest(frame, slot: slot, description: description, peer: socket.fd, record: &record) else {
            unanswered.withLock { $0[slot.info.name] = socket }
            return (false, true)
        }
        return (true, deliver(answer))
    }

    /// Waits until the exchanges already answered are recorded (a few microseconds; at most a second).
    private func settleRecords() {
        for _ in 0..<20_000 where pendingRecords.load(ordering: .sequentiallyConsistent) > 0 { usleep(50) }
    }

    /// The reply to a driver request, or `nil` when a mute fault says the card does not answer (the
    /// driver's own timeout then fires and it drops the connection). For an APDU, `record` is set to what
    /// records the exchange, to be called once the reply is sent, or not sent (``serve(_:slot:description:on:deliver:)``).
    private func driverRequest(_ frame: Frame, slot: VirtualSlot, description: ReaderDescription, peer: Int32, record: inout (@Sendable () -> Void)?) -> Frame? {
        switch frame.type {
        case .presence:
            let state: SlotPresence
            switch slot.slotState {
            case .empty: state = .absent
            case .present: state = .present
            case .mute: state = .mute
            }
            // The insertion counter lets the driver see a card swapped between two polls.
            return Frame(.ok, [state.rawValue] + bigEndian(UInt32(truncatingIfNeeded: slot.insertionCount)))
        case .power:
            guard let action = frame.payload.first, action <= 2 else { return .failure(.badRequest, "power needs an action byte 0, 1 or 2") }
            if action == 0 { return Frame(.ok) }
            switch slot.powerUp() {
            case .success(let atr): return Frame(.ok, atr)
            case .failure(let e): return failure(e)
            }
        case .transmit:
            guard !frame.payload.isEmpty else { return .failure(.badRequest, "empty APDU") }
            let (outcome, tell) = slot.transmitWithFaultsTellingLater(frame.payload)
            pendingRecords.add(1, ordering: .sequentiallyConsistent)
            record = tell
            switch outcome {
            case .answer(let response, let delay):
                if let delay { Thread.sleep(forTimeInterval: delay.seconds) }
                return Frame(.ok, response)
            case .noAnswer(let delay):
                if let delay { Thread.sleep(forTimeInterval: delay.seconds) }
                logger.info("\(slot.info.name): mute fault, no answer")
                return nil
            case .failure(let e): return failure(e)
            }
        case .control:
            guard let code = readU32(frame.payload, 0) else { return .failure(.badRequest, "control needs a 4-byte code") }
            return readerControl(code: code, data: Array(frame.payload.dropFirst(4)), slot: slot, description: description, peer: peer)
        default:
            return .failure(.badRequest, "not a driver request")
        }
    }

    /// `SCardControl` codes the virtual readers answer, as CCID readers do through libccid (PC/SC part
    /// 10): the feature list, TLV properties and, on a reader with a PIN pad, its PIN properties and
    /// secure PIN verification and modification (the keypad waits, so this may block for seconds).
    private func readerControl(code: UInt32, data: [UInt8], slot: VirtualSlot, description: ReaderDescription, peer: Int32) -> Frame {
        let pad = slot.pinPad
        let announced = pad?.announced == true ? pad : nil
        let verify = Part10.featureControlCode(Part10.Feature.verifyPINDirect)
        let modify = Part10.featureControlCode(Part10.Feature.modifyPINDirect)
        let pinProperties = Part10.featureControlCode(Part10.Feature.ifdPINProperties)
        let tlvProperties = Part10.featureControlCode(Part10.Feature.getTLVProperties)
        switch code {
        case Part10.getFeatureRequest:
            // libccid's order: verify, modify, PIN properties, TLV properties.
            var features: [(tag: UInt8, code: UInt32)] = []
            if let announced {
                if announced.verify { features.append((Part10.Feature.verifyPINDirect, verify)) }
                if announced.modify { features.append((Part10.Feature.modifyPINDirect, modify)) }
                features.append((Part10.Feature.ifdPINProperties, pinProperties))
            }
            features.append((Part10.Feature.getTLVProperties, tlvProperties))
            return Frame(.ok, Part10.encodeFeatureList(features))
        case tlvProperties:
            var properties: [(tag: UInt8, value: UInt32, size: Int)] = []
            if let announced {
                let layout = announced.lcdLayout
                properties.append((Part10.Property.lcdLayout, UInt32(layout), 2))
                if layout != 0 {
                    properties.append((Part10.Property.lcdMaxCharacters, UInt32(layout & 0xFF), 2))
                    properties.append((Part10.Property.lcdMaxLines, UInt32(layout >> 8), 2))
                }
                properties.append((Part10.Property.entryValidationCondition, UInt32(announced.entryValidationCondition), 1))
                properties.append((Part10.Property.timeOut2, UInt32(announced.timeout2), 1))
                properties.append((Part10.Property.minPINSize, UInt32(min(max(announced.minimumPINLength, 0), 255)), 1))
                properties.append((Part10.Property.maxPINSize, UInt32(min(max(announced.maximumPINLength, 0), 255)), 1))
                properties.append((Part10.Property.ppduSupport, 0, 1))
            }
            properties.append((Part10.Property.maxAPDUDataSize, description.maxAPDUDataSize, 4))
            if description.usbVendorID != 0 { properties.append((Part10.Property.idVendor, UInt32(description.usbVendorID), 2)) }
            if description.usbProductID != 0 { properties.append((Part10.Property.idProduct, UInt32(description.usbProductID), 2)) }
            return Frame(.ok, Part10.encodeProperties(properties))
        case pinProperties where announced != nil:
            return Frame(.ok, announced!.capabilities?.pinPropertiesStructure ?? [])
        case verify where announced?.verify == true, modify where announced?.modify == true:
            let isVerify = code == verify
            logger.info("\(slot.info.name): PIN \(isVerify ? "verification" : "modification") on the keypad (\(slot.keypad.pending) entries scripted)")
            // A driver that gave up (its connection closed) ends the prompt: nothing is sent for nobody.
            let gone = { SimulatorServer.peerClosed(peer) }
            let result = isVerify ? slot.verifyOnPad(data, abandon: gone) : slot.modifyOnPad(data, abandon: gone)
            switch result {
            case .success(let response):
                // The response only: the command the reader built holds the PIN and is never logged.
                logger.info("\(slot.info.name): PIN pad answered \(response.suffix(2).hexString())")
                return Frame(.ok, response)
            case .failure(.card(let e)):
                return failure(e)
            case .failure(let f):
                logger.info("\(slot.info.name): \(f)")
                return .failure(.unsupported, f.description)
            }
        default:
            return .failure(.unsupported, "control code 0x\(String(code, radix: 16)) is not supported")
        }
    }

    /// Whether the other end of `fd` closed its connection (without reading anything).
    static func peerClosed(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        if p.revents & Int16(POLLHUP | POLLERR) != 0 { return true }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    // MARK: Control requests (JSON)

    private func controlRequest(_ payload: [UInt8]) -> String {
        func answer(_ object: [String: Any]) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
            return String(decoding: data, as: UTF8.self)
        }
        /// `kind`: `request` (malformed request), `reader` (no such reader or slot), `image` (the card image cannot be loaded).
        func fail(_ message: String, kind: String = "request") -> String { answer(["ok": false, "error": message, "kind": kind]) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload)), let request = object as? [String: Any],
            let op = request["op"] as? String
        else { return fail("a control request is a JSON object with an \"op\" field") }
        settleRecords()
        switch op {
        case "status":
            var status: [String: Any] = ["ok": true, "socket": path, "uid": Int(getuid()), "run": activity.run, "readers": statusReaders()]
            if let usb { status["usb"] = usb }
            return answer(status)
        case "insert", "remove":
            let slot: VirtualSlot
            switch findSlot(request) {
            case .success(let s): slot = s
            case .failure(let message): return fail(message.description, kind: "reader")
            }
            do {
                if op == "insert" {
                    guard let imageArgument = request["image"] as? String else { return fail("insert needs \"image\"") }
                    let image: CardImage
                    do { image = try loadImage(imageArgument) } catch { return fail("\(error)", kind: "image") }
                    try backend.insert(image, into: slot.info.name, mute: request["mute"] as? Bool ?? false)
                    logger.info("inserted \(image.name) into \(slot.info.name)")
                } else {
                    try backend.remove(from: slot.info.name)
                    logger.info("removed the card from \(slot.info.name)")
                }
                // The card a driver was waiting on is gone: its exchange ends now.
                if let waiting = unanswered.withLock({ $0.removeValue(forKey: slot.info.name) }) {
                    waiting.send(.failure(.noCard, "the card was taken out of \(slot.info.name) while it did not answer"))
                    logger.info("\(slot.info.name): the unanswered exchange ends, the card is out")
                }
            } catch {
                return fail("\(error)", kind: "reader")
            }
            return answer(["ok": true, "reader": slot.info.name])
        case "fault":
            let slot: VirtualSlot
            switch findSlot(request) {
            case .success(let s): slot = s
            case .failure(let message): return fail(message.description, kind: "reader")
            }
            guard let name = request["fault"] as? String else { return fail("fault needs \"fault\": \(SlotFault.names.joined(separator: ", ")), unplug, plug or clear") }
            if SimulatorServer.readerFaultNames.contains(name) {
                guard let readerFaults else {
                    return fail("\(name): this daemon's readers are declared in reader.conf.d, which pcscd never removes; start it with --usb to unplug and plug readers", kind: "reader")
                }
                guard let index = backend.physicalReaders.firstIndex(where: { $0.slots.contains { $0 === slot } }) else { return fail("no reader for \(slot.info.name)", kind: "reader") }
                do {
                    let done = try readerFaults(index, name)
                    logger.info("\(backend.physicalReaders[index].profile.name): \(done)")
                    return answer(["ok": true, "reader": backend.physicalReaders[index].profile.name, "fault": name])
                } catch {
                    return fail("\(name): \(error)", kind: "reader")
                }
            }
            if name == "clear" {
                slot.clearFaults()
                logger.info("\(slot.info.name): faults cleared")
                return answer(["ok": true, "reader": slot.info.name, "fault": "clear"])
            }
            var sw: StatusWord? = nil
            if let text = request["sw"] as? String {
                guard let bytes = try? [UInt8](hex: text), bytes.count == 2 else { return fail("\"sw\" is 2 bytes in hexadecimal (6F00)") }
                sw = StatusWord(sw1: bytes[0], sw2: bytes[1])
            }
            let fault: SlotFault
            do { fault = try SlotFault.named(name, count: request["count"] as? Int, milliseconds: request["ms"] as? Int, statusWord: sw) } catch {
                return fail("\(error)")
            }
            slot.inject(fault)
            logger.info("\(slot.info.name): fault \(fault)")
            return answer(["ok": true, "reader": slot.info.name, "fault": fault.description])
        case "keypad":
            let slot: VirtualSlot
            switch findSlot(request) {
            case .success(let s): slot = s
            case .failure(let message): return fail(message.description, kind: "reader")
            }
            guard slot.pinPad != nil else { return fail(KeypadError.noPINPad(reader: slot.info.name).description, kind: "reader") }
            let entries: [KeypadEntry]
            switch SimulatorServer.keypadEntries(request["entries"]) {
            case .success(let e): entries = e
            case .failure(let message): return fail(message.description)
            }
            if request["clear"] as? Bool == true { slot.keypad.clear() }
            slot.keypad.type(entries)
            activity.noteChange(slot: slot.info.name, what: "keypad")
            // Entries are described by kind and length only: the digits are never logged.
            logger.info("\(slot.info.name): keypad scripted: \(entries.isEmpty ? "nothing" : entries.map(\.description).joined(separator: ", "))")
            return answer(["ok": true, "reader": slot.info.name, "pending": slot.keypad.pending, "typed": slot.keypad.typed])
        case "events":
            let since = request["since"] as? Int ?? 0
            let wait = request["waitMs"] as? Int ?? 0
            let limit = request["limit"] as? Int ?? SimulatorActivityLog.maximumBatch
            guard since >= 0 else { return fail("\"since\" is an event number, 0 or more") }
            guard (0...SimulatorActivityLog.maximumWaitMilliseconds).contains(wait) else {
                return fail("\"waitMs\" is 0 to \(SimulatorActivityLog.maximumWaitMilliseconds) milliseconds")
            }
            guard (1...SimulatorActivityLog.maximumBatch).contains(limit) else { return fail("\"limit\" is 1 to \(SimulatorActivityLog.maximumBatch) events") }
            let (events, next, lost) = activity.events(since: since, limit: limit, waitMilliseconds: wait)
            return answer(["ok": true, "run": activity.run, "events": events.map(SimulatorActivityLog.json), "next": next, "lost": lost])
        case "trace":
            let slot: VirtualSlot
            switch findSlot(request) {
            case .success(let s): slot = s
            case .failure(let message): return fail(message.description, kind: "reader")
            }
            let insertion = slot.insertionCount
            let from = request["from"] as? Int ?? 0
            guard from >= 0 else { return fail("\"from\" is an exchange index, 0 or more") }
            let budget = request["maxBytes"] as? Int ?? SimulatorActivityLog.answerBudget
            guard (1024...SimulatorActivityLog.answerBudget).contains(budget) else { return fail("\"maxBytes\" is 1024 to \(SimulatorActivityLog.answerBudget)") }
            let (exchanges, next, atr, dropped, failed) = activity.trace(slot.info.name, insertion: insertion, from: from, budget: budget)
            let image = slot.image
            let entry = backend.physicalReaders.first { $0.slots.contains { $0 === slot } }
            return answer([
                "ok": true, "slot": slot.info.name, "insertion": insertion,
                "image": image.map { $0.name as Any } ?? NSNull(),
                "synthetic": image.map { $0.synthetic as Any } ?? NSNull(),
                "atr": (atr ?? image?.atr).map { $0.hexString() as Any } ?? NSNull(),
                "protocol": image.map { $0.cardProtocol == .t0 ? "T=0" : "T=1" as Any } ?? NSNull(),
                "vendor": entry?.profile.vendor ?? "", "firmwareVersion": entry?.profile.firmwareVersion ?? "",
                "dropped": dropped, "unanswered": failed, "from": from, "next": next.map { $0 as Any } ?? NSNull(),
                "exchanges": exchanges.map { e -> [String: Any] in
                    ["command": e.commandText, "response": e.response.hexString(), "ms": e.milliseconds.map { $0 as Any } ?? NSNull()]
                },
            ])
        default:
            return fail("unknown op \"\(op)\" (status, insert, remove, fault, keypad, events, trace)")
        }
    }

    /// Decodes the `entries` of a `keypad` request: `{"digits": "1234", "afterMs": 0}`,
    /// `{"cancel": true, "afterMs": 0}` or `{"timeout": true}`.
    private static func keypadEntries(_ value: Any?) -> Result<[KeypadEntry], ControlFailure> {
        guard let value else { return .success([]) }
        guard let list = value as? [[String: Any]] else { return .failure(ControlFailure("\"entries\" is a list of objects ({\"digits\": \"…\"}, {\"cancel\": true} or {\"timeout\": true})")) }
        var out: [KeypadEntry] = []
        for (i, item) in list.enumerated() {
            let ms: Int
            if let value = item["afterMs"] {
                // Whole numbers only: "100" and 1.5 are refused rather than read as 0.
                guard let whole = value as? Int else {
                    return .failure(ControlFailure("entries[\(i)].afterMs is a whole number of milliseconds (0 to 600000)"))
                }
                ms = whole
            } else {
                ms = 0
            }
            guard (0...600_000).contains(ms) else { return .failure(ControlFailure("entries[\(i)].afterMs is 0 to 600000 milliseconds")) }
            let after = Duration.milliseconds(ms)
            if let text = item["digits"] as? String {
                do { out.append(.digits(try KeypadDigits(text), after: after)) } catch { return .failure(ControlFailure("entries[\(i)]: \(error)")) }
            } else if item["cancel"] as? Bool == true {
                out.append(.cancel(after: after))
            } else if item["timeout"] as? Bool == true {
                out.append(.timeout)
            } else {
                return .failure(ControlFailure("entries[\(i)] needs \"digits\", \"cancel\": true or \"timeout\": true"))
            }
        }
        return .success(out)
    }

    private func statusReaders() -> [[String: Any]] {
        backend.physicalReaders.enumerated().map { (index, entry) -> [String: Any] in
            let pinPad: Any = entry.profile.pinPad.map { pad -> [String: Any] in
                ["verify": pad.verify, "modify": pad.modify, "announced": pad.announced, "minimumPINLength": pad.minimumPINLength,
                 "maximumPINLength": pad.maximumPINLength, "lcdLayout": Int(pad.lcdLayout), "defaultTimeoutSeconds": pad.defaultTimeoutSeconds]
            } ?? NSNull()
            return [
                "index": index,
                "profile": entry.profile.id,
                "name": entry.profile.name,
                "vendor": entry.profile.vendor,
                "firmwareVersion": entry.profile.firmwareVersion,
                "serialNumber": entry.profile.serialNumber.map { $0 as Any } ?? NSNull(),
                "synthetic": entry.profile.synthetic,
                "pinPad": pinPad,
                "slots": entry.slots.map { slot -> [String: Any] in
                    var s: [String: Any] = ["slot": slot.info.slot, "name": slot.info.name, "role": slot.info.role.map { $0 as Any } ?? NSNull(), "contactless": slot.info.isContactless]
                    if slot.pinPad != nil {
                        s["keypad"] = ["pending": slot.keypad.pending, "typed": slot.keypad.typed, "waiting": activity.padWaiting(slot.info.name)]
                    }
                    s["faults"] = slot.armedFaults
                    s["insertion"] = slot.insertionCount
                    s["exchanges"] = activity.exchangeCount(slot.info.name)
                    s["laneExchanges"] = laneAnswers.withLock { $0[slot.info.name] ?? 0 }
                    switch slot.slotState {
                    case .empty: s["state"] = "empty"
                    case .mute: s["state"] = "mute"
                    case .present(let atr):
                        s["state"] = "card"
                        s["atr"] = atr.hexString()
                    }
                    if let image = slot.image {
                        s["image"] = image.name
                        s["synthetic"] = image.synthetic
                        // What the card is, as its ATR says (a phone by its image): for pictures and labels.
                        let known = KnownATR.identify(image.atr).first
                        s["kind"] = image.apcv != nil ? "apcv" : known?.family.rawValue ?? "unknown"
                        s["card"] = image.apcv != nil ? "appli carte Vitale (phone)" : known?.label ?? "a card its ATR does not name"
                    }
                    return s
                },
            ]
        }
    }

    private func findSlot(_ request: [String: Any]) -> Result<VirtualSlot, ControlFailure> {
        let readers = backend.physicalReaders
        let slotIndex = request["slot"] as? Int ?? 0
        let entry: (profile: VirtualReaderProfile, slots: [VirtualSlot])
        if let index = request["reader"] as? Int {
            guard index >= 0, index < readers.count else { return .failure(ControlFailure("no reader \(index); the daemon has \(readers.count)")) }
            entry = readers[index]
        } else if let name = request["reader"] as? String {
            let matches = readers.filter { $0.profile.name == name || $0.profile.id == name || $0.slots.contains { $0.info.name == name } }
            let prefixed = matches.isEmpty ? readers.filter { $0.profile.name.hasPrefix(name) || $0.slots.first?.info.physicalReader.hasPrefix(name) == true } : matches
            guard prefixed.count == 1 else {
                if prefixed.isEmpty {
                    return .failure(ControlFailure("no reader \"\(name)\"; the daemon's readers: \(readers.map(\.profile.name).joined(separator: ", "))"))
                }
                return .failure(ControlFailure("\"\(name)\" names \(prefixed.count) readers (\(prefixed.map(\.profile.name).joined(separator: ", "))); give more of the name, or the index (carte sim status)"))
            }
            entry = prefixed[0]
            if let exact = entry.slots.first(where: { $0.info.name == name }) { return .success(exact) }
        } else {
            return .failure(ControlFailure("\"reader\" must be an index or a name"))
        }
        guard slotIndex >= 0, slotIndex < entry.slots.count else {
            return .failure(ControlFailure("reader \(entry.profile.name) has no slot \(slotIndex) (it has \(entry.slots.count))"))
        }
        return .success(entry.slots[slotIndex])
    }

    private struct ControlFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}

/// A client of the daemon's control interface (used by `carte sim insert/remove/status` and tests).
public struct SimulatorControlClient: Sendable {
    /// The daemon's socket.
    public let path: String

    /// A client of the daemon listening on `path`.
    public init(path: String) { self.path = path }

    /// Sends one JSON request and returns the JSON answer (blocking; call from a thread of your own).
    /// The daemon must answer within `timeoutMilliseconds` (more than an `events` request's `waitMs`).
    public func send(_ request: [String: any Sendable], timeoutMilliseconds: Int = 5_000) throws -> [String: Any] {
        let socket = try FramedSocket.connect(to: path, timeoutMilliseconds: timeoutMilliseconds)
        guard socket.send(.hello(.control)) else { throw SocketError(operation: "send", path: path, reason: "the daemon closed the connection") }
        let greeting = try socket.receive()
        if let f = greeting.failure { throw SocketError(operation: "hello", path: path, reason: f.message) }
        let body = try JSONSerialization.data(withJSONObject: request, options: [.sortedKeys])
        guard socket.send(Frame(.controlRequest, Array(body))) else { throw SocketError(operation: "send", path: path, reason: "the daemon closed the connection") }
        let reply = try socket.receive()
        if let f = reply.failure { throw SocketError(operation: "control", path: path, reason: f.message) }
        guard let object = try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any] else {
            throw SocketError(operation: "control", path: path, reason: "the daemon's answer is not a JSON object")
        }
        return object
    }
}
