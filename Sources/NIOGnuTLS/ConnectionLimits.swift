import NIOCore

/// Bounds on what one ``TLSServer`` holds open at a time.
///
/// At a limit, the server stops accepting: further connections wait in the kernel's
/// listen backlog (and beyond it, the peer's SYNs go unanswered) until a connection
/// closes or a handshake completes. A connection accepted in the same burst that crosses
/// a limit is closed at once, before any TLS byte is read.
public struct TLSServerLimits: Hashable, Sendable {
    /// The most connections open at once (handshaking or established); `nil`: no limit.
    public var maxConnections: Int?
    /// The most handshakes (including verification) in progress at once; `nil`: no limit.
    public var maxConcurrentHandshakes: Int?

    /// Limits of at least 1 each (smaller values are raised to 1); `nil` leaves one unbounded.
    public init(maxConnections: Int? = nil, maxConcurrentHandshakes: Int? = nil) {
        self.maxConnections = maxConnections.map { max(1, $0) }
        self.maxConcurrentHandshakes = maxConcurrentHandshakes.map { max(1, $0) }
    }

    /// No limits (the descriptors `ulimit -n` allows are the only bound).
    public static let unlimited = TLSServerLimits()

    var isUnlimited: Bool { maxConnections == nil && maxConcurrentHandshakes == nil }
}

/// Counts a server's open connections and handshakes on the server channel's event loop
/// and holds the accept loop's reads while a limit is reached (the server channel reads one
/// connection per read, so the limit is exact).
final class ConnectionLimiter: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: every mutable property is touched only on `eventLoop` (asserted).
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    let limits: TLSServerLimits
    let eventLoop: any EventLoop
    private var connections = 0
    private var handshaking = Set<ObjectIdentifier>()
    private var readHeld = false
    private var context: ChannelHandlerContext?

    init(limits: TLSServerLimits, eventLoop: any EventLoop) {
        self.limits = limits
        self.eventLoop = eventLoop
    }

    private var atLimit: Bool {
        if let max = limits.maxConnections, connections >= max { return true }
        if let max = limits.maxConcurrentHandshakes, handshaking.count >= max { return true }
        return false
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func read(context: ChannelHandlerContext) {
        if atLimit {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        let id = ObjectIdentifier(child)
        connections += 1
        handshaking.insert(id)
        child.closeFuture.whenComplete { [self] _ in
            eventLoop.execute {
                // The child stays alive until its identifier is gone from `handshaking`, so
                // a new channel cannot reuse it meanwhile.
                withExtendedLifetime(child) {
                    self.connections -= 1
                    self.handshaking.remove(id)
                    self.resumeIfBelowLimit()
                }
            }
        }
        context.fireChannelRead(data)
    }

    /// `child`'s handshake succeeded or failed (called from any event loop).
    func handshakeEnded(_ child: any Channel) {
        eventLoop.execute { [self] in
            guard handshaking.remove(ObjectIdentifier(child)) != nil else { return }
            resumeIfBelowLimit()
        }
    }

    private func resumeIfBelowLimit() {
        eventLoop.preconditionInEventLoop()
        guard readHeld, !atLimit, let context else { return }
        readHeld = false
        context.read()
    }
}
