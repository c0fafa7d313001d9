import NIOCore
import NIOEmbedded

/// Two EmbeddedChannels on one loop, each one's outbound bytes fed to the other's inbound
/// (swift-nio-ssl's `BackToBackEmbeddedChannel`).
final class BackToBackEmbeddedChannel {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel

    init() {
        client = EmbeddedChannel(loop: loop)
        server = EmbeddedChannel(loop: loop)
    }

    /// The address both channels "connect" to, made once (not parsed per connection).
    private static let address: SocketAddress? = try? SocketAddress(ipAddress: "127.0.0.1", port: 443)

    /// Activates both channels. An EmbeddedChannel connects synchronously, so there is no
    /// future to block on (a blocking `wait()` allocates a condition lock per call, harness
    /// cost that both channel-handler runners would pay per connection); a handshake that
    /// did not start is caught by the runner's check.
    func connect() throws {
        guard let address = Self.address else { throw ScenarioError("cannot make the address 127.0.0.1:443") }
        client.connect(to: address, promise: nil)
        server.connect(to: address, promise: nil)
    }

    func interactInMemory() throws {
        var rounds = 0
        var work = true
        while work {
            rounds += 1
            guard rounds < 10_000 else { throw ScenarioError("the channels did not settle") }
            work = false
            loop.run()
            if let bytes = try client.readOutbound(as: IOData.self) {
                try server.writeInbound(bytes)
                work = true
            }
            if let bytes = try server.readOutbound(as: IOData.self) {
                try client.writeInbound(bytes)
                work = true
            }
        }
    }

    /// Discards what the server application received.
    func drainServerInbound() throws -> Int {
        var total = 0
        while let buffer = try server.readInbound(as: ByteBuffer.self) { total += buffer.readableBytes }
        return total
    }

    func close() throws {
        client.close(promise: nil)
        try interactInMemory()
        _ = try? client.finish()
        _ = try? server.finish()
    }
}

/// Shared by the two channel-handler runners: one connection per handshake, one long-lived
/// connection for transfers.
class ChannelRunner: ScenarioRunner {
    let scenario: Scenario
    var connected: BackToBackEmbeddedChannel?
    let payload: ByteBuffer

    init(_ scenario: Scenario) {
        self.scenario = scenario
        if case .transfer(_, let chunk) = scenario.kind {
            payload = ByteBuffer(repeating: 0x5A, count: chunk)
        } else {
            payload = ByteBuffer()
        }
    }

    /// Adds the handlers to a fresh pair and returns it (subclasses).
    func makeConnection() throws -> BackToBackEmbeddedChannel { fatalError("subclass") }
    /// Whether the client side's handshake finished and was resumed.
    func checkHandshake(_ pair: BackToBackEmbeddedChannel, resumed: Bool) throws {}

    func prepare() throws {
        if scenario.isResumed {
            let pair = try makeConnection()
            try pair.connect()
            try pair.interactInMemory()
            try checkHandshake(pair, resumed: false)
            try pair.close()
        }
        if case .transfer = scenario.kind {
            let pair = try makeConnection()
            try pair.connect()
            try pair.interactInMemory()
            try checkHandshake(pair, resumed: false)
            connected = pair
        }
    }

    func run() throws {
        switch scenario.kind {
        case .handshake(let resumed):
            let pair = try makeConnection()
            try pair.connect()
            try pair.interactInMemory()
            try checkHandshake(pair, resumed: resumed)
            try pair.close()
        case .transfer(let total, let chunk):
            guard let pair = connected else { return }
            var received = 0
            for _ in 0..<(total / chunk) {
                pair.client.writeAndFlush(payload, promise: nil)
                try pair.interactInMemory()
                received += try pair.drainServerInbound()
            }
            if received != total { throw ScenarioError("the server read \(received) of \(total) bytes") }
        }
    }
}

/// Hands every user event to `onEvent` (to note a completed handshake).
final class EventWatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onEvent: (Any) -> Void
    init(_ onEvent: @escaping (Any) -> Void) { self.onEvent = onEvent }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        onEvent(event)
        context.fireUserInboundEventTriggered(event)
    }
}
