import CarteCore
import CarteSimDaemon
import CarteSimProtocol
import Foundation
import Synchronization
import Testing

/// The shared-memory lane between the driver and the daemon (#39): its state machine with both sides in
/// this process (two mappings of one memory file, two threads), its hand-over on a socket, and the
/// daemon speaking it.
@Suite("Shared-memory lane", .serialized)
struct SharedLaneTests {
    /// A connected socket pair: [0] the daemon's end, [1] the driver's.
    static func pair() throws -> [Int32] {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw CardError.unsupported("socketpair") }
        return fds
    }

    /// Both sides of one lane.
    static func lanes() throws -> (daemon: SharedLane, driver: SharedLane) {
        let daemon = try #require(SharedLane.create())
        let driver = try #require(daemon.peer())
        return (daemon, driver)
    }

    /// Runs `body` on a thread of its own (the daemon's side); joined by the returned closure.
    static func onThread(_ body: @escaping @Sendable () -> Void) -> () -> Void {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        return { done.wait() }
    }

    static func waitFor(_ lane: SharedLane, _ state: SharedLane.State) -> Bool {
        for _ in 0..<200_000 where lane.state == state { return true }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if lane.state == state { return true }
            usleep(100)
        }
        return false
    }

    @Test func commandsAndResponsesOfEverySizeCross() throws {
        let (daemon, driver) = try Self.lanes()
        let fds = try Self.pair()
        defer { fds.forEach { close($0) } }
        #expect(driver.transmit([0x00, 0xA4, 0x00, 0x0C], spin: .milliseconds(1)) == .notPosted)  // nobody polls yet
        let sizes = [1, 4, 5, 261, 4096, SharedLane.capacity - 2, SharedLane.capacity]
        let socket = fds[0]
        let join = Self.onThread {
            var served = 0
            while served < sizes.count {
                guard case .request(let command, let onSocket) = daemon.poll(spin: .seconds(5), socket: socket), !onSocket else { return }
                // The response: the command reversed, cut to fit, and 90 00.
                let response = Array(command.reversed().prefix(SharedLane.capacity - 2)) + [0x90, 0x00]
                guard daemon.answer(response) else { return }
                served += 1
            }
        }
        for size in sizes {
            let command = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
            #expect(Self.waitFor(daemon, .open))
            let reply = driver.transmit(command, spin: .seconds(5))
            #expect(reply == .answer(Array(command.reversed().prefix(SharedLane.capacity - 2)) + [0x90, 0x00]), "size \(size)")
        }
        join()
        #expect(driver.transmit(Array(repeating: 0, count: SharedLane.capacity + 1), spin: .zero) == .notPosted)  // does not fit
        #expect(driver.transmit([], spin: .zero) == .notPosted)
    }

    @Test func aDriverThatStopsWaitingGetsTheReplyOnTheSocket() throws {
        let (daemon, driver) = try Self.lanes()
        let fds = try Self.pair()
        defer { fds.forEach { close($0) } }
        let socket = fds[0]
        let answered = Mutex<Bool?>(nil)
        let join = Self.onThread {
            guard case .request = daemon.poll(spin: .seconds(5), socket: socket) else { return }
            usleep(50_000)  // slower than the driver's polling
            answered.withLock { $0 = daemon.answer([0x90, 0x00]) }
        }
        #expect(Self.waitFor(daemon, .open))
        #expect(driver.transmit([0x00, 0xB0, 0x00, 0x00, 0x10], spin: .milliseconds(1)) == .onSocket)
        join()
        #expect(answered.withLock { $0 } == false)  // the daemon must reply on the socket
        #expect(daemon.state == .closed)
    }

    @Test func aDeclinedCommandIsRepliedOnTheSocket() throws {
        let (daemon, driver) = try Self.lanes()
        let fds = try Self.pair()
        defer { fds.forEach { close($0) } }
        let socket = fds[0]
        let join = Self.onThread {
            guard case .request = daemon.poll(spin: .seconds(5), socket: socket) else { return }
            daemon.decline()  // a mute card, a failure: nothing crosses the lane
        }
        #expect(Self.waitFor(daemon, .open))
        #expect(driver.transmit([0x00, 0xA4, 0x04, 0x00], spin: .seconds(5)) == .onSocket)
        join()
        #expect(daemon.state == .closed)
    }

    @Test func pollingEndsWhenTheDriverTurnsToTheSocket() throws {
        let (daemon, driver) = try Self.lanes()
        let fds = try Self.pair()
        defer { fds.forEach { close($0) } }
        let socket = fds[0]
        // The driver closes the lane before a request on the socket.
        let result = Mutex<SharedLane.Poll?>(nil)
        var join = Self.onThread { result.withLock { $0 = daemon.poll(spin: .seconds(30), socket: socket) } }
        #expect(Self.waitFor(daemon, .open))
        driver.closeForSocket()
        join()
        #expect(result.withLock { $0 } == .idle)
        #expect(daemon.state == .closed)
        // Something on the socket (a request, or the driver's end) ends the polling too.
        join = Self.onThread { result.withLock { $0 = daemon.poll(spin: .seconds(30), socket: socket) } }
        #expect(Self.waitFor(daemon, .open))
        var byte: UInt8 = 1
        #expect(send(fds[1], &byte, 1, 0) == 1)
        join()
        #expect(result.withLock { $0 } == .idle)
        #expect(daemon.state == .closed)
        // And the time runs out.
        #expect(daemon.poll(spin: .microseconds(100), socket: -1) == .idle)
        #expect(daemon.state == .closed)
        #expect(driver.transmit([0x00, 0xA4, 0x00, 0x0C], spin: .zero) == .notPosted)
    }

    @Test func lengthsAndStatesNoSideWritesAreRefused() throws {
        let (daemon, driver) = try Self.lanes()
        let fds = try Self.pair()
        defer { fds.forEach { close($0) } }
        // A driver announcing more than the buffer holds, or nothing.
        for bad: UInt32 in [UInt32(SharedLane.capacity + 1), 0xFFFF_FFFF, 0] {
            driver.corrupt(state: SharedLane.State.posted.rawValue, requestLength: bad)
            #expect(daemon.poll(spin: .seconds(1), socket: fds[0]) == .malformed(Int(bad)))
            #expect(daemon.state == .closed)
        }
        // A state word no side writes: the daemon closes the lane and reads the socket.
        driver.corrupt(state: 77)
        #expect(daemon.state == nil)
        #expect(daemon.poll(spin: .seconds(1), socket: fds[0]) == .idle)
        #expect(daemon.state == .closed)
        // A daemon announcing a response beyond the buffer.
        let socket = fds[0]
        let join = Self.onThread {
            guard case .request = daemon.poll(spin: .seconds(5), socket: socket) else { return }
            daemon.corrupt(state: SharedLane.State.answered.rawValue, responseLength: 1 << 30)
        }
        #expect(Self.waitFor(daemon, .open))
        #expect(driver.transmit([0x00, 0xA4, 0x00, 0x0C], spin: .seconds(5)) == .malformed(1 << 30))
        join()
        #expect(driver.state == .closed)
    }

    @Test func onlyASealedLaneFileIsMapped() throws {
        // A plain file of the right size can shrink under the mapping (SIGBUS in pcscd): refused.
        let path = NSTemporaryDirectory() + "ck-lane-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        unlink(path)
        #expect(ftruncate(fd, off_t(SharedLane.size)) == 0)
        #expect(SharedLane.adopt(fd) == nil)  // closes fd
        #expect(fcntl(fd, F_GETFD) == -1)
    }

    @Test func theLaneIsHandedOverOnTheConnection() throws {
        for daemonSays in ["offer", "refusal", "garbage"] {
            let fds = try Self.pair()
            defer { fds.forEach { close($0) } }
            let socket = fds[0]
            let offered = Mutex<SharedLane?>(nil)
            let join = Self.onThread {
                var reader = FrameReader()
                guard reader.next(socket).frame?.type == .lane else { return }
                switch daemonSays {
                case "offer":
                    guard let lane = SharedLane.create(), lane.sendOffer(on: socket) else { return }
                    offered.withLock { $0 = lane }
                case "refusal": _ = SocketIO.sendAll(socket, Frame.failure(.unsupported, "no shared memory").encoded())
                default: _ = SocketIO.sendAll(socket, [0, 0, 0, 9, 0x80])  // a frame cut short
                }
            }
            let outcome = SharedLane.negotiate(on: fds[1])
            join()
            switch (daemonSays, outcome) {
            case ("offer", .lane(let driver)):
                let daemon = try #require(offered.withLock { $0 })
                let served = Self.onThread {
                    guard case .request(let c, _) = daemon.poll(spin: .seconds(5), socket: socket) else { return }
                    _ = daemon.answer(c + [0x90, 0x00])
                }
                #expect(Self.waitFor(daemon, .open))
                #expect(driver.transmit([0x00, 0xCA, 0x01, 0x02], spin: .seconds(5)) == .answer([0x00, 0xCA, 0x01, 0x02, 0x90, 0x00]))
                served()
            case ("refusal", .refused), ("garbage", .broken): break
            default: Issue.record("\(daemonSays): \(outcome)")
            }
        }
    }

    /// The daemon gives a lane to an attached driver connection, and APDUs cross it after the first.
    @Test func theDaemonServesAPDUsThroughTheLane() throws {
        let (server, path) = try startServer()
        defer { server.stop() }
        let c = try RawClient(path)
        #expect(c.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(c.request(Frame(.lane))?.failure?.code == .badRequest)  // attach first
        #expect(c.request(Frame(.attach, [0, 0, 0, 0]))?.type == .ok)
        guard case .lane(let lane) = SharedLane.negotiate(on: c.fd) else {
            Issue.record("no lane")
            return
        }
        #expect(c.request(Frame(.lane))?.failure?.code == .badRequest)  // one per connection
        #expect(c.request(Frame(.power, [1]))?.payload.first == 0x3B)
        let select: [UInt8] = [0x00, 0xA4, 0x00, 0x0C]
        // The daemon polls the lane for a moment after each APDU; the socket carries the rest.
        var throughLane = 0
        for _ in 0..<200 where throughLane < 20 {
            switch lane.transmit(select, spin: .seconds(5)) {
            case .answer(let response):
                #expect(response == [0x90, 0x00])
                throughLane += 1
            case .notPosted:
                #expect(c.request(Frame(.transmit, select))?.payload == [0x90, 0x00])
            case let other:
                Issue.record("\(other)")
            }
        }
        #expect(throughLane == 20)
        // A request on the socket after the lane: the driver closes it first, the daemon answers there.
        lane.closeForSocket()
        #expect(c.request(Frame(.presence))?.payload.first == SlotPresence.present.rawValue)
        // A malformed command length: refused on the socket, and the connection goes on.
        var refused = false
        for _ in 0..<200 where !refused {
            #expect(c.request(Frame(.transmit, select))?.payload == [0x90, 0x00])
            if lane.postMalformed(length: 0x0100_0000) {
                let reply = c.read()
                if reply?.failure?.code == .badRequest { refused = true } else { Issue.record("\(String(describing: reply))") }
            }
        }
        #expect(refused)
        #expect(c.request(Frame(.presence))?.type == .ok)
    }
}

extension SharedLaneTests {
    /// Tens of thousands of requests as the driver makes them (APDUs on the lane, falling back to the socket; other
    /// requests on the socket; polling times short enough to hit every hand-over), against the daemon:
    /// every request gets exactly its own reply.
    @Test func everyRequestGetsItsOwnReplyUnderEveryHandOver() throws {
        let (server, path) = try startServer()
        defer { server.stop() }
        let c = try RawClient(path)
        #expect(c.request(Frame(.hello, [1, 0, 1]))?.type == .ok)
        #expect(c.request(Frame(.attach, [0, 0, 0, 0]))?.type == .ok)
        guard case .lane(let lane) = SharedLane.negotiate(on: c.fd) else {
            Issue.record("no lane")
            return
        }
        #expect(c.request(Frame(.power, [1]))?.payload.first == 0x3B)
        var generator = SystemRandomNumberGenerator()
        var counts: [String: Int] = [:]
        // Until every path was taken often enough (at least 20 000 requests; more on a loaded machine,
        // where the daemon's polling window is often missed), up to 400 000.
        func enough() -> Bool { counts["lane", default: 0] >= 1_000 && counts["onSocket", default: 0] >= 50 && counts["socket", default: 0] >= 50 }
        for i in 0..<400_000 {
            if i >= 20_000 && enough() { break }
            if Int.random(in: 0..<10, using: &generator) == 0 {
                lane.closeForSocket()
                guard c.request(Frame(.presence))?.payload.first == SlotPresence.present.rawValue else {
                    Issue.record("presence \(i) got no proper reply")
                    return
                }
                counts["presence", default: 0] += 1
                continue
            }
            // GET CHALLENGE-like: a SELECT of a numbered missing file answers 6A 82; the empty SELECT 90 00.
            let select: [UInt8] = [0x00, 0xA4, 0x00, 0x0C]
            let spin: Duration = [.zero, .nanoseconds(500), .microseconds(3), .microseconds(50)][i % 4]
            let reply: Frame?
            let offered = lane.transmit(select, spin: spin)
            switch offered {
            case .answer(let r):
                reply = Frame(.ok, r)
                counts["lane", default: 0] += 1
            case .onSocket:
                reply = c.read()
                counts["onSocket", default: 0] += 1
            case .notPosted:
                reply = c.request(Frame(.transmit, select))
                counts["socket", default: 0] += 1
            case .malformed(let n):
                Issue.record("malformed \(n)")
                return
            }
            guard reply?.type == .ok, reply?.payload == [0x90, 0x00] else {
                Issue.record("APDU \(i) (\(offered), spin \(spin), lane \(String(describing: lane.state))) got \(String(describing: reply))")
                return
            }
        }
        #expect(enough(), "\(counts)")
    }
}
