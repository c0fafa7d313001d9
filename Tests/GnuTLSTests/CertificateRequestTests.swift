import Foundation
import GnuTLS
import GnuTLSTestSupport
import Testing
import TestSupport

@Suite("Certificate requests: create, sign, parse, verify")
struct CertificateRequestTests {
    @Test("a request carries everything asked for and verifies", arguments: [KeyAlgorithm.ecdsaP256, .rsa3072, .ed25519])
    func createAndRead(_ algorithm: KeyAlgorithm) throws {
        let key = try KeyPair.generate(algorithm)
        let names: [GeneralName] = [.dnsName("api.example.com"), .ipAddress(IPAddress("10.0.0.5")!), .email("ops@example.com"),
                                    .uri("spiffe://example.org/service/api")]
        let request = try CertificateRequest.create(
            subject: try name("CN=api.example.com,OU=Platform,O=Example\\, Inc.,C=US"), key: key, alternativeNames: names,
            keyUsage: [.digitalSignature, .keyEncipherment], extendedKeyUsage: [.serverAuth, .clientAuth],
            challengePassword: "let me in")
        #expect(request.subject.description == "CN=api.example.com,OU=Platform,O=Example\\, Inc.,C=US")
        #expect(request.publicKey == key.publicKey)
        #expect(request.subjectAlternativeNames == names)
        #expect(request.keyUsage == [.digitalSignature, .keyEncipherment])
        #expect(request.extendedKeyUsage == [.serverAuth, .clientAuth])
        #expect(request.challengePassword == "let me in")
        #expect(request.isSignatureValid)
        #expect(!request.requestsCertificateAuthority)
        #expect(request.basicConstraints == nil)
        try request.verifySignature()
        let expectedSignature = switch algorithm {
        case .ed25519: "1.3.101.112"
        case .rsa3072: "1.2.840.113549.1.1.11"
        default: "1.2.840.10045.4.3.2"
        }
        #expect(request.signatureAlgorithm.oid == expectedSignature)
        #expect(!request.signatureAlgorithm.isInsecure)
        #expect(Set(request.requestedExtensions.map(\.oid)) == ["2.5.29.17", "2.5.29.15", "2.5.29.37"])
    }

    @Test("a minimal request has no extensions, no password, and may have an empty subject when names identify it")
    func minimal() throws {
        let key = try KeyPair.generate()
        let bare = try CertificateRequest.create(subject: try name("CN=bare"), key: key)
        #expect(bare.requestedExtensions.isEmpty)
        #expect(bare.subjectAlternativeNames.isEmpty)
        #expect(bare.keyUsage == nil && bare.extendedKeyUsage == nil)
        #expect(bare.challengePassword == nil)

        let nameless = try CertificateRequest.create(subject: DistinguishedName([]), key: key, alternativeNames: [.dnsName("only.example.com")])
        #expect(nameless.subject.isEmpty)
        #expect(nameless.subjectAlternativeNames == [.dnsName("only.example.com")])

        expectGnuTLSError(.invalidArgument, mentioning: ["subject or at least one alternative name"]) {
            try CertificateRequest.create(subject: DistinguishedName([]), key: key)
        }
    }

    @Test("PEM and DER round-trip to equal values")
    func roundTrip() throws {
        let (_, request) = try makeRequest("CN=round.trip", names: [.dnsName("round.trip")])
        let pem = request.pemEncoded
        #expect(pem.hasPrefix(PEMText.header("CERTIFICATE REQUEST")))
        #expect(try CertificateRequest(pemEncoded: pem) == request)
        #expect(try CertificateRequest(derEncoded: request.derEncoded) == request)
        #expect(try CertificateRequest(bytes: Array(pem.utf8)) == request)
        // The legacy label is accepted too.
        let legacy = pem.replacingOccurrences(of: "CERTIFICATE REQUEST", with: "NEW CERTIFICATE REQUEST")
        #expect(try CertificateRequest(pemEncoded: legacy) == request)
        try withTemporaryDirectory { directory in
            let path = try directory.write(request.derEncoded, to: "req.der")
            #expect(try CertificateRequest(contentsOfFile: path) == request)
        }
    }

    @Test("a corrupted signature is detected: no proof of possession")
    func corruptedSignature() throws {
        for algorithm in [KeyAlgorithm.ecdsaP256, .rsa2048, .ed25519] {
            let (_, request) = try makeRequest("CN=tampered", algorithm: algorithm)
            var der = request.derEncoded
            der[der.count - 1] ^= 0x01  // the last byte of the signature value
            let tampered = try CertificateRequest(derEncoded: der)
            #expect(!tampered.isSignatureValid, "\(algorithm)")
            #expect(tampered.subject == request.subject)
            expectGnuTLSError(.signatureInvalid, mentioning: ["not signed by the key it carries", "tampered"]) {
                try tampered.verifySignature()
            }
        }
    }

    @Test("a request whose body was changed after signing fails verification")
    func alteredBody() throws {
        let (_, request) = try makeRequest("CN=aaaa.example.com")
        let der = request.derEncoded
        let pattern = Array("aaaa".utf8)
        let at = try #require((0...(der.count - 4)).first { Array(der[$0..<$0 + 4]) == pattern })
        var altered = der
        altered.replaceSubrange(at..<at + 4, with: Array("bbbb".utf8))
        let parsed = try CertificateRequest(derEncoded: altered)
        #expect(parsed.subject.commonName == "bbbb.example.com")
        #expect(!parsed.isSignatureValid)
    }

    @Test("malformed and truncated requests")
    func malformed() throws {
        let (_, request) = try makeRequest("CN=x")
        expectGnuTLSError(.malformedDER, mentioning: ["PKCS#10"]) { try CertificateRequest(derEncoded: Array(request.derEncoded.dropLast(20))) }
        expectGnuTLSError(.malformedDER) { try CertificateRequest(derEncoded: [0x30, 0x00]) }
        expectGnuTLSError(.malformedDER, mentioning: ["PKCS#10"]) { try CertificateRequest(derEncoded: request.derEncoded + [0x00, 0x00]) }
        expectGnuTLSError(.malformedPEM, mentioning: ["not closed"]) {
            try CertificateRequest(pemEncoded: String(request.pemEncoded.dropLast(30)))
        }
    }

    @Test("requests made by openssl req are parsed field by field")
    func opensslRequest() async throws {
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("ec:P-384", to: directory.file("key.pem"))
            let request = try await GnuTLSTestSupport.opensslRequest(
                key: keyPath, subject: "/C=DE/O=Beispiel GmbH/CN=dienst.example.de", extra: [
                    "-addext", "subjectAltName=DNS:dienst.example.de,IP:2001:db8::7,email:a@example.de,URI:spiffe://example.de/x",
                    "-addext", "keyUsage=critical,digitalSignature",
                    "-addext", "extendedKeyUsage=serverAuth",
                ], in: directory)
            #expect(request.subject.description == "CN=dienst.example.de,O=Beispiel GmbH,C=DE")
            #expect(request.subjectAlternativeNames == [
                .dnsName("dienst.example.de"), .ipAddress(IPAddress("2001:db8::7")!), .email("a@example.de"), .uri("spiffe://example.de/x"),
            ])
            #expect(request.keyUsage == [.digitalSignature])
            #expect(request.extendedKeyUsage == [.serverAuth])
            #expect(request.isSignatureValid)
            #expect(request.publicKey == (try KeyPair(contentsOfFile: keyPath)).publicKey)
            #expect(request.publicKey.keyDescription.curve == "P-384")
            #expect(request.signatureAlgorithm.oid == "1.2.840.10045.4.3.2")  // openssl signs with SHA-256 by default
        }
    }

    @Test("requests made by certtool --generate-request are parsed field by field")
    func certtoolRequest() async throws {
        try await withTemporaryDirectory { directory in
            let keyPath = try await OpenSSL.generateKey("rsa:2048", to: directory.file("key.pem"))
            let output = try await CertTool.generateRequest(key: keyPath, template: """
                cn = "tool.example.com"
                organization = "Example"
                dns_name = "tool.example.com"
                ip_address = "192.0.2.10"
                email = "tool@example.com"
                challenge_password = "open sesame"
                tls_www_client
                signing_key

                """, in: directory)
            let request = try CertificateRequest(contentsOfFile: output)
            #expect(request.subject.commonName == "tool.example.com")
            #expect(request.subject.organization == ["Example"])
            #expect(request.subjectAlternativeNames.contains(.dnsName("tool.example.com")))
            #expect(request.subjectAlternativeNames.contains(.ipAddress(IPAddress("192.0.2.10")!)))
            #expect(request.subjectAlternativeNames.contains(.email("tool@example.com")))
            #expect(request.extendedKeyUsage == [.clientAuth])
            #expect(request.keyUsage?.contains(.digitalSignature) == true)
            #expect(request.challengePassword == "open sesame")
            #expect(request.basicConstraints?.isCertificateAuthority == false)
            #expect(request.isSignatureValid)
            #expect(request.publicKey.keyDescription.family == .rsa && request.publicKey.keyDescription.bits == 2048)
        }
    }
}
