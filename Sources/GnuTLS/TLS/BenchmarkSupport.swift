import Foundation
import GnuTLSCore

// What the Benchmarks package and `tlsctl bench` need to drive the TLS engine from outside
// the package, without copies of its internals: a throwaway PKI and a client/server engine
// pair wired back to back in memory. Not API: `@_spi(Benchmarks)` keeps it out of what users
// see, and it may change with any release.

/// Why a back-to-back handshake or transfer failed.
@_spi(Benchmarks)
public struct InMemoryTLSFailure: Error, Sendable, CustomStringConvertible {
    /// What failed, in words.
    public var description: String
}

/// A client engine and a server engine wired to each other in memory, doing what
/// `GnuTLSHandler` does on a connection: the GnuTLS handshake with its in-handshake
/// verification, then the Swift `Verifier` on the peer's chain, on each side that verifies.
/// One pair is one connection; make a new pair for the next.
///
/// Not thread-safe: one pair belongs to one thread.
@_spi(Benchmarks)
public final class InMemoryTLSPair {
    private let clientContext: TLSContext
    private let serverContext: TLSContext
    private let client: TLSEngine
    private let server: TLSEngine
    private let host: String?
    /// Whether the pair takes its session from, and keeps it in, the client context's
    /// session cache (as `GnuTLSHandler` does), with the verification it was made with.
    private let usesSessionCache: Bool
    /// The verification of the session the client offered from the cache.
    private let offeredSession: SessionVerification?

    /// A pair that resumes through the client context's session cache, as a connection
    /// through `GnuTLSHandler` does: the client offers the session the cache holds for
    /// `host` (if any), and after a full handshake keeps its new session there, with the
    /// verification of the server's chain that a later resumption is judged by.
    public init(client: TLSContext, server: TLSContext, host: String? = "localhost", sessionCache: Bool) throws {
        self.clientContext = client
        self.serverContext = server
        self.host = host
        self.usesSessionCache = sessionCache
        if sessionCache {
            (self.client, self.offeredSession) = try client.makeConnectionEngine(host: host)
        } else {
            self.client = try client.makeEngine(host: host, offering: nil)
            self.offeredSession = nil
        }
        self.server = try server.makeEngine(host: nil)
    }

    /// - Parameters:
    ///   - host: the name the client connects to (SNI and name verification).
    ///   - resumptionData: a session from ``resumptionData`` of an earlier pair, to resume.
    public init(client: TLSContext, server: TLSContext, host: String? = "localhost", resumptionData: [UInt8]? = nil) throws {
        self.clientContext = client
        self.serverContext = server
        self.host = host
        self.client = try client.makeEngine(host: host, offering: resumptionData)
        self.server = try server.makeEngine(host: nil)
        self.usesSessionCache = false
        self.offeredSession = nil
    }

    /// Runs both handshakes to completion, then the Swift verifier on each side that
    /// verifies, then lets the client take the session tickets the server sent.
    public func handshake() throws {
        var clientDone = false
        var serverDone = false
        var rounds = 0
        while !(clientDone && serverDone) {
            rounds += 1
            guard rounds <= 32 else { throw InMemoryTLSFailure(description: "the handshake did not settle within 32 rounds") }
            do {
                if !clientDone { clientDone = try client.handshake() == .complete }
                server.receive(outboundOf: client)
                if !serverDone { serverDone = try server.handshake() == .complete }
                client.receive(outboundOf: server)
            } catch {
                throw InMemoryTLSFailure(description: "handshake failed: \(error.name) in \(error.function): \(error.text)")
            }
        }
        let clientVerdict = try verifyPeer(client.peerCertificates, of: client, context: clientContext, host: host,
                                       resumedSession: client.isResumed ? offeredSession : nil)
        _ = try verifyPeer(server.peerCertificates, of: server, context: serverContext, host: nil, resumedSession: nil)
        // TLS 1.3 session tickets arrive after the handshake: the client reads them now, as
        // a connection's first read would.
        if client.hasInboundBytes { _ = try read(client) { _ in } }
        // As the raw GnuTLS baseline does: a full handshake's session is kept, a resumed
        // one goes on with the session it resumed.
        if usesSessionCache, clientContext.configuration.sessionResumption, !client.isResumed,
           let key = clientContext.configuration.serverName ?? host, let data = client.resumptionData {
            clientContext.sessionCache.store(data, verification: clientVerdict.map { clientContext.sessionVerification($0, host: host) }, for: key)
        }
    }

    /// The Swift verifier pass `GnuTLSHandler` runs after the handshake (or its cached result).
    private func verifyPeer(_ peer: [[UInt8]], of engine: TLSEngine, context: TLSContext, host: String?,
                            resumedSession: SessionVerification?) throws -> PeerChainVerdict? {
        guard context.verifier != nil else { return nil }
        if peer.isEmpty && resumedSession == nil {
            if context.configuration.role == .client && !engine.isResumed {
                throw InMemoryTLSFailure(description: "the server sent no certificate")
            }
            return nil
        }
        if engine.peerChainAcceptedEarlier { chainVerificationsSkippedInHandshake += 1 }
        let verdict = try context.verifyPeerChain(peer, host: host, verifiedInHandshake: engine.peerChainVerifiedInHandshake,
                                                  resumedSession: resumedSession)
        if verdict?.cacheHit == true { verificationCacheHits += 1 }
        if verdict?.fromResumedSession == true { resumedSessionVerifications += 1 }
        return verdict
    }

    /// How many of this pair's peer-chain verifications the resumed session's own
    /// verification answered (0-1).
    public private(set) var resumedSessionVerifications = 0

    /// How many of this pair's peer-chain verifications the verified-chain cache answered (0-2).
    public private(set) var verificationCacheHits = 0
    /// How many of this pair's handshakes (0-2) skipped GnuTLS's verification of the peer's
    /// chain, which GnuTLS accepted in an earlier handshake (the verified-chain cache).
    public private(set) var chainVerificationsSkippedInHandshake = 0

    /// Whether the client resumed a session.
    public var isResumed: Bool { client.isResumed }

    /// The negotiated version (`TLS1.3`) and cipher suite.
    public var protocolVersion: String { client.protocolVersion }
    /// The negotiated cipher suite's IANA name.
    public var cipherSuite: String { client.cipherSuite }

    /// Data that resumes this session in a later pair (after ``handshake()``).
    public var resumptionData: [UInt8]? { client.resumptionData }

    /// The wire between the client and the server during ``transfer(_:recordSize:received:)``:
    /// one buffer, kept for the pair's life and reused for every record, as a connection's
    /// transport buffers are. The client encrypts straight into it and the server reads it
    /// in place (`TLSEngine.withOutput` and `withReceived`, as `GnuTLSHandler` does with
    /// NIO's buffers): no copy through the engines' queues, no buffer allocated per record.
    private var wire: [UInt8] = []

    /// The client writes `bytes` in records of at most `recordSize`; the server decrypts them
    /// and hands each record's plaintext to `received`, in order.
    /// - Returns: the number of plaintext bytes the server read.
    @discardableResult
    public func transfer(_ bytes: UnsafeRawBufferPointer, recordSize: Int = 16 * 1024,
                         received: (UnsafeRawBufferPointer) -> Void = { _ in }) throws -> Int {
        var total = 0
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + recordSize, bytes.count)
            wire.removeAll(keepingCapacity: true)
            let written = client.withOutput(to: { self.wire.append(contentsOf: $0) }) {
                Result { () throws(CoreTLSFailure) in try client.write(UnsafeRawBufferPointer(rebasing: bytes[offset..<end])) }
            }
            if case .failure(let error) = written {
                throw InMemoryTLSFailure(description: "write failed: \(error.name): \(error.text)")
            }
            offset = end
            // What the server leaves unread (never, for whole records) it keeps in its queue.
            total += try wire.withUnsafeBytes { lent in
                try server.withReceived(lent) {
                    Result { () throws(InMemoryTLSFailure) in
                        var count = 0
                        while server.hasInboundBytes || server.hasPendingPlaintext {
                            guard case .data(let read) = try read(server, received) else { break }
                            count += read
                        }
                        return count
                    }
                }.get()
            }
        }
        return total
    }

    private func read(_ engine: TLSEngine, _ body: (UnsafeRawBufferPointer) -> Void) throws(InMemoryTLSFailure) -> TLSEngine.ReadOutcome {
        do {
            return try engine.read(body)
        } catch {
            throw InMemoryTLSFailure(description: "read failed: \(error.name): \(error.text)")
        }
    }
}

extension TLSEngine {
    /// Moves the ciphertext `other` has queued into this engine's input.
    fileprivate func receive(outboundOf other: TLSEngine) {
        other.drainOutbound { receive($0) }
    }
}
