import CarteSimDaemon
import Foundation
public import Logging
import Synchronization

/// What the console's pages see of one simulator daemon: its status and its activity, followed on a
/// thread of its own by long polling the daemon's `events` request (so a change made anywhere, by
/// `carte sim insert` or another console, reaches every page at once), and told to subscribers as
/// JSON messages (`carte.console.feed/1`, docs/simulator.md).
public final class ConsoleFeed: Sendable {
    /// The daemon's socket.
    public let socket: String
    /// How long one `events` request waits for news, in milliseconds.
    static let pollMilliseconds = 20_000
    /// Events a new page receives (the newest), so its traces start with what just happened.
    static let backlog = 2000

    private struct State {
        var up = false
        var error: String? = nil
        var statusJSON = "null"
        var recent: [String] = []
        var subscribers: [Int: @Sendable (String) -> Void] = [:]
        var nextSubscriber = 0
        var stopped = false
    }

    private let state = Mutex(State())
    private let imagesJSON: String
    private let logger: Logger

    /// Follows the daemon at `socket`; `images` (bundled images offered for insertion) is sent to each page.
    public init(socket: String, images: [[String: String]], logger: Logger) {
        self.socket = socket
        self.logger = logger
        self.imagesJSON = ConsoleFeed.encode(images)
    }

    /// Starts following the daemon.
    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "cartekit.console.feed"
        thread.start()
    }

    /// Stops following (the thread ends after its current request) and forgets the subscribers.
    public func stop() {
        state.withLock { s in
            s.stopped = true
            s.subscribers = [:]
        }
    }

    /// Whether the daemon answered the last request.
    public var daemonUp: Bool { state.withLock { $0.up } }

    /// Registers `send` for every message from now on and gives it the `hello` message first (under the
    /// same lock, so nothing falls between the two). Returns the id to ``unsubscribe(_:)`` with.
    public func subscribe(_ send: @escaping @Sendable (String) -> Void) -> Int {
        state.withLock { s in
            let id = s.nextSubscriber
            s.nextSubscriber += 1
            s.subscribers[id] = send
            send(hello(s))
            return id
        }
    }

    /// Stops sending to the subscriber `id`.
    public func unsubscribe(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    /// The most bytes of recent events a `hello` carries (the newest first kept), well under what a
    /// page may leave unread before it is cut.
    static let helloBudget = 2 * 1024 * 1024

    private func hello(_ s: borrowing State) -> String {
        var bytes = 0
        var first = s.recent.count
        while first > 0, bytes + s.recent[first - 1].utf8.count <= ConsoleFeed.helloBudget {
            first -= 1
            bytes += s.recent[first].utf8.count + 1
        }
        return "{\"schema\":\"carte.console.feed/1\",\"type\":\"hello\",\"daemon\":\(daemonJSON(up: s.up, error: s.error)),\"status\":\(s.statusJSON),"
            + "\"images\":\(imagesJSON),\"events\":[\(s.recent[first...].joined(separator: ","))]}"
    }

    private func daemonJSON(up: Bool, error: String?) -> String {
        ConsoleFeed.encode(["socket": socket, "up": up, "error": error.map { $0 as Any } ?? NSNull()])
    }

    private func broadcast(_ message: String, update: (inout State) -> Void = { _ in }) {
        let subscribers = state.withLock { s -> [@Sendable (String) -> Void] in
            update(&s)
            return Array(s.subscribers.values)
        }
        for send in subscribers { send(message) }
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    private func run() {
        let client = SimulatorControlClient(path: socket)
        var since = 0
        var run: String? = nil  // the daemon's run whose events `since` counts
        var needStatus = true
        var reported = false  // whether the daemon's current state (up or down) was told
        while !stopped {
            do {
                if needStatus {
                    let status = try client.send(["op": "status"])
                    // Another run of the daemon (it restarted): start over from its first event.
                    if let statusRun = status["run"] as? String {
                        if let known = run, known != statusRun {
                            since = 0
                            logger.info("the simulator daemon at \(socket) restarted: following its new run")
                            broadcast("{\"type\":\"reset\"}") { $0.recent = [] }
                        }
                        run = statusRun
                    }
                    let text = ConsoleFeed.encode(status)
                    let wasUp = daemonUp
                    broadcast("{\"type\":\"status\",\"status\":\(text)}") { s in
                        s.statusJSON = text
                        s.up = true
                        s.error = nil
                    }
                    if !wasUp || !reported {
                        logger.info("following the simulator daemon at \(socket)")
                        broadcast("{\"type\":\"daemon\",\"daemon\":\(daemonJSON(up: true, error: nil))}")
                        reported = true
                    }
                    needStatus = false
                }
                let answer = try client.send(["op": "events", "since": since, "waitMs": ConsoleFeed.pollMilliseconds],
                                             timeoutMilliseconds: ConsoleFeed.pollMilliseconds + 10_000)
                guard answer["ok"] as? Bool == true, let events = answer["events"] as? [[String: Any]], let next = answer["next"] as? Int else {
                    throw ConsoleFeedError(description: "the daemon does not answer events requests (\(answer["error"] as? String ?? "no events"): an older carte?")
                }
                // Another daemon on the socket (restarted): its events are numbered from 1 again. What
                // the pages show of the old one goes, and the new one's log is read from its start.
                let answeredRun = answer["run"] as? String
                if let known = run, answeredRun != known {
                    run = answeredRun
                    since = 0
                    needStatus = true
                    logger.info("the simulator daemon at \(socket) restarted: following its new run")
                    broadcast("{\"type\":\"reset\"}") { $0.recent = [] }
                    continue
                }
                run = answeredRun
                since = next
                guard !events.isEmpty else { continue }
                let texts = events.map(ConsoleFeed.encode)
                let lost = answer["lost"] as? Int ?? 0
                broadcast("{\"type\":\"activity\",\"lost\":\(lost),\"events\":[\(texts.joined(separator: ","))]}") { s in
                    s.recent += texts
                    if s.recent.count > ConsoleFeed.backlog { s.recent.removeFirst(s.recent.count - ConsoleFeed.backlog) }
                }
                // What a slot holds, is armed with or waits for changed: every page gets the new status.
                needStatus = events.contains { $0["type"] as? String != "exchange" }
            } catch {
                let message = "\(error)"
                let wasUp = daemonUp
                if wasUp || !reported {
                    logger.warning("the simulator daemon at \(socket) does not answer: \(message)")
                    broadcast("{\"type\":\"daemon\",\"daemon\":\(daemonJSON(up: false, error: message))}") { s in
                        s.up = false
                        s.error = message
                    }
                    reported = true
                }
                needStatus = true
                usleep(500_000)
            }
        }
    }

    /// One-line JSON (keys sorted) of a JSON-compatible value.
    static func encode(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The daemon answered something the console does not understand.
struct ConsoleFeedError: Error, CustomStringConvertible {
    let description: String
}
