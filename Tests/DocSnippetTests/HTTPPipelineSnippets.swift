import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOHTTP1
import NIOPosix
import Testing
import TestSupport

/// Answers every HTTP request with who the client is, read from the TLS handshake event.
final class WhoAmIHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var connection: ConnectionInfo?

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompletedEvent { connection = handshake.info }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let body = ByteBuffer(string: "hello \(connection?.peerSubject?.description ?? "anonymous")\n")
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "\(body.readableBytes)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Collects one HTTP response's body and closes the connection (with close_notify).
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let response: EventLoopPromise<String>
    private var body = ""

    init(response: EventLoopPromise<String>) { self.response = response }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: break
        case .body(let part): body += String(buffer: part)
        case .end:
            response.succeed(body)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        response.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        response.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}

/// The code blocks of `Sources/NIOGnuTLS/NIOGnuTLS.docc/HTTPPipeline.md`: `GnuTLSHandler`
/// under NIOHTTP1 on a server and a client bootstrap, spoken to by our client and by curl.
@Suite struct HTTPPipelineSnippets {
    @Test func serverAndClientBootstraps() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        try pki.write(pki.server, as: "server")
        try pki.client("client", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        try pki.client("mailer", subject: "CN=mailer,OU=marketing,O=Example", spiffeID: "spiffe://example.com/mailer")
        var (chainFile, keyFile, caFile, passphrase) = (pki.chainFile("server"), pki.keyFile("server"), pki.caFile, pki.passphrase)
        let port = 0

        let onlyPayments: TLSVerificationHook = { info in
            guard info.peerSubject?.values(of: .organizationalUnit).contains("payments") == true else {
                throw NotAuthorized(caller: info.peerSubject?.description ?? "anonymous")
            }
        }
        let serverContext = try TLSContext(configuration: .makeMutualTLSServerConfiguration(
            identity: try TLSIdentity(chainContentsOfFile: chainFile, keyContentsOfFile: keyFile, passphrase: passphrase),
            clientTrustStore: try TrustStore(contentsOfFile: caFile)))
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(GnuTLSHandler(context: serverContext, verificationHook: onlyPayments))
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(WhoAmIHandler())
                }
            }
            .bind(host: "127.0.0.1", port: port).get()

        let serverPort = try #require(server.localAddress?.port)
        (chainFile, keyFile) = (pki.chainFile("client"), pki.keyFile("client"))

        // The client article's block, on the server's port.
        func get(port: Int) async throws -> String {
            let clientContext = try TLSContext(configuration: .makeClientConfiguration(
                trustStore: try TrustStore(contentsOfFile: caFile),
                identity: try TLSIdentity(chainContentsOfFile: chainFile, keyContentsOfFile: keyFile, passphrase: passphrase)))
            let response = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: String.self)
            let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(GnuTLSHandler(context: clientContext, serverHostname: "api.example.com"))
                        try pipeline.addHTTPClientHandlers()
                        try pipeline.addHandler(ResponseCollector(response: response))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/whoami")
            head.headers.add(name: "host", value: "api.example.com")
            client.write(HTTPClientRequestPart.head(head), promise: nil)
            try await client.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
            print(try await response.futureResult.get())
            return try await response.futureResult.get()
        }

        #expect(try await get(port: serverPort) == "hello CN=billing,OU=payments,O=Example\n")

        // A client outside OU=payments is refused by the hook.
        (chainFile, keyFile) = (pki.chainFile("mailer"), pki.keyFile("mailer"))
        await #expect(throws: (any Error).self) { _ = try await get(port: serverPort) }

        // curl, an independent client (OpenSSL), with the same files.
        let curl = try await Tool.run([
            "curl", "--silent", "--show-error", "--max-time", "30",
            "--cacert", pki.caFile, "--cert", pki.chainFile("client"), "--key", pki.keyFile("client"), "--pass", pki.passphrase,
            "--resolve", "api.example.com:\(serverPort):127.0.0.1", "https://api.example.com:\(serverPort)/whoami",
        ], timeout: 60)
        #expect(curl.succeeded, "\(curl)")
        #expect(curl.standardOutput == "hello CN=billing,OU=payments,O=Example\n")

        try await server.close()
    }
}
