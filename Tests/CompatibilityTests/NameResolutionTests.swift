import GnuTLS
import GnuTLSAuthority
import NIOGnuTLS
import NIOSSL
import SwiftASN1
import Testing
import X509

// Our modules beside swift-nio-ssl and swift-certificates in one file (issue 13).
//
// `TLSConfiguration`, `TLSVersion` (NIOSSL) and `Certificate`, `DistinguishedName`,
// `GeneralName`, `Verifier` (X509) exist in both. Swift never picks one silently: an
// unqualified use in a file importing both modules does not compile ("ambiguous for type
// lookup"). The documented resolution is the module name: `GnuTLS.Certificate`,
// `X509.Certificate`, `GnuTLS.TLSConfiguration`, `NIOSSL.TLSConfiguration`. No prefixes are
// added to our names. This file compiling is the test of that resolution.
//
// Conversions go through DER, so no library target depends on swift-certificates (it is
// a test-only dependency): `GnuTLS.Certificate(derEncoded:)` / `.derEncoded` on our side,
// `X509.Certificate(derEncoded:)` / `DER.Serializer` on theirs. The recipe below is what
// the README shows.

extension GnuTLS.Certificate {
    /// A swift-certificates certificate as ours, by its DER bytes.
    init(_ certificate: X509.Certificate) throws {
        var serializer = SwiftASN1.DER.Serializer()
        try serializer.serialize(certificate)
        try self.init(derEncoded: serializer.serializedBytes)
    }
}

extension X509.Certificate {
    /// Our certificate as a swift-certificates one, by its DER bytes.
    init(_ certificate: GnuTLS.Certificate) throws {
        try self.init(derEncoded: certificate.derEncoded)
    }
}

@Suite struct NameResolutionTests {
    /// A root and a server certificate issued by our CA.
    static func issued() throws -> (root: LocalAuthority, leaf: GnuTLS.Certificate) {
        let root = try LocalAuthority.createRoot(subject: try GnuTLS.DistinguishedName("CN=Interop Root,O=Example"))
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try GnuTLS.DistinguishedName("CN=api.example.com,O=Example"), key: key,
                                                    alternativeNames: [.dnsName("api.example.com"), .uri("spiffe://example.org/api")])
        let leaf = try root.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 7))[0]
        return (root, leaf)
    }

    @Test func bothConfigurationsAndVersionsByModuleName() throws {
        let ours: GnuTLS.TLSConfiguration = .makeClientConfiguration()
        let theirs: NIOSSL.TLSConfiguration = .makeClientConfiguration()
        #expect(ours.minimumVersion == GnuTLS.TLSVersion.tls12)
        #expect(theirs.certificateVerification == .fullVerification)
        let pinned: NIOSSL.TLSVersion = .tlsv13
        #expect(pinned != .tlsv12)
        let context = try GnuTLS.TLSContext(configuration: ours)
        #expect(context.configuration.role == .client)
    }

    @Test func certificatesConvertBothWaysByDER() throws {
        let (root, leaf) = try Self.issued()
        let x509 = try X509.Certificate(leaf)
        #expect(x509.serialNumber.bytes.elementsEqual(leaf.serialNumber.bytes.drop { $0 == 0 }) ||
                x509.serialNumber.bytes.elementsEqual(leaf.serialNumber.bytes))
        #expect(x509.notValidAfter == leaf.notValidAfter)
        let names = try #require(try x509.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("api.example.com")))
        #expect(names.contains(.uniformResourceIdentifier("spiffe://example.org/api")))

        // Back again: the same DER, the same parsed fields.
        let back = try GnuTLS.Certificate(x509)
        #expect(back == leaf)
        #expect(back.derEncoded == leaf.derEncoded)
        #expect(back.subjectAlternativeNames == leaf.subjectAlternativeNames)

        // Distinguished names by DER too, and they read alike.
        let subject = try X509.DistinguishedName(derEncoded: try SwiftASN1.DER.parse(leaf.subject.derEncoded) as ASN1Node)
        #expect(subject == x509.subject)
        var serializer = SwiftASN1.DER.Serializer()
        try subject.serialize(into: &serializer)
        #expect(try GnuTLS.DistinguishedName(derEncoded: serializer.serializedBytes) == leaf.subject)

        // swift-certificates verifies what our CA issued (its chain, by its own verifier).
        let x509Root = try X509.Certificate(root.certificate)
        #expect(x509.issuer == x509Root.subject)
        #expect(x509Root.publicKey.isValidSignature(x509.signature, for: x509))
    }

    @Test func nioSSLCertificatesConvertByDER() throws {
        let (_, leaf) = try Self.issued()
        let nioSSL = try NIOSSLCertificate(bytes: leaf.derEncoded, format: .der)
        let back = try GnuTLS.Certificate(derEncoded: try nioSSL.toDERBytes())
        #expect(back == leaf)
        let fromPEM = try NIOSSLCertificate(bytes: Array(leaf.pemEncoded.utf8), format: .pem)
        #expect(try fromPEM.toDERBytes() == leaf.derEncoded)
    }
}
