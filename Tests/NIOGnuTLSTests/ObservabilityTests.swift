import CoreMetrics
import Foundation
import GnuTLS
import GnuTLSAuthority
import InMemoryLogging
import Logging
import MetricsTestKit
import NIOCore
import NIOGnuTLS
import NIOGnuTLSAuthority
import NIOPosix
import Testing
import TestSupport

// Logging (swift-log) and metrics (swift-metrics) of handshakes, refusals, resumptions,
// connections, bytes and served certificates (issue 13). Each test records into its own
// `InMemoryLogHandler` and `TestMetrics`, handed to the server or client: nothing is
// bootstrapped process-wide, so these tests run in parallel with every other.

/// A logger whose entries the test reads back.
func capturingLogger(_ label: String) -> (Logger, InMemoryLogHandler) {
    let handler = InMemoryLogHandler()
    var logger = Logger(label: label, factory: { _ in handler })
    logger.logLevel = .trace
    return (logger, handler)
}

extension InMemoryLogHandler {
    /// The entries whose `tls.event` is `event`.
    func events(_ event: String) -> [InMemoryLogHandler.Entry] {
        entries.filter { $0.metadata[TLSLogKey.event] == .string(event) }
    }
}

/// A `String` metadata value, or nil.
func text(_ value: Logger.Metadata.Value?) -> String? {
    switch value {
    case .string(let text): return text
    case .stringConvertible(let value): return value.description
    default: return nil
    }
}

/// An echo server with the given logger and metrics; failures go to the default `onFailure`.
func echoServer(_ context: TLSContext, logger: Logger, metrics: TLSMetrics) async throws -> (TLSServer, Task<Void, any Error>) {
    let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: context, logger: logger, metrics: metrics)
    let serving = Task {
        try await server.serve { channel in
            try await channel.executeThenClose { inbound, outbound in
                for try await chunk in inbound { try await outbound.write(chunk) }
            }
        }
    }
    return (server, serving)
}

/// One echo round trip: a ticket (TLS 1.3) is read with the answer, so the next connection resumes.
func roundTrip(port: Int, context: TLSContext, logger: Logger? = nil, metrics: TLSMetrics? = nil) async throws -> ConnectionInfo {
    let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context, logger: logger, metrics: metrics)
    try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: "ping"))
        for try await chunk in inbound where String(buffer: chunk).contains("ping") { break }
    }
    return channel.info
}

@Suite struct ObservabilityTests {
    @Test func handshakesRefusalsResumptionsAndBytesAreLoggedAndCounted() async throws {
        let fixture = try EngineFixture(.tls13)
        let (serverLogger, serverLog) = capturingLogger("server")
        let (clientLogger, clientLog) = capturingLogger("client")
        let serverMetrics = TestMetrics()
        let clientMetrics = TestMetrics()
        let (server, serving) = try await echoServer(try fixture.server { $0.clientCertificates = .required },
                                                     logger: serverLogger, metrics: TLSMetrics(factory: serverMetrics))
        let client = try fixture.client(identity: fixture.pki.clientIdentity)
        let clientTLSMetrics = TLSMetrics(factory: clientMetrics, dimensions: [("client", "test")])

        // Two connections from one client context: the second resumes.
        let first = try await roundTrip(port: server.port, context: client, logger: clientLogger, metrics: clientTLSMetrics)
        let second = try await roundTrip(port: server.port, context: client, logger: clientLogger, metrics: clientTLSMetrics)
        #expect(!first.isResumed && second.isResumed)

        // A client whose certificate comes from another CA is refused.
        let stranger = try TestPKI(clientSubject: "CN=stranger,O=Elsewhere")
        let refusedClient = try fixture.client(identity: stranger.clientIdentity)
        // (TLS 1.3: the client may finish its side first and then read the server's alert.)
        _ = try? await roundTrip(port: server.port, context: refusedClient)
        #expect(await eventually { serverLog.events(TLSLogEvent.refused).count == 1 })

        // The server's handshake events carry the client's identity and what was negotiated.
        #expect(await eventually { serverLog.events(TLSLogEvent.handshake).count == 2 })
        let handshake = try #require(serverLog.events(TLSLogEvent.handshake).first)
        let leaf = fixture.pki.clientIdentity.leaf
        #expect(handshake.level == .info)
        #expect(text(handshake.metadata[TLSLogKey.peerSubject]) == "\(leaf.subject)")
        #expect(text(handshake.metadata[TLSLogKey.peerSANs]) == "\(GeneralName.uri("spiffe://example.org/client-1"))")
        #expect(text(handshake.metadata[TLSLogKey.peerFingerprint]) == leaf.sha256Fingerprint.map { String(format: "%02x", $0) }.joined())
        #expect(text(handshake.metadata[TLSLogKey.peerSerial]) == leaf.serialNumber.hexString)
        #expect(text(handshake.metadata[TLSLogKey.version]) == "TLS1.3")
        #expect(text(handshake.metadata[TLSLogKey.cipher]) == first.cipherSuite)
        #expect(text(handshake.metadata[TLSLogKey.resumed]) == "false")
        #expect(text(handshake.metadata[TLSLogKey.role]) == "server")
        #expect(text(handshake.metadata[TLSLogKey.peerAddress])?.hasPrefix("127.0.0.1:") == true)
        #expect(text(serverLog.events(TLSLogEvent.handshake).last?.metadata[TLSLogKey.resumed]) == "true")

        // The refusal names the reason and who was refused.
        let refusal = try #require(serverLog.events(TLSLogEvent.refused).first)
        #expect(refusal.level == .warning)
        #expect(text(refusal.metadata[TLSLogKey.errorCode]) == TLSError.Code.verificationFailed.rawValue)
        #expect(text(refusal.metadata[TLSLogKey.reasons])?.contains(VerificationError.Reason.untrustedIssuer.rawValue) == true, "\(refusal)")
        #expect(text(refusal.metadata[TLSLogKey.peerSubject]) == "\(stranger.clientIdentity.leaf.subject)")
        // serve's default onFailure logged it too, at debug (not dropped, not repeated at warning).
        #expect(await eventually {
            serverLog.entries.contains { $0.level == .debug && $0.metadata[TLSLogKey.errorCode] == .string("verificationFailed") }
        })

        // The client logged its side: the server's identity, role client.
        let clientHandshakes = clientLog.events(TLSLogEvent.handshake)
        #expect(clientHandshakes.count == 2)
        #expect(text(clientHandshakes.first?.metadata[TLSLogKey.peerSubject]) == "\(fixture.pki.serverIdentity.leaf.subject)")
        #expect(text(clientHandshakes.first?.metadata[TLSLogKey.role]) == "client")
        #expect(text(clientHandshakes.first?.metadata[TLSLogKey.serverName]) == "127.0.0.1")

        // Server metrics: two successful TLS 1.3 handshakes, one failure, its reason, one resumption.
        let handshakes = TLSMetricName.handshakes
        #expect(serverMetrics.counterTotal(label: handshakes, dimensions: [("outcome", "success"), ("version", "TLS1.3")]) == 2)
        #expect(serverMetrics.counters(label: handshakes).filter { $0.dimensions.contains { $0 == ("outcome", "failure") } }
            .map(\.totalValue).reduce(0, +) == 1)
        #expect(serverMetrics.counterTotal(label: TLSMetricName.verificationFailures, dimensions: [("reason", "untrustedIssuer")]) == 1)
        #expect(serverMetrics.counterTotal(label: TLSMetricName.resumptions) == 1)
        #expect(try serverMetrics.expectTimer(TLSMetricName.handshakeDuration, [("outcome", "success")]).values.count == 2)
        #expect(serverMetrics.counterTotal(label: TLSMetricName.bytesReceived) > 0)
        #expect(serverMetrics.counterTotal(label: TLSMetricName.bytesSent) > 0)
        // Every connection closed: the meter is back at zero.
        let active = try serverMetrics.expectMeter(TLSMetricName.activeConnections)
        #expect(await eventually { active.lastValue == 0 })
        #expect(active.values.max() ?? 0 >= 1)
        // The served certificate's remaining life (30 days when issued).
        let expiry = try serverMetrics.expectGauge(TLSMetricName.certificateExpiry)
        #expect((expiry.lastValue ?? 0) > 29 * 86_400 && (expiry.lastValue ?? 0) <= 30 * 86_400)

        // Client metrics carry the client's own dimensions.
        #expect(clientMetrics.counterTotal(label: handshakes, dimensions: [("client", "test"), ("outcome", "success"), ("version", "TLS1.3")]) == 2)
        #expect(clientMetrics.counterTotal(label: TLSMetricName.resumptions, dimensions: [("client", "test")]) == 1)

        try await server.close()
        _ = await serving.result
    }

    @Test func aServedCertificateNearExpiryIsLoggedAtBind() async throws {
        let pki = try TestPKI()
        let soon = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer,
                                     options: IssuanceOptions(validityDays: 10))
        let (logger, log) = capturingLogger("server")
        let metrics = TestMetrics()
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0,
                                              context: try TLSContext(configuration: .makeServerConfiguration(identity: soon)),
                                              logger: logger, metrics: TLSMetrics(factory: metrics))
        let warning = try #require(log.events(TLSLogEvent.certificateExpiring).first)
        #expect(warning.level == .warning)
        #expect(text(warning.metadata[TLSLogKey.certificateSerial]) == soon.leaf.serialNumber.hexString)
        #expect(text(warning.metadata[TLSLogKey.certificateSubject]) == "\(soon.leaf.subject)")
        let seconds = Int(text(warning.metadata[TLSLogKey.certificateExpiresIn]) ?? "") ?? 0
        #expect(seconds > 9 * 86_400 && seconds <= 10 * 86_400)
        let gauge = try metrics.expectGauge(TLSMetricName.certificateExpiry)
        #expect((gauge.lastValue ?? 0) > 9 * 86_400)
        try await server.close()

        // A certificate far from expiry (90 days; the window is 30) is not logged.
        let later = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer,
                                      options: IssuanceOptions(validityDays: 90))
        let (quietLogger, quietLog) = capturingLogger("server")
        let quiet = try await TLSServer.bind(host: "127.0.0.1", port: 0,
                                             context: try TLSContext(configuration: .makeServerConfiguration(identity: later)),
                                             logger: quietLogger)
        #expect(quietLog.events(TLSLogEvent.certificateExpiring).isEmpty)
        try await quiet.close()
    }

    @Test func reloadsAreCountedThroughTheMetricsHook() throws {
        let metrics = TestMetrics()
        let tls = TLSMetrics(factory: metrics)
        tls.recordReload(succeeded: true)
        tls.recordReload(succeeded: true)
        tls.recordReload(succeeded: false)
        #expect(metrics.counterTotal(label: TLSMetricName.reloads, dimensions: [("outcome", "success")]) == 2)
        #expect(metrics.counterTotal(label: TLSMetricName.reloads, dimensions: [("outcome", "refused")]) == 1)
        // Every name shares the prefix.
        for name in [TLSMetricName.handshakes, TLSMetricName.handshakeDuration, TLSMetricName.verificationFailures,
                     TLSMetricName.resumptions, TLSMetricName.activeConnections, TLSMetricName.bytesReceived,
                     TLSMetricName.bytesSent, TLSMetricName.reloads, TLSMetricName.certificateExpiry] {
            #expect(name.hasPrefix("gnutls_tls_"))
        }
    }

    @Test func theOCSPResponderAndClientLogWithTheirLoggers() async throws {
        let directory = try TemporaryDirectory(prefix: "ocsp-logging")
        defer { directory.remove() }
        try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Logging Root,O=Example")).save(to: directory.file("ca"), passphrase: nil)
        let ca = try LocalAuthority.load(from: directory.file("ca"), passphrase: nil)
        let leaf = try ca.issue(CertificateRequest.create(subject: try DistinguishedName("CN=logged.example.com"), key: KeyPair.generate(),
                                                          alternativeNames: [.dnsName("logged.example.com")]),
                                profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
        let (serverLogger, serverLog) = capturingLogger("ocsp-server")
        let (clientLogger, clientLog) = capturingLogger("ocsp-client")
        let server = try await OCSPServer.start(responder: try OCSPResponder(authority: ca), logger: serverLogger)
        let url = "http://127.0.0.1:\(server.port)/"
        let response = try await OCSPClient.fetch(try OCSPRequest(certificate: leaf, issuer: ca.certificate), from: url, logger: clientLogger)
        #expect(response.responseStatus == .successful)

        #expect(await eventually { serverLog.events(TLSLogEvent.ocspRequest).count == 1 })
        let answered = try #require(serverLog.events(TLSLogEvent.ocspRequest).first)
        #expect(answered.level == .info)
        #expect(text(answered.metadata[TLSLogKey.httpMethod]) == "POST")
        #expect(text(answered.metadata[TLSLogKey.httpStatus]) == "200")
        #expect(text(answered.metadata[TLSLogKey.ocspCertificates]) == "\(leaf.serialNumber.hexString)=good")
        let fetched = try #require(clientLog.events(TLSLogEvent.ocspFetch).first)
        #expect(fetched.level == .debug)
        #expect(text(fetched.metadata[TLSLogKey.ocspURL]) == url)

        // A responder that is not there: the failure is logged as a warning, and thrown.
        try await server.close()
        await #expect(throws: OCSPFetchError.self) {
            _ = try await OCSPClient.fetch(try OCSPRequest(certificate: leaf, issuer: ca.certificate), from: url, timeout: .seconds(5), logger: clientLogger)
        }
        #expect(clientLog.events(TLSLogEvent.ocspFetch).last?.level == .warning)
    }

    @Test func aThrowingConnectionHandlerIsLoggedByTheDefaultOnFailure() async throws {
        struct Unwelcome: Error, CustomStringConvertible { var description: String { "unwelcome request" } }
        let fixture = try EngineFixture(.tls13)
        let (logger, log) = capturingLogger("server")
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try fixture.server(), logger: logger)
        let serving = Task {
            try await server.serve { channel in
                try await channel.executeThenClose { inbound, _ in
                    for try await _ in inbound { throw Unwelcome() }
                }
            }
        }
        _ = try? await roundTrip(port: server.port, context: try fixture.client())
        #expect(await eventually { !log.events(TLSLogEvent.connectionFailed).isEmpty })
        let failed = try #require(log.events(TLSLogEvent.connectionFailed).first)
        #expect(failed.level == .warning)
        #expect(text(failed.metadata[TLSLogKey.errorMessage]) == "unwelcome request")
        try await server.close()
        _ = await serving.result
    }

    @Test func withoutALoggerNothingIsLoggedAndNothingBreaks() async throws {
        // The default logger is a no-op: a server and client without one still work.
        let fixture = try EngineFixture(.tls12)
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try fixture.server())
        let serving = Task {
            try await server.serve { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound { try await outbound.write(chunk) }
                }
            }
        }
        let info = try await roundTrip(port: server.port, context: try fixture.client())
        #expect(info.version == .tls12)
        try await server.close()
        _ = await serving.result
    }
}
