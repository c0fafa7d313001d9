import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

/// Connections that must fail, and exactly how: verification failures with the verifier's
/// reasons and chain positions, missing or foreign client certificates, peers that stall,
/// send garbage or hang up mid-handshake, and clients that ask to renegotiate. Every peer
/// is on 127.0.0.1, every wait is bounded, and the process keeps serving afterwards.
@Suite(.serialized) struct TLSNegativeTests {
    // MARK: The server's certificate is refused

    @Test(arguments: tlsVersions)
    func wrongHost(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        var configuration = pki.clientConfiguration(version)
        configuration.serverName = "db.example.com"
        let error = try await refusedConnection(port: server.port, configuration: configuration)
        #expect(error.code == .verificationFailed, "\(error)")
        let problems = try #require(error.verification?.problems, "\(error)")
        #expect(problems.map(\.reason) == [.nameMismatch], "\(problems)")
        #expect(problems.first?.position == 0)
        #expect(problems.first?.expectedName == .dnsName("db.example.com"))
        #expect(problems.first?.presentedNames == [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)])
        // The server hears why (a bad_certificate alert) and keeps serving.
        let failure = try #require(try await server.waitForFailures(1).first)
        #expect(failure.code == .peerAlert, "\(server.summary)")
        #expect(failure.alert == "Certificate is bad", "\(server.summary)")
        try await expectStillServing(server, pki: pki, version: version)
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func expiredServerCertificate(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        // The authority refuses a validity in the past; `openssl ca` signs one with the issuing CA's key.
        let now = Date()
        let expired = try await opensslIssuedLeaf(pki, subject: "/O=Example TLS/CN=localhost",
                                            notBefore: now.addingTimeInterval(-3 * 86_400), notAfter: now.addingTimeInterval(-86_400))
        var serverConfiguration = TLSConfiguration.makeServerConfiguration(identity: expired)
        serverConfiguration.minimumVersion = version
        serverConfiguration.maximumVersion = version
        let server = try await RunningServer.start(serverConfiguration)
        let error = try await refusedConnection(port: server.port, configuration: pki.clientConfiguration(version))
        #expect(error.code == .verificationFailed, "\(error)")
        let problems = try #require(error.verification?.problems, "\(error)")
        #expect(problems.map(\.reason) == [.expired], "\(problems)")
        #expect(problems.first?.position == 0)
        #expect(problems.first?.subject == expired.leaf.subject)
        #expect(problems.first?.notValidAfter == expired.leaf.notValidAfter)
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func untrustedServerCA(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let stranger = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger Root,O=Elsewhere"))
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        var configuration = pki.clientConfiguration(version)
        configuration.trustStore = TrustStore(certificates: [stranger.certificate])
        let error = try await refusedConnection(port: server.port, configuration: configuration)
        expectUntrustedIssuer(error, topOfChain: pki.issuing.certificate)
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func revokedServerCertificate(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let revocation = try pki.issuing.revoke(pki.server.leaf, reason: .keyCompromise)
        let crl = try pki.issuing.makeCRL()
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        var configuration = pki.clientConfiguration(version)
        configuration.trustStore = TrustStore(certificates: [pki.root.certificate], crls: [crl])
        let error = try await refusedConnection(port: server.port, configuration: configuration)
        #expect(error.code == .verificationFailed, "\(error)")
        let problems = try #require(error.verification?.problems, "\(error)")
        #expect(problems.map(\.reason) == [.revoked], "\(problems)")
        #expect(problems.first?.position == 0)
        #expect(problems.first?.subject == pki.server.leaf.subject)
        #expect(problems.first?.revocationReason == .keyCompromise)
        #expect(problems.first?.revocationDate.map { abs($0.timeIntervalSince(revocation.date)) < 1 } == true)
        // The server only lost that one connection: a client without the CRL still gets through.
        try await expectStillServing(server, pki: pki, version: version)
        await server.stop()
    }

    /// A CRL too large for GnuTLS's trust list (its importer is quadratic) is left to the
    /// Swift verifier, which still refuses the revoked server in the handshake, typed.
    @Test func revokedServerCertificateInALargeCRL() async throws {
        let version = tlsVersions[0]
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 60)
        var entries: [CertificateRevocationList.Entry] = []
        for index in 0..<(TLSContext.gnutlsCRLEntryLimit + 500) {
            let serial: [UInt8] = [0x30] + withUnsafeBytes(of: UInt32(index).bigEndian, Array.init)
            entries.append(CertificateRevocationList.Entry(serialNumber: SerialNumber(bytes: serial), revocationDate: now))
        }
        entries.append(.init(serialNumber: pki.server.chain[0].serialNumber, revocationDate: now, reason: .keyCompromise))
        let crl = try CertificateRevocationList.create(issuer: pki.issuing.certificate, key: pki.issuing.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: now.addingTimeInterval(3_600), entries: entries)
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        var configuration = pki.clientConfiguration(version)
        configuration.trustStore = TrustStore(certificates: [pki.root.certificate], crls: [crl])
        let error = try await refusedConnection(port: server.port, configuration: configuration)
        #expect(error.code == .verificationFailed, "\(error)")
        let problems = try #require(error.verification?.problems, "\(error)")
        #expect(problems.map(\.reason) == [.revoked], "\(problems)")
        #expect(problems.first?.revocationReason == .keyCompromise)
        try await expectStillServing(server, pki: pki, version: version)
        await server.stop()
    }

    // MARK: Client certificates

    @Test(arguments: tlsVersions)
    func clientWithoutCertificateOnMutualTLSServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: true))
        let error = try await refusedConnection(port: server.port, configuration: pki.clientConfiguration(version, mutual: false))
        let failure = try #require(try await server.waitForFailures(1).first)
        #expect(failure.code == .peerCertificateRequired, "\(server.summary)")
        #expect(server.connections.values.isEmpty, "\(server.summary)")
        // The client learns that the server requires a certificate: from the certificate_required
        // alert in TLS 1.3 (RFC 8446 §4.4.2.4), from the request it could not answer in TLS 1.2.
        #expect(error.code == .peerCertificateRequired, "\(error)")
        try await expectStillServing(server, pki: pki, version: version, mutual: true)
        await server.stop()
    }

    /// Our client presents a certificate from another CA: the server's verification names the
    /// untrusted issuer and refuses with an alert.
    @Test(arguments: tlsVersions)
    func ourClientWithCertificateFromAnotherCA(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let other = try TLSTestPKI(name: "Other")
        defer { other.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: true))
        var configuration = pki.clientConfiguration(version)
        configuration.identities = [other.client]
        let error = try await refusedConnection(port: server.port, configuration: configuration)
        #expect(error.code == .peerAlert, "\(error)")
        #expect(error.alert == "Certificate is bad", "\(error)")
        let failure = try #require(try await server.waitForFailures(1).first)
        expectUntrustedIssuer(failure, topOfChain: other.issuing.certificate)
        #expect(server.connections.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    /// `openssl s_client` presents a certificate from another CA: our server's verification
    /// names the untrusted issuer, and s_client hears a bad_certificate alert.
    @Test(arguments: tlsVersions)
    func opensslClientWithCertificateFromAnotherCA(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let other = try TLSTestPKI(name: "Other")
        defer { other.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: true))
        let peer = try await PeerProcess(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", version.opensslFlag,
                                    "-CAfile", pki.path("root.pem"), "-verify_return_error",
                                    "-cert", other.path("client.pem"), "-cert_chain", other.path("issuing.pem"),
                                    "-key", other.path("client.key.pem")], in: pki.directory)
        defer { peer.stop() }
        let failure = try #require(try await server.waitForFailures(1).first)
        peer.send("anyone there?\n")
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        expectUntrustedIssuer(failure, topOfChain: other.issuing.certificate)
        #expect(server.connections.values.isEmpty, "\(server.summary)")
        // s_client is told by an alert.
        #expect(peer.output.contains("alert bad certificate"), "\(peer.transcript)")
        #expect(!peer.standardOutput.contains("anyone there?"), "\(peer.transcript)")
        await server.stop()
    }

    // MARK: Peers that misbehave at the TCP level

    @Test(arguments: tlsVersions)
    func serverThatStalls(version: TLSVersion) async throws {
        let peer = try await RawPeer.listen(.silent)
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore())
        configuration.minimumVersion = version
        configuration.maximumVersion = version
        configuration.handshakeTimeout = .seconds(1)
        let started = ContinuousClock.now
        let error = try await refusedConnection(port: peer.port, configuration: configuration)
        let elapsed = ContinuousClock.now - started
        #expect(error.code == .handshakeTimeout, "\(error)")
        // The configured second, not the 10-second default: the error names it. A timeout
        // never fires early, so at least that second passed; no upper bound, which only a
        // busy machine would test.
        #expect(error.message.contains("within 1.0 seconds"), "\(error)")
        #expect(elapsed >= .milliseconds(900), "\(elapsed)")
        #expect(peer.receivedBytes > 0, "the client sent its ClientHello")
        try await peer.close()
    }

    @Test(arguments: tlsVersions)
    func serverThatSendsGarbage(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let peer = try await RawPeer.listen(.garbage)
        let error = try await refusedConnection(port: peer.port, configuration: pki.clientConfiguration(version))
        #expect(error.code == .protocolError, "\(error)")
        #expect(error.gnutlsName != nil, "\(error)")
        try await peer.close()
        // The process is healthy: a real server right after works.
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        try await expectStillServing(server, pki: pki, version: version)
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func serverThatHangsUpMidHandshake(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let peer = try await RawPeer.listen(.hangUpAfterFirstRead)
        let error = try await refusedConnection(port: peer.port, configuration: pki.clientConfiguration(version))
        #expect(error.code == .peerClosedDuringHandshake, "\(error)")
        try await peer.close()
    }

    /// Clients that stall, send garbage or hang up mid-handshake cost our server one
    /// connection each, with the precise error, and it keeps serving.
    @Test(arguments: tlsVersions)
    func misbehavingClientsAgainstOurServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        var configuration = pki.serverConfiguration(version)
        configuration.handshakeTimeout = .seconds(1)
        let server = try await RunningServer.start(configuration)

        // Garbage (random bytes; the first is neither a TLS content type nor, with its high
        // bit clear, the length of an SSLv2-format ClientHello a server would wait for) on a
        // connection left open.
        var garbage = (0..<512).map { _ in UInt8.random(in: 0...255) }
        garbage[0] = UInt8.random(in: 0x30...0x7F)
        let garbageChannel = try await RawPeer.connect(port: server.port, sending: garbage)
        var failures = try await server.waitForFailures(1)
        #expect(failures.last?.code == .protocolError, "\(server.summary)")
        try? await garbageChannel.close()

        // The start of a ClientHello record (header says 512 bytes, 100 sent), then hang up.
        let partial: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + (0..<89).map { _ in UInt8.random(in: 0...255) }
        let hangUp = try await RawPeer.connect(port: server.port, sending: partial)
        try await hangUp.close()
        failures = try await server.waitForFailures(2)
        #expect(failures.last?.code == .peerClosedDuringHandshake, "\(server.summary)")

        // Connect and say nothing: the server's handshake timeout (1 s) ends it.
        let silent = try await RawPeer.connect(port: server.port, sending: [])
        failures = try await server.waitForFailures(3, timeout: 30)
        #expect(failures.last?.code == .handshakeTimeout, "\(server.summary)")
        try? await silent.close()

        #expect(server.otherErrors.values.isEmpty, "\(server.summary)")
        try await expectStillServing(server, pki: pki, version: version)
        await server.stop()
    }

    // MARK: Renegotiation

    /// `openssl s_client` asks for a renegotiation (`R` on its standard input) in TLS 1.2:
    /// our server refuses with a no_renegotiation warning, no second handshake takes place.
    /// Under AddressSanitizer (`swift test --sanitize=address`) this and the gnutls-cli test
    /// below also catch the refused ClientHello's record buffer (16.8 KB) that GnuTLS 3.7.9
    /// leaked when the engine dropped it through `gnutls_record_recv_packet`.
    @Test func opensslClientAsksToRenegotiate() async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(.tls12), behaviour: .echo)
        let peer = try await PeerProcess(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2", "-msg",
                                    "-CAfile", pki.path("root.pem"), "-verify_return_error"], in: pki.directory)
        defer { peer.stop() }
        try await peer.waitForOutput("Verify return code")
        #expect(peer.output.contains("Secure Renegotiation IS supported"), "\(peer.transcript)")
        peer.send("before\n")
        try await peer.waitForOutput("before\n")
        peer.send("R\n")
        try await peer.waitForOutput("RENEGOTIATING")
        // OpenSSL treats the refusal as fatal while it renegotiates (handshake_failure) and exits.
        try await peer.waitForOutput("no renegotiation")
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        let output = peer.output
        #expect(output.contains("<<< TLS 1.2, Alert [length 0002], warning no_renegotiation"), "\(peer.transcript)")
        // One ServerHello, one Finished each way: the only handshake is the first.
        #expect(output.components(separatedBy: "], ServerHello\n").count - 1 == 1, "\(peer.transcript)")
        #expect(output.components(separatedBy: "], Finished\n").count - 1 == 2, "\(peer.transcript)")
        #expect(output.components(separatedBy: "], ClientHello\n").count - 1 == 2, "\(peer.transcript)")
        // Our side: one connection, which ends with the client's fatal alert.
        #expect(server.connections.values.count == 1, "\(server.summary)")
        #expect(server.connections.values.first?.isResumed == false)
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        let ended = try await server.connectionErrors.waitForCount(1, "the connection's end")[0]
        #expect(ended.code == .peerAlert, "\(server.summary)")
        #expect(ended.alert == "Handshake failed", "\(server.summary)")
        await server.stop()
    }

    /// `gnutls-cli --rehandshake` against our server (TLS 1.2): every ClientHello it sends
    /// on the established connection is refused with a no_renegotiation warning (gnutls-cli
    /// treats the warning as non-fatal and asks again, several times), until it gives up
    /// with a fatal internal_error alert. No renegotiation ever completes.
    @Test func gnutlsCliAsksToRenegotiate() async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(.tls12), behaviour: .echo)
        let peer = try await PeerProcess(["gnutls-cli", "--rehandshake", "-p", "\(server.port)", "--x509cafile", pki.path("root.pem"),
                                    "--priority", TLSVersion.tls12.gnutlsPriority, "127.0.0.1"], in: pki.directory, package: "gnutls-bin")
        defer { peer.stop() }
        try await peer.waitForOutput("ReHandshake has failed")
        let output = peer.output
        #expect(output.contains("- Handshake was completed"), "\(peer.transcript)")
        #expect(output.contains("*** Received alert [100]: No renegotiation is allowed"), "\(peer.transcript)")
        #expect(!output.contains("ReHandshake was completed"), "\(peer.transcript)")
        // Our side: one connection, never renegotiated, ended by the client giving up.
        let ended = try await server.connectionErrors.waitForCount(1, "the connection's end")[0]
        #expect(ended.code == .peerAlert, "\(server.summary)")
        #expect(ended.alert == "Internal error", "\(server.summary)")
        #expect(server.connections.values.count == 1, "\(server.summary)")
        #expect(server.connections.values.first?.isResumed == false)
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        #expect(server.otherErrors.values.isEmpty, "\(server.summary)")
        await server.stop()
    }
}

// MARK: Helpers

/// Connects with `configuration` and exchanges a line; returns the TLSError it failed with,
/// during the handshake or (TLS 1.3, where the server's verdict on our certificate arrives
/// after our handshake completes) on the first read. A write that fails because the server
/// already closed is not the reason: the reason is read from the inbound stream. A
/// connection that works is an error.
func refusedConnection(port: Int, configuration: TLSConfiguration, timeout: Double = 120) async throws -> TLSError {
    let context = try TLSContext(configuration: configuration)
    return try await withDeadline(timeout, "a refused connection to 127.0.0.1:\(port)") {
        let channel: SecureChannel
        do {
            channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        } catch let error as TLSError {
            return error
        }
        let outcome: Result<String, TLSError> = try await channel.executeThenClose { inbound, outbound in
            var writeError: (any Error)?
            do {
                try await outbound.write(ByteBuffer(string: "hello\n"))
            } catch {
                writeError = error
            }
            var received = ""
            do {
                for try await chunk in inbound {
                    received += String(buffer: chunk)
                    if received.contains("\n") { break }
                }
            } catch let error as TLSError {
                return .failure(error)
            }
            if let writeError { throw PeerError("the write failed with \(writeError) and the read ended without a TLS error") }
            return .success(received)
        }
        switch outcome {
        case .failure(let error): return error
        case .success(let reply):
            throw PeerError("the connection should have failed, but it worked: \(channel.info), reply '\(reply)'")
        }
    }
}

/// A verification failure with exactly one problem: the top of the chain the peer sent
/// (`topOfChain`, its issuing CA at position 1) leads to no trusted anchor.
func expectUntrustedIssuer(_ error: TLSError, topOfChain: Certificate, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(error.code == .verificationFailed, "\(error)", sourceLocation: sourceLocation)
    let problems = error.verification?.problems ?? []
    #expect(problems.map(\.reason) == [.untrustedIssuer], "\(error)", sourceLocation: sourceLocation)
    #expect(problems.first?.position == 1, "\(error)", sourceLocation: sourceLocation)
    #expect(problems.first?.subject == topOfChain.subject, "\(error)", sourceLocation: sourceLocation)
}

/// A good client still gets through: the server kept serving after a failure.
func expectStillServing(_ server: RunningServer, pki: TLSTestPKI, version: TLSVersion, mutual: Bool = false) async throws {
    let before = server.connections.values.count
    let context = try TLSContext(configuration: pki.clientConfiguration(version, mutual: mutual))
    let (info, reply) = try await exchange(port: server.port, context: context, message: "still there?\n")
    #expect(reply == "still there?\n", "\(server.summary)")
    #expect(info.protocolVersion == version.description)
    try await server.waitForConnections(before + 1)
}

/// Writes an X.509 leaf for localhost/127.0.0.1 signed by the PKI's issuing CA with `openssl ca`
/// and explicit dates (the library's authority refuses validity in the past).
func opensslIssuedLeaf(_ pki: TLSTestPKI, subject: String, notBefore: Date, notAfter: Date) async throws -> TLSIdentity {
    let directory = pki.directory
    let key = try KeyPair.generate(.ecdsaP256)
    let keyPath = try directory.write(try key.pemEncoded(), to: "openssl-leaf.key.pem")
    let request = directory.file("openssl-leaf.csr")
    try await Tool.runChecked(["openssl", "req", "-new", "-key", keyPath, "-subj", subject, "-out", request])
    let base = directory.file("openssl-ca")
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    try directory.write("", to: "openssl-ca/index.txt")
    try directory.write(String(OpenSSLIssuer.randomSerial().dropFirst(2)) + "\n", to: "openssl-ca/serial")
    let config = try directory.write("""
        [ca]
        default_ca = CA_default
        [CA_default]
        dir = \(base)
        database = $dir/index.txt
        serial = $dir/serial
        new_certs_dir = $dir
        default_md = sha256
        policy = policy_any
        unique_subject = no
        preserve = yes
        [policy_any]
        organizationName = optional
        commonName = supplied
        [ext]
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:localhost, IP:127.0.0.1
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid:always

        """, to: "openssl-ca.cnf")
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMddHHmmss'Z'"
    let leafPath = directory.file("openssl-leaf.pem")
    try await Tool.runChecked(["openssl", "ca", "-batch", "-config", config, "-notext", "-in", request,
                         "-cert", pki.path("issuing.pem"), "-keyfile", pki.path("issuing.key.pem"),
                         "-startdate", formatter.string(from: notBefore), "-enddate", formatter.string(from: notAfter),
                         "-extensions", "ext", "-out", leafPath])
    let leaf = try Certificate.load(contentsOfFile: leafPath)
    return try TLSIdentity(chain: leaf + [pki.issuing.certificate], key: key)
}

/// Plain TCP peers on 127.0.0.1 that are not TLS: a server that stays silent, sends random
/// bytes, or hangs up once the ClientHello arrives; and a client that sends given bytes.
enum RawPeer {
    enum Mode: Sendable {
        case silent
        case garbage
        case hangUpAfterFirstRead
    }

    final class Listener: Sendable {
        let channel: any Channel
        private let received: Recorded<Int>
        init(channel: any Channel, received: Recorded<Int>) {
            self.channel = channel
            self.received = received
        }
        var port: Int { channel.localAddress?.port ?? 0 }
        var receivedBytes: Int { received.values.reduce(0, +) }
        func close() async throws { try await channel.close() }
    }

    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let mode: Mode
        let received: Recorded<Int>
        init(mode: Mode, received: Recorded<Int>) {
            self.mode = mode
            self.received = received
        }

        func channelActive(context: ChannelHandlerContext) {
            if mode == .garbage {
                // Random bytes whose first is no TLS content type (20–24) and has its high bit
                // clear (no SSLv2-format header), so no reader waits for a record that never
                // ends; the connection stays open.
                var bytes = (0..<1024).map { _ in UInt8.random(in: 0...255) }
                bytes[0] = UInt8.random(in: 0x30...0x7F)
                context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(unwrapInboundIn(data).readableBytes)
            if mode == .hangUpAfterFirstRead { context.close(promise: nil) }
        }
    }

    static func listen(_ mode: Mode) async throws -> Listener {
        let received = Recorded<Int>()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(mode: mode, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return Listener(channel: channel, received: received)
    }

    /// A TCP connection to our server that sends `bytes` (and nothing else).
    static func connect(port: Int, sending bytes: [UInt8]) async throws -> any Channel {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .connect(host: "127.0.0.1", port: port).get()
        if !bytes.isEmpty {
            try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
        }
        return channel
    }
}
