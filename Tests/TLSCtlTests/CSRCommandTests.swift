import Foundation
import GnuTLS
import Testing
import TestSupport

@Suite("tlsctl csr create")
struct CSRCommandTests {
    @Test("creates a signed request with the subject and every kind of alternative name")
    func create() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.succeed(["key", "generate", "--algorithm", "rsa-2048", "--out", "key.pem"])
        try await work.succeed([
            "csr", "create", "--key", "key.pem", "--subject", "CN=api.example.test,O=Example\\, Inc.,C=US",
            "--dns", "api.example.test", "--dns", "*.api.example.test", "--ip", "192.0.2.7", "--ip", "2001:db8::7",
            "--email", "ops@example.test", "--uri", "spiffe://example.test/api", "--out", "req.pem",
        ])
        #expect(try work.read("req.pem").hasPrefix(PEMText.header("CERTIFICATE REQUEST")))

        // The library reads back what was asked, signed by the key.
        let request = try CertificateRequest(contentsOfFile: work.file("req.pem"))
        let key = try KeyPair(contentsOfFile: work.file("key.pem"))
        #expect(request.isSignatureValid)
        #expect(request.publicKey == key.publicKey)
        #expect(request.subject == (try DistinguishedName("CN=api.example.test,O=Example\\, Inc.,C=US")))
        #expect(request.subjectAlternativeNames == [
            .dnsName("api.example.test"), .dnsName("*.api.example.test"), .ipAddress(IPAddress("192.0.2.7")!),
            .ipAddress(IPAddress("2001:db8::7")!), .email("ops@example.test"), .uri("spiffe://example.test/api"),
        ])

        // openssl verifies the self-signature and reads the same names.
        let verify = try await work.tool(["openssl", "req", "-in", "req.pem", "-verify", "-noout"])
        #expect(verify.output.contains("verify OK"), "\(verify)")
        let text = try await work.tool(["openssl", "req", "-in", "req.pem", "-noout", "-text"]).standardOutput
        for expected in ["CN = api.example.test", "O = \"Example, Inc.\"", "DNS:api.example.test", "DNS:*.api.example.test",
                         "IP Address:192.0.2.7", "IP Address:2001:DB8:0:0:0:0:0:7", "email:ops@example.test",
                         "URI:spiffe://example.test/api"] {
            #expect(text.contains(expected), "openssl req -text lacks \(expected):\n\(text)")
        }
    }

    @Test("signs with an encrypted key opened by --passphrase-file")
    func encryptedKey() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let pass = try work.passphraseFile("pass.txt", "s3cret-\(UUID().uuidString)")
        try await work.succeed(["key", "generate", "--algorithm", "ed25519", "--out", "key.pem", "--passphrase-file", pass])
        try await work.succeed(["csr", "create", "--key", "key.pem", "--passphrase-file", pass, "--subject", "CN=client one", "--email", "one@example.test", "--out", "req.pem"])
        try await work.tool(["openssl", "req", "-in", "req.pem", "-verify", "-noout"])
        #expect(try CertificateRequest(contentsOfFile: work.file("req.pem")).publicKey.keyDescription.algorithm == .ed25519)
    }

    @Test("an encrypted key without --passphrase-file, or with the wrong one, is refused with the library's reason")
    func passphraseErrors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let pass = try work.passphraseFile("pass.txt", "right-\(UUID().uuidString)")
        let wrongPassphrase = "wrong-\(UUID().uuidString)"
        let wrong = try work.passphraseFile("wrong.txt", wrongPassphrase)
        try await work.succeed(["key", "generate", "--out", "key.pem", "--passphrase-file", pass])

        let missing = try #require(libraryError { _ = try KeyPair(contentsOfFile: work.file("key.pem")) } as? GnuTLSError)
        #expect(missing.code == .passphraseRequired)
        try await work.fail(["csr", "create", "--key", "key.pem", "--subject", "CN=x", "--out", "req.pem"],
                      stderr: "tlsctl: error: cannot load private key key.pem: \(missing); give it with --passphrase-file FILE")

        let bad = try #require(libraryError { _ = try KeyPair(contentsOfFile: work.file("key.pem"), passphrase: wrongPassphrase) } as? GnuTLSError)
        #expect(bad.code == .wrongPassphrase)
        try await work.fail(["csr", "create", "--key", "key.pem", "--passphrase-file", wrong, "--subject", "CN=x", "--out", "req.pem"],
                      stderr: "tlsctl: error: cannot load private key key.pem: \(bad); check --passphrase-file")
        #expect(!work.exists("req.pem"))
    }

    @Test("a certificate given as --key is refused: it is not a private key")
    func certificateAsKey() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        let error = try #require(libraryError { _ = try KeyPair(contentsOfFile: work.file("root/ca.pem")) } as? GnuTLSError)
        #expect(error.code == .unexpectedObject)
        try await work.fail(["csr", "create", "--key", "root/ca.pem", "--subject", "CN=x", "--out", "req.pem"],
                      stderr: "tlsctl: error: cannot load private key root/ca.pem: \(error)")
        #expect(!work.exists("req.pem"))
    }

    @Test("malformed subjects and names are refused with the reason")
    func invalidInput() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.succeed(["key", "generate", "--out", "key.pem"])

        let subjectError = try #require(libraryError { _ = try DistinguishedName("CN") } as? GnuTLSError)
        try await work.fail(["csr", "create", "--key", "key.pem", "--subject", "CN", "--out", "req.pem"],
                      stderr: "tlsctl: error: invalid --subject 'CN': \(subjectError)")
        try await work.fail(["csr", "create", "--key", "key.pem", "--subject", "CN=x", "--ip", "300.1.1.1", "--out", "req.pem"],
                      stderr: "tlsctl: error: --ip '300.1.1.1' is not an IPv4 or IPv6 address")
        let key = try KeyPair(contentsOfFile: work.file("key.pem"))
        let dnsError = try #require(libraryError {
            _ = try CertificateRequest.create(subject: try DistinguishedName("CN=x"), key: key, alternativeNames: [.dnsName("bad_name.example")])
        } as? GnuTLSError)
        try await work.fail(["csr", "create", "--key", "key.pem", "--subject", "CN=x", "--dns", "bad_name.example", "--out", "req.pem"],
                      stderr: "tlsctl: error: cannot create the certificate request: \(dnsError)")
        let missing = work.file("missing.pem")
        let missingError = try #require(libraryError { _ = try KeyPair(contentsOfFile: missing) })
        try await work.fail(["csr", "create", "--key", missing, "--subject", "CN=x", "--out", "req.pem"],
                      stderr: "tlsctl: error: cannot load private key \(missing): \(missingError)")
        #expect(!work.exists("req.pem"))
        try await work.fail(["csr", "create", "--key", "key.pem", "--out", "req.pem"], exitCode: 64)
    }
}
