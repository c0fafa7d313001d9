import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import Testing
import TestSupport

// Handshake messages spread over many records by real peers (issue 7, item 1 and 3):
// `openssl s_server/s_client -max_send_frag 512`, and certificates over 16 KiB (one TLS
// record) presented by openssl, gnutls-serv and openssl s_client. Each used to stall until
// the handshake timeout.

/// DNS names that take a certificate over 16 KiB.
func bulkyServerNames() -> [GeneralName] {
    let label = String(repeating: "x", count: 60)
    return [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)]
        + (0..<98).map { .dnsName("n\($0).\(label).\(label).\(label).example.com") }
}

extension TLSTestPKI {
    /// Writes `big-server*.pem` and `big-client*.pem`: certificates over 16 KiB.
    func writeBigIdentities() throws -> (server: TLSIdentity, client: TLSIdentity) {
        let server = try Self.issue(by: issuing, subject: Self.serverSubject, names: bulkyServerNames(), profile: .tlsServer)
        let client = try Self.issue(by: issuing, subject: "CN=big-client,O=Example TLS",
                                    names: [.uri("spiffe://example.org/big-client")] + Array(bulkyServerNames().dropFirst(2)), profile: .tlsClient)
        try write(server, as: "big-server")
        try write(client, as: "big-client")
        return (server, client)
    }
}

@Suite struct TLSFragmentationInteropTests {
    @Test(arguments: tlsVersions)
    func ourClientAgainstOpenSSLWithSmallRecords(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let (peer, port) = try await startOpenSSLServer(
            ["-cert", pki.path("server.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("server.key.pem"),
             "-rev", version.opensslFlag, "-max_send_frag", "512"], in: pki.directory)
        defer { peer.stop() }
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        let (info, reply) = try await exchange(port: port, context: context, message: "hello small records\n")
        #expect(info.protocolVersion == version.description)
        #expect(reply == "sdrocer llams olleh\n", "\(peer.transcript)")
    }

    @Test(arguments: tlsVersions)
    func ourClientAgainstOpenSSLWithABigCertificate(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let big = try pki.writeBigIdentities()
        #expect(big.server.leaf.derEncoded.count > 16 * 1024)
        let (peer, port) = try await startOpenSSLServer(
            ["-cert", pki.path("big-server.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("big-server.key.pem"),
             "-rev", version.opensslFlag], in: pki.directory)
        defer { peer.stop() }
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        let (info, reply) = try await exchange(port: port, context: context, message: "hello big certificate\n")
        #expect(info.peerCertificates.first == big.server.leaf)
        #expect(reply == "etacifitrec gib olleh\n", "\(peer.transcript)")
    }

    @Test(arguments: tlsVersions)
    func ourClientAgainstGnuTLSServerWithABigCertificate(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let big = try pki.writeBigIdentities()
        let (peer, port) = try await startGnuTLSServer(
            ["--echo", "--x509certfile", pki.path("big-server-chain.pem"), "--x509keyfile", pki.path("big-server.key.pem"),
             "--priority", version.gnutlsPriority], in: pki.directory)
        defer { peer.stop() }
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        let (info, reply) = try await exchange(port: port, context: context, message: "hello gnutls-serv\n")
        #expect(info.peerCertificates.first == big.server.leaf)
        #expect(reply == "hello gnutls-serv\n", "\(peer.transcript)")
    }

    @Test(arguments: tlsVersions)
    func opensslClientWithSmallRecordsAndABigCertificateAgainstOurMutualTLSServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let big = try pki.writeBigIdentities()
        #expect(big.client.leaf.derEncoded.count > 16 * 1024)
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: true))
        let peer = try await PeerProcess(
            ["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", version.opensslFlag, "-max_send_frag", "512",
             "-CAfile", pki.path("root.pem"), "-verify_return_error",
             "-cert", pki.path("big-client.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("big-client.key.pem")],
            in: pki.directory)
        defer { peer.stop() }
        try await peer.waitForOutput("Verify return code")
        peer.send("hello from a big client\n")
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        #expect(peer.standardOutput.contains("hello from a big client\n"), "\(peer.transcript)")
        let info = try #require(try await server.waitForConnections(1).first)
        #expect(info.peerCertificates.first == big.client.leaf)
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }
}
