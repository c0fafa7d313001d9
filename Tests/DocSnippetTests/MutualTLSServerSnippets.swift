import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import Testing

/// Thrown by the server article's authorisation hooks.
struct NotAuthorized: Error, CustomStringConvertible {
    var caller: String
    var description: String { "\(caller) may not call this service" }
}

/// The SPIFFE ID of the peer: its one `spiffe://` URI alternative name (an X.509-SVID
/// carries exactly one URI), or nil.
func spiffeID(of info: ConnectionInfo) -> String? {
    let uris = info.peerAlternativeNames.compactMap(\.uri)
    guard uris.count == 1, let uri = uris.first, uri.hasPrefix("spiffe://") else { return nil }
    return uri
}

/// The code blocks of `Sources/NIOGnuTLS/NIOGnuTLS.docc/MutualTLSServer.md`, with clients
/// that are allowed and clients that are refused.
@Suite struct MutualTLSServerSnippets {
    /// Connects with `identity`, sends "hello" and returns the first reply.
    static func exchange(as identity: TLSIdentity, pki: DocPKI, port: Int) async throws -> String? {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [pki.root.certificate]), identity: identity)
        configuration.serverName = "api.example.com"
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: try TLSContext(configuration: configuration))
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "hello"))
            var replies = inbound.makeAsyncIterator()
            return try await replies.next().map { String(buffer: $0) }
        }
    }

    @Test func authorisesBySPIFFEID() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        try pki.write(pki.server, as: "server")
        let billing = try pki.client("billing", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        let intruder = try pki.client("intruder", subject: "CN=intruder,OU=payments,O=Example", spiffeID: "spiffe://example.com/intruder")
        let (chainFile, keyFile, clientCAFile, passphrase) = (pki.chainFile("server"), pki.keyFile("server"), pki.caFile, pki.passphrase)
        let port = 0

        let identity = try TLSIdentity(chainContentsOfFile: chainFile, keyContentsOfFile: keyFile,
                                       passphrase: passphrase)
        let clientCAs = try TrustStore(contentsOfFile: clientCAFile)
        let context = try TLSContext(configuration: .makeMutualTLSServerConfiguration(
            identity: identity, clientTrustStore: clientCAs))

        let allowedCallers: Set<String> = ["spiffe://example.com/billing", "spiffe://example.com/reports"]
        let authorize: TLSVerificationHook = { info in
            guard let caller = spiffeID(of: info), allowedCallers.contains(caller) else {
                throw NotAuthorized(caller: spiffeID(of: info) ?? info.peerSubject?.description ?? "anonymous")
            }
        }

        let server = try await TLSServer.bind(host: "127.0.0.1", port: port, context: context,
                                              verificationHook: authorize)
        let serving = Task {
            try await server.serve(onFailure: { error in print("refused:", error) }) { channel in
                let caller = spiffeID(of: channel.info) ?? "?"
                try await channel.executeThenClose { inbound, outbound in
                    for try await request in inbound {
                        try await outbound.write(ByteBuffer(string: "\(caller): \(String(buffer: request))"))
                    }
                }
            }
        }

        #expect(try await Self.exchange(as: billing, pki: pki, port: server.port) == "spiffe://example.com/billing: hello")
        // Under TLS 1.3 the refusal reaches the client after its `connect` returned: its
        // first write or read fails (the server's alert closed the connection).
        await #expect(throws: (any Error).self) {
            _ = try await Self.exchange(as: intruder, pki: pki, port: server.port)
        }
        try await server.close()
        try await serving.value
    }

    @Test func authorisesBySubject() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        let payments = try pki.client("payments", subject: "CN=billing,OU=payments,O=Example", spiffeID: "spiffe://example.com/billing")
        let marketing = try pki.client("marketing", subject: "CN=mailer,OU=marketing,O=Example", spiffeID: "spiffe://example.com/mailer")
        let context = try TLSContext(configuration: .makeMutualTLSServerConfiguration(
            identity: pki.server, clientTrustStore: TrustStore(certificates: [pki.root.certificate])))

        let authorizeBySubject: TLSVerificationHook = { info in
            guard let subject = info.peerSubject, subject.values(of: .organizationalUnit).contains("payments") else {
                throw NotAuthorized(caller: info.peerSubject?.description ?? "anonymous")
            }
        }

        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: context, verificationHook: authorizeBySubject)
        let refusals = AsyncStream<any Error>.makeStream()
        let serving = Task {
            try await server.serve(onFailure: { refusals.continuation.yield($0) }) { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await request in inbound { try await outbound.write(request) }
                }
            }
        }
        #expect(try await Self.exchange(as: payments, pki: pki, port: server.port) == "hello")
        await #expect(throws: (any Error).self) {
            _ = try await Self.exchange(as: marketing, pki: pki, port: server.port)
        }
        // The server's side of the refusal: the hook's error, wrapped in a TLSError.
        var iterator = refusals.stream.makeAsyncIterator()
        let refusal = await iterator.next()
        #expect((refusal as? TLSError)?.code == .verificationHookRejected)
        #expect("\(refusal.map { "\($0)" } ?? "")".contains("may not call this service"))
        try await server.close()
        try await serving.value
    }
}
