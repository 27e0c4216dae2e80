import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// `carte agent`: protocol `carte.agent/1` (JSON-RPC 2.0 over WebSocket, docs/agent.md) on loopback
/// only, for the pages and programs ``AgentAccess`` admits.
///
/// SwiftNIO's own HTTP/1.1 and WebSocket (RFC 6455) code does the framing, on one event-loop thread;
/// card operations run as tasks and answer when they end, so a slow card never holds other calls.
/// Every refusal (Host, Origin, token, path, limits) is logged with its reason and answered with a
/// 403 or a WebSocket close code before any message is read.
public final class AgentServer: Sendable {
    /// The limits of one agent.
    public struct Limits: Sendable {
        /// The largest message (a WebSocket message after reassembly), bytes.
        public var maximumMessage = 64 * 1024
        /// Messages a connection may send per second (on average; `burst` at once).
        public var messagesPerSecond = 20.0
        /// Messages a connection may send at once.
        public var burst = 40.0
        /// Connections at once, in all.
        public var connections = 32
        /// Connections at once from one origin (or from local programs).
        public var connectionsPerCaller = 8
        /// Calls of one connection in flight at once.
        public var callsInFlight = 4
        /// Messages waiting for a client that does not read before it is cut.
        public var pendingWrites = 256
        /// The time a connection has to complete its upgrade.
        public var handshake: Duration = .seconds(10)
        /// Default limits.
        public init() {}
    }

    /// The port bound for `ws://` (the one the system chose when 0 was asked).
    public let port: Int
    /// The port bound for `wss://`, when TLS material was given.
    public let tlsPort: Int?
    /// The rules of admission on `port`.
    public let access: AgentAccess
    private let group: MultiThreadedEventLoopGroup
    private let channels: [any Channel]
    private let stopped = Atomic<Bool>(false)
    let state: AgentConnections

    /// Binds 127.0.0.1 (and ::1 with the same port when the system has IPv6) for `ws://`, and, with
    /// `tls`, `tlsPort` the same way for `wss://`; then serves. `allowedOrigins` and `token` make the
    /// ``AgentAccess`` of each listener (the `Host` must carry that listener's port).
    public init(service: AgentService, port: Int, tlsPort: Int = 0, tls: AgentTLS.Material? = nil, allowedOrigins: [String], token: String,
                allowList: AgentAllowList? = nil, limits: Limits = Limits(), logger: Logger) throws(AgentStartError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = AgentConnections(limits: limits)
        var bound: [any Channel] = []
        func listen(_ wanted: Int, ssl: NIOSSLContext?) throws -> Int {
            let accessBox = Mutex<AgentAccess?>(nil)
            func bootstrap() -> ServerBootstrap {
                ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 64)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        guard let access = accessBox.withLock({ $0 }) else { return channel.close() }
                        if let ssl {
                            do { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: ssl)) } catch { return channel.close() }
                        }
                        return AgentServer.configure(channel, service: service, access: access, state: state, limits: limits, logger: logger)
                    }
            }
            let first = try bootstrap().bind(host: "127.0.0.1", port: wanted).wait()
            bound.append(first)
            let chosen = first.localAddress?.port ?? wanted
            if let second = try? bootstrap().bind(host: "::1", port: chosen).wait() { bound.append(second) }
            accessBox.withLock { $0 = AgentAccess(port: chosen, allowedOrigins: allowedOrigins, token: token, allowList: allowList) }
            return chosen
        }
        do {
            self.port = try listen(port, ssl: nil)
        } catch {
            for c in bound { try? c.close().wait() }
            try? group.syncShutdownGracefully()
            throw AgentStartError(reason: "cannot listen on 127.0.0.1:\(port): \(error)")
        }
        if let tls {
            do {
                let chain = try NIOSSLCertificate.fromPEMBytes(Array(tls.chainPEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
                let key = try NIOSSLPrivateKey(bytes: Array(tls.keyPEM.utf8), format: .pem)
                var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
                configuration.minimumTLSVersion = .tlsv12
                self.tlsPort = try listen(tlsPort, ssl: try NIOSSLContext(configuration: configuration))
            } catch {
                for c in bound { try? c.close().wait() }
                try? group.syncShutdownGracefully()
                throw AgentStartError(reason: "cannot listen for wss:// on 127.0.0.1:\(tlsPort): \(error)")
            }
        } else {
            self.tlsPort = nil
        }
        self.access = AgentAccess(port: self.port, allowedOrigins: allowedOrigins, token: token, allowList: allowList)
        self.group = group
        self.channels = bound
        self.state = state
    }

    /// The addresses served (`127.0.0.1:PORT`, `[::1]:PORT`).
    public var addresses: [String] {
        channels.compactMap { c in c.localAddress.map { a in (a.protocol == .inet6 ? "[::1]:" : "127.0.0.1:") + String(a.port ?? 0) } }
    }

    /// Connections open now.
    public var openConnections: Int { state.count }

    /// Stops listening and closes every connection.
    public func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        for c in channels { try? c.close().wait() }
        try? group.syncShutdownGracefully()
    }

    /// The path of the protocol.
    public static let path = "/carte.agent/1"
    /// The path where a page of an origin not allowed may ask for a pairing code.
    public static let pairingPath = "/carte.agent/1/pair"

    private static func configure(_ channel: any Channel, service: AgentService, access: AgentAccess, state: AgentConnections, limits: Limits, logger: Logger) -> EventLoopFuture<Void> {
        let peer = channel.remoteAddress?.description ?? "?"
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: limits.maximumMessage,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                switch AgentServer.decide(head, access: access, state: state) {
                case .success: return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                case .failure: return channel.eventLoop.makeSucceededFuture(nil)   // answered by AgentHTTPHandler
                }
            },
            upgradePipelineHandler: { channel, head in
                guard case .success(let caller) = AgentServer.decide(head, access: access, state: state), state.open(caller) else {
                    return channel.close()
                }
                logger.info("connection", metadata: ["caller": "\(caller)", "peer": "\(peer)"])
                channel.closeFuture.whenComplete { _ in
                    state.close(caller)
                    logger.info("connection closed", metadata: ["caller": "\(caller)", "peer": "\(peer)"])
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let idle = try? sync.handler(type: IdleStateHandler.self) { sync.removeHandler(idle, promise: nil) }
                    try sync.addHandler(NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: limits.maximumMessage))
                    try sync.addHandler(AgentWebSocketHandler(service: service, caller: caller, limits: limits, logger: logger))
                }
            })
        return channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(IdleStateHandler(readTimeout: .nanoseconds(Int64(limits.handshake.components.seconds) * 1_000_000_000 + limits.handshake.components.attoseconds / 1_000_000_000)))
            // Once upgraded, the connection carries WebSocket frames only: the HTTP handler goes.
            let upgraded: NIOHTTPServerUpgradeConfiguration = (upgraders: [upgrader], completionHandler: { context in
                let sync = context.pipeline.syncOperations
                if let http = try? sync.context(name: AgentHTTPHandler.name) { sync.removeHandler(context: http, promise: nil) }
            })
            try sync.configureHTTPServerPipeline(withServerUpgrade: upgraded, withErrorHandling: true)
            try sync.addHandler(AgentHTTPHandler(access: access, state: state, logger: logger, peer: peer), name: AgentHTTPHandler.name)
        }
    }

    /// The decision on an upgrade request.
    static func decide(_ head: HTTPRequestHead, access: AgentAccess, state: AgentConnections) -> Result<AgentAccess.Caller, AgentAccess.Refusal> {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let pairing = path == AgentServer.pairingPath
        let admitted = access.admit(hosts: head.headers["Host"], origins: head.headers["Origin"], authorization: head.headers["Authorization"], pairing: pairing)
        guard case .success(let caller) = admitted else { return admitted }
        guard path == AgentServer.path || pairing else { return .failure(.wrongPath(path)) }
        if let limit = state.wouldRefuse(caller) { return .failure(.tooManyConnections(limit: limit)) }
        return .success(caller)
    }
}

/// The agent could not start.
public struct AgentStartError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why (the address and the system's reason).
    public var reason: String
    public var description: String { reason }
}

/// Open connections, in all and per caller.
final class AgentConnections: Sendable {
    private let counts = Mutex<(all: Int, per: [AgentAccess.Caller: Int])>((0, [:]))
    let limits: AgentServer.Limits
    init(limits: AgentServer.Limits) { self.limits = limits }

    var count: Int { counts.withLock { $0.all } }

    /// The limit a new connection of `caller` would pass, or `nil`.
    func wouldRefuse(_ caller: AgentAccess.Caller) -> Int? {
        counts.withLock { c in
            if c.all >= limits.connections { return limits.connections }
            if c.per[caller, default: 0] >= limits.connectionsPerCaller { return limits.connectionsPerCaller }
            return nil
        }
    }

    func open(_ caller: AgentAccess.Caller) -> Bool {
        counts.withLock { c in
            guard c.all < limits.connections, c.per[caller, default: 0] < limits.connectionsPerCaller else { return false }
            c.all += 1
            c.per[caller, default: 0] += 1
            return true
        }
    }

    func close(_ caller: AgentAccess.Caller) {
        counts.withLock { c in
            c.all -= 1
            c.per[caller, default: 0] -= 1
            if c.per[caller] == 0 { c.per[caller] = nil }
        }
    }
}

/// Answers the HTTP requests that are not an admitted upgrade: 403 with the reason (logged), 404, 405.
final class AgentHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    static let name = "carte-agent-http"
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let access: AgentAccess
    let state: AgentConnections
    let logger: Logger
    let peer: String
    private var head: HTTPRequestHead?

    init(access: AgentAccess, state: AgentConnections, logger: Logger, peer: String) {
        self.access = access
        self.state = state
        self.logger = logger
        self.peer = peer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let (status, body): (HTTPResponseStatus, [String: Any])
            if case .failure(let refusal) = AgentServer.decide(head, access: access, state: state) {
                logger.notice("refused", metadata: ["code": "\(refusal.code)", "reason": "\(refusal)", "peer": "\(peer)"])
                status = refusal.code == "wrong-path" ? .notFound : .forbidden
                body = ["schema": "carte.agent.refusal/1", "code": refusal.code, "message": refusal.description]
            } else {
                // Admitted, but not a WebSocket upgrade.
                status = .upgradeRequired
                body = ["schema": "carte.agent.refusal/1", "code": "websocket-required", "message": "carte.agent/1 is spoken over a WebSocket at \(AgentServer.path)"]
            }
            var headers = [("Content-Type", "application/json"), ("Connection", "close")]
            if status == .upgradeRequired { headers.append(("Upgrade", "websocket")) }
            context.respond(head.version, status, headers: headers, body: Array((AgentMessage.encode(body) + "\n").utf8), close: true)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            logger.notice("refused", metadata: ["code": "handshake-timeout", "peer": "\(peer)"])
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

extension ChannelHandlerContext {
    /// Writes a whole HTTP/1.1 answer (after the pipeline's `HTTPResponseEncoder`): `headers`, then
    /// `Content-Length`, `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`, which every
    /// answer of the agent carries; the body unless the request was a HEAD; then closes if `close`.
    func respond(_ version: HTTPVersion, _ status: HTTPResponseStatus, headers: [(String, String)], body: [UInt8], head: Bool = false, close: Bool = false) {
        let all = HTTPHeaders(headers + [("Content-Length", "\(body.count)"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: all))), promise: nil)
        if !head { write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body)))), promise: nil) }
        let channel = self.channel
        writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in if close { channel.close(promise: nil) } }
    }
}
