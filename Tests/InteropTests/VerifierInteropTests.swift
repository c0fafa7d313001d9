import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// A root and an issuing CA made by the library, with their keys written as files so
/// that `certtool` and `openssl ca` can sign CRLs in the issuing CA's name.
private struct RevocationPKI {
    let directory: TemporaryDirectory
    let root: LocalAuthority
    let issuing: LocalAuthority
    let revoked: Certificate
    let good: Certificate

    init() throws {
        directory = try TemporaryDirectory(prefix: "verifier-interop")
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Interop Verifier Root,O=swift-gnutls tests"))
        let issuingKey = try KeyPair.generate(.ecdsaP256)
        let issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Interop Verifier Issuing CA,O=swift-gnutls tests"), key: issuingKey)
        let leaf = { (host: String) throws -> Certificate in
            let request = try CertificateRequest.create(
                subject: try DistinguishedName("CN=\(host)"), key: KeyPair.generate(.ecdsaP256), alternativeNames: [.dnsName(host)])
            return try issuing.issue(request, profile: .tlsServer)
        }
        self.issuing = issuing
        revoked = try leaf("revoked.example.com")
        good = try leaf("good.example.com")
        try directory.write(root.certificate.pemEncoded, to: "root.pem")
        try directory.write(issuing.certificate.pemEncoded, to: "issuing.pem")
        try directory.write(try issuingKey.pemEncoded(), to: "issuing.key.pem")
        try directory.write(revoked.pemEncoded, to: "revoked.pem")
        try directory.write(good.pemEncoded, to: "good.pem")
    }

    func path(_ name: String) -> String { directory.file(name) }

    /// Checks that `crl` revokes `revoked` (at `date`, for `reason`) and lets `good` pass.
    func expectHonoured(_ crl: CertificateRevocationList, date: Date, reason: RevocationReason?,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root.certificate], crls: [crl]))
        do {
            let chain = try verifier.verify(revoked, intermediates: [issuing.certificate], policy: .server(host: "revoked.example.com"))
            Issue.record("a revoked certificate was accepted: \(chain.certificates.map(\.subject))", sourceLocation: sourceLocation)
        } catch let error as VerificationError {
            #expect(error.problems.map(\.reason) == [.revoked], "\(error)", sourceLocation: sourceLocation)
            #expect(error.problems.first?.position == 0, "\(error)", sourceLocation: sourceLocation)
            #expect(error.problems.first?.revocationDate == date, "\(error)", sourceLocation: sourceLocation)
            #expect(error.problems.first?.revocationReason == reason, "\(error)", sourceLocation: sourceLocation)
        }
        let chain = try verifier.verify(good, intermediates: [issuing.certificate], policy: .server(host: "good.example.com"))
        #expect(chain.certificates == [good, issuing.certificate, root.certificate], sourceLocation: sourceLocation)
    }
}

/// Text of `date` for certtool templates (`YYYY-MM-DD HH:MM:SS`, read as UTC with TZ=UTC).
private func certtoolDate(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return formatter.string(from: date)
}

@Suite("Interop: the Verifier agrees with certtool and openssl")
struct VerifierInteropTests {
    @Test("a CRL from certtool --generate-crl revokes the leaf it lists, with its date; the other leaf passes")
    func certtoolCRL() async throws {
        let pki = try RevocationPKI()
        defer { pki.directory.remove() }
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let revokedAt = now.addingTimeInterval(-3600)
        let template = try pki.directory.write("""
            crl_next_update = 7
            crl_number = 42
            crl_this_update_date = "\(certtoolDate(now.addingTimeInterval(-600)))"
            crl_revocation_date = "\(certtoolDate(revokedAt))"

            """, to: "crl.tmpl")
        let result = try await Tool.run(["certtool", "--generate-crl", "--load-ca-privkey", pki.path("issuing.key.pem"),
                                   "--load-ca-certificate", pki.path("issuing.pem"), "--load-certificate", pki.path("revoked.pem"),
                                   "--template", template, "--outfile", pki.path("certtool.crl.pem")],
                                  timeout: 60, environment: ["TZ": "UTC"], package: "gnutls-bin")
        #expect(result.succeeded, "\(result)")
        let crl = try #require(try CertificateRevocationList.load(contentsOfFile: pki.path("certtool.crl.pem")).first)
        #expect(crl.number == 42)
        #expect(crl.entries.map(\.serialNumber) == [pki.revoked.serialNumber])
        // openssl reads the same date out of the CRL.
        #expect(try await OpenSSLIssuer.revocationDates(ofCRL: pki.path("certtool.crl.pem"))[pki.revoked.serialNumber.hexString.uppercased()] == revokedAt)
        try pki.expectHonoured(crl, date: revokedAt, reason: nil)
    }

    @Test("a CRL from openssl ca -gencrl revokes the leaf it lists, with its date and reason; the other leaf passes")
    func opensslCRL() async throws {
        let pki = try RevocationPKI()
        defer { pki.directory.remove() }
        let ca = try OpenSSLIssuer.CADirectory(certificate: pki.path("issuing.pem"), key: pki.path("issuing.key.pem"), in: pki.directory)
        try await ca.revoke(pki.path("revoked.pem"), reason: "keyCompromise")
        let crlPath = try await ca.generateCRL(out: pki.path("openssl.crl.pem"))
        let crl = try #require(try CertificateRevocationList.load(contentsOfFile: crlPath).first)
        #expect(crl.version == 2)
        #expect(crl.authorityKeyIdentifier == pki.issuing.certificate.subjectKeyIdentifier)
        let dates = try await OpenSSLIssuer.revocationDates(ofCRL: crlPath)
        let date = try #require(dates[pki.revoked.serialNumber.hexString.uppercased()], "openssl's CRL text: \(dates)")
        try pki.expectHonoured(crl, date: date, reason: .keyCompromise)

        // openssl verify -crl_check agrees on both leaves.
        let base = ["openssl", "verify", "-crl_check", "-CRLfile", crlPath, "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("issuing.pem")]
        let revoked = try await Tool.run(base + [pki.path("revoked.pem")])
        #expect(!revoked.succeeded && revoked.output.contains("revoked"), "\(revoked)")
        let good = try await Tool.run(base + [pki.path("good.pem")])
        #expect(good.succeeded, "\(good)")
    }

    /// An openssl-made root, intermediate (with `intermediateExtensions`) and server leaf
    /// for `api.example.com`, each as a file.
    private func opensslChain(intermediateExtensions: [String], in directory: TemporaryDirectory) async throws -> (root: String, intermediate: String, leaf: String) {
        let rootKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("root.key.pem"))
        let root = try await OpenSSLIssuer.selfSigned(key: rootKey, subject: "/O=openssl interop/CN=OpenSSL Root",
                                                extensions: OpenSSLIssuer.caExtensions(), days: 60, out: directory.file("root.pem"), in: directory)
        let intermediateKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("intermediate.key.pem"))
        let intermediate = try await OpenSSLIssuer.issue(
            key: intermediateKey, subject: "/O=openssl interop/CN=OpenSSL Intermediate", issuerCertificate: root, issuerKey: rootKey,
            extensions: intermediateExtensions, days: 45, out: directory.file("intermediate.pem"), in: directory)
        let leafKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("leaf.key.pem"))
        let leaf = try await OpenSSLIssuer.issue(
            key: leafKey, subject: "/O=openssl interop/CN=api.example.com", issuerCertificate: intermediate, issuerKey: intermediateKey,
            extensions: OpenSSLIssuer.serverExtensions(names: ["DNS:api.example.com"]), days: 30, out: directory.file("leaf.pem"), in: directory)
        return (root, intermediate, leaf)
    }

    private func opensslVerify(_ chain: (root: String, intermediate: String, leaf: String)) async throws -> ProcessResult {
        try await Tool.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "api.example.com",
                      "-CAfile", chain.root, "-untrusted", chain.intermediate, chain.leaf])
    }

    private func ourVerdict(_ chain: (root: String, intermediate: String, leaf: String)) throws -> (Result<VerifiedChain, Error>, [Certificate]) {
        let root = try Certificate.load(contentsOfFile: chain.root)[0]
        let intermediate = try Certificate.load(contentsOfFile: chain.intermediate)[0]
        let leaf = try Certificate.load(contentsOfFile: chain.leaf)[0]
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
        return (Result(catching: { try verifier.verify(leaf, intermediates: [intermediate], policy: .server(host: "api.example.com")) }), [leaf, intermediate, root])
    }

    @Test("a normal openssl-made chain: openssl verify accepts it, and so does the Verifier")
    func normalChainAgreement() async throws {
        let directory = try TemporaryDirectory(prefix: "verifier-interop")
        defer { directory.remove() }
        let chain = try await opensslChain(intermediateExtensions: OpenSSLIssuer.caExtensions(pathLength: 0), in: directory)
        let openssl = try await opensslVerify(chain)
        #expect(openssl.succeeded, "\(openssl)")
        let (verdict, certificates) = try ourVerdict(chain)
        switch verdict {
        case .success(let verified): #expect(verified.certificates == certificates)
        case .failure(let error): Issue.record("openssl accepts the chain, the Verifier rejects it: \(error)")
        }

        // And a chain the library issued, the other way round.
        let pki = try RevocationPKI()
        defer { pki.directory.remove() }
        let result = try await Tool.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "good.example.com",
                                   "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("issuing.pem"), pki.path("good.pem")])
        #expect(result.succeeded, "\(result)")
        let verified = try Verifier(trustStore: TrustStore(certificates: [pki.root.certificate]))
            .verify(pki.good, intermediates: [pki.issuing.certificate], policy: .server(host: "good.example.com"))
        #expect(verified.certificates == [pki.good, pki.issuing.certificate, pki.root.certificate])
    }

    @Test("an openssl-made chain whose intermediate is CA:FALSE: openssl verify and the Verifier both reject it (notCA at 1)")
    func caFalseIntermediateAgreement() async throws {
        let directory = try TemporaryDirectory(prefix: "verifier-interop")
        defer { directory.remove() }
        let chain = try await opensslChain(intermediateExtensions: [
            "basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
            "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always",
        ], in: directory)
        let openssl = try await opensslVerify(chain)
        #expect(!openssl.succeeded, "\(openssl)")
        #expect(openssl.output.contains("invalid CA certificate"), "\(openssl)")
        let (verdict, _) = try ourVerdict(chain)
        switch verdict {
        case .success(let verified): Issue.record("the Verifier accepted a chain through a CA:FALSE intermediate: \(verified.certificates.map(\.subject))")
        case .failure(let error as VerificationError):
            #expect(error.problems.map { "\($0.reason)@\($0.position.map(String.init) ?? "-")" } == ["notCA@1"], "\(error)")
        case .failure(let error): Issue.record("expected a VerificationError, got \(error)")
        }
    }
}
