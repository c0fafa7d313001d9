import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// Every certificate the authority issues passes pkilint's RFC 5280 linter at WARNING
/// level with no findings.
@Suite("Interop: pkilint finds nothing to say about our certificates")
struct LintTests {
    static func lint(_ path: String) async throws -> ProcessResult {
        try await Tool.run(["lint_pkix_cert", "lint", "-s", "WARNING", path], timeout: 120, package: "pkilint")
    }

    @Test("root, intermediate, server and client", arguments: interopAlgorithms)
    func issuedCertificates(_ algorithm: KeyAlgorithm) async throws {
        try await withPKI(algorithm) { pki in
            for (file, _) in pki.certificates {
                let result = try await Self.lint(pki.path(file))
                #expect(result.exitCode == 0 && !result.timedOut, "\(file): \(result)")
                #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(file) has findings: \(result)")
            }
        }
    }

    @Test("the other sizes and profiles: P-384, P-521, RSA-4096, server+client, a root with name constraints")
    func otherShapes() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Lint Root,O=Example,C=US"), key: KeyPair.generate(.ecdsaP384),
                                                 nameConstraints: NameConstraints(permittedDNSDomains: ["example.net"]))
        let intermediate = try root.createIntermediate(subject: try DistinguishedName("CN=Lint Issuing,O=Example,C=US"), key: KeyPair.generate(.rsa4096))
        let leafKey = try KeyPair.generate(.ecdsaP521)
        let leaf = try intermediate.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=both.example.net"), key: leafKey,
                                      alternativeNames: [.dnsName("both.example.net"), .ipAddress(IPAddress("192.0.2.9")!)]),
            profile: .tlsServerClient, options: IssuanceOptions(validityDays: 397, ocspURLs: ["http://ocsp.example.net"]))
        for (index, certificate) in [root.certificate, intermediate.certificate, leaf].enumerated() {
            let path = try directory.write(certificate.pemEncoded, to: "\(index).pem")
            let result = try await Self.lint(path)
            #expect(result.exitCode == 0 && !result.timedOut, "\(certificate.subject): \(result)")
            #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(certificate.subject) has findings: \(result)")
        }
    }

    /// pkilint checks dNSName against RFC 5280's preferred name syntax (no `*`) and URIs
    /// with a URL validator that knows only common schemes, so a wildcard and a SPIFFE ID
    /// each draw one finding. Both names are what the caller asked for and both are
    /// accepted by openssl; this test pins the findings to exactly those two.
    @Test("wildcard DNS names and SPIFFE IDs: openssl accepts them, pkilint reports only its two syntax findings")
    func wildcardAndSPIFFE() async throws {
        try await withPKI(.ecdsaP256) { pki in
            let key = try KeyPair.generate()
            let certificate = try pki.intermediate.issue(
                CertificateRequest.create(subject: try DistinguishedName("CN=workload"), key: key,
                                          alternativeNames: [.dnsName("*.api.example.com"), .uri("spiffe://example.com/ns/prod/sa/api")]),
                profile: .tlsServerClient, options: IssuanceOptions(validityDays: 30))
            let path = try pki.directory.write(certificate.pemEncoded, to: "workload.pem")
            let text = try await opensslText(path)
            #expect(text.contains("DNS:*.api.example.com, URI:spiffe://example.com/ns/prod/sa/api"), "\(text)")
            let verify = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                       "-verify_hostname", "v1.api.example.com", path])
            #expect(verify.succeeded, "\(verify)")

            let result = try await Self.lint(path)
            let findings = result.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { $0.contains("(") && $0.contains("):") }
            #expect(findings.count == 2, "\(result)")
            #expect(findings.contains { $0.hasPrefix("pkix.invalid_domain_name_syntax (ERROR)") && $0.contains("*.api.example.com") }, "\(result)")
            #expect(findings.contains { $0.hasPrefix("pkix.invalid_uri_syntax (ERROR)") && $0.contains("spiffe://") }, "\(result)")
        }
    }

    @Test("the linter does report a certificate that breaks RFC 5280 (the check can fail)")
    func linterReportsProblems() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let key = try await OpenSSL.generateKey("ec:P-256", to: directory.file("key.pem"))
        let path = directory.file("bad.pem")
        // A CA without key usage and a non-critical basic constraints extension.
        try await Tool.runChecked(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=Bad CA", "-days", "1",
                             "-addext", "basicConstraints=CA:TRUE", "-addext", "keyUsage=digitalSignature", "-out", path])
        let result = try await Self.lint(path)
        #expect(!result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result)")
    }
}
