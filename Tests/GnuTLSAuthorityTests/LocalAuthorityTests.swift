import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

@Suite("Authority: roots, intermediates, profiles, serials, validity, save and load")
struct LocalAuthorityTests {
    /// Each key signs with the digest that matches its strength.
    static let signatureAlgorithms: [(KeyAlgorithm, String)] = [
        (.ecdsaP256, "1.2.840.10045.4.3.2"), (.ecdsaP384, "1.2.840.10045.4.3.3"), (.ecdsaP521, "1.2.840.10045.4.3.4"),
        (.rsa2048, "1.2.840.113549.1.1.11"), (.rsa3072, "1.2.840.113549.1.1.11"), (.rsa4096, "1.2.840.113549.1.1.11"),
        (.ed25519, "1.3.101.112"),
    ]

    @Test("a self-signed root for every algorithm, signed with the matching digest", arguments: signatureAlgorithms)
    func root(_ algorithm: KeyAlgorithm, signatureOID: String) throws {
        let key = try KeyPair.generate(algorithm)
        let before = Date()
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root \(algorithm),O=Example"), key: key, validityDays: 100, pathLength: 2)
        let certificate = root.certificate
        #expect(root.key.publicKey == key.publicKey)
        #expect(certificate.publicKey == key.publicKey)
        #expect(certificate.isSelfIssued)
        #expect(certificate.basicConstraints?.description == "CA:TRUE, pathlen:2")
        #expect(certificate.keyUsage == [.keyCertSign, .cRLSign])
        #expect(certificate.subjectKeyIdentifier == key.publicKey.keyIdentifier)
        #expect(certificate.authorityKeyIdentifier == key.publicKey.keyIdentifier)
        #expect(root.chain == [certificate])
        #expect(root.root == certificate)
        #expect(certificate.signatureAlgorithm.oid == signatureOID)
        // Requests and certificates it signs use the same algorithm.
        let (_, request) = try makeRequest("CN=signed", names: [.dnsName("signed.example.com")])
        #expect(try root.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 10)).signatureAlgorithm.oid == signatureOID)
        #expect(try CertificateRequest.create(subject: try name("CN=self"), key: key).signatureAlgorithm.oid == signatureOID)
        // Backdated a little, valid for the days asked.
        #expect(certificate.notValidBefore <= before)
        #expect(certificate.notValidBefore >= before.addingTimeInterval(-3600))
        let lifetime = certificate.notValidAfter.timeIntervalSince(before)
        #expect(lifetime > 100 * 86_400 - 120 && lifetime <= 100 * 86_400 + 120)
        // A new key is made when none is given.
        let defaultRoot = try LocalAuthority.createRoot(subject: try name("CN=Default Root"))
        #expect(defaultRoot.certificate.publicKey.keyDescription.algorithm == .ecdsaP256)
    }

    @Test("root creation refuses an empty subject, a weak key and an empty validity")
    func rootRefusals() async throws {
        expectIssuanceError(.missingIdentity, mentioning: ["non-empty subject"]) {
            try LocalAuthority.createRoot(subject: DistinguishedName([]))
        }
        expectIssuanceError(.invalidRequest, mentioning: ["at least one day"]) {
            try LocalAuthority.createRoot(subject: try name("CN=r"), validityDays: 0)
        }
        try await withTemporaryDirectory { directory in
            let weak = try await KeyPair(contentsOfFile: OpenSSL.generateKey("rsa:1024", to: directory.file("weak.pem")))
            expectIssuanceError(.weakKey, mentioning: ["RSA-1024", "2048"]) {
                try LocalAuthority.createRoot(subject: try name("CN=weak"), key: weak)
            }
        }
    }

    @Test("an intermediate from the authority's own call, with path length and name constraints")
    func intermediateFromKey() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        let key = try KeyPair.generate(.ecdsaP384)
        let intermediate = try root.createIntermediate(
            subject: try name("CN=Issuing"), key: key, validityDays: 200, pathLength: 0,
            nameConstraints: NameConstraints(permittedDNSDomains: ["example.com"], excludedIPRanges: [IPNetwork("0.0.0.0/0")!]))
        #expect(intermediate.key.publicKey == key.publicKey)
        #expect(intermediate.certificate.issuer == root.certificate.subject)
        #expect(intermediate.certificate.basicConstraints?.description == "CA:TRUE, pathlen:0")
        #expect(intermediate.certificate.keyUsage == [.keyCertSign, .cRLSign])
        #expect(intermediate.certificate.extendedKeyUsage == nil)
        #expect(intermediate.certificate.nameConstraints?.permittedDNSDomains == ["example.com"])
        #expect(intermediate.certificate.nameConstraints?.excludedIPRanges == [IPNetwork("0.0.0.0/0")!])
        #expect(intermediate.chain == [intermediate.certificate, root.certificate])
        #expect(intermediate.root == root.certificate)
        // The intermediate issues in turn.
        let (_, request) = try makeRequest("CN=leaf.example.com", names: [.dnsName("leaf.example.com")])
        let chain = try intermediate.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
        #expect(chain.count == 2)
        #expect(chain[1] == intermediate.certificate)
        #expect(chain[0].issuer == intermediate.certificate.subject)
        #expect(chain[0].authorityKeyIdentifier == key.publicKey.keyIdentifier)
    }

    @Test("an intermediate from a CSR, with the intermediate-CA profile")
    func intermediateFromRequest() async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"), pathLength: 1)
        let (key, request) = try makeRequest("CN=Sub CA,O=Example", algorithm: .rsa2048)
        let certificate = try root.issue(request, profile: .intermediateCA(), options: IssuanceOptions(validityDays: 90))
        #expect(certificate.isCertificateAuthority)
        // The root allows one level; the new CA gets what is left: none below it.
        #expect(certificate.basicConstraints?.pathLengthConstraint == 0)
        #expect(certificate.keyUsage == [.keyCertSign, .cRLSign])
        let subCA = try LocalAuthority(certificate: certificate, key: key, issuers: root.chain)
        #expect(subCA.chain == [certificate, root.certificate])
        // A request asking for CA:TRUE is fine under the intermediate profile.
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ec:P-256", to: directory.file("ca.key"))
            let asksCA = try await opensslRequest(key: keyPath, subject: "/CN=Asks CA", extra: ["-addext", "basicConstraints=critical,CA:TRUE"], in: directory)
            #expect(asksCA.requestsCertificateAuthority)
            let issued = try root.issue(asksCA, profile: .intermediateCA(pathLength: 0))
            #expect(issued.basicConstraints?.description == "CA:TRUE, pathlen:0")
        }
    }

    @Test("a LocalAuthority refuses a key that does not match, or a certificate that is no CA")
    func misconfigured() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        expectIssuanceError(.authorityMisconfigured, mentioning: ["does not match", "CN=Root"]) {
            try LocalAuthority(certificate: root.certificate, key: KeyPair.generate())
        }
        let (key, request) = try makeRequest("CN=leaf", names: [.dnsName("leaf.example.com")])
        let leaf = try root.issue(request, profile: .tlsServer)
        expectIssuanceError(.authorityMisconfigured, mentioning: ["not a CA"]) {
            try LocalAuthority(certificate: leaf, key: key, issuers: [root.certificate])
        }
    }

    static let profiles: [(CertificateProfile, KeyAlgorithm, KeyUsage, [ExtendedKeyUsage])] = [
        (.tlsServer, .ecdsaP256, [.digitalSignature], [.serverAuth]),
        (.tlsServer, .rsa2048, [.digitalSignature, .keyEncipherment], [.serverAuth]),
        (.tlsServer, .ed25519, [.digitalSignature], [.serverAuth]),
        (.tlsClient, .ecdsaP256, [.digitalSignature], [.clientAuth]),
        (.tlsClient, .rsa2048, [.digitalSignature], [.clientAuth]),
        (.tlsServerClient, .ecdsaP521, [.digitalSignature], [.serverAuth, .clientAuth]),
    ]

    @Test("profiles decide key usage, extended key usage and basic constraints", arguments: profiles)
    func profileContents(_ profile: CertificateProfile, algorithm: KeyAlgorithm, usage: KeyUsage, purposes: [ExtendedKeyUsage]) throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Profile Root"))
        // The request asks for other things; the authority does not copy them.
        let (_, request) = try makeRequest(
            "CN=subject.example.com", algorithm: algorithm, names: [.dnsName("subject.example.com")],
            keyUsage: [.keyCertSign, .dataEncipherment], extendedKeyUsage: [.codeSigning])
        let certificate = try root.issue(request, profile: profile)
        #expect(certificate.keyUsage == usage)
        #expect(certificate.extendedKeyUsage == purposes)
        #expect(certificate.basicConstraints?.description == "CA:FALSE")
        #expect(certificate.subjectKeyIdentifier == request.publicKey.keyIdentifier)
        #expect(certificate.authorityKeyIdentifier == root.certificate.subjectKeyIdentifier)
        #expect(certificate.publicKey == request.publicKey)
    }

    @Test("profiles are looked up by the names tlsctl uses")
    func profileNames() {
        #expect(CertificateProfile(name: "server") == .tlsServer)
        #expect(CertificateProfile(name: "client") == .tlsClient)
        #expect(CertificateProfile(name: "server-client") == .tlsServerClient)
        #expect(CertificateProfile(name: "intermediate-ca")?.isCertificateAuthority == true)
        #expect(CertificateProfile(name: "codesign") == nil)
    }

    @Test("subject and names come from the request unless the caller overrides them")
    func overrides() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        let (_, request) = try makeRequest("CN=asked.example.com,O=Asker", names: [.dnsName("asked.example.com"), .email("x@example.com")])
        let asked = try root.issue(request, profile: .tlsServer)
        #expect(asked.subject == request.subject)
        #expect(asked.subjectAlternativeNames == request.subjectAlternativeNames)

        let overridden = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(
            subject: try name("CN=decided.example.com"), alternativeNames: [.dnsName("decided.example.com"), .ipAddress(IPAddress("::1")!)]))
        #expect(overridden.subject.description == "CN=decided.example.com")
        #expect(overridden.subjectAlternativeNames == [.dnsName("decided.example.com"), .ipAddress(IPAddress("::1")!)])
        // Without CRL/OCSP options, no such extensions.
        #expect(overridden.crlDistributionPoints.isEmpty && overridden.ocspURLs.isEmpty)
        #expect(overridden.extension(oid: "2.5.29.31") == nil && overridden.extension(oid: "1.3.6.1.5.5.7.1.1") == nil)
    }

    @Test("requested extensions are never copied: a CSR's own extensions do not reach the certificate")
    func requestedExtensionsNotCopied() async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ec:P-256", to: directory.file("key.pem"))
            let request = try await opensslRequest(key: keyPath, subject: "/CN=greedy.example.com", extra: [
                "-addext", "subjectAltName=DNS:greedy.example.com",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-addext", "extendedKeyUsage=codeSigning,serverAuth",
                "-addext", "crlDistributionPoints=URI:http://evil.example/crl",
                "-addext", "1.2.3.4.5=ASN1:UTF8String:smuggled",
            ], in: directory)
            let certificate = try root.issue(request, profile: .tlsServer)
            #expect(certificate.keyUsage == [.digitalSignature])
            #expect(certificate.extendedKeyUsage == [.serverAuth])
            #expect(certificate.crlDistributionPoints.isEmpty)
            #expect(certificate.extension(oid: "1.2.3.4.5") == nil)
            #expect(certificate.dnsNames == ["greedy.example.com"])
        }
    }

    @Test("serial numbers are positive, at least 64 bits, and unique")
    func serials() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Serial Root"))
        let (_, request) = try makeRequest("CN=serial", names: [.dnsName("serial.example.com")])
        var seen = Set<SerialNumber>()
        for _ in 0..<200 {
            let certificate = try root.issue(request, profile: .tlsClient)
            let serial = certificate.serialNumber
            #expect(seen.insert(serial).inserted, "serial \(serial) issued twice")
            // At least 64 bits of number.
            let bits = serial.bytes.count * 8 - serial.bytes[0].leadingZeroBitCount
            #expect(bits >= 64, "serial \(serial) has only \(bits) bits")
            #expect(serial.bytes.count <= 20)
            // Positive in the encoding itself: the INTEGER's first content octet has the sign bit clear.
            let encoded = try #require(TinyDER.certificateSerial(certificate.derEncoded))
            #expect(encoded.first! & 0x80 == 0, "serial INTEGER \(hex(Array(encoded))) is negative")
            #expect(encoded.count == 1 || encoded.first! != 0 || encoded.dropFirst().first! & 0x80 != 0, "serial INTEGER is not minimal")
        }
        #expect(seen.count == 200)
        #expect(!seen.contains(root.certificate.serialNumber))
    }

    @Test("validity is backdated a little, bounded by the issuer's start and never beyond its end")
    func validity() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"), validityDays: 60)
        let (_, request) = try makeRequest("CN=v", names: [.dnsName("v.example.com")])
        let before = Date()
        let certificate = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 10, backdate: 600))
        let after = Date()
        // Backdated by the asked 600 s but never before the issuer's own start.
        let expectedStart = max(before.addingTimeInterval(-600), root.certificate.notValidBefore)
        #expect(certificate.notValidBefore >= expectedStart.addingTimeInterval(-1))
        #expect(certificate.notValidBefore <= after.addingTimeInterval(-299))
        #expect(certificate.notValidBefore >= root.certificate.notValidBefore)
        #expect(certificate.notValidAfter >= before.addingTimeInterval(10 * 86_400 - 1))
        #expect(certificate.notValidAfter <= after.addingTimeInterval(10 * 86_400 + 1))

        // A large backdate is clamped to the issuer's start.
        let clamped = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 1, backdate: 86_400))
        #expect(clamped.notValidBefore == root.certificate.notValidBefore)

        // Up to the issuer's end is fine; one second past it is not.
        let exact = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(notValidAfter: root.certificate.notValidAfter))
        #expect(exact.notValidAfter == root.certificate.notValidAfter)
        expectIssuanceError(.validityExceedsIssuer, mentioning: ["after its issuer", "CN=Root", "fewer days"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(notValidAfter: root.certificate.notValidAfter.addingTimeInterval(1)))
        }
        expectIssuanceError(.validityExceedsIssuer, mentioning: ["expires"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 61))
        }
        // An intermediate cannot outlive its root either.
        expectIssuanceError(.validityExceedsIssuer) { try root.createIntermediate(subject: try name("CN=Long"), validityDays: 365) }
        expectIssuanceError(.invalidRequest, mentioning: ["at least one day"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 0))
        }
        expectIssuanceError(.invalidRequest, mentioning: ["before it starts"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(notValidAfter: Date(timeIntervalSince1970: 1_000_000)))
        }
    }

    @Test("save and load a CA, with and without a passphrase; the key file is 0600")
    func saveAndLoad() throws {
        try withTemporaryDirectory { directory in
            let root = try LocalAuthority.createRoot(subject: try name("CN=Saved Root"))
            let intermediate = try root.createIntermediate(subject: try name("CN=Saved Issuing"), pathLength: 0)

            for (folder, passphrase) in [("plain", nil), ("protected", "hunter2 hunter2")] as [(String, String?)] {
                let path = directory.file(folder)
                try intermediate.save(to: path, passphrase: passphrase)
                let keyPath = (path as NSString).appendingPathComponent("ca.key.pem")
                let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
                #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
                let directoryMode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
                #expect(directoryMode?.intValue == 0o700)
                let keyText = try String(contentsOfFile: keyPath, encoding: .utf8)
                #expect(keyText.contains(PEMText.header(passphrase == nil ? "PRIVATE KEY" : "ENCRYPTED PRIVATE KEY")))
                let chainText = try String(contentsOfFile: (path as NSString).appendingPathComponent("chain.pem"), encoding: .utf8)
                #expect(try Certificate.parseChain(pemEncoded: chainText) == [intermediate.certificate, root.certificate])
                #expect(try Certificate.load(contentsOfFile: (path as NSString).appendingPathComponent("ca.pem")) == [intermediate.certificate])

                let loaded = try LocalAuthority.load(from: path, passphrase: passphrase)
                #expect(loaded.certificate == intermediate.certificate)
                #expect(loaded.chain == intermediate.chain)
                #expect(loaded.key.publicKey == intermediate.key.publicKey)
                // The loaded CA issues certificates that chain to the same root.
                let (_, request) = try makeRequest("CN=after-load", names: [.dnsName("after.example.com")])
                let issued = try loaded.issue(request, profile: .tlsServer)
                #expect(issued.authorityKeyIdentifier == intermediate.certificate.subjectKeyIdentifier)

                if let passphrase {
                    expectGnuTLSError(.passphraseRequired, mentioning: ["passphrase is required"]) {
                        try LocalAuthority.load(from: path, passphrase: nil)
                    }
                    expectGnuTLSError(.wrongPassphrase, mentioning: ["passphrase is wrong"]) {
                        try LocalAuthority.load(from: path, passphrase: passphrase + "x")
                    }
                }
            }
            // Saving another CA over an existing CA directory is refused: its ledger is not that CA's.
            let refused = #expect(throws: LedgerError.self) { try root.save(to: directory.file("plain"), passphrase: "now protected") }
            #expect(refused?.code == .foreignLedger)
            #expect(try LocalAuthority.load(from: directory.file("plain"), passphrase: nil).certificate == intermediate.certificate)
            // Saving the same CA again replaces the files (the key stays 0600) and keeps its ledger.
            try intermediate.save(to: directory.file("plain"), passphrase: "now protected")
            #expect(try LocalAuthority.load(from: directory.file("plain"), passphrase: "now protected").certificate == intermediate.certificate)
            let mode = try FileManager.default.attributesOfItem(atPath: directory.file("plain/ca.key.pem"))[.posixPermissions] as? NSNumber
            #expect(mode?.intValue == 0o600)

            expectGnuTLSError(.fileAccess, mentioning: ["no such file"]) { try LocalAuthority.load(from: directory.file("missing"), passphrase: nil) }
            // A directory whose key belongs to another CA.
            try FileManager.default.copyItem(atPath: directory.file("protected"), toPath: directory.file("mixed"))
            try FileManager.default.removeItem(atPath: directory.file("mixed/ca.key.pem"))
            try directory.write(KeyPair.generate().pemEncoded(), to: "mixed/ca.key.pem")
            expectIssuanceError(.authorityMisconfigured, mentioning: ["does not match"]) {
                try LocalAuthority.load(from: directory.file("mixed"), passphrase: nil)
            }
        }
    }

    @Test("validity past 2049 is written as GeneralizedTime and reads back")
    func farFuture() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Century Root"), validityDays: 36_500)
        let years = root.certificate.notValidAfter.timeIntervalSince(root.certificate.notValidBefore) / (365.25 * 86_400)
        #expect(years > 99.9 && years < 100.1)
        let (_, request) = try makeRequest("CN=c", names: [.dnsName("c.example.com")])
        let leaf = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(notValidAfter: Date(timeIntervalSince1970: 4_102_444_800)))
        #expect(leaf.notValidAfter == Date(timeIntervalSince1970: 4_102_444_800))  // 2100-01-01T00:00:00Z
    }

    /// A signing key that is not a ``KeyPair``: reached through the sign callback.
    struct WrappedKey: SigningKey {
        let inner: KeyPair
        var publicKey: PublicKey { inner.publicKey }
        func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] { try inner.sign(data, algorithm: algorithm) }
    }

    @Test("any SigningKey signs requests and certificates; a key with no saved form cannot be saved to disk")
    func signingKeyProtocol() throws {
        let wrapped = WrappedKey(inner: try KeyPair.generate(.ed25519))
        let root = try LocalAuthority.createRoot(subject: try name("CN=Wrapped Root"), key: wrapped)
        #expect(root.certificate.publicKey == wrapped.publicKey)
        let request = try CertificateRequest.create(subject: try name("CN=w"), key: WrappedKey(inner: try KeyPair.generate()),
                                                    alternativeNames: [.dnsName("w.example.com")])
        #expect(request.isSignatureValid)
        #expect(try root.issue(request, profile: .tlsServer).authorityKeyIdentifier == wrapped.publicKey.keyIdentifier)
        _ = try withTemporaryDirectory { directory in
            expectGnuTLSError(.invalidArgument, mentioning: ["has no saved form"]) {
                try root.save(to: directory.file("wrapped"), passphrase: "pw")
            }
        }
    }

    @Test("one authority issues from many tasks at once: unique serials, every certificate verifies")
    func concurrentIssuance() async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Busy Root"))
        let (_, request) = try makeRequest("CN=busy", names: [.dnsName("busy.example.com")])
        let certificates = try await withThrowingTaskGroup(of: [Certificate].self) { group in
            for _ in 0..<8 {
                group.addTask { try (0..<10).map { _ in try root.issue(request, profile: .tlsClient) } }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(certificates.count == 80)
        #expect(Set(certificates.map(\.serialNumber)).count == 80)
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let rootPath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let paths = try certificates.enumerated().map { try directory.write($0.element.pemEncoded, to: "\($0.offset).pem") }
        let result = try await Tool.run(["openssl", "verify", "-CAfile", rootPath] + paths, timeout: 120)
        #expect(result.succeeded, "\(result)")
        #expect(result.standardOutput.components(separatedBy: ": OK").count - 1 == 80)
    }

    @Test("LocalAuthority is used through the Authority protocol")
    func protocolUse() async throws {
        let authority: any Authority = try LocalAuthority.createRoot(subject: try name("CN=Protocol Root"))
        let (_, request) = try makeRequest("CN=p", names: [.dnsName("p.example.com")])
        let certificate = try await authority.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 5))
        #expect(certificate.issuer == authority.certificate.subject)
        #expect(authority.chain == [authority.certificate])
    }
}
