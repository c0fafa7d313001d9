import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSCore
import Testing

// The sans-IO engine back to back in memory: a client engine and a server engine hand each
// other's ciphertext across, with no socket and no event loop.

/// What a back-to-back handshake ended with.
struct HandshakeOutcome {
    var clientComplete = false
    var serverComplete = false
    var clientFailure: CoreTLSFailure?
    var serverFailure: CoreTLSFailure?
    var bothComplete: Bool { clientComplete && serverComplete }
}

/// A client engine and a server engine wired to each other in memory.
struct EnginePair {
    let client: TLSEngine
    let server: TLSEngine

    init(client: TLSContext, server: TLSContext, host: String? = "localhost") throws {
        self.client = try client.makeEngine(host: host)
        self.server = try server.makeEngine(host: nil)
    }

    /// Advances both handshakes, moving each side's ciphertext to the other, until a round
    /// moves no bytes (both done, or one failed and its alert was delivered). Bounded: a
    /// handshake that does not settle within `maxRounds` is a test failure, not a hang.
    @discardableResult
    func handshake(maxRounds: Int = 32, sourceLocation: SourceLocation = #_sourceLocation) -> HandshakeOutcome {
        var outcome = HandshakeOutcome()
        for round in 0..<maxRounds {
            Self.step(client, complete: &outcome.clientComplete, failure: &outcome.clientFailure)
            let toServer = client.takeOutbound()
            if !toServer.isEmpty { server.receive(toServer) }
            Self.step(server, complete: &outcome.serverComplete, failure: &outcome.serverFailure)
            let toClient = server.takeOutbound()
            if !toClient.isEmpty { client.receive(toClient) }
            if round > 0 && toServer.isEmpty && toClient.isEmpty { return outcome }
        }
        Issue.record("the handshake did not settle within \(maxRounds) rounds", sourceLocation: sourceLocation)
        return outcome
    }

    private static func step(_ engine: TLSEngine, complete: inout Bool, failure: inout CoreTLSFailure?) {
        guard !complete, failure == nil else { return }
        do {
            complete = try engine.handshake() == .complete
        } catch {
            failure = error
        }
    }
}

/// Everything `receiver` can decrypt from its queued ciphertext.
struct Received {
    var bytes: [UInt8] = []
    var records = 0
    var closed = false
}

func drain(_ receiver: TLSEngine) throws(CoreTLSFailure) -> Received {
    var received = Received()
    var guardRounds = 0
    while guardRounds < 1_000_000 {
        guardRounds += 1
        switch try receiver.read({ received.bytes.append(contentsOf: $0) }) {
        case .data: received.records += 1
        case .wantInput: return received
        case .closed:
            received.closed = true
            return received
        case .renegotiationRefused: continue
        }
    }
    return received
}

/// Encrypts `payload` on `sender`, moves the ciphertext to `receiver` and decrypts it there.
func transfer(_ payload: [UInt8], from sender: TLSEngine, to receiver: TLSEngine) throws -> Received {
    try payload.withUnsafeBytes { bytes in try sender.write(bytes) }
    receiver.receive(sender.takeOutbound())
    return try drain(receiver)
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

/// Contexts built from a run-time PKI, pinned to one protocol version.
struct EngineFixture {
    let pki: TestPKI
    let version: TLSVersion

    init(_ version: TLSVersion, pki: TestPKI? = nil) throws {
        self.pki = try pki ?? TestPKI()
        self.version = version
    }

    func pin(_ configuration: inout TLSConfiguration) {
        configuration.minimumVersion = version
        configuration.maximumVersion = version
    }

    func server(_ adjust: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration.makeServerConfiguration(identity: pki.serverIdentity)
        configuration.trustStore = pki.trust
        pin(&configuration)
        adjust(&configuration)
        return try TLSContext(configuration: configuration)
    }

    func client(identity: TLSIdentity? = nil, trust: TrustStore? = nil, _ adjust: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust ?? pki.trust, identity: identity)
        pin(&configuration)
        adjust(&configuration)
        return try TLSContext(configuration: configuration)
    }
}

@Suite struct EngineTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    // MARK: Handshake and data

    @Test(arguments: versions)
    func handshakeThenDataBothWays(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        let outcome = pair.handshake()
        #expect(outcome.bothComplete)
        #expect(outcome.clientFailure == nil && outcome.serverFailure == nil)
        #expect(pair.client.protocolVersion == version.description)
        #expect(pair.server.protocolVersion == version.description)
        #expect(pair.client.cipherSuite == pair.server.cipherSuite)
        #expect(pair.client.cipherSuite.hasPrefix("TLS_"))
        #expect(pair.client.peerCertificates.first == fixture.pki.serverIdentity.leaf.derEncoded)
        // The server's chain is sent leaf first with its issuing CA.
        #expect(pair.client.peerCertificates.count == fixture.pki.serverIdentity.chain.count)
        #expect(pair.server.peerCertificates.isEmpty)

        let ping = Array("ping from the client".utf8)
        #expect(try transfer(ping, from: pair.client, to: pair.server).bytes == ping)
        let pong = Array("pong from the server".utf8)
        #expect(try transfer(pong, from: pair.server, to: pair.client).bytes == pong)
    }

    @Test(arguments: versions)
    func oneMebibyteIsSplitAcrossRecordsAndArrivesIntact(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        let payload = randomBytes(1 << 20)
        for (sender, receiver) in [(pair.client, pair.server), (pair.server, pair.client)] {
            let received = try transfer(payload, from: sender, to: receiver)
            #expect(received.bytes.count == payload.count)
            #expect(received.bytes == payload)
            // A TLS record carries at most 16 KiB of plaintext.
            #expect(received.records >= payload.count / (16 * 1024))
        }
    }

    @Test(arguments: versions)
    func closeNotifyIsReadAsClosed(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        // Data sent before close_notify is still delivered, then the close.
        try Array("last words".utf8).withUnsafeBytes { try pair.client.write($0) }
        pair.client.shutdown()
        pair.server.receive(pair.client.takeOutbound())
        let received = try drain(pair.server)
        #expect(received.bytes == Array("last words".utf8))
        #expect(received.closed)
        // The server answers with its own close_notify.
        pair.server.shutdown()
        pair.client.receive(pair.server.takeOutbound())
        #expect(try pair.client.read { _ in } == .closed)
    }

    // MARK: ALPN

    @Test(arguments: versions)
    func alpnServerPicksFromTheClientsList(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.applicationProtocols = ["http/1.1", "h2"] }
        let client = try fixture.client { $0.applicationProtocols = ["h2", "http/1.1"] }
        let pair = try EnginePair(client: client, server: server)
        #expect(pair.handshake().bothComplete)
        // Both offered, the server's preference wins.
        #expect(pair.server.alpnProtocol == "http/1.1")
        #expect(pair.client.alpnProtocol == "http/1.1")

        let onlyH2 = try EnginePair(client: try fixture.client { $0.applicationProtocols = ["h2"] }, server: server)
        #expect(onlyH2.handshake().bothComplete)
        #expect(onlyH2.client.alpnProtocol == "h2")
        #expect(onlyH2.server.alpnProtocol == "h2")
    }

    @Test(arguments: versions)
    func alpnWithoutOverlapNegotiatesNoProtocol(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.applicationProtocols = ["h2"] }
        let noOverlap = try EnginePair(client: try fixture.client { $0.applicationProtocols = ["spdy/3", "imap"] }, server: server)
        // GnuTLS without GNUTLS_ALPN_MANDATORY: the handshake goes on with no protocol.
        let outcome = noOverlap.handshake()
        #expect(outcome.bothComplete)
        #expect(noOverlap.client.alpnProtocol == nil)
        #expect(noOverlap.server.alpnProtocol == nil)

        let clientOffersNone = try EnginePair(client: try fixture.client(), server: server)
        #expect(clientOffersNone.handshake().bothComplete)
        #expect(clientOffersNone.server.alpnProtocol == nil)
    }

    // MARK: SNI

    @Test(arguments: versions)
    func serverSeesTheRequestedServerName(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let byName = try EnginePair(client: try fixture.client(), server: server, host: "localhost")
        #expect(byName.handshake().bothComplete)
        #expect(byName.server.requestedServerName == "localhost")
        // SNI carries host names only: none is sent for an IP literal (RFC 6066 §3).
        let byIP = try EnginePair(client: try fixture.client(), server: server, host: "127.0.0.1")
        #expect(byIP.handshake().bothComplete)
        #expect(byIP.server.requestedServerName == nil)
    }

    @Test(arguments: versions, ["alpha.example.com", "beta.example.com"])
    func serverPresentsTheIdentityMatchingSNI(version: TLSVersion, name: String) throws {
        let pki = try TestPKI()
        let alpha = try TestPKI.issue(by: pki.issuing, subject: "CN=alpha.example.com", names: [.dnsName("alpha.example.com")], profile: .tlsServer)
        let beta = try TestPKI.issue(by: pki.issuing, subject: "CN=beta.example.com", names: [.dnsName("beta.example.com")], profile: .tlsServer)
        let fixture = try EngineFixture(version, pki: pki)
        let server = try fixture.server { $0.identities = [alpha, beta] }
        let pair = try EnginePair(client: try fixture.client(), server: server, host: name)
        let outcome = pair.handshake()
        #expect(outcome.bothComplete, "client: \(String(describing: outcome.clientFailure)) server: \(String(describing: outcome.serverFailure))")
        #expect(pair.server.requestedServerName == name)
        let expected = name.hasPrefix("alpha") ? alpha : beta
        let other = name.hasPrefix("alpha") ? beta : alpha
        #expect(pair.client.peerCertificates.first == expected.leaf.derEncoded)
        #expect(pair.client.peerCertificates.first != other.leaf.derEncoded)
    }

    // MARK: Resumption

    /// Full handshake, then (TLS 1.3) application data so the client processes the ticket
    /// that follows the server's Finished. Returns the client's resumption data.
    private func fullHandshakeKeepingSession(_ pair: EnginePair, version: TLSVersion) throws -> [UInt8]? {
        #expect(pair.handshake().bothComplete)
        #expect(!pair.client.isResumed)
        #expect(!pair.server.isResumed)
        // GnuTLS verified the server's chain in this full handshake: the Swift verifier
        // relies on its signature checks.
        #expect(pair.client.peerChainVerifiedInHandshake)
        let reply = try transfer(Array("ticket carrier".utf8), from: pair.server, to: pair.client)
        #expect(reply.bytes == Array("ticket carrier".utf8))
        return pair.client.resumptionData
    }

    @Test(arguments: versions)
    func ticketResumesTheSession(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server()
        let client = try fixture.client()
        let first = try EnginePair(client: client, server: server)
        let data = try #require(try fullHandshakeKeepingSession(first, version: version))
        #expect(!data.isEmpty)
        #expect(!first.server.peerChainVerifiedInHandshake, "the server asked for no client certificate")
        client.sessionCache.store(data, for: "localhost")

        let second = try EnginePair(client: client, server: server)
        #expect(second.handshake().bothComplete)
        #expect(second.client.isResumed)
        #expect(second.server.isResumed)
        #expect(second.client.protocolVersion == version.description)
        // A resumed session restores the peer's certificates unverified: nothing to rely on.
        #expect(!second.client.peerChainVerifiedInHandshake)
        let ping = Array("resumed".utf8)
        #expect(try transfer(ping, from: second.client, to: second.server).bytes == ping)

        // A server with another ticket key cannot decrypt the ticket: a full handshake.
        let stranger = try EnginePair(client: client, server: try fixture.server())
        #expect(stranger.handshake().bothComplete)
        #expect(!stranger.client.isResumed)
        #expect(!stranger.server.isResumed)
    }

    @Test(arguments: versions)
    func resumedMutualTLSSessionStillNamesTheClient(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.clientCertificates = .required }
        let client = try fixture.client(identity: fixture.pki.clientIdentity)
        let first = try EnginePair(client: client, server: server)
        let data = try #require(try fullHandshakeKeepingSession(first, version: version))
        #expect(first.server.peerCertificates.first == fixture.pki.clientIdentity.leaf.derEncoded)
        client.sessionCache.store(data, for: "localhost")
        let second = try EnginePair(client: client, server: server)
        #expect(second.handshake().bothComplete)
        #expect(second.server.isResumed)
        #expect(first.server.peerChainVerifiedInHandshake)
        #expect(!second.server.peerChainVerifiedInHandshake)
        // GnuTLS keeps the authentication info in the ticket: the server still knows who
        // the client is without a new Certificate message.
        #expect(second.server.peerCertificates.first == fixture.pki.clientIdentity.leaf.derEncoded)
    }

    @Test func resumptionDataIsWithheldUntilTheTLS13TicketArrives() throws {
        let fixture = try EngineFixture(.tls13)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        // The NewSessionTicket sits unread in the client's queue until it reads.
        #expect(pair.client.resumptionData == nil)
        _ = try drain(pair.client)
        #expect(pair.client.resumptionData != nil)
    }

    // MARK: Client certificates

    @Test(arguments: versions)
    func clientCertificateNotRequested(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(identity: fixture.pki.clientIdentity), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        #expect(pair.server.peerCertificates.isEmpty)
    }

    @Test(arguments: versions)
    func clientCertificateOptional(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.clientCertificates = .optional }
        let anonymous = try EnginePair(client: try fixture.client(), server: server)
        #expect(anonymous.handshake().bothComplete)
        #expect(anonymous.server.peerCertificates.isEmpty)

        let named = try EnginePair(client: try fixture.client(identity: fixture.pki.clientIdentity), server: server)
        #expect(named.handshake().bothComplete)
        #expect(named.server.peerCertificates.first == fixture.pki.clientIdentity.leaf.derEncoded)
        // An optional client certificate is not verified by GnuTLS in the handshake.
        #expect(!named.server.peerChainVerifiedInHandshake)
    }

    @Test(arguments: versions)
    func clientCertificateRequired(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let server = try fixture.server { $0.clientCertificates = .required }
        let named = try EnginePair(client: try fixture.client(identity: fixture.pki.clientIdentity), server: server)
        #expect(named.handshake().bothComplete)
        #expect(named.server.peerCertificates.first == fixture.pki.clientIdentity.leaf.derEncoded)

        let anonymous = try EnginePair(client: try fixture.client(), server: server)
        let outcome = anonymous.handshake()
        #expect(!outcome.serverComplete)
        #expect(outcome.serverFailure?.kind == .peerCertificateRequired, "\(String(describing: outcome.serverFailure))")
        // The client learns it from the server's alert (certificate_required in TLS 1.3,
        // handshake_failure after a certificate request in TLS 1.2): during its handshake in
        // TLS 1.2; in TLS 1.3 its handshake is already complete and the alert comes with the
        // next read.
        var clientFailure = outcome.clientFailure
        if clientFailure == nil {
            do { _ = try drain(anonymous.client) } catch { clientFailure = error }
        }
        #expect(clientFailure?.kind == .peerCertificateRequired, "\(String(describing: clientFailure))")
    }

    @Test func engineThatFailsToConfigureIsReleasedCleanly() throws {
        // gnutls_alpn_set_protocols refuses an over-long protocol name, so building the
        // engine fails after gnutls_init: the session must be freed exactly once (a second
        // gnutls_deinit was a double free).
        let fixture = try EngineFixture(.tls13)
        let client = try fixture.client { $0.applicationProtocols = [String(repeating: "x", count: 300)] }
        for _ in 0..<50 {
            #expect(throws: (any Error).self) { _ = try client.makeEngine(host: "localhost") }
        }
    }

    @Test(arguments: versions)
    func clientCertificateFromAnotherAuthorityIsRefused(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let stranger = try TestPKI()
        let server = try fixture.server { $0.clientCertificates = .required }
        let pair = try EnginePair(client: try fixture.client(identity: stranger.clientIdentity), server: server)
        let outcome = pair.handshake()
        #expect(!outcome.serverComplete)
        guard case .certificateVerification(let status, _) = outcome.serverFailure?.kind else {
            Issue.record("expected a certificate verification failure, got \(String(describing: outcome.serverFailure))")
            return
        }
        #expect(status != 0)
    }

    // MARK: Verification in the handshake

    @Test(arguments: versions)
    func untrustedServerFailsTheClientHandshake(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let otherRoot = try TestPKI()
        let pair = try EnginePair(client: try fixture.client(trust: otherRoot.trust), server: try fixture.server())
        let outcome = pair.handshake()
        #expect(!outcome.clientComplete)
        guard case .certificateVerification(let status, let text) = outcome.clientFailure?.kind else {
            Issue.record("expected a certificate verification failure, got \(String(describing: outcome.clientFailure))")
            return
        }
        #expect(status != 0)
        #expect(!text.isEmpty)
        // The client told the server why.
        guard case .alertReceived = outcome.serverFailure?.kind else {
            Issue.record("expected the server to receive an alert, got \(String(describing: outcome.serverFailure))")
            return
        }
    }

    @Test(arguments: versions)
    func wrongHostFailsTheClientHandshake(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server(), host: "db.example.com")
        let outcome = pair.handshake()
        #expect(!outcome.clientComplete)
        guard case .certificateVerification(let status, _) = outcome.clientFailure?.kind else {
            Issue.record("expected a certificate verification failure, got \(String(describing: outcome.clientFailure))")
            return
        }
        #expect(status != 0)
    }

    // MARK: Robustness

    @Test func garbageFailsTheServerWithAProtocolErrorAndAnAlert() throws {
        let fixture = try EngineFixture(.tls13)
        let server = try fixture.server()
        let inputs: [[UInt8]] = [
            Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8),
            // A handshake record header announcing a ServerHello to a server.
            [0x16, 0x03, 0x03, 0x00, 0x06, 0x02, 0x00, 0x00, 0x02, 0x03, 0x03],
            // An alert record that is too short to be an alert, then more.
            [0x15, 0x03, 0x03, 0x00, 0x01, 0x02] + randomBytes(64),
            // Application data before any handshake.
            [0x17, 0x03, 0x03, 0x00, 0x10] + randomBytes(16),
        ]
        for input in inputs {
            let engine = try server.makeEngine(host: nil)
            engine.receive(input)
            do {
                let status = try engine.handshake()
                Issue.record("garbage \(input.prefix(8)) was accepted: \(status)")
            } catch {
                #expect(error.kind == .protocolError, "\(error)")
            }
        }
        // The first input: the server answers with an alert record (content type 21).
        let engine = try server.makeEngine(host: nil)
        engine.receive(inputs[0])
        #expect(throws: CoreTLSFailure.self) { try engine.handshake() }
        #expect(engine.takeOutbound().first == 0x15)
    }

    @Test func randomAndMutatedInputNeverCrashesTheServer() throws {
        let fixture = try EngineFixture(.tls13)
        let server = try fixture.server()
        let clientContext = try fixture.client()
        var failures = 0
        for round in 0..<300 {
            let engine = try server.makeEngine(host: nil)
            var input: [UInt8]
            if round % 2 == 0 {
                input = randomBytes(Int.random(in: 1...4096))
            } else {
                // A real ClientHello with a few bytes flipped.
                let client = try clientContext.makeEngine(host: "localhost")
                _ = try client.handshake()
                input = client.takeOutbound()
                for _ in 0..<Int.random(in: 1...8) {
                    input[Int.random(in: 0..<input.count)] ^= UInt8.random(in: 1...255)
                }
            }
            engine.receive(input)
            if round % 3 == 0 { engine.receiveEndOfInput() }
            do {
                // Whatever the bytes, every call returns: wantInput or a failure.
                for _ in 0..<3 { _ = try engine.handshake() }
                _ = engine.takeOutbound()
            } catch {
                failures += 1
                // Calling a failed engine again is harmless.
                _ = try? engine.handshake()
                _ = try? engine.read { _ in }
            }
        }
        // Random bytes almost never form a valid ClientHello.
        #expect(failures > 100)
    }

    @Test(arguments: versions)
    func engineNeverBlocksWhenStarved(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        // Nothing to read: every call returns at once asking for input.
        #expect(try pair.server.handshake() == .wantInput)
        #expect(try pair.server.handshake() == .wantInput)
        #expect(try pair.client.handshake() == .wantInput)
        #expect(try pair.client.handshake() == .wantInput)
        #expect(pair.client.hasOutbound)

        // The whole handshake fed one byte at a time: each call returns.
        var clientDone = false
        var serverDone = false
        var calls = 0
        while !(clientDone && serverDone) && calls < 100_000 {
            let toServer = pair.client.takeOutbound()
            for byte in toServer {
                pair.server.receive([byte])
                if !serverDone { serverDone = try pair.server.handshake() == .complete }
                calls += 1
            }
            let toClient = pair.server.takeOutbound()
            for byte in toClient {
                pair.client.receive([byte])
                if !clientDone { clientDone = try pair.client.handshake() == .complete }
                calls += 1
            }
            if !clientDone { clientDone = try pair.client.handshake() == .complete }
            if toServer.isEmpty && toClient.isEmpty && !(clientDone && serverDone) {
                Issue.record("handshake stalled")
                break
            }
        }
        #expect(clientDone && serverDone)
        _ = try drain(pair.client)
        _ = try drain(pair.server)

        // After the handshake: no data means wantInput, a partial record too.
        #expect(try pair.server.read { _ in } == .wantInput)
        try Array("split record".utf8).withUnsafeBytes { try pair.client.write($0) }
        let record = pair.client.takeOutbound()
        pair.server.receive(Array(record.prefix(3)))
        #expect(try pair.server.read { _ in } == .wantInput)
        pair.server.receive(Array(record.dropFirst(3).dropLast()))
        #expect(try pair.server.read { _ in } == .wantInput)
        pair.server.receive([record.last!])
        #expect(try drain(pair.server).bytes == Array("split record".utf8))
    }
}
