import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// What `openssl x509 -text` reads from the certificates we issue is what was asked for.
@Suite("Interop: openssl x509 -text reads back names and extensions")
struct TextDumpTests {
    @Test("server and client leaves", arguments: interopAlgorithms)
    func leaves(_ algorithm: KeyAlgorithm) async throws {
        try await withPKI(algorithm) { pki in
            let server = try await opensslText(pki.path("server.pem"))
            #expect(server.contains("Version: 3 (0x2)"))
            #expect(opensslSection(server, "X509v3 Subject Alternative Name")?.contains(
                "DNS:api.example.com, DNS:www.api.example.com, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1") == true, "\(server)")
            #expect(opensslSection(server, "X509v3 Basic Constraints")?.contains("critical\nCA:FALSE") == true)
            let usage = algorithm == .rsa2048 ? "Digital Signature, Key Encipherment" : "Digital Signature"
            #expect(opensslSection(server, "X509v3 Key Usage") == "            X509v3 Key Usage: critical\n\(usage)")
            #expect(opensslSection(server, "X509v3 Extended Key Usage")?.hasSuffix("\nTLS Web Server Authentication") == true)
            #expect(opensslSection(server, "X509v3 CRL Distribution Points")?.contains("URI:\(IssuedPKI.crlURL)") == true)
            let access = opensslSection(server, "Authority Information Access") ?? ""
            #expect(access.contains("OCSP - URI:\(IssuedPKI.ocspURL)"))
            #expect(access.contains("CA Issuers - URI:\(IssuedPKI.caIssuersURL)"))
            #expect(opensslSection(server, "X509v3 Subject Key Identifier")?.hasSuffix(pki.serverKey.publicKey.keyIdentifier.map { String(format: "%02X", $0) }.joined(separator: ":")) == true)
            #expect(opensslSection(server, "X509v3 Authority Key Identifier")?.contains(
                pki.intermediate.certificate.subjectKeyIdentifier!.map { String(format: "%02X", $0) }.joined(separator: ":")) == true)
            let expectedKey = switch algorithm {
            case .rsa2048: "Public-Key: (2048 bit)"
            case .ed25519: "Public Key Algorithm: ED25519"
            default: "NIST CURVE: P-256"
            }
            #expect(server.contains(expectedKey))
            let expectedSignature = switch algorithm {
            case .rsa2048: "Signature Algorithm: sha256WithRSAEncryption"
            case .ed25519: "Signature Algorithm: ED25519"
            default: "Signature Algorithm: ecdsa-with-SHA256"
            }
            #expect(server.contains(expectedSignature))

            let client = try await opensslText(pki.path("client.pem"))
            #expect(opensslSection(client, "X509v3 Subject Alternative Name")?.contains(
                "email:alice@example.com, URI:https://example.com/users/alice") == true, "\(client)")
            #expect(opensslSection(client, "X509v3 Key Usage")?.hasSuffix("critical\nDigital Signature") == true)
            #expect(opensslSection(client, "X509v3 Extended Key Usage")?.hasSuffix("\nTLS Web Client Authentication") == true)
        }
    }

    @Test("root and intermediate CA extensions, including name constraints")
    func authorities() async throws {
        try await withPKI(.ecdsaP256) { pki in
            let root = try await opensslText(pki.path("root.pem"))
            #expect(opensslSection(root, "X509v3 Basic Constraints")?.hasSuffix("critical\nCA:TRUE, pathlen:1") == true, "\(root)")
            #expect(opensslSection(root, "X509v3 Key Usage")?.hasSuffix("critical\nCertificate Sign, CRL Sign") == true)
            #expect(opensslSection(root, "X509v3 Extended Key Usage") == nil)

            let intermediate = try await opensslText(pki.path("intermediate.pem"))
            #expect(opensslSection(intermediate, "X509v3 Basic Constraints")?.hasSuffix("critical\nCA:TRUE, pathlen:0") == true)
            #expect(opensslSection(intermediate, "X509v3 Key Usage")?.hasSuffix("critical\nCertificate Sign, CRL Sign") == true)
            let constraints = try #require(opensslSection(intermediate, "X509v3 Name Constraints"), "\(intermediate)")
            #expect(constraints.contains("critical"))
            let permitted = constraints.components(separatedBy: "Excluded:")[0]
            let excluded = constraints.components(separatedBy: "Excluded:").dropFirst().joined()
            for entry in ["DNS:example.com", "IP:127.0.0.0/255.0.0.0", "IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF",
                          "email:example.com", "URI:example.com"] {
                #expect(permitted.contains(entry), "permitted lacks \(entry): \(constraints)")
            }
            #expect(excluded.contains("DNS:internal.example.com"), "\(constraints)")
        }
    }

    @Test("subjects and issuers print as the RFC 4514 strings we built, tricky values included")
    func names() async throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Names Root,O=Example\\, Inc.,C=US"))
        let subject = DistinguishedName([
            RelativeDistinguishedName([.domainComponent("com")]), RelativeDistinguishedName([.domainComponent("example")]),
            RelativeDistinguishedName([.country("DE")]), RelativeDistinguishedName([.stateOrProvince("Baden-Württemberg")]),
            RelativeDistinguishedName([.locality("Stuttgart")]), RelativeDistinguishedName([.organization("Müller & Söhne\\GmbH")]),
            RelativeDistinguishedName([.organizationalUnit("R+D; \"Lab\"")]), RelativeDistinguishedName([.serialNumber("SN42")]),
            RelativeDistinguishedName([.emailAddress("lab@example.com")]),
            RelativeDistinguishedName([.commonName("#1 lab.example.com ")]),
        ])
        let key = try KeyPair.generate()
        let certificate = try root.issue(
            CertificateRequest.create(subject: subject, key: key, alternativeNames: [.email("lab@example.com")]), profile: .tlsClient)
        #expect(certificate.subject == subject)
        try await withTemporaryPEM(certificate) { path in
            // RFC 2253 form without escaping of UTF-8 bytes: the same escaping rules as RFC 4514.
            let printed = try await Tool.runChecked(["openssl", "x509", "-in", path, "-noout", "-subject", "-issuer", "-nameopt", "RFC2253,-esc_msb"]).standardOutput
            let lines = printed.split(separator: "\n").map(String.init)
            #expect(lines.count == 2)
            #expect(lines.first == "subject=" + subject.description, "openssl: \(lines.first ?? "")\nours:    \(subject)")
            #expect(lines.last == "issuer=" + root.certificate.subject.description)
            // openssl's decoded values (multiline form escapes only the backslash).
            let multiline = try await Tool.runChecked(["openssl", "x509", "-in", path, "-noout", "-subject", "-nameopt", "multiline,utf8,-esc_msb"]).standardOutput
            for value in ["Baden-Württemberg", "Müller & Söhne\\\\GmbH", "R+D; \"Lab\"", "#1 lab.example.com ", "lab@example.com", "SN42"] {
                #expect(multiline.contains(value), "openssl's multiline output lacks '\(value)': \(multiline)")
            }
        }
    }

    @Test("serial, validity and fingerprint match openssl's reading")
    func numbers() async throws {
        try await withPKI(.ecdsaP256) { pki in
            for (file, certificate) in pki.certificates {
                let output = try await Tool.runChecked(["openssl", "x509", "-in", pki.path(file), "-noout", "-serial", "-fingerprint", "-sha256",
                                                  "-startdate", "-enddate"]).standardOutput
                let fields = Dictionary(output.split(separator: "\n").compactMap { line -> (String, String)? in
                    guard let equals = line.firstIndex(of: "=") else { return nil }
                    return (String(line[..<equals]), String(line[line.index(after: equals)...]))
                }, uniquingKeysWith: { $1 })
                #expect(fields["serial"]?.lowercased() == certificate.serialNumber.hexString, "\(file)")
                #expect(fields["sha256 Fingerprint"]?.lowercased().replacingOccurrences(of: ":", with: "") == hex(certificate.sha256Fingerprint))
                let formatter = DateFormatter()
                formatter.locale = Locale(identifier: "en_US_POSIX")
                formatter.timeZone = TimeZone(identifier: "GMT")
                formatter.dateFormat = "MMM d HH:mm:ss yyyy 'GMT'"
                let start = fields["notBefore"].map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
                let end = fields["notAfter"].map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
                #expect(start.flatMap(formatter.date(from:)) == certificate.notValidBefore, "\(file): \(output)")
                #expect(end.flatMap(formatter.date(from:)) == certificate.notValidAfter, "\(file): \(output)")
            }
        }
    }
}

/// Writes `certificate` to a temporary PEM file for the duration of `body`.
func withTemporaryPEM<R>(_ certificate: Certificate, _ body: (String) throws -> R) throws -> R {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try body(try directory.write(certificate.pemEncoded, to: "certificate.pem"))
}

/// Runs `body` (which runs programs) with the path of a PEM file holding `certificate`.
func withTemporaryPEM<R>(_ certificate: Certificate, _ body: (String) async throws -> R) async throws -> R {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try await body(try directory.write(certificate.pemEncoded, to: "certificate.pem"))
}
