import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

/// The code blocks of `Sources/NIOGnuTLS/NIOGnuTLS.docc/GracefulShutdown.md`: a request in
/// flight completes after `close()`, new connections are refused, and a drain deadline
/// ends connections that do not finish.
@Suite struct GracefulShutdownSnippets {
    /// A client of the PKI's CA connected to `port`.
    static func connect(_ pki: DocPKI, port: Int) async throws -> SecureChannel {
        let identity = try pki.client("client-\(UUID().uuidString)", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [pki.root.certificate]), identity: identity)
        configuration.serverName = "api.example.com"
        return try await SecureChannel.connect(host: "127.0.0.1", port: port, context: try TLSContext(configuration: configuration))
    }

    @Test func inFlightRequestCompletesAndNewConnectionsAreRefused() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        let context = try TLSContext(configuration: .makeMutualTLSServerConfiguration(
            identity: pki.server, clientTrustStore: TrustStore(certificates: [pki.root.certificate])))
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: context)
        // `handle` tells the test a request arrived and answers when the test releases it.
        let arrived = AsyncStream<Void>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        let handle: @Sendable (ByteBuffer) async throws -> ByteBuffer = { request in
            arrived.continuation.yield()
            var waiting = release.stream.makeAsyncIterator()
            _ = await waiting.next()
            return ByteBuffer(string: "done: \(String(buffer: request))")
        }

        let serving = Task {
            try await server.serve { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await request in inbound {
                        try await outbound.write(try await handle(request))
                    }
                }
            }
        }

        let port = server.port
        let client = try await Self.connect(pki, port: port)
        let reply = Task {
            try await client.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "slow request"))
                var replies = inbound.makeAsyncIterator()
                return try await replies.next().map { String(buffer: $0) }
            }
        }
        // Safety net: a connection refused on a loaded machine fails the test, never hangs it.
        try await withDeadline(.seconds(120), "the request's arrival") {
            var arrivals = arrived.stream.makeAsyncIterator()
            _ = await arrivals.next()
        }

        try await server.close()  // stop accepting: new connections are refused

        // A plain TCP connect: the listener is gone, so nothing reaches TLS.
        await #expect(throws: (any Error).self) {
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
        }
        release.continuation.yield()
        #expect(try await reply.value == "done: slow request")

        try await serving.value  // returns when every connection's handler has finished
    }

    @Test func drainDeadlineEndsIdleConnections() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        let context = try TLSContext(configuration: .makeMutualTLSServerConfiguration(
            identity: pki.server, clientTrustStore: TrustStore(certificates: [pki.root.certificate])))
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: context)
        let connected = AsyncStream<Void>.makeStream()
        let serving = Task {
            try await server.serve { channel in
                connected.continuation.yield()
                try await channel.executeThenClose { inbound, outbound in
                    for try await request in inbound { try await outbound.write(request) }
                }
            }
        }
        // A client that connects and never sends: its handler would wait forever.
        let idle = try await Self.connect(pki, port: server.port)
        try await withDeadline(.seconds(120), "the connection's handler") {
            var connections = connected.stream.makeAsyncIterator()
            _ = await connections.next()
        }
        let drainDeadline = Duration.milliseconds(100)

        try await server.close()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await serving.value }
            group.addTask {
                try await Task.sleep(for: drainDeadline)
                serving.cancel()  // the handlers still running see cancellation and close
            }
            try await group.next()
            group.cancelAll()
        }

        // The server closed the idle connection: the client's inbound stream ends.
        let ended = try await idle.executeThenClose { inbound, _ in
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next() == nil
        }
        #expect(ended)
    }
}
