import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

/// Every refusal the authority makes before it signs, each with its typed reason.
@Suite("Authority: issuance policy refusals")
struct IssuancePolicyTests {
    @Test("a request with a corrupted signature: requestSignatureInvalid")
    func corruptedSignature() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        for algorithm in [KeyAlgorithm.ecdsaP256, .rsa2048, .ed25519] {
            let (_, request) = try makeRequest("CN=forged.example.com", algorithm: algorithm, names: [.dnsName("forged.example.com")])
            var der = request.derEncoded
            der[der.count - 1] ^= 0x80
            let forged = try CertificateRequest(derEncoded: der)
            expectIssuanceError(.requestSignatureInvalid, mentioning: ["forged.example.com", "proof of possession"]) {
                try root.issue(forged, profile: .tlsServer)
            }
        }
    }

    @Test("a request asking for CA:TRUE under a leaf profile: certificateAuthorityNotAllowed", arguments: ["openssl", "certtool"])
    func requestAsksForCA(_ tool: String) async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ec:P-256", to: directory.file("key.pem"))
            let request: CertificateRequest
            if tool == "openssl" {
                request = try await opensslRequest(key: keyPath, subject: "/CN=sneaky.example.com", extra: [
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "subjectAltName=DNS:sneaky.example.com",
                ], in: directory)
            } else {
                request = try await CertificateRequest(contentsOfFile: CertTool.generateRequest(
                    key: keyPath, template: "cn = \"sneaky.example.com\"\ndns_name = \"sneaky.example.com\"\nca\ncert_signing_key\n", in: directory))
            }
            #expect(request.requestsCertificateAuthority)
            for profile in [CertificateProfile.tlsServer, .tlsClient, .tlsServerClient] {
                expectIssuanceError(.certificateAuthorityNotAllowed, mentioning: ["asks to be a CA", profile.name, "intermediate"]) {
                    try root.issue(request, profile: profile)
                }
            }
        }
    }

    /// An intermediate constrained to example.com, 10.0.0.0/8 and mailboxes at example.com,
    /// with exclusions inside each.
    static func constrained() throws -> (LocalAuthority, LocalAuthority) {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        let intermediate = try root.createIntermediate(subject: try name("CN=Constrained"), nameConstraints: NameConstraints(
            permittedDNSDomains: ["example.com"], excludedDNSDomains: ["internal.example.com"],
            permittedIPRanges: [IPNetwork("10.0.0.0/8")!], excludedIPRanges: [IPNetwork("10.66.0.0/16")!],
            permittedEmailAddresses: ["example.com"], excludedEmailAddresses: ["ceo@example.com"]))
        return (root, intermediate)
    }

    static let outsideNames: [(GeneralName, String)] = [
        (.dnsName("evil.com"), "not permitted"),
        (.dnsName("example.com.evil.com"), "not permitted"),
        (.dnsName("notexample.com"), "not permitted"),
        (.dnsName("db.internal.example.com"), "excluded"),
        (.ipAddress(IPAddress("192.168.1.1")!), "not permitted"),
        (.ipAddress(IPAddress("10.66.1.1")!), "excluded"),
        (.ipAddress(IPAddress("fd00::1")!), "not permitted"),
        (.email("mallory@evil.com"), "not permitted"),
        (.email("bob@sub.example.com"), "not permitted"),
        (.email("ceo@example.com"), "excluded"),
    ]

    @Test("a name outside the chain's name constraints: nameNotPermitted", arguments: outsideNames)
    func nameOutsideConstraints(_ outside: GeneralName, verdict: String) throws {
        let (_, intermediate) = try Self.constrained()
        let (_, request) = try makeRequest("CN=www.example.com", names: [.dnsName("www.example.com"), outside])
        expectIssuanceError(.nameNotPermitted, mentioning: ["\(outside)", verdict, "CN=Constrained"]) {
            try intermediate.issue(request, profile: .tlsServerClient)
        }
        // Overriding the names does not get around the constraints either.
        let (_, clean) = try makeRequest("CN=www.example.com", names: [.dnsName("www.example.com")])
        expectIssuanceError(.nameNotPermitted) {
            try intermediate.issue(clean, profile: .tlsServerClient, options: IssuanceOptions(alternativeNames: [.dnsName("www.example.com"), outside]))
        }
    }

    @Test("names inside the constraints are issued")
    func namesInsideConstraints() throws {
        let (_, intermediate) = try Self.constrained()
        let names: [GeneralName] = [.dnsName("example.com"), .dnsName("a.b.example.com"), .ipAddress(IPAddress("10.1.2.3")!), .email("alice@example.com")]
        let (_, request) = try makeRequest("CN=example.com", names: names)
        #expect(try intermediate.issue(request, profile: .tlsServerClient).subjectAlternativeNames == names)
    }

    /// Found by the invariant test (IssuanceInvariantTests): `CN=10.1.2.24` with that address
    /// as its only SAN, under permitted DNS and IP subtrees that hold the address, was issued;
    /// our verifier and openssl then judge the CN as a DNS name (no DNS SANs) and refuse it.
    @Test("an IPv4 common name under DNS constraints: nameNotPermitted, as verifiers read it as a host name too")
    func ipv4CommonNameUnderDNSConstraints() throws {
        let (_, intermediate) = try Self.constrained()
        let (_, request) = try makeRequest("CN=10.1.2.24", names: [.ipAddress(IPAddress("10.1.2.24")!)])
        expectIssuanceError(.nameNotPermitted, mentioning: ["subject common name 10.1.2.24", "not permitted"]) {
            try intermediate.issue(request, profile: .tlsServer)
        }
    }

    @Test("a subject email outside the constraints: nameNotPermitted")
    func subjectEmailOutsideConstraints() throws {
        let (_, intermediate) = try Self.constrained()
        let (_, request) = try makeRequest("CN=client,emailAddress=x@evil.com", names: [.email("x@example.com")])
        expectIssuanceError(.nameNotPermitted, mentioning: ["subject email", "x@evil.com"]) {
            try intermediate.issue(request, profile: .tlsClient)
        }
    }

    @Test("constraints of a CA further up bind certificates below an unconstrained intermediate")
    func rootConstraints() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Constrained Root"), nameConstraints: NameConstraints(permittedDNSDomains: ["corp.example"]))
        let intermediate = try root.createIntermediate(subject: try name("CN=Free Intermediate"))
        #expect(intermediate.certificate.nameConstraints == nil)
        let (_, request) = try makeRequest("CN=x", names: [.dnsName("x.other.example")])
        expectIssuanceError(.nameNotPermitted, mentioning: ["x.other.example", "CN=Constrained Root"]) {
            try intermediate.issue(request, profile: .tlsServer)
        }
    }

    @Test("path length exhausted")
    func pathLength() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"), pathLength: 1)
        let first = try root.createIntermediate(subject: try name("CN=First"))
        #expect(first.certificate.basicConstraints?.pathLengthConstraint == 0)
        expectIssuanceError(.pathLengthExhausted, mentioning: ["no further CA", "CN=First"]) {
            try first.createIntermediate(subject: try name("CN=Second"))
        }
        // Asking for more depth than the root leaves.
        expectIssuanceError(.pathLengthExhausted, mentioning: ["path length 1", "at most 0"]) {
            try root.createIntermediate(subject: try name("CN=Too Deep"), pathLength: 1)
        }
        // A CSR under the intermediate-CA profile is held to the same limit.
        let (_, request) = try makeRequest("CN=Sub CA")
        expectIssuanceError(.pathLengthExhausted) { try first.issue(request, profile: .intermediateCA()) }
        // A root with path length 0 issues no intermediate at all, but still issues leaves.
        let flat = try LocalAuthority.createRoot(subject: try name("CN=Flat"), pathLength: 0)
        expectIssuanceError(.pathLengthExhausted, mentioning: ["CN=Flat"]) { try flat.createIntermediate(subject: try name("CN=No")) }
        let (_, leafRequest) = try makeRequest("CN=leaf", names: [.dnsName("leaf.example.com")])
        #expect(try flat.issue(leafRequest, profile: .tlsServer).issuer.description == "CN=Flat")
        #expect(try first.issue(leafRequest, profile: .tlsServer).issuer.description == "CN=First")
    }

    @Test("an RSA-1024 key made by openssl: weakKey")
    func weakKey() async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("rsa:1024", to: directory.file("weak.pem"))
            let request = try await opensslRequest(key: keyPath, subject: "/CN=weak.example.com", extra: ["-addext", "subjectAltName=DNS:weak.example.com"], in: directory)
            #expect(request.isSignatureValid)
            #expect(request.publicKey.keyDescription.bits == 1024)
            expectIssuanceError(.weakKey, mentioning: ["RSA-1024", "at least 2048"]) { try root.issue(request, profile: .tlsServer) }
            expectIssuanceError(.weakKey) { try root.issue(request, profile: .intermediateCA()) }
        }
    }

    @Test("keys and signatures the authority does not certify: unsupportedAlgorithm")
    func unsupportedAlgorithm() async throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        try await withTemporaryDirectory { directory in
            // Ed448: a valid key GnuTLS parses, but not one this authority certifies.
            let ed448 = try await OpenSSL.generateKey("ed448", to: directory.file("ed448.pem"))
            let ed448Request = try await opensslRequest(key: ed448, subject: "/CN=ed448.example.com", extra: ["-addext", "subjectAltName=DNS:ed448.example.com"], in: directory, file: "ed448.csr")
            #expect(ed448Request.isSignatureValid)
            expectIssuanceError(.unsupportedAlgorithm, mentioning: ["only RSA, ECDSA", "Ed25519"]) { try root.issue(ed448Request, profile: .tlsServer) }

            // A curve GnuTLS knows but the authority does not certify (P-192).
            let p192 = try await OpenSSL.generateKey("ec:prime192v1", to: directory.file("p192.pem"))
            let p192Request = try await opensslRequest(key: p192, subject: "/CN=p192.example.com", extra: ["-addext", "subjectAltName=DNS:p192.example.com"], in: directory, file: "p192.csr")
            expectIssuanceError(.unsupportedAlgorithm, mentioning: ["SECP192R1", "only RSA, ECDSA (P-256/384/521)"]) { try root.issue(p192Request, profile: .tlsServer) }

            // A curve GnuTLS does not know: the request cannot even be read, and says why.
            let k1 = try await OpenSSL.generateKey("ec:secp256k1", to: directory.file("k1.pem"))
            try await Tool.runChecked(["openssl", "req", "-new", "-key", k1, "-subj", "/CN=k1.example.com", "-out", directory.file("k1.csr")])
            expectGnuTLSError(.unsupportedAlgorithm, mentioning: ["certificate request public key", "curve", "does not support"]) {
                try CertificateRequest(contentsOfFile: directory.file("k1.csr"))
            }
            try await Tool.runChecked(["openssl", "req", "-x509", "-new", "-key", k1, "-subj", "/CN=k1", "-days", "1", "-out", directory.file("k1.pem")])
            expectGnuTLSError(.unsupportedAlgorithm, mentioning: ["certificate public key", "does not support"]) {
                try Certificate.load(contentsOfFile: directory.file("k1.pem"))
            }

            // A request signed with SHA-1.
            let ec = try await OpenSSL.generateKey("ec:P-256", to: directory.file("ec.pem"))
            let sha1Request = try await opensslRequest(key: ec, subject: "/CN=sha1.example.com", extra: ["-sha1", "-addext", "subjectAltName=DNS:sha1.example.com"], in: directory, file: "sha1.csr")
            #expect(sha1Request.signatureAlgorithm.isInsecure)
            expectIssuanceError(.unsupportedAlgorithm, mentioning: ["SHA-1"]) { try root.issue(sha1Request, profile: .tlsServer) }
        }
    }

    @Test("a certificate that would identify nobody: missingIdentity")
    func missingIdentity() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        // A server certificate without a DNS name or IP address.
        // (No CN either: a host-name CN would be added as a DNS name.)
        let (_, noNetworkName) = try makeRequest("O=Example Server", names: [.email("a@example.com")])
        for profile in [CertificateProfile.tlsServer, .tlsServerClient] {
            expectIssuanceError(.missingIdentity, mentioning: ["DNS name or IP address", profile.name]) {
                try root.issue(noNetworkName, profile: profile)
            }
        }
        // A client certificate needs no network name.
        #expect(try root.issue(noNetworkName, profile: .tlsClient).subject.organization == ["Example Server"])
        // An empty subject.
        let key = try KeyPair.generate()
        let nameless = try CertificateRequest.create(subject: DistinguishedName([]), key: key, alternativeNames: [.dnsName("nameless.example.com")])
        expectIssuanceError(.missingIdentity, mentioning: ["empty subject"]) { try root.issue(nameless, profile: .tlsServer) }
        // …which the caller can fill in.
        let named = try root.issue(nameless, profile: .tlsServer, options: IssuanceOptions(subject: try name("CN=nameless.example.com")))
        #expect(named.subject.commonName == "nameless.example.com")
    }

    @Test("malformed names in options: invalidRequest")
    func invalidRequest() throws {
        let root = try LocalAuthority.createRoot(subject: try name("CN=Root"))
        let (_, request) = try makeRequest("CN=x", names: [.dnsName("x.example.com")])
        expectIssuanceError(.invalidRequest, mentioning: ["not a valid DNS name"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(alternativeNames: [.dnsName("bad name")]))
        }
        expectIssuanceError(.invalidRequest, mentioning: ["not supported"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(alternativeNames: [.dnsName("x.example.com"), .otherName(oid: "1.2.3", value: [0x05, 0x00])]))
        }
        expectIssuanceError(.invalidRequest, mentioning: ["DirName:CN=Dir", "not supported"]) {
            try root.issue(request, profile: .tlsServer, options: IssuanceOptions(alternativeNames: [.dnsName("x.example.com"), .directoryName(try name("CN=Dir"))]))
        }
        // A registered ID is written as asked.
        let withRID = try root.issue(request, profile: .tlsServer, options: IssuanceOptions(alternativeNames: [.dnsName("x.example.com"), .registeredID("1.2.3.4")]))
        #expect(withRID.subjectAlternativeNames.prefix(2) == [.dnsName("x.example.com"), .registeredID("1.2.3.4")])
    }
}
