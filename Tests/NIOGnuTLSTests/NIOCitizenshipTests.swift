import Foundation
import GnuTLS
import GnuTLSCore
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOTLS
import Testing
import TestSupport

// GnuTLSHandler as a NIO citizen (issue 13): NIOTLS's user events drive
// ApplicationProtocolNegotiationHandler (HTTP/1.1, a custom protocol and HTTP/2 behind our
// handler, reached by our client and by curl with client certificates), the connection info
// read from a pipeline, one record per flush, handlerRemoved failing what it holds, and the
// close_notify shutdown timeout.

/// Records NIOTLS's user events (and passes everything on).
final class TLSUserEventRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NSLock()
    private var _handshakes: [String?] = []
    private var _shutdowns = 0

    var handshakes: [String?] { lock.withLock { _handshakes } }
    var shutdowns: Int { lock.withLock { _shutdowns } }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent {
            switch event {
            case .handshakeCompleted(let negotiated): lock.withLock { _handshakes.append(negotiated) }
            case .shutdownCompleted: lock.withLock { _shutdowns += 1 }
            }
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Answers every HTTP request with `proto=<ALPN> peer=<client subject>`, the connection info
/// read from the pipeline of the TLS channel (the parent, for an HTTP/2 stream).
final class WhoAmIResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var keepAlive = true

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            // HTTP/1.1: this pipeline holds the TLS handler; an HTTP/2 stream's parent does.
            let info: ConnectionInfo?
            if let own = try? context.gnuTLSConnectionInfo() {
                info = own
            } else {
                info = try? context.channel.parent?.pipeline.syncOperations.gnuTLSConnectionInfo()
            }
            let text = "proto=\(info?.applicationProtocol ?? "none") peer=\(info?.peerSubject.map { "\($0)" } ?? "anonymous")\n"
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: "\(text.utf8.count)")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

/// The custom protocol `x-echo`: answers each chunk with `echo:` and the chunk.
final class PrefixEcho: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var reply = context.channel.allocator.buffer(string: "echo:")
        var chunk = unwrapInboundIn(data)
        reply.writeBuffer(&chunk)
        context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
    }
}

/// A server whose pipeline is `GnuTLSHandler` + `ApplicationProtocolNegotiationHandler`,
/// dispatching to HTTP/2, HTTP/1.1 or `x-echo` by the ALPN protocol agreed on.
struct ALPNServer {
    let channel: any Channel
    let events = Collected<String>()
    var port: Int { channel.localAddress?.port ?? 0 }

    init(context: TLSContext) async throws {
        let events = self.events
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let alpn = ApplicationProtocolNegotiationHandler { result, channel in
                        events.append("\(result)")
                        switch result {
                        case .negotiated("h2"):
                            return channel.configureHTTP2Pipeline(mode: .server) { stream in
                                stream.eventLoop.makeCompletedFuture {
                                    try stream.pipeline.syncOperations.addHandlers([HTTP2FramePayloadToHTTP1ServerCodec(), WhoAmIResponder()])
                                }
                            }.map { _ in }
                        case .negotiated("http/1.1"):
                            return channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                                try channel.pipeline.syncOperations.addHandler(WhoAmIResponder())
                            }
                        case .negotiated("x-echo"):
                            return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(PrefixEcho()) }
                        default:
                            return channel.close()
                        }
                    }
                    try channel.pipeline.syncOperations.addHandlers([GnuTLSHandler(context: context), alpn])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func close() async throws { try await channel.close() }
}

/// Sends `request` over a new TLS connection offering `protocols`, then reads until the
/// server closes (or, with `until`, until the text so far contains it).
func exchange(port: Int, client: TLSContext, request: String, until: String? = nil) async throws -> (ConnectionInfo, String) {
    let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: client)
    // (Inside executeThenClose: a SecureChannel must be closed through it, even on a throw.)
    let text = try await channel.executeThenClose { inbound, outbound in
        // The accessor on the channel agrees with what connect returned (asked while the
        // server keeps the connection open, waiting for the request).
        let fromPipeline = try await channel.channel.gnuTLSConnectionInfo().get()
        #expect(fromPipeline == channel.info)
        try await outbound.write(ByteBuffer(string: request))
        var text = ""
        for try await chunk in inbound {
            text += String(buffer: chunk)
            if let until, text.contains(until) { break }
        }
        return text
    }
    return (channel.info, text)
}

/// Removes the channel's GnuTLSHandler, on its loop.
func removeTLSHandler(_ channel: NIOAsyncTestingChannel) async throws {
    try await channel.testingEventLoop.executeInContext {
        let operations = channel.pipeline.syncOperations
        operations.removeHandler(try operations.handler(type: GnuTLSHandler.self), promise: nil)
    }
}

@Suite struct NIOCitizenshipTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    // MARK: ALPN dispatch

    @Test(arguments: versions)
    func alpnDispatchesHTTP1AndACustomProtocolBehindGnuTLSHandler(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await ALPNServer(context: try fixture.server {
            $0.applicationProtocols = ["http/1.1", "x-echo"]
            $0.clientCertificates = .optional
        })

        let http = try fixture.client(identity: fixture.pki.clientIdentity) { $0.applicationProtocols = ["http/1.1"] }
        let (httpInfo, response) = try await exchange(port: server.port, client: http,
                                                      request: "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(httpInfo.applicationProtocol == "http/1.1")
        #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response)")
        #expect(response.contains("proto=http/1.1 peer=\(fixture.pki.clientIdentity.leaf.subject)"), "\(response)")

        let custom = try fixture.client { $0.applicationProtocols = ["x-echo"] }
        let (customInfo, echoed) = try await exchange(port: server.port, client: custom, request: "ping", until: "echo:ping")
        #expect(customInfo.applicationProtocol == "x-echo")
        #expect(echoed == "echo:ping")

        #expect(server.events.value == ["\(ALPNResult.negotiated("http/1.1"))", "\(ALPNResult.negotiated("x-echo"))"])
        try await server.close()
    }

    @Test func withoutALPNTheNegotiationHandlerHearsFallback() async throws {
        let fixture = try EngineFixture(.tls13)
        let server = try await ALPNServer(context: try fixture.server { $0.applicationProtocols = ["http/1.1"] })
        // No ALPN offered: the handler is told `.fallback`, and this server closes.
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: try fixture.client())
        #expect(channel.info.applicationProtocol == nil)
        let text = try? await channel.executeThenClose { inbound, _ in
            var text = ""
            for try await chunk in inbound { text += String(buffer: chunk) }
            return text
        }
        #expect((text ?? "").isEmpty)
        #expect(await eventually { server.events.value == ["\(ALPNResult.fallback)"] })
        try await server.close()
    }

    // MARK: HTTP/2 with curl

    @Test func curlReachesHTTP2AndHTTP1OverMutualTLS() async throws {
        let fixture = try EngineFixture(.tls13)
        let pki = fixture.pki
        let server = try await ALPNServer(context: try fixture.server {
            $0.clientCertificates = .required
            $0.applicationProtocols = ["h2", "http/1.1"]
        })
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = try directory.write(pki.root.certificate.pemEncoded, to: "root.pem")
        let chain = try directory.write(pki.clientIdentity.chain.map(\.pemEncoded).joined(), to: "client-chain.pem")
        let key = try directory.write(try #require(pki.clientIdentity.key as? KeyPair).pemEncoded(), to: "client.key.pem")
        let url = "https://localhost:\(server.port)/"
        func curl(_ mode: String) async throws -> ProcessResult {
            try await Tool.run(["curl", "-sS", mode, "--cacert", root, "--cert", chain, "--key", key,
                                "--resolve", "localhost:\(server.port):127.0.0.1", "-w", "\nversion=%{http_version}", url],
                               timeout: 30, package: "curl")
        }
        let subject = "\(pki.clientIdentity.leaf.subject)"

        let h2 = try await curl("--http2")
        #expect(h2.succeeded, "\(h2)")
        #expect(h2.standardOutput == "proto=h2 peer=\(subject)\n\nversion=2", "\(h2)")

        let h1 = try await curl("--http1.1")
        #expect(h1.succeeded, "\(h1)")
        #expect(h1.standardOutput == "proto=http/1.1 peer=\(subject)\n\nversion=1.1", "\(h1)")

        // Without a client certificate the mutual-TLS server refuses before any protocol runs.
        let anonymous = try await Tool.run(["curl", "-sS", "--http2", "--cacert", root, "--resolve", "localhost:\(server.port):127.0.0.1", url],
                                           timeout: 30, package: "curl")
        #expect(!anonymous.succeeded, "\(anonymous)")
        #expect(Array(server.events.value.prefix(2)) == ["\(ALPNResult.negotiated("h2"))", "\(ALPNResult.negotiated("http/1.1"))"])
        try await server.close()
    }

    // MARK: Events and the connection info

    @Test(arguments: versions)
    func nioTLSEventsAndTheConnectionInfoAccessors(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server { $0.applicationProtocols = ["x-echo"] })
        let client = try await TLSEnd(context: try fixture.client { $0.applicationProtocols = ["x-echo"] }, host: "localhost")
        let clientEvents = TLSUserEventRecorder()
        let serverEvents = TLSUserEventRecorder()
        try await client.channel.pipeline.addHandler(clientEvents).get()
        try await server.channel.pipeline.addHandler(serverEvents).get()
        let info: @Sendable (NIOAsyncTestingChannel) async throws -> ConnectionInfo? = { channel in
            try await channel.testingEventLoop.executeInContext { try channel.pipeline.syncOperations.gnuTLSConnectionInfo() }
        }
        #expect(try await info(client.channel) == nil)

        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        let negotiated = try await client.handshake.get()
        #expect(clientEvents.handshakes == ["x-echo"])
        #expect(await eventually { serverEvents.handshakes == ["x-echo"] })
        #expect(try await info(client.channel) == negotiated)
        #expect(try await info(server.channel) == (try await server.handshake.get()))

        // A pipeline without GnuTLSHandler says so.
        let plain = NIOAsyncTestingChannel()
        await #expect(throws: ChannelPipelineError.self) { try await info(plain) }
        _ = try? await plain.finish()

        // close_notify answered both ways: shutdownCompleted on both sides.
        let closed = Outcome(client.channel.startClose())
        try await shuttle(client, server)
        #expect(await eventually { closed.succeeded })
        #expect(clientEvents.shutdowns == 1)
        #expect(serverEvents.shutdowns == 1)
        #expect(client.recorder.errors.isEmpty && server.recorder.errors.isEmpty)
        await client.finish()
        await server.finish()
    }

    // MARK: One record per flush

    @Test(arguments: versions)
    func writesBeforeAFlushGoOutAsOneRecord(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        let server = try fixture.server().makeEngine(host: nil)
        try await client.activate()
        try await shuttle(client, server)
        _ = try await client.handshake.get()
        _ = try drain(server)

        // Ten small writes, one flush: one record, every promise completed.
        let parts = (0..<10).map { "part \($0);" }
        let writes = parts.map { Outcome(client.channel.write(ByteBuffer(string: $0))) }
        #expect(try await client.outbound().isEmpty)
        client.channel.flush()
        for buffer in try await client.outbound() { buffer.withUnsafeReadableBytes { server.receive($0) } }
        let coalesced = try drain(server)
        #expect(coalesced.records == 1)
        #expect(String(decoding: coalesced.bytes, as: UTF8.self) == parts.joined())
        #expect(await eventually { writes.allSatisfy(\.succeeded) })

        // Each write flushed on its own: one record each.
        for part in parts { _ = client.write(part) }
        for buffer in try await client.outbound() { buffer.withUnsafeReadableBytes { server.receive($0) } }
        #expect(try drain(server).records == parts.count)

        // A write of a record's worth or more is encrypted as it is (16 KiB records), between
        // the coalesced small writes before and after it: head | 16384 | 3616 | tail.
        let big = String(repeating: "x", count: 20_000)
        let small = Outcome(client.channel.write(ByteBuffer(string: "head;")))
        let large = Outcome(client.channel.write(ByteBuffer(string: big)))
        let tail = Outcome(client.channel.writeAndFlush(ByteBuffer(string: ";tail")))
        for buffer in try await client.outbound() { buffer.withUnsafeReadableBytes { server.receive($0) } }
        let split = try drain(server)
        #expect(String(decoding: split.bytes, as: UTF8.self) == "head;" + big + ";tail")
        #expect(split.records == 4)
        #expect(await eventually { small.succeeded && large.succeeded && tail.succeeded })
        #expect(client.recorder.errors.isEmpty)
        await client.finish()
    }

    // MARK: handlerRemoved

    @Test func removingTheHandlerFailsTheWritesItHolds() async throws {
        let fixture = try EngineFixture(.tls13)
        // Before the handshake: the write and the handshake promise fail.
        let early = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await early.activate()
        let waiting = Outcome(early.write("never sent"))
        let handshake = Outcome(early.handshake)
        try await removeTLSHandler(early.channel)
        #expect(await eventually { waiting.result != nil && handshake.result != nil })
        #expect(waiting.error?.code == .handlerRemoved)
        #expect(handshake.error?.code == .handlerRemoved)
        await early.finish()

        // After the handshake: a write not yet flushed fails too.
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        let server = try fixture.server().makeEngine(host: nil)
        try await client.activate()
        try await shuttle(client, server)
        _ = try await client.handshake.get()
        let unflushed = Outcome(client.channel.write(ByteBuffer(string: "held until a flush")))
        try await removeTLSHandler(client.channel)
        #expect(await eventually { unflushed.result != nil })
        #expect(unflushed.error?.code == .handlerRemoved)
        await client.finish()
    }

    // MARK: Shutdown timeout

    @Test(arguments: versions)
    func aPeerThatNeverAnswersCloseNotifyIsClosedAtTheShutdownTimeout(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let client = try await TLSEnd(context: try fixture.client { $0.shutdownTimeout = .seconds(3) }, host: "localhost")
        let events = TLSUserEventRecorder()
        try await client.channel.pipeline.addHandler(events).get()
        let server = try fixture.server().makeEngine(host: nil)
        try await client.activate()
        try await shuttle(client, server)
        _ = try await client.handshake.get()

        let closed = Outcome(client.channel.startClose())
        // close_notify goes out; the peer reads it and answers nothing.
        for buffer in try await client.outbound() { buffer.withUnsafeReadableBytes { server.receive($0) } }
        #expect(try drain(server).closed)
        await client.channel.testingEventLoop.advanceTime(by: .seconds(2))
        #expect(closed.result == nil)
        #expect(client.channel.isActive)

        await client.channel.testingEventLoop.advanceTime(by: .seconds(1))
        #expect(await eventually { closed.succeeded })
        #expect(!client.channel.isActive)
        #expect(client.recorder.tlsErrorCodes == [.shutdownTimeout])
        #expect(events.shutdowns == 0)
        await client.finish()
    }

    @Test func aZeroShutdownTimeoutClosesRightAfterCloseNotify() async throws {
        let fixture = try EngineFixture(.tls13)
        let client = try await TLSEnd(context: try fixture.client { $0.shutdownTimeout = .zero }, host: "localhost")
        let server = try fixture.server().makeEngine(host: nil)
        try await client.activate()
        try await shuttle(client, server)
        _ = try await client.handshake.get()
        try await client.channel.close()
        #expect(!client.channel.isActive)
        for buffer in try await client.outbound() { buffer.withUnsafeReadableBytes { server.receive($0) } }
        #expect(try drain(server).closed)
        await client.finish()
    }
}
