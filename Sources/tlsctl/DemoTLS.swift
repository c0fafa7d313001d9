import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS

/// The TLS part of `tlsctl demo`: mutual TLS between the demo's server and client
/// certificates on 127.0.0.1 (an in-process `TLSServer` on a free port and a
/// `SecureChannel`), each verification step of both sides, then four connections that
/// must be refused, each with its exact reason: a wrong host name, an expired server
/// certificate, a server from a CA the client does not trust, and a revoked client.
///
/// Every wait is bounded (handshakes 5 s, each exchange and server event 10 s), and every
/// outcome is a ``DemoLog`` check, so the demo exits 0 only if each one happened.
enum DemoTLS {
    static let host = "127.0.0.1"
    static let serverName = "server.demo.test"
    static let timeout: Duration = .seconds(10)

    static func run(_ pki: DemoPKI, workspace: DemoWorkspace, log: inout DemoLog) async throws {
        let root = pki.root.certificate
        let intermediate = pki.intermediate.certificate
        let serverIdentity = try TLSIdentity(chain: pki.server.chain, key: pki.server.key)
        let clientIdentity = try TLSIdentity(chain: pki.client.chain, key: pki.client.key)
        let demoTrust = TrustStore(certificates: [root])

        // MARK: Mutual TLS
        log.begin("Mutual TLS on \(host): the server requires a client certificate")
        let server = try await DemoServer.start(.makeMutualTLSServerConfiguration(identity: serverIdentity, clientTrustStore: demoTrust))
        log.detail("server: TLSServer on \(host):\(server.port) presents server-chain.pem and requires a client certificate chaining to the demo root")
        log.detail("client: connects to \(host):\(server.port) asking for \(serverName) (SNI), presents client-chain.pem, trusts only the demo root")
        let message = "hello from the demo client"
        switch await exchange(port: server.port, configuration: clientConfiguration(trust: demoTrust, identity: clientIdentity), message: message) {
        case .success(let (info, reply)):
            log.check("client: handshake complete", true, "\(info.protocolVersion), \(info.cipherSuite), resumed: \(info.isResumed ? "yes" : "no")")
            log.check("client: server chain verified up to the trusted root",
                      info.verifiedChain?.certificates == [pki.server.certificate, intermediate, root],
                      info.verifiedChain.map(TLSOutput.chain) ?? "no verified chain")
            log.check("client: host name \(serverName) verified against the server's alternative names (no common-name fallback)",
                      info.verifiedChain != nil && info.peerCertificate?.dnsNames.contains(serverName) == true,
                      info.peerAlternativeNames.map(\.description).joined(separator: ", "))
            switch await server.nextEvent(timeout: timeout) {
            case .served(let serverInfo, let received)?:
                log.check("server: client chain verified up to the trusted root",
                          serverInfo.verifiedChain?.certificates == [pki.client.certificate, intermediate, root],
                          serverInfo.verifiedChain.map(TLSOutput.chain) ?? "no verified chain")
                log.check("server: client identity read from its certificate", serverInfo.peerSubject == pki.client.certificate.subject,
                          "subject \(serverInfo.peerSubject.map { "\($0)" } ?? "none"); \(serverInfo.peerAlternativeNames.map(\.description).joined(separator: ", ")); SHA-256 \(serverInfo.peerFingerprint.map { Format.colonHex($0).prefix(23) + "…" } ?? "-")")
                log.check("server: received the client's message", received == message, "'\(received)'")
            case .refused(let error)?:
                log.check("server: accepted the client", false, TLSOutput.reason(error))
            case nil:
                log.check("server: accepted the client", false, "no connection within \(timeout)")
            }
            let expected = DemoServer.reply(to: message, from: pki.client.certificate.subject)
            log.check("client: received the server's reply over the verified channel", reply == expected,
                      "'\(reply.trimmingCharacters(in: .newlines))'")
        case .failure(let error):
            log.check("client: mutual TLS connection", false, TLSOutput.reason(error))
        }

        // MARK: 1. Wrong host name
        log.begin("Refused: a wrong host name")
        var wrongName = clientConfiguration(trust: demoTrust, identity: clientIdentity)
        wrongName.serverName = "db.demo.test"
        log.detail("client asks the same server for db.demo.test, a name its certificate does not hold")
        await expectClientRefusal(port: server.port, configuration: wrongName, reason: .nameMismatch, log: &log)
        await reportServerSide(server, log: &log)
        await server.stop()

        // MARK: 2. Expired certificate
        log.begin("Refused: an expired server certificate")
        let expired = try issueExpiredServerCertificate(pki, workspace: workspace, log: &log)
        let expiredServer = try await DemoServer.start(.makeServerConfiguration(identity: expired))
        log.detail("server on \(host):\(expiredServer.port) presents it")
        await expectClientRefusal(port: expiredServer.port, configuration: clientConfiguration(trust: demoTrust, identity: nil), reason: .expired, log: &log)
        await expiredServer.stop()

        // MARK: 3. Untrusted CA
        log.begin("Refused: a server certificate from a CA the client does not trust")
        let stranger = try strangerServerIdentity(log: &log)
        let strangerServer = try await DemoServer.start(.makeServerConfiguration(identity: stranger))
        log.detail("server on \(host):\(strangerServer.port) presents it; the client still trusts only the demo root")
        await expectClientRefusal(port: strangerServer.port, configuration: clientConfiguration(trust: demoTrust, identity: nil), reason: .untrustedIssuer, log: &log)
        await strangerServer.stop()

        // MARK: 4. Revoked client
        log.begin("Refused: a revoked client certificate")
        let revocation = try pki.intermediate.revoke(pki.client.certificate, reason: .keyCompromise)
        log.detail("revoked the client certificate (serial \(Format.colonHex(pki.client.certificate.serialNumber.bytes).prefix(23))…) in the issuing CA's ledger, reason \(revocation.reason.map { "\($0)" } ?? "none")")
        let crl = try pki.intermediate.makeCRL(nextUpdateIn: 7)
        let crlPath = workspace.file("intermediate.crl.pem")
        try Outputs.write(crl.pemEncoded, to: crlPath)
        log.detail("issued CRL #\(crl.number.map(String.init) ?? "?") with \(crl.entries.count) entr\(crl.entries.count == 1 ? "y" : "ies"), written to \(crlPath)")
        let revokingServer = try await DemoServer.start(
            .makeMutualTLSServerConfiguration(identity: serverIdentity, clientTrustStore: TrustStore(certificates: [root], crls: [crl])))
        log.detail("mutual-TLS server on \(host):\(revokingServer.port) trusts the demo root and loads the CRL")
        let clientSide = await exchange(port: revokingServer.port, configuration: clientConfiguration(trust: demoTrust, identity: clientIdentity), message: message)
        switch await revokingServer.nextEvent(timeout: timeout) {
        case .refused(let error)?:
            let verification = (error as? TLSError)?.verification
            log.check("server refuses the revoked client", verification?.contains(.revoked) == true, TLSOutput.reason(error))
        case .served?:
            log.check("server refuses the revoked client", false, "it was accepted")
        case nil:
            log.check("server refuses the revoked client", false, "no connection within \(timeout)")
        }
        switch clientSide {
        case .success(let (_, reply)):
            log.check("client gets no reply", false, "it got '\(reply)'")
        case .failure(let error):
            // TLS 1.3: the client's handshake ends before the server has checked its
            // certificate, so the client learns of the refusal from an alert or a reset.
            log.check("client gets no reply", true, "in TLS 1.3 its handshake ends before the server checks its certificate; it then sees \(TLSOutput.reason(error))")
        }
        await revokingServer.stop()
    }

    /// A client that verifies servers against `trust`, asking for ``serverName``.
    static func clientConfiguration(trust: TrustStore, identity: TLSIdentity?) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust, identity: identity)
        configuration.serverName = serverName
        configuration.handshakeTimeout = .seconds(5)
        return configuration
    }

    /// Connects, expecting the client to refuse the server with `reason`.
    static func expectClientRefusal(port: Int, configuration: TLSConfiguration, reason: VerificationError.Reason, log: inout DemoLog) async {
        switch await exchange(port: port, configuration: configuration, message: "this must not be sent") {
        case .success:
            log.check("client refuses the server (\(reason))", false, "it connected")
        case .failure(let error):
            let verification = (error as? TLSError)?.verification
            log.check("client refuses the server (\(reason))", verification?.contains(reason) == true, TLSOutput.reason(error))
        }
    }

    /// What the server saw of a connection the client refused.
    static func reportServerSide(_ server: DemoServer, log: inout DemoLog) async {
        switch await server.nextEvent(timeout: timeout) {
        case .refused(let error)?:
            log.detail("the server saw: \(TLSOutput.reason(error))")
        case .served?:
            log.check("server sees no application data", false, "the connection reached the server's handler")
        case nil:
            log.detail("the server saw nothing within \(timeout)")
        }
    }

    /// A server certificate whose validity ended a minute ago. The issuing CA accepts an
    /// explicit end date (`IssuanceOptions(notValidAfter:)`) and starts validity no earlier
    /// than its own, so the certificate is real, signed by the demo CA, and simply expired.
    static func issueExpiredServerCertificate(_ pki: DemoPKI, workspace: DemoWorkspace, log: inout DemoLog) throws -> TLSIdentity {
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=server.demo.test,O=swift-gnutls demo,OU=expired"), key: key, alternativeNames: DemoPKI.serverNames)
        let end = Date().addingTimeInterval(-60)
        let chain = try pki.intermediate.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(notValidAfter: end))
        try Outputs.write(chain.map(\.pemEncoded).joined(), to: workspace.file("expired-server-chain.pem"))
        log.detail("issued by the demo's issuing CA with IssuanceOptions(notValidAfter: one minute ago): valid \(Format.date(chain[0].notValidBefore)) to \(Format.date(chain[0].notValidAfter)), written to \(workspace.file("expired-server-chain.pem"))")
        return try TLSIdentity(chain: chain, key: key)
    }

    /// A server certificate for the demo's names from a root the client has never seen.
    static func strangerServerIdentity(log: inout DemoLog) throws -> TLSIdentity {
        let strangerRoot = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger Root CA,O=somewhere else"), validityDays: 30)
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=server.demo.test,O=somewhere else"), key: key, alternativeNames: DemoPKI.serverNames)
        let chain = try strangerRoot.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 7))
        log.detail("a new root '\(strangerRoot.certificate.subject)' issued a server certificate for \(serverName) and \(host)")
        return try TLSIdentity(chain: chain, key: key)
    }

    /// Connects, sends `message` and a newline, and reads the reply until the server closes.
    static func exchange(port: Int, configuration: TLSConfiguration, message: String) async -> Result<(ConnectionInfo, String), any Error> {
        do {
            return .success(try await withTimeout(timeout) {
                let context = try TLSContext(configuration: configuration)
                let channel = try await SecureChannel.connect(host: host, port: port, context: context)
                let reply = try await channel.executeThenClose { inbound, outbound in
                    // A server that refuses the client after the handshake closes the channel:
                    // the write then fails, and the inbound side says why (its alert).
                    var writeError: (any Error)?
                    do { try await outbound.write(ByteBuffer(string: message + "\n")) } catch { writeError = error }
                    var reply = ""
                    for try await chunk in inbound { reply += String(buffer: chunk) }
                    if let writeError { throw writeError }
                    return reply
                }
                return (channel.info, reply)
            })
        } catch {
            return .failure(error)
        }
    }
}

/// Runs `body`, failing with a ``CLIError`` if it takes longer than `limit`.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw CLIError("timed out after \(limit)")
        }
        return value
    }
}

/// One outcome on the demo server's side.
enum DemoServerEvent: Sendable {
    /// A verified connection: what it negotiated, and the line the client sent.
    case served(ConnectionInfo, String)
    /// A connection refused during the handshake or verification.
    case refused(any Error)
}

/// An in-process TLS server for the demo: reads one line, replies with a greeting naming the
/// client's verified subject, and closes. Its events are collected for the checks.
final class DemoServer: Sendable {
    let server: TLSServer
    private let task: Task<Void, Never>
    private let events: DemoEvents

    var port: Int { server.port }

    private init(server: TLSServer, task: Task<Void, Never>, events: DemoEvents) {
        self.server = server
        self.task = task
        self.events = events
    }

    static func reply(to message: String, from subject: DistinguishedName?) -> String {
        "hello \(subject?.commonName ?? "anonymous"), the server read: \(message)\n"
    }

    static func start(_ configuration: TLSConfiguration) async throws -> DemoServer {
        var configuration = configuration
        configuration.handshakeTimeout = .seconds(5)
        let server = try await TLSServer.bind(host: DemoTLS.host, port: 0, context: try TLSContext(configuration: configuration))
        let events = DemoEvents()
        let task = Task<Void, Never> {
            _ = try? await server.serve(onFailure: { error in events.append(.refused(error)) }) { channel in
                try await channel.executeThenClose { inbound, outbound in
                    var received = ""
                    for try await chunk in inbound {
                        received += String(buffer: chunk)
                        if received.hasSuffix("\n") { break }
                    }
                    let line = String(received.dropLast(received.hasSuffix("\n") ? 1 : 0))
                    events.append(.served(channel.info, line))
                    try await outbound.write(ByteBuffer(string: reply(to: line, from: channel.info.peerSubject)))
                }
            }
        }
        return DemoServer(server: server, task: task, events: events)
    }

    /// The next event, waiting at most `timeout`.
    func nextEvent(timeout: Duration) async -> DemoServerEvent? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = events.next() { return event }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Stops accepting and waits (at most 5 s) for the connections to finish.
    func stop() async {
        try? await server.close()
        let task = self.task
        _ = try? await withTimeout(.seconds(5)) { await task.value }
    }
}

/// The server's events, in order, behind a lock.
final class DemoEvents: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [DemoServerEvent] = []

    func append(_ event: DemoServerEvent) {
        lock.lock(); defer { lock.unlock() }
        events.append(event)
    }

    func next() -> DemoServerEvent? {
        lock.lock(); defer { lock.unlock() }
        return events.isEmpty ? nil : events.removeFirst()
    }
}
