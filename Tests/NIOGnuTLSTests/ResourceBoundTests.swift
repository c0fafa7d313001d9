import Foundation
import GnuTLS
import GnuTLSCore
import NIOCore
import NIOEmbedded
import NIOGnuTLS
import Testing

// Resource bounds of one connection (issue 7): buffers that grow from nothing, plaintext
// held while the verification hook runs, the idle timeout; and the server's cipher order.

/// Counts the `read()` requests that pass it on their way to the transport.
final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
    typealias OutboundIn = Any
    private let lock = NSLock()
    private var _reads = 0
    var reads: Int { lock.withLock { _reads } }

    func read(context: ChannelHandlerContext) {
        lock.withLock { _reads += 1 }
        context.read()
    }
}

@Suite struct ResourceBoundTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    @Test(arguments: versions)
    func engineBuffersGrowFromNothingAndShrinkWhenDrained(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        // Nothing received yet: nothing reserved (it was three 16.5 KiB buffers).
        #expect(pair.server.reservedBufferBytes == 0)
        #expect(pair.handshake().bothComplete)
        _ = try drain(pair.client)
        // A 64 KiB burst each way, then idle again: the queues give the memory back.
        let payload = randomBytes(64 * 1024)
        #expect(try transfer(payload, from: pair.client, to: pair.server).bytes == payload)
        #expect(try transfer(payload, from: pair.server, to: pair.client).bytes == payload)
        #expect(pair.server.reservedBufferBytes <= 2 * 4096, "\(pair.server.reservedBufferBytes)")
        #expect(pair.client.reservedBufferBytes <= 2 * 4096, "\(pair.client.reservedBufferBytes)")
    }

    @Test(arguments: versions)
    func serverPicksTheCipherSuiteInItsOwnOrder(version: TLSVersion) throws {
        // The client prefers ChaCha20; the server's default order starts with AES-256-GCM.
        #expect(TLSConfiguration.defaultPriority().contains("%SERVER_PRECEDENCE"))
        let fixture = try EngineFixture(version)
        let clientPriority = TLSConfiguration.defaultPriority(minimum: version, maximum: version)
            .replacingOccurrences(of: "+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305", with: "+CHACHA20-POLY1305:+AES-128-GCM:+AES-256-GCM")
        #expect(clientPriority.contains("+CHACHA20-POLY1305:+AES-128-GCM:+AES-256-GCM"))
        let pair = try EnginePair(client: try fixture.client { $0.priorityString = clientPriority }, server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        #expect(pair.server.cipherSuite.contains("AES_256_GCM"), "\(pair.server.cipherSuite)")
    }

    @Test(arguments: versions)
    func plaintextHeldForThePendingHookIsCappedAndReadingStops(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let gate = Gate()
        let server = try await TLSEnd(context: try fixture.server(), hook: { _ in await gate.wait() })
        let counter = ReadCounter()
        try await server.channel.pipeline.addHandler(counter, position: .first).get()
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        #expect(await eventually(running: [client, server]) { gate.entered == 1 })
        _ = try await client.handshake.get()

        // 256 KiB while the hook decides: the server holds at most its cap and stops reading.
        let payload = String(repeating: "0123456789abcdef", count: 16 * 1024)
        _ = client.write(payload)
        try await shuttle(client, server)
        let readsBefore = counter.reads
        server.channel.read()
        #expect(counter.reads == readsBefore, "the server kept reading while the hook was pending")
        #expect(server.recorder.reads.isEmpty)

        gate.open()
        #expect(await eventually(running: [client, server]) { server.recorder.reads.joined().count == payload.count })
        #expect(server.recorder.reads.joined() == payload)
        // The held read went out once the hook let the connection through.
        #expect(counter.reads > readsBefore)
        await client.finish()
        await server.finish()
    }

    @Test(arguments: versions)
    func idleConnectionIsClosedWithCloseNotifyAtTheIdleTimeout(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        let server = try await TLSEnd(context: try fixture.server { $0.idleTimeout = .seconds(30) })
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        _ = try await server.handshake.get()
        _ = try await client.handshake.get()

        // Activity moves the deadline: 20 s, a message, 20 s more: still open.
        await server.channel.testingEventLoop.advanceTime(by: .seconds(20))
        _ = client.write("still here")
        try await shuttle(client, server)
        await server.channel.testingEventLoop.advanceTime(by: .seconds(20))
        #expect(server.channel.isActive)
        #expect(server.recorder.reads == ["still here"])

        // 30 s without data: closed, close_notify sent, the application told why.
        await server.channel.testingEventLoop.advanceTime(by: .seconds(11))
        #expect(await eventually { !server.channel.isActive })
        #expect(server.recorder.tlsErrorCodes == [.idleTimeout])
        try await shuttle(client, server)
        #expect(client.recorder.tlsErrorCodes.isEmpty, "\(client.recorder.errors)")
        await client.finish()
        await server.finish()
    }

    /// The handshake timer doubles as the first idle check when it fires before the idle
    /// deadline; an idle timeout shorter than the handshake timeout still fires on time, and
    /// a longer one is not cut short by the handshake timer.
    @Test(arguments: [(idle: Int64(4), handshake: Int64(10)), (idle: 12, handshake: 10)])
    func idleTimeoutFiresOnTimeWhateverTheHandshakeTimeout(idle: Int64, handshake: Int64) async throws {
        let fixture = try EngineFixture(.tls13)
        let server = try await TLSEnd(context: try fixture.server {
            $0.idleTimeout = .seconds(idle)
            $0.handshakeTimeout = .seconds(handshake)
        })
        let client = try await TLSEnd(context: try fixture.client(), host: "localhost")
        try await server.activate()
        try await client.activate()
        try await shuttle(client, server)
        _ = try await server.handshake.get()
        _ = try await client.handshake.get()

        // One second before the idle deadline (past the handshake deadline when it is later): open.
        await server.channel.testingEventLoop.advanceTime(by: .seconds(idle - 1))
        #expect(server.channel.isActive)
        #expect(server.recorder.tlsErrorCodes.isEmpty)
        // At the idle deadline: closed for being idle, not for the handshake.
        await server.channel.testingEventLoop.advanceTime(by: .seconds(1))
        #expect(await eventually { !server.channel.isActive })
        #expect(server.recorder.tlsErrorCodes == [.idleTimeout])
        try await shuttle(client, server)
        await client.finish()
        await server.finish()
    }

    @Test func serversDefaultToAnIdleTimeoutClientsDoNot() throws {
        let pki = try TestPKI()
        #expect(TLSConfiguration.makeServerConfiguration(identity: pki.serverIdentity).idleTimeout == .seconds(120))
        #expect(TLSConfiguration.makeClientConfiguration(trustStore: pki.trust).idleTimeout == nil)
    }

    @Test func serverNameLongerThan255BytesIsReportedWhole() throws {
        let fixture = try EngineFixture(.tls13)
        let client = try fixture.client().makeEngine(host: "localhost")
        _ = try client.handshake()
        let longName = String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + "."
            + String(repeating: "c", count: 63) + "." + String(repeating: "d", count: 63) + "." + String(repeating: "e", count: 40)
        #expect(longName.utf8.count > 255)
        let hello = try #require(replacingServerName(in: client.takeOutbound(), with: Array(longName.utf8)))
        let server = try fixture.server().makeEngine(host: nil)
        server.receive(hello)
        _ = try server.handshake()
        // It used to read as no name at all (`sni=none` in tlsctl's log).
        #expect(server.requestedServerName == longName)
    }
}

/// `hello` (one record holding a ClientHello) with its server_name extension's host name
/// replaced by `name`, every enclosing length fixed up.
func replacingServerName(in hello: [UInt8], with name: [UInt8]) -> [UInt8]? {
    func u16(_ at: Int) -> Int { Int(hello[at]) << 8 | Int(hello[at + 1]) }
    var offset = 5 + 4 + 2 + 32
    offset += 1 + Int(hello[offset])          // session id
    offset += 2 + u16(offset)                 // cipher suites
    offset += 1 + Int(hello[offset])          // compression methods
    let extensionsLengthAt = offset
    offset += 2
    while offset + 4 <= hello.count {
        let type = u16(offset)
        let length = u16(offset + 2)
        if type == 0 {
            // server_name: list length, name type (0), name length, name.
            let oldName = u16(offset + 4 + 3)
            let delta = name.count - oldName
            var out = Array(hello[..<(offset + 4 + 5)]) + name + Array(hello[(offset + 4 + 5 + oldName)...])
            func add(_ at: Int, _ bytes: Int, _ value: Int) {
                var total = 0
                for index in 0..<bytes { total = total << 8 | Int(out[at + index]) }
                total += value
                for index in 0..<bytes { out[at + bytes - 1 - index] = UInt8((total >> (8 * index)) & 0xFF) }
            }
            add(3, 2, delta)                      // record length
            add(6, 3, delta)                      // handshake length
            add(extensionsLengthAt, 2, delta)     // extensions length
            add(offset + 2, 2, delta)             // extension length
            add(offset + 4, 2, delta)             // server name list length
            add(offset + 4 + 3, 2, delta)         // host name length
            return out
        }
        offset += 4 + length
    }
    return nil
}
