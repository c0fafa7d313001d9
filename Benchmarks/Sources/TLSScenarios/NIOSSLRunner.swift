@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import NIOCore
import NIOEmbedded
import NIOSSL
import NIOTLS

/// swift-nio-ssl's `NIOSSLHandler` back to back on EmbeddedChannels, with the same
/// certificates, the client verifying chain and host name.
final class NIOSSLRunner: ChannelRunner {
    let clientContext: NIOSSLContext
    let serverContext: NIOSSLContext

    init(_ scenario: Scenario, pki: BenchmarkPKI) throws {
        (clientContext, serverContext) = try NIOSSLRunner.makeContexts(scenario, pki: pki)
        super.init(scenario)
        try prepare()
    }

    /// The swift-nio-ssl contexts of `scenario` (``configurations(_:pki:)``).
    static func makeContexts(_ scenario: Scenario, pki: BenchmarkPKI) throws -> (client: NIOSSLContext, server: NIOSSLContext) {
        let made = try configurations(scenario, pki: pki)
        return (try NIOSSLContext(configuration: made.client), try NIOSSLContext(configuration: made.server))
    }

    /// The swift-nio-ssl configurations of `scenario`: the same certificates and keys, the
    /// client verifying chain and host name, X25519, the scenario's version.
    static func configurations(_ scenario: Scenario, pki: BenchmarkPKI) throws
        -> (client: NIOSSL.TLSConfiguration, server: NIOSSL.TLSConfiguration) {
        func certificates(_ chain: [Certificate]) throws -> [NIOSSLCertificateSource] {
            try chain.map { .certificate(try NIOSSLCertificate(bytes: $0.derEncoded, format: .der)) }
        }
        func key(_ identity: TLSIdentity) throws -> NIOSSLPrivateKeySource {
            // The benchmark PKI's keys are in memory; swift-nio-ssl gets the same key as PEM.
            guard let pair = identity.key as? KeyPair else {
                throw GnuTLSError(.invalidArgument, "the benchmark identity's key is not an in-memory KeyPair")
            }
            return .privateKey(try NIOSSLPrivateKey(bytes: Array(try pair.pemEncoded().utf8), format: .pem))
        }
        let root = try NIOSSLCertificate(bytes: pki.root.certificate.derEncoded, format: .der)
        let version: NIOSSL.TLSVersion = scenario.version == .tls13 ? .tlsv13 : .tlsv12

        var server = NIOSSL.TLSConfiguration.makeServerConfiguration(
            certificateChain: try certificates(pki.serverIdentity.chain), privateKey: try key(pki.serverIdentity))
        var client = NIOSSL.TLSConfiguration.makeClientConfiguration()
        client.trustRoots = .certificates([root])
        if scenario.mutual {
            server.certificateVerification = .noHostnameVerification
            server.trustRoots = .certificates([root])
            client.certificateChain = try certificates(pki.clientIdentity.chain)
            client.privateKey = try key(pki.clientIdentity)
        }
        for index in [0, 1] {
            var configuration = index == 0 ? server : client
            configuration.minimumTLSVersion = version
            configuration.maximumTLSVersion = version
            configuration.curves = [.x25519]
            if index == 0 { server = configuration } else { client = configuration }
        }
        return (client, server)
    }

    private var handshakeDone = false

    override func makeConnection() throws -> BackToBackEmbeddedChannel {
        let pair = BackToBackEmbeddedChannel()
        handshakeDone = false
        try pair.client.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientContext, serverHostname: "localhost"))
        try pair.client.pipeline.syncOperations.addHandler(EventWatcher { [unowned self] event in
            if let event = event as? TLSUserEvent, case .handshakeCompleted = event { self.handshakeDone = true }
        })
        try pair.server.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
        return pair
    }

    override func checkHandshake(_ pair: BackToBackEmbeddedChannel, resumed: Bool) throws {
        guard handshakeDone else { throw ScenarioError("swift-nio-ssl: the handshake did not finish") }
    }
}

