import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

/// What the authority refuses to sign because its own verifier, openssl or a linter would
/// reject it, or because it is hostile: unbounded subjects, too many names, a CN that is
/// not a SAN, a subject outside the name constraints.
@Suite("Authority: issuance bounds")
struct IssuanceBoundsTests {
    static func request(subject: DistinguishedName, names: [GeneralName]) throws -> CertificateRequest {
        try CertificateRequest.create(subject: subject, key: KeyPair.generate(.ecdsaP256), alternativeNames: names)
    }

    // MARK: 6. Subjects are bounded

    @Test func subjectsOverTheX520BoundsOrWithControlsAreRefused() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Bounds Root"))
        let names: [GeneralName] = [.dnsName("ok.example.com")]
        let hostile: [(DistinguishedName, [String])] = [
            ([.init(.commonName, String(repeating: "a", count: 10_000))], ["CN", "10000 characters", "64"]),
            ([.init(.organization, String(repeating: "o", count: 65))], ["O", "65 characters", "64"]),
            ([.init(.organizationalUnit, "ok"), .init(.commonName, "ok.example.com\u{0}.evil.com")], ["NUL", "U+0"]),
            ([.init(.commonName, "ok.example.com"), .init(.organization, "moc.elgoog\u{202E}")], ["bidirectional", "U+202E"]),
            ([.init(.commonName, "ok.example.com"), .init(.organization, "line\nbreak")], ["control", "U+A"]),
            ([.init(.commonName, "ok.example.com"), .init(.organization, "c1\u{9B}")], ["C1 control"]),
            (DistinguishedName(attributes: [.init(.commonName, "ok.example.com")] + (0..<500).map { _ in .init(.organizationalUnit, "x") }),
             ["501 attributes", "at most 32"]),
            ([.init(.commonName, "ok.example.com"), .init(.country, "USA")], ["C", "3 characters", "2"]),
        ]
        for (subject, words) in hostile {
            // The subject given in the options (a request can carry the same).
            expectIssuanceError(.invalidSubject, mentioning: words) {
                try root.issue(try Self.request(subject: try name("CN=ok.example.com"), names: names), profile: .tlsServer,
                               options: IssuanceOptions(subject: subject))
            }
            expectIssuanceError(.invalidSubject, mentioning: words) {
                try root.issue(try Self.request(subject: subject, names: names), profile: .tlsServer)
            }
        }
        expectIssuanceError(.invalidSubject, mentioning: ["CN", "64"]) {
            _ = try LocalAuthority.createRoot(subject: [.init(.commonName, String(repeating: "r", count: 65))])
        }
        // At the bounds, issuance works.
        let atBounds: DistinguishedName = [.init(.commonName, "ok.example.com"), .init(.organization, String(repeating: "o", count: 64)),
                                           .init(.locality, String(repeating: "l", count: 128)), .init(.country, "DE")]
        #expect(try root.issue(try Self.request(subject: atBounds, names: names), profile: .tlsServer).subject == atBounds)
    }

    // MARK: 7. Many SANs: capped, and fast below the cap

    @Test func moreThanOneHundredNamesAreRefused() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=SAN Root"))
        let many = (0..<1_000).map { GeneralName.dnsName("host\($0).example.com") }
        let request = try Self.request(subject: try name("CN=host0.example.com"), names: many)
        #expect(request.subjectAlternativeNames.count == 1_000)
        expectIssuanceError(.tooManyNames, mentioning: ["1000", "at most 100"]) { try root.issue(request, profile: .tlsServer) }
        let hundred = Array(many.prefix(100))
        let issued = try root.issue(try Self.request(subject: try name("CN=host0.example.com"), names: hundred), profile: .tlsServer)
        #expect(issued.subjectAlternativeNames == hundred)
    }

    // MARK: 5. The CA issues only what verifiers accept

    @Test func aServerHostNameCommonNameMustBeOneOfTheAlternativeNames() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=CN Root"))
        let request = try Self.request(subject: try name("CN=api.internal.example"), names: [.dnsName("www.internal.example")])
        for profile in [CertificateProfile.tlsServer, .tlsServerClient] {
            expectIssuanceError(.commonNameNotInAlternativeNames, mentioning: ["api.internal.example", "SANs"]) {
                try root.issue(request, profile: profile)
            }
        }
        let ip = try Self.request(subject: try name("CN=192.168.1.1"), names: [.ipAddress(IPAddress("10.0.0.1")!)])
        expectIssuanceError(.commonNameNotInAlternativeNames, mentioning: ["192.168.1.1"]) { try root.issue(ip, profile: .tlsServer) }
        // Client certificates name a person or service: their CN is left alone.
        #expect(try root.issue(request, profile: .tlsClient).subject.commonName == "api.internal.example")
        // Listed (in any case, or as an IP SAN), the CN is accepted, and the SANs stay as requested.
        let listedIP = try Self.request(subject: try name("CN=10.0.0.1"), names: [.dnsName("a.example"), .ipAddress(IPAddress("10.0.0.1")!)])
        #expect(try root.issue(listedIP, profile: .tlsServer).subjectAlternativeNames == [.dnsName("a.example"), .ipAddress(IPAddress("10.0.0.1")!)])
        let upper = try Self.request(subject: try name("CN=WWW.Example.COM"), names: [.dnsName("www.example.com")])
        #expect(try root.issue(upper, profile: .tlsServer).subjectAlternativeNames == [.dnsName("www.example.com")])
        // A CN that names no host (a label, free text) is left alone.
        let label = try Self.request(subject: try name("CN=Web Server"), names: [.dnsName("www.example.com")])
        #expect(try root.issue(label, profile: .tlsServer).subject.commonName == "Web Server")
    }

    @Test func subjectNamesAreHeldToTheNameConstraints() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        let constrained = try root.createIntermediate(subject: try name("CN=Constrained"), nameConstraints: NameConstraints(
            permittedDNSDomains: ["example.com"], permittedIPRanges: [IPNetwork("10.0.0.0/8")!]))
        let ipCN = try Self.request(subject: try name("CN=192.168.1.1"), names: [.ipAddress(IPAddress("10.0.0.1")!)])
        expectIssuanceError(.nameNotPermitted, mentioning: ["192.168.1.1", "not permitted", "CN=Constrained"]) {
            try constrained.issue(ipCN, profile: .tlsClient)
        }
        let dnsCN = try Self.request(subject: try name("CN=www.evil.com"), names: [.dnsName("www.example.com")])
        expectIssuanceError(.nameNotPermitted, mentioning: ["www.evil.com"]) { try constrained.issue(dnsCN, profile: .tlsClient) }
        // A CN that is not a host name is not a DNS name.
        let person = try Self.request(subject: try name("CN=Jane Doe"), names: [.dnsName("www.example.com")])
        #expect(try constrained.issue(person, profile: .tlsClient).subject.commonName == "Jane Doe")

    }

    /// The authority and the verifier hold a subject to directory-name constraints with one
    /// matcher (RFC 5280 7.1 name matching): a subject whose organisation differs from the
    /// permitted subtree only in letter case is inside it for both, one outside it for both.
    /// (The authority compared RDNs byte for byte and refused what the verifier accepts.)
    /// GnuTLS cannot write directory-name constraints, so openssl makes the constrained CA.
    @Test func directoryNameConstraintsMatchAsTheVerifierDoes() async throws {
        try await withTemporaryDirectory { directory in
            let rootKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("root.key"))
            let root = try await OpenSSLIssuer.selfSigned(key: rootKey, subject: "/CN=Root", extensions: OpenSSLIssuer.caExtensions(),
                                                          out: directory.file("root.pem"), in: directory)
            let caKey = try await OpenSSL.generateKey("ec:P-256", to: directory.file("ca.key"))
            let caPath = try await OpenSSLIssuer.issue(
                key: caKey, subject: "/O=Example/CN=Constrained", issuerCertificate: root, issuerKey: rootKey,
                extensions: OpenSSLIssuer.caExtensions() + ["nameConstraints = critical, permitted;DNS:example.com, permitted;dirName:permitted_dn",
                                                            "[permitted_dn]", "O = Example"],
                out: directory.file("ca.pem"), in: directory)
            let rootCertificate = try #require(try Certificate.load(contentsOfFile: root).first)
            let caCertificate = try #require(try Certificate.load(contentsOfFile: caPath).first)
            #expect(caCertificate.nameConstraints?.permittedDirectoryNames.map(\.description) == ["O=Example"])
            let constrained = try LocalAuthority(certificate: caCertificate, key: try KeyPair(contentsOfFile: caKey), issuers: [rootCertificate])
            let verifier = try Verifier(trustStore: TrustStore(certificates: [rootCertificate]))
            let policy = VerificationPolicy(purposes: [.serverAuth], expectedNames: [.dnsName("www.example.com")])

            let otherCase = try Self.request(subject: try name("CN=www,O=EXAMPLE"), names: [.dnsName("www.example.com")])
            let issued = try constrained.issue(otherCase, profile: .tlsServer, options: IssuanceOptions(validityDays: 7))
            #expect(throws: Never.self) { try verifier.verify(issued, intermediates: [caCertificate], policy: policy) }

            let outside = try Self.request(subject: try name("CN=www,O=Elsewhere"), names: [.dnsName("www.example.com")])
            expectIssuanceError(.nameNotPermitted, mentioning: ["O=Elsewhere", "directory-name constraints"]) {
                try constrained.issue(outside, profile: .tlsServer, options: IssuanceOptions(validityDays: 7))
            }
        }
    }
}
