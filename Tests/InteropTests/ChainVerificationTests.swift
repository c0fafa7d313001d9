import Foundation
import GnuTLS
import Testing
import TestSupport

/// Certificates the library issues are accepted by OpenSSL's and GnuTLS's own verifiers.
@Suite("Interop: issued chains verify with openssl and certtool")
struct ChainVerificationTests {
    @Test("openssl verify -CAfile ROOT -untrusted INTERMEDIATE LEAF", arguments: interopAlgorithms)
    func opensslVerify(_ algorithm: KeyAlgorithm) throws {
        try withPKI(algorithm) { pki in
            for (leaf, purpose) in [("server.pem", "sslserver"), ("client.pem", "sslclient")] {
                let result = try Tool.run(["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", pki.path("root.pem"),
                                           "-untrusted", pki.path("intermediate.pem"), pki.path(leaf)], timeout: 60)
                #expect(result.succeeded, "\(result)")
                #expect(result.standardOutput.contains("\(pki.path(leaf)): OK"), "\(result)")
            }
            // Host name, IP and email checks against what was asked.
            let named = try Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                      "-verify_hostname", "www.api.example.com", "-verify_ip", "::1", pki.path("server.pem")], timeout: 60)
            #expect(named.succeeded, "\(named)")
            let email = try Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                      "-verify_email", "alice@example.com", pki.path("client.pem")], timeout: 60)
            #expect(email.succeeded, "\(email)")
            // The intermediate verifies on its own against the root.
            let intermediate = try Tool.run(["openssl", "verify", "-x509_strict", "-CAfile", pki.path("root.pem"), pki.path("intermediate.pem")])
            #expect(intermediate.succeeded, "\(intermediate)")

            // Negative controls: the same command refuses what it should.
            let wrongPurpose = try Tool.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", pki.path("root.pem"),
                                             "-untrusted", pki.path("intermediate.pem"), pki.path("server.pem")])
            #expect(!wrongPurpose.succeeded, "a server-only certificate passed as a client: \(wrongPurpose)")
            let wrongHost = try Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                          "-verify_hostname", "db.example.org", pki.path("server.pem")])
            #expect(!wrongHost.succeeded, "\(wrongHost)")
            let noIntermediate = try Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), pki.path("server.pem")])
            #expect(!noIntermediate.succeeded, "\(noIntermediate)")
        }
    }

    @Test("a leaf of another root does not verify (the check can fail)")
    func foreignRoot() throws {
        try withPKI(.ecdsaP256) { pki in
            let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Interop Root ecdsa-p256,O=Example Interop,C=US"))
            let otherRoot = try pki.directory.write(other.certificate.pemEncoded, to: "other-root.pem")
            let result = try Tool.run(["openssl", "verify", "-CAfile", otherRoot, "-untrusted", pki.path("intermediate.pem"), pki.path("server.pem")])
            #expect(!result.succeeded, "\(result)")
            let certtool = try Tool.run(["certtool", "--verify", "--load-ca-certificate", otherRoot, "--infile", pki.path("server-chain.pem")],
                                        package: "gnutls-bin")
            #expect(!certtool.succeeded, "\(certtool)")
        }
    }

    @Test("certtool --verify --load-ca-certificate ROOT", arguments: interopAlgorithms)
    func certtoolVerify(_ algorithm: KeyAlgorithm) throws {
        try withPKI(algorithm) { pki in
            for (chain, extra) in [("server-chain.pem", ["--verify-hostname", "api.example.com", "--verify-purpose", "1.3.6.1.5.5.7.3.1"]),
                                   ("client-chain.pem", ["--verify-email", "alice@example.com", "--verify-purpose", "1.3.6.1.5.5.7.3.2"])] {
                let result = try Tool.run(["certtool", "--verify", "--verify-profile", "medium", "--load-ca-certificate", pki.path("root.pem"),
                                           "--infile", pki.path(chain)] + extra, timeout: 60, package: "gnutls-bin")
                #expect(result.succeeded, "\(result)")
                #expect(result.output.contains("Chain verification output: Verified"), "\(result)")
            }
            let wrongHost = try Tool.run(["certtool", "--verify", "--load-ca-certificate", pki.path("root.pem"), "--infile", pki.path("server-chain.pem"),
                                          "--verify-hostname", "db.example.org"], package: "gnutls-bin")
            #expect(!wrongHost.succeeded, "\(wrongHost)")
        }
    }
}
