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
