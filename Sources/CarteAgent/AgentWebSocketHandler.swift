import CarteKit
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// One admitted connection: text messages, each a JSON-RPC 2.0 request, answered in any order (by
/// id); events while subscribed. Binary frames, invalid UTF-8, too many messages too fast, too many
/// calls in flight or a client that stops reading are refused or cut with the close code saying why.
// Unchecked: `send` (called from card tasks) touches only `shared` (locked) and constants; the rest runs on
// the channel's event loop.
final class AgentWebSocketHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let service: AgentService
    let caller: AgentAccess.Caller
    let limits: AgentServer.Limits
    let logger: Logger
    private var tokens: Double
    private var lastRefill = NIODeadline.now()
    private let shared = NIOLockedValueBox(Shared())
    private var closing = false

    struct Shared {
        var pendingWrites = 0
        var subscription: Task<Void, Never>?
        /// The calls in flight, by a number of this connection (each removes itself when it ends).
        var calls: [Int: Task<Void, Never>] = [:]
        var nextCall = 0
        var closed = false
    }

    init(service: AgentService, caller: AgentAccess.Caller, limits: AgentServer.Limits, logger: Logger) {
        self.service = service
        self.caller = caller
        self.limits = limits
        self.logger = logger
        self.tokens = limits.burst
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            let bytes = payload.readBytes(length: payload.readableBytes) ?? []
            guard let text = String(validating: bytes, as: UTF8.self) else {
                refuse(context, .dataInconsistentWithMessage, reason: "invalid-utf8")
                return
            }
            guard takeToken() else {
                logger.notice("refused", metadata: ["code": "rate-limited", "caller": "\(caller)"])
                // Answered with the request's id when it has one, so the caller's promise settles now.
                let id: Any = (try? AgentRequest.parse(text))?.id ?? NSNull()
                send(context.channel, AgentMessage.error(id: id, .rateLimited("more than \(Int(limits.messagesPerSecond)) messages a second")))
                return
            }
            handle(text, channel: context.channel)
        case .binary:
            refuse(context, .unacceptableData, reason: "binary-message")
        case .ping:
            var pong = frame.unmaskedData
            let data = pong.readSlice(length: pong.readableBytes) ?? context.channel.allocator.buffer(capacity: 0)
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: data)), promise: nil)
        case .connectionClose:
            guard !closing else { context.close(promise: nil); return }
            closing = true
            var data = frame.unmaskedData
            let code = data.readSlice(length: 2) ?? context.channel.allocator.buffer(capacity: 0)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))).whenComplete { _ in
                channel.close(promise: nil)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Calls in flight end (a card operation is cancelled and releases its card); the subscription too.
        let tasks = shared.withLockedValue { s -> [Task<Void, Never>] in
            defer { s.subscription = nil; s.calls = [:]; s.closed = true }
            return Array(s.calls.values) + [s.subscription].compactMap { $0 }
        }
        tasks.forEach { $0.cancel() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A frame or a message over the limit, or a broken fragment sequence, ends the connection with
        // the close code that says so (the client may see a reset instead if it is still sending).
        switch error {
        case NIOWebSocketError.invalidFrameLength, NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge,
             NIOWebSocketFrameAggregator.Error.tooManyFragments:
            refuse(context, .messageTooLarge, reason: "message-too-large")
        default:
            logger.notice("connection cut", metadata: ["caller": "\(caller)", "reason": "\(error)"])
            refuse(context, .protocolError, reason: "protocol-error")
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ code: WebSocketErrorCode, reason: String) {
        guard !closing else { return }
        closing = true
        logger.notice("refused", metadata: ["code": "\(reason)", "caller": "\(caller)"])
        var buffer = context.channel.allocator.buffer(capacity: 2)
        buffer.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func takeToken() -> Bool {
        let now = NIODeadline.now()
        let elapsed = Double((now - lastRefill).nanoseconds) / 1e9
        lastRefill = now
        tokens = min(limits.burst, tokens + elapsed * limits.messagesPerSecond)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    private func handle(_ text: String, channel: any Channel) {
        let request: AgentRequest
        do { request = try AgentRequest.parse(text) } catch {
            send(channel, AgentMessage.error(id: error.id, error.error))
            return
        }
        let id = request.id
        let caller = self.caller
        switch request.method {
        case "events.subscribe", "events.unsubscribe":
            if case .pairing(let origin) = caller {
                if let id { send(channel, AgentMessage.error(id: id, .notAllowed(origin))) }
                return
            }
            do { try request.only([]) } catch {
                if let id { send(channel, AgentMessage.error(id: id, error)) }
                return
            }
            let subscribe = request.method == "events.subscribe"
            let previous = shared.withLockedValue { s -> Task<Void, Never>? in
                defer { s.subscription = nil }
                return s.subscription
            }
            previous?.cancel()
            if subscribe {
                let stream = service.manager.events()
                let task = Task { [weak self] in
                    for await event in stream {
                        guard let self else { return }
                        self.send(channel, AgentMessage.notification(method: "event", json: AgentService.eventJSON(event)))
                    }
                }
                shared.withLockedValue { $0.subscription = task }
            }
            if let id { send(channel, AgentMessage.result(id: id, json: AgentMessage.encode(["subscribed": subscribe]))) }
        default:
            let number = shared.withLockedValue { s -> Int? in
                guard s.calls.count < limits.callsInFlight, !s.closed else { return nil }
                s.nextCall += 1
                return s.nextCall
            }
            guard let number else {
                if let id { send(channel, AgentMessage.error(id: id, .busy("\(limits.callsInFlight) calls of this connection are in flight"))) }
                return
            }
            let service = self.service
            let box = shared
            // The id as JSON text now: the task carries a string, not the parsed value.
            let idText: String? = id.map { AgentMessage.encode($0) }
            // Made under the lock, so the task is registered before it can end and remove itself.
            shared.withLockedValue { s in
                s.calls[number] = Task { [weak self] in
                    let answer: String
                    do throws(AgentError) {
                        let json = try await service.call(request, caller: caller)
                        answer = AgentMessage.result(idJSON: idText ?? "null", json: json)
                    } catch {
                        answer = AgentMessage.error(idJSON: idText ?? "null", error)
                    }
                    if idText != nil { self?.send(channel, answer) }
                    _ = box.withLockedValue { $0.calls.removeValue(forKey: number) }
                }
            }
        }
    }

    /// Sends a text message; a client that leaves too many unread is cut (policy violation).
    private func send(_ channel: any Channel, _ text: String) {
        let tooMany = shared.withLockedValue { s -> Bool in
            s.pendingWrites += 1
            return s.pendingWrites > limits.pendingWrites
        }
        if tooMany {
            logger.notice("refused", metadata: ["code": "slow-client", "caller": "\(caller)"])
            var buffer = channel.allocator.buffer(capacity: 2)
            buffer.write(webSocketErrorCode: .policyViolation)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        let box = shared
        let buffer = channel.allocator.buffer(string: text)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: buffer)).whenComplete { _ in
            box.withLockedValue { $0.pendingWrites -= 1 }
        }
    }
}
