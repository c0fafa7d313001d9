import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

@Suite("Certificates: parsing, fields, bundles, equality")
struct CertificateTests {
    /// A root, an intermediate with name constraints, and a server certificate carrying
    /// every extension the library writes.
    struct Fixture {
        let root: LocalAuthority
        let intermediate: LocalAuthority
        let leafKey: KeyPair
        let leaf: Certificate

        init() throws {
            root = try LocalAuthority.createRoot(subject: try name("CN=Fields Root,O=Example,C=US"), key: KeyPair.generate(.ecdsaP384))
            intermediate = try root.createIntermediate(
                subject: try name("CN=Fields Issuing CA,O=Example,C=US"), key: KeyPair.generate(.ecdsaP256), pathLength: 0,
                nameConstraints: NameConstraints(
                    permittedDNSDomains: ["example.com"], excludedDNSDomains: ["secret.example.com"],
                    permittedIPRanges: [IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!], excludedIPRanges: [IPNetwork("10.9.0.0/16")!],
                    permittedEmailAddresses: ["example.com"], excludedEmailAddresses: ["root@example.com"]))
            leafKey = try KeyPair.generate(.rsa2048)
            let request = try CertificateRequest.create(
                subject: try name("CN=www.example.com,O=Example,C=US"), key: leafKey,
                alternativeNames: [.dnsName("www.example.com"), .ipAddress(IPAddress("10.1.2.3")!), .ipAddress(IPAddress("fd00::1")!),
                                   .email("web@example.com"), .uri("spiffe://example.com/web")])
            leaf = try intermediate.issue(request, profile: .tlsServerClient, options: IssuanceOptions(
                validityDays: 30, crlDistributionPoints: ["http://crl.example.com/issuing.crl"],
                ocspURLs: ["http://ocsp.example.com"], caIssuerURLs: ["http://ca.example.com/issuing.der"]))
        }
    }

    @Test("every field of an issued leaf reads back")
    func leafFields() throws {
        let fixture = try Fixture()
        let leaf = fixture.leaf
        #expect(leaf.version == 3)
        #expect(leaf.subject.description == "CN=www.example.com,O=Example,C=US")
        #expect(leaf.issuer == fixture.intermediate.certificate.subject)
        #expect(!leaf.isSelfIssued)
        #expect(leaf.notValidBefore < Date() && leaf.notValidAfter > Date().addingTimeInterval(29 * 86_400))
        #expect(leaf.publicKey == fixture.leafKey.publicKey)
        #expect(leaf.publicKey.keyDescription.family == .rsa)
        // Signed by the P-256 intermediate: ECDSA with SHA-256.
        #expect(leaf.signatureAlgorithm.oid == "1.2.840.10045.4.3.2")
        #expect(leaf.signatureAlgorithm.name == "ECDSA-SHA256")
        #expect(leaf.subjectAlternativeNames == [.dnsName("www.example.com"), .ipAddress(IPAddress("10.1.2.3")!),
                                                 .ipAddress(IPAddress("fd00::1")!), .email("web@example.com"), .uri("spiffe://example.com/web")])
        #expect(leaf.dnsNames == ["www.example.com"])
        #expect(leaf.ipAddresses == [IPAddress("10.1.2.3")!, IPAddress("fd00::1")!])
        #expect(leaf.basicConstraints?.description == "CA:FALSE")
        #expect(!leaf.isCertificateAuthority)
        // RSA server key: digitalSignature and keyEncipherment.
        #expect(leaf.keyUsage == [.digitalSignature, .keyEncipherment])
        #expect(leaf.extendedKeyUsage == [.serverAuth, .clientAuth])
        #expect(leaf.subjectKeyIdentifier == fixture.leafKey.publicKey.keyIdentifier)
        #expect(leaf.authorityKeyIdentifier == fixture.intermediate.certificate.subjectKeyIdentifier)
        #expect(leaf.crlDistributionPoints == [.uri("http://crl.example.com/issuing.crl")])
        #expect(leaf.ocspURLs == ["http://ocsp.example.com"])
        #expect(leaf.caIssuerURLs == ["http://ca.example.com/issuing.der"])
        #expect(leaf.nameConstraints == nil)
        #expect(leaf.extension(oid: "2.5.29.19")?.critical == true)
        #expect(leaf.extension(oid: "2.5.29.15")?.critical == true)
        #expect(leaf.extension(oid: "2.5.29.17")?.critical == false)
        #expect(leaf.extension(oid: "1.2.3.4") == nil)
        #expect(Set(leaf.extensions.map(\.oid)) == ["2.5.29.17", "2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.14", "2.5.29.35",
                                                     "2.5.29.31", "1.3.6.1.5.5.7.1.1"])
        #expect(leaf.description.contains("www.example.com"))
    }

    @Test("CA fields: basic constraints with path length, CA key usage, name constraints")
    func authorityFields() throws {
        let fixture = try Fixture()
        let root = fixture.root.certificate
        #expect(root.isSelfIssued)
        #expect(root.subject == root.issuer)
        #expect(root.basicConstraints?.description == "CA:TRUE")
        #expect(root.keyUsage == [.keyCertSign, .cRLSign])
        #expect(root.extendedKeyUsage == nil)
        #expect(root.subjectKeyIdentifier == root.authorityKeyIdentifier)
        #expect(root.signatureAlgorithm.oid == "1.2.840.10045.4.3.3")  // P-384 signs with SHA-384

        let intermediate = fixture.intermediate.certificate
        #expect(intermediate.basicConstraints?.description == "CA:TRUE, pathlen:0")
        #expect(intermediate.keyUsage == [.keyCertSign, .cRLSign])
        #expect(intermediate.authorityKeyIdentifier == root.subjectKeyIdentifier)
        let constraints = try #require(intermediate.nameConstraints)
        #expect(constraints.permittedDNSDomains == ["example.com"])
        #expect(constraints.excludedDNSDomains == ["secret.example.com"])
        #expect(constraints.permittedIPRanges == [IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!])
        #expect(constraints.excludedIPRanges == [IPNetwork("10.9.0.0/16")!])
        #expect(constraints.permittedEmailAddresses == ["example.com"])
        #expect(constraints.excludedEmailAddresses == ["root@example.com"])
        #expect(intermediate.extension(oid: "2.5.29.30")?.critical == true)
    }

    @Test("serial and fingerprint match the encoding")
    func serialAndFingerprint() async throws {
        let fixture = try Fixture()
        try await withTemporaryDirectory { directory in
            let path = try directory.write(fixture.leaf.derEncoded, to: "leaf.der")
            #expect(hex(fixture.leaf.sha256Fingerprint) == (try await OpenSSL.sha256Hex(ofFile: path)))
            let serial = try await Tool.runChecked(["openssl", "x509", "-inform", "DER", "-in", path, "-noout", "-serial"]).standardOutput
            #expect(serial.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
                    == "serial=" + fixture.leaf.serialNumber.hexString)
        }
    }

    @Test("bundles parse in order; single-certificate parsing refuses a bundle")
    func bundles() throws {
        let fixture = try Fixture()
        let chain = [fixture.leaf, fixture.intermediate.certificate, fixture.root.certificate]
        let bundle = "Leaf, intermediate and root, with text between blocks as openssl writes it\n"
            + chain.map { "subject=\($0.subject)\n" + $0.pemEncoded }.joined()
        let parsed = try Certificate.parseChain(pemEncoded: bundle)
        #expect(parsed == chain)
        #expect(try Certificate.parseChain(bytes: Array(bundle.utf8)) == chain)
        #expect(try Certificate.parseChain(bytes: fixture.leaf.derEncoded) == [fixture.leaf])
        #expect(try Certificate.parseChain(pemEncoded: bundle.replacingOccurrences(of: "\n", with: "\r\n")) == chain)
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected one certificate, found 3"]) { try Certificate(pemEncoded: bundle) }
        try withTemporaryDirectory { directory in
            let path = try directory.write(bundle, to: "chain.pem")
            #expect(try Certificate.load(contentsOfFile: path) == chain)
        }
        // A bundle mixing a key in: the certificates are found, the key is ignored.
        let mixed = try fixture.leafKey.pemEncoded() + fixture.leaf.pemEncoded
        #expect(try Certificate.parseChain(pemEncoded: mixed) == [fixture.leaf])
        // A bundle truncated inside its second block is an error, not a shorter chain.
        let truncated = String(bundle.prefix(bundle.count - fixture.root.certificate.pemEncoded.count / 2))
        expectGnuTLSError(.malformedPEM, mentioning: ["CERTIFICATE", "not closed"]) { try Certificate.parseChain(pemEncoded: truncated) }
    }

    @Test("openssl's TRUSTED CERTIFICATE form and a byte order mark are read")
    func otherPEMForms() async throws {
        let fixture = try Fixture()
        try await withTemporaryDirectory { directory in
            let path = try directory.write(fixture.root.certificate.pemEncoded, to: "root.pem")
            let trusted = directory.file("trusted.pem")
            try await Tool.runChecked(["openssl", "x509", "-in", path, "-trustout", "-addtrust", "serverAuth", "-out", trusted])
            #expect(try directory.read("trusted.pem").hasPrefix("-----BEGIN TRUSTED CERTIFICATE-----"))
            #expect(try Certificate.load(contentsOfFile: trusted) == [fixture.root.certificate])
            let withBOM = try directory.write([0xEF, 0xBB, 0xBF] + Array(fixture.leaf.pemEncoded.utf8), to: "bom.pem")
            #expect(try Certificate.load(contentsOfFile: withBOM) == [fixture.leaf])
            let keyWithBOM = try directory.write([0xEF, 0xBB, 0xBF] + Array(fixture.leafKey.pemEncoded().utf8), to: "key.pem")
            #expect(try KeyPair(contentsOfFile: keyWithBOM) == fixture.leafKey)
        }
        expectGnuTLSError(.malformedDER, mentioning: ["TRUSTED CERTIFICATE"]) {
            try Certificate.parseChain(pemEncoded: PEMBlock(label: "TRUSTED CERTIFICATE", derBytes: [0x30, 0x05, 0x01]).pemString)
        }
    }

    @Test("equality and hashing are by DER; values are Sendable")
    func equality() async throws {
        let fixture = try Fixture()
        let leaf = fixture.leaf
        let copy = try Certificate(derEncoded: leaf.derEncoded)
        #expect(copy == leaf)
        #expect(Set([leaf, copy, fixture.root.certificate]).count == 2)
        // A second certificate for the same request differs (serial, signature).
        let request = try CertificateRequest.create(subject: leaf.subject, key: fixture.leafKey, alternativeNames: leaf.subjectAlternativeNames)
        let other = try fixture.intermediate.issue(request, profile: .tlsServerClient)
        #expect(other != leaf)
        #expect(other.subject == leaf.subject && other.publicKey == leaf.publicKey)
        // Crosses a task boundary as a value.
        let fromTask = await Task.detached { leaf }.value
        #expect(fromTask == leaf)
    }

    @Test("malformed and truncated certificates")
    func malformed() throws {
        let fixture = try Fixture()
        let der = fixture.leaf.derEncoded
        expectGnuTLSError(.malformedDER, mentioning: ["not a DER X.509 certificate"]) { try Certificate(derEncoded: Array(der.dropLast(40))) }
        expectGnuTLSError(.malformedDER) { try Certificate(derEncoded: Array(der.prefix(10))) }
        expectGnuTLSError(.malformedDER) { try Certificate(derEncoded: []) }
        // Trailing bytes would make equality by DER meaningless: refused.
        expectGnuTLSError(.malformedDER, mentioning: ["not a DER X.509 certificate"]) { try Certificate(derEncoded: der + [0x05, 0x00]) }
        expectGnuTLSError(.malformedPEM, mentioning: ["base64"]) {
            try Certificate(pemEncoded: PEMText.block("CERTIFICATE", body: "%%%%"))
        }
        let truncatedPEM = PEMBlock(label: "CERTIFICATE", derBytes: Array(der.dropLast(5))).pemString
        expectGnuTLSError(.malformedDER) { try Certificate(pemEncoded: truncatedPEM) }
    }

    @Test("a version 1 certificate (no extensions) parses, and is refused as a CA")
    func versionOne() async throws {
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ec:P-256", to: directory.file("key.pem"))
            try await Tool.runChecked(["openssl", "req", "-new", "-key", keyPath, "-subj", "/CN=Old Style", "-out", directory.file("req.pem")])
            try await Tool.runChecked(["openssl", "x509", "-req", "-in", directory.file("req.pem"), "-key", keyPath, "-days", "2",
                                 "-out", directory.file("v1.pem")])
            let certificate = try #require(try Certificate.load(contentsOfFile: directory.file("v1.pem")).first)
            #expect(certificate.version == 1)
            #expect(certificate.extensions.isEmpty)
            #expect(certificate.basicConstraints == nil && certificate.keyUsage == nil && certificate.subjectKeyIdentifier == nil)
            #expect(!certificate.isCertificateAuthority)
            #expect(certificate.isSelfIssued)
            expectIssuanceError(.authorityMisconfigured, mentioning: ["not a CA", "Old Style"]) {
                try LocalAuthority(certificate: certificate, key: KeyPair(contentsOfFile: keyPath))
            }
        }
    }

    @Test("certificates made by openssl parse, including their extensions")
    func opensslCertificate() async throws {
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ed25519", to: directory.file("key.pem"))
            let path = directory.file("cert.pem")
            try await Tool.runChecked(["openssl", "req", "-x509", "-new", "-key", keyPath, "-subj", "/O=Tool/CN=tool.example.net", "-days", "3",
                                 "-set_serial", "0x0123456789abcdef01",
                                 "-addext", "subjectAltName=DNS:tool.example.net,IP:192.0.2.1",
                                 "-addext", "basicConstraints=critical,CA:TRUE,pathlen:2",
                                 "-addext", "nameConstraints=critical,permitted;DNS:example.net,excluded;IP:192.0.2.128/255.255.255.128",
                                 "-addext", "crlDistributionPoints=URI:http://crl.example.net/a.crl",
                                 "-addext", "authorityInfoAccess=OCSP;URI:http://ocsp.example.net",
                                 "-out", path])
            let certificate = try #require(try Certificate.load(contentsOfFile: path).first)
            #expect(certificate.serialNumber == SerialNumber(hex: "0123456789abcdef01"))
            #expect(certificate.subject.description == "CN=tool.example.net,O=Tool")
            #expect(certificate.publicKey == (try KeyPair(contentsOfFile: keyPath)).publicKey)
            #expect(certificate.signatureAlgorithm.oid == "1.3.101.112")
            #expect(certificate.dnsNames == ["tool.example.net"])
            #expect(certificate.basicConstraints?.description == "CA:TRUE, pathlen:2")
            #expect(certificate.nameConstraints?.permittedDNSDomains == ["example.net"])
            #expect(certificate.nameConstraints?.excludedIPRanges == [IPNetwork("192.0.2.128/25")!])
            #expect(certificate.crlDistributionPoints == [.uri("http://crl.example.net/a.crl")])
            #expect(certificate.ocspURLs == ["http://ocsp.example.net"])
            #expect(certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) == 3 * 86_400)
        }
    }
}
