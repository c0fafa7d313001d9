import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

// Issue 9, part 1: the default profile is RFC 5280 + RFC 9525 (the CN is never used, never
// judged, and never name-constrained when the leaf has SANs); `.webPKI` adds the CA/Browser
// Forum rules. Chains are built at run time by LocalAuthority.

private struct ProfilePKI {
    let root: LocalAuthority
    let issuing: LocalAuthority
    /// The issuing CA without its chain: it signs what the root's constraints forbid.
    let unaware: LocalAuthority
    let issuingKey: KeyPair

    init(rootConstraints: NameConstraints? = nil) throws {
        let rootKey = try KeyPair.generate(.ecdsaP256)
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Profile Root,O=swift-gnutls tests"), key: rootKey,
                                             nameConstraints: rootConstraints)
        issuingKey = try KeyPair.generate(.ecdsaP256)
        issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Profile Issuing CA,O=swift-gnutls tests"), key: issuingKey)
        unaware = try LocalAuthority(certificate: issuing.certificate, key: issuingKey)
    }

    func leaf(commonName: String, names: [GeneralName], profile: CertificateProfile = .tlsServer) async throws -> Certificate {
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=\(commonName),O=swift-gnutls tests"), key: KeyPair.generate(.ecdsaP256), alternativeNames: names)
        do {
            return try unaware.issue(request, profile: profile)
        } catch let error as IssuanceError where error.reason == .commonNameNotInAlternativeNames {
            // Our CA refuses a server certificate whose host-name CN is not one of its SANs
            // (issue 8); other CAs issue them, and the verifier must judge them by profile.
            return try await Self.issueWithOpenSSL(commonName: commonName, names: names, issuer: issuing, issuerKey: issuingKey)
        }
    }

    /// A server certificate signed by `issuer` through `openssl x509 -req`, with exactly the
    /// extensions our CA would write (SANs, serverAuth, digitalSignature, key identifiers).
    static func issueWithOpenSSL(commonName: String, names: [GeneralName], issuer: LocalAuthority, issuerKey key: KeyPair) async throws -> Certificate {
        let directory = try TemporaryDirectory()
        let issuerCertificate = try directory.write(issuer.certificate.pemEncoded, to: "issuer.pem")
        let issuerKey = try directory.write(try key.pemEncoded(), to: "issuer-key.pem")
        let leafKey = try directory.write(try KeyPair.generate(.ecdsaP256).pemEncoded(), to: "leaf-key.pem")
        let sans = names.compactMap { name -> String? in
            if let dns = name.dnsName { return "DNS:\(dns)" }
            if let ip = name.ipAddress { return "IP:\(ip)" }
            return nil
        }
        let extensions = ["basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
                          "extendedKeyUsage = serverAuth", "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always",
                          "subjectAltName = " + sans.joined(separator: ", ")]
        let out = try await OpenSSLIssuer.issue(key: leafKey, subject: "/CN=\(commonName)/O=swift-gnutls tests", issuerCertificate: issuerCertificate,
                                          issuerKey: issuerKey, extensions: extensions, out: directory.file("leaf.pem"), in: directory)
        return try #require(try Certificate.load(contentsOfFile: out).first)
    }

    func verify(_ leaf: Certificate, _ policy: VerificationPolicy) throws -> VerifiedChain {
        try Verifier(trustStore: TrustStore(certificates: [root.certificate]))
            .verify(leaf, intermediates: [issuing.certificate], policy: policy)
    }
}

private func webPKI(_ policy: VerificationPolicy) -> VerificationPolicy {
    var policy = policy
    policy.profile = .webPKI
    return policy
}

@Suite("Verification profiles: RFC 5280 + RFC 9525 by default, the Web PKI on request")
struct VerificationProfileTests {
    @Test("default: a CN that is not among the SANs (a private-PKI pattern) is neither used nor judged")
    func commonNameNotAmongSANs() async throws {
        let pki = try ProfilePKI()
        let leaf = try await pki.leaf(commonName: "api.internal.example", names: [.dnsName("svc.default.svc")])
        #expect(VerificationPolicy().profile == .rfc5280)
        let chain = try pki.verify(leaf, .server(host: "svc.default.svc"))
        #expect(chain.certificates == [leaf, pki.issuing.certificate, pki.root.certificate])
        // Never used for matching.
        let mismatch = #expect(throws: VerificationError.self) { try pki.verify(leaf, .server(host: "api.internal.example")) }
        #expect(mismatch?.problems.map(\.reason) == [.nameMismatch])
        // The Web PKI profile judges it (CA/B Forum 7.1.4.3).
        let judged = #expect(throws: VerificationError.self) { try pki.verify(leaf, webPKI(.server(host: "svc.default.svc"))) }
        #expect(judged?.problems.contains { $0.reason == .malformedCertificate && $0.message.contains("7.1.4.3") } == true)
        // A leaf whose CN copies a SAN passes both.
        let good = try await pki.leaf(commonName: "svc.default.svc", names: [.dnsName("svc.default.svc")])
        #expect(throws: Never.self) { try pki.verify(good, webPKI(.server(host: "svc.default.svc"))) }
    }

    @Test("default: name constraints never apply to the CN when SANs exist (a host-name CN, an IP CN)")
    func constraintsIgnoreCommonNameWithSANs() async throws {
        let pki = try ProfilePKI(rootConstraints: NameConstraints(permittedDNSDomains: ["example.com"], permittedIPRanges: [IPNetwork("10.0.0.0/8")!]))
        let hostCN = try await pki.leaf(commonName: "outside.test", names: [.dnsName("www.example.com")])
        #expect(throws: Never.self) { try pki.verify(hostCN, .server(host: "www.example.com")) }
        // An IP-address CN was checked as a DNS name although the SAN holds the same IP.
        let ipCN = try await pki.leaf(commonName: "10.1.2.3", names: [.ipAddress(IPAddress("10.1.2.3")!)])
        #expect(throws: Never.self) { try pki.verify(ipCN, .server(host: "10.1.2.3")) }
        // The SANs themselves are still constrained.
        let outside = try await pki.leaf(commonName: "www.example.com", names: [.dnsName("www.example.org")])
        let error = #expect(throws: VerificationError.self) { try pki.verify(outside, .server(host: "www.example.org")) }
        #expect(error?.contains(.nameConstraintViolated) == true)
    }

    @Test("a leaf without any SAN: its CN is constrained (a host name as DNS, an IP address as IP)")
    func constraintsApplyToCommonNameWithoutSANs() async throws {
        let pki = try ProfilePKI(rootConstraints: NameConstraints(permittedDNSDomains: ["example.com"], permittedIPRanges: [IPNetwork("10.0.0.0/8")!]))
        // The authority issues client certificates without alternative names.
        let outsideHost = try await pki.leaf(commonName: "db.example.org", names: [], profile: .tlsClient)
        let error = #expect(throws: VerificationError.self) { try pki.verify(outsideHost, .client()) }
        #expect(error?.contains(.nameConstraintViolated) == true)
        let outsideIP = try await pki.leaf(commonName: "192.0.2.1", names: [], profile: .tlsClient)
        #expect(throws: VerificationError.self) { try pki.verify(outsideIP, .client()) }
        let inside = try await pki.leaf(commonName: "db.example.com", names: [], profile: .tlsClient)
        #expect(throws: Never.self) { try pki.verify(inside, .client()) }
        let insideIP = try await pki.leaf(commonName: "10.9.9.9", names: [], profile: .tlsClient)
        #expect(throws: Never.self) { try pki.verify(insideIP, .client()) }
    }

    @Test("web PKI: a leaf without SANs is refused; the default accepts it when no name is asked")
    func webPKIRequiresSANs() async throws {
        let pki = try ProfilePKI()
        let bare = try await pki.leaf(commonName: "alice", names: [], profile: .tlsClient)
        #expect(throws: Never.self) { try pki.verify(bare, .client()) }
        let error = #expect(throws: VerificationError.self) { try pki.verify(bare, webPKI(.client())) }
        #expect(error?.problems.contains { $0.message.contains("no subject alternative names") } == true)
    }
}

/// The profile checks a certificate passed are remembered with it, by the flags they ran
/// with (leaf, anchor, web PKI): a pass in one role never stands in for another.
@Suite struct ProfileCheckMemoTests {
    @Test("a name-constrained CA that passed as an intermediate is still refused as a leaf, every time")
    func passAsIntermediateIsNotAPassAsLeaf() throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Memo Root,O=swift-gnutls tests"))
        let constrained = try root.createIntermediate(
            subject: try DistinguishedName("CN=Memo Constrained CA,O=swift-gnutls tests"),
            nameConstraints: NameConstraints(permittedDNSDomains: ["example.com"]))
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=www.example.com"), key: KeyPair.generate(.ecdsaP256), alternativeNames: [.dnsName("www.example.com")])
        let leaf = try constrained.issue(request, profile: .tlsServer)
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root.certificate]))
        // Passes as an intermediate (twice: the second time from the memo).
        for _ in 0..<2 {
            try verifier.verify(leaf, intermediates: [constrained.certificate], policy: .init(purposes: [.serverAuth]))
        }
        // The same certificate object as a leaf: an end entity must not carry name constraints.
        for _ in 0..<2 {
            do {
                try verifier.verify(constrained.certificate, policy: .init(purposes: []))
                Issue.record("a CA certificate with name constraints was accepted as a leaf")
            } catch let error as VerificationError {
                #expect(error.problems.contains { $0.message.contains("carries name constraints") })
            }
        }
    }
}
