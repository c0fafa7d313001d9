import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing

/// Issue 7: a peer presenting more certificates than GnuTLS verifies (16) is refused with
/// that reason, not with "no intermediate was given"; and connecting to a refused port
/// fails with an error, leaking no promise.
@Suite struct ChainLengthTests {
    /// root -> `intermediates` CAs in a line -> a server leaf for 127.0.0.1; the chain the
    /// server presents is leaf first, every intermediate after it (root excluded).
    static func longChain(intermediates: Int) throws -> (root: Certificate, identity: TLSIdentity) {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Long Chain Root"))
        var authority = root
        var cas: [Certificate] = []
        for index in 1...intermediates {
            // Each CA expires a day before its issuer (a CA may not outlive its issuer).
            authority = try authority.createIntermediate(subject: try DistinguishedName("CN=Long Chain CA \(index)"), validityDays: 1000 - index)
            cas.append(authority.certificate)
        }
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=127.0.0.1"), key: key,
                                                    alternativeNames: [.ipAddress(IPAddress("127.0.0.1")!)])
        let leaf = try authority.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
        return (root.certificate, TLSIdentity(chain: [leaf] + cas.reversed(), key: key))
    }

    @Test("Verifier: 17 intermediates (18 certificates below the root) fail with pathLengthExceeded naming GnuTLS's limit of 16")
    func verifierNamesTheLimit() throws {
        let (root, identity) = try Self.longChain(intermediates: 17)
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
        do {
            try verifier.verify(identity.leaf, intermediates: Array(identity.chain.dropFirst()), policy: .server(host: "127.0.0.1"))
            Issue.record("an 18-certificate chain verified")
        } catch let error as VerificationError {
            #expect(error.contains(.pathLengthExceeded), "\(error)")
            #expect(!error.contains(.untrustedIssuer), "\(error)")
            #expect(error.description.contains("chain longer than GnuTLS's limit of 16 certificates"), "\(error)")
        }
        // Within the limit the same construction verifies: the refusal is about length only.
        let (shortRoot, short) = try Self.longChain(intermediates: 3)
        let shortVerifier = try Verifier(trustStore: TrustStore(certificates: [shortRoot]))
        try shortVerifier.verify(short.leaf, intermediates: Array(short.chain.dropFirst()), policy: .server(host: "127.0.0.1"))
    }

    @Test("TLS: a server presenting 18 certificates is refused with the chain-length reason")
    func overLongServerChainRefused() async throws {
        let (root, identity) = try Self.longChain(intermediates: 17)
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try TLSContext(configuration: .makeServerConfiguration(identity: identity)))
        let serving = Task {
            try await server.serve { channel in try await channel.executeThenClose { _, _ in } }
        }
        var client = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [root]))
        client.handshakeTimeout = .seconds(60)
        do {
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, configuration: client)
            try await channel.executeThenClose { _, _ in }
            Issue.record("a client accepted an 18-certificate chain")
        } catch let error as TLSError {
            #expect(error.code == .verificationFailed, "\(error)")
            #expect(error.verification?.contains(.pathLengthExceeded) == true, "\(error)")
            #expect("\(error)".contains("chain longer than GnuTLS's limit of 16 certificates"), "\(error)")
        }
        try await server.close()
        _ = await serving.result
    }

    @Test("SecureChannel.connect to a refused port throws a connection error (no leaked handshake promise)")
    func connectToRefusedPort() async throws {
        // A port that was just listening and is closed: nothing accepts there.
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(listener.localAddress?.port)
        try await listener.close()
        let context = try TLSContext(configuration: .makeClientConfiguration(trustStore: TrustStore(certificates: [])))
        // "localhost" may resolve to ::1 and 127.0.0.1: NIO then races two channels, each
        // with its own handler and handshake promise.
        for host in ["127.0.0.1", "localhost", "127.0.0.1"] {
            await #expect(throws: (any Error).self) {
                _ = try await SecureChannel.connect(host: host, port: port, context: context)
            }
        }
    }
}
