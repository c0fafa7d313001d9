import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSCore
import Testing

// Issue 11: with the verified-chain cache on, a chain GnuTLS accepted in an earlier full
// handshake (same certificates, trust, CRLs, policy, name) is not verified by GnuTLS again in
// the handshake. These tests show what that skips and what it never skips: the peer's
// handshake signature with the leaf's key, and the full verification of anything whose
// inputs changed.

/// Presents one key's public half and signs with another key: a peer holding a copy of a
/// certificate chain but not the leaf's private key.
private struct ImpostorKey: SigningKey {
    let publicKey: PublicKey
    let signer: KeyPair
    func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
        try signer.sign(data, algorithm: algorithm)
    }
}

/// One connection as `GnuTLSHandler` runs it, in memory: the handshake, then the Swift
/// verifier on each side that verifies (or its cached result).
private struct Connection {
    let pair: EnginePair
    let outcome: HandshakeOutcome
    /// What the client's Swift verifier refused after the handshake.
    private(set) var clientVerification: VerificationError?

    init(client: TLSContext, server: TLSContext, host: String = "localhost") throws {
        pair = try EnginePair(client: client, server: server, host: host)
        outcome = pair.handshake()
        guard outcome.bothComplete else { return }
        do {
            _ = try client.verifyPeerChain(pair.client.peerCertificates, host: host, verifiedInHandshake: pair.client.peerChainVerifiedInHandshake)
        } catch let error as VerificationError {
            clientVerification = error
        }
        if server.verifier != nil, !pair.server.peerCertificates.isEmpty {
            _ = try server.verifyPeerChain(pair.server.peerCertificates, host: nil, verifiedInHandshake: pair.server.peerChainVerifiedInHandshake)
        }
    }

    /// Both handshakes completed and the client's Swift verifier accepted the server.
    var succeeded: Bool { outcome.bothComplete && clientVerification == nil }

    /// Expects a connection the client completed with GnuTLS verifying the server's chain in
    /// the handshake (no skip), and the Swift verifier accepting it.
    func expectVerifiedAfresh(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(succeeded, "\(failures)", sourceLocation: sourceLocation)
        #expect(!pair.client.peerChainAcceptedEarlier, sourceLocation: sourceLocation)
        #expect(pair.client.peerChainVerifiedInHandshake, sourceLocation: sourceLocation)
    }

    /// Expects the client to have verified the server's chain in the handshake (no skip) and
    /// refused it there, with a status that has every bit of `bits`.
    func expectRefusedInHandshake(bits: UInt32 = 0, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!outcome.clientComplete, sourceLocation: sourceLocation)
        #expect(!pair.client.peerChainAcceptedEarlier, sourceLocation: sourceLocation)
        guard case .certificateVerification(let status, _)? = outcome.clientFailure?.kind else {
            Issue.record("not a certificate verification failure: \(failures)", sourceLocation: sourceLocation)
            return
        }
        #expect(status != 0 && status & bits == bits, "\(failures)", sourceLocation: sourceLocation)
    }

    var failures: String {
        "client: \(String(describing: outcome.clientFailure)), server: \(String(describing: outcome.serverFailure)), verifier: \(String(describing: clientVerification))"
    }
}

/// GNUTLS_CERT_REVOKED and GNUTLS_CERT_UNEXPECTED_OWNER (gnutls/gnutls.h).
private let revokedBit: UInt32 = 1 << 5
private let unexpectedOwnerBit: UInt32 = 1 << 14

@Suite("Verified-chain cache in the handshake")
struct HandshakeChainCacheTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    /// A client that has connected once to `server`: the next identical connection skips
    /// GnuTLS's chain verification.
    private func warmedClient(_ fixture: EngineFixture, server: TLSContext, cache: TLSConfiguration.ChainCache = .enabled,
                              trust: TrustStore? = nil) throws -> TLSContext {
        let client = try fixture.client(trust: trust) { $0.chainCache = cache }
        try Connection(client: client, server: server).expectVerifiedAfresh()
        let second = try Connection(client: client, server: server)
        #expect(second.succeeded, "\(second.failures)")
        #expect(second.pair.client.peerChainAcceptedEarlier, "a repeat connection skips GnuTLS's chain verification")
        #expect(!second.pair.client.peerChainVerifiedInHandshake)
        return client
    }

    private func certificateVerificationStatus(_ failure: CoreTLSFailure?) -> UInt32? {
        guard case .certificateVerification(let status, _)? = failure?.kind else { return nil }
        return status
    }

    @Test(arguments: versions)
    func repeatConnectionSkipsGnuTLSChainVerification(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let client = try warmedClient(fixture, server: server)
        let statistics = try #require(client.verifiedChainCache?.statistics)
        // The in-handshake question is not a lookup: the Swift verifier's pass counts once per connection.
        #expect(statistics.hits == 1 && statistics.misses == 1)
        // The cache off: GnuTLS verifies every time.
        let plain = try fixture.client { $0.chainCache = .disabled }
        for _ in 0..<2 { try Connection(client: plain, server: server).expectVerifiedAfresh() }
    }

    // MARK: What a hit never skips: the handshake signature

    @Test(arguments: versions)
    func serverWithTheCachedChainButAnotherKeyFails(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let client = try warmedClient(fixture, server: try fixture.server())
        let impostorKey = ImpostorKey(publicKey: fixture.pki.serverIdentity.leaf.publicKey, signer: try KeyPair.generate(.ecdsaP256))
        let impostorIdentity = try TLSIdentity(chain: fixture.pki.serverIdentity.chain, key: impostorKey)
        let impostor = try fixture.server { $0.identities = [impostorIdentity] }
        let connection = try Connection(client: client, server: impostor)
        #expect(!connection.outcome.clientComplete, "a server without the leaf's key must not complete a handshake")
        #expect(connection.outcome.clientFailure?.name == "GNUTLS_E_PK_SIG_VERIFY_FAILED", "\(connection.failures)")
        if version == .tls12 {
            // TLS 1.2: the chain was a cache hit (GnuTLS's verification skipped) before the
            // ServerKeyExchange, whose signature GnuTLS still checked with the leaf's key.
            #expect(connection.pair.client.peerChainAcceptedEarlier)
        }
        #expect(client.verifiedChainCache?.statistics.count == 1)
    }

    @Test(arguments: versions)
    func clientWithTheCachedChainButAnotherKeyFails(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.clientCertificates = .required }
        #expect(server.verifiedChainCache != nil, "mutual-TLS servers keep a cache by default")
        let honest = try fixture.client(identity: fixture.pki.clientIdentity)
        for _ in 0..<2 { #expect(try Connection(client: honest, server: server).succeeded) }
        let again = try Connection(client: honest, server: server)
        #expect(again.succeeded)
        #expect(again.pair.server.peerChainAcceptedEarlier, "the server skips GnuTLS's verification of a known client chain")

        let impostorKey = ImpostorKey(publicKey: fixture.pki.clientIdentity.leaf.publicKey, signer: try KeyPair.generate(.ecdsaP256))
        let impostor = try fixture.client(identity: try TLSIdentity(chain: fixture.pki.clientIdentity.chain, key: impostorKey))
        let connection = try Connection(client: impostor, server: server)
        #expect(!connection.outcome.serverComplete, "a client without the leaf's key must not complete a handshake")
        #expect(connection.outcome.serverFailure?.name == "GNUTLS_E_PK_SIG_VERIFY_FAILED", "\(connection.failures)")
        if version == .tls12 {
            // TLS 1.2: the chain was a hit before the client's CertificateVerify arrived.
            #expect(connection.pair.server.peerChainAcceptedEarlier)
        }
    }

    // MARK: What is never a hit: changed inputs get GnuTLS's full verification

    @Test(arguments: versions)
    func changedTrustStoreIsVerifiedAgain(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let shared = VerifiedChainCache()
        _ = try warmedClient(fixture, server: server, cache: .shared(shared))

        let otherRoot = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
        let distrusting = try fixture.client(trust: TrustStore(certificates: [otherRoot.certificate])) { $0.chainCache = .shared(shared) }
        try Connection(client: distrusting, server: server).expectRefusedInHandshake()

        let widened = try fixture.client(trust: TrustStore(certificates: [fixture.pki.root.certificate, otherRoot.certificate])) { $0.chainCache = .shared(shared) }
        // Other trust, even a wider one: GnuTLS verifies afresh.
        try Connection(client: widened, server: server).expectVerifiedAfresh()
    }

    @Test(arguments: versions)
    func newCRLAndRevocationAreVerifiedAgain(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let shared = VerifiedChainCache()
        _ = try warmedClient(fixture, server: server, cache: .shared(shared))
        let issuing = fixture.pki.issuing

        // A new CRL that revokes nothing: new revocation input, so GnuTLS verifies.
        var clean = fixture.pki.trust
        clean.add(try CertificateRevocationList.create(
            issuer: issuing.certificate, key: issuing.key, number: SerialNumber(bytes: [1]),
            nextUpdate: Date().addingTimeInterval(86_400), entries: []))
        let withCRL = try fixture.client(trust: clean) { $0.chainCache = .shared(shared) }
        try Connection(client: withCRL, server: server).expectVerifiedAfresh()

        // The leaf revoked: verified afresh, and refused (by the Swift verifier: GnuTLS's
        // trust list drops a CRL issued by an intermediate, which it cannot verify the CRL with).
        var revoking = fixture.pki.trust
        revoking.add(try CertificateRevocationList.create(
            issuer: issuing.certificate, key: issuing.key, number: SerialNumber(bytes: [2]),
            nextUpdate: Date().addingTimeInterval(86_400),
            entries: [.init(serialNumber: fixture.pki.serverIdentity.leaf.serialNumber, revocationDate: Date(), reason: .keyCompromise)]))
        let revoked = try fixture.client(trust: revoking) { $0.chainCache = .shared(shared) }
        let refused = try Connection(client: revoked, server: server)
        #expect(!refused.succeeded)
        #expect(!refused.pair.client.peerChainAcceptedEarlier)
        #expect(refused.pair.client.peerChainVerifiedInHandshake || refused.outcome.clientFailure != nil, "GnuTLS verified the chain again")
        let revokedInHandshake = certificateVerificationStatus(refused.outcome.clientFailure).map { $0 & revokedBit != 0 } == true
        let revokedAfter = refused.clientVerification?.problems.contains { $0.reason == .revoked } == true
        #expect(revokedInHandshake || revokedAfter, "\(refused.failures)")
    }

    @Test(arguments: versions)
    func expiredEntryIsVerifiedAgain(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let client = try fixture.client { $0.chainCache = .perContext(capacity: 16, timeToLive: .seconds(60)) }
        let presented = fixture.pki.serverIdentity.chain.map(\.derEncoded)
        // An entry GnuTLS accepted, made 61 s ago with a 60 s time to live: expired now.
        _ = try client.verifyPeerChain(presented, host: "localhost", verifiedInHandshake: true, now: Date().addingTimeInterval(-61))
        try Connection(client: client, server: server).expectVerifiedAfresh()
        // The same entry made just now is served.
        let next = try Connection(client: client, server: server)
        #expect(next.pair.client.peerChainAcceptedEarlier)
    }

    @Test(arguments: versions)
    func anotherHostNameIsVerifiedAgain(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let client = try warmedClient(fixture, server: server)
        // The certificate also names 127.0.0.1: a miss, verified by GnuTLS, accepted.
        try Connection(client: client, server: server, host: "127.0.0.1").expectVerifiedAfresh()
        // A name it does not hold: a miss, refused by GnuTLS in the handshake.
        try Connection(client: client, server: server, host: "other.example.com").expectRefusedInHandshake(bits: unexpectedOwnerBit)
    }

    @Test(arguments: versions)
    func anotherChainIsVerifiedAgain(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let client = try warmedClient(fixture, server: try fixture.server())
        let pki = fixture.pki

        // The leaf renewed (new key, same names and issuer): a miss, verified by GnuTLS, accepted.
        let renewed = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer)
        try Connection(client: client, server: try fixture.server { $0.identities = [renewed] }).expectVerifiedAfresh()

        // Only the leaf changed, to one forged under the real issuing CA's name (another
        // key signed it), beside the cached chain's real intermediate: refused by GnuTLS.
        let forger = try LocalAuthority.createRoot(subject: pki.issuing.certificate.subject)
        let forged = try TestPKI.issue(by: forger, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer)
        let forgedIdentity = TLSIdentity(leaf: forged.leaf, intermediates: pki.serverIdentity.intermediates, key: forged.key)
        try Connection(client: client, server: try fixture.server { $0.identities = [forgedIdentity] }).expectRefusedInHandshake()
    }

    @Test(arguments: versions)
    func onlyWhatGnuTLSAcceptedIsSkipped(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let client = try fixture.client()
        let presented = fixture.pki.serverIdentity.chain.map(\.derEncoded)
        // Verified by the Swift verifier alone (as after a resumed handshake): GnuTLS has not
        // accepted this chain, so the next full handshake has GnuTLS verify it.
        _ = try client.verifyPeerChain(presented, host: "localhost", verifiedInHandshake: false)
        try Connection(client: client, server: server).expectVerifiedAfresh()
        // That handshake's acceptance is recorded on the hit that followed it.
        let second = try Connection(client: client, server: server)
        #expect(second.pair.client.peerChainAcceptedEarlier)
    }

    @Test(arguments: versions)
    func stapledResponseIsAlwaysVerified(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pki = fixture.pki
        let now = Date()
        var identity = pki.serverIdentity
        identity.ocspResponse = try OCSPResponse.sign(
            responses: [.init(certificateID: try OCSPCertificateID(certificate: identity.leaf, issuer: pki.issuing.certificate), status: .good,
                              thisUpdate: now.addingTimeInterval(-60), nextUpdate: now.addingTimeInterval(3600))],
            signer: pki.issuing.certificate, key: pki.issuing.key)
        let server = try fixture.server { $0.identities = [identity] }
        let client = try fixture.client()
        for _ in 0..<3 {
            // GnuTLS checks the staple, which the cache does not key on: always verified afresh.
            let connection = try Connection(client: client, server: server)
            #expect(connection.pair.client.stapledOCSPResponse != nil)
            connection.expectVerifiedAfresh()
        }
    }

    @Test func mustStapleChainIsNeverSkipped() throws {
        let pki = try TestPKI()
        var options = IssuanceOptions(validityDays: 30)
        options.mustStaple = true
        let identity = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer, options: options)
        #expect(identity.leaf.requiresOCSPStapling)
        let client = try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trust))
        let accepted = try #require(client.handle.settings.acceptedChains)
        for chain in [identity.chain, pki.serverIdentity.chain] {
            let presented = chain.map(\.derEncoded)
            _ = try client.verifyPeerChain(presented, host: "localhost", verifiedInHandshake: true)
            // GnuTLS's answer for a must-staple certificate depends on the staple of the moment.
            #expect(accepted.acceptedEarlier(presented, serverName: "localhost") == !chain[0].requiresOCSPStapling)
        }
    }
}
