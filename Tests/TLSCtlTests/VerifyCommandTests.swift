import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// `tlsctl verify`: the x509-limbo verifier interface (exit 0 accepted, 1 rejected with the
/// reasons, 2 an option it cannot honour, 3 an unreadable file) plus the `--chain` form.
@Suite("tlsctl verify")
struct VerifyCommandTests {
    /// A root, an issuing CA with a ledger, a server leaf for api.example.com and the PEM
    /// files for them in a workspace.
    struct Material {
        let workspace: CLIWorkspace
        let root: LocalAuthority
        let issuing: LocalAuthority
        let leaf: Certificate

        init() throws {
            workspace = try CLIWorkspace()
            root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Verify CLI Root,O=swift-gnutls tests"))
            let key = try KeyPair.generate(.ecdsaP256)
            let bare = try root.createIntermediate(subject: try DistinguishedName("CN=Verify CLI Issuing CA,O=swift-gnutls tests"), key: key)
            issuing = try LocalAuthority(certificate: bare.certificate, key: key, issuers: bare.chain, ledger: SQLiteLedger())
            leaf = try issuing.issue(
                CertificateRequest.create(subject: try DistinguishedName("CN=api.example.com"), key: KeyPair.generate(.ecdsaP256),
                                          alternativeNames: [.dnsName("api.example.com"), .ipAddress(IPAddress("192.0.2.10")!)]),
                profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
            try workspace.directory.write(root.certificate.pemEncoded, to: "root.pem")
            try workspace.directory.write(issuing.certificate.pemEncoded, to: "issuing.pem")
            try workspace.directory.write(leaf.pemEncoded, to: "leaf.pem")
            try workspace.directory.write(leaf.pemEncoded + issuing.certificate.pemEncoded, to: "chain.pem")
            try workspace.directory.write("", to: "empty.pem")
        }

        /// The limbo form: roots, intermediates, leaf, then `extra`.
        var standard: [String] { ["verify", "--roots", "root.pem", "--intermediates", "issuing.pem", "--leaf", "leaf.pem"] }

        func run(_ extra: [String]) async throws -> ProcessResult { try await workspace.tlsctl(standard + extra) }
    }

    private func expectExit(_ result: ProcessResult, _ code: Int32, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.exitCode == code && !result.timedOut, "\(result)", sourceLocation: sourceLocation)
        #expect(!result.output.contains("Fatal error") && !result.output.contains("Stack dump"), "\(result)", sourceLocation: sourceLocation)
    }

    @Test("exit 0 on a good chain, listing it leaf first")
    func accepted() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        for extra in [[], ["--host", "api.example.com"], ["--ip", "192.0.2.10", "--purpose", "serverAuth"],
                      ["--host", "api.example.com", "--ip", "192.0.2.10", "--max-chain-depth", "1", "--key-usage", "digitalSignature"],
                      ["--time", "\(Int(Date().timeIntervalSince1970) + 86_400)", "--profile", "high", "--signature-algorithm", "ECDSA_WITH_SHA256"]] {
            let result = try await material.run(extra)
            expectExit(result, 0)
            let lines = result.standardOutput.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(lines.first == "OK: chain of 3 verified", "\(result)")
            #expect(Array(lines.dropFirst()) == ["[0] \(material.leaf.subject)", "[1] \(material.issuing.certificate.subject)",
                                                  "[2] \(material.root.certificate.subject)"], "\(result)")
        }
    }

    @Test("exit 1 on a bad chain, with each reason and position printed")
    func rejected() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        let wrongHost = try await material.run(["--host", "db.example.com"])
        expectExit(wrongHost, 1)
        #expect(wrongHost.standardOutput.hasPrefix("REJECTED:"), "\(wrongHost)")
        #expect(wrongHost.standardOutput.contains("[0] nameMismatch:") && wrongHost.standardOutput.contains("db.example.com"), "\(wrongHost)")

        let late = Int(material.leaf.notValidAfter.timeIntervalSince1970) + 3600
        let expired = try await material.run(["--time", "\(late)", "--purpose", "clientAuth"])
        expectExit(expired, 1)
        #expect(expired.standardOutput.contains("[0] expired:"), "\(expired)")
        #expect(expired.standardOutput.contains("[0] purposeMismatch:"), "\(expired)")

        let missing = try await material.workspace.tlsctl(["verify", "--roots", "root.pem", "--intermediates", "empty.pem", "--leaf", "leaf.pem"])
        expectExit(missing, 1)
        #expect(missing.standardOutput.contains("[0] untrustedIssuer:"), "\(missing)")

        let deep = try await material.run(["--max-chain-depth", "0"])
        expectExit(deep, 1)
        #expect(deep.standardOutput.contains("pathLengthExceeded"), "\(deep)")

        let weak = try await material.run(["--signature-algorithm", "ED25519"])
        expectExit(weak, 1)
        #expect(weak.standardOutput.contains("[0] insecureAlgorithm:") && weak.standardOutput.contains("[1] insecureAlgorithm:"), "\(weak)")

        // Another root of the same name is not the chain's root.
        let other = try LocalAuthority.createRoot(subject: material.root.certificate.subject)
        try material.workspace.directory.write(other.certificate.pemEncoded, to: "other-root.pem")
        let untrusted = try await material.workspace.tlsctl(["verify", "--roots", "other-root.pem", "--intermediates", "issuing.pem", "--leaf", "leaf.pem"])
        expectExit(untrusted, 1)
        #expect(untrusted.standardOutput.contains("[1] untrustedIssuer:"), "\(untrusted)")
    }

    @Test("exit 2 for an option that cannot be honoured", arguments: [
        ["--frobnicate"], ["--purpose", "fooAuth"], ["--purpose", "1..2"], ["--purpose", "1.3.6.1.5.5.7.3.1."], ["--purpose", "1.2.\u{0663}"], ["--signature-algorithm", "RSA_WITH_WHIRLPOOL"],
        ["--key-usage", "everything"], ["--profile", "paranoid"], ["--ip", "not-an-ip"], ["--max-chain-depth", "-1"],
        ["--time", "yesterday"],
    ])
    func unsupported(_ extra: [String]) async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        let result = try await material.run(extra)
        expectExit(result, 2)
        #expect(!result.output.isEmpty, "exit 2 without a word: \(result)")
        // Exit 2 is decided on the options alone, never after a chain was looked at.
        #expect(!result.standardOutput.contains("OK:") && !result.standardOutput.contains("REJECTED"), "\(result)")
    }

    @Test("exit 2 when the inputs are not given as the interface requires")
    func missingInputs() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        expectExit(try await material.workspace.tlsctl(["verify", "--intermediates", "issuing.pem", "--leaf", "leaf.pem"]), 2)
        expectExit(try await material.workspace.tlsctl(["verify", "--roots", "root.pem", "--leaf", "leaf.pem", "--chain", "chain.pem"]), 2)
        expectExit(try await material.workspace.tlsctl(["verify", "--roots", "root.pem"]), 2)
    }

    @Test("exit 3 for a file that cannot be read", arguments: ["--roots", "--intermediates", "--leaf", "--crls"])
    func unreadable(_ option: String) async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        var arguments = material.standard + ["--crls", "empty.pem"]
        let index = try #require(arguments.firstIndex(of: option))
        arguments[index + 1] = "does-not-exist.pem"
        let result = try await material.workspace.tlsctl(arguments)
        expectExit(result, 3)
        #expect(result.output.contains("does-not-exist.pem"), "\(result)")
    }

    @Test("--chain takes the leaf followed by its intermediates")
    func chainBundle() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        let result = try await material.workspace.tlsctl(["verify", "--roots", "root.pem", "--chain", "chain.pem", "--host", "api.example.com"])
        expectExit(result, 0)
        #expect(result.standardOutput.contains("[2] \(material.root.certificate.subject)"), "\(result)")
        // The bundle's first certificate is the leaf: a bundle led by the CA verifies the CA, for the wrong host.
        try material.workspace.directory.write(material.issuing.certificate.pemEncoded + material.leaf.pemEncoded, to: "reversed.pem")
        let reversed = try await material.workspace.tlsctl(["verify", "--roots", "root.pem", "--chain", "reversed.pem", "--host", "api.example.com"])
        expectExit(reversed, 1)
        #expect(reversed.standardOutput.contains("[0] nameMismatch:"), "\(reversed)")
        // Without the intermediate in the bundle there is no path.
        let alone = try await material.workspace.tlsctl(["verify", "--roots", "root.pem", "--chain", "leaf.pem"])
        expectExit(alone, 1)
        #expect(alone.standardOutput.contains("[0] untrustedIssuer:"), "\(alone)")
    }

    @Test("--crls with a revoked leaf: exit 1 naming the revocation; the CRL without it: exit 0")
    func revokedLeaf() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        let clean = try material.issuing.makeCRL()
        try material.workspace.directory.write(clean.pemEncoded, to: "clean.crl.pem")
        expectExit(try await material.run(["--crls", "clean.crl.pem"]), 0)

        try material.issuing.revoke(material.leaf, reason: .keyCompromise, date: Date().addingTimeInterval(-60))
        try material.workspace.directory.write(try material.issuing.makeCRL().pemEncoded, to: "revoked.crl.pem")
        let result = try await material.run(["--crls", "revoked.crl.pem", "--host", "api.example.com"])
        expectExit(result, 1)
        #expect(result.standardOutput.contains("[0] revoked:"), "\(result)")
        #expect(result.standardOutput.contains("keyCompromise"), "\(result)")
        // --require-crl: the issuing CA's CRL is there, the root's is not.
        let required = try await material.run(["--crls", "clean.crl.pem", "--require-crl"])
        expectExit(required, 1)
        #expect(required.standardOutput.contains("[1] revocationStatusUnknown:"), "\(required)")
        #expect(!required.standardOutput.contains("[0] revocationStatusUnknown:"), "\(required)")
    }

    @Test("--crls that cannot be used is reported: an empty file, a CRL with a damaged authority key identifier")
    func unusableCRLsAreReported() async throws {
        let material = try Material()
        defer { material.workspace.remove() }
        try material.workspace.directory.write("", to: "empty.crl.pem")
        let empty = try await material.run(["--crls", "empty.crl.pem"])
        expectExit(empty, 0)
        #expect(empty.standardError.contains("--crls empty.crl.pem is empty"), "\(empty)")
        let emptyRequired = try await material.run(["--crls", "empty.crl.pem", "--require-crl"])
        expectExit(emptyRequired, 1)
        #expect(emptyRequired.standardError.contains("--require-crl needs one per issuer"), "\(emptyRequired)")

        // The issuing CA's CRL, re-signed with a different authority key identifier.
        let crl = try material.issuing.makeCRL()
        let bad = try CertificateRevocationList.create(
            issuer: material.issuing.certificate, key: material.issuing.key, number: SerialNumber(bytes: [0x7F]),
            nextUpdate: Date().addingTimeInterval(86_400), entries: crl.entries,
            authorityKeyIdentifier: Array(repeating: 0xAB, count: 20))
        try material.workspace.directory.write(bad.pemEncoded, to: "bad-aki.crl.pem")
        let soft = try await material.run(["--crls", "bad-aki.crl.pem"])
        expectExit(soft, 1)
        #expect(soft.standardOutput.contains("[0] revocationStatusUnknown:"), "\(soft)")
        #expect(soft.standardOutput.contains("was not used: its authority key identifier AB:AB"), "\(soft)")
        let required = try await material.run(["--crls", "bad-aki.crl.pem", "--require-crl"])
        expectExit(required, 1)
        #expect(required.standardOutput.contains("was not used"), "\(required)")
    }
}
