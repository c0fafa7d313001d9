import GnuTLS
import Logging
import NIOCore
import NIOPosix

/// A verified TLS connection for async/await code: made by ``SecureChannel/connect(host:port:context:eventLoopGroup:verificationHook:logger:metrics:)``
/// or accepted by a ``TLSServer``, and returned only after the handshake and every
/// verification step passed.
///
/// ```swift
/// let channel = try await SecureChannel.connect(host: "api.example.com", port: 443, context: context)
/// try await channel.executeThenClose { inbound, outbound in
///     try await outbound.write(ByteBuffer(string: "ping"))
///     for try await chunk in inbound { … }
/// }
/// ```
public struct SecureChannel: Sendable {
    /// What was negotiated and who the peer is.
    public let info: ConnectionInfo
    let asyncChannel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// The underlying NIO channel.
    public var channel: any Channel { asyncChannel.channel }

    /// Runs `body` with the single-use inbound stream of plaintext and the outbound writer,
    /// then sends close_notify and closes the channel, whether `body` returns or throws.
    public func executeThenClose<Result: Sendable>(
        _ body: (_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Result
    ) async throws -> Result {
        try await asyncChannel.executeThenClose { inbound, outbound in
            try await body(inbound, outbound)
        }
    }

    /// Opens a TLS connection to `host:port` and verifies the server.
    ///
    /// - Parameters:
    ///   - host: the server's host name or IP address: connected to, sent in SNI and
    ///     verified, unless the configuration's `serverName` names another.
    ///   - port: the server's TCP port.
    ///   - context: a client `TLSContext` (reuse it: it holds the trust list and the
    ///     session cache for resumption).
    ///   - eventLoopGroup: where the connection runs.
    ///   - verificationHook: an async check run after the chain verification.
    ///   - logger: where the handshake or its refusal is logged (``TLSLogKey`` metadata);
    ///     `nil` logs nothing.
    ///   - metrics: the client's metrics (make one ``TLSMetrics`` per client and reuse it);
    ///     `nil` records nothing.
    /// - Throws: ``TLSError`` (verification, alerts, timeout, …) or a connection error.
    public static func connect(
        host: String, port: Int, context: TLSContext,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        verificationHook: TLSVerificationHook? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) async throws -> SecureChannel {
        let timeout = context.configuration.handshakeTimeout.components
        let (asyncChannel, handshake) = try await ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(.seconds(max(1, timeout.seconds)))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let promise = channel.eventLoop.makePromise(of: ConnectionInfo.self)
                    let handler = GnuTLSHandler(context: context, serverHostname: host, handshakePromise: promise,
                                                verificationHook: verificationHook, logger: logger, metrics: metrics)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    return (wrapped, promise.futureResult)
                }
            }
        return try await established(asyncChannel, after: handshake)
    }

    /// The channel once `handshake` succeeds; when it fails, the channel is closed through
    /// `executeThenClose`, which also finishes its writer (an unfinished NIOAsyncWriter
    /// traps when it is released).
    private static func established(
        _ asyncChannel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, after handshake: EventLoopFuture<ConnectionInfo>
    ) async throws -> SecureChannel {
        do {
            let info = try await handshake.get()
            return SecureChannel(info: info, asyncChannel: asyncChannel)
        } catch {
            try? await asyncChannel.executeThenClose { _, _ in }
            throw error
        }
    }

    /// Opens a TLS connection with a one-off context built from `configuration`. Building
    /// a context loads credentials and trust: services that connect often should build one
    /// `TLSContext` and use ``connect(host:port:context:eventLoopGroup:verificationHook:logger:metrics:)``,
    /// which also lets connections resume sessions.
    public static func connect(
        host: String, port: Int, configuration: TLSConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        verificationHook: TLSVerificationHook? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) async throws -> SecureChannel {
        try await connect(host: host, port: port, context: TLSContext(configuration: configuration),
                          eventLoopGroup: eventLoopGroup, verificationHook: verificationHook, logger: logger, metrics: metrics)
    }

    /// Runs TLS over an existing, connected NIO channel (the handler is added to its
    /// pipeline) and waits for the handshake and verification.
    public static func wrap(
        _ channel: any Channel, serverHostname: String?, context: TLSContext, verificationHook: TLSVerificationHook? = nil,
        logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) async throws -> SecureChannel {
        let (asyncChannel, handshake) = try await channel.eventLoop.submit {
            let promise = channel.eventLoop.makePromise(of: ConnectionInfo.self)
            let handler = GnuTLSHandler(context: context, serverHostname: serverHostname, handshakePromise: promise,
                                        verificationHook: verificationHook, logger: logger, metrics: metrics)
            try channel.pipeline.syncOperations.addHandler(handler)
            let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            return (wrapped, promise.futureResult)
        }.get()
        return try await established(asyncChannel, after: handshake)
    }
}

/// A TLS server on SwiftNIO: binds, accepts, runs every handshake and verification, and
/// hands out only verified ``SecureChannel``s. A failing connection never takes the
/// listener down.
///
/// ```swift
/// let server = try await TLSServer.bind(host: "127.0.0.1", port: 8443, context: context)
/// try await server.serve { channel in
///     print("client:", channel.info.peerSubject ?? "anonymous")
///     try await channel.executeThenClose { inbound, outbound in … }
/// }
/// ```
public final class TLSServer: Sendable {
    private let serverChannel: NIOAsyncChannel<EventLoopFuture<SecureChannel>, Never>
    /// The shared TLS context.
    public let context: TLSContext
    /// Where the server's connections log (a no-op logger unless one was given to `bind`).
    public let logger: Logger
    /// The server's metrics, made once at `bind`.
    public let metrics: TLSMetrics

    /// The address the server listens on.
    public var localAddress: SocketAddress? { serverChannel.channel.localAddress }
    /// The port the server listens on (useful after binding port 0).
    public var port: Int { serverChannel.channel.localAddress?.port ?? 0 }

    private init(serverChannel: NIOAsyncChannel<EventLoopFuture<SecureChannel>, Never>, context: TLSContext, logger: Logger, metrics: TLSMetrics) {
        self.serverChannel = serverChannel
        self.context = context
        self.logger = logger
        self.metrics = metrics
    }

    /// Binds `host:port` (port 0 picks a free one). Connections are spread over the
    /// event loops of `eventLoopGroup`.
    ///
    /// - Parameter host: the address to listen on (`127.0.0.1`, `::`, `0.0.0.0`, a host name).
    /// - Parameter port: the TCP port; 0 picks a free one (``port`` tells which).
    /// - Parameter context: the server `TLSContext`, shared by every connection.
    /// - Parameter eventLoopGroup: connections are spread over its event loops.
    /// - Parameter backlog: the listen backlog.
    /// - Parameter verificationHook: an async check of every connection after the chain
    ///   verification (see ``TLSVerificationHook``): authorisation by subject or SPIFFE ID.
    /// - Parameter limits: how many connections and handshakes may be open at once; at a
    ///   limit the server stops accepting until one closes (or completes its handshake),
    ///   and further clients wait in the listen backlog. Established connections are also
    ///   bounded in time by the configuration's `idleTimeout`.
    /// - Parameter logger: where handshakes, refusals, failed connection handlers and
    ///   served certificates near expiry are logged (``TLSLogKey`` metadata); `nil` logs nothing.
    /// - Parameter metrics: the server's metrics; `nil` makes one ``TLSMetrics`` with
    ///   `MetricsSystem.factory` (no cost unless a backend is bootstrapped).
    public static func bind(
        host: String, port: Int, context: TLSContext,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        backlog: Int32 = 256, limits: TLSServerLimits = .unlimited, verificationHook: TLSVerificationHook? = nil,
        logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) async throws -> TLSServer {
        let logger = logger ?? .gnuTLSNoOp
        let metrics = metrics ?? TLSMetrics()
        TLSLogging.checkServedCertificates(of: context, logger: logger, metrics: metrics)
        let serverLoop = eventLoopGroup.next()
        let limiter = limits.isUnlimited ? nil : ConnectionLimiter(limits: limits, eventLoop: serverLoop)
        let serverChannel = try await ServerBootstrap(group: serverLoop, childGroup: eventLoopGroup)
            .serverChannelInitializer { channel in
                guard let limiter else { return channel.eventLoop.makeSucceededVoidFuture() }
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter) }
            }
            // With limits, one accept per read: the limiter sees each connection before the next.
            .serverChannelOption(.maxMessagesPerRead, value: limiter == nil ? UInt(4) : UInt(1))
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A client's close_notify ends the inbound stream without closing the channel, so
            // a handler still replying (an echo) finishes its writes before it closes.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let promise = channel.eventLoop.makePromise(of: ConnectionInfo.self)
                    if let limiter {
                        promise.futureResult.whenComplete { _ in limiter.handshakeEnded(channel) }
                    }
                    let handler = GnuTLSHandler(context: context, handshakePromise: promise, verificationHook: verificationHook,
                                                logger: logger, metrics: metrics)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    return promise.futureResult.map { SecureChannel(info: $0, asyncChannel: wrapped) }
                        .flatMapError { error in
                            // A failed handshake never reaches a handler: close the wrapper here,
                            // finishing its writer (an unfinished NIOAsyncWriter traps when released).
                            channel.eventLoop.makeFutureWithTask {
                                try? await wrapped.executeThenClose { _, _ in }
                                throw error
                            }
                        }
                }
            }
        return TLSServer(serverChannel: serverChannel, context: context, logger: logger, metrics: metrics)
    }

    /// Serves every connection with `handler`, each in its own task of a discarding task
    /// group. Connections whose handshake or verification fails are reported to
    /// `onFailure` and closed; errors thrown by `handler` close that connection only.
    /// Returns when the server is closed (``close()``) and every handler finished.
    ///
    /// Without `onFailure`, failures go to the server's ``logger``: a refused handshake is
    /// already logged by the handler (event `refused`, with the reasons), so it is repeated
    /// at `debug` only; an error thrown by `handler` is logged at `warning` (event
    /// `connection_failed`).
    public func serve(
        onFailure: (@Sendable (any Error) -> Void)? = nil,
        handler: @escaping @Sendable (SecureChannel) async throws -> Void
    ) async throws {
        let handshakeFailed = onFailure ?? Self.logHandshakeFailure(logger)
        let handlerFailed = onFailure ?? Self.logHandlerFailure(logger)
        try await serverChannel.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await pending in inbound {
                    group.addTask {
                        let channel: SecureChannel
                        do {
                            channel = try await pending.get()
                        } catch {
                            handshakeFailed(error)
                            return
                        }
                        do {
                            try await handler(channel)
                        } catch {
                            handlerFailed(error)
                            try? await channel.channel.close()
                        }
                    }
                }
            }
        }
    }

    /// The verified connections, in the order their handshakes complete. Failed handshakes
    /// are reported to `onFailure` and skipped. Iterate from one task only.
    public func connections(onFailure: (@Sendable (any Error) -> Void)? = nil) -> AsyncThrowingStream<SecureChannel, any Error> {
        let onFailure = onFailure ?? Self.logHandshakeFailure(logger)
        let (stream, continuation) = AsyncThrowingStream<SecureChannel, any Error>.makeStream()
        let task = Task {
            do {
                try await serverChannel.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await pending in inbound {
                            group.addTask {
                                do {
                                    continuation.yield(try await pending.get())
                                } catch {
                                    onFailure(error)
                                }
                            }
                        }
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// The default `onFailure` for a failed handshake: `debug` (the handler logged it, with
    /// the peer and the reasons, as event `refused`).
    private static func logHandshakeFailure(_ logger: Logger) -> @Sendable (any Error) -> Void {
        { error in
            var metadata = (error as? TLSError)?.logMetadata ?? [TLSLogKey.errorMessage: .string("\(error)")]
            metadata[TLSLogKey.role] = "server"
            logger.debug("TLS handshake failed", metadata: metadata)
        }
    }

    /// The default `onFailure` for an error thrown by a connection's handler: `warning`,
    /// event `connection_failed`.
    private static func logHandlerFailure(_ logger: Logger) -> @Sendable (any Error) -> Void {
        { error in
            var metadata = (error as? TLSError)?.logMetadata ?? [TLSLogKey.errorMessage: .string("\(error)")]
            metadata[TLSLogKey.event] = .string(TLSLogEvent.connectionFailed)
            metadata[TLSLogKey.role] = "server"
            logger.warning("connection handler failed", metadata: metadata)
        }
    }

    /// Stops accepting; connections already served finish on their own (graceful shutdown).
    public func close() async throws {
        try await serverChannel.channel.close()
    }
}
