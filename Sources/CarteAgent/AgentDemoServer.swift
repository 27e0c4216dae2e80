import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The demo page of `carte agent serve --demo-port`: a few static files over HTTP/1.1 on 127.0.0.1,
/// GET and HEAD only, the `Host` header checked as the agent checks it (a rebinding name gets 403).
public final class AgentDemoServer: Sendable {
    /// The port bound.
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let stopped = Atomic<Bool>(false)

    /// Whether the page is served over TLS (`https://`).
    public let isTLS: Bool

    /// Serves `files` (path → bytes and content type) on 127.0.0.1:`port` (0: the system chooses), over
    /// TLS with the agent's certificate when `tls` is given.
    public init(files: [String: (bytes: [UInt8], contentType: String)], port: Int, tls: AgentTLS.Material? = nil, logger: Logger) throws(AgentStartError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let chosen = Mutex(0)
        var ssl: NIOSSLContext? = nil
        if let tls {
            do {
                let chain = try NIOSSLCertificate.fromPEMBytes(Array(tls.chainPEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
                let key = try NIOSSLPrivateKey(bytes: Array(tls.keyPEM.utf8), format: .pem)
                ssl = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
            } catch {
                throw AgentStartError(reason: "the demo page's TLS: \(error)")
            }
        }
        let context = ssl
        isTLS = ssl != nil
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let context { try sync.addHandler(NIOSSLServerHandler(context: context)) }
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(StaticFiles(files: files, port: chosen.withLock { $0 }, logger: logger))
                }
            }
        do {
            channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw AgentStartError(reason: "cannot listen on 127.0.0.1:\(port) for the demo page: \(error)")
        }
        let bound = channel.localAddress?.port ?? port
        chosen.withLock { $0 = bound }
        self.port = bound
        self.group = group
    }

    /// The page's origin (allowed by the agent it was started with).
    public var origin: String { "\(isTLS ? "https" : "http")://127.0.0.1:\(port)" }

    /// Stops serving.
    public func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

private final class StaticFiles: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    /// The page's own scripts and styles, and WebSockets to the agent on loopback only.
    static let policy = "default-src 'self'; connect-src ws://127.0.0.1:* ws://[::1]:* ws://localhost:* wss://127.0.0.1:* wss://[::1]:* wss://localhost:*; style-src 'self' 'unsafe-inline'"
    let files: [String: (bytes: [UInt8], contentType: String)]
    let port: Int
    let logger: Logger
    private var head: HTTPRequestHead?

    init(files: [String: (bytes: [UInt8], contentType: String)], port: Int, logger: Logger) {
        self.files = files
        self.port = port
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let hosts = head.headers["Host"]
            var status = HTTPResponseStatus.ok
            var body: [UInt8] = []
            var type = "text/plain; charset=utf-8"
            if hosts.count != 1 || !AgentAccess.isLoopback(host: hosts[0], port: port) {
                logger.notice("demo page refused", metadata: ["code": "host-not-allowed"])
                status = .forbidden
                body = Array("Host not allowed\n".utf8)
            } else if head.method != .GET && head.method != .HEAD {
                status = .methodNotAllowed
                body = Array("GET only\n".utf8)
            } else if let file = files[path] {
                body = file.bytes
                type = file.contentType
            } else {
                status = .notFound
                body = Array("not found\n".utf8)
            }
            context.respond(head.version, status, headers: [("Content-Type", type), ("Content-Security-Policy", StaticFiles.policy)], body: body,
                            head: head.method == .HEAD)
        }
    }
}
