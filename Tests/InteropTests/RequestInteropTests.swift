import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

@Suite("Interop: certificate requests both ways")
struct RequestInteropTests {
    @Test("our requests pass openssl req -verify and read back as asked", arguments: KeyAlgorithm.allCases)
    func ourRequestsVerify(_ algorithm: KeyAlgorithm) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let key = try KeyPair.generate(algorithm)
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=req.example.com,O=Example,C=US"), key: key,
            alternativeNames: [.dnsName("req.example.com"), .ipAddress(IPAddress("192.0.2.1")!), .uri("spiffe://example.com/req")],
            keyUsage: [.digitalSignature], extendedKeyUsage: [.serverAuth], challengePassword: "challenge!")
        let path = try directory.write(request.pemEncoded, to: "req.pem")
        let verify = try await Tool.run(["openssl", "req", "-in", path, "-verify", "-noout"])
        #expect(verify.succeeded, "\(verify)")
        #expect(verify.output.contains("verify OK"), "\(verify)")

        let text = try await Tool.runChecked(["openssl", "req", "-in", path, "-noout", "-text", "-nameopt", "RFC2253"]).standardOutput
        #expect(text.contains("Subject: CN=req.example.com,O=Example,C=US"), "\(text)")
        #expect(text.contains("DNS:req.example.com, IP Address:192.0.2.1, URI:spiffe://example.com/req"), "\(text)")
        #expect(text.contains("challengePassword"))
        #expect(text.contains("challenge!"))
        #expect(opensslSection(text, "X509v3 Extended Key Usage")?.contains("TLS Web Server Authentication") == true, "\(text)")

        // The DER form verifies too, and certtool reads the same request.
        let derPath = try directory.write(request.derEncoded, to: "req.der")
        #expect(try await Tool.run(["openssl", "req", "-inform", "DER", "-in", derPath, "-verify", "-noout"]).succeeded)
        let info = try await Tool.runChecked(["certtool", "--crq-info", "--infile", path], package: "gnutls-bin").standardOutput
        #expect(info.contains("req.example.com"))

        // Negative control: a corrupted signature fails openssl's check.
        var corrupted = request.derEncoded
        corrupted[corrupted.count - 1] ^= 0x01
        let corruptedPath = try directory.write(corrupted, to: "bad.der")
        let bad = try await Tool.run(["openssl", "req", "-inform", "DER", "-in", corruptedPath, "-verify", "-noout"])
        #expect(!bad.succeeded || !bad.output.contains("verify OK"), "\(bad)")
    }

    @Test("requests from openssl req are accepted and issued; the result verifies", arguments: ["rsa:2048", "ec:P-384", "ed25519"])
    func opensslRequestsIssued(_ keySpec: String) async throws {
        try await withPKI(.ecdsaP256) { pki in
            let keyPath = try await OpenSSL.generateKey(keySpec, to: pki.path("tool.key"))
            let requestPath = pki.path("tool.csr")
            try await Tool.runChecked(["openssl", "req", "-new", "-key", keyPath, "-subj", "/C=US/O=Example Interop/CN=tool.api.example.com",
                                 "-addext", "subjectAltName=DNS:tool.api.example.com,IP:127.0.0.2", "-out", requestPath])
            let request = try CertificateRequest(contentsOfFile: requestPath)
            #expect(request.isSignatureValid)
            let certificate = try pki.intermediate.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
            #expect(certificate.subject.description == "CN=tool.api.example.com,O=Example Interop,C=US")
            #expect(certificate.subjectAlternativeNames == [.dnsName("tool.api.example.com"), .ipAddress(IPAddress("127.0.0.2")!)])
            let leaf = try pki.directory.write(certificate.pemEncoded, to: "tool.pem")
            let verify = try await Tool.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", pki.path("root.pem"),
                                       "-untrusted", pki.path("intermediate.pem"), "-verify_hostname", "tool.api.example.com", leaf])
            #expect(verify.succeeded, "\(verify)")
            // openssl agrees the certificate belongs to the key it generated.
            let fromKey = try await Tool.runChecked(["openssl", "pkey", "-in", keyPath, "-pubout"]).standardOutput
            let fromCertificate = try await Tool.runChecked(["openssl", "x509", "-in", leaf, "-noout", "-pubkey"]).standardOutput
            #expect(fromKey == fromCertificate)
        }
    }

    @Test("requests from certtool --generate-request are accepted and issued; the result verifies")
    func certtoolRequestsIssued() async throws {
        try await withPKI(.rsa2048) { pki in
            let keyPath = pki.path("certtool.key")
            try await Tool.runChecked(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--curve", "secp256r1", "--outfile", keyPath],
                                package: "gnutls-bin")
            let requestPath = try await CertTool.generateRequest(key: keyPath, template: """
                cn = "gnutls.api.example.com"
                organization = "Example Interop"
                country = "US"
                dns_name = "gnutls.api.example.com"
                ip_address = "127.0.0.3"
                tls_www_server
                signing_key

                """, in: pki.directory)
            let request = try CertificateRequest(contentsOfFile: requestPath)
            #expect(request.isSignatureValid)
            #expect(request.basicConstraints?.isCertificateAuthority == false)
            let certificate = try pki.intermediate.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
            #expect(certificate.dnsNames == ["gnutls.api.example.com"])
            #expect(certificate.ipAddresses == [IPAddress("127.0.0.3")!])
            let chain = try pki.directory.write(certificate.pemEncoded + pki.intermediate.certificate.pemEncoded, to: "certtool-chain.pem")
            let verify = try await Tool.run(["certtool", "--verify", "--verify-profile", "medium", "--load-ca-certificate", pki.path("root.pem"),
                                       "--infile", chain, "--verify-hostname", "gnutls.api.example.com"], package: "gnutls-bin")
            #expect(verify.succeeded, "\(verify)")
            let opensslVerify = try await Tool.run(["openssl", "verify", "-CAfile", pki.path("root.pem"), "-untrusted", pki.path("intermediate.pem"),
                                              try pki.directory.write(certificate.pemEncoded, to: "certtool-leaf.pem")])
            #expect(opensslVerify.succeeded, "\(opensslVerify)")
        }
    }
}
