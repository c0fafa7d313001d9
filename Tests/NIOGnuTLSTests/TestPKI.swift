import Foundation
import GnuTLS
import GnuTLSAuthority

/// A run-time PKI for TLS tests: root -> issuing CA -> server and client leaves.
struct TestPKI: Sendable {
    let root: LocalAuthority
    let issuing: LocalAuthority
    let serverIdentity: TLSIdentity
    let clientIdentity: TLSIdentity

    init(serverNames: [GeneralName] = [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)],
         clientSubject: String = "CN=client-1,O=Example", algorithm: KeyAlgorithm = .ecdsaP256) throws {
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Test Root,O=Example"))
        issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Test Issuing CA,O=Example"), pathLength: 0)
        serverIdentity = try Self.issue(by: issuing, subject: "CN=localhost", names: serverNames, profile: .tlsServer, algorithm: algorithm)
        clientIdentity = try Self.issue(by: issuing, subject: clientSubject, names: [.uri("spiffe://example.org/client-1")], profile: .tlsClient, algorithm: algorithm)
    }

    static func issue(by authority: LocalAuthority, subject: String, names: [GeneralName], profile: CertificateProfile,
                      algorithm: KeyAlgorithm = .ecdsaP256, options: IssuanceOptions = IssuanceOptions(validityDays: 30)) throws -> TLSIdentity {
        let key = try KeyPair.generate(algorithm)
        let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
        return try TLSIdentity(chain: authority.issueWithChain(request, profile: profile, options: options), key: key)
    }

    var trust: TrustStore { TrustStore(certificates: [root.certificate]) }
}
