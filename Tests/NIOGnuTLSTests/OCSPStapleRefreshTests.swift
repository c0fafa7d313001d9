import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSCore
import NIOGnuTLS
import Testing

/// Issue 10: a server's staple refreshed at half-life without rebuilding its context, the
/// last good one kept while refreshes are refused, and nothing stapled after it expires.
/// Responses live 4 seconds; the test waits on the refresher's events, never on the clock.
@Suite struct OCSPStapleRefreshTests {
    /// What a client receives as the staple in an in-memory handshake with `server`.
    static func staple(from server: TLSContext, trust: TrustStore) throws -> [UInt8]? {
        let pair = try EnginePair(client: try TLSContext(configuration: .makeClientConfiguration(trustStore: trust)), server: server)
        let outcome = pair.handshake()
        #expect(outcome.bothComplete, "client \(String(describing: outcome.clientFailure)), server \(String(describing: outcome.serverFailure))")
        return pair.client.stapledOCSPResponse
    }

    /// The next event of `kind`, skipping others (each recorded), bounded by a deadline.
    static func next(_ kind: OCSPStapleRefresher.Event.Kind, in refresher: OCSPStapleRefresher, skipping: Box<[String]>) async throws -> OCSPStapleRefresher.Event {
        try await withDeadline(.seconds(120), "waiting for the refresher's \(kind) event") {
            for await event in refresher.events {
                if event.kind == kind { return event }
                skipping.value.append("\(event)")
            }
            throw CancellationError()
        }
    }

    /// How long each signed response is valid: long enough that a refresher task kept from
    /// running for seconds by a loaded machine still refreshes before expiry (it refreshes
    /// at half-life), short enough for the test to see an expiry.
    static let validity: TimeInterval = 20

    @Test("the staple is refreshed at half-life, the last good one kept while refused, none stapled after expiry")
    func refreshesAtHalfLifeAndExpires() async throws {
        let pki = try TestPKI()
        let leaf = pki.serverIdentity.leaf
        let issuing = pki.issuing
        let revoked = Box(false)
        let fetches = Box(0)
        @Sendable func sign() throws -> OCSPResponse {
            let now = Date()
            let status: OCSPResponse.CertificateStatus = revoked.value ? .revoked(date: now, reason: .keyCompromise) : .good
            return try OCSPResponse.sign(
                responses: [.init(certificateID: try OCSPCertificateID(certificate: leaf, issuer: issuing.certificate), status: status,
                                  thisUpdate: now, nextUpdate: now.addingTimeInterval(Self.validity))],
                signer: issuing.certificate, key: issuing.key)
        }
        let initial = try sign()
        let source = try OCSPStapleSource(identity: pki.serverIdentity, initial: initial)
        var identity = pki.serverIdentity
        identity.ocspStapleSource = source
        let server = try TLSContext(configuration: .makeServerConfiguration(identity: identity))
        #expect(try Self.staple(from: server, trust: pki.trust) == initial.derEncoded)

        let refresher = OCSPStapleRefresher(source: source, retryDelay: 0.2) {
            fetches.value += 1
            return try sign()
        }
        defer { refresher.stop() }
        let skipped = Box<[String]>([])
        // Half-life of the initial response (10 s): a new one, stapled by the same context.
        // (On a slow machine the refresher may have refreshed again meanwhile: any refreshed
        // response will do, the initial one must not.)
        let refreshed = try await Self.next(.refreshed, in: refresher, skipping: skipped)
        #expect(refreshed.response?.derEncoded != initial.derEncoded)
        let stapled = try #require(try Self.staple(from: server, trust: pki.trust))
        #expect(stapled != initial.derEncoded)
        #expect(try OCSPResponse(derEncoded: stapled).responses.first?.status == .good)

        // Revoked from now on: refreshes are refused, and what is stapled is only ever the
        // last good answer...
        revoked.value = true
        let afterRevocation = Box<[String]>([])
        let refused = try await Self.next(.refused, in: refresher, skipping: afterRevocation)
        #expect(refused.message.contains("revoked"), "\(refused)")
        if let current = source.current() { #expect(current.responses.first?.status == .good) }
        // ...until it expires; then nothing is stapled, and a handshake still completes. (On a
        // slow machine the last good answer may expire before the first refusal is seen.)
        if !afterRevocation.value.contains(where: { $0.contains("expired") }) {
            _ = try await Self.next(.expired, in: refresher, skipping: afterRevocation)
        }
        skipped.value += afterRevocation.value
        #expect(source.current() == nil)
        #expect(try Self.staple(from: server, trust: pki.trust) == nil)
        #expect(fetches.value >= 2)
        // Skipped on the way: more refreshes and refusals, and, on a machine slow enough that a
        // 20-second response runs out before its refresh lands, expiries; never anything else.
        #expect(skipped.value.allSatisfy { $0.contains("refused") || $0.contains("refreshed") || $0.contains("expired") }, "\(skipped.value)")
    }

    @Test("a response that does not verify is never stapled")
    func refusesWhatDoesNotVerify() throws {
        let pki = try TestPKI()
        let stranger = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger"))
        let forged = try OCSPResponse.sign(
            responses: [.init(certificateID: try OCSPCertificateID(certificate: pki.serverIdentity.leaf, issuer: pki.issuing.certificate),
                              status: .good, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(600))],
            signer: stranger.certificate, key: stranger.key)
        #expect(throws: GnuTLSError.self) { try OCSPStapleSource(identity: pki.serverIdentity, initial: forged) }
        let source = try OCSPStapleSource(identity: pki.serverIdentity)
        #expect(throws: GnuTLSError.self) { try source.update(forged) }
        #expect(source.current() == nil)
    }
}
