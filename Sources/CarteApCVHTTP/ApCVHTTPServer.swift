public import CarteApCV
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The simulated apCV service over HTTP/1.1 on a loopback address: `carte sim apcv-service`.
///
/// SwiftNIO does the networking and HTTP framing (one event-loop thread: connections are answered in
/// turn, never on Swift's concurrency pool). On top of NIO's parser the server stays strict: each
/// connection gets one answer within `connectionTimeout` of its acceptance (a stalled or trickling
/// client is cut with a `carte.apcv-error/1` saying so), the header is at most 8 KiB and the body
/// 64 KiB (413), and folded header lines, whitespace in a field name, a repeated field,
/// `Transfer-Encoding` or a malformed `Content-Length` get a 400. Every refusal is a
/// `carte.apcv-error/1` document. Call ``stop()`` when done.
public final class ApCVHTTPServer: Sendable {
    /// The service answering.
    public let service: ApCVService
    /// The address actually bound (the port the system chose when 0 was asked).
    public let endpoint: LoopbackEndpoint
    /// The longest a connection may take, from acceptance to the answer.
    public let connectionTimeout: Duration

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let stopped = Atomic<Bool>(false)
    private let counter: ServedCounter

    /// The largest header and body accepted.
    static let maximumHeader = 8192
    static let maximumBody = 65536

    /// Binds `endpoint` (loopback only) and starts serving. `connectionTimeout` is kept within 0.05…60 s.
    public init(service: ApCVService, endpoint: LoopbackEndpoint, connectionTimeout: Duration = .seconds(5)) throws(ApCVError) {
        self.service = service
        let timeout = min(max(connectionTimeout, .milliseconds(50)), .seconds(60))
        self.connectionTimeout = timeout
        let counter = ServedCounter()
        self.counter = counter
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let deadline = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A client that shuts its side down after half a request gets an answer, not silence.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(HeaderGuard(maximum: ApCVHTTPServer.maximumHeader))
                    try pipeline.addHandler(HTTPResponseEncoder())
                    try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                    try pipeline.addHandler(IdentityHandler(service: service, deadline: deadline, counter: counter))
                }
            }
        do {
            channel = try bootstrap.bind(host: endpoint.host, port: Int(endpoint.port)).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw .serviceUnavailable("cannot listen on \(endpoint): \(error)")
        }
        self.endpoint = endpoint.with(port: UInt16(channel.localAddress?.port ?? Int(endpoint.port)))
    }

    /// How many connections were accepted (counted before they are answered).
    public var servedCount: Int { counter.value }

    /// Stops accepting, closes the listening socket and ends the event loop (and the connections).
    public func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Connections accepted.
final class ServedCounter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func increment() { count.add(1, ordering: .relaxed) }
}

/// Reads the request's header bytes as they arrive, before NIO's parser, through an
/// ``HTTPHeaderScanner`` (at most `maximum` bytes, no folded lines, no whitespace before a field's
/// colon). Then it steps aside.
final class HeaderGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var scanner: HTTPHeaderScanner
    private var done = false
    private var refused = false

    init(maximum: Int) { scanner = HTTPHeaderScanner(maximum: maximum) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let buffer = unwrapInboundIn(data)
        if done {
            context.fireChannelRead(data)
            return
        }
        for byte in buffer.readableBytesView {
            switch scanner.feed(byte) {
            case .more: continue
            case .end: done = true
            case .refused(let refusal):
                refused = true
                context.fireErrorCaught(refusal)
                return
            }
            break
        }
        if !done, scanner.seen > scanner.maximum {
            refused = true
            context.fireErrorCaught(HTTPHeaderRefusal.tooLarge)
            return
        }
        context.fireChannelRead(data)
    }
}

/// One request, one answer, then the connection closes.
final class IdentityHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: ApCVService
    private let deadline: TimeAmount
    private let counter: ServedCounter
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var answered = false
    private var timer: Scheduled<Void>?

    init(service: ApCVService, deadline: TimeAmount, counter: ServedCounter) {
        self.service = service
        self.deadline = deadline
        self.counter = counter
    }

    func channelActive(context: ChannelHandlerContext) {
        counter.increment()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: deadline) {
            let (handler, context) = loopBound.value
            handler.refuse(context, 400, "malformed HTTP message: no complete message within the timeout")
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            if let problem = check(h) {
                refuse(context, problem.status, problem.message)
                return
            }
            head = h
        case .body(var chunk):
            guard body.readableBytes + chunk.readableBytes <= ApCVHTTPServer.maximumBody else {
                refuse(context, 413, "the body is too large")
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            let (status, document) = respond(head, Array(body.readableBytesView))
            answer(context, status, document)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, !answered {
            refuse(context, 400, "malformed HTTP message: the connection closed before a whole message")
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !answered else { return }
        switch error {
        case HTTPHeaderRefusal.tooLarge: refuse(context, 413, HTTPHeaderRefusal.tooLarge.description)
        case let refusal as HTTPHeaderRefusal: refuse(context, 400, refusal.description)
        case HTTPParserError.headerOverflow: refuse(context, 413, HTTPHeaderRefusal.tooLarge.description)
        case let parser as HTTPParserError: refuse(context, 400, "malformed HTTP message: \(parser)")
        default: refuse(context, 400, "malformed HTTP message: \(error)")
        }
    }

    /// The header's refusal, if any: fields given twice, chunked bodies, a body over the limit.
    private func check(_ h: HTTPRequestHead) -> (status: Int, message: String)? {
        var names = Set<String>()
        for (name, _) in h.headers {
            guard names.insert(name.lowercased()).inserted else { return (400, "malformed HTTP message: header \(name.prefix(40)) given twice") }
        }
        if h.headers.contains(name: "transfer-encoding") { return (400, "malformed HTTP message: Transfer-Encoding is not supported; send Content-Length") }
        if let text = h.headers.first(name: "content-length") {
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return (400, "malformed HTTP message: Content-Length \"\(text.prefix(20))\"") }
            guard text.count <= 9, let n = Int(text), n <= ApCVHTTPServer.maximumBody else { return (413, "the body (\(text.prefix(20)) bytes) is too large") }
        }
        return nil
    }

    /// The status and JSON document for a complete request.
    private func respond(_ h: HTTPRequestHead, _ body: [UInt8]) -> (Int, [UInt8]) {
        guard h.uri == identityPath else { return refusal(404, "no such endpoint \(h.uri.prefix(80)) (POST \(identityPath))") }
        guard h.method == .POST else { return refusal(405, "\(h.method.rawValue) \(identityPath): only POST") }
        guard h.headers.first(name: "content-type")?.lowercased().hasPrefix("application/json") == true else {
            return refusal(415, "the body must be application/json")
        }
        let token: [UInt8], softwareID: String
        switch IdentityRequest.parse(body) {
        case .success(let parsed): (token, softwareID) = parsed
        case .failure(let problem): return refusal(400, problem.message)
        }
        do {
            let identity = try service.resolve(token: token, softwareID: softwareID)
            return (200, encodeJSON(IdentityDocument(identity: identity)))
        } catch {
            return (ErrorDocument.status(of: error), encodeJSON(ErrorDocument(error)))
        }
    }

    private func refusal(_ status: Int, _ message: String) -> (Int, [UInt8]) {
        var document = ErrorDocument(.malformedToken(message))
        document.error = "bad-request"
        document.message = message
        return (status, encodeJSON(document))
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: Int, _ message: String) {
        let (s, document) = refusal(status, message)
        answer(context, s, document)
    }

    /// Writes the one answer, then closes the connection.
    private func answer(_ context: ChannelHandlerContext, _ status: Int, _ document: [UInt8]) {
        guard !answered else { return }
        answered = true
        timer?.cancel()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(document.count))
        headers.add(name: "Connection", value: "close")
        let responseStatus = HTTPResponseStatus(statusCode: status, reasonPhrase: reasonPhrases[status] ?? "Error")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: responseStatus, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: document)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
