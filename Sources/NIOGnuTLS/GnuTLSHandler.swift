import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOTLS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Fired through the pipeline when the handshake and every verification step have passed.
public struct TLSHandshakeCompletedEvent: Sendable {
    /// What was negotiated and who the peer is.
    public var info: ConnectionInfo
}

/// An async check run on every connection (resumed ones included) after the handshake and
/// the chain verification, before any application byte is released. Throwing refuses the
/// connection: the peer gets an alert and the channel closes.
///
/// The hook runs as a task whose executor preference is the channel's event loop, so a
/// Swift concurrency pool kept busy by the service's other tasks does not delay handshakes.
/// Like any channel handler's code it must not block: await I/O, and move CPU-heavy or
/// blocking work elsewhere (another executor, or a thread pool), awaiting its result.
public typealias TLSVerificationHook = @Sendable (ConnectionInfo) async throws -> Void

/// TLS for any NIO pipeline: put it where `NIOSSLHandler` would go. It drives a GnuTLS
/// sans-IO engine on the event loop: ciphertext from the network in, plaintext to the next
/// handler; plaintext writes out, ciphertext to the network.
///
/// No plaintext is read or written before the handshake, GnuTLS's verification, the Swift
/// chain verifier and the optional ``TLSVerificationHook`` have all passed; writes issued
/// earlier wait. Once the connection is usable the handler fires
/// ``TLSHandshakeCompletedEvent`` and NIO's `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)`,
/// so `ApplicationProtocolNegotiationHandler` works behind it; ``connectionInfo`` (and
/// `channel.gnuTLSConnectionInfo()`) tell what was negotiated.
///
/// Writes are buffered until `flush`, then coalesced: writes that fit in one TLS record
/// (16 KiB of plaintext) go out as one record. Closing sends close_notify and waits up to
/// `TLSConfiguration.shutdownTimeout` for the peer's, then closes the channel
/// (firing `TLSUserEvent.shutdownCompleted` when the peer answered). A peer closing without
/// close_notify is reported as ``TLSError/Code/uncleanShutdown``. Removing the handler fails
/// the writes it still holds with ``TLSError/Code/handlerRemoved``.
public final class GnuTLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Ciphertext from the network.
    public typealias InboundIn = ByteBuffer
    /// Plaintext for the next handler.
    public typealias InboundOut = ByteBuffer
    /// Plaintext from the handlers behind this one.
    public typealias OutboundIn = ByteBuffer
    /// TLS records for the network.
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case handshaking
        case verifying
        case active
        case closing
        case closed
    }

    private let tlsContext: TLSContext
    private let host: String?
    private let hook: TLSVerificationHook?
    private let handshakePromise: EventLoopPromise<ConnectionInfo>?
    private var engine: TLSEngine?
    private var state: State = .idle
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var heldPlaintext: [ByteBuffer] = []
    private var heldPlaintextBytes = 0
    /// A `read()` from the pipeline not passed on while the hook runs and enough is held.
    private var readHeld = false
    private var timeout: Scheduled<Void>?
    /// When the handshake times out (the deadline `timeout` fires at).
    private var handshakeDeadline = NIODeadline.uptimeNanoseconds(0)
    private var idleTimer: Scheduled<Void>?
    /// When plaintext last went either way (the idle timeout counts from here).
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// Whether `lastActivity` is needed (an idle timeout is configured): no clock read per
    /// record otherwise.
    private let tracksActivity: Bool
    private var receivedCloseNotify = false
    /// Our close_notify went out with `close(mode: .output)`: reading goes on, writing is over.
    private var sentCloseNotify = false
    private var storedSession = false
    /// The verification of the session the client offered to resume (from the context's
    /// session cache), and the one this connection's session is kept with.
    private var offeredSession: SessionVerification?
    /// This connection's verdict on the server's chain, kept with its session.
    private var sessionVerdict: PeerChainVerdict?
    private var info: ConnectionInfo?
    private let logger: Logger
    private let metrics: TLSMetrics?
    /// When the handshake started (its duration is measured to the last verification step).
    private var handshakeStart: NIODeadline?
    /// Whether this connection is counted in the active-connections meter.
    private var countedActive = false
    /// A `close` is waiting for the peer's close_notify (`closePromise` completes with it,
    /// when the close came with a promise: none is made for a close without one).
    private var awaitingCloseNotify = false
    /// The promise of the `close` waiting for the peer's close_notify.
    private var closePromise: EventLoopPromise<Void>?
    private var shutdownTimer: Scheduled<Void>?
    /// Reused to coalesce small writes into one record at flush (no allocation per flush).
    private var coalescing: ByteBuffer?

    /// The most plaintext one TLS record carries (RFC 8446 §5.1): writes are coalesced up to it.
    static let maximumRecordPlaintext = 16_384

    /// What the handshake negotiated and who the peer is, once the connection is usable
    /// (`nil` before, and after a failed handshake). Read it on the channel's event loop.
    public var connectionInfo: ConnectionInfo? { established ? info : nil }
    /// Whether every verification step passed and the connection became usable.
    private var established = false

    /// - Parameters:
    ///   - context: the shared TLS context.
    ///   - serverHostname: clients: the host connected to (SNI and name verification,
    ///     unless the configuration names another); servers: `nil`.
    ///   - handshakePromise: completed with the connection info once the channel is
    ///     usable, or failed with a ``TLSError``.
    ///   - verificationHook: an async check of the connection (see ``TLSVerificationHook``).
    ///   - logger: where handshakes, refusals (with the verification reasons) and shutdown
    ///     timeouts are logged, with ``TLSLogKey`` metadata; `nil` logs nothing.
    ///   - metrics: the metrics of the server or client this connection belongs to (make
    ///     one ``TLSMetrics`` and share it); `nil` records nothing.
    public init(context: TLSContext, serverHostname: String? = nil, handshakePromise: EventLoopPromise<ConnectionInfo>? = nil,
                verificationHook: TLSVerificationHook? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil) {
        self.tlsContext = context
        self.host = serverHostname
        self.hook = verificationHook
        self.handshakePromise = handshakePromise
        self.logger = logger ?? .gnuTLSNoOp
        self.metrics = metrics
        self.tracksActivity = context.configuration.idleTimeout != nil
    }

    // MARK: Lifecycle

    /// Starts the handshake when the handler is added to an active channel.
    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    /// Stops the timers and fails what the handler still holds: writes not yet encrypted,
    /// the handshake promise while the handshake runs, and a close waiting for close_notify.
    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        // Built only when something is failed with it (a handler removed with the channel's
        // close has nothing left: no error to allocate).
        let error = { TLSError(.handlerRemoved, "the TLS handler was removed from the pipeline before this completed") }
        failPendingWrites(error())
        switch state {
        case .idle, .handshaking, .verifying:
            handshakePromise?.fail(error())
        case .active, .closing, .closed:
            break
        }
        let close = closePromise
        closePromise = nil
        awaitingCloseNotify = false
        close?.fail(error())
        countConnectionClosed()
        state = .closed
        engine = nil
    }

    /// Starts the handshake (and its timeout) when the connection opens.
    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        do {
            (engine, offeredSession) = try tlsContext.makeConnectionEngine(host: host)
        } catch {
            fail(context: context, TLSError(.protocolError, "cannot start a TLS session: \(error)"))
            return
        }
        state = .handshaking
        // Its duration is only reported in metrics and the info log: no clock read otherwise.
        if metrics != nil || logger.logLevel <= .info { handshakeStart = .now() }
        handshakeDeadline = context.eventLoop.now + Self.timeAmount(tlsContext.configuration.handshakeTimeout)
        timeout = context.eventLoop.assumeIsolated().scheduleTask(deadline: handshakeDeadline) { [self] in
            switch state {
            case .handshaking, .verifying:
                fail(context: context, TLSError(.handshakeTimeout, "the TLS handshake did not complete within \(tlsContext.configuration.handshakeTimeout)"))
            case .active:
                // Kept as the first idle check (`startIdleTimer`): it fires before the idle
                // deadline and schedules the check at it.
                idleTimer = nil
                checkIdle(context: context)
            case .idle, .closing, .closed:
                break
            }
        }
        advanceHandshake(context: context)
    }

    /// Fails a handshake in progress and every pending write; reports a close without close_notify as ``TLSError/Code/uncleanShutdown``.
    public func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        countConnectionClosed()
        // A close waiting for the peer's close_notify: the connection is closed, as asked.
        let close = closePromise
        closePromise = nil
        awaitingCloseNotify = false
        close?.succeed(())
        switch state {
        case .idle, .handshaking, .verifying:
            fail(context: context, TLSError(.peerClosedDuringHandshake, "the peer closed the connection during the TLS handshake"), close: false)
        case .active:
            state = .closed
            if !receivedCloseNotify {
                context.fireErrorCaught(TLSError(.uncleanShutdown, "the peer closed the connection without close_notify: data may be truncated"))
            }
        case .closing, .closed:
            state = .closed
        }
        failPendingWrites(TLSError(.channelClosed, "the connection closed before the write was sent"))
        engine = nil
        context.fireChannelInactive()
    }

    /// With `allowRemoteHalfClosure`, a TCP FIN arrives as `ChannelEvent.inputClosed`
    /// instead of `channelInactive`: without close_notify first, it is the same failure.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .idle, .handshaking, .verifying:
            fail(context: context, TLSError(.peerClosedDuringHandshake, "the peer closed the connection during the TLS handshake"))
        case .active where !receivedCloseNotify:
            fail(context: context, TLSError(.uncleanShutdown, "the peer closed the connection without close_notify: data may be truncated"))
        case .active:
            // Already reported when its close_notify arrived.
            break
        case .closing where awaitingCloseNotify:
            // Waiting for close_notify, the peer finished sending without one: close now.
            finishClose(context: context)
        case .closing, .closed:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// A TCP reset during the handshake is reported as such, not as an orderly close.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == ECONNRESET || error.errnoCode == EPIPE,
           state == .idle || state == .handshaking || state == .verifying {
            fail(context: context, TLSError(.connectionReset, "the peer reset the connection (TCP RST) during the TLS handshake"))
            return
        }
        context.fireErrorCaught(error)
    }

    private func allowsRemoteHalfClosure(_ context: ChannelHandlerContext) -> Bool {
        (try? context.channel.syncOptions?.getOption(ChannelOptions.allowRemoteHalfClosure)) ?? false
    }

    // MARK: Inbound

    /// Feeds ciphertext to the engine: it advances the handshake, or is decrypted and passed on as plaintext.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let engine else { return }
        metrics?.received(buffer.readableBytes)
        // Read in place: the engine copies only what GnuTLS leaves unread (a partial record).
        buffer.withUnsafeReadableBytes { bytes in
            engine.withReceived(bytes) {
                switch state {
                case .handshaking:
                    advanceHandshake(context: context)
                case .verifying, .active, .closing:
                    decrypt(context: context)
                case .idle, .closed:
                    break
                }
            }
        }
    }

    /// Feeds ciphertext to the engine: it advances the handshake, or is decrypted and passed on as plaintext.
    public func channelReadComplete(context: ChannelHandlerContext) {
        flushCiphertext(context: context)
        context.fireChannelReadComplete()
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        guard let engine else { return }
        // The flight goes straight into the buffer written to the channel.
        var out: ByteBuffer?
        let result = engine.withOutput(to: { bytes in
            if out == nil { out = context.channel.allocator.buffer(capacity: max(bytes.count, Self.handshakeFlightCapacity)) }
            out?.writeBytes(bytes)
        }) {
            Result { () throws(CoreTLSFailure) in try engine.handshake() }
        }
        if let out, out.readableBytes > 0 {
            metrics?.sent(out.readableBytes)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
        switch result {
        case .success(let status):
            if status == .complete { handshakeFinished(context: context) }
        case .failure(let error):
            fail(context: context, translate(error, during: true, context: context))
        }
    }

    /// What a handshake flight's buffer starts with: a certificate flight fits, most often.
    static let handshakeFlightCapacity = 4096

    private func handshakeFinished(context: ChannelHandlerContext) {
        guard let engine else { return }
        let presented = engine.peerCertificates
        guard let version = TLSVersion(gnutlsName: engine.protocolVersion) else {
            // The priority string never enables another version (TLSPolicyMapping); refuse
            // rather than report one ConnectionInfo cannot name.
            fail(context: context, TLSError(.protocolError, "the peer negotiated \(engine.protocolVersion), which is not TLS 1.2 or 1.3"))
            return
        }
        var info = ConnectionInfo(
            version: version, cipherSuite: engine.cipherSuite, applicationProtocol: engine.alpnProtocol,
            serverName: tlsContext.configuration.role == .client ? (tlsContext.configuration.serverName ?? host) : engine.requestedServerName,
            isResumed: engine.isResumed, peerCertificates: [], verifiedChain: nil)
        // The Swift verifier: stricter than GnuTLS (RFC 5280 / CA-B Forum checks, no CN
        // fallback), run on every handshake, resumed ones included.
        if tlsContext.verifier != nil {
            let resumedSession = engine.isResumed ? offeredSession : nil
            if !presented.isEmpty || resumedSession != nil {
                // The presented certificates come from the verifier's memo of parsed ones,
                // looked up once: the verifier takes them as they are (a chain with an
                // unparsable certificate is parsed again there, and fails).
                info.peerCertificates = tlsContext.parsedPeerCertificates(presented)
                do {
                    // GnuTLS verified this chain during a full handshake; no second GnuTLS
                    // pass, and the signatures it checked are not checked again. An identical
                    // earlier verification may answer from the verified-chain cache, and a
                    // resumed session from its own verification while that holds.
                    let verdict = try tlsContext.verifyPeerChain(
                        presented, parsed: info.peerCertificates, host: host, verifiedInHandshake: engine.peerChainVerifiedInHandshake,
                        resumedSession: resumedSession)
                    if !presented.isEmpty {
                        info.verifiedChain = verdict?.chain
                        info.verificationCacheHit = verdict?.cacheHit ?? false
                        info.verificationFromResumedSession = verdict?.fromResumedSession ?? false
                    }
                    if tlsContext.configuration.role == .client { sessionVerdict = verdict }
                } catch let error as VerificationError {
                    let error = error.explainingPeerChainLimit(presented: presented.count)
                    engine.sendFatalAlert(badCertificate: true)
                    flushCiphertext(context: context)
                    fail(context: context, TLSError(.verificationFailed, error.description, verification: error))
                    return
                } catch {
                    // A chain none of whose certificates parses counts as no certificate.
                    if !info.peerCertificates.isEmpty {
                        fail(context: context, TLSError(.verificationFailed, "\(error)"))
                        return
                    }
                }
            }
            if info.peerCertificates.isEmpty && (tlsContext.configuration.role == .client || tlsContext.configuration.clientCertificates == .required) {
                if engine.isResumed && tlsContext.configuration.role == .client {
                    // TLS 1.3 resumption sends no certificate: the ticket was issued to a
                    // verified server, and the session's verification (when it came from
                    // the context's session cache) was checked again above.
                } else {
                    engine.sendFatalAlert(badCertificate: false)
                    flushCiphertext(context: context)
                    fail(context: context, TLSError(.peerCertificateRequired, "the peer sent no certificate"))
                    return
                }
            }
        } else {
            info.peerCertificates = tlsContext.parsedPeerCertificates(presented)
        }
        self.info = info
        // OCSP / must-staple (OCSPRevocation.swift) and the hook: run beside the handshake.
        let revocation = OCSPHandshakeCheck.make(context: tlsContext, info: info, staple: engine.stapledOCSPResponse, logger: logger)
        guard hook != nil || revocation != nil else {
            activate(context: context)
            return
        }
        let hook = self.hook
        state = .verifying
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // On the channel's loop, not the cooperative pool: a pool held by busy tasks would
        // otherwise delay the check past the handshake timeout.
        Task(executorPreference: EventLoopTaskExecutor(eventLoop)) {
            let result: Result<Void, Error>
            do {
                try await revocation?()
                try await hook?(info)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            eventLoop.execute {
                let (handler, context) = loopBound.value
                guard handler.state == .verifying else { return }
                switch result {
                case .success:
                    handler.activate(context: context)
                case .failure(let error as VerificationError):
                    handler.engine?.sendFatalAlert(badCertificate: true)
                    handler.flushCiphertext(context: context)
                    handler.fail(context: context, TLSError(.verificationFailed, error.description, verification: error))
                case .failure(let error):
                    handler.engine?.sendFatalAlert(badCertificate: true)
                    handler.flushCiphertext(context: context)
                    handler.fail(context: context, TLSError(.verificationHookRejected, "the verification hook refused the connection: \(error)"))
                }
            }
        }
        // Records that arrived with the handshake wait in the engine until then.
    }

    private func activate(context: ChannelHandlerContext) {
        state = .active
        established = true
        if let info {
            let nanoseconds = handshakeStart.map { (NIODeadline.now() - $0).nanoseconds } ?? 0
            metrics?.handshakeSucceeded(info, nanoseconds: nanoseconds)
            countedActive = metrics != nil
            if let metrics, tlsContext.configuration.role == .server {
                // The served certificate's remaining life, kept current without an allocation.
                var earliest = Date.distantFuture
                for identity in tlsContext.configuration.identities where identity.leaf.notValidAfter < earliest {
                    earliest = identity.leaf.notValidAfter
                }
                metrics.recordServedCertificateExpiry(notAfter: earliest)
            }
            if logger.logLevel <= .info {
                var metadata = info.logMetadata
                metadata[TLSLogKey.event] = .string(TLSLogEvent.handshake)
                metadata[TLSLogKey.durationMilliseconds] = .stringConvertible(Double(nanoseconds / 1000) / 1000)
                addConnectionMetadata(&metadata, context: context)
                logger.info("TLS handshake completed", metadata: metadata)
            }
            handshakePromise?.succeed(info)
            context.fireUserInboundEventTriggered(TLSHandshakeCompletedEvent(info: info))
            context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: info.applicationProtocol))
        }
        // Writes issued during the handshake go out now.
        flushPendingWrites(context: context)
        for buffer in heldPlaintext { context.fireChannelRead(wrapInboundOut(buffer)) }
        heldPlaintext.removeAll()
        heldPlaintextBytes = 0
        startIdleTimer(context: context)
        decrypt(context: context)
        context.fireChannelReadComplete()
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// How much plaintext (and unread ciphertext) a connection holds while the async
    /// verification hook runs; beyond it the socket is not read until the hook decides.
    static let heldPlaintextLimit = 64 * 1024

    /// Asks for more input, unless plaintext is held while the verification hook runs.
    public func read(context: ChannelHandlerContext) {
        if state == .verifying,
           heldPlaintextBytes >= Self.heldPlaintextLimit || (engine?.pendingInboundBytes ?? 0) >= Self.heldPlaintextLimit {
            readHeld = true
            return
        }
        context.read()
    }

    // MARK: Idle timeout

    /// Replaces the handshake timer with the idle timer. The handshake timer is kept as the
    /// first idle check when it fires no later than the idle deadline (the default: a 10 s
    /// handshake timeout, a 120 s idle timeout), which then schedules the check at the idle
    /// deadline itself: one timer scheduled and cancelled less per connection, and the idle
    /// timeout fires at the same time.
    private func startIdleTimer(context: ChannelHandlerContext) {
        let handshakeTimer = timeout
        timeout = nil
        // Not once a handler behind this one closed the connection on the handshake's events.
        guard state == .active, let limit = tlsContext.configuration.idleTimeout else {
            handshakeTimer?.cancel()
            return
        }
        lastActivity = context.eventLoop.now
        let deadline = lastActivity + Self.timeAmount(limit)
        if let handshakeTimer, handshakeDeadline <= deadline {
            idleTimer = handshakeTimer
            return
        }
        handshakeTimer?.cancel()
        scheduleIdleCheck(context: context, at: deadline)
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            checkIdle(context: context)
        }
    }

    /// The idle timer fired: closes the connection when nothing went either way for the idle
    /// timeout, or checks again when that will be.
    private func checkIdle(context: ChannelHandlerContext) {
        guard state == .active, let limit = tlsContext.configuration.idleTimeout else { return }
        let due = lastActivity + Self.timeAmount(limit)
        if due > context.eventLoop.now {
            scheduleIdleCheck(context: context, at: due)
            return
        }
        idleTimer = nil
        // Closed like any other close (close_notify first); the application sees why.
        state = .closing
        if !sentCloseNotify { engine?.shutdown() }
        flushCiphertext(context: context)
        context.fireErrorCaught(TLSError(.idleTimeout, "no data was sent or received for \(limit): the connection was closed"))
        context.close(promise: nil)
    }

    /// `duration` as a NIO time amount, clamped to 0 … 100 years (no overflow for any input).
    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let parts = duration.components
        let limit: Int64 = 100 * 365 * 86_400
        guard parts.seconds >= 0 else { return .zero }
        guard parts.seconds < limit else { return .seconds(limit) }
        return .nanoseconds(parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000)
    }

    private func decrypt(context: ChannelHandlerContext) {
        guard let engine else { return }
        var delivered = false
        loop: while true {
            if state == .verifying && heldPlaintextBytes >= Self.heldPlaintextLimit {
                // Held at the cap until the hook decides (see `read(context:)`).
                break loop
            }
            do {
                var chunk: ByteBuffer?
                let outcome = try engine.read { bytes in
                    var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                    buffer.writeBytes(bytes)
                    chunk = buffer
                }
                switch outcome {
                case .data:
                    guard let chunk else { continue }
                    if state == .active {
                        if tracksActivity { lastActivity = context.eventLoop.now }
                        context.fireChannelRead(wrapInboundOut(chunk))
                        delivered = true
                    } else if state != .verifying {
                        // Closing: this side sent close_notify and reads only to find the peer's.
                    } else {
                        heldPlaintextBytes += chunk.readableBytes
                        heldPlaintext.append(chunk)
                        if heldPlaintextBytes >= Self.heldPlaintextLimit {
                            // The hook is still deciding: decrypt no more (and, through
                            // `read`, stop reading the socket) until it has.
                            break loop
                        }
                    }
                    rememberSession()
                case .wantInput:
                    rememberSession()
                    break loop
                case .closed:
                    receivedCloseNotify = true
                    flushCiphertext(context: context)
                    if state == .active && !sentCloseNotify && allowsRemoteHalfClosure(context) {
                        // Half-closure (the channel's `allowRemoteHalfClosure`): the peer is done
                        // writing, but the application may still be replying. It closes the
                        // channel itself, which sends our close_notify.
                        if delivered { context.fireChannelReadComplete() }
                        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                        return
                    }
                    if state == .closing && awaitingCloseNotify {
                        // The answer to our close_notify: a clean, two-way shutdown.
                        context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted)
                        finishClose(context: context)
                        return
                    }
                    if state == .active || state == .closing {
                        if !sentCloseNotify { engine.shutdown() }
                        flushCiphertext(context: context)
                        state = .closing
                        context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted)
                        context.close(promise: nil)
                    }
                    break loop
                case .renegotiationRefused:
                    flushCiphertext(context: context)
                }
            } catch {
                flushCiphertext(context: context)
                fail(context: context, translate(error, during: false, context: context))
                return
            }
        }
        if delivered { context.fireChannelReadComplete() }
    }

    /// Keeps the session for resumption once the server sent a ticket.
    private func rememberSession() {
        guard !storedSession, tlsContext.configuration.role == .client, tlsContext.configuration.sessionResumption,
              let engine, let key = tlsContext.configuration.serverName ?? host, let data = engine.resumptionData else { return }
        tlsContext.sessionCache.store(data, verification: sessionVerdict.map { tlsContext.sessionVerification($0, host: host) }, for: key)
        storedSession = true
    }

    // MARK: Outbound

    /// Encrypts plaintext into TLS records; before the handshake completes, the write waits.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking, .verifying:
            pendingWrites.append((buffer, promise))
        case .active where sentCloseNotify:
            promise?.fail(TLSError(.channelClosed, "cannot write: this side already sent close_notify (output closed)"))
        case .active:
            // Encrypted at the next flush, coalesced with the writes before it.
            if tracksActivity { lastActivity = context.eventLoop.now }
            pendingWrites.append((buffer, promise))
        case .closing, .closed:
            promise?.fail(TLSError(.channelClosed, "cannot write: the TLS connection is closing"))
        }
    }

    /// Flushes the TLS records written so far.
    public func flush(context: ChannelHandlerContext) {
        if state == .active { flushPendingWrites(context: context) }
    }

    /// Sends close_notify, then closes (`.output` sends close_notify and keeps reading).
    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch state {
        case .active:
            if mode == .input {
                context.close(mode: mode, promise: promise)
                return
            }
            if mode == .output {
                // Half-close: close_notify, then the TCP write side once it is written; the
                // peer's remaining data is still read and delivered.
                guard !sentCloseNotify else {
                    promise?.fail(ChannelError.outputClosed)
                    return
                }
                flushPendingWrites(context: context)
                sentCloseNotify = true
                engine?.shutdown()
                flushCiphertext(context: context)
                context.close(mode: .output, promise: promise)
                return
            }
            // Writes not yet flushed go out before close_notify.
            flushPendingWrites(context: context)
            state = .closing
            if !sentCloseNotify { engine?.shutdown() }
            flushCiphertext(context: context)
            let wait = Self.timeAmount(tlsContext.configuration.shutdownTimeout)
            guard !receivedCloseNotify, wait > .zero else {
                // The peer's close_notify came first (half-closure): both directions are done.
                if receivedCloseNotify { context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted) }
                context.close(mode: mode, promise: promise)
                return
            }
            // Wait for the peer's close_notify, at most the shutdown timeout.
            awaitingCloseNotify = true
            closePromise = promise
            shutdownTimer = context.eventLoop.assumeIsolated().scheduleTask(in: wait) { [self] in
                guard state == .closing, awaitingCloseNotify else { return }
                shutdownTimer = nil
                var metadata: Logger.Metadata = [TLSLogKey.event: .string(TLSLogEvent.shutdownTimeout)]
                addConnectionMetadata(&metadata, context: context)
                logger.notice("the peer did not answer close_notify in time: closing", metadata: metadata)
                context.fireErrorCaught(TLSError(.shutdownTimeout, "the peer did not answer close_notify within \(tlsContext.configuration.shutdownTimeout): the connection was closed"))
                finishClose(context: context)
            }
        case .idle, .handshaking, .verifying:
            if state != .idle {
                metrics?.handshakeFailed(TLSError(.channelClosed, "closed during the handshake"), version: nil,
                                         nanoseconds: handshakeStart.map { (NIODeadline.now() - $0).nanoseconds })
            }
            state = .closing
            timeout?.cancel()
            handshakePromise?.fail(TLSError(.channelClosed, "the connection was closed before the handshake completed"))
            failPendingWrites(TLSError(.channelClosed, "the connection was closed before the handshake completed"))
            context.close(mode: mode, promise: promise)
        case .closing where awaitingCloseNotify && mode == .all:
            // Already waiting for close_notify: complete with that close.
            if let promise {
                if let closePromise {
                    closePromise.futureResult.cascade(to: promise)
                } else {
                    closePromise = promise
                }
            }
        case .closing, .closed:
            context.close(mode: mode, promise: promise)
        }
    }

    /// Closes the channel after a close waiting for the peer's close_notify (answered, timed
    /// out, or the peer gone), completing the waiting `close` promise.
    private func finishClose(context: ChannelHandlerContext) {
        shutdownTimer?.cancel()
        shutdownTimer = nil
        let promise = closePromise
        closePromise = nil
        awaitingCloseNotify = false
        context.close(promise: promise)
    }

    /// Encrypts the writes held since the last flush and flushes: consecutive writes are
    /// gathered into the reused coalescing buffer up to one record's worth of plaintext, so
    /// many small writes make one record; a write of a full record or more is encrypted as
    /// it is. All the ciphertext goes out as one buffer, whose write completes the promises.
    private func flushPendingWrites(context: ChannelHandlerContext) {
        guard !pendingWrites.isEmpty else { return }
        guard let engine else {
            failPendingWrites(TLSError(.channelClosed, "cannot write: the TLS connection is closed"))
            return
        }
        // Taken out first: completing a promise may run code that writes again.
        var writes: [(ByteBuffer, EventLoopPromise<Void>?)] = []
        swap(&writes, &pendingWrites)
        var scratch = coalescing ?? context.channel.allocator.buffer(capacity: Self.maximumRecordPlaintext)
        coalescing = nil
        scratch.clear()
        var plaintextBytes = 0
        for write in writes { plaintextBytes += write.0.readableBytes }
        // The records go straight into the buffer written to the channel (no copy through
        // the engine's queue), sized for the plaintext and each record's header and tag.
        var out = context.channel.allocator.buffer(
            capacity: plaintextBytes + (plaintextBytes / Self.maximumRecordPlaintext + 1) * Self.recordOverhead)
        let failed = engine.withOutput(to: { out.writeBytes($0) }) {
            Self.encrypt(writes, with: engine, scratch: &scratch)
        }
        let failure = failed.map { translate($0.failure, during: false, context: context) }
        let failedFrom = failed?.from ?? writes.count
        coalescing = scratch
        // The promises complete with the ciphertext's write, or fail with the encryption's error.
        var written: EventLoopPromise<Void>?
        for index in writes.indices {
            guard let promise = writes[index].1 else { continue }
            if let failure, index >= failedFrom {
                promise.fail(failure)
            } else if let written {
                written.futureResult.cascade(to: promise)
            } else {
                written = promise
            }
        }
        writes.removeAll(keepingCapacity: true)
        if pendingWrites.isEmpty { pendingWrites = writes }
        if out.readableBytes > 0 {
            metrics?.sent(out.readableBytes)
            context.write(wrapOutboundOut(out), promise: written)
        } else {
            written?.succeed(())
        }
        context.flush()
    }

    /// Encrypts `writes` in order: consecutive small writes gathered in `scratch` up to one
    /// record's worth of plaintext, a write of a record or more on its own. On failure,
    /// nothing more is encrypted; `from` is the first write that was not (wholly) encrypted.
    private static func encrypt(_ writes: [(ByteBuffer, EventLoopPromise<Void>?)], with engine: TLSEngine,
                                scratch: inout ByteBuffer) -> (failure: CoreTLSFailure, from: Int)? {
        func encrypt(_ buffer: ByteBuffer) -> CoreTLSFailure? {
            do {
                try buffer.withUnsafeReadableBytes { bytes throws(CoreTLSFailure) in try engine.write(bytes) }
                return nil
            } catch {
                return error
            }
        }
        // writes[..<settled] are encrypted; scratch holds those after them, gathered.
        var settled = 0
        for index in writes.indices {
            let buffer = writes[index].0
            if scratch.readableBytes > 0 && scratch.readableBytes + buffer.readableBytes > maximumRecordPlaintext {
                if let failure = encrypt(scratch) { return (failure, settled) }
                scratch.clear()
                settled = index
            }
            if buffer.readableBytes >= maximumRecordPlaintext {
                if let failure = encrypt(buffer) { return (failure, settled) }
                settled = index + 1
            } else {
                scratch.writeImmutableBuffer(buffer)
            }
        }
        if scratch.readableBytes > 0 {
            if let failure = encrypt(scratch) { return (failure, settled) }
            scratch.clear()
        }
        return nil
    }

    /// Room for one record's header, explicit nonce, padding and tag beyond its plaintext
    /// (the output buffer grows if a CBC suite needs more).
    static let recordOverhead = 64

    private func writeCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let engine, engine.hasOutbound else {
            promise?.succeed(())
            return
        }
        var out = context.channel.allocator.buffer(capacity: 0)
        engine.drainOutbound { bytes in
            out.reserveCapacity(bytes.count)
            out.writeBytes(bytes)
        }
        metrics?.sent(out.readableBytes)
        context.write(wrapOutboundOut(out), promise: promise)
    }

    private func flushCiphertext(context: ChannelHandlerContext) {
        guard let engine, engine.hasOutbound else { return }
        writeCiphertext(context: context, promise: nil)
        context.flush()
    }

    // MARK: Failure

    private func fail(context: ChannelHandlerContext, _ error: TLSError, close: Bool = true) {
        let wasHandshaking = state == .handshaking || state == .verifying || state == .idle
        guard state != .closed else { return }
        state = close ? .closing : .closed
        cancelTimers()
        failPendingWrites(error)
        if wasHandshaking {
            handshakeRefused(context: context, error)
            handshakePromise?.fail(error)
        }
        context.fireErrorCaught(error)
        let promise = closePromise
        closePromise = nil
        awaitingCloseNotify = false
        if close {
            context.close(promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    /// Counts and logs a failed or refused handshake, with the peer's certificate when it sent one.
    private func handshakeRefused(context: ChannelHandlerContext, _ error: TLSError) {
        let version = engine.flatMap { $0.handshakeComplete ? TLSVersion(gnutlsName: $0.protocolVersion) : nil }
        metrics?.handshakeFailed(error, version: version, nanoseconds: handshakeStart.map { (NIODeadline.now() - $0).nanoseconds })
        // Refusals of the peer (its certificate, the hook) are warnings; a peer that went
        // away, timed out or spoke something else is a notice (scanners and health checks).
        let refusals: Set<TLSError.Code> = [.verificationFailed, .verificationHookRejected, .peerCertificateRequired]
        let level: Logger.Level = refusals.contains(error.code) ? .warning : .notice
        guard logger.logLevel <= level else { return }
        var metadata = error.logMetadata
        metadata[TLSLogKey.event] = .string(TLSLogEvent.refused)
        if let version { metadata[TLSLogKey.version] = .string(version.description) }
        if let leaf = engine?.peerCertificates.first, let certificate = try? Certificate(derEncoded: leaf) {
            metadata.merge(TLSLogging.peerMetadata(certificate), uniquingKeysWith: { _, new in new })
        }
        addConnectionMetadata(&metadata, context: context)
        logger.log(level: level, "TLS handshake refused", metadata: metadata)
    }

    /// The role and the peer's address.
    private func addConnectionMetadata(_ metadata: inout Logger.Metadata, context: ChannelHandlerContext) {
        metadata[TLSLogKey.role] = .string(tlsContext.configuration.role.name)
        if let address = context.channel.remoteAddress {
            metadata[TLSLogKey.peerAddress] = .string(address.ipAddress.map { "\($0):\(address.port ?? 0)" } ?? "\(address)")
        }
    }

    /// Stops the handshake, idle and shutdown timers.
    private func cancelTimers() {
        timeout?.cancel()
        timeout = nil
        idleTimer?.cancel()
        idleTimer = nil
        shutdownTimer?.cancel()
        shutdownTimer = nil
    }

    private func countConnectionClosed() {
        guard countedActive else { return }
        countedActive = false
        metrics?.connectionClosed()
    }

    private func failPendingWrites(_ error: @autoclosure () -> Error) {
        guard !pendingWrites.isEmpty else { return }
        let failure = error()
        let writes = pendingWrites
        pendingWrites.removeAll()
        for (_, promise) in writes { promise?.fail(failure) }
    }

    private func translate(_ failure: CoreTLSFailure, during handshake: Bool, context: ChannelHandlerContext) -> TLSError {
        switch failure.kind {
        case .alertReceived(let alert):
            return TLSError(.peerAlert, "the peer sent a fatal alert: \(alert)", alert: alert, gnutlsName: failure.name)
        case .certificateVerification(_, let text):
            // Name the precise reasons with the Swift verifier when the chain is at hand.
            if let engine, let verifier = tlsContext.verifier {
                let peer = engine.peerCertificates.compactMap { try? Certificate(derEncoded: $0) }
                if let leaf = peer.first {
                    do {
                        _ = try verifier.verify(leaf, intermediates: Array(peer.dropFirst()), policy: tlsContext.verificationPolicy(forHost: host))
                    } catch let error as VerificationError {
                        let error = error.explainingPeerChainLimit(presented: peer.count)
                        return TLSError(.verificationFailed, error.description, verification: error, gnutlsName: failure.name)
                    } catch {}
                    // GnuTLS also refuses a revoked or invalid stapled OCSP response: say why.
                    if let error = OCSPHandshakeCheck.stapleProblem(context: tlsContext, peer: peer, staple: engine.stapledOCSPResponse) {
                        return TLSError(.verificationFailed, error.description, verification: error, gnutlsName: failure.name)
                    }
                }
            }
            return TLSError(.verificationFailed, "certificate verification failed: \(text)", gnutlsName: failure.name)
        case .peerCertificateRequired:
            return tlsContext.configuration.role == .server
                ? TLSError(.peerCertificateRequired, "the client sent no certificate, and this server requires one", gnutlsName: failure.name)
                : TLSError(.peerCertificateRequired, "the server requires a client certificate, and none is configured", gnutlsName: failure.name)
        case .prematureEOF:
            return handshake
                ? TLSError(.peerClosedDuringHandshake, "the peer closed the connection during the TLS handshake", gnutlsName: failure.name)
                : TLSError(.uncleanShutdown, "the peer closed the connection without close_notify", gnutlsName: failure.name)
        case .protocolError:
            return TLSError(.protocolError, "\(failure.text) (\(failure.function))", gnutlsName: failure.name)
        }
    }
}
