import Foundation
import GnuTLSCore

/// Remembers peer chains the Swift ``Verifier`` accepted, so a repeat connection from the
/// same peer skips the verification work whose inputs did not change: the Swift verifier's
/// pass (path building, RFC 5280 checks, certificate parsing) and, in the handshake,
/// GnuTLS's verification of the chain (its issuers' signatures, trust list, CRLs, name and
/// purpose) when GnuTLS accepted exactly that chain in an earlier full handshake with the
/// same trust, CRLs and policy.
///
/// What is never skipped: the peer proves possession of its key with the handshake
/// signature (TLS 1.3 CertificateVerify, TLS 1.2 ServerKeyExchange or client
/// CertificateVerify), which GnuTLS checks with the presented leaf's key on every full
/// handshake, hit or miss. A stapled OCSP response, or a certificate that requires one
/// (must-staple), always gets GnuTLS's full verification.
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
        /// Whether GnuTLS accepted the presented chain in a full handshake under this key.
        var acceptedByGnuTLS: Bool
        /// Until when GnuTLS's acceptance holds: the earliest notAfter of the presented
        /// certificates and of the anchors GnuTLS may end a path at; `nil` when a presented
        /// certificate requires a stapled OCSP response (its verification depends on it).
        var gnutlsValidUntil: Date?
    }

    /// What a store records about GnuTLS's view of the chain (see ``Entry``).
    package struct HandshakeEvidence: Sendable {
        /// GnuTLS accepted the presented chain in this handshake, with this key's inputs.
        var acceptedByGnuTLS: Bool
        /// The earliest notAfter GnuTLS's verification depends on; `nil` when it depends on a staple.
        var validUntil: Date?
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
    /// - Parameter acceptedByGnuTLS: GnuTLS accepted the presented chain in this handshake
    ///   with `key`'s inputs: an entry that did not know it learns it.
    package func chain(for key: Key, at now: Date, acceptedByGnuTLS: Bool = false) -> VerifiedChain? {
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
        if acceptedByGnuTLS && !entry.acceptedByGnuTLS { entries[key]?.acceptedByGnuTLS = true }
        return entry.chain
    }

    /// Whether GnuTLS accepted the chain of `key` in an earlier full handshake, under the same
    /// inputs, and that answer still holds at `now`: the entry has not expired, and neither
    /// has any certificate or anchor GnuTLS's verification relied on. Asked from inside the
    /// handshake; not counted as a lookup (the Swift verifier's lookup after the handshake is).
    package func acceptedByGnuTLS(_ key: Key, at now: Date) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let entry = entries[key], entry.acceptedByGnuTLS, let validUntil = entry.gnutlsValidUntil else { return false }
        return now < entry.expires && now < validUntil
    }

    /// Keeps `chain`, verified at `now` under `key` with the CRLs `crls` consulted.
    package func store(_ chain: VerifiedChain, for key: Key, verifiedAt now: Date, crls: [CertificateRevocationList],
                       handshake: HandshakeEvidence = HandshakeEvidence(acceptedByGnuTLS: false, validUntil: nil)) {
        let expires = min(now.addingTimeInterval(Self.seconds(timeToLive)), chain.validUntil(consulting: crls))
        guard expires > now else { return }
        lock.lock(); defer { lock.unlock() }
        sequence += 1
        entries[key] = Entry(chain: chain, expires: expires, sequence: sequence,
                             acceptedByGnuTLS: handshake.acceptedByGnuTLS, gnutlsValidUntil: handshake.validUntil)
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
    /// The certificates judged, DER, leaf first (a TLS 1.3 resumption's: its session's).
    package var presented: [[UInt8]]
    /// Whether the chain came from the cache instead of the Swift verifier.
    package var cacheHit = false
    /// The resumed session's own verification, when it answered.
    package var resumedSession: SessionVerification?
    /// Whether the resumed session's own verification answered (``SessionVerification``).
    package var fromResumedSession: Bool { resumedSession != nil }
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
                return PeerChainVerdict(chain: session.chain, presented: session.presented, resumedSession: session)
            }
            if presented.isEmpty {
                presented = session.presented
                parsed = nil
            }
        }
        guard let leafDER = presented.first else { return nil }
        let policy = verificationPolicy(forHost: host)
        let key = verifiedChainCache.map { _ in VerifiedChainCache.Key(presented: presented, trust: trustDigest, policy: policy) }
        if let verifiedChainCache, let key, let chain = verifiedChainCache.chain(for: key, at: now, acceptedByGnuTLS: verifiedInHandshake) {
            return PeerChainVerdict(chain: chain, presented: presented, cacheHit: true)
        }
        let certificates = try parsed.flatMap { $0.count == presented.count ? $0 : nil }
            ?? [try verifier.certificate(derEncoded: leafDER)] + presented.dropFirst().map { try verifier.certificate(derEncoded: $0) }
        var timed = policy
        timed.time = now
        let chain = try verifier.verify(certificates[0], intermediates: Array(certificates.dropFirst()), policy: timed, consultGnuTLS: false,
                                        signaturesVerifiedByGnuTLS: verifiedInHandshake)
        if let verifiedChainCache, let key {
            let crls = consultedCRLs(policy)
            // The bound is kept even when GnuTLS did not verify this time (a resumed handshake):
            // a later full handshake it accepts marks the entry (`chain(for:at:acceptedByGnuTLS:)`).
            let evidence = VerifiedChainCache.HandshakeEvidence(
                acceptedByGnuTLS: verifiedInHandshake, validUntil: gnutlsValidUntil(presented: certificates, chain: chain, verifier: verifier))
            verifiedChainCache.store(chain, for: key, verifiedAt: now, crls: crls, handshake: evidence)
        }
        return PeerChainVerdict(chain: chain, presented: presented)
    }

    /// Until when GnuTLS's acceptance of `presented` in a handshake holds: its path runs
    /// through presented certificates to an anchor named as the issuer of one of them (or of
    /// the verified chain's), each of whose notAfter it checks. `nil` when a presented
    /// certificate requires a stapled OCSP response: GnuTLS's answer then depends on the staple.
    private func gnutlsValidUntil(presented: [Certificate], chain: VerifiedChain, verifier: Verifier) -> Date? {
        if presented.contains(where: \.requiresOCSPStapling) { return nil }
        var until = Date.distantFuture
        for certificate in presented + chain.certificates { until = min(until, certificate.notValidAfter) }
        let issuers = presented + chain.certificates
        for anchor in verifier.anchors where issuers.contains(where: { anchor.subject.matches($0.issuer) }) {
            until = min(until, anchor.notValidAfter)
        }
        return until
    }

    /// The verified-chain cache as the TLS engine asks it during the handshake, keyed exactly
    /// as ``verifyPeerChain(_:parsed:host:verifiedInHandshake:resumedSession:now:)`` keys it.
    final class AcceptedChainLookup: AcceptedPeerChains {
        let cache: VerifiedChainCache
        let trustDigest: [UInt8]
        let mapping: TLSPolicyMapping

        init(cache: VerifiedChainCache, trustDigest: [UInt8], mapping: TLSPolicyMapping) {
            self.cache = cache
            self.trustDigest = trustDigest
            self.mapping = mapping
        }

        func acceptedEarlier(_ presented: [[UInt8]], serverName: String?) -> Bool {
            // A client's engine is given `configuration.serverName ?? host`, which the policy
            // maps to the same name as `host` does (TLSPolicyMapping.verificationPolicy).
            let key = VerifiedChainCache.Key(presented: presented, trust: trustDigest, policy: mapping.verificationPolicy(forHost: serverName))
            return cache.acceptedByGnuTLS(key, at: Date())
        }
    }

    /// The record a client keeps with its session (``SessionCache``) after `verdict` for
    /// `host`: the resumed session's own, when that answered.
    package func sessionVerification(_ verdict: PeerChainVerdict, host: String?) -> SessionVerification {
        if let session = verdict.resumedSession { return session }
        return SessionVerification(chain: verdict.chain, presented: verdict.presented, host: host,
                                   crls: consultedCRLs(verificationPolicy(forHost: host)))
    }

    /// The CRLs a verification under `policy` consults (the trust store's, unless revocation is off).
    private func consultedCRLs(_ policy: VerificationPolicy) -> [CertificateRevocationList] {
        policy.revocation == .disabledInsecure ? [] : verifier?.trustStore.crls ?? []
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
