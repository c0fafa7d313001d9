import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOGnuTLS
import ServiceLifecycle
import Testing

/// The code blocks of `Sources/NIOGnuTLS/NIOGnuTLS.docc/RotationAndLifecycle.md`: a server
/// serving from a file watcher in a ServiceGroup; replacing the files makes new
/// connections see the renewed certificate; graceful shutdown ends the group.
@Suite struct RotationAndLifecycleSnippets {
    /// The serial of the certificate the server at `port` presents.
    static func servedSerial(_ pki: DocPKI, port: Int) async throws -> SerialNumber? {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [pki.root.certificate]),
                                                                     identity: try pki.client("c-\(UUID().uuidString)", subject: "CN=billing", spiffeID: "spiffe://example.com/billing"))
        configuration.serverName = "api.example.com"
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: try TLSContext(configuration: configuration))
        let serial = channel.info.peerCertificate?.serialNumber
        try await channel.executeThenClose { _, _ in }
        return serial
    }

    @Test func watcherRotatesInAServiceGroup() async throws {
        let pki = try DocPKI()
        defer { pki.directory.remove() }
        let initial = pki.server
        let trust = TrustStore(certificates: [pki.root.certificate])
        let chainPath = pki.chainFile("server"), keyPath = pki.keyFile("server"), clientCAPath = pki.caFile
        let passphrase = pki.passphrase

        var logger = Logger(label: "api.tls")
        logger.logLevel = .info
        let watcher = try TLSFileWatcher(
            configuration: .makeMutualTLSServerConfiguration(identity: initial, clientTrustStore: trust),
            identities: [TLSIdentityFiles(chainPath: chainPath, keyPath: keyPath, passphrase: passphrase)],
            trustStoreFile: clientCAPath,
            pollInterval: .seconds(5),
            logger: logger)
        let server = try await TLSServer.bind(
            host: "127.0.0.1", port: 0, contextProvider: watcher,
            drainTimeout: .seconds(30), logger: logger, metrics: TLSMetrics(dimensions: [("service", "api")]),
            handler: { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await request in inbound { try await outbound.write(request) }
                }
            })

        let printing = Task {
            for await event in watcher.events() {
                if let error = event.error {
                    print("reload refused: \(error.message); keeping \(event.serials)")
                } else {
                    print("reloaded: now serving \(event.serials)")
                }
            }
        }
        defer { printing.cancel() }

        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: watcher), .init(service: server)],
            gracefulShutdownSignals: [.sigterm],
            logger: logger))
        let running = Task { try await group.run() }

        let port = server.port
        #expect(try await Self.servedSerial(pki, port: port) == initial.leaf.serialNumber)
        // A renewal, renamed into place; the test asks for the reload rather than waiting
        // for the poll.
        let renewed = try DocPKI.issue(by: pki.issuing, subject: "CN=api.example.com",
                                       names: [.dnsName("api.example.com"), .uri("spiffe://example.com/api")], profile: .tlsServer)
        try pki.write(renewed, as: "server")
        let event = watcher.reload()
        #expect(event.error == nil && event.serials == [renewed.leaf.serialNumber], "\(event)")
        #expect(try await Self.servedSerial(pki, port: port) == renewed.leaf.serialNumber)

        await group.triggerGracefulShutdown()
        try await running.value
    }
}
