import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import Testing
import GnuTLSTestSupport

// The verified-chain cache: a repeat of an identical verification is served from it, and
// nothing whose inputs changed (trust, CRLs, revocation, time, policy) ever is.

@Suite("Verified-chain cache")
struct VerifiedChainCacheTests {
    let pki: BenchmarkPKI

    init() throws {
        pki = try BenchmarkPKI(algorithm: .ecdsaP256)
    }

    private var presented: [[UInt8]] { pki.serverIdentity.chain.map(\.derEncoded) }

    private func client(trust: TrustStore, cache: TLSConfiguration.ChainCache) throws -> TLSContext {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust)
        configuration.chainCache = cache
        return try TLSContext(configuration: configuration)
    }

    @Test("a repeat verification of the same chain, trust and policy is a hit")
    func repeatIsHit() throws {
        let context = try client(trust: pki.trustStore, cache: .enabled)
        let first = try #require(try context.verifyPeerChain(presented, host: "localhost"))
        let second = try #require(try context.verifyPeerChain(presented, host: "localhost"))
        #expect(!first.cacheHit)
        #expect(second.cacheHit)
        #expect(second.chain == first.chain)
        let statistics = try #require(context.verifiedChainCache?.statistics)
        #expect(statistics.hits == 1 && statistics.misses == 1 && statistics.count == 1)
        #expect(statistics.hitRate == 0.5)
    }

    @Test("the cache is on by default for clients and mutual-TLS servers, off for plain servers and when disabled")
    func defaults() throws {
        #expect(try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trustStore)).verifiedChainCache != nil)
        #expect(try TLSContext(configuration: .makeMutualTLSServerConfiguration(identity: pki.serverIdentity, clientTrustStore: pki.trustStore))
            .verifiedChainCache != nil)
        #expect(try TLSContext(configuration: .makeServerConfiguration(identity: pki.serverIdentity)).verifiedChainCache == nil)
        let disabled = try client(trust: pki.trustStore, cache: .disabled)
        #expect(disabled.verifiedChainCache == nil)
        #expect(try disabled.verifyPeerChain(presented, host: "localhost")?.cacheHit == false)
        #expect(try disabled.verifyPeerChain(presented, host: "localhost")?.cacheHit == false)
    }

    @Test("another expected host name is another key, and a failure is never cached")
    func policyIsPartOfTheKey() throws {
        let context = try client(trust: pki.trustStore, cache: .enabled)
        _ = try context.verifyPeerChain(presented, host: "localhost")
        #expect(throws: VerificationError.self) { try context.verifyPeerChain(presented, host: "other.example.com") }
        #expect(throws: VerificationError.self) { try context.verifyPeerChain(presented, host: "other.example.com") }
        #expect(context.verifiedChainCache?.statistics.count == 1)
        #expect(context.verifiedChainCache?.statistics.hits == 0)
    }

    @Test("a changed trust store is never served from a shared cache")
    func changedTrustStore() throws {
        let shared = VerifiedChainCache()
        let trusting = try client(trust: pki.trustStore, cache: .shared(shared))
        #expect(try trusting.verifyPeerChain(presented, host: "localhost")?.cacheHit == false)
        #expect(try trusting.verifyPeerChain(presented, host: "localhost")?.cacheHit == true)

        let otherRoot = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
        let distrusting = try client(trust: TrustStore(certificates: [otherRoot.certificate]), cache: .shared(shared))
        #expect(throws: VerificationError.self) { try distrusting.verifyPeerChain(presented, host: "localhost") }
        // The same anchors plus one more is other trust too: verified afresh, not served.
        let widened = try client(trust: TrustStore(certificates: [pki.root.certificate, otherRoot.certificate]), cache: .shared(shared))
        #expect(try widened.verifyPeerChain(presented, host: "localhost")?.cacheHit == false)
    }

    @Test("a new CRL revoking the peer is never served from the cache")
    func newCRLAndRevocation() throws {
        let shared = VerifiedChainCache()
        let before = try client(trust: pki.trustStore, cache: .shared(shared))
        _ = try before.verifyPeerChain(presented, host: "localhost")
        #expect(try before.verifyPeerChain(presented, host: "localhost")?.cacheHit == true)

        let leaf = pki.serverIdentity.leaf
        let crl = try CertificateRevocationList.create(
            issuer: pki.issuing.certificate, key: pki.issuing.key, number: SerialNumber(bytes: [1]),
            nextUpdate: Date().addingTimeInterval(86_400),
            entries: [.init(serialNumber: leaf.serialNumber, revocationDate: Date(), reason: .keyCompromise)])
        var trust = pki.trustStore
        trust.add(crl)
        let after = try client(trust: trust, cache: .shared(shared))
        #expect(throws: VerificationError.self) { try after.verifyPeerChain(presented, host: "localhost") }

        // A new CRL that revokes nothing is still new revocation input: a miss, then a hit
        // that expires at the CRL's nextUpdate.
        let emptyCRL = try CertificateRevocationList.create(
            issuer: pki.issuing.certificate, key: pki.issuing.key, number: SerialNumber(bytes: [2]),
            nextUpdate: Date().addingTimeInterval(60), entries: [])
        var clean = pki.trustStore
        clean.add(emptyCRL)
        let withCRL = try client(trust: clean, cache: .shared(shared))
        #expect(try withCRL.verifyPeerChain(presented, host: "localhost")?.cacheHit == false)
        #expect(try withCRL.verifyPeerChain(presented, host: "localhost")?.cacheHit == true)
        // Past the CRL's nextUpdate the entry is gone: the verifier runs and finds the CRL stale.
        #expect(throws: VerificationError.self) { try withCRL.verifyPeerChain(presented, host: "localhost", now: Date().addingTimeInterval(120)) }
        #expect((withCRL.verifiedChainCache?.statistics.expirations ?? 0) >= 1)
    }

    @Test("entries expire after their time to live and are never served past a certificate's notAfter")
    func expiry() throws {
        let context = try client(trust: pki.trustStore, cache: .perContext(capacity: 16, timeToLive: .seconds(60)))
        let now = Date()
        #expect(try context.verifyPeerChain(presented, host: "localhost", now: now)?.cacheHit == false)
        #expect(try context.verifyPeerChain(presented, host: "localhost", now: now.addingTimeInterval(30))?.cacheHit == true)
        #expect(try context.verifyPeerChain(presented, host: "localhost", now: now.addingTimeInterval(61))?.cacheHit == false)
        #expect((context.verifiedChainCache?.statistics.expirations ?? 0) >= 1)

        let longLived = try client(trust: pki.trustStore, cache: .perContext(capacity: 16, timeToLive: .seconds(10 * 365 * 86_400)))
        _ = try longLived.verifyPeerChain(presented, host: "localhost", now: now)
        let pastLeaf = pki.serverIdentity.leaf.notValidAfter.addingTimeInterval(1)
        #expect(throws: VerificationError.self) { try longLived.verifyPeerChain(presented, host: "localhost", now: pastLeaf) }
    }

    @Test("the cache holds at most its capacity, dropping the oldest")
    func bounded() throws {
        let context = try client(trust: pki.trustStore, cache: .perContext(capacity: 2, timeToLive: .seconds(300)))
        // Three different peers (chains) for the same host.
        var chains: [[[UInt8]]] = [presented]
        for _ in 0..<2 {
            let key = try KeyPair.generate(.ecdsaP256)
            let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: key, alternativeNames: [.dnsName("localhost")])
            chains.append(try pki.issuing.issueWithChain(request, profile: .tlsServer).map(\.derEncoded))
        }
        for chain in chains { _ = try context.verifyPeerChain(chain, host: "localhost") }
        let statistics = try #require(context.verifiedChainCache?.statistics)
        #expect(statistics.count == 2)
        #expect(statistics.evictions == 1)
        #expect(try context.verifyPeerChain(chains[0], host: "localhost")?.cacheHit == false)
        #expect(try context.verifyPeerChain(chains[2], host: "localhost")?.cacheHit == true)
    }

    @Test("repeat handshakes to the same peer hit the cache, in the handshake too; other trust is verified by GnuTLS")
    func handshakesHit() throws {
        let client = try TLSContext(configuration: pki.clientConfiguration(version: .tls13))
        let server = try TLSContext(configuration: pki.serverConfiguration(version: .tls13))
        let first = try InMemoryTLSPair(client: client, server: server)
        try first.handshake()
        #expect(first.verificationCacheHits == 0)
        #expect(first.chainVerificationsSkippedInHandshake == 0)
        let second = try InMemoryTLSPair(client: client, server: server)
        try second.handshake()
        #expect(second.verificationCacheHits == 1)
        // GnuTLS accepted this chain in the first handshake: it is not verified again.
        #expect(second.chainVerificationsSkippedInHandshake == 1)
        #expect(client.verifiedChainCache?.statistics.hits == 1)

        // A client that trusts another root (another cache key) fails in GnuTLS's own
        // verification in the handshake, whatever the shared cache holds.
        let otherRoot = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
        var distrusting = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [otherRoot.certificate]))
        distrusting.chainCache = .shared(try #require(client.verifiedChainCache))
        let refused = try InMemoryTLSPair(client: try TLSContext(configuration: distrusting), server: server)
        #expect(throws: InMemoryTLSFailure.self) { try refused.handshake() }
    }
}
