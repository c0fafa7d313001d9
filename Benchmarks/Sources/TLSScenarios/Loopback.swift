import CRawGnuTLS
import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import NIOPosix
import NIOSSL

// Loopback: a real TCP server on 127.0.0.1 and clients connecting to it, `inFlight`
// connections at a time. Each connection is a TLS 1.3 ECDSA P-256 handshake (the client
// verifying chain and host name), a 4-byte echo, and the close. The server is the async
// layer users run: our `TLSServer` (GnuTLSHandler under NIOAsyncChannel, a discarding task
// group per connection), or swift-nio-ssl's NIOSSLServerHandler under the same NIOAsyncChannel
// accept loop and echo, or raw GnuTLS in C (rawserver.c: one thread, an epoll loop over
// non-blocking sockets, the same certificates, priority string and session tickets as our
// server). Clients are plain NIO pipelines (GnuTLSHandler, or NIOSSLClientHandler for the
// swift-nio-ssl server) on their own event loops, so the server's CPU is the process's minus
// the client loops'.

/// Who serves (and connects) in the loopback scenarios.
public enum LoopbackImplementation: String, Sendable, CaseIterable {
    /// Our `TLSServer`, with GnuTLSHandler clients.
    case ours = "ours"
    /// swift-nio-ssl's NIOSSLServerHandler under NIOAsyncChannel, with NIOSSLClientHandler clients.
    case nioSSL = "nio-ssl"
    /// Raw GnuTLS in C (one epoll thread), with the GnuTLSHandler clients `ours` has.
    case raw = "raw"
    /// GnuTLSHandler and an echo handler in a plain NIO pipeline (no async layer, no
    /// `TLSServer`), with the same clients: what the async layer costs on top.
    case handler = "handler"
}

/// One loopback run: `connections` connections, `inFlight` at a time.
public struct LoopbackMeasurement: Sendable {
    public var connections: Int
    public var wallSeconds: Double
    /// CPU of everything but the client event loops: the server's loops and its tasks.
    public var serverCPUSeconds: Double
    /// Context switches (voluntary and not) of everything but the client event loops.
    public var serverContextSwitches: Int
    public var connectionsPerSecond: Double { Double(connections) / wallSeconds }
    public var serverCPUMicrosecondsPerConnection: Double { serverCPUSeconds / Double(connections) * 1e6 }
    public var serverContextSwitchesPerConnection: Double { Double(serverContextSwitches) / Double(connections) }
}

/// A loopback server of one implementation, and the clients that connect to it. Make one
/// per implementation, measure as often as needed, then ``shutdown()``.
public final class LoopbackBench: @unchecked Sendable {  // Used from one thread; the server task is its own.
    public let implementation: LoopbackImplementation
    private let serverGroup: MultiThreadedEventLoopGroup
    private let clientGroup: MultiThreadedEventLoopGroup
    private let port: Int
    private let makeClientHandler: @Sendable () throws -> any ChannelHandler
    private let closeServer: @Sendable () async throws -> Void
    private let serving: Task<Void, any Error>

    /// Binds the server on 127.0.0.1 (a free port), with `serverThreads` event loops, and
    /// `clientThreads` event loops for the clients.
    public init(_ implementation: LoopbackImplementation, serverThreads: Int = 1, clientThreads: Int = 1) throws {
        self.implementation = implementation
        let pki = try PKICache.shared.pki(.ecdsaP256)
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: serverThreads)
        self.serverGroup = serverGroup
        clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: clientThreads)
        // Our clients (of our server and of the raw one) decline session tickets: each
        // connection is a full handshake, as swift-nio-ssl's clients (no session cache) make them.
        func ourClient() throws -> TLSContext {
            var client = pki.clientConfiguration(version: .tls13, tickets: false)
            client.chainCache = .disabled
            return try TLSContext(configuration: client)
        }
        switch implementation {
        case .ours:
            let clientContext = try ourClient()
            let serverContext = try TLSContext(configuration: pki.serverConfiguration(version: .tls13))
            let server = try blockingAwait {
                try await TLSServer.bind(host: "127.0.0.1", port: 0, context: serverContext, eventLoopGroup: serverGroup)
            }
            port = server.port
            makeClientHandler = { GnuTLSHandler(context: clientContext, serverHostname: "localhost") }
            closeServer = { try await server.close() }
            serving = Task {
                try await server.serve { channel in
                    try await channel.executeThenClose { inbound, outbound in
                        for try await chunk in inbound {
                            try await outbound.write(chunk)
                            return
                        }
                    }
                }
            }
        case .nioSSL:
            let contexts = try NIOSSLRunner.makeContexts(Scenario(name: "Loopback", algorithm: .ecdsaP256, version: .tls13, kind: .handshake(resumed: false)), pki: pki)
            let serverContext = contexts.server
            let clientContext = contexts.client
            let listener = try blockingAwait {
                try await Self.serverBootstrap(serverGroup)
                    .childChannelOption(.allowRemoteHalfClosure, value: true)
                    .bind(host: "127.0.0.1", port: 0) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
                            return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
            }
            port = listener.channel.localAddress?.port ?? 0
            makeClientHandler = { try NIOSSLClientHandler(context: clientContext, serverHostname: "localhost") }
            closeServer = { try await listener.channel.close() }
            serving = Task {
                try await listener.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await connection in inbound {
                            group.addTask {
                                try? await connection.executeThenClose { inbound, outbound in
                                    for try await chunk in inbound {
                                        try await outbound.write(chunk)
                                        return
                                    }
                                }
                            }
                        }
                    }
                }
            }
        case .handler:
            let clientContext = try ourClient()
            let serverContext = try TLSContext(configuration: pki.serverConfiguration(version: .tls13))
            let listener = try Self.serverBootstrap(serverGroup)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(GnuTLSHandler(context: serverContext))
                        try channel.pipeline.syncOperations.addHandler(EchoOnce())
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            port = listener.localAddress?.port ?? 0
            makeClientHandler = { GnuTLSHandler(context: clientContext, serverHostname: "localhost") }
            closeServer = { try await listener.close() }
            serving = Task {}
        case .raw:
            let clientContext = try ourClient()
            let server = try RawLoopbackServer(pki: pki)
            port = server.port
            makeClientHandler = { GnuTLSHandler(context: clientContext, serverHostname: "localhost") }
            closeServer = { server.stop() }
            serving = Task {}
        }
    }

    /// The listener options TLSServer.bind sets.
    private static func serverBootstrap(_ group: MultiThreadedEventLoopGroup) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    }

    /// Runs `connections` connections, `inFlight` at a time.
    public func measure(connections: Int, inFlight: Int) throws -> LoopbackMeasurement {
        let remaining = Countdown(connections)
        let clientCPU0 = try clientLoopsCPUSeconds()
        let clientSwitches0 = try clientLoopsContextSwitches()
        let process0 = processCPUSeconds()
        let processSwitches0 = contextSwitches(RUSAGE_SELF.rawValue)
        let wall0 = DispatchTime.now().uptimeNanoseconds
        let lanes = (0..<max(1, inFlight)).map { _ in lane(remaining) }
        try EventLoopFuture.andAllSucceed(lanes, on: clientGroup.next()).wait()
        let wall1 = DispatchTime.now().uptimeNanoseconds
        let process1 = processCPUSeconds()
        let processSwitches1 = contextSwitches(RUSAGE_SELF.rawValue)
        let clientSwitches1 = try clientLoopsContextSwitches()
        let clientCPU1 = try clientLoopsCPUSeconds()
        return LoopbackMeasurement(connections: connections, wallSeconds: Double(wall1 - wall0) / 1e9,
                                   serverCPUSeconds: max(0, (process1 - process0) - (clientCPU1 - clientCPU0)),
                                   serverContextSwitches: max(0, (processSwitches1 - processSwitches0) - (clientSwitches1 - clientSwitches0)))
    }

    /// Stops the server and both event loop groups.
    public func shutdown() throws {
        try blockingAwait { [closeServer] in try await closeServer() }
        _ = try? blockingAwait { [serving] in try await serving.value }
        try clientGroup.syncShutdownGracefully()
        try serverGroup.syncShutdownGracefully()
    }

    /// Connections one after another until `remaining` runs out.
    private func lane(_ remaining: Countdown) -> EventLoopFuture<Void> {
        let loop = clientGroup.next()
        guard remaining.take() else { return loop.makeSucceededVoidFuture() }
        return connectOnce(on: loop).flatMap { self.lane(remaining) }
    }

    private func connectOnce(on loop: any EventLoop) -> EventLoopFuture<Void> {
        let done = loop.makePromise(of: Void.self)
        let makeClientHandler = makeClientHandler
        ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try makeClientHandler())
                    try channel.pipeline.syncOperations.addHandler(EchoClient(done: done))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .whenFailure { done.fail($0) }
        return done.futureResult
    }

    private func clientLoopsContextSwitches() throws -> Int {
        var total = 0
        for loop in clientGroup.makeIterator() {
            total += try loop.submit { contextSwitches(rusageThread) }.wait()
        }
        return total
    }

    private func clientLoopsCPUSeconds() throws -> Double {
        var total = 0.0
        for loop in clientGroup.makeIterator() {
            total += try loop.submit { threadCPUSeconds() }.wait()
        }
        return total
    }
}

/// The C server of rawserver.c, configured as `pki.serverConfiguration(version: .tls13)` is.
private final class RawLoopbackServer: @unchecked Sendable {  // `stop` runs once; the C side is thread-safe.
    private let server: OpaquePointer
    let port: Int

    init(pki: BenchmarkPKI) throws {
        let chain = pki.serverIdentity.chain.map(\.pemEncoded).joined()
        let key = try pki.serverKey.pemEncoded()
        let priority = TLSConfiguration.defaultPriority(minimum: .tls13, maximum: .tls13)
        var port: Int32 = 0
        var error = [CChar](repeating: 0, count: 256)
        // GnuTLS copies the certificates, the key and the priority string.
        let started = chain.withCString { chain in
            key.withCString { key in
                priority.withCString { priority in
                    var config = rawserver_config(chain_pem: chain, key_pem: key, priority: priority, tickets: 1)
                    return rawserver_start(&config, &port, &error, error.count)
                }
            }
        }
        guard let started else {
            throw ScenarioError("raw GnuTLS server: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        server = started
        self.port = Int(port)
    }

    private let stopped = NSLock()
    private var isStopped = false

    func stop() {
        stopped.lock(); defer { stopped.unlock() }
        guard !isStopped else { return }
        isStopped = true
        rawserver_stop(server)
    }

    deinit { stop() }
}

/// The plain-NIO server's application: echoes the first chunk, then closes (close_notify,
/// as `executeThenClose` does for the async servers).
private final class EchoOnce: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
        context.close(promise: nil)
    }
}

/// Writes "ping" once the channel is active (the TLS handler holds it until the handshake),
/// closes when the echo arrives, and completes `done` when the channel is gone.
private final class EchoClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let done: EventLoopPromise<Void>
    private var echoed = 0
    private var failure: (any Error)?

    init(done: EventLoopPromise<Void>) { self.done = done }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "ping")), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        echoed += unwrapInboundIn(data).readableBytes
        if echoed >= 4 { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil && echoed < 4 { failure = error }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if echoed >= 4 {
            done.succeed(())
        } else {
            done.fail(failure ?? ScenarioError("loopback: the connection closed before the echo"))
        }
        context.fireChannelInactive()
    }
}

/// How many connections are left to make, shared by the lanes (on several client loops).
private final class Countdown: @unchecked Sendable {  // `left` is only touched under `lock`.
    private let lock = NSLock()
    private var left: Int
    init(_ count: Int) { left = count }
    func take() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard left > 0 else { return false }
        left -= 1
        return true
    }
}

/// `RUSAGE_THREAD` (Linux; Glibc's module does not export it): the calling thread's usage.
private let rusageThread: Int32 = 1

/// Voluntary plus involuntary context switches of the process (`RUSAGE_SELF`) or the calling thread.
func contextSwitches(_ who: Int32) -> Int {
    var usage = rusage()
    getrusage(who, &usage)
    return usage.ru_nvcsw + usage.ru_nivcsw
}

/// User plus system CPU of the whole process.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Runs `body` on the cooperative pool and blocks the calling thread (never an event loop
/// or a pool thread: the benchmark's main thread) until it returns.
func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let semaphore = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        semaphore.signal()
    }
    semaphore.wait()
    return try box.result!.get()
}

/// Where `blockingAwait`'s task leaves its result.
private final class ResultBox<T>: @unchecked Sendable {  // Written once before `signal`, read after `wait`.
    var result: Result<T, any Error>?
}
