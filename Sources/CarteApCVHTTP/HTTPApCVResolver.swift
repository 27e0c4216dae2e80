import AsyncHTTPClient
public import CarteApCV
public import CarteVitale
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// An ``ApCVResolver`` that asks an apCV service over HTTP on loopback (`carte sim apcv-service`),
/// through AsyncHTTPClient (one client per process on SwiftNIO's event loops, never Swift's
/// concurrency pool for the I/O). It follows no redirect (the token goes to the loopback address given
/// and nowhere else) and does not retry a refused connection. The whole exchange — connecting,
/// sending, receiving at most 64 KiB — is bounded by `timeout`.
public struct HTTPApCVResolver: ApCVResolver {
    /// The service's address.
    public let endpoint: LoopbackEndpoint
    /// The software the tokens must be for (their audience).
    public let softwareID: String
    /// The limit for the whole exchange (connecting, sending, receiving), in seconds.
    public let timeout: Double

    /// A resolver for the software `softwareID` against the service at `endpoint`. `timeout` is kept
    /// within 0.05…300 s (a value that is not a number counts as the default, 5 s).
    public init(endpoint: LoopbackEndpoint, softwareID: String, timeout: Double = 5) {
        self.endpoint = endpoint
        self.softwareID = softwareID
        self.timeout = timeout.isNaN ? 5 : min(max(timeout, 0.05), 300)
    }

    public func resolve(token: [UInt8]) async throws(ApCVError) -> VitaleCard {
        var request = HTTPClientRequest(url: "http://\(endpoint)\(identityPath)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(encodeJSON(IdentityRequest(token: Data(token).base64EncodedString(), softwareID: softwareID)))
        let milliseconds = Int64(timeout * 1000)
        let deadline = NIODeadline.now() + .milliseconds(milliseconds)
        let status: Int
        let body: ByteBuffer
        do {
            // The deadline of `execute` ends with the response head: the race with a sleep bounds the body too.
            let answer = try await withThrowingTaskGroup(of: (Int, ByteBuffer)?.self) { group in
                group.addTask { [request] in
                    let response = try await HTTPApCVResolver.client.execute(request, deadline: deadline)
                    return (Int(response.status.code), try await response.body.collect(upTo: 65536))
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(milliseconds))
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let answer else { throw HTTPClientError.deadlineExceeded }
            (status, body) = answer
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw .serviceUnavailable("\(endpoint) did not answer within \(timeout) s")
        } catch let error as HTTPClientError where error == .remoteConnectionClosed {
            throw .serviceUnavailable("\(endpoint) closed the connection before answering")
        } catch is NIOTooManyBytesError {
            throw .malformedServiceResponse("the answer is larger than 64 KiB")
        } catch let error as HTTPParserError {
            throw .malformedServiceResponse("malformed HTTP message: \(error)")
        } catch {
            throw .serviceUnavailable("\(endpoint): \(Self.reason(error))")
        }
        return try IdentityDocument.identity(status: status, body: Array(body.readableBytesView))
    }

    /// The client of every resolver in the process (never shut down, like AsyncHTTPClient's shared one).
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// A connection failure in words ("Connection refused").
    static func reason(_ error: any Error) -> String {
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first { return reason(first.error) }
        return "\(error)"
    }
}
