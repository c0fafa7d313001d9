import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why an OCSP (or CRL) fetch over HTTP failed.
public struct OCSPFetchError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// The URL is not a plain `http://host[:port][/path]` URL.
        public static let invalidURL = Code(rawValue: "invalidURL")
        /// The responder could not be reached, or the connection failed.
        public static let unreachable = Code(rawValue: "unreachable")
        /// No complete answer before the deadline.
        public static let timedOut = Code(rawValue: "timedOut")
        /// The responder answered with an HTTP error or a body that is too large.
        public static let httpError = Code(rawValue: "httpError")
    }

    /// What kind of failure this is.
    public var code: Code
    /// What was attempted and why it failed.
    public var message: String

    /// An error with `code` and a sentence a user can act on.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A readable form, for logs and messages.
    public var description: String { message }
}

/// A small HTTP/1.1 client for OCSP (RFC 6960 POST) on NIOHTTP1, with a deadline and a
/// bounded response size. It never runs on the caller's event loop: use it from a task.
public enum OCSPClient {
    /// The largest response body accepted.
    public static let maximumResponseBytes = 1024 * 1024

    /// POSTs `request` to `url` and parses the answer (not verified: call
    /// `OCSPResponse.verify(certificate:issuer:at:nonce:position:allowedSkew:maximumAge:)`).
    /// - Parameter request: the OCSP request to send.
    /// - Parameter url: the responder's `http://` URL (from the certificate's AIA).
    /// - Parameter timeout: the bound on connecting, sending and reading the answer.
    /// - Parameter eventLoopGroup: where the HTTP connection runs.
    /// - Parameter logger: the fetch is logged at `debug`, a failure at `warning`
    ///   (``TLSLogKey/ocspURL``, ``TLSLogKey/ocspStatus``); `nil` logs nothing.
    /// - Throws: ``OCSPFetchError``, or `GnuTLSError` `.malformedDER` when the body is not an OCSP response.
    public static func fetch(
        _ request: OCSPRequest, from url: String, timeout: TimeAmount = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger? = nil
    ) async throws -> OCSPResponse {
        try await fetch(derEncodedRequest: request.derEncoded, from: url, timeout: timeout, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// POSTs the DER bytes `der` (any request, even a malformed one) to `url` and parses the answer.
    /// - Parameter der: the request's DER bytes, sent as they are.
    /// - Parameter url: the responder's `http://` URL (from the certificate's AIA).
    /// - Parameter timeout: the bound on connecting, sending and reading the answer.
    /// - Parameter eventLoopGroup: where the HTTP connection runs.
    /// - Parameter logger: as for ``fetch(_:from:timeout:eventLoopGroup:logger:)``.
    public static func fetch(
        derEncodedRequest der: [UInt8], from url: String, timeout: TimeAmount = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger? = nil
    ) async throws -> OCSPResponse {
        let logger = logger ?? .gnuTLSNoOp
        do {
            let body = try await post(url: url, body: der, contentType: "application/ocsp-request",
                                      accept: "application/ocsp-response", timeout: timeout, eventLoopGroup: eventLoopGroup)
            let response = try OCSPResponse(derEncoded: body)
            logger.debug("OCSP response fetched", metadata: [
                TLSLogKey.event: .string(TLSLogEvent.ocspFetch), TLSLogKey.ocspURL: .string(url),
                TLSLogKey.ocspStatus: .string("\(response.responseStatus)"),
            ])
            return response
        } catch {
            logger.warning("OCSP fetch failed", metadata: [
                TLSLogKey.event: .string(TLSLogEvent.ocspFetch), TLSLogKey.ocspURL: .string(url),
                TLSLogKey.errorMessage: .string("\(error)"),
            ])
            throw error
        }
    }

    /// Sends one HTTP request and returns the body of a `200` answer.
    static func post(
        url: String, body: [UInt8]?, contentType: String?, accept: String, timeout: TimeAmount,
        eventLoopGroup: any EventLoopGroup
    ) async throws -> [UInt8] {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "http",
              let host = components.host, !host.isEmpty else {
            throw OCSPFetchError(.invalidURL, "'\(url)' is not an http:// URL (OCSP and CRLs are fetched over plain HTTP)")
        }
        let port = components.port ?? 80
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        let deadline = NIODeadline.now() + timeout
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: components.port.map { "\(host):\($0)" } ?? host)
        headers.add(name: "Accept", value: accept)
        headers.add(name: "Connection", value: "close")
        if let body {
            headers.add(name: "Content-Type", value: contentType ?? "application/octet-stream")
            headers.add(name: "Content-Length", value: "\(body.count)")
        }
        let head = HTTPRequestHead(version: .http1_1, method: body == nil ? .GET : .POST, uri: path, headers: headers)
        let bodyBuffer = body.map { ByteBuffer(bytes: $0) }
        let eventLoop = eventLoopGroup.next()
        let promise = eventLoop.makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            // The request goes out from the event loop as soon as the connection is up, not
            // when this task next runs: responders close connections that stay silent, and a
            // busy service's tasks may wait long for a thread.
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(
                            ResponseCollector(request: head, body: bodyBuffer, promise: promise))
                        let timer = channel.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                            promise.fail(OCSPFetchError(.timedOut, "no complete answer from \(url) within \(timeout.nanoseconds / 1_000_000) ms"))
                            channel.close(promise: nil)
                        }
                        promise.futureResult.whenComplete { _ in timer.cancel() }
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw OCSPFetchError(.unreachable, "cannot connect to \(host):\(port) for \(url): \(error)")
        }
        defer { channel.close(promise: nil) }
        do {
            return try await promise.futureResult.get()
        } catch let error as OCSPFetchError {
            throw error
        } catch {
            throw OCSPFetchError(.unreachable, "fetching \(url) failed: \(error)")
        }
    }
}

/// Sends one HTTP request when the connection is up and collects the response (bounded)
/// into a promise.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private let requestBody: ByteBuffer?
    private let promise: EventLoopPromise<[UInt8]>
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []

    init(request: HTTPRequestHead, body: ByteBuffer?, promise: EventLoopPromise<[UInt8]>) {
        self.request = request
        self.requestBody = body
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        if let requestBody { context.write(wrapOutboundOut(.body(.byteBuffer(requestBody))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(let chunk):
            guard body.count + chunk.readableBytes <= OCSPClient.maximumResponseBytes else {
                promise.fail(OCSPFetchError(.httpError, "the answer is larger than \(OCSPClient.maximumResponseBytes) bytes"))
                context.close(promise: nil)
                return
            }
            body.append(contentsOf: chunk.readableBytesView)
        case .end:
            if let status, status == .ok {
                promise.succeed(body)
            } else {
                promise.fail(OCSPFetchError(.httpError, "the responder answered HTTP \(status.map { "\($0.code) \($0.reasonPhrase)" } ?? "nothing")"))
            }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(OCSPFetchError(.unreachable, "the connection closed before a complete answer"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(OCSPFetchError(.unreachable, "the connection failed: \(error)"))
        context.close(promise: nil)
    }
}
