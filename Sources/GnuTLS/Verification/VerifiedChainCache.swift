import Foundation
import GnuTLSCore

/// Remembers peer chains the Swift ``Verifier`` accepted, so a repeat connection from the
/// same peer skips the second verification pass (path building, RFC 5280 checks, certificate
/// parsing) that follows GnuTLS's own verification in the handshake.
///
/// What is never skipped: GnuTLS verifies the chain in every handshake, and the peer proves
/// possession of its key with the handshake signature on every full handshake. The cache only
/// stands in for the Swift verifier's repeat of work whose inputs did not change.
///
/// An entry is keyed on the exact certificates the peer presented (DER, in order), a digest of
/// the trust store's anchors and CRLs, and the whole verification policy (purposes, expected
/// host name or IP, security profile, revocation policy). It expires at the earliest of: the
/// `notAfter` of any certificate in the verified chain, the `nextUpdate` of any CRL consulted,
/// and the time to live. Failed verifications are never cached. The cache holds at most
/// `capacity` entries, evicting the oldest first.
///
/// Thread-safe; share one between contexts (``TLSConfiguration/ChainCache/shared(_:)``) to
/// pool entries. A context with other trust or CRLs simply misses.
public final class VerifiedChainCache: @unchecked Sendable {
    /// Counters since the cache was made.
    public struct Statistics: Hashable, Sendable, CustomStringConvertible {
        /// Lookups answered from the cache.
        public var hits = 0
        /// Lookups that found no entry and ran the verifier.
        public var misses = 0
        /// Entries dropped because they expired.
        public var expirations = 0
        /// Entries dropped to stay within the capacity.
        public var evictions = 0
        /// Entries held now.
        public var count = 0
        /// Hits over lookups (0 before the first lookup).
        public var hitRate: Double { hits + misses == 0 ? 0 : Double(hits) / Double(hits + misses) }
        /// A readable form, for logs and messages.
        public var description: String {
            String(format: "%d hits, %d misses (%.1f%% hit rate), %d held", hits, misses, hitRate * 100, count)
        }
    }

    /// What an entry is keyed on.
    package struct Key: Hashable, Sendable {
        var presented: [[UInt8]]
        var trust: [UInt8]
        var policy: VerificationPolicy

        // The certificates' bytes are hashed and compared in bulk (the synthesized
        // conformance went byte by byte: most of a cache hit's cost).
        package static func == (lhs: Key, rhs: Key) -> Bool {
            DERList.equal(lhs.presented, rhs.presented) && lhs.trust == rhs.trust && lhs.policy == rhs.policy
        }

        package func hash(into hasher: inout Hasher) {
            DERList.hash(presented, into: &hasher)
            trust.withUnsafeBytes { hasher.combine(bytes: $0) }
            hasher.combine(policy)
        }
    }

    private struct Entry {
        var chain: VerifiedChain
        var expires: Date
        var sequence: UInt64
    }

    /// The most entries held.
    public let capacity: Int
    /// The longest an entry is served.
    public let timeToLive: Duration

    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    private var order: [(key: Key, sequence: UInt64)] = []
    private var orderStart = 0
    private var sequence: UInt64 = 0
    private var counters = Statistics()

    /// - Parameters:
    ///   - capacity: the most entries held (at least 1).
    ///   - timeToLive: the longest an entry is served, however far its certificates' and
    ///     CRLs' dates lie.
    public init(capacity: Int = 1024, timeToLive: Duration = .seconds(300)) {
        self.capacity = max(1, capacity)
        self.timeToLive = timeToLive
    }

    /// Hits, misses and size so far.
    public var statistics: Statistics {
        lock.lock(); defer { lock.unlock() }
        var statistics = counters
        statistics.count = entries.count
        return statistics
    }

    /// Drops every entry (the counters stay).
    public func removeAll() {
        lock.lock(); defer { lock.unlock() }
        entries.removeAll()
        order.removeAll()
        orderStart = 0
    }

    /// The chain verified earlier under `key`, when its entry is still valid at `now`.
    package func chain(for key: Key, at now: Date) -> VerifiedChain? {
        lock.lock(); defer { lock.unlock() }
        guard let entry = entries[key] else {
            counters.misses += 1
            return nil
        }
        guard now < entry.expires else {
            entries[key] = nil
            counters.expirations += 1
            counters.misses += 1
            return nil
        }
        counters.hits += 1
        return entry.chain
    }

    /// Keeps `chain`, verified at `now` under `key` with the CRLs `crls` consulted.
    package func store(_ chain: VerifiedChain, for key: Key, verifiedAt now: Date, crls: [CertificateRevocationList]) {
        var expires = now.addingTimeInterval(Self.seconds(timeToLive))
        for certificate in chain.certificates { expires = min(expires, certificate.notValidAfter) }
        for crl in crls {
            if let nextUpdate = crl.nextUpdate { expires = min(expires, nextUpdate) }
        }
        guard expires > now else { return }
        lock.lock(); defer { lock.unlock() }
        sequence += 1
        entries[key] = Entry(chain: chain, expires: expires, sequence: sequence)
        order.append((key, sequence))
        while entries.count > capacity, orderStart < order.count {
            let oldest = order[orderStart]
            orderStart += 1
            // Skip queue slots whose entry was replaced or already dropped.
            if entries[oldest.key]?.sequence == oldest.sequence {
                entries[oldest.key] = nil
                counters.evictions += 1
            }
        }
        // Compact the queue once its consumed head dominates it.
        if orderStart > 64 && orderStart * 2 > order.count {
            order.removeFirst(orderStart)
            orderStart = 0
        }
        if order.count > capacity * 4 {
            order = order.filter { entries[$0.key]?.sequence == $0.sequence }
            orderStart = 0
        }
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        let parts = duration.components
        return TimeInterval(parts.seconds) + TimeInterval(parts.attoseconds) / 1e18
    }
}

extension TLSConfiguration {
    /// Whether a context keeps the chains its Swift verifier accepted (see ``VerifiedChainCache``).
    public struct ChainCache: Hashable, Sendable, CustomStringConvertible {
        enum Storage: Hashable, Sendable {
            case disabled
            case perContext(capacity: Int, timeToLive: Duration)
            case shared(ObjectIdentifier)
        }
        let storage: Storage
        let cache: VerifiedChainCache?

        /// Every full handshake's chain goes through the Swift verifier. (A client's resumed
        /// connection is judged by the verification its session was made with, which is not
        /// this cache: see the VerificationChecks article.)
        public static let disabled = ChainCache(storage: .disabled, cache: nil)
        /// The default: each context keeps its own cache (1,024 entries, five minutes).
        public static let enabled = perContext(capacity: 1024, timeToLive: .seconds(300))
        /// Each context keeps its own cache of this size and time to live.
        public static func perContext(capacity: Int, timeToLive: Duration) -> ChainCache {
            ChainCache(storage: .perContext(capacity: capacity, timeToLive: timeToLive), cache: nil)
        }
        /// Contexts built from this configuration share `cache`.
        public static func shared(_ cache: VerifiedChainCache) -> ChainCache {
            ChainCache(storage: .shared(ObjectIdentifier(cache)), cache: cache)
        }

        /// Equal when both select the same storage (the same shared cache, or per-context caches of the same size and lifetime).
        public static func == (lhs: ChainCache, rhs: ChainCache) -> Bool { lhs.storage == rhs.storage }
        /// Hashes the storage selection, as `==` compares it.
        public func hash(into hasher: inout Hasher) { hasher.combine(storage) }

        /// A readable form, for logs and messages.
        public var description: String {
            switch storage {
            case .disabled: return "disabled"
            case .perContext(let capacity, let ttl): return "per-context(\(capacity), \(ttl))"
            case .shared: return "shared"
            }
        }

        func makeCache() -> VerifiedChainCache? {
            switch storage {
            case .disabled: return nil
            case .perContext(let capacity, let ttl): return VerifiedChainCache(capacity: capacity, timeToLive: ttl)
            case .shared: return cache
            }
        }
    }
}

/// What ``TLSContext/verifyPeerChain(_:parsed:host:verifiedInHandshake:resumedSession:now:)`` found.
package struct PeerChainVerdict: Sendable {
    package var chain: VerifiedChain
    /// Whether the chain came from the cache instead of the Swift verifier.
    package var cacheHit: Bool
    /// Whether the resumed session's own verification answered (``SessionVerification``).
    package var fromResumedSession = false
}

extension TLSContext {
    /// Runs the Swift verifier on the chain a peer presented (DER, leaf first), after
    /// GnuTLS verified it in the handshake, or serves the result of an earlier identical
    /// verification from the context's ``VerifiedChainCache``.
    ///
    /// - Parameters:
    ///   - parsed: `presented` already parsed, when the caller has it (not parsed twice).
    ///   - verifiedInHandshake: GnuTLS verified and accepted `presented` in this handshake
    ///     with this context's trust list (`TLSEngine.peerChainVerifiedInHandshake`): the
    ///     issuer signatures it checked are not checked again; every other check runs.
    ///   - resumedSession: for a client's resumed connection, the verification of the
    ///     session it offered (``makeConnectionEngine(host:)``). Where it holds
    ///     (``SessionVerification/holds(presented:host:at:)``) it is the verdict; where it
    ///     does not, its chain is verified again (a TLS 1.3 resumption presents none).
    /// - Returns: `nil` when this context does not verify peers or there is no chain.
    /// - Throws: ``VerificationError``, or a ``GnuTLSError`` for an unparsable certificate.
    package func verifyPeerChain(_ presented: [[UInt8]], parsed: [Certificate]? = nil, host: String?,
                                 verifiedInHandshake: Bool = false, resumedSession: SessionVerification? = nil,
                                 now: Date = Date()) throws -> PeerChainVerdict? {
        guard let verifier else { return nil }
        var presented = presented
        var parsed = parsed
        if let session = resumedSession {
            if session.holds(presented: presented, host: host, at: now) {
                return PeerChainVerdict(chain: session.chain, cacheHit: false, fromResumedSession: true)
            }
            if presented.isEmpty {
                presented = session.presented
                parsed = nil
            }
        }
        guard let leafDER = presented.first else { return nil }
        let policy = verificationPolicy(forHost: host)
        let key = verifiedChainCache.map { _ in VerifiedChainCache.Key(presented: presented, trust: trustDigest, policy: policy) }
        if let verifiedChainCache, let key, let chain = verifiedChainCache.chain(for: key, at: now) {
            return PeerChainVerdict(chain: chain, cacheHit: true)
        }
        let certificates = try parsed.flatMap { $0.count == presented.count ? $0 : nil }
            ?? [try verifier.certificate(derEncoded: leafDER)] + presented.dropFirst().map { try verifier.certificate(derEncoded: $0) }
        var timed = policy
        timed.time = now
        let chain = try verifier.verify(certificates[0], intermediates: Array(certificates.dropFirst()), policy: timed, consultGnuTLS: false,
                                        signaturesVerifiedByGnuTLS: verifiedInHandshake)
        if let verifiedChainCache, let key {
            let crls = policy.revocation == .disabledInsecure ? [] : verifier.trustStore.crls
            verifiedChainCache.store(chain, for: key, verifiedAt: now, crls: crls)
        }
        return PeerChainVerdict(chain: chain, cacheHit: false)
    }

    /// The record a client keeps with its session (``SessionCache``) after `verdict`
    /// accepted `presented` for `host`.
    package func sessionVerification(_ verdict: PeerChainVerdict, presented: [[UInt8]], host: String?) -> SessionVerification {
        let crls = verificationPolicy(forHost: host).revocation == .disabledInsecure ? [] : verifier?.trustStore.crls ?? []
        return SessionVerification(chain: verdict.chain, presented: presented, host: host, crls: crls)
    }

    /// The certificates a peer presented (DER, leaf first), parsed; through the verifier's
    /// memo of parsed certificates when this context verifies peers, so a chain seen before
    /// is not parsed again. Unparsable certificates are left out.
    package func parsedPeerCertificates(_ presented: [[UInt8]]) -> [Certificate] {
        guard let verifier else { return presented.compactMap { try? Certificate(derEncoded: $0) } }
        return presented.compactMap { try? verifier.certificate(derEncoded: $0) }
    }

    /// SHA-256 over the verifier's anchors (the system's included, as loaded) and CRLs.
    static func trustDigest(_ verifier: Verifier?) -> [UInt8] {
        guard let verifier else { return [] }
        var bytes: [UInt8] = []
        for certificate in verifier.anchors { bytes += CoreCrypto.sha256(certificate.derEncoded) }
        bytes.append(0xFF)
        for crl in verifier.trustStore.crls { bytes += CoreCrypto.sha256(crl.derEncoded) }
        return CoreCrypto.sha256(bytes)
    }
}
