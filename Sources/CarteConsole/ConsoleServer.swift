import CarteEmulator
import CarteImages
import CarteSimDaemon
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `carte sim console`: the QA console of a running simulator daemon, a page served on 127.0.0.1 that
/// shows the virtual readers, their slots and cards, and drives them (insert, remove, faults, PIN pad),
/// with each slot's live APDU trace and its export as a replay image (docs/simulator.md).
///
/// HTTP/1.1 by SwiftNIO on one event-loop thread. The page's actions are `POST /api/<action>` (JSON);
/// what happens reaches it as server-sent events (`GET /api/feed`, ``ConsoleFeed``). Requests that
/// talk to the daemon run on threads of their own, never on the event loop or Swift's cooperative pool.
/// Access: ``ConsoleAccess`` (loopback `Host`, the run's key, the console's own `Origin` for actions).
public final class ConsoleServer: Sendable {
    /// What the server needs.
    public struct Configuration: Sendable {
        /// The daemon's control socket.
        public var socket: String
        /// The port (0: the system chooses).
        public var port: Int
        /// The key of the console's address (random when `nil`).
        public var key: String?
        /// The page's files: path → bytes and content type (`/` is the page).
        public var files: [String: (bytes: [UInt8], contentType: String)]
        /// The bundled images offered for insertion: `spec` (`bundled:PATH`), `name`, `kind`, `summary`.
        public var images: [[String: String]]
        /// Pages following the feed at once.
        public var maximumPages = 16
        /// Actions in progress at once.
        public var maximumActions = 8
        /// The most bytes of JSON the export asks the daemon for at a time (`trace` pages).
        public var tracePage = SimulatorActivityLog.answerBudget

        /// A configuration; see the properties.
        public init(socket: String, port: Int, key: String? = nil, files: [String: (bytes: [UInt8], contentType: String)], images: [[String: String]]) {
            self.socket = socket
            self.port = port
            self.key = key
            self.files = files
            self.images = images
        }
    }

    /// The port bound.
    public let port: Int
    /// The access rules (with the run's key).
    public let access: ConsoleAccess
    /// The feed the pages follow.
    public let feed: ConsoleFeed
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let stopped = Atomic<Bool>(false)
    private let uploads: String

    /// Binds 127.0.0.1:`configuration.port` and starts following the daemon.
    public init(_ configuration: Configuration, logger: Logger) throws(ConsoleStartError) {
        let uploads = NSTemporaryDirectory() + "cartekit-console-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try FileManager.default.createDirectory(atPath: uploads, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ConsoleStartError(reason: "cannot create the directory for uploaded images \(uploads): \(error.localizedDescription)")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let feed = ConsoleFeed(socket: configuration.socket, images: configuration.images, logger: logger)
        let shared = Mutex<ConsoleCore?>(nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 32)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard let core = shared.withLock({ $0 }) else { return channel.close() }
                // A bounded number of connections: anybody on the machine can open some.
                guard core.connections.wrappingAdd(1, ordering: .relaxed).newValue <= ConsoleCore.maximumConnections else {
                    core.connections.subtract(1, ordering: .relaxed)
                    core.logger.notice("console connection refused", metadata: ["code": "too-many-connections"])
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in core.connections.subtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(ConsoleHTTPHandler(core: core))
                }
            }
        let bound: any Channel
        do {
            bound = try bootstrap.bind(host: "127.0.0.1", port: configuration.port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? FileManager.default.removeItem(atPath: uploads)
            let inUse = "\(error)".contains("Address already in use")
            throw ConsoleStartError(reason: "cannot listen on 127.0.0.1:\(configuration.port) (--port): "
                + (inUse ? "the port is already in use by another program; choose another or 0 for any free one" : "\(error)"))
        }
        let port = bound.localAddress?.port ?? configuration.port
        let access = ConsoleAccess(port: port, key: configuration.key ?? ConsoleAccess.randomKey())
        shared.withLock { $0 = ConsoleCore(access: access, feed: feed, configuration: configuration, uploads: uploads, logger: logger) }
        self.port = port
        self.access = access
        self.feed = feed
        self.group = group
        self.channel = bound
        self.uploads = uploads
        feed.start()
    }

    /// The address to open: the key rides in the fragment, which the browser keeps to itself.
    public var address: String { "http://127.0.0.1:\(port)/#key=\(access.key)" }

    /// Stops serving and following the daemon; removes the uploaded images.
    public func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        feed.stop()
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: uploads)
    }
}

/// The console could not start.
public struct ConsoleStartError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why (the address and the system's reason).
    public var reason: String
    public var description: String { reason }
}

/// What every connection's handler shares.
final class ConsoleCore: Sendable {
    let access: ConsoleAccess
    let feed: ConsoleFeed
    let files: [String: (bytes: [UInt8], contentType: String)]
    let client: SimulatorControlClient
    let uploads: String
    let logger: Logger
    let maximumPages: Int
    let maximumActions: Int
    let pages = Atomic<Int>(0)
    let actions = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
    /// Connections at once, in all.
    static let maximumConnections = 64
    /// Bytes of JSON per `trace` request when exporting.
    let tracePage: Int
    let uploadCounter = Atomic<Int>(0)

    init(access: ConsoleAccess, feed: ConsoleFeed, configuration: ConsoleServer.Configuration, uploads: String, logger: Logger) {
        self.access = access
        self.feed = feed
        self.files = configuration.files
        self.client = SimulatorControlClient(path: configuration.socket)
        self.uploads = uploads
        self.logger = logger
        self.maximumPages = configuration.maximumPages
        self.maximumActions = configuration.maximumActions
        self.tracePage = configuration.tracePage
    }

    /// The page's own scripts, styles and connections; no frame may hold it.
    static let policy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"

    /// Runs an action against the daemon (blocking: on a thread of the caller's). Returns the HTTP
    /// status and the JSON answer (`ok`, and `error`/`kind` when it failed).
    func perform(_ request: ConsoleRequest) -> (HTTPResponseStatus, [String: Any]) {
        var wire: [String: any Sendable] = ["reader": request.slot]
        var upload: String? = nil
        defer { if let upload { unlink(upload) } }
        switch request {
        case .insert(_, let image):
            wire["op"] = "insert"
            wire["image"] = image
        case .upload(_, let fileName, let text):
            // Checked here first, so the tester reads where the file is wrong (line, column, field).
            do { _ = try CardImageLoader.load(text: text, source: fileName) } catch {
                return (.unprocessableEntity, ["ok": false, "kind": "image", "error": error.description])
            }
            let path = "\(uploads)/upload-\(uploadCounter.wrappingAdd(1, ordering: .relaxed).newValue).yaml"
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                return (.internalServerError, ["ok": false, "kind": "file", "error": "cannot write the uploaded image to \(path)"])
            }
            upload = path
            wire["op"] = "insert"
            wire["image"] = path
        case .remove:
            wire["op"] = "remove"
        case .fault(_, let name, let count, let ms, let sw):
            wire["op"] = "fault"
            wire["fault"] = name
            if let count { wire["count"] = count }
            if let ms { wire["ms"] = ms }
            if let sw { wire["sw"] = sw }
        case .keypad(_, let entries):
            wire["op"] = "keypad"
            wire["entries"] = entries.map { entry -> [String: any Sendable] in
                switch entry {
                case .digits(let d, _): return ["digits": d.secretText]
                case .cancel: return ["cancel": true]
                case .timeout: return ["timeout": true]
                }
            }
        }
        do {
            let answer = try client.send(wire)
            if answer["ok"] as? Bool == true { return (.ok, answer) }
            let kind = answer["kind"] as? String ?? "request"
            return (kind == "reader" ? .notFound : .unprocessableEntity, answer)
        } catch {
            return (.badGateway, ["ok": false, "kind": "daemon", "error": "the simulator daemon does not answer: \(error)"])
        }
    }

    /// The replay image of the card in `slot` (blocking).
    func export(slot: String) -> (HTTPResponseStatus, [(String, String)], [UInt8]) {
        func failure(_ status: HTTPResponseStatus, _ kind: String, _ message: String) -> (HTTPResponseStatus, [(String, String)], [UInt8]) {
            (status, [("Content-Type", "application/json")], Array(ConsoleFeed.encode(["ok": false, "kind": kind, "error": message]).utf8))
        }
        // Page by page (each answer stays far under the protocol's frame limit), all of the same card.
        var trace: [String: Any] = [:]
        var exchanges: [Any] = []
        var from = 0
        repeat {
            let page: [String: Any]
            do { page = try client.send(["op": "trace", "reader": slot, "from": from, "maxBytes": tracePage]) } catch {
                return failure(.badGateway, "daemon", "the simulator daemon does not answer: \(error)")
            }
            guard page["ok"] as? Bool == true else { return failure(.notFound, "reader", page["error"] as? String ?? "no such slot") }
            if from > 0, page["insertion"] as? Int != trace["insertion"] as? Int {
                return failure(.conflict, "export", "the card in \(slot) was changed during the export: export again")
            }
            if from == 0 { trace = page }
            exchanges += page["exchanges"] as? [Any] ?? []
            guard let next = page["next"] as? Int, next > from else { break }
            from = next
        } while true
        trace["exchanges"] = exchanges
        do {
            let (name, image) = try ConsoleExport.image(fromTrace: trace)
            logger.info("trace of \(slot) exported (\(image.replay?.transcript.count ?? 0) exchanges)")
            return (.ok, [("Content-Type", "application/yaml; charset=utf-8"), ("Content-Disposition", "attachment; filename=\"\(name)\"")],
                    Array(CardImageWriter.yaml(image).utf8))
        } catch {
            return failure(.conflict, "export", error.description)
        }
    }
}

/// One HTTP connection of the console.
final class ConsoleHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let core: ConsoleCore
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The request was refused on its head or its size: nothing more is read, the connection closes.
    private var refused = false
    private var subscription: Int?
    private var heartbeat: RepeatedTask?

    init(core: ConsoleCore) { self.core = core }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }  // answered and closing: the rest is not read
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            // Refused on the head, before any body is read: Host, key, Origin, JSON, size.
            if let (refusal, status) = check(h) {
                refused = true
                refuse(refusal, status, version: h.version, path: h.uri, channel: context.channel)
            } else if let length = h.headers["Content-Length"].first.flatMap({ Int($0) }), length > ConsoleRequest.maximumBody {
                refused = true
                tooLarge(h.version, channel: context.channel)
            }
        case .body(var buffer):
            guard let head else { return }
            if body.count + buffer.readableBytes > ConsoleRequest.maximumBody {
                refused = true
                tooLarge(head.version, channel: context.channel)
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            route(head, context: context)
        }
    }

    /// Whether the request is refused on its head alone: its Host; for the API the key; for an
    /// action the console's Origin and a JSON body.
    private func check(_ head: HTTPRequestHead) -> (ConsoleAccess.Refusal, HTTPResponseStatus)? {
        if let refusal = core.access.checkHost(head.headers["Host"]) { return (refusal, .forbidden) }
        guard head.uri.hasPrefix("/api/") else { return nil }
        guard core.access.hasKey(head.headers[ConsoleAccess.header]) else { return (.noKey, .unauthorized) }
        if head.method == .POST, let refusal = core.access.checkAction(origins: head.headers["Origin"], contentTypes: head.headers["Content-Type"]) {
            return (refusal, .forbidden)
        }
        return nil
    }

    private func refuse(_ refusal: ConsoleAccess.Refusal, _ status: HTTPResponseStatus, version: HTTPVersion, path: String, channel: any Channel) {
        core.logger.notice("console request refused", metadata: ["code": "\(refusal.code)", "path": "\(path.prefix(200))"])
        let body = ConsoleFeed.encode(["ok": false, "kind": "access", "code": refusal.code, "error": refusal.description]) + "\n"
        ConsoleHTTPHandler.send(channel, version, status, [("Content-Type", "application/json")], Array(body.utf8), close: true)
    }

    private func tooLarge(_ version: HTTPVersion, channel: any Channel) {
        body = []
        let text = ConsoleFeed.encode(["ok": false, "kind": "request", "error": ConsoleRequestError.tooLarge(ConsoleRequest.maximumBody + 1).description]) + "\n"
        ConsoleHTTPHandler.send(channel, version, .payloadTooLarge, [("Content-Type", "application/json")], Array(text.utf8), close: true)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let subscription {
            core.feed.unsubscribe(subscription)
            core.pages.subtract(1, ordering: .relaxed)
            self.subscription = nil
        }
        heartbeat?.cancel()
        context.fireChannelInactive()
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let channel = context.channel
        let version = head.version
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? head.uri
        let query = parts.count > 1 ? String(parts[1]) : ""
        // Access was checked on the head (``check``).
        func json(_ status: HTTPResponseStatus, _ object: [String: Any], close: Bool = false) {
            ConsoleHTTPHandler.send(channel, version, status, [("Content-Type", "application/json")], Array((ConsoleFeed.encode(object) + "\n").utf8), close: close)
        }
        switch (head.method, path) {
        case (.GET, "/api/feed"):
            guard core.pages.wrappingAdd(1, ordering: .relaxed).newValue <= core.maximumPages else {
                core.pages.subtract(1, ordering: .relaxed)
                return json(.serviceUnavailable, ["ok": false, "kind": "busy", "error": "\(core.maximumPages) pages already follow this console"], close: true)
            }
            startFeed(context: context, version: version)
        case (.GET, "/api/export"):
            guard let slot = ConsoleHTTPHandler.queryValue("slot", in: query), !slot.isEmpty else {
                return json(.badRequest, ["ok": false, "kind": "request", "error": "export needs ?slot=NAME"])
            }
            let core = self.core
            runOffLoop(json: json) {
                let (status, headers, body) = core.export(slot: slot)
                ConsoleHTTPHandler.send(channel, version, status, headers, body)
            }
        case (.POST, _) where path.hasPrefix("/api/"):
            let request: ConsoleRequest
            do { request = try ConsoleRequest.decode(action: String(path.dropFirst("/api/".count)), body: body) } catch {
                if case .unknownAction = error { return json(.notFound, ["ok": false, "kind": "request", "error": error.description]) }
                return json(.badRequest, ["ok": false, "kind": "request", "error": error.description])
            }
            body = []
            let core = self.core
            runOffLoop(json: json) {
                let (status, answer) = core.perform(request)
                core.logger.info("console action", metadata: ["action": "\(path.dropFirst(5))", "slot": "\(request.slot)", "ok": "\(status == .ok)"])
                ConsoleHTTPHandler.send(channel, version, status, [("Content-Type", "application/json")], Array((ConsoleFeed.encode(answer) + "\n").utf8))
            }
        case (.GET, _) where !path.hasPrefix("/api/"), (.HEAD, _) where !path.hasPrefix("/api/"):
            guard let file = core.files[path] else { return json(.notFound, ["ok": false, "kind": "request", "error": "nothing at \(path)"]) }
            ConsoleHTTPHandler.send(channel, version, .ok, [("Content-Type", file.contentType), ("Content-Security-Policy", ConsoleCore.policy),
                                                            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")],
                                    file.bytes, head: head.method == .HEAD)
        default:
            let allow = path == "/api/feed" || path == "/api/export" ? "GET" : path.hasPrefix("/api/") ? "POST" : "GET, HEAD"
            ConsoleHTTPHandler.send(channel, version, .methodNotAllowed, [("Content-Type", "application/json"), ("Allow", allow)],
                                    Array((ConsoleFeed.encode(["ok": false, "kind": "request", "error": "\(head.method) \(path) is not a console request"]) + "\n").utf8))
        }
    }

    /// Runs `work` (which talks to the daemon and answers) on a thread of its own, at most
    /// `maximumActions` at once; `json` answers 503 when that many are running.
    private func runOffLoop(json: (HTTPResponseStatus, [String: Any], Bool) -> Void, _ work: @escaping @Sendable () -> Void) {
        let core = self.core
        guard core.actions.wrappingAdd(1, ordering: .relaxed).newValue <= core.maximumActions else {
            core.actions.subtract(1, ordering: .relaxed)
            return json(.serviceUnavailable, ["ok": false, "kind": "busy", "error": "\(core.maximumActions) actions are already running"], false)
        }
        let thread = Thread {
            work()
            core.actions.subtract(1, ordering: .relaxed)
        }
        thread.name = "cartekit.console.action"
        thread.start()
    }

    /// The feed as server-sent events: the `hello` message, then every message of the feed, and a
    /// comment every 15 seconds so proxies and browsers keep the stream open. A page that reads too
    /// slowly (8 MiB waiting) is cut; its EventSource reconnects and gets a fresh `hello`.
    private func startFeed(context: ChannelHandlerContext, version: HTTPVersion) {
        let channel = context.channel
        let headers = HTTPHeaders([("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
        let pending = ManagedAtomic()
        let send: @Sendable (String) -> Void = { message in
            let bytes = "data: \(message)\n\n".utf8.count
            if pending.value.wrappingAdd(bytes, ordering: .relaxed).newValue > 8 << 20 {
                channel.close(promise: nil)
                return
            }
            var buffer = channel.allocator.buffer(capacity: bytes)
            buffer.writeString("data: \(message)\n\n")
            channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { _ in
                pending.value.subtract(bytes, ordering: .relaxed)
            }
        }
        send("{\"type\":\"open\"}")
        subscription = core.feed.subscribe(send)
        heartbeat = channel.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(15), delay: .seconds(15)) { _ in
            var buffer = channel.allocator.buffer(capacity: 16)
            buffer.writeString(": keep-alive\n\n")
            channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        }
    }

    /// Writes a whole answer from any thread: `headers`, `Content-Length`, `Cache-Control: no-store`,
    /// `X-Content-Type-Options: nosniff`; then closes when `close`.
    static func send(_ channel: any Channel, _ version: HTTPVersion, _ status: HTTPResponseStatus, _ headers: [(String, String)], _ body: [UInt8], head: Bool = false, close: Bool = false) {
        let all = HTTPHeaders(headers + [("Content-Length", "\(body.count)"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: all)), promise: nil)
        if !body.isEmpty && !head { channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in if close { channel.close(promise: nil) } }
    }

    /// The percent-decoded value of `name` in a query string.
    static func queryValue(_ name: String, in query: String) -> String? {
        for item in query.split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
        }
        return nil
    }
}

/// An atomic counter in a class, so `@Sendable` closures can share it.
final class ManagedAtomic: Sendable {
    let value = Atomic<Int>(0)
}
