import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import GnuTLSTestSupport
import TestSupport

/// Counts online queries and answers them from a responder (or fails them).
final class FakeOCSPNetwork: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    let responder: OCSPResponder?

    init(_ responder: OCSPResponder?) { self.responder = responder }

    var queries: Int { lock.withLock { count } }

    var fetcher: OCSPFetcher {
        { request, url in
            self.lock.withLock { self.count += 1 }
            guard let responder = self.responder else { throw GnuTLSError(.invalidArgument, "connection refused to \(url)") }
            return responder.respond(to: request).response
        }
    }
}

@Suite struct OCSPRevocationTests {
    static func expectProblem(_ reason: VerificationError.Reason, _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            try await body()
            Issue.record("expected \(reason)", sourceLocation: sourceLocation)
        } catch let error as VerificationError {
            #expect(error.problems.map(\.reason) == [reason], "\(error)", sourceLocation: sourceLocation)
            #expect(error.problems.first?.position == 0, sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected VerificationError \(reason), got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func sourcesInOrderAndModes() async throws {
        let fixture = try OCSPFixture()
        let issuer = fixture.ca.certificate
        let leaf = try fixture.leaf(options: IssuanceOptions(validityDays: 30, ocspURLs: ["http://127.0.0.1:9/"]))
        let chain = [leaf, issuer]
        let responder = try OCSPResponder(authority: fixture.ca)
        let staple = responder.respond(to: try OCSPRequest(certificate: leaf, issuer: issuer)).response

        // A good staple settles it without the network.
        let network = FakeOCSPNetwork(responder)
        try await RevocationChecker(mode: .hardFail, fetcher: network.fetcher).check(chain: chain, staple: staple)
        #expect(network.queries == 0)
        // Online, cached until nextUpdate.
        let checker = RevocationChecker(mode: .hardFail, fetcher: network.fetcher)
        try await checker.check(chain: chain, staple: nil)
        try await checker.check(chain: chain, staple: nil)
        #expect(network.queries == 1)
        // A current CRL from the issuer answers too.
        let crl = try fixture.ca.makeCRL()
        try await RevocationChecker(mode: .hardFail).check(chain: chain, staple: nil, crls: [crl])

        // Unreachable responder: soft-fail accepts, hard-fail refuses.
        let down = FakeOCSPNetwork(nil)
        try await RevocationChecker(mode: .softFail, fetcher: down.fetcher).check(chain: chain, staple: nil)
        await Self.expectProblem(.revocationStatusUnknown) { try await RevocationChecker(mode: .hardFail, fetcher: down.fetcher).check(chain: chain, staple: nil) }
        try await RevocationChecker(mode: .off, fetcher: down.fetcher).check(chain: chain, staple: nil)

        // Revoked: both soft and hard refuse, from the network or a CRL.
        try fixture.ca.revoke(leaf, reason: .keyCompromise)
        await Self.expectProblem(.revoked) { try await RevocationChecker(mode: .softFail, fetcher: FakeOCSPNetwork(responder).fetcher).check(chain: chain, staple: nil) }
        await Self.expectProblem(.revoked) { try await RevocationChecker(mode: .softFail).check(chain: chain, staple: nil, crls: [try fixture.ca.makeCRL()]) }
        // A revoked staple is refused even though the (stale-cached) good one was fine.
        let revokedStaple = responder.respond(to: try OCSPRequest(certificate: leaf, issuer: issuer)).response
        await Self.expectProblem(.revoked) { try await RevocationChecker(mode: .softFail).check(chain: chain, staple: revokedStaple) }
        // A staple that does not verify is not trusted: hard-fail reports its reason.
        let stranger = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger"))
        let forged = try OCSPResponse.sign(
            responses: [.init(certificateID: try OCSPCertificateID(certificate: leaf, issuer: issuer), status: .good, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(600))],
            signer: stranger.certificate, key: stranger.key)
        await Self.expectProblem(.ocspUnauthorizedSigner) { try await RevocationChecker(mode: .hardFail).check(chain: chain, staple: forged) }
    }

    @Test func mustStapleIsEnforcedInEveryMode() async throws {
        let fixture = try OCSPFixture()
        let issuer = fixture.ca.certificate
        var options = IssuanceOptions(validityDays: 30)
        options.mustStaple = true
        let leaf = try fixture.leaf(options: options)
        let responder = try OCSPResponder(authority: fixture.ca)
        for mode in [RevocationCheckingMode.off, .softFail, .hardFail] {
            await Self.expectProblem(.ocspStapleRequired) { try await RevocationChecker(mode: mode).check(chain: [leaf, issuer], staple: nil) }
            let stale = try OCSPResponse.sign(
                responses: [.init(certificateID: try OCSPCertificateID(certificate: leaf, issuer: issuer), status: .good,
                                  thisUpdate: Date().addingTimeInterval(-7200), nextUpdate: Date().addingTimeInterval(-3600))],
                signer: issuer, key: fixture.ca.key, producedAt: Date().addingTimeInterval(-7200))
            await Self.expectProblem(.ocspStapleRequired) { try await RevocationChecker(mode: mode).check(chain: [leaf, issuer], staple: stale) }
            let good = responder.respond(to: try OCSPRequest(certificate: leaf, issuer: issuer)).response
            try await RevocationChecker(mode: mode).check(chain: [leaf, issuer], staple: good)
        }
        #expect(RevocationCheckingMode(name: "hard") == .hardFail && RevocationCheckingMode(name: "bogus") == nil)
    }

    /// Issue 10: the Verifier takes the channels' ``RevocationCheckingMode``; each mode
    /// behaves as it does in a TLS handshake.
    @Test("Verifier.verify(revocation:): off, soft and hard behave as they do for channels")
    func verifierTakesTheChannelsMode() async throws {
        let fixture = try OCSPFixture()
        let root = fixture.ca.certificate
        let leaf = try fixture.leaf(options: IssuanceOptions(validityDays: 30, ocspURLs: ["http://127.0.0.1:9/"]))
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
        let policy = VerificationPolicy.server(host: "host.example.com")
        let responder = try OCSPResponder(authority: fixture.ca)
        let up = FakeOCSPNetwork(responder)
        let down = FakeOCSPNetwork(nil)

        // Good: every mode accepts; hard asks the responder once, then answers from the cache.
        for mode in [RevocationCheckingMode.off, .softFail, .hardFail] {
            let chain = try await verifier.verify(leaf, policy: policy, revocation: mode, fetcher: up.fetcher)
            #expect(chain.certificates == [leaf, root])
        }
        try await verifier.verify(leaf, policy: policy, revocation: .hardFail, fetcher: up.fetcher)
        #expect(up.queries == 2, "soft and hard each asked once (off never asks); the second hard call was cached")

        // Responder unreachable: off and soft accept, hard refuses.
        let verifier2 = try Verifier(trustStore: TrustStore(certificates: [root]))
        try await verifier2.verify(leaf, policy: policy, revocation: .off, fetcher: down.fetcher)
        try await verifier2.verify(leaf, policy: policy, revocation: .softFail, fetcher: down.fetcher)
        await Self.expectProblem(.revocationStatusUnknown) { try await verifier2.verify(leaf, policy: policy, revocation: .hardFail, fetcher: down.fetcher) }
        #expect(down.queries == 2, "off never asks")

        // Revoked (the responder says so): off accepts, soft and hard refuse with the reason.
        try fixture.ca.revoke(leaf, reason: .keyCompromise)
        let verifier3 = try Verifier(trustStore: TrustStore(certificates: [root]))
        try await verifier3.verify(leaf, policy: policy, revocation: .off, fetcher: FakeOCSPNetwork(responder).fetcher)
        for mode in [RevocationCheckingMode.softFail, .hardFail] {
            await Self.expectProblem(.revoked) { try await verifier3.verify(leaf, policy: policy, revocation: mode, fetcher: FakeOCSPNetwork(responder).fetcher) }
        }
        // A revoked staple given to the Verifier counts as the channels' staple does.
        let staple = responder.respond(to: try OCSPRequest(certificate: leaf, issuer: root)).response
        await Self.expectProblem(.revoked) { try await verifier3.verify(leaf, policy: policy, revocation: .softFail, stapledResponse: staple) }
        // Path problems come first and unchanged: a wrong host is a name mismatch in every mode.
        await Self.expectProblem(.nameMismatch) { try await verifier3.verify(leaf, policy: .server(host: "other.example.com"), revocation: .hardFail) }
    }
}
