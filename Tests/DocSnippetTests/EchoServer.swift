import GnuTLS
import NIOCore
import NIOGnuTLS

/// A mutual-TLS echo server on 127.0.0.1 for the client articles' snippets: the peer the
/// snippets connect to. `identity` defaults to the PKI's `api.example.com` server.
struct EchoServer {
    let server: TLSServer
    let serving: Task<Void, any Error>

    init(pki: DocPKI, identity: TLSIdentity? = nil) async throws {
        let configuration = TLSConfiguration.makeMutualTLSServerConfiguration(
            identity: identity ?? pki.server, clientTrustStore: TrustStore(certificates: [pki.root.certificate]))
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try TLSContext(configuration: configuration))
        self.server = server
        serving = Task {
            try await server.serve { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound { try await outbound.write(chunk) }
                }
            }
        }
    }

    var port: Int { server.port }

    func stop() async throws {
        try await server.close()
        try await serving.value
    }
}
