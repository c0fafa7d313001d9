import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import TestSupport

/// Our CRLs against independent implementations (OpenSSL, GnuTLS's certtool, pkilint), and
/// their CRLs through our parser.
@Suite struct CRLInteropTests {
    /// A root and an issuing intermediate, each saved to a directory (so each has a ledger),
    /// with a revoked and a good leaf under the intermediate, all written as PEM files.
    struct PKI {
        let dir: TemporaryDirectory
        let root: LocalAuthority
        let intermediate: LocalAuthority
        let revokedLeaf: Certificate
        let goodLeaf: Certificate

        init(algorithm: KeyAlgorithm = .ecdsaP256) throws {
            dir = try TemporaryDirectory(prefix: "crl-interop")
            let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Interop CRL Root,O=Example"), key: KeyPair.generate(algorithm))
            try root.save(to: dir.file("root"), passphrase: nil)
            let intermediate = try root.createIntermediate(subject: try DistinguishedName("CN=Interop CRL Issuing CA,O=Example"),
                                                           key: KeyPair.generate(algorithm))
            try intermediate.save(to: dir.file("int"), passphrase: nil)
            func leaf(_ name: String) throws -> Certificate {
                let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: KeyPair.generate(.ecdsaP256),
                                                        alternativeNames: [.dnsName(name)])
                return try intermediate.issue(csr, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
            }
            revokedLeaf = try leaf("revoked.example.com")
            goodLeaf = try leaf("good.example.com")
            self.root = root
            self.intermediate = intermediate
            try dir.write(root.certificate.pemEncoded, to: "root.pem")
            try dir.write(intermediate.certificate.pemEncoded, to: "int.pem")
            try dir.write(revokedLeaf.pemEncoded, to: "revoked.pem")
            try dir.write(goodLeaf.pemEncoded, to: "good.pem")
        }
    }

    @Test func opensslVerifyHonoursOurCRL() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        try pki.intermediate.revoke(pki.revokedLeaf, reason: .keyCompromise)
        let crl = try pki.intermediate.makeCRL()
        let crlPath = try pki.dir.write(crl.pemEncoded, to: "int.crl.pem")

        func verify(_ leaf: String, extra: [String] = [], crls: [String] = [crlPath]) async throws -> ProcessResult {
            try await Tool.run(["openssl", "verify", "-crl_check"] + extra + crls.flatMap { ["-CRLfile", $0] }
                         + ["-CAfile", pki.dir.file("root.pem"), "-untrusted", pki.dir.file("int.pem"), pki.dir.file(leaf)])
        }
        let revoked = try await verify("revoked.pem")
        #expect(!revoked.succeeded, "\(revoked)")
        #expect(revoked.output.contains("certificate revoked"), "\(revoked)")
        let good = try await verify("good.pem")
        #expect(good.succeeded, "\(good)")
        #expect(good.standardOutput.contains(": OK"), "\(good)")

        // With -crl_check_all every CA needs a CRL: the root's (empty) one too.
        let rootCRL = try pki.root.makeCRL()
        #expect(rootCRL.entries.isEmpty)
        let rootCRLPath = try pki.dir.write(rootCRL.pemEncoded, to: "root.crl.pem")
        let all = try await verify("good.pem", extra: ["-crl_check_all"], crls: [crlPath, rootCRLPath])
        #expect(all.succeeded, "\(all)")
        // Without the root's CRL, -crl_check_all cannot decide: openssl must not accept.
        let missing = try await verify("good.pem", extra: ["-crl_check_all"], crls: [crlPath])
        #expect(!missing.succeeded, "\(missing)")
        #expect(missing.output.contains("unable to get certificate CRL"), "\(missing)")
    }

    @Test func opensslSeesOurEntriesAndReasons() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        try pki.intermediate.revoke(pki.revokedLeaf, reason: .cessationOfOperation)
        let crlPath = try pki.dir.write(try pki.intermediate.makeCRL().pemEncoded, to: "int.crl.pem")
        let text = try await Tool.run(["openssl", "crl", "-in", crlPath, "-noout", "-text"])
        #expect(text.succeeded, "\(text)")
        #expect(text.standardOutput.contains("Version 2"), "\(text)")
        #expect(text.standardOutput.contains("Serial Number: \(pki.revokedLeaf.serialNumber.hexString.uppercased())"), "\(text)")
        #expect(text.standardOutput.contains("Cessation Of Operation"), "\(text)")
        #expect(text.standardOutput.contains("X509v3 CRL Number"), "\(text)")
        #expect(text.standardOutput.contains("X509v3 Authority Key Identifier"), "\(text)")
        let signature = try await Tool.run(["openssl", "crl", "-in", crlPath, "-noout", "-CAfile", pki.dir.file("int.pem")])
        #expect(signature.succeeded && signature.output.contains("verify OK"), "\(signature)")
    }

    @Test func certtoolVerifyHonoursOurCRL() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        try pki.intermediate.revoke(serial: pki.revokedLeaf.serialNumber, reason: .superseded)
        let crlPath = try pki.dir.write(try pki.intermediate.makeCRL().pemEncoded, to: "int.crl.pem")
        func verify(_ leaf: Certificate, _ name: String) async throws -> ProcessResult {
            let chain = try pki.dir.write(leaf.pemEncoded + pki.intermediate.certificate.pemEncoded, to: "\(name)-chain.pem")
            return try await Tool.run(["certtool", "--verify", "--load-ca-certificate", pki.dir.file("root.pem"),
                                 "--load-crl", crlPath, "--infile", chain], package: "gnutls-bin")
        }
        let revoked = try await verify(pki.revokedLeaf, "revoked")
        #expect(!revoked.succeeded, "\(revoked)")
        #expect(revoked.output.contains("revoked"), "\(revoked)")
        let good = try await verify(pki.goodLeaf, "good")
        #expect(good.succeeded, "\(good)")
        #expect(good.output.contains("Chain verification output: Verified"), "\(good)")
    }

    @Test func certtoolGeneratedCRLParses() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        let keyPath = try pki.dir.write(try (pki.intermediate.key as! KeyPair).pemEncoded(), to: "int.key.pem")
        let template = try pki.dir.write("crl_next_update = 3\ncrl_number = 4242\n", to: "crl.tmpl")
        let out = pki.dir.file("certtool.crl.pem")
        let result = try await Tool.run(["certtool", "--generate-crl", "--load-ca-privkey", keyPath,
                                   "--load-ca-certificate", pki.dir.file("int.pem"),
                                   "--load-certificate", pki.dir.file("revoked.pem"),
                                   "--template", template, "--outfile", out], package: "gnutls-bin")
        #expect(result.succeeded, "\(result)")
        let crl = try #require(try CertificateRevocationList.load(contentsOfFile: out).first)
        #expect(crl.version == 2)
        #expect(crl.issuer == pki.intermediate.certificate.subject)
        #expect(crl.number == 4242)
        #expect(crl.entries.map(\.serialNumber) == [pki.revokedLeaf.serialNumber])
        // certtool cannot write reason codes.
        #expect(crl.entries.first?.reason == nil)
        #expect(crl.entry(for: pki.goodLeaf.serialNumber) == nil)
        #expect(crl.authorityKeyIdentifier == pki.intermediate.certificate.subjectKeyIdentifier)
        let nextUpdate = try #require(crl.nextUpdate)
        #expect(abs(nextUpdate.timeIntervalSince(crl.thisUpdate) - 3 * 86_400) < 2)
        #expect(crl.isSigned(by: pki.intermediate.certificate))
        #expect(!crl.isSigned(by: pki.root.certificate))
    }

    @Test func opensslCAGeneratedCRLParsesWithReasons() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        let ca = pki.dir.file("osca")
        try FileManager.default.createDirectory(atPath: ca, withIntermediateDirectories: true)
        try pki.dir.write(pki.intermediate.certificate.pemEncoded, to: "osca/ca.pem")
        try pki.dir.write(try (pki.intermediate.key as! KeyPair).pemEncoded(), to: "osca/ca.key")
        try pki.dir.write("", to: "osca/index.txt")
        try pki.dir.write("1000\n", to: "osca/crlnumber")
        let config = try pki.dir.write("""
            [ ca ]
            default_ca = CA_default
            [ CA_default ]
            dir = \(ca)
            database = $dir/index.txt
            new_certs_dir = $dir
            certificate = $dir/ca.pem
            private_key = $dir/ca.key
            serial = $dir/serial
            crlnumber = $dir/crlnumber
            default_md = sha256
            default_crl_days = 5
            crl_extensions = crl_ext
            unique_subject = no
            [ crl_ext ]
            authorityKeyIdentifier = keyid:always

            """, to: "osca/openssl.cnf")

        // Three more leaves so that several reasons (and none) are listed.
        var revoked: [(Certificate, RevocationReason?, String?)] = [(pki.revokedLeaf, .keyCompromise, "keyCompromise")]
        let more: [(RevocationReason?, String?)] = [(.superseded, "superseded"), (.affiliationChanged, "affiliationChanged"), (nil, nil)]
        for (index, reason) in more.enumerated() {
            let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=o\(index).example.com"), key: KeyPair.generate(.ecdsaP256),
                                                    alternativeNames: [.dnsName("o\(index).example.com")])
            revoked.append((try pki.intermediate.issue(csr, profile: .tlsServer), reason.0, reason.1))
        }
        for (index, (certificate, _, name)) in revoked.enumerated() {
            let path = try pki.dir.write(certificate.pemEncoded, to: "osca/revoke\(index).pem")
            let result = try await Tool.run(["openssl", "ca", "-config", config, "-revoke", path] + (name.map { ["-crl_reason", $0] } ?? []))
            #expect(result.succeeded, "\(result)")
        }
        let out = pki.dir.file("osca/crl.pem")
        let result = try await Tool.run(["openssl", "ca", "-config", config, "-gencrl", "-out", out])
        #expect(result.succeeded, "\(result)")

        let crl = try #require(try CertificateRevocationList.load(contentsOfFile: out).first)
        #expect(crl.version == 2)
        #expect(crl.crlNumber == [0x10, 0x00])
        #expect(crl.number == 0x1000)
        #expect(crl.issuer == pki.intermediate.certificate.subject)
        #expect(crl.authorityKeyIdentifier == pki.intermediate.certificate.subjectKeyIdentifier)
        #expect(crl.isSigned(by: pki.intermediate.certificate))
        #expect(Set(crl.entries.map(\.serialNumber)) == Set(revoked.map(\.0.serialNumber)))
        for (certificate, reason, _) in revoked {
            let entry = try #require(crl.entry(for: certificate.serialNumber))
            #expect(entry.reason == reason, "serial \(certificate.serialNumber)")
        }
        #expect(crl.entry(for: pki.goodLeaf.serialNumber) == nil)
    }

    @Test(arguments: [KeyAlgorithm.ecdsaP256, .ecdsaP384, .rsa2048, .ed25519])
    func pkilintFindsNothingInOurCRLs(algorithm: KeyAlgorithm) async throws {
        let pki = try PKI(algorithm: algorithm)
        defer { pki.dir.remove() }
        let empty = try pki.dir.write(try pki.intermediate.makeCRL().pemEncoded, to: "empty.crl.pem")
        try pki.intermediate.revoke(pki.revokedLeaf, reason: .keyCompromise)
        try pki.intermediate.revoke(pki.goodLeaf, reason: nil)
        let full = try pki.dir.write(try pki.intermediate.makeCRL(nextUpdateIn: 30).pemEncoded, to: "full.crl.pem")
        let rootCRL = try pki.dir.write(try pki.root.makeCRL().pemEncoded, to: "root.crl.pem")
        for path in [empty, full, rootCRL] {
            let lint = try await Tool.run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", path], package: "pkilint")
            #expect(lint.succeeded, "\(lint)")
            #expect(lint.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(lint)")
        }
    }

    /// The lint above can fail: pkilint reports a CRL without CRL number and authority key
    /// identifier (made by openssl without crl_extensions).
    @Test func pkilintReportsADeficientCRL() async throws {
        let pki = try PKI()
        defer { pki.dir.remove() }
        let ca = pki.dir.file("bad")
        try FileManager.default.createDirectory(atPath: ca, withIntermediateDirectories: true)
        try pki.dir.write(pki.intermediate.certificate.pemEncoded, to: "bad/ca.pem")
        try pki.dir.write(try (pki.intermediate.key as! KeyPair).pemEncoded(), to: "bad/ca.key")
        try pki.dir.write("", to: "bad/index.txt")
        let config = try pki.dir.write("""
            [ ca ]
            default_ca = CA_default
            [ CA_default ]
            dir = \(ca)
            database = $dir/index.txt
            certificate = $dir/ca.pem
            private_key = $dir/ca.key
            default_md = sha256
            default_crl_days = 5

            """, to: "bad/openssl.cnf")
        let out = pki.dir.file("bad/crl.pem")
        let made = try await Tool.run(["openssl", "ca", "-config", config, "-gencrl", "-out", out])
        #expect(made.succeeded, "\(made)")
        let lint = try await Tool.run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", out], package: "pkilint")
        #expect(!lint.succeeded, "\(lint)")
        #expect(lint.standardOutput.contains("pkix.crl_number_missing"), "\(lint)")
        // Our parser reads it all the same, without number or key identifier.
        let crl = try #require(try CertificateRevocationList.load(contentsOfFile: out).first)
        #expect(crl.crlNumber == nil)
        #expect(crl.authorityKeyIdentifier == nil)
        #expect(crl.isSigned(by: pki.intermediate.certificate))
    }
}
