import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing

@Suite struct ChannelTests {
    @Test(arguments: [TLSVersion.tls12, .tls13])
    func mutualTLSEchoOnLoopback(version: TLSVersion) async throws {
        let pki = try TestPKI()
        var serverConfiguration = TLSConfiguration.makeMutualTLSServerConfiguration(identity: pki.serverIdentity, clientTrustStore: pki.trust)
        serverConfiguration.maximumVersion = version
        serverConfiguration.minimumVersion = version
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try TLSContext(configuration: serverConfiguration))
        let seen = Box<DistinguishedName?>(nil)
        let serving = Task {
            try await server.serve { channel in
                seen.value = channel.info.peerSubject
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound {
                        try await outbound.write(chunk)
                    }
                }
            }
        }
        let clientContext = try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trust, identity: pki.clientIdentity))
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: clientContext)
        #expect(channel.info.protocolVersion == version.description)
        #expect(channel.info.peerSubject == pki.serverIdentity.leaf.subject)
        let reply = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "hello over \(version)"))
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next().map { String(buffer: $0) }
        }
        #expect(reply == "hello over \(version)")
        #expect(seen.value == pki.clientIdentity.leaf.subject)
        try await server.close()
        _ = await serving.result
    }

    /// A connection's handler runs on its channel's event loop (the task's executor
    /// preference): awaiting the handshake, the reads, the writes and the close hops to no
    /// other thread (issue 11: the hops cost the loopback server ~330 µs per connection).
    @Test func theConnectionHandlerRunsOnItsChannelsEventLoop() async throws {
        let fixture = try EngineFixture(.tls13)
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try fixture.server())
        let onLoop = Box<[Bool]>([])
        let serving = Task {
            try await server.serve { channel in
                onLoop.value.append(channel.channel.eventLoop.inEventLoop)
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound {
                        onLoop.value.append(channel.channel.eventLoop.inEventLoop)
                        try await outbound.write(chunk)
                        onLoop.value.append(channel.channel.eventLoop.inEventLoop)
                    }
                }
            }
        }
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: try fixture.client())
        let reply = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "ping"))
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next().map { String(buffer: $0) }
        }
        #expect(reply == "ping")
        try await server.close()
        _ = await serving.result
        #expect(onLoop.value == [true, true, true])
    }

    /// `connections()` (its accept loop on the listener's event loop) yields verified
    /// connections and reports a failed handshake to `onFailure` without stopping.
    @Test func theConnectionsStreamSkipsAFailedHandshakeAndYieldsTheNext() async throws {
        let fixture = try EngineFixture(.tls13)
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try fixture.server())
        let (failures, failed) = AsyncStream.makeStream(of: Void.self)
        let connections = server.connections(onFailure: { _ in failed.yield() })
        // A client that trusts another CA refuses the server: both handshakes fail.
        let stranger = try TLSContext(configuration: .makeClientConfiguration(trustStore: try TestPKI().trust))
        await #expect(throws: TLSError.self) {
            _ = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: stranger)
        }
        var failure = failures.makeAsyncIterator()
        #expect(await failure.next() != nil)
        let serving = Task {
            for try await channel in connections {
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound {
                        try await outbound.write(chunk)
                        return
                    }
                }
                return
            }
        }
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: try fixture.client())
        let reply = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "after a refusal"))
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next().map { String(buffer: $0) }
        }
        #expect(reply == "after a refusal")
        try await serving.value
        try await server.close()
    }
}

final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ value: T) { _value = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
}
