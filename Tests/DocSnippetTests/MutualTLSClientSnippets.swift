import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import Testing

/// A server identity check for the client article: the SPIFFE ID the client expects.
struct UnexpectedPeer: Error, CustomStringConvertible {
    var names: [GeneralName]
    var description: String { "unexpected server: \(names)" }
}

/// The code blocks of `Sources/NIOGnuTLS/NIOGnuTLS.docc/MutualTLSClient.md`, run against
/// a mutual-TLS echo server on 127.0.0.1.
@Suite struct MutualTLSClientSnippets {
    /// The article's first block: the client context from the PKI's files.
    static func articleContext(_ pki: DocPKI) throws -> (TLSContext, TLSIdentity, String) {
        let (chainFile, keyFile, caFile, passphrase) = (pki.chainFile("client"), pki.keyFile("client"), pki.caFile, pki.passphrase)

        let identity = try TLSIdentity(chainContentsOfFile: chainFile, keyContentsOfFile: keyFile,
                                       passphrase: passphrase)
        var configuration = TLSConfiguration.makeClientConfiguration(
            trustStore: try TrustStore(contentsOfFile: caFile), identity: identity)
        configuration.serverName = "api.example.com"  // SNI and the name verified
        let context = try TLSContext(configuration: configuration)

        return (context, identity, caFile)
    }

    @Test func connectsWithAClientCertificateFromFiles() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        try pki.client("client", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        let echo = try await EchoServer(pki: pki)
        let (context, _, _) = try Self.articleContext(pki)
        let port = echo.port

        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        print("server:", channel.info.peerSubject?.description ?? "?", channel.info.protocolVersion)
        let reply = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "ping"))
            var replies = inbound.makeAsyncIterator()
            return try await replies.next().map { String(buffer: $0) }
        }

        #expect(reply == "ping")
        #expect(channel.info.peerSubject == pki.server.leaf.subject)

        let pinned = try await SecureChannel.connect(
            host: "127.0.0.1", port: port, context: context,
            verificationHook: { info in
                guard info.peerAlternativeNames.contains(.uri("spiffe://example.com/api")) else {
                    throw UnexpectedPeer(names: info.peerAlternativeNames)
                }
            })

        #expect(pinned.info.peerAlternativeNames.contains(.uri("spiffe://example.com/api")))
        try await pinned.executeThenClose { _, _ in }
        try await echo.stop()
    }

    @Test func reportsWhyAServerIsRefused() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        try pki.client("client", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        // A server of the same CA under another name: the client expects api.example.com.
        let other = try DocPKI.issue(by: pki.issuing, subject: "CN=db.example.com", names: [.dnsName("db.example.com")], profile: .tlsServer)
        let echo = try await EchoServer(pki: pki, identity: other)
        let (context, identity, caFile) = try Self.articleContext(pki)
        let port = echo.port

        do {
            _ = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        } catch let error as TLSError where error.code == .verificationFailed {
            for problem in error.verification?.problems ?? [] {
                print("refused:", problem.reason, problem.message)
            }
        }

        // The block above only prints: check the error it handles is the one thrown.
        await #expect {
            _ = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        } throws: { error in
            (error as? TLSError)?.code == .verificationFailed
                && (error as? TLSError)?.verification?.contains(.nameMismatch) == true
        }

        // And a hook that throws refuses a server the chain verification accepted.
        var wrongService = TLSConfiguration.makeClientConfiguration(
            trustStore: try TrustStore(contentsOfFile: caFile), identity: identity)
        wrongService.serverName = "db.example.com"
        await #expect {
            _ = try await SecureChannel.connect(
                host: "127.0.0.1", port: port, context: try TLSContext(configuration: wrongService),
                verificationHook: { info in
                    guard info.peerAlternativeNames.contains(.uri("spiffe://example.com/api")) else {
                        throw UnexpectedPeer(names: info.peerAlternativeNames)
                    }
                })
        } throws: { error in
            (error as? TLSError)?.code == .verificationHookRejected
        }
        try await echo.stop()
    }
}
