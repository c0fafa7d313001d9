import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// A root, an intermediate and a server and a client certificate, every key of one
/// algorithm, issued by the library and written as PEM files into a temporary directory.
struct IssuedPKI {
    let algorithm: KeyAlgorithm
    let directory: TemporaryDirectory
    let root: LocalAuthority
    let intermediate: LocalAuthority
    let server: Certificate
    let serverKey: KeyPair
    let client: Certificate
    let clientKey: KeyPair

    /// Names every checker accepts. Wildcards and SPIFFE IDs are checked separately
    /// (``LintTests/wildcardAndSPIFFE()``): pkilint's RFC 5280 syntax checks flag both.
    static let serverNames: [GeneralName] = [
        .dnsName("api.example.com"), .dnsName("www.api.example.com"), .ipAddress(IPAddress("127.0.0.1")!), .ipAddress(IPAddress("::1")!),
    ]
    static let clientNames: [GeneralName] = [.email("alice@example.com"), .uri("https://example.com/users/alice")]
    static let crlURL = "http://crl.example.com/issuing.crl"
    static let ocspURL = "http://ocsp.example.com/"
    static let caIssuersURL = "http://ca.example.com/issuing.der"

    init(_ algorithm: KeyAlgorithm) throws {
        self.algorithm = algorithm
        directory = try TemporaryDirectory(prefix: "interop-\(algorithm)")
        root = try LocalAuthority.createRoot(
            subject: try DistinguishedName("CN=Interop Root \(algorithm),O=Example Interop,C=US"), key: KeyPair.generate(algorithm),
            validityDays: 3650, pathLength: 1)
        intermediate = try root.createIntermediate(
            subject: try DistinguishedName("CN=Interop Issuing CA \(algorithm),O=Example Interop,C=US"), key: KeyPair.generate(algorithm),
            validityDays: 1825, pathLength: 0,
            nameConstraints: NameConstraints(
                permittedDNSDomains: ["example.com"], excludedDNSDomains: ["internal.example.com"],
                permittedIPRanges: [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!],
                permittedEmailAddresses: ["example.com"], permittedURIDomains: ["example.com"]))
        let options = IssuanceOptions(validityDays: 90, crlDistributionPoints: [Self.crlURL], ocspURLs: [Self.ocspURL],
                                      caIssuerURLs: [Self.caIssuersURL])
        serverKey = try KeyPair.generate(algorithm)
        server = try intermediate.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=api.example.com,O=Example Interop,C=US"), key: serverKey,
                                      alternativeNames: Self.serverNames),
            profile: .tlsServer, options: options)
        clientKey = try KeyPair.generate(algorithm)
        client = try intermediate.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=alice,O=Example Interop,C=US"), key: clientKey,
                                      alternativeNames: Self.clientNames),
            profile: .tlsClient, options: options)
        try directory.write(root.certificate.pemEncoded, to: "root.pem")
        try directory.write(intermediate.certificate.pemEncoded, to: "intermediate.pem")
        try directory.write(server.pemEncoded, to: "server.pem")
        try directory.write(client.pemEncoded, to: "client.pem")
        try directory.write(server.pemEncoded + intermediate.certificate.pemEncoded, to: "server-chain.pem")
        try directory.write(client.pemEncoded + intermediate.certificate.pemEncoded, to: "client-chain.pem")
    }

    /// Path of a file written by `init`.
    func path(_ name: String) -> String { directory.file(name) }

    /// The four certificates by file name, for checks that run on each.
    var certificates: [(file: String, certificate: Certificate)] {
        [("root.pem", root.certificate), ("intermediate.pem", intermediate.certificate), ("server.pem", server), ("client.pem", client)]
    }
}

/// The algorithms every interoperability check runs for.
let interopAlgorithms: [KeyAlgorithm] = [.ecdsaP256, .rsa2048, .ed25519]

/// Runs `body` with a fresh PKI of `algorithm`; its directory is removed afterwards.
func withPKI<R>(_ algorithm: KeyAlgorithm, _ body: (IssuedPKI) throws -> R) throws -> R {
    let pki = try IssuedPKI(algorithm)
    defer { pki.directory.remove() }
    return try body(pki)
}

/// Runs `body` (which runs programs) with a fresh PKI of `algorithm`; its directory is
/// removed afterwards.
func withPKI<R>(_ algorithm: KeyAlgorithm, _ body: (IssuedPKI) async throws -> R) async throws -> R {
    let pki = try IssuedPKI(algorithm)
    defer { pki.directory.remove() }
    return try await body(pki)
}

/// `openssl x509 -text -noout` of a certificate file.
func opensslText(_ path: String) async throws -> String {
    try await Tool.runChecked(["openssl", "x509", "-in", path, "-text", "-noout"]).standardOutput
}

/// The lines following the line that contains `header` in openssl's text dump, up to
/// the next header at the same or a lower indentation (the value of one extension).
func opensslSection(_ text: String, _ header: String) -> String? {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let start = lines.firstIndex(where: { $0.contains(header) }) else { return nil }
    let indent = lines[start].prefix { $0 == " " }.count
    var body: [String] = [lines[start]]
    for line in lines[(start + 1)...] {
        if line.prefix(while: { $0 == " " }).count <= indent { break }
        body.append(line.trimmingCharacters(in: .whitespaces))
    }
    return body.joined(separator: "\n")
}
