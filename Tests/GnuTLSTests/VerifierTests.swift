import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

// The verification matrix of issue 3: chains built at run time (by LocalAuthority, and by
// `openssl` where the authority refuses on purpose), each rejection checked for its exact
// reasons and chain positions (0 = leaf), each success for the chain it returns.

/// A root and an issuing CA, each with an in-memory ledger so that they can revoke and
/// publish CRLs.
private struct VerifierPKI {
    let root: LocalAuthority
    let rootKey: KeyPair
    let issuing: LocalAuthority
    let issuingKey: KeyPair

    static let issuingSubject = "CN=Verifier Issuing CA,O=swift-gnutls tests"

    init(
        rootSubject: String = "CN=Verifier Root,O=swift-gnutls tests", rootNameConstraints: NameConstraints? = nil,
        issuingDays: Int = 1825, issuingPathLength: Int? = nil
    ) throws {
        rootKey = try KeyPair.generate(.ecdsaP256)
        let bareRoot = try LocalAuthority.createRoot(subject: try DistinguishedName(rootSubject), key: rootKey, nameConstraints: rootNameConstraints)
        root = try LocalAuthority(certificate: bareRoot.certificate, key: rootKey, ledger: SQLiteLedger())
        issuingKey = try KeyPair.generate(.ecdsaP256)
        let bareIssuing = try root.createIntermediate(
            subject: try DistinguishedName(Self.issuingSubject), key: issuingKey, validityDays: issuingDays, pathLength: issuingPathLength)
        issuing = try LocalAuthority(certificate: bareIssuing.certificate, key: issuingKey, issuers: bareIssuing.chain, ledger: SQLiteLedger())
    }

    /// A TLS server certificate for `names` from `authority` (the issuing CA by default).
    func server(_ names: [GeneralName], commonName: String = "server", options: IssuanceOptions = IssuanceOptions(),
                by authority: LocalAuthority? = nil) throws -> Certificate {
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=\(commonName),O=swift-gnutls tests"), key: KeyPair.generate(.ecdsaP256), alternativeNames: names)
        return try (authority ?? issuing).issue(request, profile: .tlsServer, options: options)
    }

    /// A TLS client certificate for `names`.
    func client(_ names: [GeneralName], commonName: String = "alice", options: IssuanceOptions = IssuanceOptions()) throws -> Certificate {
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=\(commonName),O=swift-gnutls tests"), key: KeyPair.generate(.ecdsaP256), alternativeNames: names)
        return try issuing.issue(request, profile: .tlsClient, options: options)
    }

    /// A verifier trusting the root (or `anchors`), with `crls`.
    func verifier(anchors: [Certificate]? = nil, crls: [CertificateRevocationList] = []) throws -> Verifier {
        try Verifier(trustStore: TrustStore(certificates: anchors ?? [root.certificate], crls: crls))
    }

    /// A CA below the root made by `openssl` with exactly `extensions` (what the authority
    /// refuses to make), and a server leaf for api.example.com below it, also by `openssl`.
    func opensslCA(subject: String, extensions: [String], in directory: TemporaryDirectory)
        async throws -> (ca: Certificate, leaf: Certificate, caPath: String, caKey: String) {
        let keys = try writeKeys(to: directory)
        let rootPath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let caKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("ca.key.pem"))
        let caPath = try await OpenSSLIssuer.issue(key: caKey, subject: subject, issuerCertificate: rootPath, issuerKey: keys.root,
                                             extensions: extensions, out: directory.file("ca.pem"), in: directory)
        let leafKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("leaf.key.pem"))
        let leafPath = try await OpenSSLIssuer.issue(
            key: leafKey, subject: "/CN=api.example.com", issuerCertificate: caPath, issuerKey: caKey,
            extensions: OpenSSLIssuer.serverExtensions(names: ["DNS:api.example.com"]), out: directory.file("leaf.pem"), in: directory)
        return (try Certificate.load(contentsOfFile: caPath)[0], try Certificate.load(contentsOfFile: leafPath)[0], caPath, caKey)
    }

    /// The key pairs as PKCS#8 PEM files, for `openssl` to sign with.
    func writeKeys(to directory: TemporaryDirectory) throws -> (root: String, issuing: String) {
        (try directory.write(try rootKey.pemEncoded(), to: "root.key.pem"), try directory.write(try issuingKey.pemEncoded(), to: "issuing.key.pem"))
    }
}

/// A server-auth policy at `time` for `names`.
private func serverPolicy(_ names: [GeneralName] = [], at time: Date, _ change: (inout VerificationPolicy) -> Void = { _ in }) -> VerificationPolicy {
    var policy = VerificationPolicy(purposes: [.serverAuth], expectedNames: names, time: time)
    change(&policy)
    return policy
}

/// Whole seconds (what certificates and CRLs carry).
private func wholeSeconds(_ date: Date) -> Date { Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)) }

/// `body` must throw a ``VerificationError`` holding exactly the problems `expected`
/// (reason and position, in any order); returns it for the checks of dates and names.
@discardableResult
private func expectRejected(
    _ expected: [(VerificationError.Reason, Int?)], sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> VerifiedChain
) -> VerificationError? {
    do {
        let chain = try body()
        Issue.record("expected a rejection with \(expected), but the chain was accepted: \(chain.certificates.map(\.subject))", sourceLocation: sourceLocation)
        return nil
    } catch let error as VerificationError {
        let describe = { (reason: VerificationError.Reason, position: Int?) in "\(reason)@\(position.map(String.init) ?? "-")" }
        #expect(error.problems.map { describe($0.reason, $0.position) }.sorted() == expected.map(describe).sorted(),
                "problems were: \(error)", sourceLocation: sourceLocation)
        for problem in error.problems {
            #expect(!problem.message.isEmpty, sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a VerificationError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// `body` must succeed and return exactly `chain` (leaf first, anchor last).
private func expectAccepted(_ chain: [Certificate], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> VerifiedChain) {
    do {
        let verified = try body()
        #expect(verified.certificates == chain, "returned \(verified.certificates.map(\.subject)), expected \(chain.map(\.subject))",
                sourceLocation: sourceLocation)
        #expect(verified.leaf == chain.first && verified.anchor == chain.last, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected the chain \(chain.map(\.subject)) to verify, got: \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Verifier: chains, times, names, purposes")
struct VerifierChainTests {
    @Test("a good chain is returned leaf first, anchor last, for a host, an IP and a client")
    func goodChains() throws {
        let pki = try VerifierPKI()
        let now = Date()
        let leaf = try pki.server([.dnsName("api.example.com"), .ipAddress(IPAddress("192.0.2.10")!), .ipAddress(IPAddress("2001:db8::1")!)])
        let verifier = try pki.verifier()
        let chain = [leaf, pki.issuing.certificate, pki.root.certificate]
        expectAccepted(chain) { try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("api.example.com")], at: now)) }
        expectAccepted(chain) { try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "192.0.2.10")) }
        // The same IPv6 address in another spelling.
        expectAccepted(chain) { try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "2001:db8:0:0:0:0:0:1")) }
        // Several names: every one must match.
        expectAccepted(chain) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy([.dnsName("api.example.com"), .ipAddress(IPAddress("192.0.2.10")!)], at: now))
        }
        // The default policy of a verifier is used when a call gives none.
        let named = try Verifier(trustStore: TrustStore(certificates: [pki.root.certificate]), policy: .server(host: "api.example.com"))
        expectAccepted(chain) { try named.verify(leaf, intermediates: [pki.issuing.certificate]) }

        let client = try pki.client([.email("alice@example.com")])
        expectAccepted([client, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: .client(names: [.email("alice@example.com")]))
        }
        // A trusted intermediate is an anchor itself: the chain ends there.
        let intermediateTrust = try pki.verifier(anchors: [pki.issuing.certificate])
        expectAccepted([leaf, pki.issuing.certificate]) { try intermediateTrust.verify(leaf, policy: serverPolicy([.dnsName("api.example.com")], at: now)) }
    }

    @Test("an expired leaf: expired at 0, with its dates")
    func expiredLeaf() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("old.example.com")], options: IssuanceOptions(validityDays: 30))
        let verifier = try pki.verifier()
        let after = leaf.notValidAfter.addingTimeInterval(60)
        let error = expectRejected([(.expired, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("old.example.com")], at: after))
        }
        let problem = error?.problems.first
        #expect(problem?.notValidBefore == leaf.notValidBefore)
        #expect(problem?.notValidAfter == leaf.notValidAfter)
        #expect(problem?.subject == leaf.subject)
        // The validity period includes notAfter itself (RFC 5280 4.1.2.5); one second later it is over.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy([.dnsName("old.example.com")], at: leaf.notValidAfter))
        }
        expectRejected([(.expired, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: leaf.notValidAfter.addingTimeInterval(1)))
        }
    }

    @Test("an expired leaf and intermediate: expired at 0 and 1, each with its own dates")
    func expiredLeafAndIntermediate() throws {
        let pki = try VerifierPKI(issuingDays: 2)
        let leaf = try pki.server([.dnsName("www.example.com")], options: IssuanceOptions(validityDays: 1))
        let verifier = try pki.verifier()
        let error = expectRejected([(.expired, 0), (.expired, 1)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy(at: pki.issuing.certificate.notValidAfter.addingTimeInterval(3600)))
        }
        let byPosition = Dictionary(uniqueKeysWithValues: (error?.problems ?? []).compactMap { problem in problem.position.map { ($0, problem) } })
        #expect(byPosition[0]?.notValidAfter == leaf.notValidAfter)
        #expect(byPosition[1]?.notValidAfter == pki.issuing.certificate.notValidAfter)
        #expect(byPosition[1]?.notValidBefore == pki.issuing.certificate.notValidBefore)
        #expect(byPosition[1]?.subject == pki.issuing.certificate.subject)
    }

    @Test("a leaf not yet valid: notYetValid at 0, with its dates; valid once the clock passes notBefore")
    func notYetValid() throws {
        let pki = try VerifierPKI()
        // Valid from a day after now.
        let leaf = try pki.server([.dnsName("soon.example.com")], options: IssuanceOptions(validityDays: 30, backdate: -86_400))
        let verifier = try pki.verifier()
        let error = expectRejected([(.notYetValid, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("soon.example.com")], at: Date()))
        }
        #expect(error?.problems.first?.notValidBefore == leaf.notValidBefore)
        #expect(error?.problems.first?.notValidAfter == leaf.notValidAfter)
        #expect(leaf.notValidBefore > Date().addingTimeInterval(80_000))
        // notBefore itself is inside the validity period; one second earlier is not.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy([.dnsName("soon.example.com")], at: leaf.notValidBefore))
        }
        expectRejected([(.notYetValid, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: leaf.notValidBefore.addingTimeInterval(-1)))
        }
    }

    @Test("a wrong host: nameMismatch at 0 naming what was asked and what the certificate holds")
    func wrongHost() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("www.example.com")])
        let verifier = try pki.verifier()
        let error = expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("api.example.com")], at: Date()))
        }
        #expect(error?.problems.first?.expectedName == .dnsName("api.example.com"))
        #expect(error?.problems.first?.presentedNames == [.dnsName("www.example.com")])
        #expect(error?.problems.first?.message.contains("api.example.com") == true)
        // Two names asked, one held: only the missing one is a problem.
        let both = expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy([.dnsName("www.example.com"), .dnsName("db.example.com")], at: Date()))
        }
        #expect(both?.problems.first?.expectedName == .dnsName("db.example.com"))
    }

    @Test("a wrong IP: nameMismatch at 0; a DNS SAN never matches an IP, nor an IP SAN a DNS name")
    func wrongIP() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.ipAddress(IPAddress("192.0.2.10")!), .dnsName("ten.example.com")])
        let verifier = try pki.verifier()
        let wanted = GeneralName.ipAddress(IPAddress("192.0.2.11")!)
        let error = expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([wanted], at: Date()))
        }
        #expect(error?.problems.first?.expectedName == wanted)
        #expect(error?.problems.first?.presentedNames == [.ipAddress(IPAddress("192.0.2.10")!), .dnsName("ten.example.com")])
        // The address written as a DNS name is not an IP match.
        expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("192.0.2.10")], at: Date()))
        }
        // An IPv4 address does not match its IPv4-mapped IPv6 form.
        expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "::ffff:192.0.2.10"))
        }
        let dnsOnly = try pki.server([.dnsName("host.example.com")])
        expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(dnsOnly, intermediates: [pki.issuing.certificate], policy: .server(host: "192.0.2.10"))
        }
    }

    @Test("client identities: every expected name must be held; email domains compare without case, local parts with")
    func clientIdentities() throws {
        let pki = try VerifierPKI()
        let client = try pki.client([.email("alice@example.com"), .uri("spiffe://example.com/alice")])
        let verifier = try pki.verifier()
        let chain = [client, pki.issuing.certificate, pki.root.certificate]
        expectAccepted(chain) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate],
                                policy: .client(names: [.email("alice@EXAMPLE.com"), .uri("spiffe://example.com/alice")]))
        }
        let error = expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: .client(names: [.email("alice@example.com"), .email("bob@example.com")]))
        }
        #expect(error?.problems.first?.expectedName == .email("bob@example.com"))
        #expect(error?.problems.first?.presentedNames == [.email("alice@example.com"), .uri("spiffe://example.com/alice")])
        expectRejected([(.nameMismatch, 0), (.nameMismatch, 0)]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: .client(names: [.email("Alice@example.com"), .dnsName("example.com")]))
        }
    }

    @Test("a wrong purpose: purposeMismatch at 0 (client for serverAuth, server for clientAuth)")
    func wrongPurpose() throws {
        let pki = try VerifierPKI()
        let client = try pki.client([.dnsName("alice.example.com")])
        let server = try pki.server([.dnsName("alice.example.com")])
        let verifier = try pki.verifier()
        expectRejected([(.purposeMismatch, 0)]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("alice.example.com")], at: Date()))
        }
        expectRejected([(.purposeMismatch, 0)]) {
            try verifier.verify(server, intermediates: [pki.issuing.certificate], policy: .client())
        }
        // Each for its own purpose passes.
        expectAccepted([client, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: .client())
        }
        // Any EKU OID can be asked for: codeSigning is not in a server certificate.
        expectRejected([(.purposeMismatch, 0)]) {
            try verifier.verify(server, intermediates: [pki.issuing.certificate], policy: VerificationPolicy(purposes: [.codeSigning], time: Date()))
        }
    }

    @Test("a missing intermediate: untrustedIssuer at 0")
    func missingIntermediate() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let verifier = try pki.verifier()
        let error = expectRejected([(.untrustedIssuer, 0)]) {
            try verifier.verify(leaf, policy: serverPolicy([.dnsName("api.example.com")], at: Date()))
        }
        #expect(error?.problems.first?.subject == leaf.subject)
        // An intermediate of another hierarchy with the same name does not stand in for it.
        let other = try VerifierPKI(rootSubject: "CN=Other Root,O=swift-gnutls tests")
        expectRejected([(.untrustedIssuer, 0)]) {
            try verifier.verify(leaf, intermediates: [other.issuing.certificate], policy: serverPolicy(at: Date()))
        }
    }

    @Test("unordered, duplicate and unrelated intermediates: the chain is built leaf first, anchor last")
    func unorderedDuplicateAndExtraIntermediates() throws {
        let pki = try VerifierPKI()
        let lower = try pki.issuing.createIntermediate(subject: try DistinguishedName("CN=Verifier Lower CA,O=swift-gnutls tests"), validityDays: 400)
        let leaf = try pki.server([.dnsName("deep.example.com")], by: lower)
        let other = try VerifierPKI(rootSubject: "CN=Unrelated Root,O=swift-gnutls tests")
        let verifier = try pki.verifier()
        let scrambled = [pki.issuing.certificate, other.issuing.certificate, lower.certificate, other.root.certificate,
                         pki.issuing.certificate, lower.certificate, try pki.server([.dnsName("sibling.example.com")])]
        expectAccepted([leaf, lower.certificate, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: scrambled, policy: serverPolicy([.dnsName("deep.example.com")], at: Date()))
        }
        // The root itself among the intermediates changes nothing.
        expectAccepted([leaf, lower.certificate, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.root.certificate, lower.certificate, pki.issuing.certificate], policy: serverPolicy(at: Date()))
        }
        // Without the middle link there is no chain: the lower CA's issuer is unknown.
        expectRejected([(.untrustedIssuer, 1)]) {
            try verifier.verify(leaf, intermediates: [lower.certificate, other.issuing.certificate, lower.certificate], policy: serverPolicy(at: Date()))
        }
    }

    @Test("alternative intermediates for one key: path building passes over an expired or revoked one to its renewal")
    func alternativeIntermediates() throws {
        let pki = try VerifierPKI()
        let subject = try DistinguishedName("CN=Verifier Renewed CA,O=swift-gnutls tests")
        let key = try KeyPair.generate(.ecdsaP256)
        // The same CA name and key certified three times: short-lived, revoked, and good.
        let shortLived = try pki.root.createIntermediate(subject: subject, key: key, validityDays: 1)
        let revoked = try pki.root.createIntermediate(subject: subject, key: key, validityDays: 400)
        let renewed = try pki.root.createIntermediate(subject: subject, key: key, validityDays: 400)
        let leaf = try pki.server([.dnsName("renewed.example.com")], options: IssuanceOptions(validityDays: 30), by: renewed)
        try pki.root.revoke(revoked.certificate, reason: .superseded, date: wholeSeconds(Date().addingTimeInterval(-60)))
        let verifier = try pki.verifier(crls: [try pki.root.makeCRL()])
        let later = Date().addingTimeInterval(2 * 86_400)
        for intermediates in [[shortLived.certificate, revoked.certificate, renewed.certificate],
                              [revoked.certificate, shortLived.certificate, renewed.certificate]] {
            expectAccepted([leaf, renewed.certificate, pki.root.certificate]) {
                try verifier.verify(leaf, intermediates: intermediates, policy: serverPolicy([.dnsName("renewed.example.com")], at: later))
            }
        }
        // Without the renewal, the error describes one of the failed paths, at its intermediate.
        let error = expectRejected([(.revoked, 1)]) {
            try verifier.verify(leaf, intermediates: [revoked.certificate], policy: serverPolicy(at: later))
        }
        #expect(error?.problems.first?.revocationReason == .superseded)
        expectRejected([(.expired, 1)]) {
            try verifier.verify(leaf, intermediates: [shortLived.certificate], policy: serverPolicy(at: later))
        }
    }

    @Test("after a handshake GnuTLS accepted, only signatures it had no choice but to check are taken from it, up to an anchor")
    func linksVerifiedByGnuTLS() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let issuing = pki.issuing.certificate
        let root = pki.root.certificate
        let verifier = try pki.verifier()
        // The chain as a server sends it, in any order, the root included or not: both links.
        for presented in [[leaf, issuing], [leaf, root, issuing]] {
            let links = verifier.linksVerifiedByGnuTLS(presented: presented)
            #expect(links.map(\.child) == [leaf, issuing])
            #expect(links.map(\.issuer) == [issuing, root])
        }
        // An unrelated extra certificate is never part of the walk from the leaf.
        let other = try VerifierPKI(rootSubject: "CN=Unrelated Root,O=swift-gnutls tests")
        #expect(verifier.linksVerifiedByGnuTLS(presented: [leaf, issuing, other.issuing.certificate]).map(\.child) == [leaf, issuing])
        // No walk to an anchor (a missing intermediate), or a trusted leaf: nothing.
        #expect(verifier.linksVerifiedByGnuTLS(presented: [leaf]).isEmpty)
        #expect(try pki.verifier(anchors: [leaf]).linksVerifiedByGnuTLS(presented: [leaf, issuing]).isEmpty)
        // Two certificates of the issuing CA's name and key: GnuTLS picked one of them, so it
        // vouches for nothing, and a damaged leaf signature is still found.
        let twin = try pki.root.createIntermediate(subject: try DistinguishedName(VerifierPKI.issuingSubject), key: pki.issuingKey, validityDays: 400)
        #expect(verifier.linksVerifiedByGnuTLS(presented: [leaf, issuing, twin.certificate]).isEmpty)
        var damagedDER = leaf.derEncoded
        damagedDER[damagedDER.count - 1] ^= 0x01
        let damaged = try Certificate(derEncoded: damagedDER)
        for vouched in [false, true] {
            expectRejected([(.signatureInvalid, 0)]) {
                try verifier.verify(damaged, intermediates: [issuing, twin.certificate], policy: serverPolicy(at: Date()), consultGnuTLS: false,
                                    signaturesVerifiedByGnuTLS: vouched)
            }
        }
        // Where GnuTLS had no choice the path is the same as when every signature is checked.
        expectAccepted([leaf, issuing, root]) {
            try verifier.verify(leaf, intermediates: [issuing], policy: serverPolicy([.dnsName("api.example.com")], at: Date()), consultGnuTLS: false,
                                signaturesVerifiedByGnuTLS: true)
        }
    }

    @Test("a repeat verification (a resumed session's chain) takes good signatures from the verifier's memo; a bad one is never kept")
    func signatureMemo() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let verifier = try pki.verifier()
        #expect(verifier.memoizedSignatureCount == 0)
        for _ in 0..<2 {
            expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
                try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()), consultGnuTLS: false)
            }
            #expect(verifier.memoizedSignatureCount == 2)
        }
        var damagedDER = leaf.derEncoded
        damagedDER[damagedDER.count - 1] ^= 0x01
        let damaged = try Certificate(derEncoded: damagedDER)
        for _ in 0..<2 {
            expectRejected([(.signatureInvalid, 0)]) {
                try verifier.verify(damaged, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()), consultGnuTLS: false)
            }
        }
        #expect(verifier.memoizedSignatureCount == 2)
        // Every other check still runs on a repeat: a later clock finds the leaf expired.
        expectRejected([(.expired, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: leaf.notValidAfter.addingTimeInterval(60)),
                                consultGnuTLS: false)
        }
    }

    @Test("the anchor index finds exactly the anchors whose name matches and whose key identifier agrees, in trust-store order")
    func anchorIndex() async throws {
        try await withTemporaryDirectory { directory in
            let pki = try VerifierPKI()
            let keys = try pki.writeKeys(to: directory)
            // The root's name and key again (same subject key identifier), a root of the same
            // name without a subject key identifier (openssl: the authority always writes one),
            // and an unrelated root.
            let twin = try LocalAuthority.createRoot(subject: pki.root.certificate.subject, key: pki.rootKey)
            let bareKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("bare.key.pem"))
            let barePath = try await OpenSSLIssuer.selfSigned(
                key: bareKey, subject: "/O=swift-gnutls tests/CN=Verifier Root",
                extensions: ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign",
                             "subjectKeyIdentifier = none", "authorityKeyIdentifier = none"],
                out: directory.file("bare.pem"), in: directory)
            let bare = try Certificate.load(contentsOfFile: barePath)[0]
            #expect(bare.subjectKeyIdentifier == nil)
            let other = try VerifierPKI(rootSubject: "CN=Unrelated Root,O=swift-gnutls tests")
            // A CA certificate without an authority key identifier, named as issued by the root.
            let caKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("ca.key.pem"))
            let noAKIPath = try await OpenSSLIssuer.issue(
                key: caKey, subject: "/CN=No AKI CA", issuerCertificate: try directory.write(pki.root.certificate.pemEncoded, to: "root.pem"),
                issuerKey: keys.root, extensions: ["basicConstraints = critical, CA:TRUE", "authorityKeyIdentifier = none"],
                out: directory.file("noaki.pem"), in: directory)
            let noAKI = try Certificate.load(contentsOfFile: noAKIPath)[0]
            #expect(noAKI.authorityKeyIdentifier == nil)
            let verifier = try pki.verifier(anchors: [other.root.certificate, pki.root.certificate, bare, twin.certificate])
            // An authority key identifier selects the anchors with that subject key identifier
            // and those without one (when the name matches).
            #expect(verifier.anchorsThatMayIssue(pki.issuing.certificate) == [pki.root.certificate, bare, twin.certificate])
            #expect(verifier.anchorsThatMayIssue(other.issuing.certificate) == [other.root.certificate])
            // Without one, every anchor of the name.
            #expect(verifier.anchorsThatMayIssue(noAKI) == [pki.root.certificate, bare, twin.certificate])
            // A leaf two levels down: no anchor names it.
            let leaf = try pki.server([.dnsName("api.example.com")])
            #expect(verifier.anchorsThatMayIssue(leaf).isEmpty)
            expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
                try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("api.example.com")], at: Date()))
            }
        }
    }

    @Test("a peer chain is parsed once per verifier: a repeat gets the same value; unparsable bytes are refused every time and never kept")
    func certificateMemo() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let verifier = try pki.verifier()
        #expect(verifier.memoizedCertificateCount == 0)
        for _ in 0..<2 {
            let parsed = try verifier.certificate(derEncoded: leaf.derEncoded)
            #expect(parsed == leaf && parsed.subject == leaf.subject && parsed.extensions == leaf.extensions)
            #expect(verifier.memoizedCertificateCount == 1)
        }
        let truncated = Array(leaf.derEncoded.dropLast(10))
        for _ in 0..<2 {
            #expect(throws: GnuTLSError.self) { try verifier.certificate(derEncoded: truncated) }
        }
        #expect(verifier.memoizedCertificateCount == 1)
    }

    @Test("the memos of parsed certificates and good signatures start over at their byte bound: many or large certificates cannot grow them")
    func memoByteBounds() throws {
        let pki = try VerifierPKI()
        let leaves = try (0..<5).map { try pki.server([.dnsName("host-\($0).example.com")]) }
        let size = leaves.map(\.derEncoded.count).max() ?? 0
        let issuerKey = pki.issuing.certificate.publicKey.derEncoded
        let certificates = CertificateMemo(byteCapacity: 3 * size)
        let signatures = SignatureMemo(byteCapacity: 3 * (size + issuerKey.count))
        for (index, leaf) in leaves.enumerated() {
            #expect(try certificates.certificate(derEncoded: leaf.derEncoded) == leaf)
            signatures.insert(CertificateSignatureKey(child: leaf.derEncoded, issuerKey: issuerKey))
            #expect(certificates.heldBytes <= 3 * size && signatures.heldBytes <= 3 * (size + issuerKey.count))
            // Three fit; the fourth starts over.
            #expect(certificates.count == (index < 3 ? index + 1 : index - 2))
            #expect(signatures.count == certificates.count)
        }
        // A repeat adds nothing.
        _ = try certificates.certificate(derEncoded: leaves[4].derEncoded)
        signatures.insert(CertificateSignatureKey(child: leaves[4].derEncoded, issuerKey: issuerKey))
        #expect(certificates.count == 2 && signatures.count == 2)
        #expect(signatures.contains(CertificateSignatureKey(child: leaves[4].derEncoded, issuerKey: issuerKey)))
        #expect(!signatures.contains(CertificateSignatureKey(child: leaves[0].derEncoded, issuerKey: issuerKey)))
    }

    @Test("an anchor naming different signature algorithms inside and outside its signed part: malformedCertificate at the anchor")
    func anchorAlgorithmMismatch() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let policy = serverPolicy([.dnsName("api.example.com")], at: Date())
        // ecdsa-with-SHA256 outside the signed part gets NULL parameters; the identifier
        // inside keeps none. GnuTLS reads both as the same algorithm and accepts the
        // certificate; the bytes differ, which RFC 5280 4.1.1.2 forbids.
        func tampered(_ certificate: Certificate) throws -> Certificate {
            let identifier: [UInt8] = [0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]
            var der = certificate.derEncoded
            let starts = der.indices.filter { der[$0...].starts(with: identifier) }
            try #require(starts.count == 2 && der[1] == 0x82)
            der.replaceSubrange(starts[1]..<(starts[1] + identifier.count), with: [0x30, 0x0C] + identifier.dropFirst(2) + [0x05, 0x00])
            let length = (Int(der[2]) << 8 | Int(der[3])) + 2
            der[2] = UInt8(length >> 8)
            der[3] = UInt8(length & 0xFF)
            return try Certificate(derEncoded: der)
        }
        let root = try tampered(pki.root.certificate)
        #expect(root.signatureAlgorithm == pki.root.certificate.signatureAlgorithm)
        expectRejected([(.malformedCertificate, 2)]) {
            try Verifier(trustStore: TrustStore(certificates: [root])).verify(
                leaf, intermediates: [pki.issuing.certificate], policy: policy, consultGnuTLS: false)
        }
        // The intermediate with the same change, made an anchor itself so that its own
        // signature is not what fails: refused at 1.
        let issuing = try tampered(pki.issuing.certificate)
        expectRejected([(.malformedCertificate, 1)]) {
            try Verifier(trustStore: TrustStore(certificates: [issuing])).verify(leaf, intermediates: [], policy: policy, consultGnuTLS: false)
        }
        // Below an anchor, the same change to the leaf: its signature still verifies (the
        // signature covers only the signed part), and the mismatch is found at 0.
        let tamperedLeaf = try tampered(leaf)
        expectRejected([(.malformedCertificate, 0)]) {
            try pki.verifier().verify(tamperedLeaf, intermediates: [pki.issuing.certificate], policy: policy, consultGnuTLS: false)
        }
    }

    @Test("an untrusted root: untrustedIssuer at the topmost certificate reached")
    func untrustedRoot() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        // Another root with the very same name but another key.
        let impostor = try LocalAuthority.createRoot(subject: pki.root.certificate.subject)
        let verifier = try pki.verifier(anchors: [impostor.certificate])
        let error = expectRejected([(.untrustedIssuer, 1)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy([.dnsName("api.example.com")], at: Date()))
        }
        #expect(error?.problems.first?.subject == pki.issuing.certificate.subject)
        // Handing the real root over as an untrusted certificate does not make it trusted.
        expectRejected([(.untrustedIssuer, 2)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate, pki.root.certificate], policy: serverPolicy(at: Date()))
        }
        // An empty trust store trusts nothing.
        let empty = try Verifier(trustStore: TrustStore())
        expectRejected([(.untrustedIssuer, 2)]) {
            try empty.verify(leaf, intermediates: [pki.issuing.certificate, pki.root.certificate], policy: serverPolicy(at: Date()))
        }
    }

    @Test("wildcards: *.example.com matches one label only, never the bare domain or two labels")
    func wildcardRules() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("*.example.com")], commonName: "wildcard")
        let verifier = try pki.verifier()
        let chain = [leaf, pki.issuing.certificate, pki.root.certificate]
        for host in ["a.example.com", "WWW.Example.COM", "a.example.com."] {
            expectAccepted(chain) { try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: host)) }
        }
        for host in ["example.com", "a.b.example.com", "a.example.org", "aexample.com", ".example.com"] {
            let error = expectRejected([(.nameMismatch, 0)]) {
                try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: host))
            }
            #expect(error?.problems.first?.expectedName == .dnsName(host))
            #expect(error?.problems.first?.presentedNames == [.dnsName("*.example.com")])
        }
    }

    @Test("no common-name fallback: CN=host without a DNS SAN does not match host")
    func noCommonNameFallback() async throws {
        let pki = try VerifierPKI()
        let verifier = try pki.verifier()
        // The authority issues client certificates without alternative names.
        let client = try pki.client([], commonName: "host.example.com")
        #expect(client.subjectAlternativeNames.isEmpty)
        let error = expectRejected([(.nameMismatch, 0)]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate],
                                policy: VerificationPolicy(purposes: [.clientAuth], expectedNames: [.dnsName("host.example.com")], time: Date()))
        }
        #expect(error?.problems.first?.expectedName == .dnsName("host.example.com"))
        #expect(error?.problems.first?.presentedNames == [])
        // Without a name to check, the same certificate verifies.
        expectAccepted([client, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(client, intermediates: [pki.issuing.certificate], policy: .client())
        }

        // A server certificate without SANs: the authority refuses to make one, openssl does not.
        try await withTemporaryDirectory { directory in
            let keys = try pki.writeKeys(to: directory)
            let issuingPath = try directory.write(pki.issuing.certificate.pemEncoded, to: "issuing.pem")
            let leafKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("leaf.key.pem"))
            let leafPath = try await OpenSSLIssuer.issue(
                key: leafKey, subject: "/CN=host.example.com/O=swift-gnutls tests", issuerCertificate: issuingPath, issuerKey: keys.issuing,
                extensions: OpenSSLIssuer.serverExtensions(names: []), out: directory.file("leaf.pem"), in: directory)
            let server = try Certificate.load(contentsOfFile: leafPath)[0]
            #expect(server.subjectAlternativeNames.isEmpty)
            let serverError = expectRejected([(.nameMismatch, 0)]) {
                try verifier.verify(server, intermediates: [pki.issuing.certificate], policy: .server(host: "host.example.com"))
            }
            #expect(serverError?.problems.first?.expectedName == .dnsName("host.example.com"))
            #expect(serverError?.problems.first?.presentedNames == [])
            expectAccepted([server, pki.issuing.certificate, pki.root.certificate]) {
                try verifier.verify(server, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()))
            }
        }
    }
}

@Suite("Verifier: CA constraints")
struct VerifierConstraintTests {
    @Test("an intermediate with CA:FALSE (made by openssl): notCA at 1")
    func caFalseIntermediate() async throws {
        let pki = try VerifierPKI()
        try await withTemporaryDirectory { directory in
            let (middle, leaf, _, middleKey) = try await pki.opensslCA(
                subject: "/CN=Not A CA/O=swift-gnutls tests",
                extensions: ["basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
                             "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"], in: directory)
            #expect(middle.basicConstraints?.isCertificateAuthority == false)
            let error = expectRejected([(.notCA, 1)]) {
                try pki.verifier().verify(leaf, intermediates: [middle], policy: .server(host: "api.example.com"))
            }
            #expect(error?.problems.first?.subject == middle.subject)
            // The authority refuses to sign with it at all.
            #expect(throws: IssuanceError.self) { try LocalAuthority(certificate: middle, key: KeyPair(contentsOfFile: middleKey)) }
        }
    }

    @Test("a CA whose key usage lacks keyCertSign (made by openssl): keyUsageMissing at 1; a leaf lacking a required bit: keyUsageMissing at 0")
    func keyUsageMissing() async throws {
        let pki = try VerifierPKI()
        try await withTemporaryDirectory { directory in
            let (middle, leaf, _, _) = try await pki.opensslCA(
                subject: "/CN=No CertSign CA/O=swift-gnutls tests",
                extensions: ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, digitalSignature, cRLSign",
                             "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"], in: directory)
            expectRejected([(.keyUsageMissing, 1)]) {
                try pki.verifier().verify(leaf, intermediates: [middle], policy: .server(host: "api.example.com"))
            }
        }
        let leaf = try pki.server([.dnsName("api.example.com")])
        #expect(leaf.keyUsage == [.digitalSignature])
        expectRejected([(.keyUsageMissing, 0)]) {
            try pki.verifier().verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()) { $0.requiredKeyUsage = [.keyAgreement] })
        }
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try pki.verifier().verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()) { $0.requiredKeyUsage = [.digitalSignature] })
        }
    }

    @Test("an intermediate whose EKU excludes the purpose (made by openssl): purposeMismatch at 1")
    func intermediateEKUExcludesPurpose() async throws {
        let pki = try VerifierPKI()
        try await withTemporaryDirectory { directory in
            let (middle, leaf, _, _) = try await pki.opensslCA(
                subject: "/CN=Client Only CA/O=swift-gnutls tests",
                extensions: OpenSSLIssuer.caExtensions() + ["extendedKeyUsage = clientAuth"], in: directory)
            let error = expectRejected([(.purposeMismatch, 1)]) {
                try pki.verifier().verify(leaf, intermediates: [middle], policy: .server(host: "api.example.com"))
            }
            #expect(error?.problems.first?.subject == middle.subject)
        }
    }

    @Test("a path length exceeded (a CA below a pathlen:0 CA, made by openssl): pathLengthExceeded at 2")
    func pathLengthExceeded() async throws {
        let pki = try VerifierPKI(issuingPathLength: 0)
        #expect(pki.issuing.certificate.basicConstraints?.pathLengthConstraint == 0)
        // The authority will not create a CA below a pathlen:0 CA.
        #expect(throws: IssuanceError.self) { try pki.issuing.createIntermediate(subject: try DistinguishedName("CN=Too Deep")) }
        try await withTemporaryDirectory { directory in
            let keys = try pki.writeKeys(to: directory)
            let issuingPath = try directory.write(pki.issuing.certificate.pemEncoded, to: "issuing.pem")
            let deepKeyPath = try await OpenSSL.generateKey("ec:P-256", to: directory.file("deep.key.pem"))
            let deepPath = try await OpenSSLIssuer.issue(
                key: deepKeyPath, subject: "/CN=Too Deep CA/O=swift-gnutls tests", issuerCertificate: issuingPath, issuerKey: keys.issuing,
                extensions: OpenSSLIssuer.caExtensions(), out: directory.file("deep.pem"), in: directory)
            let deep = try Certificate.load(contentsOfFile: deepPath)[0]
            // Issuing below the openssl-made CA works when the authority is not told of the chain above it.
            let deepCA = try LocalAuthority(certificate: deep, key: KeyPair(contentsOfFile: deepKeyPath))
            let leaf = try pki.server([.dnsName("deep.example.com")], options: IssuanceOptions(validityDays: 10), by: deepCA)
            let error = expectRejected([(.pathLengthExceeded, 2)]) {
                try pki.verifier().verify(leaf, intermediates: [deep, pki.issuing.certificate], policy: .server(host: "deep.example.com"))
            }
            #expect(error?.problems.first?.subject == pki.issuing.certificate.subject)
        }
    }

    @Test("the policy's maximum number of intermediates: pathLengthExceeded for the whole chain")
    func maximumIntermediates() throws {
        let pki = try VerifierPKI()
        let lower = try pki.issuing.createIntermediate(subject: try DistinguishedName("CN=Verifier Lower CA,O=swift-gnutls tests"), validityDays: 400)
        let leaf = try pki.server([.dnsName("deep.example.com")], by: lower)
        let verifier = try pki.verifier()
        let intermediates = [lower.certificate, pki.issuing.certificate]
        expectRejected([(.pathLengthExceeded, nil)]) {
            try verifier.verify(leaf, intermediates: intermediates, policy: serverPolicy(at: Date()) { $0.maximumIntermediates = 1 })
        }
        expectAccepted([leaf, lower.certificate, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: intermediates, policy: serverPolicy(at: Date()) { $0.maximumIntermediates = 2 })
        }
    }

    /// A root constrained to `constraints`, an unconstrained issuing CA below it, and an
    /// authority for that CA that does not know of the root (so it issues what the root's
    /// constraints forbid, as a misbehaving or compromised CA would).
    private func constrainedPKI(_ constraints: NameConstraints) throws -> (VerifierPKI, LocalAuthority) {
        let pki = try VerifierPKI(rootNameConstraints: constraints)
        let unaware = try LocalAuthority(certificate: pki.issuing.certificate, key: pki.issuingKey)
        return (pki, unaware)
    }

    @Test("a DNS name outside the root's permitted subtree: nameConstraintViolated at 0")
    func dnsNameConstraintViolated() throws {
        let (pki, unaware) = try constrainedPKI(NameConstraints(permittedDNSDomains: ["example.com"], excludedDNSDomains: ["secret.example.com"]))
        // The authority that knows the chain refuses.
        #expect(throws: IssuanceError.self) { try pki.server([.dnsName("www.example.org")]) }
        let verifier = try pki.verifier()
        let outside = try pki.server([.dnsName("www.example.org")], by: unaware)
        let error = expectRejected([(.nameConstraintViolated, 0)]) {
            try verifier.verify(outside, intermediates: [pki.issuing.certificate], policy: .server(host: "www.example.org"))
        }
        #expect(error?.problems.first?.message.contains("www.example.org") == true)
        let excluded = try pki.server([.dnsName("db.secret.example.com")], by: unaware)
        expectRejected([(.nameConstraintViolated, 0)]) {
            try verifier.verify(excluded, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()))
        }
        // One good and one bad name: still a violation.
        let mixed = try pki.server([.dnsName("www.example.com"), .dnsName("evil.example.net")], by: unaware)
        expectRejected([(.nameConstraintViolated, 0)]) {
            try verifier.verify(mixed, intermediates: [pki.issuing.certificate], policy: .server(host: "www.example.com"))
        }
        let inside = try pki.server([.dnsName("www.example.com")])
        expectAccepted([inside, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(inside, intermediates: [pki.issuing.certificate], policy: .server(host: "www.example.com"))
        }
    }

    @Test("an IP address outside the root's permitted range: nameConstraintViolated at 0")
    func ipNameConstraintViolated() throws {
        let (pki, unaware) = try constrainedPKI(NameConstraints(
            permittedDNSDomains: ["example.com"], permittedIPRanges: [IPNetwork("192.0.2.0/24")!], excludedIPRanges: [IPNetwork("192.0.2.128/25")!]))
        let verifier = try pki.verifier()
        let outside = try pki.server([.ipAddress(IPAddress("198.51.100.7")!)], by: unaware)
        let error = expectRejected([(.nameConstraintViolated, 0)]) {
            try verifier.verify(outside, intermediates: [pki.issuing.certificate], policy: .server(host: "198.51.100.7"))
        }
        #expect(error?.problems.first?.message.contains("198.51.100.7") == true)
        let excluded = try pki.server([.ipAddress(IPAddress("192.0.2.200")!)], by: unaware)
        expectRejected([(.nameConstraintViolated, 0)]) {
            try verifier.verify(excluded, intermediates: [pki.issuing.certificate], policy: .server(host: "192.0.2.200"))
        }
        let inside = try pki.server([.ipAddress(IPAddress("192.0.2.7")!)])
        expectAccepted([inside, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(inside, intermediates: [pki.issuing.certificate], policy: .server(host: "192.0.2.7"))
        }
    }
}

@Suite("Verifier: revocation")
struct VerifierRevocationTests {
    @Test("a revoked leaf: revoked at 0 with the date and reason; its sibling passes")
    func revokedLeaf() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let sibling = try pki.server([.dnsName("www.example.com")])
        let date = wholeSeconds(Date().addingTimeInterval(-3600))
        try pki.issuing.revoke(leaf, reason: .keyCompromise, date: date)
        let verifier = try pki.verifier(crls: [try pki.issuing.makeCRL()])
        let error = expectRejected([(.revoked, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
        }
        #expect(error?.problems.first?.revocationDate == date)
        #expect(error?.problems.first?.revocationReason == .keyCompromise)
        #expect(error?.problems.first?.subject == leaf.subject)
        expectAccepted([sibling, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(sibling, intermediates: [pki.issuing.certificate], policy: .server(host: "www.example.com"))
        }
        // Revocation checks switched off, loudly.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()) { $0.revocation = .disabledInsecure })
        }
    }

    @Test("a revoked intermediate: revoked at 1 with the date and reason")
    func revokedIntermediate() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let date = wholeSeconds(Date().addingTimeInterval(-120))
        try pki.root.revoke(pki.issuing.certificate, reason: .cACompromise, date: date)
        let verifier = try pki.verifier(crls: [try pki.root.makeCRL(), try pki.issuing.makeCRL()])
        let error = expectRejected([(.revoked, 1)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
        }
        #expect(error?.problems.first?.revocationDate == date)
        #expect(error?.problems.first?.revocationReason == .cACompromise)
        #expect(error?.problems.first?.subject == pki.issuing.certificate.subject)
    }

    @Test("a stale CRL (nextUpdate before the verification time): revocationStatusUnknown at 0")
    func staleCRL() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let crl = try pki.issuing.makeCRL(nextUpdateIn: 1)
        let verifier = try pki.verifier(crls: [crl])
        let error = expectRejected([(.revocationStatusUnknown, 0)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date().addingTimeInterval(2 * 86_400)))
        }
        #expect(error?.problems.first?.message.contains("stale") == true)
        // While the CRL is current the same chain passes.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate], policy: serverPolicy(at: Date()))
        }
    }

    @Test("a CRL claiming to be the issuer's but signed by another key (openssl): revocationStatusUnknown at 0")
    func crlSignedByWrongKey() async throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let ski = try #require(pki.issuing.certificate.subjectKeyIdentifier)
        try await withTemporaryDirectory { directory in
            // An impostor CA: the issuing CA's name and key identifier, another key.
            let impostorKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("impostor.key.pem"))
            let impostor = try await OpenSSLIssuer.selfSigned(
                key: impostorKey, subject: "/O=swift-gnutls tests/CN=Verifier Issuing CA",  // RFC 4514 lists the RDNs in reverse
                extensions: ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign",
                             "subjectKeyIdentifier = \(ski.map { String(format: "%02X", $0) }.joined(separator: ":"))"],
                out: directory.file("impostor.pem"), in: directory)
            let ca = try OpenSSLIssuer.CADirectory(certificate: impostor, key: impostorKey, in: directory)
            try await ca.revoke(try directory.write(leaf.pemEncoded, to: "leaf.pem"), reason: "keyCompromise")
            let crl = try await CertificateRevocationList.load(contentsOfFile: ca.generateCRL(out: directory.file("forged.crl.pem")))[0]
            #expect(crl.issuer == pki.issuing.certificate.subject)
            #expect(crl.authorityKeyIdentifier == ski)
            #expect(crl.entry(for: leaf.serialNumber) != nil)
            #expect(!crl.isSigned(by: pki.issuing.certificate))
            let error = expectRejected([(.revocationStatusUnknown, 0)]) {
                try pki.verifier(crls: [crl]).verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
            }
            #expect(error?.problems.first?.message.contains("not signed") == true)
            // With a good CRL next to the forged one, the good one decides.
            expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
                try pki.verifier(crls: [crl, try pki.issuing.makeCRL()]).verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
            }
        }
    }

    @Test("a CRL from an issuer whose key usage lacks cRLSign (made by openssl) cannot be relied on: revocationStatusUnknown at 0")
    func crlIssuerWithoutCRLSign() async throws {
        let pki = try VerifierPKI()
        try await withTemporaryDirectory { directory in
            let (ca, leaf, caPath, caKey) = try await pki.opensslCA(
                subject: "/O=swift-gnutls tests/CN=No CRLSign CA",
                extensions: ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign",
                             "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"], in: directory)
            let crlPath = try await OpenSSLIssuer.CADirectory(certificate: caPath, key: caKey, in: directory).generateCRL(out: directory.file("ca.crl.pem"))
            let crl = try CertificateRevocationList.load(contentsOfFile: crlPath)[0]
            #expect(crl.isSigned(by: ca))
            // Without the CRL the chain is fine; with it, revocation cannot be established.
            expectAccepted([leaf, ca, pki.root.certificate]) {
                try pki.verifier().verify(leaf, intermediates: [ca], policy: .server(host: "api.example.com"))
            }
            let error = expectRejected([(.revocationStatusUnknown, 0)]) {
                try pki.verifier(crls: [crl]).verify(leaf, intermediates: [ca], policy: .server(host: "api.example.com"))
            }
            #expect(error?.problems.first?.message.contains("cRLSign") == true)
        }
    }

    @Test("a CRL from another CA of the same name (another key identifier) neither revokes nor vouches")
    func crlOfAnotherCAWithTheSameName() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let namesakeKey = try KeyPair.generate(.ecdsaP256)
        let namesake = try LocalAuthority.createRoot(subject: pki.issuing.certificate.subject, key: namesakeKey)
        let crl = try CertificateRevocationList.create(
            issuer: namesake.certificate, key: namesakeKey, number: SerialNumber(bytes: [1]), nextUpdate: Date().addingTimeInterval(86_400),
            entries: [.init(serialNumber: leaf.serialNumber, revocationDate: wholeSeconds(Date().addingTimeInterval(-60)), reason: .keyCompromise)])
        #expect(crl.issuer == pki.issuing.certificate.subject)
        #expect(crl.authorityKeyIdentifier != pki.issuing.certificate.subjectKeyIdentifier)
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try pki.verifier(crls: [crl]).verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
        }
        let rootCRL = try pki.root.makeCRL()
        expectRejected([(.revocationStatusUnknown, 0)]) {
            try pki.verifier(crls: [crl, rootCRL]).verify(leaf, intermediates: [pki.issuing.certificate],
                                                          policy: serverPolicy(at: Date()) { $0.revocation = .requireCRLs })
        }
    }

    @Test("CRLs required but none given: revocationStatusUnknown at every position below the anchor")
    func requireCRLsWithoutCRL() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let required = serverPolicy([.dnsName("api.example.com")], at: Date()) { $0.revocation = .requireCRLs }
        expectRejected([(.revocationStatusUnknown, 0), (.revocationStatusUnknown, 1)]) {
            try pki.verifier().verify(leaf, intermediates: [pki.issuing.certificate], policy: required)
        }
        // The issuing CA's CRL covers the leaf; the intermediate still lacks the root's.
        let issuingCRL = try pki.issuing.makeCRL()
        let requiredAfterIssuingCRL = serverPolicy([.dnsName("api.example.com")], at: Date()) { $0.revocation = .requireCRLs }
        let error = expectRejected([(.revocationStatusUnknown, 1)]) {
            try pki.verifier(crls: [issuingCRL]).verify(leaf, intermediates: [pki.issuing.certificate], policy: requiredAfterIssuingCRL)
        }
        #expect(error?.problems.first?.subject == pki.issuing.certificate.subject)
        // The verification time is taken after both CRLs exist: on a loaded machine a time
        // taken earlier can precede the root CRL's thisUpdate (a CRL not yet valid).
        let rootCRL = try pki.root.makeCRL()
        let requiredNow = serverPolicy([.dnsName("api.example.com")], at: Date()) { $0.revocation = .requireCRLs }
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try pki.verifier(crls: [issuingCRL, rootCRL]).verify(leaf, intermediates: [pki.issuing.certificate], policy: requiredNow)
        }
        // The default policy passes certificates whose issuer published no CRL.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try pki.verifier().verify(leaf, intermediates: [pki.issuing.certificate], policy: .server(host: "api.example.com"))
        }
    }
}

@Suite("Verifier: algorithm strength")
struct VerifierAlgorithmTests {
    /// An RSA-2048/SHA-256 root made by openssl and a leaf below it with `leafKey` signed
    /// with `digest`.
    private func opensslChain(leafKey spec: String, digest: String, in directory: TemporaryDirectory) async throws -> (root: Certificate, leaf: Certificate) {
        let rootKey = try await OpenSSL.generateKey("rsa:2048", to: directory.file("root.key.pem"))
        let rootPath = try await OpenSSLIssuer.selfSigned(
            key: rootKey, subject: "/CN=OpenSSL Root/O=swift-gnutls tests",
            extensions: ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign", "subjectKeyIdentifier = hash"],
            out: directory.file("root.pem"), in: directory)
        let leafKey = try await OpenSSL.generateKey(spec, to: directory.file("leaf.key.pem"))
        let leafPath = try await OpenSSLIssuer.issue(
            key: leafKey, subject: "/CN=legacy.example.com", issuerCertificate: rootPath, issuerKey: rootKey,
            extensions: OpenSSLIssuer.serverExtensions(names: ["DNS:legacy.example.com"]), digest: digest,
            out: directory.file("leaf.pem"), in: directory)
        return (try Certificate.load(contentsOfFile: rootPath)[0], try Certificate.load(contentsOfFile: leafPath)[0])
    }

    private func policy(_ profile: SecurityProfile) -> VerificationPolicy {
        VerificationPolicy(purposes: [.serverAuth], expectedNames: [.dnsName("legacy.example.com")], time: Date(), securityProfile: profile)
    }

    @Test("an RSA-1024 leaf: insecureAlgorithm at 0 under medium and high; accepted under low")
    func rsa1024Leaf() async throws {
        try await withTemporaryDirectory { directory in
            let (root, leaf) = try await opensslChain(leafKey: "rsa:1024", digest: "sha256", in: directory)
            let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
            let error = expectRejected([(.insecureAlgorithm, 0)]) { try verifier.verify(leaf, policy: policy(.medium)) }
            #expect(error?.problems.first?.message.contains("1024") == true)
            // The default profile is medium.
            expectRejected([(.insecureAlgorithm, 0)]) { try verifier.verify(leaf, policy: .server(host: "legacy.example.com")) }
            // High also refuses the RSA-2048 root.
            expectRejected([(.insecureAlgorithm, 0), (.insecureAlgorithm, 1)]) { try verifier.verify(leaf, policy: policy(.high)) }
            expectAccepted([leaf, root]) { try verifier.verify(leaf, policy: policy(.low)) }
        }
    }

    @Test("a SHA-1 signed leaf: insecureAlgorithm at 0 under medium; under low as the profile says")
    func sha1Leaf() async throws {
        try await withTemporaryDirectory { directory in
            let (root, leaf) = try await opensslChain(leafKey: "rsa:2048", digest: "sha1", in: directory)
            #expect(leaf.signatureAlgorithm.oid == "1.2.840.113549.1.1.5")
            let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
            let error = expectRejected([(.insecureAlgorithm, 0)]) { try verifier.verify(leaf, policy: policy(.medium)) }
            #expect(error?.problems.first?.message.contains("SHA1") == true)
            #expect(SecurityProfile.low.allowsSHA1)
            expectAccepted([leaf, root]) { try verifier.verify(leaf, policy: policy(.low)) }
        }
    }

    @Test("an RSA-2048 chain passes medium; high refuses every RSA-2048 key, the anchor's included")
    func highProfile() async throws {
        try await withTemporaryDirectory { directory in
            let (root, leaf) = try await opensslChain(leafKey: "rsa:2048", digest: "sha256", in: directory)
            let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
            expectAccepted([leaf, root]) { try verifier.verify(leaf, policy: policy(.medium)) }
            expectRejected([(.insecureAlgorithm, 0), (.insecureAlgorithm, 1)]) { try verifier.verify(leaf, policy: policy(.high)) }
        }
    }

    @Test("an allow-list of signature algorithms: a leaf signed otherwise is insecureAlgorithm at 0")
    func allowedSignatureAlgorithms() throws {
        let pki = try VerifierPKI()
        let leaf = try pki.server([.dnsName("api.example.com")])
        let verifier = try pki.verifier()
        // ECDSA P-256 keys sign with ECDSA-SHA256.
        expectAccepted([leaf, pki.issuing.certificate, pki.root.certificate]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy(at: Date()) { $0.allowedSignatureAlgorithms = ["1.2.840.10045.4.3.2"] })
        }
        expectRejected([(.insecureAlgorithm, 0), (.insecureAlgorithm, 1)]) {
            try verifier.verify(leaf, intermediates: [pki.issuing.certificate],
                                policy: serverPolicy(at: Date()) { $0.allowedSignatureAlgorithms = ["1.2.840.10045.4.3.3"] })
        }
    }
}
