import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// Certificates the library issues are accepted by OpenSSL's and GnuTLS's own verifiers.
@Suite("Interop: issued chains verify with openssl and certtool")
struct ChainVerificationTests {
    @Test("openssl verify -CAfile ROOT -untrusted INTERMEDIATE LEAF", arguments: interopAlgorithms)
    func opensslVerify(_ algorithm: KeyAlgorithm) async throws {
        try await withPKI(algorithm) { pki in
            for (leaf, purpose) in [("server.pem", "sslserver"), ("client.pem", "sslclient")] {
                let result = try await Tool.run(["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", pki.path("root.pem"),
                                           "-untrusted", pki.path("intermediate.pem"), pki.path(leaf)], timeout: 60)
                #expect(result.succeeded, "\(result)")
                #expect(result.standardOutput.contains("\(pki.path(leaf)): OK"), "\(result)")
            }
            // Host name, IP and email checks against what was asked.
            let named = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                      "-verify_hostname", "www.api.example.com", "-verify_ip", "::1", pki.path("server.pem")], timeout: 60)
            #expect(named.succeeded, "\(named)")
            let email = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                      "-verify_email", "alice@example.com", pki.path("client.pem")], timeout: 60)
            #expect(email.succeeded, "\(email)")
            // The intermediate verifies on its own against the root.
            let intermediate = try await Tool.run(["openssl", "verify", "-x509_strict", "-CAfile", pki.path("root.pem"), pki.path("intermediate.pem")])
            #expect(intermediate.succeeded, "\(intermediate)")

            // Negative controls: the same command refuses what it should.
            let wrongPurpose = try await Tool.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", pki.path("root.pem"),
                                             "-untrusted", pki.path("intermediate.pem"), pki.path("server.pem")])
            #expect(!wrongPurpose.succeeded, "a server-only certificate passed as a client: \(wrongPurpose)")
            let wrongHost = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                          "-verify_hostname", "db.example.org", pki.path("server.pem")])
            #expect(!wrongHost.succeeded, "\(wrongHost)")
            let noIntermediate = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), pki.path("server.pem")])
            #expect(!noIntermediate.succeeded, "\(noIntermediate)")
        }
    }

    @Test("a leaf of another root does not verify (the check can fail)")
    func foreignRoot() async throws {
        try await withPKI(.ecdsaP256) { pki in
            let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Interop Root ecdsa-p256,O=Example Interop,C=US"))
            let otherRoot = try pki.directory.write(other.certificate.pemEncoded, to: "other-root.pem")
            let result = try await Tool.run(["openssl", "verify", "-CAfile", otherRoot, "-untrusted", pki.path("intermediate.pem"), pki.path("server.pem")])
            #expect(!result.succeeded, "\(result)")
            let certtool = try await Tool.run(["certtool", "--verify", "--load-ca-certificate", otherRoot, "--infile", pki.path("server-chain.pem")],
                                        package: "gnutls-bin")
            #expect(!certtool.succeeded, "\(certtool)")
        }
    }

    @Test("a chain of mixed algorithms: RSA-3072 root, P-384 intermediate, Ed25519 and P-521 leaves")
    func mixedAlgorithms() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Mixed Root"), key: KeyPair.generate(.rsa3072))
        let intermediate = try root.createIntermediate(subject: try DistinguishedName("CN=Mixed Issuing"), key: KeyPair.generate(.ecdsaP384),
                                                       pathLength: 0)
        #expect(intermediate.certificate.signatureAlgorithm.oid == "1.2.840.113549.1.1.11")  // RSA with SHA-256
        let rootPath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let intermediatePath = try directory.write(intermediate.certificate.pemEncoded, to: "intermediate.pem")
        for algorithm in [KeyAlgorithm.ed25519, .ecdsaP521, .rsa4096] {
            let leaf = try intermediate.issue(
                CertificateRequest.create(subject: try DistinguishedName("CN=\(algorithm).example.com"), key: KeyPair.generate(algorithm),
                                          alternativeNames: [.dnsName("\(algorithm).example.com")]),
                profile: .tlsServerClient, options: IssuanceOptions(validityDays: 30))
            #expect(leaf.signatureAlgorithm.oid == "1.2.840.10045.4.3.3")  // ECDSA with SHA-384
            let leafPath = try directory.write(leaf.pemEncoded, to: "\(algorithm).pem")
            let verify = try await Tool.run(["openssl", "verify", "-x509_strict", "-CAfile", rootPath, "-untrusted", intermediatePath,
                                       "-verify_hostname", "\(algorithm).example.com", leafPath])
            #expect(verify.succeeded, "\(verify)")
            let chainPath = try directory.write(leaf.pemEncoded + intermediate.certificate.pemEncoded, to: "\(algorithm)-chain.pem")
            let certtool = try await Tool.run(["certtool", "--verify", "--verify-profile", "medium", "--load-ca-certificate", rootPath,
                                         "--infile", chainPath], package: "gnutls-bin")
            #expect(certtool.succeeded, "\(certtool)")
            let lint = try await LintTests.lint(leafPath)
            #expect(lint.exitCode == 0 && lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(lint)")
        }
    }

    @Test("certtool --verify --load-ca-certificate ROOT", arguments: interopAlgorithms)
    func certtoolVerify(_ algorithm: KeyAlgorithm) async throws {
        try await withPKI(algorithm) { pki in
            for (chain, extra) in [("server-chain.pem", ["--verify-hostname", "api.example.com", "--verify-purpose", "1.3.6.1.5.5.7.3.1"]),
                                   ("client-chain.pem", ["--verify-email", "alice@example.com", "--verify-purpose", "1.3.6.1.5.5.7.3.2"])] {
                let result = try await Tool.run(["certtool", "--verify", "--verify-profile", "medium", "--load-ca-certificate", pki.path("root.pem"),
                                           "--infile", pki.path(chain)] + extra, timeout: 60, package: "gnutls-bin")
                #expect(result.succeeded, "\(result)")
                #expect(result.output.contains("Chain verification output: Verified"), "\(result)")
            }
            let wrongHost = try await Tool.run(["certtool", "--verify", "--load-ca-certificate", pki.path("root.pem"), "--infile", pki.path("server-chain.pem"),
                                          "--verify-hostname", "db.example.org"], package: "gnutls-bin")
            #expect(!wrongHost.succeeded, "\(wrongHost)")
        }
    }
}
