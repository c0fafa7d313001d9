import Foundation
import GnuTLS
import GnuTLSAuthority
import Logging
import NIOCore
import NIOGnuTLS
import NIOHTTP1
import NIOPosix

/// An OCSP responder over HTTP/1.1 on SwiftNIO: RFC 6960 POST (`application/ocsp-request`
/// body) and RFC 5019 GET (the base64 DER request, URL-encoded, as the path), answered with
/// `application/ocsp-response`. Optionally serves the CA's current CRL (DER) at ``crlPath``,
/// so one URL base can go into both a certificate's OCSP and CRL distribution point pointers.
///
/// Requests are bounded: bodies above ``maximumRequestBytes`` get `413`, a connection that
/// does not complete a request within ``requestTimeout`` is closed. Signing and the ledger
/// lookup run on a thread pool, never on an event loop: by default one the server starts
/// for itself and shuts down in ``close()``, after the listening channel has closed.
public final class OCSPServer: Sendable {
    /// The path the CRL is served at.
    public static let crlPath = "/ca.crl"
    /// The largest request body (and GET path) accepted.
    public static let maximumRequestBytes = 16 * 1024
    /// How long a connection may take to deliver one request.
    public static let requestTimeout: TimeAmount = .seconds(10)

    /// One answered request, for logging.
    public struct LogRecord: Sendable, CustomStringConvertible {
        /// `GET` or `POST` (or the refused method).
        public var method: String
        /// The path (shortened for GET requests).
        public var path: String
        /// The HTTP status sent.
        public var httpStatus: Int
        /// The OCSP response status, when an OCSP response was sent.
        public var responseStatus: OCSPResponse.Status?
        /// The serials asked about and their statuses.
        public var statuses: [(SerialNumber, OCSPResponse.CertificateStatus)]
        /// Time from the end of the request to the response.
        public var latency: TimeInterval
        /// Whether the response came from the cache.
        public var cached: Bool

        /// A readable form, for logs and messages.
        public var description: String {
            let what: String
            if let responseStatus, responseStatus == .successful {
                what = statuses.map { serial, status -> String in
                    switch status {
                    case .good: return "serial=\(serial.hexString) status=good"
                    case .unknown: return "serial=\(serial.hexString) status=unknown"
                    case .revoked(_, let reason): return "serial=\(serial.hexString) status=revoked reason=\(reason ?? .unspecified)"
                    }
                }.joined(separator: " ")
            } else if let responseStatus {
                what = "status=\(responseStatus)"
            } else {
                what = "path=\(path)"
            }
            return "\(method) \(what) http=\(httpStatus)\(cached ? " cached" : "") latency=\(String(format: "%.2f", latency * 1000))ms"
        }
    }

    private let channel: any Channel
    /// The pool the server started for itself (shut down in ``close()``); `nil` when the
    /// caller gave one, which stays the caller's to shut down.
    private let ownedThreadPool: NIOThreadPool?

    /// The port the server listens on.
    public var port: Int { channel.localAddress?.port ?? 0 }
    /// The address the server listens on.
    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel, ownedThreadPool: NIOThreadPool?) {
        self.channel = channel
        self.ownedThreadPool = ownedThreadPool
    }

    /// Threads of the pool a server starts for itself: signing is short CPU work and the
    /// ledger lookup a short SQLite read, so a few threads serve many connections.
    static var defaultThreadCount: Int { min(4, max(2, System.coreCount)) }

    /// Binds `host:port` (port 0 picks a free one) and answers for `responder`.
    /// - Parameters:
    ///   - responder: answers the OCSP requests (signs the responses).
    ///   - host: the address to listen on.
    ///   - port: the TCP port; 0 picks a free one (``port`` tells which).
    ///   - eventLoopGroup: where the HTTP connections run.
    ///   - crl: produces the DER CRL served at ``crlPath`` (runs on the thread pool); `nil`: 404.
    ///   - threadPool: where signing and ledger lookups run; `nil` (the default): a pool of
    ///     the server's own, started here and shut down by ``close()``. NIO's process-wide
    ///     `NIOThreadPool.singleton` is never shut down, so a server that must leave no
    ///     threads behind uses its own.
    ///   - log: called once per request, off the event loop's critical path.
    ///   - logger: every answered request is logged at `info` (`TLSLogKey.event` `ocsp_request`,
    ///     method, HTTP status, OCSP status, latency); `nil` logs nothing.
    public static func start(
        responder: OCSPResponder, crl: (@Sendable () throws -> [UInt8])? = nil, host: String = "127.0.0.1", port: Int = 0,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        threadPool: NIOThreadPool? = nil, log: (@Sendable (LogRecord) -> Void)? = nil, logger: Logger? = nil
    ) async throws -> OCSPServer {
        let log = OCSPLogging.requestLogger(log, logger: logger)
        let pool: NIOThreadPool
        let ownedThreadPool: NIOThreadPool?
        if let threadPool {
            (pool, ownedThreadPool) = (threadPool, nil)
        } else {
            pool = NIOThreadPool(numberOfThreads: defaultThreadCount)
            pool.start()
            ownedThreadPool = pool
        }
        do {
            let channel = try await bind(responder: responder, crl: crl, host: host, port: port, eventLoopGroup: eventLoopGroup,
                                         threadPool: pool, log: log)
            return OCSPServer(channel: channel, ownedThreadPool: ownedThreadPool)
        } catch {
            try? await ownedThreadPool?.shutdownGracefully()
            throw error
        }
    }

    private static func bind(
        responder: OCSPResponder, crl: (@Sendable () throws -> [UInt8])?, host: String, port: Int,
        eventLoopGroup: any EventLoopGroup, threadPool: NIOThreadPool, log: (@Sendable (LogRecord) -> Void)?
    ) async throws -> any Channel {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: requestTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        OCSPHTTPHandler(responder: responder, crl: crl, threadPool: threadPool, log: log))
                }
            }
            .bind(host: host, port: port).get()
    }

    /// Stops listening, then shuts the server's own thread pool down (a pool given to
    /// ``start(responder:crl:host:port:eventLoopGroup:threadPool:log:logger:)`` is left running).
    /// A request still queued or still arriving on an open connection is answered
    /// `503 Service Unavailable`. Calling it again does nothing more.
    public func close() async throws {
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
            // Closed before; the pool is shut down below all the same.
        }
        try await ownedThreadPool?.shutdownGracefully()
    }

    /// A server dropped without ``close()`` (a caller that threw first) stops listening and
    /// stops its own thread pool all the same, without waiting: neither the listening socket
    /// nor the pool's threads outlive the last reference. After ``close()`` both calls do
    /// nothing (the channel is closed, the pool already stopped).
    deinit {
        channel.close(promise: nil)
        ownedThreadPool?.shutdownGracefully { _ in }
    }
}

/// Routes the responder's request records to a `Logger` besides the caller's closure.
enum OCSPLogging {
    static func requestLogger(_ log: (@Sendable (OCSPServer.LogRecord) -> Void)?, logger: Logger?) -> (@Sendable (OCSPServer.LogRecord) -> Void)? {
        guard let logger else { return log }
        return { record in
            log?(record)
            var metadata: Logger.Metadata = [
                TLSLogKey.event: .string(TLSLogEvent.ocspRequest),
                TLSLogKey.httpMethod: .string(record.method),
                TLSLogKey.httpStatus: .stringConvertible(record.httpStatus),
                TLSLogKey.durationMilliseconds: .stringConvertible((record.latency * 1_000_000).rounded() / 1000),
            ]
            if let status = record.responseStatus { metadata[TLSLogKey.ocspStatus] = .string("\(status)") }
            if !record.statuses.isEmpty {
                metadata[TLSLogKey.ocspCertificates] = .string(record.statuses.map { "\($0.0.hexString)=\($0.1)" }.joined(separator: ","))
            }
            logger.info("OCSP request answered", metadata: metadata)
        }
    }
}

/// One connection: collects a request (bounded), answers it on the thread pool.
final class OCSPHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: OCSPResponder
    private let crl: (@Sendable () throws -> [UInt8])?
    private let threadPool: NIOThreadPool
    private let log: (@Sendable (OCSPServer.LogRecord) -> Void)?
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    /// A request is being answered: the read timeout bounds waiting for a request, not
    /// the signing of its answer (slow on a loaded machine).
    private var answering = false

    init(responder: OCSPResponder, crl: (@Sendable () throws -> [UInt8])?, threadPool: NIOThreadPool,
         log: (@Sendable (OCSPServer.LogRecord) -> Void)?) {
        self.responder = responder
        self.crl = crl
        self.threadPool = threadPool
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = context.channel.allocator.buffer(capacity: 0)
            tooLarge = false
        case .body(var chunk):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > OCSPServer.maximumRequestBytes {
                tooLarge = true
                body = nil
            } else {
                body?.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let bytes = body.map { Array($0.readableBytesView) } ?? []
            body = nil
            handle(context: context, head: head, body: bytes)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            guard !answering else { return }
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private enum Work {
        case ocsp([UInt8])
        case crl
        case refuse(HTTPResponseStatus)
    }

    private func classify(_ head: HTTPRequestHead, body: [UInt8]) -> Work {
        if tooLarge { return .refuse(.payloadTooLarge) }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch head.method {
        case .POST:
            return .ocsp(body)
        case .GET:
            if path == OCSPServer.crlPath { return crl == nil ? .refuse(.notFound) : .crl }
            guard path.utf8.count <= OCSPServer.maximumRequestBytes else { return .refuse(.uriTooLong) }
            // RFC 5019 section 5: the path is url-encode(base64(DER)), after the base path "/".
            let encoded = path.drop { $0 == "/" }
            guard let decoded = encoded.removingPercentEncoding,
                  let der = Data(base64Encoded: decoded.replacingOccurrences(of: " ", with: "+")) else {
                return .ocsp([])  // answered malformedRequest
            }
            return .ocsp(Array(der))
        default:
            return .refuse(.methodNotAllowed)
        }
    }

    private func handle(context: ChannelHandlerContext, head: HTTPRequestHead, body: [UInt8]) {
        let started = NIODeadline.now()
        let work = classify(head, body: body)
        let responder = self.responder
        let crl = self.crl
        let log = self.log
        let keepAlive = head.isKeepAlive
        let method = head.method.rawValue
        let path = head.uri.count > 48 ? String(head.uri.prefix(45)) + "…" : head.uri
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        answering = true
        let future: EventLoopFuture<(HTTPResponseStatus, String?, [UInt8], OCSPServer.LogRecord)>
        let record: @Sendable (HTTPResponseStatus, OCSPResponder.Answer?) -> OCSPServer.LogRecord = { status, answer in
            OCSPServer.LogRecord(method: method, path: path, httpStatus: Int(status.code), responseStatus: answer?.response.responseStatus,
                                 statuses: answer?.statuses ?? [], latency: 0, cached: answer?.cached ?? false)
        }
        switch work {
        case .refuse(let status):
            future = context.eventLoop.makeSucceededFuture((status, nil, [], record(status, nil)))
        case .ocsp(let der):
            future = threadPool.runIfActive(eventLoop: context.eventLoop) {
                let answer = responder.respond(to: der)
                return (.ok, "application/ocsp-response", answer.response.derEncoded, record(.ok, answer))
            }
        case .crl:
            future = threadPool.runIfActive(eventLoop: context.eventLoop) {
                guard let crl else { return (.notFound, nil, [], record(.notFound, nil)) }
                do {
                    return (.ok, "application/pkix-crl", try crl(), record(.ok, nil))
                } catch {
                    return (.internalServerError, nil, [], record(.internalServerError, nil))
                }
            }
        }
        future.whenComplete { result in
            handler.value.answering = false
            let context = loopBound.value
            let (status, contentType, bytes, logRecord): (HTTPResponseStatus, String?, [UInt8], OCSPServer.LogRecord)
            switch result {
            case .success(let value): (status, contentType, bytes, logRecord) = value
            case .failure: (status, contentType, bytes, logRecord) = (.serviceUnavailable, nil, [], record(.serviceUnavailable, nil))
            }
            var headers = HTTPHeaders()
            if let contentType { headers.add(name: "Content-Type", value: contentType) }
            headers.add(name: "Content-Length", value: "\(bytes.count)")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            if status == .ok, contentType == "application/ocsp-response" { headers.add(name: "Cache-Control", value: "no-cache") }
            let responseHead = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
            context.write(NIOAny(HTTPServerResponsePart.head(responseHead)), promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
            let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
            if !keepAlive || status == .payloadTooLarge {
                done.whenComplete { _ in loopBound.value.close(promise: nil) }
            }
            var finished = logRecord
            finished.latency = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            log?(finished)
        }
    }
}
