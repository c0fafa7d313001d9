import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

@Suite("tlsctl show")
struct ShowCommandTests {
    /// A root, an intermediate and a server certificate with every extension `show` prints.
    static func makeChain(_ work: CLIWorkspace) async throws {
        try await work.makeRoot("root")
        try await work.succeed(["ca", "intermediate", "--ca", "root", "--dir", "int", "--subject", "CN=Show Issuing CA,O=Example",
                          "--path-length", "0", "--permit-dns", "example.test", "--exclude-dns", "bad.example.test"])
        try await work.makeRequest("leaf", subject: "CN=www.example.test", dns: ["www.example.test"], extra: ["--ip", "192.0.2.1"])
        try await work.succeed(["ca", "issue", "--ca", "int", "--csr", "leaf.csr.pem", "--profile", "server-client", "--days", "20",
                          "--out", "leaf.pem", "--chain-out", "chain.pem", "--crl-url", "http://crl.example.test/int.crl",
                          "--ocsp-url", "http://ocsp.example.test/"])
    }

    /// What openssl says about one certificate: `openssl x509 -noout -FLAG`, the text after `=`.
    static func openssl(_ flag: [String], _ file: String, in work: CLIWorkspace) async throws -> String {
        let output = try await work.tool(["openssl", "x509", "-in", file, "-noout"] + flag).standardOutput
        return String(output.split(separator: "=", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("a certificate: every field, matching what the library and openssl read")
    func certificate() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeChain(work)
        let output = try await work.succeed(["show", "leaf.pem"]).standardOutput
        let leaf = try Certificate(pemEncoded: work.read("leaf.pem"))
        let intermediate = try Certificate(pemEncoded: work.read("int/ca.pem"))

        #expect(output.hasPrefix("Certificate\n"), "\(output)")
        #expect(ShowOutput.value("Subject", in: output) == leaf.subject.description)
        #expect(ShowOutput.value("Issuer", in: output) == intermediate.subject.description)
        // Serial and fingerprint as openssl computes them.
        let serial = try await Self.openssl(["-serial"], "leaf.pem", in: work)
        #expect(ShowOutput.value("Serial", in: output)?.replacingOccurrences(of: ":", with: "") == serial, "\(output)")
        let fingerprint = try await Self.openssl(["-fingerprint", "-sha256"], "leaf.pem", in: work)
        #expect(ShowOutput.value("SHA-256 fingerprint", in: output) == fingerprint, "\(output)")
        #expect(ShowOutput.value("Public key", in: output) == "ECDSA P-256")
        #expect(ShowOutput.value("Public key SHA-256", in: output) == colonHex(leaf.publicKey.sha256Fingerprint))
        #expect(ShowOutput.value("Signature algorithm", in: output) == leaf.signatureAlgorithm.name)
        #expect(ShowOutput.value("Not after", in: output)?.hasPrefix(Format.utc(leaf.notValidAfter)) == true, "\(output)")
        #expect(ShowOutput.value("Not before", in: output) == Format.utc(leaf.notValidBefore), "\(output)")
        #expect(ShowOutput.value("Alternative names", in: output) == "DNS:www.example.test, IP:192.0.2.1")
        #expect(ShowOutput.value("Basic constraints", in: output) == "CA:FALSE")
        #expect(output.contains("Basic constraints (critical):"))
        #expect(ShowOutput.value("Key usage", in: output) == "digitalSignature")
        #expect(ShowOutput.value("Extended key usage", in: output) == "serverAuth, clientAuth")
        #expect(ShowOutput.value("Subject key ID", in: output) == colonHex(try #require(leaf.subjectKeyIdentifier)))
        #expect(ShowOutput.value("Authority key ID", in: output) == colonHex(try #require(intermediate.subjectKeyIdentifier)))
        #expect(ShowOutput.value("CRL distribution points", in: output) == "URI:http://crl.example.test/int.crl")
        #expect(ShowOutput.value("OCSP", in: output) == "http://ocsp.example.test/")
        // The key identifiers as openssl reads them.
        let ski = try await work.tool(["openssl", "x509", "-in", "leaf.pem", "-noout", "-ext", "subjectKeyIdentifier"]).standardOutput
        #expect(ski.contains(colonHex(try #require(leaf.subjectKeyIdentifier))), "\(ski)")
    }

    @Test("a chain: each certificate, name constraints, and the links between them")
    func chain() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeChain(work)
        let output = try await work.succeed(["show", "chain.pem"]).standardOutput
        #expect(output.contains("Certificate 1 of 2\n") && output.contains("Certificate 2 of 2\n"), "\(output)")
        #expect(ShowOutput.values("Subject", in: output) == ["CN=www.example.test", "CN=Show Issuing CA,O=Example"])
        #expect(ShowOutput.values("Basic constraints", in: output) == ["CA:FALSE", "CA:TRUE, pathlen:0"])
        #expect(ShowOutput.values("Key usage", in: output) == ["digitalSignature", "keyCertSign, cRLSign"])
        #expect(ShowOutput.value("Name constraints", in: output) == "permitted DNS:example.test, excluded DNS:bad.example.test")
        let fingerprints = try await [
            Self.openssl(["-fingerprint", "-sha256"], "leaf.pem", in: work), Self.openssl(["-fingerprint", "-sha256"], "int/ca.pem", in: work),
        ]
        #expect(ShowOutput.values("SHA-256 fingerprint", in: output) == fingerprints)
        #expect(output.contains("Chain links\n  CN=www.example.test <- CN=Show Issuing CA,O=Example: issuer name matches, key identifier matches\n"), "\(output)")
        // DER input is read too.
        try await work.tool(["openssl", "x509", "-in", "leaf.pem", "-outform", "DER", "-out", "leaf.der"])
        let der = try await work.succeed(["show", "leaf.der"]).standardOutput
        #expect(ShowOutput.value("SHA-256 fingerprint", in: der) == fingerprints[0])
    }

    @Test("a certificate request: subject, key, names, and whether its signature verifies")
    func request() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRequest("leaf", subject: "CN=api.example.test,O=Example", dns: ["api.example.test"],
                             extra: ["--email", "ops@example.test", "--uri", "spiffe://example.test/api"])
        let output = try await work.succeed(["show", "leaf.csr.pem"]).standardOutput
        let key = try KeyPair(contentsOfFile: work.file("leaf.key.pem"))
        #expect(output.hasPrefix("Certificate request\n"), "\(output)")
        #expect(ShowOutput.value("Subject", in: output) == "CN=api.example.test,O=Example")
        #expect(ShowOutput.value("Public key", in: output) == "ECDSA P-256")
        #expect(ShowOutput.value("Public key SHA-256", in: output) == colonHex(key.publicKey.sha256Fingerprint))
        #expect(ShowOutput.value("Signature", in: output) == "valid (signed by the key it carries)")
        #expect(ShowOutput.value("Alternative names", in: output) == "DNS:api.example.test, email:ops@example.test, URI:spiffe://example.test/api")

        // A request whose signature was tampered with says so.
        var der = try CertificateRequest(contentsOfFile: work.file("leaf.csr.pem")).derEncoded
        der[der.count - 3] ^= 0x01
        try work.directory.write(der, to: "tampered.der")
        let tampered = try await work.succeed(["show", "tampered.der"]).standardOutput
        #expect(ShowOutput.value("Signature", in: tampered) == "INVALID: not signed by the key it carries", "\(tampered)")
    }

    @Test("keys: algorithm, encryption and fingerprint; an encrypted key needs --passphrase-file", arguments: [KeyAlgorithm.rsa2048, .ecdsaP521, .ed25519])
    func keys(algorithm: KeyAlgorithm) async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let passphrase = "show-\(UUID().uuidString)"
        let pass = try work.passphraseFile("pass.txt", passphrase)
        let wrong = try work.passphraseFile("wrong.txt", "not-\(passphrase)")
        try await work.succeed(["key", "generate", "--algorithm", algorithm.rawValue, "--out", "plain.pem"])
        try await work.succeed(["key", "generate", "--algorithm", algorithm.rawValue, "--out", "secret.pem", "--passphrase-file", pass])
        let plainKey = try KeyPair(contentsOfFile: work.file("plain.pem"))
        let secretKey = try KeyPair(contentsOfFile: work.file("secret.pem"), passphrase: passphrase)

        let plain = try await work.succeed(["show", "plain.pem"]).standardOutput
        #expect(plain.hasPrefix("Private key\n"))
        #expect(ShowOutput.value("Encrypted", in: plain) == "no")
        #expect(ShowOutput.value("Format", in: plain) == "PKCS#8 (PEM)")
        #expect(ShowOutput.value("Algorithm", in: plain) == plainKey.keyDescription.description)
        #expect(ShowOutput.value("Public key SHA-256", in: plain) == colonHex(plainKey.publicKey.sha256Fingerprint))

        let opened = try await work.succeed(["show", "secret.pem", "--passphrase-file", pass]).standardOutput
        #expect(ShowOutput.value("Encrypted", in: opened) == "yes")
        #expect(ShowOutput.value("Format", in: opened) == "encrypted PKCS#8 (PEM)")
        #expect(ShowOutput.value("Public key SHA-256", in: opened) == colonHex(secretKey.publicKey.sha256Fingerprint))

        // Without the passphrase it says the key is encrypted and asks for --passphrase-file.
        let locked = try await work.fail(["show", "secret.pem"],
                                   stderr: "tlsctl: error: the private key in secret.pem is encrypted: give its passphrase with --passphrase-file FILE to show its algorithm and public key")
        #expect(ShowOutput.value("Encrypted", in: locked.standardOutput) == "yes")
        #expect(ShowOutput.value("Algorithm", in: locked.standardOutput) == nil)
        let bad = try #require(libraryError { _ = try KeyPair(contentsOfFile: work.file("secret.pem"), passphrase: "not-\(passphrase)") } as? GnuTLSError)
        try await work.fail(["show", "secret.pem", "--passphrase-file", wrong],
                      stderr: "tlsctl: error: cannot read the private key in secret.pem: \(bad); check --passphrase-file")

        // Keys written by openssl: encrypted DER PKCS#8, and its public key.
        try await work.tool(["openssl", "pkcs8", "-topk8", "-v2", "aes256", "-in", "plain.pem", "-outform", "DER", "-out", "openssl.der", "-passout", "file:pass.txt"])
        let der = try await work.succeed(["show", "openssl.der", "--passphrase-file", pass]).standardOutput
        #expect(ShowOutput.value("Format", in: der) == "encrypted PKCS#8 (DER)")
        #expect(ShowOutput.value("Public key SHA-256", in: der) == colonHex(plainKey.publicKey.sha256Fingerprint))
        try await work.tool(["openssl", "pkey", "-in", "plain.pem", "-pubout", "-out", "public.pem"])
        let publicKey = try await work.succeed(["show", "public.pem"]).standardOutput
        #expect(publicKey.hasPrefix("Public key\n"))
        #expect(ShowOutput.value("Public key SHA-256", in: publicKey) == colonHex(plainKey.publicKey.sha256Fingerprint))
    }

    @Test("a key and its certificate in one file are both shown")
    func bundle() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeChain(work)
        try work.directory.write(try work.read("leaf.key.pem") + work.read("leaf.pem"), to: "bundle.pem")
        let output = try await work.succeed(["show", "bundle.pem"]).standardOutput
        #expect(output.hasPrefix("Private key\n") && output.contains("\nCertificate\n"), "\(output)")
        #expect(ShowOutput.values("Public key SHA-256", in: output).count == 2)
        #expect(Set(ShowOutput.values("Public key SHA-256", in: output)).count == 1, "the key and the certificate match")
    }

    @Test("a CRL: issuer, number, dates and every revoked serial with its reason, PEM or DER")
    func crl() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makeChain(work)
        let authority = try LocalAuthority.load(from: work.file("int"), passphrase: nil)
        let leaf = try Certificate(pemEncoded: work.read("leaf.pem"))
        let revokedAt = Date().addingTimeInterval(-60)
        let list = try CertificateRevocationList.create(
            issuer: authority.certificate, key: authority.key, number: SerialNumber(bytes: [0x2A]),
            nextUpdate: Date().addingTimeInterval(7 * 86_400),
            entries: [.init(serialNumber: leaf.serialNumber, revocationDate: revokedAt, reason: .keyCompromise)])
        try work.directory.write(list.pemEncoded, to: "int.crl.pem")
        try await work.tool(["openssl", "crl", "-in", "int.crl.pem", "-outform", "DER", "-out", "int.crl"])

        for file in ["int.crl.pem", "int.crl"] {
            let output = try await work.succeed(["show", file]).standardOutput
            #expect(output.hasPrefix("Certificate revocation list\n"), "\(output)")
            #expect(ShowOutput.value("Issuer", in: output) == authority.certificate.subject.description)
            #expect(ShowOutput.value("CRL number", in: output) == "2A")
            #expect(ShowOutput.value("This update", in: output) == Format.utc(list.thisUpdate))
            #expect(ShowOutput.value("Next update", in: output) == Format.utc(try #require(list.nextUpdate)))
            #expect(ShowOutput.value("Authority key ID", in: output) == colonHex(try #require(authority.certificate.subjectKeyIdentifier)))
            #expect(ShowOutput.value("Revoked", in: output) == "1 certificate")
            #expect(ShowOutput.value("Serial", in: output) == "\(colonHex(leaf.serialNumber.bytes)) revoked \(Format.utc(list.entries[0].revocationDate)) (keyCompromise)", "\(output)")
        }
        // openssl reads the same serial as revoked.
        let text = try await work.tool(["openssl", "crl", "-in", "int.crl.pem", "-noout", "-text"]).standardOutput
        #expect(text.contains("Serial Number: \(leaf.serialNumber.bytes.map { String(format: "%02X", $0) }.joined())"), "\(text)")
    }

    @Test("unreadable input is an error with the reason")
    func errors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.fail(["show", "absent.pem"], stderr: "tlsctl: error: cannot read absent.pem: no such file")
        try FileManager.default.createDirectory(atPath: work.file("folder"), withIntermediateDirectories: false)
        try await work.fail(["show", "folder"], stderr: "tlsctl: error: cannot read folder: permission denied or not a file")
        try work.directory.write("", to: "empty.pem")
        let empty = try #require(libraryError { _ = try PEMBlock.parseAll("") } as? GnuTLSError)
        try await work.fail(["show", "empty.pem"], stderr: "tlsctl: error: cannot read empty.pem: \(empty)")
        try work.directory.write("hello, world\n", to: "text.txt")
        let error = try #require(libraryError { _ = try PEMBlock.parseAll("hello, world\n") } as? GnuTLSError)
        try await work.fail(["show", "text.txt"], stderr: "tlsctl: error: cannot read text.txt: \(error)")
        try await work.fail(["show"], exitCode: 64)
    }
}

enum Format {
    /// The way `tlsctl show` prints dates.
    static func utc(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }
}
