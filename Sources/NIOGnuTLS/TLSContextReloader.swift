import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOPosix

/// Why a reload was refused. The provider that refused it keeps serving its previous
/// context.
public struct TLSReloadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name.
        public var rawValue: String
        /// A code from its name.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The code's name.
        public var description: String { rawValue }

        /// A file could not be read or parsed (missing, truncated, wrong passphrase, no
        /// certificate in it, …).
        public static let loadFailed = Code(rawValue: "loadFailed")
        /// A new private key does not belong to the new leaf certificate.
        public static let keyMismatch = Code(rawValue: "keyMismatch")
        /// The loaded values make no valid context (chain out of order, stapled OCSP
        /// response that does not verify, …).
        public static let contextRejected = Code(rawValue: "contextRejected")
    }

    /// What kind of failure.
    public let code: Code
    /// What was attempted and why it failed, in words.
    public let message: String

    /// An error with a code and a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// What one reload attempt did: the new context is served, or the attempt was refused and
/// the previous context is kept.
public struct TLSReloadEvent: Sendable, CustomStringConvertible {
    /// Whether the attempt replaced the context. Closed: ``reloaded`` or ``refused``.
    public struct Outcome: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable { case reloaded, refused }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }
        /// New connections get the newly built context.
        public static let reloaded = Outcome(.reloaded)
        /// The attempt failed; new connections keep getting the previous context.
        public static let refused = Outcome(.refused)
        /// `reloaded` or `refused`.
        public var description: String { backing == .reloaded ? "reloaded" : "refused" }
    }

    /// Whether the attempt replaced the context.
    public let outcome: Outcome
    /// The context served from now on (after a refusal, the one kept).
    public let context: TLSContext
    /// The context served before the attempt.
    public let previousContext: TLSContext
    /// Why the attempt was refused (`nil` when it succeeded).
    public let error: TLSReloadError?

    /// The serial numbers of the leaf certificates served from now on, one per identity.
    public var serials: [SerialNumber] { context.configuration.identities.map(\.leaf.serialNumber) }
    /// The serial numbers of the leaf certificates served before the attempt.
    public var previousSerials: [SerialNumber] { previousContext.configuration.identities.map(\.leaf.serialNumber) }

    /// `reloaded: serial …` or `refused: <reason>; keeping serial …`.
    public var description: String {
        let serving = serials.map(\.description).joined(separator: ", ")
        if let error { return "refused: \(error.message); keeping serial \(serving)" }
        return "reloaded: serial \(serving)"
    }
}

/// A `TLSContextProvider` that rebuilds its context from a closure when asked (the shape
/// of swift-nio-extras' `CertificateReloader`, for the whole configuration: identities,
/// trust anchors and CRLs). The GnuTLS credentials are built once per successful reload and
/// shared by every connection that starts afterwards; connections already open keep the
/// context they started with.
///
/// A reload whose closure throws, whose new key does not match its certificate, or whose
/// values make no valid context is refused: the previous context stays in service, and the
/// refusal is logged, passed to `onReload` and yielded to every ``events()`` stream.
///
/// ```swift
/// let reloader = try TLSContextReloader {
///     try TLSConfiguration.makeServerConfiguration(identity: TLSIdentity(
///         chainContentsOfFile: "/etc/tls/chain.pem", keyContentsOfFile: "/etc/tls/key.pem"))
/// }
/// let server = try await TLSServer.bind(host: "0.0.0.0", port: 8443, contextProvider: reloader)
/// // later, when new files are in place:
/// let event = reloader.reload()
/// ```
public final class TLSContextReloader: TLSContextProvider, @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`; `reloading` serialises reloads.
    private let load: @Sendable () throws -> TLSConfiguration
    private let logger: Logger
    private let metrics: TLSMetrics?
    private let source: String
    private let onReload: (@Sendable (TLSReloadEvent) -> Void)?
    private let lock = NSLock()
    private let reloading = NSLock()
    private var context: TLSContext
    private var subscribers: [Int: AsyncStream<TLSReloadEvent>.Continuation] = [:]
    private var nextSubscriber = 0

    /// Loads and builds the first context; it must succeed.
    ///
    /// - Parameters:
    ///   - logger: reloads are logged to it (info, event `reload`) and refusals (error, event
    ///     `reload_refused`) with ``TLSLogKey`` metadata: the serial served from now on, the
    ///     previous one, the source and the error message. The default logs nothing.
    ///   - metrics: counts every attempt (``TLSMetricName/reloads``, by outcome) and
    ///     updates the served certificates' expiry gauge after a reload; `nil`: no metrics.
    ///   - source: names where the configuration comes from in the log (file paths).
    ///   - onReload: called after every attempt, on the thread that reloaded.
    ///   - load: reads the configuration (files, a secret store, …). Called by `init` and
    ///     by every ``reload()``; it may block (it never runs on an event loop).
    /// - Throws: ``TLSReloadError`` when the first configuration cannot be loaded or built.
    public init(
        logger: Logger? = nil, metrics: TLSMetrics? = nil, source: String = "closure",
        onReload: (@Sendable (TLSReloadEvent) -> Void)? = nil,
        load: @escaping @Sendable () throws -> TLSConfiguration
    ) throws {
        self.load = load
        self.logger = logger ?? .gnuTLSNoOp
        self.metrics = metrics
        self.source = source
        self.onReload = onReload
        self.context = try Self.build(load)
    }

    /// The context new connections get now.
    public func currentContext() -> TLSContext {
        lock.lock(); defer { lock.unlock() }
        return context
    }

    /// Loads the configuration again and, when it is valid, serves a context built from it
    /// to every connection that starts from now on. Blocks while the files are read and the
    /// credentials are built: call it from a task or thread of your own, not an event loop.
    /// Reloads are serialised.
    ///
    /// - Returns: what happened (also logged, passed to `onReload` and to ``events()``).
    @discardableResult
    public func reload() -> TLSReloadEvent {
        reloading.lock(); defer { reloading.unlock() }
        let previous = currentContext()
        let event: TLSReloadEvent
        do {
            let next = try Self.build(load)
            lock.lock()
            context = next
            lock.unlock()
            event = TLSReloadEvent(outcome: .reloaded, context: next, previousContext: previous, error: nil)
            logger.info("reloaded the TLS context", metadata: metadata(event))
            metrics?.recordReload(succeeded: true)
            TLSLogging.checkServedCertificates(of: next, logger: logger, metrics: metrics)
        } catch {
            let reason = error as? TLSReloadError ?? TLSReloadError(.loadFailed, "\(error)")
            event = refusal(reason, previous: previous, source: source)
        }
        publish(event)
        return event
    }

    /// Reports a refused reload without loading anything: the current context stays in
    /// service. `TLSFileWatcher` calls it for one identity whose renewal it refused while
    /// the other identities reload on their own.
    ///
    /// - Parameter source: where the refused files are, for the log (default: every source).
    @discardableResult
    func refuse(_ reason: TLSReloadError, source: String? = nil) -> TLSReloadEvent {
        reloading.lock(); defer { reloading.unlock() }
        let event = refusal(reason, previous: currentContext(), source: source ?? self.source)
        publish(event)
        return event
    }

    /// A refusal event, logged and counted.
    private func refusal(_ reason: TLSReloadError, previous: TLSContext, source: String) -> TLSReloadEvent {
        let event = TLSReloadEvent(outcome: .refused, context: previous, previousContext: previous, error: reason)
        logger.error("refused a TLS reload; keeping the previous context", metadata: metadata(event, source: source))
        metrics?.recordReload(succeeded: false)
        return event
    }

    /// Passes an attempt to `onReload` and to every ``events()`` stream.
    private func publish(_ event: TLSReloadEvent) {
        onReload?(event)
        lock.lock()
        let continuations = Array(subscribers.values)
        lock.unlock()
        for continuation in continuations { continuation.yield(event) }
    }

    /// A stream of every reload attempt from now on (each call makes a new, independent
    /// stream; it ends when the reloader is released or the stream's consumer stops).
    public func events() -> AsyncStream<TLSReloadEvent> {
        let (stream, continuation) = AsyncStream<TLSReloadEvent>.makeStream(bufferingPolicy: .bufferingNewest(64))
        lock.lock()
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        lock.unlock()
        // A strong capture: a subscriber keeps its source alive until its stream ends (a
        // stream dropped unread ends too, and this closure then breaks the cycle). A weak
        // reference would give the reloader a side table whose tagged pointer
        // LeakSanitizer cannot follow (reported as a leak at exit).
        continuation.onTermination = { _ in
            self.lock.lock(); defer { self.lock.unlock() }
            self.subscribers[id] = nil
        }
        return stream
    }

    deinit {
        for continuation in subscribers.values { continuation.finish() }
    }

    /// Loads a configuration and builds its context, with a typed reason when it cannot.
    static func build(_ load: () throws -> TLSConfiguration) throws -> TLSContext {
        let configuration: TLSConfiguration
        do {
            configuration = try load()
        } catch {
            throw TLSReloadError(.loadFailed, "cannot load the new TLS configuration: \(error)")
        }
        for identity in configuration.identities {
            let leaf = identity.leaf
            // Checked here as well as in TLSContext.init, so the refusal has its own code.
            guard identity.keyMatchesLeaf else {
                throw TLSReloadError(.keyMismatch, "the private key does not match certificate '\(leaf.subject)' (serial \(leaf.serialNumber))")
            }
        }
        do {
            return try TLSContext(configuration: configuration)
        } catch {
            throw TLSReloadError(.contextRejected, "the new TLS configuration is invalid: \(error)")
        }
    }

    /// The shared ``TLSLogKey`` metadata of a reload attempt.
    func metadata(_ event: TLSReloadEvent, source: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            TLSLogKey.event: .string(event.error == nil ? TLSLogEvent.reload : TLSLogEvent.reloadRefused),
            TLSLogKey.certificateSerial: .string(event.serials.map(\.hexString).joined(separator: ",")),
            TLSLogKey.previousSerial: .string(event.previousSerials.map(\.hexString).joined(separator: ",")),
            TLSLogKey.reloadSource: .string(source ?? self.source),
        ]
        if let error = event.error {
            metadata[TLSLogKey.errorMessage] = .string(error.message)
            metadata[TLSLogKey.errorCode] = .string(error.code.rawValue)
        }
        return metadata
    }
}

extension SecureChannel {
    /// Opens a TLS connection to `host:port` with the context `contextProvider` gives now
    /// (a rotating client identity or trust store is picked up by the next connection).
    ///
    /// - Throws: what `TLSContextProvider.currentContext()` throws, ``TLSError``
    ///   (verification, alerts, timeout, …) or a connection error.
    public static func connect(
        host: String, port: Int, contextProvider: some TLSContextProvider,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        verificationHook: TLSVerificationHook? = nil, logger: Logger? = nil, metrics: TLSMetrics? = nil
    ) async throws -> SecureChannel {
        try await connect(host: host, port: port, context: contextProvider.currentContext(),
                          eventLoopGroup: eventLoopGroup, verificationHook: verificationHook, logger: logger, metrics: metrics)
    }
}
