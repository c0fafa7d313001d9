import Foundation
import GnuTLS

// What the Benchmarks package and `tlsctl bench` need from the authority: a throwaway PKI
// (the engine pair is `InMemoryTLSPair` in GnuTLS). Not API: `@_spi(Benchmarks)` keeps it out
// of what users see, and it may change with any release.

/// A throwaway PKI for benchmarks: root -> issuing CA -> server and client leaves, every key
/// of one algorithm, the server named `localhost`.
@_spi(Benchmarks)
public struct BenchmarkPKI: Sendable {
    /// The self-signed root CA.
    public let root: LocalAuthority
    /// The issuing CA under the root.
    public let issuing: LocalAuthority
    /// The server's chain and key.
    public let serverIdentity: TLSIdentity
    /// The client's chain and key.
    public let clientIdentity: TLSIdentity
    /// The server identity's key, in memory (for baselines that load it as PEM).
    public var serverKey: KeyPair { Self.keyPair(serverIdentity) }
    /// The client identity's key, in memory.
    public var clientKey: KeyPair { Self.keyPair(clientIdentity) }
    /// The host name the server certificate is issued for.
    public let hostname = "localhost"

    /// Generates the keys and certificates (milliseconds for ECDSA and Ed25519, longer for RSA).
    public init(algorithm: KeyAlgorithm = .ecdsaP256) throws {
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Benchmark Root,O=swift-gnutls"),
                                             key: try KeyPair.generate(algorithm))
        issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Benchmark Issuing CA,O=swift-gnutls"),
                                              key: try KeyPair.generate(algorithm), pathLength: 0)
        serverIdentity = try Self.issue(by: issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer, algorithm: algorithm)
        clientIdentity = try Self.issue(by: issuing, subject: "CN=bench-client,O=swift-gnutls",
                                        names: [.uri("spiffe://example.org/bench-client")], profile: .tlsClient, algorithm: algorithm)
    }

    private static func issue(by authority: LocalAuthority, subject: String, names: [GeneralName], profile: CertificateProfile,
                              algorithm: KeyAlgorithm) throws -> TLSIdentity {
        let key = try KeyPair.generate(algorithm)
        let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
        return try TLSIdentity(chain: authority.issueWithChain(request, profile: profile, options: IssuanceOptions(validityDays: 30)), key: key)
    }

    private static func keyPair(_ identity: TLSIdentity) -> KeyPair {
        guard case .inMemory(let key)? = identity.key.reference?.storedForm else {
            preconditionFailure("benchmark identities are generated in memory")
        }
        return key
    }

    /// A trust store holding the root.
    public var trustStore: TrustStore { TrustStore(certificates: [root.certificate]) }

    /// A client configuration trusting the root (presenting the client identity when `mutual`).
    public func clientConfiguration(version: TLSVersion? = nil, tickets: Bool = true, mutual: Bool = false) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trustStore, identity: mutual ? clientIdentity : nil)
        if let version { configuration.minimumVersion = version; configuration.maximumVersion = version }
        configuration.sessionResumption = tickets
        return configuration
    }

    /// A server configuration for `localhost` (requiring client certificates when `mutual`).
    public func serverConfiguration(version: TLSVersion? = nil, tickets: Bool = true, mutual: Bool = false) -> TLSConfiguration {
        var configuration = mutual
            ? TLSConfiguration.makeMutualTLSServerConfiguration(identity: serverIdentity, clientTrustStore: trustStore)
            : TLSConfiguration.makeServerConfiguration(identity: serverIdentity)
        if let version { configuration.minimumVersion = version; configuration.maximumVersion = version }
        configuration.sessionResumption = tickets
        return configuration
    }
}
