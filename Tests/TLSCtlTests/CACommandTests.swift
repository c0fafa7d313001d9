import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// Whether `date` is `days` days from now, give or take an hour (the backdate and run time).
func isAbout(_ date: Date, daysFromNow days: Int) -> Bool {
    abs(date.timeIntervalSinceNow - TimeInterval(days) * 86_400) < 3_600
}

/// Runs pkilint's RFC 5280 linter on a certificate: no finding at WARNING or above.
func expectLintClean(_ path: String, in work: CLIWorkspace, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let result = try await Tool.run(["lint_pkix_cert", "lint", "-s", "WARNING", path], timeout: 120, directory: work.path, package: "pkilint (PyPI)")
    #expect(result.succeeded && result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
            "pkilint findings for \(path): \(result)", sourceLocation: sourceLocation)
}

@Suite("tlsctl ca init")
struct CAInitTests {
    @Test("creates a self-signed root: ca.pem, ca.key.pem (0600, not encrypted), chain.pem")
    func defaults() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Example Root CA,O=Example"])
        #expect(result.standardOutput.contains("Created root CA CN=Example Root CA,O=Example"), "\(result)")
        #expect(try work.mode("root/ca.key.pem") == 0o600)
        #expect(try work.read("root/ca.key.pem").hasPrefix(PEMText.header("PRIVATE KEY")))
        #expect(try work.read("root/chain.pem") == (try work.read("root/ca.pem")))

        let authority = try LocalAuthority.load(from: work.file("root"), passphrase: nil)
        let root = authority.certificate
        #expect(root.subject == (try DistinguishedName("CN=Example Root CA,O=Example")))
        #expect(root.isSelfIssued && root.isCertificateAuthority)
        #expect(root.basicConstraints?.pathLengthConstraint == nil)
        #expect(root.publicKey.keyDescription.algorithm == .ecdsaP256)
        #expect(isAbout(root.notValidAfter, daysFromNow: 3650))

        let verify = try await work.tool(["openssl", "verify", "-CAfile", "root/ca.pem", "root/ca.pem"])
        #expect(verify.standardOutput == "root/ca.pem: OK\n", "\(verify)")
        let text = try await work.tool(["openssl", "x509", "-in", "root/ca.pem", "-noout", "-text"]).standardOutput
        #expect(text.contains("CA:TRUE") && text.contains("Certificate Sign, CRL Sign"), "\(text)")
        try await expectLintClean("root/ca.pem", in: work)
    }

    @Test("--algorithm, --days, --path-length, name constraints and --passphrase-file")
    func options() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let passphrase = "root-\(UUID().uuidString)"
        let pass = try work.passphraseFile("root.pass", passphrase)
        let result = try await work.succeed([
            "ca", "init", "--dir", "root", "--subject", "CN=Constrained Root", "--algorithm", "ecdsa-p384", "--days", "30",
            "--path-length", "1", "--permit-dns", "example.test", "--exclude-dns", "bad.example.test",
            "--permit-ip", "10.0.0.0/8", "--exclude-ip", "10.9.0.0/16", "--permit-email", "example.test",
            "--passphrase-file", pass,
        ])
        #expect(result.standardOutput.contains("(encrypted)"), "\(result)")
        #expect(try work.mode("root/ca.key.pem") == 0o600)
        #expect(try work.read("root/ca.key.pem").hasPrefix(PEMText.header("ENCRYPTED PRIVATE KEY")))
        try await work.tool(["openssl", "pkey", "-in", "root/ca.key.pem", "-passin", "file:root.pass", "-noout"])

        let root = try LocalAuthority.load(from: work.file("root"), passphrase: passphrase).certificate
        #expect(root.publicKey.keyDescription.algorithm == .ecdsaP384)
        #expect(isAbout(root.notValidAfter, daysFromNow: 30))
        #expect(root.basicConstraints?.pathLengthConstraint == 1)
        let constraints = try #require(root.nameConstraints)
        #expect(constraints.permittedDNSDomains == ["example.test"] && constraints.excludedDNSDomains == ["bad.example.test"])
        #expect(constraints.permittedIPRanges == [IPNetwork("10.0.0.0/8")!] && constraints.excludedIPRanges == [IPNetwork("10.9.0.0/16")!])
        #expect(constraints.permittedEmailAddresses == ["example.test"])

        let text = try await work.tool(["openssl", "x509", "-in", "root/ca.pem", "-noout", "-text"]).standardOutput
        for expected in ["pathlen:1", "Permitted:", "DNS:example.test", "IP:10.0.0.0/255.0.0.0", "email:example.test",
                         "Excluded:", "DNS:bad.example.test", "IP:10.9.0.0/255.255.0.0", "NIST CURVE: P-384"] {
            #expect(text.contains(expected), "openssl x509 -text lacks \(expected):\n\(text)")
        }
        try await expectLintClean("root/ca.pem", in: work)
    }

    @Test("never overwrites an existing CA")
    func refusesExistingDirectory() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        let before = try work.read("root/ca.key.pem")
        try await work.fail(["ca", "init", "--dir", "root", "--subject", "CN=Another Root"],
                      stderr: "tlsctl: error: root already holds a CA (ca.pem or ca.key.pem exists): choose another --dir; tlsctl never overwrites a CA")
        #expect(try work.read("root/ca.key.pem") == before)
    }

    @Test("usage errors exit 64: missing --subject, a negative --path-length, zero --days")
    func usageErrors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.fail(["ca", "init", "--dir", "root"], exitCode: 64)
        let negative = try await work.fail(["ca", "init", "--dir", "root", "--subject", "CN=x", "--path-length=-1"], exitCode: 64)
        #expect(negative.standardError.contains("--path-length must be 0 or more, not -1"), "\(negative)")
        let zero = try await work.fail(["ca", "init", "--dir", "root", "--subject", "CN=x", "--days", "0"], exitCode: 64)
        #expect(zero.standardError.contains("--days must be 1 or more, not 0"), "\(zero)")
        try await work.fail(["ca", "init", "--dir", "root", "--subject", "CN=x", "--permit-ip", "10.0.0.0/99"],
                      stderr: "tlsctl: error: --permit-ip '10.0.0.0/99' is not an IP network: write 10.0.0.0/8 or fd00::/8")
        #expect(!work.exists("root/ca.pem"))
    }
}

@Suite("tlsctl ca intermediate")
struct CAIntermediateTests {
    @Test("creates an intermediate with a new key, path length and name constraints, signed by the root")
    func create() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root", passphrase: "root-\(UUID().uuidString)")
        let passphrase = "int-\(UUID().uuidString)"
        let pass = try work.passphraseFile("int.pass", passphrase)
        let result = try await work.succeed([
            "ca", "intermediate", "--ca", "root", "--ca-passphrase-file", "root.pass", "--dir", "int",
            "--subject", "CN=Example Issuing CA,O=Example", "--path-length", "0",
            "--permit-dns", "example.test", "--exclude-dns", "bad.example.test", "--passphrase-file", pass,
            "--algorithm", "ed25519", "--days", "400",
        ])
        #expect(result.standardOutput.contains("Created intermediate CA CN=Example Issuing CA,O=Example"), "\(result)")
        #expect(try work.mode("int/ca.key.pem") == 0o600)
        #expect(try work.read("int/ca.key.pem").hasPrefix(PEMText.header("ENCRYPTED PRIVATE KEY")))

        let root = try Certificate(pemEncoded: work.read("root/ca.pem"))
        let authority = try LocalAuthority.load(from: work.file("int"), passphrase: passphrase)
        let intermediate = authority.certificate
        #expect(intermediate.issuer == root.subject)
        #expect(intermediate.authorityKeyIdentifier == root.subjectKeyIdentifier)
        #expect(intermediate.publicKey.keyDescription.algorithm == .ed25519)
        #expect(intermediate.publicKey != root.publicKey)
        #expect(intermediate.isCertificateAuthority && intermediate.basicConstraints?.pathLengthConstraint == 0)
        #expect(intermediate.nameConstraints?.permittedDNSDomains == ["example.test"])
        #expect(intermediate.nameConstraints?.excludedDNSDomains == ["bad.example.test"])
        #expect(isAbout(intermediate.notValidAfter, daysFromNow: 400))
        #expect(try Certificate.load(contentsOfFile: work.file("int/chain.pem")) == [intermediate, root])

        let verify = try await work.tool(["openssl", "verify", "-CAfile", "root/ca.pem", "int/ca.pem"])
        #expect(verify.standardOutput == "int/ca.pem: OK\n", "\(verify)")
        let text = try await work.tool(["openssl", "x509", "-in", "int/ca.pem", "-noout", "-text"]).standardOutput
        for expected in ["CA:TRUE, pathlen:0", "Permitted:", "DNS:example.test", "Excluded:", "DNS:bad.example.test", "ED25519"] {
            #expect(text.contains(expected), "openssl x509 -text lacks \(expected):\n\(text)")
        }
        try await expectLintClean("int/ca.pem", in: work)
    }

    @Test("defaults: an ECDSA P-256 key, not encrypted, five years")
    func defaults() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        try await work.succeed(["ca", "intermediate", "--ca", "root", "--dir", "int", "--subject", "CN=Plain Issuing CA"])
        let intermediate = try LocalAuthority.load(from: work.file("int"), passphrase: nil).certificate
        #expect(intermediate.publicKey.keyDescription.algorithm == .ecdsaP256)
        #expect(isAbout(intermediate.notValidAfter, daysFromNow: 1825))
        #expect(try work.read("int/ca.key.pem").hasPrefix(PEMText.header("PRIVATE KEY")))
    }

    @Test("the signing CA's key needs --ca-passphrase-file, and the right passphrase")
    func caPassphrase() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root", passphrase: "root-\(UUID().uuidString)")
        let wrongPassphrase = "wrong-\(UUID().uuidString)"
        let wrong = try work.passphraseFile("wrong.pass", wrongPassphrase)

        let missing = try #require(libraryError { _ = try LocalAuthority.load(from: work.file("root"), passphrase: nil) } as? GnuTLSError)
        #expect(missing.code == .passphraseRequired)
        try await work.fail(["ca", "intermediate", "--ca", "root", "--dir", "int", "--subject", "CN=Issuing CA"],
                      stderr: "tlsctl: error: cannot open CA in root: \(missing); give it with --ca-passphrase-file FILE")

        let bad = try #require(libraryError { _ = try LocalAuthority.load(from: work.file("root"), passphrase: wrongPassphrase) } as? GnuTLSError)
        #expect(bad.code == .wrongPassphrase)
        try await work.fail(["ca", "intermediate", "--ca", "root", "--ca-passphrase-file", wrong, "--dir", "int", "--subject", "CN=Issuing CA"],
                      stderr: "tlsctl: error: cannot open CA in root: \(bad); check --ca-passphrase-file")
        #expect(!work.exists("int/ca.pem"))
    }

    @Test("refused under a path-length-0 intermediate: path length exhausted")
    func pathLengthExhausted() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        try await work.succeed(["ca", "intermediate", "--ca", "root", "--dir", "int", "--subject", "CN=Last Issuing CA", "--path-length", "0"])

        let parent = try LocalAuthority.load(from: work.file("int"), passphrase: nil)
        let refusal = try #require(libraryError { _ = try parent.createIntermediate(subject: try DistinguishedName("CN=Too Deep")) } as? IssuanceError)
        #expect(refusal.reason == .pathLengthExhausted)
        try await work.fail(["ca", "intermediate", "--ca", "int", "--dir", "deeper", "--subject", "CN=Too Deep"],
                      stderr: "tlsctl: refused (pathLengthExhausted): \(refusal.message)")
        #expect(!work.exists("deeper/ca.pem") && !work.exists("deeper/ca.key.pem"))

        // A path length deeper than the root's limit allows is refused too.
        try await work.makeRoot("root1", subject: "CN=Root with one level", extra: ["--path-length", "1"])
        let root1 = try LocalAuthority.load(from: work.file("root1"), passphrase: nil)
        let tooLong = try #require(libraryError { _ = try root1.createIntermediate(subject: try DistinguishedName("CN=Greedy"), pathLength: 1) } as? IssuanceError)
        #expect(tooLong.reason == .pathLengthExhausted)
        try await work.fail(["ca", "intermediate", "--ca", "root1", "--dir", "greedy", "--subject", "CN=Greedy", "--path-length", "1"],
                      stderr: "tlsctl: refused (pathLengthExhausted): \(tooLong.message)")
    }

    @Test("refused when --days outlives the signing CA")
    func outlivesIssuer() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root", extra: ["--days", "30"])
        let root = try Certificate(pemEncoded: work.read("root/ca.pem"))
        let result = try await work.fail(["ca", "intermediate", "--ca", "root", "--dir", "int", "--subject", "CN=Long Lived", "--days", "31"])
        #expect(result.standardError.hasPrefix("tlsctl: refused (validityExceedsIssuer): the certificate would be valid until "), "\(result)")
        #expect(result.standardError.contains("after its issuer '\(root.subject)' expires on \(root.notValidAfter): ask for fewer days\n"), "\(result)")
        #expect(!work.exists("int/ca.pem"))
    }

    @Test("a missing CA directory is named")
    func missingCA() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.fail(["ca", "intermediate", "--ca", "nowhere", "--dir", "int", "--subject", "CN=x"],
                      stderr: "tlsctl: error: CA directory nowhere does not exist: create one with `tlsctl ca init --dir nowhere …`")
    }
}

@Suite("tlsctl ca issue")
struct CAIssueTests {
    /// A root, a path-length-0 intermediate constrained to example.test (both keys encrypted).
    static func makeHierarchy(_ work: CLIWorkspace) async throws {
        try await work.makeRoot("root", passphrase: "root-\(UUID().uuidString)")
        try work.passphraseFile("int.pass", "int-\(UUID().uuidString)")
        try await work.succeed([
            "ca", "intermediate", "--ca", "root", "--ca-passphrase-file", "root.pass", "--dir", "int",
            "--subject", "CN=Issuing CA", "--path-length", "0", "--permit-dns", "example.test",
            "--exclude-dns", "bad.example.test", "--permit-ip", "192.0.2.0/24", "--passphrase-file", "int.pass",
        ])
    }

    static func intermediatePassphrase(_ work: CLIWorkspace) throws -> String {
        String(try work.read("int.pass").dropLast())
    }

    @Test("issues a certificate per profile that openssl and certtool verify for that purpose", arguments: ["server", "client", "server-client"])
    func issue(profile: String) async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeHierarchy(work)
        try await work.makeRequest("leaf", subject: "CN=www.example.test,O=Example", dns: ["www.example.test"], extra: ["--ip", "192.0.2.10"])
        let result = try await work.succeed([
            "ca", "issue", "--ca", "int", "--ca-passphrase-file", "int.pass", "--csr", "leaf.csr.pem", "--profile", profile,
            "--days", "30", "--out", "leaf.pem", "--chain-out", "chain.pem",
            "--crl-url", "http://crl.example.test/issuing.crl", "--ocsp-url", "http://ocsp.example.test/",
        ])
        #expect(result.standardOutput.contains("Issued \(profile) certificate for CN=www.example.test,O=Example in leaf.pem"), "\(result)")

        let leaf = try Certificate(pemEncoded: work.read("leaf.pem"))
        let intermediate = try Certificate(pemEncoded: work.read("int/ca.pem"))
        let key = try KeyPair(contentsOfFile: work.file("leaf.key.pem"))
        #expect(leaf.publicKey == key.publicKey)
        #expect(leaf.issuer == intermediate.subject && leaf.authorityKeyIdentifier == intermediate.subjectKeyIdentifier)
        #expect(leaf.subjectAlternativeNames == [.dnsName("www.example.test"), .ipAddress(IPAddress("192.0.2.10")!)])
        #expect(!leaf.isCertificateAuthority)
        #expect(leaf.extendedKeyUsage == CertificateProfile(name: profile)?.extendedKeyUsage)
        #expect(leaf.crlDistributionPoints == [.uri("http://crl.example.test/issuing.crl")])
        #expect(leaf.ocspURLs == ["http://ocsp.example.test/"])
        #expect(isAbout(leaf.notValidAfter, daysFromNow: 30))
        #expect(try Certificate.load(contentsOfFile: work.file("chain.pem")) == [leaf, intermediate])

        // openssl: the chain verifies for the profile's purposes, and not for the others.
        let purposes = ["server": ["sslserver"], "client": ["sslclient"], "server-client": ["sslserver", "sslclient"]][profile]!
        for purpose in ["sslserver", "sslclient"] {
            let verify = try await Tool.run(["openssl", "verify", "-CAfile", "root/ca.pem", "-untrusted", "int/ca.pem", "-purpose", purpose, "leaf.pem"], directory: work.path)
            if purposes.contains(purpose) {
                #expect(verify.succeeded && verify.standardOutput == "leaf.pem: OK\n", "\(verify)")
            } else {
                #expect(!verify.succeeded, "a \(profile) certificate must not verify for \(purpose): \(verify)")
            }
        }
        let text = try await work.tool(["openssl", "x509", "-in", "leaf.pem", "-noout", "-text"]).standardOutput
        for expected in ["DNS:www.example.test", "IP Address:192.0.2.10", "URI:http://crl.example.test/issuing.crl",
                         "OCSP - URI:http://ocsp.example.test/", "CA:FALSE"] {
            #expect(text.contains(expected), "openssl x509 -text lacks \(expected):\n\(text)")
        }
        // certtool: the chain file plus the root verifies.
        let certtool = try await work.tool(["certtool", "--verify", "--load-ca-certificate", "root/ca.pem", "--infile", "chain.pem"])
        #expect(certtool.standardOutput.contains("Chain verification output: Verified."), "\(certtool)")
        try await expectLintClean("leaf.pem", in: work)
    }

    @Test("refuses a name outside the intermediate's --permit-dns, or inside --exclude-dns")
    func nameConstraints() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeHierarchy(work)
        let authority = try LocalAuthority.load(from: work.file("int"), passphrase: Self.intermediatePassphrase(work))
        for (name, host) in [("outside", "www.example.com"), ("excluded", "www.bad.example.test")] {
            let csr = try await work.makeRequest(name, subject: "CN=\(host)", dns: [host])
            let request = try CertificateRequest(contentsOfFile: work.file(csr))
            let refusal = try #require(libraryError {
                _ = try authority.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
            } as? IssuanceError)
            #expect(refusal.reason == .nameNotPermitted)
            try await work.fail(["ca", "issue", "--ca", "int", "--ca-passphrase-file", "int.pass", "--csr", csr, "--profile", "server", "--days", "30", "--out", "\(name).pem"],
                          stderr: "tlsctl: refused (nameNotPermitted): \(refusal.message)")
            #expect(!work.exists("\(name).pem"))
        }
    }

    @Test("refuses --days beyond the CA's expiry")
    func outlivesIssuer() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root", extra: ["--days", "10"])
        let csr = try await work.makeRequest("leaf", subject: "CN=www.example.test", dns: ["www.example.test"])
        let root = try Certificate(pemEncoded: work.read("root/ca.pem"))
        let result = try await work.fail(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "server", "--days", "11", "--out", "leaf.pem"])
        #expect(result.standardError.hasPrefix("tlsctl: refused (validityExceedsIssuer): the certificate would be valid until "), "\(result)")
        #expect(result.standardError.contains("after its issuer '\(root.subject)' expires on \(root.notValidAfter): ask for fewer days\n"), "\(result)")
        #expect(!work.exists("leaf.pem"))
        // Within the CA's lifetime it is issued.
        try await work.succeed(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "server", "--days", "9", "--out", "leaf.pem"])
    }

    @Test("the CA passphrase: missing or wrong, each with the library's reason")
    func caPassphrase() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeHierarchy(work)
        let csr = try await work.makeRequest("leaf", subject: "CN=www.example.test", dns: ["www.example.test"])
        let wrongPassphrase = "wrong-\(UUID().uuidString)"
        try work.passphraseFile("wrong.pass", wrongPassphrase)

        let missing = try #require(libraryError { _ = try LocalAuthority.load(from: work.file("int"), passphrase: nil) } as? GnuTLSError)
        try await work.fail(["ca", "issue", "--ca", "int", "--csr", csr, "--profile", "server", "--days", "30", "--out", "leaf.pem"],
                      stderr: "tlsctl: error: cannot open CA in int: \(missing); give it with --ca-passphrase-file FILE")
        let bad = try #require(libraryError { _ = try LocalAuthority.load(from: work.file("int"), passphrase: wrongPassphrase) } as? GnuTLSError)
        try await work.fail(["ca", "issue", "--ca", "int", "--ca-passphrase-file", "wrong.pass", "--csr", csr, "--profile", "server", "--days", "30", "--out", "leaf.pem"],
                      stderr: "tlsctl: error: cannot open CA in int: \(bad); check --ca-passphrase-file")
        #expect(!work.exists("leaf.pem"))
    }

    @Test("a malformed or truncated request, or a key given as --csr, is refused with the reason")
    func malformedRequest() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        let csr = try await work.makeRequest("leaf", subject: "CN=www.example.test", dns: ["www.example.test"])
        let lines = try work.read(csr).split(separator: "\n")
        try work.directory.write(lines.prefix(lines.count / 2).joined(separator: "\n") + "\n", to: "truncated.pem")
        try work.directory.write(PEMText.block("CERTIFICATE REQUEST", body: "not base64 at all!"), to: "garbage.pem")
        var corrupted = try CertificateRequest(contentsOfFile: work.file(csr)).derEncoded
        corrupted[corrupted.count / 2] ^= 0xFF
        corrupted.removeLast(7)
        try work.directory.write(corrupted, to: "corrupted.der")

        for file in ["truncated.pem", "garbage.pem", "corrupted.der", "leaf.key.pem", "root/ca.pem"] {
            let error = try #require(libraryError { _ = try CertificateRequest(contentsOfFile: work.file(file)) } as? GnuTLSError, "\(file)")
            try await work.fail(["ca", "issue", "--ca", "root", "--csr", file, "--profile", "server", "--days", "30", "--out", "leaf.pem"],
                          stderr: "tlsctl: error: cannot load certificate request \(file): \(error)")
        }
        #expect(!work.exists("leaf.pem"))
    }

    @Test("a server certificate needs a DNS name or IP address")
    func serverNeedsName() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        let csr = try await work.makeRequest("nameless", subject: "CN=just a name")
        let authority = try LocalAuthority.load(from: work.file("root"), passphrase: nil)
        let refusal = try #require(libraryError {
            _ = try authority.issue(try CertificateRequest(contentsOfFile: work.file(csr)), profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
        } as? IssuanceError)
        try await work.fail(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "server", "--days", "30", "--out", "leaf.pem"],
                      stderr: "tlsctl: refused (\(refusal.reason)): \(refusal.message)")
        // A client certificate is fine without one.
        try await work.succeed(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "client", "--days", "30", "--out", "client.pem"])
    }

    @Test("usage errors exit 64: an unknown profile, a missing --days")
    func usageErrors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("root")
        let csr = try await work.makeRequest("leaf", subject: "CN=www.example.test", dns: ["www.example.test"])
        let profile = try await work.fail(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "intermediate-ca", "--days", "30", "--out", "leaf.pem"], exitCode: 64)
        #expect(profile.standardError.contains("'server', 'client', 'server-client' or 'ocsp-responder'"), "\(profile)")
        try await work.fail(["ca", "issue", "--ca", "root", "--csr", csr, "--profile", "server", "--out", "leaf.pem"], exitCode: 64)
        #expect(!work.exists("leaf.pem"))
    }
}
