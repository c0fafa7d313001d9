import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

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
///
/// Every new connection asks the server's `TLSContextProvider` for its context, so a
/// ``TLSFileWatcher`` or ``TLSContextReloader`` rotates certificates, trust anchors and CRLs
/// while the server runs; open connections keep the context they started with.
///
/// As a swift-service-lifecycle `Service` (give `bind` a `handler`), ``run()`` serves until
/// graceful shutdown, which stops accepting (new clients are refused by the kernel), lets
/// open connections finish for up to `drainTimeout`, then closes the rest with close_notify.
///
/// ```swift
/// let server = try await TLSServer.bind(host: "0.0.0.0", port: 8443, contextProvider: watcher, handler: { channel in … })
/// try await ServiceGroup(services: [watcher, server], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
public final class TLSServer: Service, Sendable {
    private let serverChannel: NIOAsyncChannel<EventLoopFuture<SecureChannel>, Never>
    /// Where every new connection gets its TLS context.
    public let contextProvider: any TLSContextProvider
    private let openConnections: OpenConnections
    private let drainTimeout: Duration
    /// Where the server's connections log (a no-op logger unless one was given to `bind`).
    public let logger: Logger
    /// The server's metrics, made once at `bind`.
    public let metrics: TLSMetrics
    private let onFailure: (@Sendable (any Error) -> Void)?
    private let handler: (@Sendable (SecureChannel) async throws -> Void)?

    /// The context the next connection would get (`nil` when the provider cannot give one).
    public var context: TLSContext? { try? contextProvider.currentContext() }

    /// The address the server listens on.
    public var localAddress: SocketAddress? { serverChannel.channel.localAddress }
    /// The port the server listens on (useful after binding port 0).
    public var port: Int { serverChannel.channel.localAddress?.port ?? 0 }
    /// Succeeds once the listener is closed (by ``close()`` or graceful shutdown): from
    /// then on, new clients are refused.
    public var listenerClosed: EventLoopFuture<Void> { serverChannel.channel.closeFuture }

    private init(
        serverChannel: NIOAsyncChannel<EventLoopFuture<SecureChannel>, Never>, contextProvider: any TLSContextProvider,
        connections: OpenConnections, drainTimeout: Duration, logger: Logger, metrics: TLSMetrics,
        onFailure: (@Sendable (any Error) -> Void)?, handler: (@Sendable (SecureChannel) async throws -> Void)?
    ) {
        self.serverChannel = serverChannel
        self.contextProvider = contextProvider
        self.openConnections = connections
        self.drainTimeout = drainTimeout
        self.logger = logger
        self.metrics = metrics
        self.onFailure = onFailure
        self.handler = handler
    }

    /// Binds `host:port` (port 0 picks a free one) with one fixed context. Connections are
    /// spread over the event loops of `eventLoopGroup`.
    ///
    /// - Parameter limits: how many connections and handshakes may be open at once; at a
    ///   limit the server stops accepting until one closes (or completes its handshake),
    ///   and further clients wait in the listen backlog. Established connections are also
    ///   bounded in time by the configuration's `TLSConfiguration.idleTimeout`.
    /// - Parameter host: the address to listen on (`127.0.0.1`, `::`, `0.0.0.0`, …).
    /// - Parameter port: the TCP port; 0 picks a free one (``port`` tells which).
    /// - Parameter context: the context every connection uses.
    /// - Parameter eventLoopGroup: where the listener and the connections run.
    /// - Parameter backlog: the listen backlog.
    /// - Parameter verificationHook: an async check of each verified peer, before any
    ///   application byte is released.
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
        try await bind(host: host, port: port, contextProvider: context, eventLoopGroup: eventLoopGroup,
                       backlog: backlog, limits: limits, verificationHook: verificationHook, logger: logger, metrics: metrics)
    }

    /// Binds `host:port` (port 0 picks a free one); every new connection gets its context
    /// from `contextProvider`. Connections are spread over the event loops of `eventLoopGroup`.
    ///
    /// - Parameters:
    ///   - host: the address to listen on.
    ///   - port: the TCP port; 0 picks a free one (``port`` tells which).
    ///   - contextProvider: asked for a context on every new connection (a fixed
    ///     `TLSContext`, a ``TLSContextReloader``, a ``TLSFileWatcher``).
    ///   - eventLoopGroup: where the listener and the connections run.
    ///   - backlog: the listen backlog.
    ///   - verificationHook: an async check of each verified peer, before any application
    ///     byte is released.
    ///   - limits: how many connections and handshakes may be open at once (see
    ///     ``bind(host:port:context:eventLoopGroup:backlog:limits:verificationHook:logger:metrics:)``).
    ///   - drainTimeout: on graceful shutdown, how long open connections may go on before
    ///     they are closed (with close_notify).
    ///   - logger: handshakes, refusals, failed handlers, served certificates near expiry,
    ///     graceful shutdown (``TLSLogKey`` metadata); `nil` logs nothing.
    ///   - metrics: the server's metrics; `nil` makes one ``TLSMetrics``.
    ///   - onFailure: what ``run()`` does with failed handshakes and handler errors (`nil`:
    ///     log them, as ``serve(onFailure:handler:)`` does).
    ///   - handler: serves one connection when the server runs as a `Service` (``run()``).
    public static func bind(
        host: String, port: Int, contextProvider: some TLSContextProvider,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        backlog: Int32 = 256, limits: TLSServerLimits = .unlimited, verificationHook: TLSVerificationHook? = nil,
        drainTimeout: Duration = .seconds(30),
        logger: Logger? = nil, metrics: TLSMetrics? = nil,
        onFailure: (@Sendable (any Error) -> Void)? = nil,
        handler: (@Sendable (SecureChannel) async throws -> Void)? = nil
    ) async throws -> TLSServer {
        let logger = logger ?? .gnuTLSNoOp
        let metrics = metrics ?? TLSMetrics()
        if let context = try? contextProvider.currentContext() {
            TLSLogging.checkServedCertificates(of: context, logger: logger, metrics: metrics)
        }
        let serverLoop = eventLoopGroup.next()
        let limiter = limits.isUnlimited ? nil : ConnectionLimiter(limits: limits, eventLoop: serverLoop)
        let connections = OpenConnections()
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
                    connections.add(channel)
                    let promise = channel.eventLoop.makePromise(of: ConnectionInfo.self)
                    if let limiter {
                        promise.futureResult.whenComplete { _ in limiter.handshakeEnded(channel) }
                    }
                    let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    do {
                        // The provider answers from a context built earlier: no I/O here.
                        let context = try contextProvider.currentContext()
                        let handler = GnuTLSHandler(context: context, handshakePromise: promise, verificationHook: verificationHook,
                                                    logger: logger, metrics: metrics)
                        try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                    } catch {
                        logger.error("no TLS context for a new connection: \(error)")
                        promise.fail(error)
                    }
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
        return TLSServer(serverChannel: serverChannel, contextProvider: contextProvider, connections: connections,
                         drainTimeout: drainTimeout, logger: logger, metrics: metrics, onFailure: onFailure, handler: handler)
    }

    /// Serves every connection with the `handler` given to `bind` until graceful shutdown
    /// (or ``close()``), then lets open connections finish for up to the `drainTimeout`
    /// given to `bind` and closes the rest with close_notify. This is the `Service`
    /// requirement: run the server in a swift-service-lifecycle `ServiceGroup`.
    ///
    /// - Throws: ``TLSError`` `.protocolError` when `bind` was given no `handler`.
    public func run() async throws {
        guard let handler else {
            throw TLSError(.protocolError, "TLSServer.run() serves with the handler given to TLSServer.bind(…, handler:), and none was given")
        }
        try await serve(onFailure: onFailure, handler: handler)
    }

    /// Serves every connection with `handler`, each in its own task of a discarding task
    /// group. Connections whose handshake or verification fails are reported to
    /// `onFailure` and closed; errors thrown by `handler` close that connection only.
    /// Returns when the server is closed (``close()``, or graceful shutdown in a
    /// `ServiceGroup`) and every handler finished: on graceful shutdown, connections
    /// still open after the `drainTimeout` given to `bind` are closed with close_notify.
    ///
    /// Without `onFailure`, failures go to the server's ``logger``: a refused handshake is
    /// already logged by the handler (event `refused`, with the reasons), so it is repeated
    /// at `debug` only; an error thrown by `handler` is logged at `warning` (event
    /// `connection_failed`).
    ///
    /// Each connection's task prefers the connection's event loop as its task executor
    /// (SE-0417), so awaiting the channel's reads, writes and close wakes no other thread.
    /// Like a channel handler's code, `handler` must therefore not block: await I/O, and run
    /// blocking or long CPU-bound work elsewhere (an actor, a thread pool, or
    /// `withTaskExecutorPreference(globalConcurrentExecutor) { … }`).
    public func serve(
        onFailure: (@Sendable (any Error) -> Void)? = nil,
        handler: @escaping @Sendable (SecureChannel) async throws -> Void
    ) async throws {
        let handshakeFailed = onFailure ?? Self.logHandshakeFailure(logger)
        let handlerFailed = onFailure ?? Self.logHandlerFailure(logger)
        defer { openConnections.cancelDeadline() }
        // The accept loop runs on the listener's event loop, each connection's task on its
        // channel's: handing a new connection to its task and
        // the task's awaits (handshake, reads, writes, close) then wake no other thread.
        let acceptExecutor = EventLoopTaskExecutor(serverChannel.channel.eventLoop)
        try await withGracefulShutdownHandler {
            try await withTaskExecutorPreference(acceptExecutor) {
                try await serverChannel.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await pending in inbound {
                            // The connection's task prefers its channel's event loop: waiting for
                            // the handshake, reading, writing and closing cost no thread hop.
                            group.addTask(executorPreference: EventLoopTaskExecutor(pending.eventLoop)) {
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
        } onGracefulShutdown: {
            self.shutDownGracefully()
        }
    }

    /// The verified connections, in the order their handshakes complete. Failed handshakes
    /// are reported to `onFailure` and skipped. Iterate from one task only.
    public func connections(onFailure: (@Sendable (any Error) -> Void)? = nil) -> AsyncThrowingStream<SecureChannel, any Error> {
        let onFailure = onFailure ?? Self.logHandshakeFailure(logger)
        let (stream, continuation) = AsyncThrowingStream<SecureChannel, any Error>.makeStream()
        let serverChannel = serverChannel
        // On the listener's event loop, each connection's wait on its own (as in `serve`).
        let task = Task(executorPreference: EventLoopTaskExecutor(serverChannel.channel.eventLoop)) {
            do {
                try await serverChannel.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await pending in inbound {
                            group.addTask(executorPreference: EventLoopTaskExecutor(pending.eventLoop)) {
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

    /// Stops accepting; connections already served finish on their own.
    public func close() async throws {
        try await serverChannel.channel.close()
    }

    /// Graceful shutdown: stops accepting now, and closes the connections still open after
    /// the `drainTimeout` given to `bind` (each sends close_notify). ``serve(onFailure:handler:)``
    /// calls it when a `ServiceGroup` shuts down gracefully; call it yourself otherwise.
    public func shutDownGracefully() {
        logger.info("graceful shutdown: no longer accepting; open connections may finish", metadata: [
            "tls.open_connections": "\(openConnections.count)", "tls.drain_timeout": "\(drainTimeout)",
        ])
        serverChannel.channel.close(promise: nil)
        let logger = logger
        openConnections.closeAll(after: TimeAmount(drainTimeout), on: serverChannel.channel.eventLoop) { count in
            if count > 0 { logger.notice("graceful shutdown: closed \(count) connections still open at the deadline") }
        }
    }
}

/// The server's open connections, so graceful shutdown can close those still open at its
/// deadline.
final class OpenConnections: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private var channels: [ObjectIdentifier: any Channel] = [:]
    private var deadline: Scheduled<Void>?

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return channels.count
    }

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        lock.lock()
        channels[id] = channel
        lock.unlock()
        // A strong capture, not `[weak self]`: the cycle (this set holds the channel, the
        // channel's close callback holds this set) ends when the channel closes. A weak
        // reference would give this object a side table, whose pointer Swift keeps tagged in
        // the reference count where LeakSanitizer cannot see it: every server still running
        // at exit was reported as leaking 32 bytes.
        channel.closeFuture.whenComplete { _ in
            self.lock.lock(); defer { self.lock.unlock() }
            self.channels[id] = nil
        }
    }

    /// After `delay`, closes every connection still open (close_notify first).
    func closeAll(after delay: TimeAmount, on eventLoop: any EventLoop, reported: @escaping @Sendable (Int) -> Void) {
        let scheduled = eventLoop.scheduleTask(in: delay) { [self] in
            lock.lock()
            let open = Array(channels.values)
            lock.unlock()
            for channel in open { channel.close(promise: nil) }
            reported(open.count)
        }
        lock.lock(); defer { lock.unlock() }
        deadline?.cancel()
        deadline = scheduled
    }

    /// Every connection finished before the deadline.
    func cancelDeadline() {
        lock.lock(); defer { lock.unlock() }
        deadline?.cancel()
        deadline = nil
    }
}
