import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

// Issue 9, part 2: public input never reaches a trap; keys are written so that every major
// library reads them; values say what they are.

@Suite("API hardening: no public input traps, honest values")
struct APIHardeningTests {
    /// Before: `AttributeType(oid:)` took any text and `DistinguishedName.derEncoded` then
    /// crashed on `try!` (exit 132). `18446744073709551615.1` trapped inside SwiftASN1 (UInt
    /// overflow), `2.+5` and `5.3` were taken and did not round-trip.
    @Test("AttributeType(oid:) refuses anything that is not a valid dotted OID",
          arguments: ["", "hello", "1", "1.", ".1", "1..2", "5.3", "1.40", "0.99", "2.+5", "01.2", "1.02", "1.2.-3",
                      "18446744073709551615.1", "2.18446744073709551615", "1.2.18446744073709551616", "1.2.9223372036854775808", "１.２"])
    func invalidOIDs(_ text: String) {
        let error = #expect(throws: GnuTLSError.self) { try AttributeType(oid: text) }
        #expect(error?.code == .invalidArgument)
        #expect(throws: GnuTLSError.self) { try DistinguishedName("\(text)=x") }
    }

    @Test("a valid custom OID encodes, parses and renders back the same",
          arguments: ["0.0", "1.39", "2.999", "2.5.4.3", "1.3.6.1.4.1.55555.1", "2.9223372036854775727", "1.2.9223372036854775807"])
    func validOIDsRoundTrip(_ text: String) throws {
        let type = try AttributeType(oid: text)
        #expect(type.oid == text)
        let name = DistinguishedName([RelativeDistinguishedName([DistinguishedName.Attribute(type: type, value: AttributeValue("v"))])])
        let parsed = try DistinguishedName(derEncoded: name.derEncoded)
        #expect(parsed == name)
        #expect(parsed.attributes.first?.type.oid == text)
        #expect(try DistinguishedName(parsed.description) == parsed)
    }

    /// Before: `TLSIdentity(chain: [], key:)` was accepted and its `leaf` (`chain[0]`)
    /// trapped (index out of range); an empty chain file reached the same trap.
    @Test("a TLS identity always has a leaf: an empty chain is a typed error, never a trap")
    func identityWithoutCertificate() throws {
        let key = try KeyPair.generate(.ecdsaP256)
        let error = #expect(throws: GnuTLSError.self) { try TLSIdentity(chain: [], key: key) }
        #expect(error?.code == .invalidArgument && error?.description.contains("empty") == true, "\(String(describing: error))")

        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let empty = try directory.write("", to: "empty-chain.pem")
        let keyFile = try directory.write(try key.pemEncoded(), to: "key.pem")
        #expect(throws: GnuTLSError.self) { try TLSIdentity(chainContentsOfFile: empty, keyContentsOfFile: keyFile) }

        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Identity Root"))
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=identity.test"), key: key,
                                                    alternativeNames: [.dnsName("identity.test")])
        let chain = try root.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 1))
        var identity = try TLSIdentity(chain: chain, key: key)
        #expect(identity.leaf == chain[0] && identity.chain == chain && identity.intermediates == Array(chain.dropFirst()))
        identity.intermediates = []
        #expect(identity.chain == [chain[0]], "removing every intermediate leaves the leaf")
    }

    @Test("AttributeValue(derEncoded:) takes exactly one complete DER element")
    func attributeValueDER() throws {
        for bad: [UInt8] in [[], [0x0C], [0x0C, 0x05, 0x61], [0x0C, 0x01, 0x61, 0x00], [0xFF, 0xFF]] {
            #expect(throws: GnuTLSError.self) { try AttributeValue(derEncoded: bad) }
        }
        #expect(try AttributeValue(derEncoded: [0x0C, 0x01, 0x61]).stringValue == "a")
        let long = AttributeValue(String(repeating: "x", count: 300))
        #expect(long.stringValue?.count == 300)
    }

    /// RFC 8018 gives the PRF AlgorithmIdentifier NULL parameters; BoringSSL (swift-nio-ssl)
    /// refuses an encrypted key without them.
    @Test("an encrypted key carries hmacWithSHA256 with NULL parameters, and openssl and GnuTLS read it",
          arguments: [KeyAlgorithm.ecdsaP256, .ed25519, .rsa2048])
    func encryptedKeyPRFParameters(_ algorithm: KeyAlgorithm) async throws {
        let key = try KeyPair.generate(algorithm)
        let pem = try key.pemEncoded(passphrase: "correct horse")
        #expect(try KeyPair(pemEncoded: pem, passphrase: "correct horse").publicKey == key.publicKey)
        try await withTemporaryDirectory { directory in
            let path = try directory.write(pem, to: "key.pem")
            let dump = try await Tool.runChecked(["openssl", "asn1parse", "-in", path], package: "openssl").standardOutput
            let lines = dump.split(separator: "\n")
            guard let prf = lines.firstIndex(where: { $0.contains(":hmacWithSHA256") }) else {
                Issue.record("no hmacWithSHA256 in\n\(dump)")
                return
            }
            #expect(lines.indices.contains(prf + 1) && lines[prf + 1].contains("NULL"), "\(dump)")
            let plain = try await Tool.runChecked(["openssl", "pkey", "-in", path, "-passin", "pass:correct horse", "-pubout"], package: "openssl")
            #expect(try PublicKey(pemEncoded: plain.standardOutput) == key.publicKey)
        }
    }

    @Test("a malformed IP SAN (5 bytes) is .invalidIPAddress, not a fake otherName, and verification refuses it")
    func malformedIPAddressSAN() async throws {
        try await withTemporaryDirectory { directory in
            let rootKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("root.key.pem"))
            let rootPath = try await OpenSSLIssuer.selfSigned(key: rootKey, subject: "/CN=Hardening Root", extensions: OpenSSLIssuer.caExtensions(),
                                                        out: directory.file("root.pem"), in: directory)
            let leafKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("leaf.key.pem"))
            var extensions = OpenSSLIssuer.serverExtensions(names: [])
            // SEQUENCE { [2] "a.example.com", [7] 01 02 03 04 05 }
            extensions.append("subjectAltName = DER:3016820d612e6578616d706c652e636f6d87050102030405")
            let leafPath = try await OpenSSLIssuer.issue(key: leafKey, subject: "/CN=a.example.com", issuerCertificate: rootPath, issuerKey: rootKey,
                                                   extensions: extensions, out: directory.file("leaf.pem"), in: directory)
            let leaf = try Certificate.load(contentsOfFile: leafPath)[0]
            #expect(leaf.subjectAlternativeNames == [.dnsName("a.example.com"), .invalidIPAddress([1, 2, 3, 4, 5])])
            let root = try Certificate.load(contentsOfFile: rootPath)[0]
            let error = #expect(throws: VerificationError.self) {
                try Verifier(trustStore: TrustStore(certificates: [root])).verify(leaf, policy: .server(host: "a.example.com"))
            }
            #expect(error?.problems.contains { $0.reason == .malformedCertificate && $0.message.contains("IP alternative name") } == true)
        }
        // Nothing can be issued with one.
        let key = try KeyPair.generate(.ecdsaP256)
        #expect(throws: GnuTLSError.self) {
            try CertificateRequest.create(subject: try DistinguishedName("CN=x"), key: key, alternativeNames: [.invalidIPAddress([1, 2, 3])])
        }
    }

    /// Found by the property tests: `IPNetwork("")` and `IPNetwork("/")` indexed an empty
    /// array (a trap).
    @Test("IPNetwork text: empty, slash-only and malformed prefixes are nil, never a crash",
          arguments: ["", "/", "//", "/8", "10.0.0.0/", "10.0.0.0//8", "10.0.0.0/33", "10.0.0.0/-1", "::/129", "10.0.0.0/8/8"])
    func ipNetworkText(_ text: String) {
        #expect(IPNetwork(text) == nil)
    }

    @Test("KeyDescription.family is typed")
    func typedKeyFamily() throws {
        #expect(try KeyPair.generate(.ecdsaP256).keyDescription.family == .ecdsa)
        #expect(try KeyPair.generate(.ed25519).keyDescription.family == .ed25519)
        #expect(KeyFamily.rsa.rawValue == "RSA")
    }

    @Test("loading from a file: one convention (init(contentsOfFile:) / load(contentsOfFile:))")
    func loadingConvention() throws {
        let key = try KeyPair.generate(.ecdsaP256)
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Load Root"), key: key)
        try withTemporaryDirectory { directory in
            let certificatePath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
            let keyPath = try directory.write(try key.pemEncoded(passphrase: "pw"), to: "root.key.pem")
            #expect(try TrustStore(contentsOfFile: certificatePath).certificates == [root.certificate])
            #expect(try Certificate.load(contentsOfFile: certificatePath) == [root.certificate])
            #expect(try KeyPair(contentsOfFile: keyPath, passphrase: "pw").publicKey == key.publicKey)
            let identity = try TLSIdentity(chainContentsOfFile: certificatePath, keyContentsOfFile: keyPath, passphrase: "pw")
            #expect(identity.leaf == root.certificate)
        }
    }
}
