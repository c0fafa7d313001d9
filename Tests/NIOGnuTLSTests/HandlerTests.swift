import Foundation
import GnuTLS
import GnuTLSCore
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOPosix
import Testing

// GnuTLSHandler in NIO pipelines: a client and a server NIOAsyncTestingChannel (thread-safe,
// so the verification hook's task can hop back onto the loop) with the test shuttling
// ciphertext between them, the way swift-nio-ssl's back-to-back embedded tests do; or a
// channel against a bare engine; and one test on real loopback sockets.

/// Sits after the TLS handler and records what reaches the application. Consumes errors so
/// the testing channel does not rethrow them from `writeInbound`.
final class Recorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NSLock()
    private var _reads: [String] = []
    private var _events: [ConnectionInfo] = []
    private var _errors: [any Error] = []

    var reads: [String] { lock.withLock { _reads } }
    var events: [ConnectionInfo] { lock.withLock { _events } }
    var errors: [any Error] { lock.withLock { _errors } }
    var tlsErrorCodes: [TLSError.Code] { errors.compactMap { ($0 as? TLSError)?.code } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: unwrapInboundIn(data))
        lock.withLock { _reads.append(text) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompletedEvent {
            lock.withLock { _events.append(completed.info) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lock.withLock { _errors.append(error) }
    }
}

/// An async gate a verification hook waits at until the test opens it.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var opened = false
    private var _entered = 0

    var entered: Int { lock.withLock { _entered } }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow: Bool = lock.withLock {
                _entered += 1
                if opened { return true }
                self.continuation = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiting: CheckedContinuation<Void, Never>? = lock.withLock {
            opened = true
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume()
    }
}

/// Polls `condition` (short steps) until it holds or `timeout` passes; never a timing assertion.
/// Only for kernel state that no event reports (the descriptors under /proc after channels
/// closed on their event loops): a bounded poll with a generous safety-net deadline.
func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// `eventually` for back-to-back pairs: runs the ends' testing loops between polls, since the
/// verification hook runs on the channel's event loop and a testing loop runs its work only
/// when told to.
func eventually(running ends: [TLSEnd], _ condition: () -> Bool) async -> Bool {
    await eventually {
        condition()
    } between: {
        for end in ends { await end.channel.testingEventLoop.run() }
    }
}

/// `eventually` with `step` awaited between polls.
func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool, between step: () async -> Void) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        await step()
        try? await Task.sleep(for: .milliseconds(2))
    }
    return condition()
}

/// One end of a back-to-back pair: a testing channel with GnuTLSHandler and a Recorder.
struct TLSEnd {
    let channel: NIOAsyncTestingChannel
    let recorder: Recorder
    let handshake: EventLoopFuture<ConnectionInfo>

    init(context: TLSContext, host: String? = nil, hook: TLSVerificationHook? = nil) async throws {
        let loop = NIOAsyncTestingEventLoop()
        let recorder = Recorder()
        let promise = loop.makePromise(of: ConnectionInfo.self)
        channel = try await NIOAsyncTestingChannel(loop: loop) { channel in
            try channel.pipeline.syncOperations.addHandlers([
                GnuTLSHandler(context: context, serverHostname: host, handshakePromise: promise, verificationHook: hook),
                recorder,
            ])
        }
        self.recorder = recorder
        self.handshake = promise.futureResult
    }

    /// Makes the channel active, which starts the handshake.
    func activate() async throws {
        try await channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 4433)).get()
    }

    func write(_ text: String) -> EventLoopFuture<Void> {
        channel.writeAndFlush(ByteBuffer(string: text))
    }

    func outbound() async throws -> [ByteBuffer] {
        var buffers: [ByteBuffer] = []
        while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
        return buffers
    }

    func deliver(_ buffers: [ByteBuffer]) async {
        for buffer in buffers { _ = try? await channel.writeInbound(buffer) }
    }

    /// Closes the channel (if the test left it open) and stops its loop: a NIO channel's
    /// pipeline and its handlers refer to each other until the channel closes. A close
    /// waits for the peer's close_notify, which no one sends here: the loop's virtual clock
    /// is moved past the shutdown timeout (no real time passes).
    func finish() async {
        let closing = channel.startClose()
        await channel.testingEventLoop.advanceTime(by: .hours(1))
        _ = try? await closing.get()
        _ = try? await channel.finish(acceptAlreadyClosed: true)
        await channel.testingEventLoop.shutdownGracefully()
    }
}

extension NIOAsyncTestingChannel {
    /// Starts closing the channel and returns the close's future without waiting for it
    /// (`close()` on a testing channel awaits; a TLS close waits for the peer's close_notify).
    func startClose() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        close(promise: promise)
        return promise.futureResult
    }
}

/// Moves ciphertext both ways until neither side has anything to send.
func shuttle(_ a: TLSEnd, _ b: TLSEnd, maxRounds: Int = 64) async throws {
    for _ in 0..<maxRounds {
        let toB = try await a.outbound()
        await b.deliver(toB)
        let toA = try await b.outbound()
        await a.deliver(toA)
        if toA.isEmpty && toB.isEmpty { return }
    }
    Issue.record("the channels kept exchanging bytes for \(maxRounds) rounds")
}

/// Moves ciphertext between a channel and a bare engine, driving the engine's handshake.
func shuttle(_ end: TLSEnd, _ engine: TLSEngine, maxRounds: Int = 64) async throws {
    for _ in 0..<maxRounds {
        let toEngine = try await end.outbound()
        for buffer in toEngine { buffer.withUnsafeReadableBytes { engine.receive($0) } }
        if !engine.handshakeComplete { _ = try engine.handshake() }
        let toEnd = engine.takeOutbound()
        if !toEnd.isEmpty { await end.deliver([ByteBuffer(bytes: toEnd)]) }
        if toEngine.isEmpty && toEnd.isEmpty { return }
    }
    Issue.record("the channel and the engine kept exchanging bytes for \(maxRounds) rounds")
}

/// A thread-safe list.
final class Collected<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.withLock { items.append(item) } }
    var value: [T] { lock.withLock { items } }
}

/// Whether a future has completed, and how, without waiting.
final class Outcome<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var _result: Result<T, any Error>?
    var result: Result<T, any Error>? { lock.withLock { _result } }
    init(_ future: EventLoopFuture<T>) {
        future.whenComplete { result in self.lock.withLock { self._result = result } }
    }
    var error: TLSError? {
        guard case .failure(let error) = result else { return nil }
        return error as? TLSError
    }
    var succeeded: Bool {
        if case .success = result { return true }
        return false
    }
}

@Suite struct HandlerTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    @Test(arguments: versions)
    func writesBeforeTheHandshakeWaitAndGoOutAfter(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server())
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await server.activate()
        try await client.activate()
        let write = Outcome(client.write("written before the handshake"))
        // Only the ClientHello left: a handshake record (content type 22), no application data.
        let first = try await client.outbound()
        #expect(first.count == 1)
        #expect(first.first.flatMap { $0.getInteger(at: $0.readerIndex, as: UInt8.self) } == 0x16)
        let hello = first.first.map { Array($0.readableBytesView) } ?? []
        #expect(!hello.isEmpty && !String(decoding: hello, as: UTF8.self).contains("written before"))
        #expect(write.result == nil)

        await server.deliver(first)
        try await shuttle(client, server)
        #expect(await eventually { write.succeeded })
        #expect(await eventually { server.recorder.reads.joined() == "written before the handshake" })
        #expect(server.recorder.errors.isEmpty && client.recorder.errors.isEmpty)
        await client.finish()
        await server.finish()
    }

    @Test(arguments: versions)
    func handshakeCompletedEventIsFiredOnBothSides(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server { $0.clientCertificates = .required })
        let client = try await TLSEnd(context: try fixture.client(identity: fixture.pki.clientIdentity), host: "localhost")
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        #expect(await eventually { client.recorder.events.count == 1 && server.recorder.events.count == 1 })
        let clientInfo = try #require(client.recorder.events.first)
        let serverInfo = try #require(server.recorder.events.first)
        #expect(clientInfo.protocolVersion == version.description)
        #expect(serverInfo.protocolVersion == version.description)
        #expect(clientInfo.peerSubject == fixture.pki.serverIdentity.leaf.subject)
        #expect(clientInfo.verifiedChain != nil)
        #expect(serverInfo.peerSubject == fixture.pki.clientIdentity.leaf.subject)
        #expect(serverInfo.verifiedChain != nil)
        #expect(serverInfo.serverName == "localhost")
        // The promise carries the same info as the event.
        #expect(try await client.handshake.get() == clientInfo)
        #expect(try await server.handshake.get() == serverInfo)
        await client.finish()
        await server.finish()
    }

    @Test(arguments: versions)
    func slowHookHoldsDataBackUntilItReturns(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let gate = Gate()
        let server = try await TLSEnd(context: try fixture.server(), hook: { _ in await gate.wait() })
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        #expect(await eventually(running: [client, server]) { gate.entered == 1 })
        // The client is through its handshake and sends; the server is still verifying.
        _ = try await client.handshake.get()
        _ = client.write("held until the hook returns")
        try await shuttle(client, server)
        #expect(server.recorder.reads.isEmpty)
        #expect(server.recorder.events.isEmpty)
        let serverHandshake = Outcome(server.handshake)
        #expect(serverHandshake.result == nil)

        gate.open()
        #expect(await eventually(running: [client, server]) { server.recorder.reads.joined() == "held until the hook returns" })
        #expect(server.recorder.events.count == 1)
        #expect(await eventually(running: [client, server]) { serverHandshake.succeeded })
        #expect(server.recorder.errors.isEmpty)
        await client.finish()
        await server.finish()
    }

    @Test(arguments: versions)
    func throwingHookRefusesTheConnectionAndReleasesNothing(version: TLSVersion) async throws {
        struct NotWelcome: Error {}
        let fixture = try EngineFixture(version)
        let gate = Gate()
        let server = try await TLSEnd(context: try fixture.server(), hook: { _ in
            await gate.wait()
            throw NotWelcome()
        })
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        let serverHandshake = Outcome(server.handshake)
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        _ = try await client.handshake.get()
        _ = client.write("must never reach the server's application")
        try await shuttle(client, server)
        #expect(await eventually(running: [client, server]) { gate.entered == 1 })

        gate.open()
        #expect(await eventually(running: [client, server]) { serverHandshake.result != nil })
        #expect(serverHandshake.error?.code == .verificationHookRejected)
        #expect(server.recorder.tlsErrorCodes == [.verificationHookRejected])
        #expect(server.recorder.reads.isEmpty)
        #expect(server.recorder.events.isEmpty)
        #expect(await eventually(running: [client, server]) { !server.channel.isActive })
        // The server's alert reaches the client.
        try await shuttle(client, server)
        #expect(await eventually(running: [client, server]) { client.recorder.tlsErrorCodes.contains(.peerAlert) })
        #expect(server.recorder.reads.isEmpty)
        await client.finish()
        await server.finish()
    }

    @Test(arguments: versions)
    func hookRunsOnEveryConnectionIncludingResumedOnes(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let serverContext = try fixture.server()
        let clientContext = try fixture.client()
        let seen = Collected<ConnectionInfo>()
        let hook: TLSVerificationHook = { info in seen.append(info) }
        for attempt in 0..<2 {
            let server = try await TLSEnd(context: serverContext, hook: hook)
            let client = try await TLSEnd(context: clientContext, host: "localhost", hook: hook)
            try await server.activate()
            try await client.activate()
            try await shuttle(client, server)
            let clientInfo = try await client.handshake.get()
            _ = try await server.handshake.get()
            #expect(clientInfo.isResumed == (attempt == 1))
            _ = client.write("after the hook \(attempt)")
            try await shuttle(client, server)
            #expect(await eventually(running: [client, server]) { server.recorder.reads.joined() == "after the hook \(attempt)" })
            // Exchange once more so a TLS 1.3 ticket is read and cached on the client.
            _ = server.write("ticket carrier")
            try await shuttle(client, server)
            #expect(await eventually(running: [client, server]) { client.recorder.reads.joined() == "ticket carrier" })
            await client.finish()
            await server.finish()
        }
        // Two connections, two sides each: four hook calls, the last two on resumed sessions.
        #expect(seen.value.count == 4)
        #expect(seen.value.filter(\.isResumed).count == 2)
    }

    @Test(arguments: versions)
    func peerClosingWithoutCloseNotifyIsAnUncleanShutdown(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server())
        let client = try fixture.client().makeEngine(host: "localhost")
        try await server.activate()
        try await shuttle(server, client)
        #expect(client.handshakeComplete)
        try Array("bytes, then the socket closes".utf8).withUnsafeBytes { try client.write($0) }
        try await shuttle(server, client)
        #expect(await eventually { server.recorder.reads.joined() == "bytes, then the socket closes" })
        // The peer's TCP connection goes away: no close_notify came first.
        try await server.channel.testingEventLoop.executeInContext { server.channel.pipeline.fireChannelInactive() }
        #expect(server.recorder.tlsErrorCodes == [.uncleanShutdown])
        await server.finish()
    }

    @Test(arguments: versions)
    func peerClosingAfterCloseNotifyIsClean(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server())
        let client = try fixture.client().makeEngine(host: "localhost")
        try await server.activate()
        try await shuttle(server, client)
        client.shutdown()
        try await shuttle(server, client)
        // The server answered close_notify with its own and closed.
        #expect(await eventually { !server.channel.isActive })
        #expect(try client.read { _ in } == .closed)
        try await server.channel.testingEventLoop.executeInContext { server.channel.pipeline.fireChannelInactive() }
        #expect(server.recorder.errors.isEmpty)
        await server.finish()
    }

    @Test(arguments: versions)
    func closingSendsCloseNotify(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        let server = try fixture.server().makeEngine(host: nil)
        try await client.activate()
        try await shuttle(client, server)
        #expect(server.handshakeComplete)
        _ = try await client.handshake.get()
        _ = try drain(server)
        // The close completes once the peer answers close_notify (or the shutdown timeout).
        let closed = Outcome(client.channel.startClose())
        let closing = try await client.outbound()
        #expect(!closing.isEmpty)
        for buffer in closing { buffer.withUnsafeReadableBytes { server.receive($0) } }
        #expect(try server.read { _ in } == .closed)
        #expect(closed.result == nil)
        server.shutdown()
        await client.deliver([ByteBuffer(bytes: server.takeOutbound())])
        #expect(await eventually { closed.succeeded })
        #expect(!client.channel.isActive)
        #expect(client.recorder.errors.isEmpty)
        await client.finish()
    }

    /// The same on real sockets: a client that drops its TCP connection without close_notify
    /// (its TLS handler removed first) makes the server's inbound stream fail.
    @Test func uncleanShutdownOnLoopback() async throws {
        let fixture = try EngineFixture(.tls13)
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try fixture.server())
        let failure = Box<(any Error)?>(nil)
        let received = Box<String>("")
        let serving = Task {
            try await server.serve { channel in
                do {
                    try await channel.executeThenClose { inbound, _ in
                        for try await chunk in inbound { received.value += String(buffer: chunk) }
                    }
                } catch {
                    failure.value = error
                }
            }
        }
        let clientContext = try fixture.client()
        // The TLS handler goes in with the channel, on its event loop: added afterwards from
        // this task, it waited for a cooperative-pool thread while the server's 10 s
        // handshake timeout ran, and a pool held by busy tests (under AddressSanitizer)
        // let the server close first ("I/O on closed channel").
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = loop.makePromise(of: ConnectionInfo.self)
        let added = Box<NIOLoopBound<GnuTLSHandler>?>(nil)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = GnuTLSHandler(context: clientContext, serverHostname: "localhost", handshakePromise: handshake)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        added.value = NIOLoopBound(handler, eventLoop: channel.eventLoop)
                    }
                }
                .connect(host: "127.0.0.1", port: server.port).get()
        } catch {
            // No handler may own the promise (the connection failed before it was added):
            // fail it, or NIO ends the test process on a leaked promise.
            handshake.fail(error)
            throw error
        }
        let handler = try #require(added.value)
        _ = try await handshake.futureResult.get()
        try await channel.writeAndFlush(ByteBuffer(string: "then gone")).get()
        #expect(await eventually { received.value == "then gone" })
        try await channel.eventLoop.flatSubmit {
            channel.pipeline.syncOperations.removeHandler(handler.value)
        }.get()
        try await channel.close()
        #expect(await eventually { failure.value != nil })
        #expect((failure.value as? TLSError)?.code == .uncleanShutdown, "\(String(describing: failure.value))")
        try await server.close()
        _ = await serving.result
    }
}
