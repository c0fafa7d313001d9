import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import Testing
import GnuTLSTestSupport

// A client's resumed connection is judged by the verification its session was made with
// (SessionVerification), kept in the context's session cache; wherever that record does not
// hold (another host, other certificates, a time outside it) the chain is verified again.

@Suite("Session verification on resumption")
struct SessionVerificationTests {
    let pki: BenchmarkPKI

    init() throws {
        pki = try BenchmarkPKI(algorithm: .ecdsaP256)
    }

    private var presented: [[UInt8]] { pki.serverIdentity.chain.map(\.derEncoded) }

    private func client(trust: TrustStore? = nil) throws -> TLSContext {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust ?? pki.trustStore)
        configuration.chainCache = .disabled
        return try TLSContext(configuration: configuration)
    }

    /// The record a full verification of the server's chain for "localhost" leaves.
    private func record(_ context: TLSContext, now: Date = Date()) throws -> SessionVerification {
        let verdict = try #require(try context.verifyPeerChain(presented, host: "localhost", now: now))
        return context.sessionVerification(verdict, host: "localhost")
    }

    @Test("resumed connections through the session cache are answered by the session's verification", arguments: [TLSVersion.tls12, .tls13])
    func resumedThroughTheSessionCache(version: TLSVersion) throws {
        var configuration = pki.clientConfiguration(version: version)
        configuration.chainCache = .disabled
        let client = try TLSContext(configuration: configuration)
        let server = try TLSContext(configuration: pki.serverConfiguration(version: version))
        let first = try InMemoryTLSPair(client: client, server: server, sessionCache: true)
        try first.handshake()
        #expect(!first.isResumed && first.resumedSessionVerifications == 0)
        let entry = try #require(client.sessionCache.entry(for: "localhost"))
        let verification = try #require(entry.verification)
        #expect(verification.chain.leaf == pki.serverIdentity.leaf)
        #expect(verification.host == "localhost")
        for _ in 0..<2 {
            let resumed = try InMemoryTLSPair(client: client, server: server, sessionCache: true)
            try resumed.handshake()
            #expect(resumed.isResumed)
            #expect(resumed.resumedSessionVerifications == 1)
        }
        // A pair that does not use the cache neither offers nor keeps a session.
        let plain = try InMemoryTLSPair(client: client, server: server)
        try plain.handshake()
        #expect(!plain.isResumed && plain.resumedSessionVerifications == 0)
    }

    @Test("the record answers only for its host, its certificates and its time")
    func recordHoldsOnlyForWhatItVerified() throws {
        let context = try client()
        let now = Date()
        let session = try record(context, now: now)
        #expect(session.validUntil == pki.serverIdentity.chain.map(\.notValidAfter).min())

        let same = try #require(try context.verifyPeerChain(presented, host: "localhost", resumedSession: session, now: now))
        #expect(same.fromResumedSession && same.chain == session.chain)
        // TLS 1.3 restores no certificates: the record answers for the session.
        #expect(try context.verifyPeerChain([], host: "localhost", resumedSession: session, now: now)?.fromResumedSession == true)

        // Another host: verified again, and this chain is not for it.
        #expect(throws: VerificationError.self) {
            try context.verifyPeerChain(presented, host: "other.example.com", resumedSession: session, now: now)
        }
        // Other certificates than the session's: verified again, not answered by the record.
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: key, alternativeNames: [.dnsName("localhost")])
        let other = try pki.issuing.issueWithChain(request, profile: .tlsServer).map(\.derEncoded)
        let otherVerdict = try #require(try context.verifyPeerChain(other, host: "localhost", resumedSession: session, now: now))
        #expect(!otherVerdict.fromResumedSession)
        #expect(otherVerdict.chain.leaf.derEncoded == other[0])
        // An untrusted chain under the record's name is refused, record or not.
        let stranger = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger Root"))
        let forged = try stranger.issue(request, profile: .tlsServer).derEncoded
        #expect(throws: VerificationError.self) {
            try context.verifyPeerChain([forged], host: "localhost", resumedSession: session, now: now)
        }
    }

    @Test("past the leaf's notAfter a resumed session is verified again and refused, TLS 1.2 and 1.3 alike")
    func expiredSessionIsRefused() throws {
        let context = try client()
        let session = try record(context)
        let pastLeaf = pki.serverIdentity.leaf.notValidAfter.addingTimeInterval(1)
        for peer in [presented, []] {
            do {
                _ = try context.verifyPeerChain(peer, host: "localhost", resumedSession: session, now: pastLeaf)
                Issue.record("an expired session's chain was accepted")
            } catch let error as VerificationError {
                #expect(error.problems.contains { $0.reason == .expired })
            }
        }
        // Before the chain's notBefore (a clock set back) the record does not hold either.
        let beforeLeaf = pki.serverIdentity.leaf.notValidBefore.addingTimeInterval(-1)
        #expect(throws: VerificationError.self) {
            try context.verifyPeerChain([], host: "localhost", resumedSession: session, now: beforeLeaf)
        }
    }

    @Test("a CRL consulted bounds the record: past its nextUpdate the chain is verified again")
    func staleCRLEndsTheRecord() throws {
        let nextUpdate = Date().addingTimeInterval(60)
        let crl = try CertificateRevocationList.create(
            issuer: pki.issuing.certificate, key: pki.issuing.key, number: SerialNumber(bytes: [1]),
            nextUpdate: nextUpdate, entries: [])
        var trust = pki.trustStore
        trust.add(crl)
        let context = try client(trust: trust)
        let session = try record(context)
        #expect(session.validUntil <= nextUpdate)
        #expect(try context.verifyPeerChain(presented, host: "localhost", resumedSession: session)?.fromResumedSession == true)
        // The verifier finds the CRL stale: the revocation status is unknown.
        #expect(throws: VerificationError.self) {
            try context.verifyPeerChain(presented, host: "localhost", resumedSession: session, now: nextUpdate.addingTimeInterval(1))
        }
    }
}
