import GnuTLS
import NIOCore
import NIOPosix

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

    /// The address the server listens on.
    public var localAddress: SocketAddress? { serverChannel.channel.localAddress }
    /// The port the server listens on (useful after binding port 0).
    public var port: Int { serverChannel.channel.localAddress?.port ?? 0 }

    private init(serverChannel: NIOAsyncChannel<EventLoopFuture<SecureChannel>, Never>, context: TLSContext) {
        self.serverChannel = serverChannel
        self.context = context
    }

    /// Binds `host:port` (port 0 picks a free one). Connections are spread over the
    /// event loops of `eventLoopGroup`.
    ///
    /// - Parameter limits: how many connections and handshakes may be open at once; at a
    ///   limit the server stops accepting until one closes (or completes its handshake),
    ///   and further clients wait in the listen backlog. Established connections are also
    ///   bounded in time by the configuration's ``TLSConfiguration/idleTimeout``.
    public static func bind(
        host: String, port: Int, context: TLSContext,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        backlog: Int32 = 256, limits: TLSServerLimits = .unlimited, verificationHook: TLSVerificationHook? = nil
    ) async throws -> TLSServer {
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
                    let handler = GnuTLSHandler(context: context, handshakePromise: promise, verificationHook: verificationHook)
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
        return TLSServer(serverChannel: serverChannel, context: context)
    }

    /// Serves every connection with `handler`, each in its own task of a discarding task
    /// group. Connections whose handshake or verification fails are reported to
    /// `onFailure` and closed; errors thrown by `handler` close that connection only.
    /// Returns when the server is closed (``close()``) and every handler finished.
    public func serve(
        onFailure: @escaping @Sendable (any Error) -> Void = { _ in },
        handler: @escaping @Sendable (SecureChannel) async throws -> Void
    ) async throws {
        try await serverChannel.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await pending in inbound {
                    group.addTask {
                        let channel: SecureChannel
                        do {
                            channel = try await pending.get()
                        } catch {
                            onFailure(error)
                            return
                        }
                        do {
                            try await handler(channel)
                        } catch {
                            onFailure(error)
                            try? await channel.channel.close()
                        }
                    }
                }
            }
        }
    }

    /// The verified connections, in the order their handshakes complete. Failed handshakes
    /// are reported to `onFailure` and skipped. Iterate from one task only.
    public func connections(onFailure: @escaping @Sendable (any Error) -> Void = { _ in }) -> AsyncThrowingStream<SecureChannel, any Error> {
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

    /// Stops accepting; connections already served finish on their own (graceful shutdown).
    public func close() async throws {
        try await serverChannel.channel.close()
    }
}
