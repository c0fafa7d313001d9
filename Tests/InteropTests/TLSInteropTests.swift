import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

/// Our TLS client and server against independent implementations on 127.0.0.1: OpenSSL
/// (`s_server`, `s_client`), GnuTLS's own tools (`gnutls-serv`, `gnutls-cli`), curl and
/// Python's `ssl`, in TLS 1.2 and 1.3, with and without client certificates; resumption
/// seen by both sides; and sslyze's Mozilla "intermediate" profile check of our server.
@Suite(.serialized) struct TLSInteropTests {
    // MARK: Our client against their servers

    @Test(arguments: tlsVersions, [false, true])
    func ourClientAgainstOpenSSLServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        var arguments = ["-cert", pki.path("server.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("server.key.pem"),
                         "-rev", version.opensslFlag]
        if mutual { arguments += ["-Verify", "1", "-CAfile", pki.path("root.pem"), "-verify_return_error"] }
        let (peer, port) = try await startOpenSSLServer(arguments, in: pki.directory)
        defer { peer.stop() }

        let context = try TLSContext(configuration: pki.clientConfiguration(version, mutual: mutual))
        let (info, reply) = try await exchange(port: port, context: context, message: "hello openssl\n")
        #expect(info.protocolVersion == version.description, "\(info)")
        #expect(reply == "lssnepo olleh\n", "\(peer.transcript)")
        #expect(info.peerSubject == pki.server.leaf.subject)
        #expect(info.peerCertificates == pki.server.chain)
        #expect(info.verifiedChain?.certificates == pki.server.chain + [pki.root.certificate])
        #expect(info.isResumed == false)
        if mutual {
            // s_server prints the client certificate it verified.
            let output = try await peer.waitForOutput("Verification: ")
            #expect(output.contains("Peer certificate: O = Example TLS, OU = Interop, CN = client-1"), "\(peer.transcript)")
            #expect(output.contains("Verification: OK"), "\(peer.transcript)")
        }
    }

    @Test(arguments: tlsVersions, [false, true])
    func ourClientAgainstGnuTLSServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        var arguments = ["--echo", "--x509certfile", pki.path("server-chain.pem"), "--x509keyfile", pki.path("server.key.pem"),
                         "--priority", version.gnutlsPriority]
        if mutual { arguments += ["--require-client-cert", "--verify-client-cert", "--x509cafile", pki.path("root.pem")] }
        let (peer, port) = try await startGnuTLSServer(arguments, in: pki.directory)
        defer { peer.stop() }

        let context = try TLSContext(configuration: pki.clientConfiguration(version, mutual: mutual))
        let (info, reply) = try await exchange(port: port, context: context, message: "hello gnutls-serv\n")
        #expect(info.protocolVersion == version.description, "\(info)")
        #expect(reply == "hello gnutls-serv\n", "\(peer.transcript)")
        #expect(info.peerSubject == pki.server.leaf.subject)
        #expect(info.peerCertificates == pki.server.chain)
        #expect(info.verifiedChain?.certificates == pki.server.chain + [pki.root.certificate])
        #expect(info.isResumed == false)
    }

    // MARK: Their clients against our server

    @Test(arguments: tlsVersions, [false, true])
    func opensslClientAgainstOurServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: mutual))
        var arguments = ["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", version.opensslFlag,
                         "-CAfile", pki.path("root.pem"), "-verify_return_error", "-verify_ip", "127.0.0.1"]
        if mutual {
            arguments += ["-cert", pki.path("client.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("client.key.pem")]
        }
        let peer = try await PeerProcess(arguments, in: pki.directory)
        defer { peer.stop() }
        try await peer.waitForOutput("Verify return code")
        peer.send("hello from s_client\n")
        // Our server echoes the line and closes with close_notify: s_client exits.
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        let output = peer.output
        #expect(output.contains("New, \(version.opensslName), Cipher is"), "\(peer.transcript)")
        #expect(output.contains("Verify return code: 0 (ok)"), "\(peer.transcript)")
        #expect(peer.standardOutput.contains("hello from s_client\n"), "\(peer.transcript)")

        let info = try #require(try await server.waitForConnections(1).first)
        #expect(info.protocolVersion == version.description)
        if mutual {
            #expect(info.peerSubject == (try DistinguishedName(TLSTestPKI.clientSubject)))
            #expect(info.peerSubject == pki.client.leaf.subject)
            #expect(info.verifiedChain?.certificates == pki.client.chain + [pki.root.certificate])
        } else {
            #expect(info.peerSubject == nil)
        }
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    @Test(arguments: tlsVersions, [false, true])
    func gnutlsCliAgainstOurServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: mutual))
        var arguments = ["gnutls-cli", "-p", "\(server.port)", "--x509cafile", pki.path("root.pem"), "--priority", version.gnutlsPriority]
        if mutual { arguments += ["--x509certfile", pki.path("client-chain.pem"), "--x509keyfile", pki.path("client.key.pem")] }
        let peer = try await PeerProcess(arguments + ["127.0.0.1"], in: pki.directory, package: "gnutls-bin")
        defer { peer.stop() }
        try await peer.waitForOutput("Handshake was completed")
        peer.send("hello from gnutls-cli\n")
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        let output = peer.output
        #expect(output.contains("- Description: (\(version.description)-X.509)"), "\(peer.transcript)")
        #expect(output.contains("- Status: The certificate is trusted."), "\(peer.transcript)")
        #expect(peer.standardOutput.contains("hello from gnutls-cli\n"), "\(peer.transcript)")

        let info = try #require(try await server.waitForConnections(1).first)
        #expect(info.protocolVersion == version.description)
        #expect(info.peerSubject == (mutual ? pki.client.leaf.subject : nil))
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    @Test(arguments: tlsVersions, [false, true])
    func curlAgainstOurServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: mutual), behaviour: .http)
        var arguments = ["curl", "-sS", "-v", "--max-time", "20", "--cacert", pki.path("root.pem")] + version.curlFlags
        if mutual { arguments += ["--cert", pki.path("client-chain.pem"), "--key", pki.path("client.key.pem")] }
        let result = try await runTool(arguments + ["https://127.0.0.1:\(server.port)/"])
        #expect(result.succeeded, "\(result)")
        #expect(result.standardOutput == "hello", "\(result)")
        #expect(result.standardError.contains("SSL connection using \(version.opensslName)"), "\(result)")
        #expect(result.standardError.contains("SSL certificate verify ok"), "\(result)")

        let info = try #require(try await server.waitForConnections(1).first)
        #expect(info.protocolVersion == version.description)
        #expect(info.peerSubject == (mutual ? pki.client.leaf.subject : nil))
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    static let pythonClient = """
        import socket, ssl, sys
        cafile, port, version, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = getattr(ssl.TLSVersion, version)
        context.maximum_version = getattr(ssl.TLSVersion, version)
        if len(sys.argv) > 6:
            context.load_cert_chain(sys.argv[5], sys.argv[6])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(message.encode())
                data = b""
                while not data.endswith(b"\\n"):
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                print("version=" + tls.version())
                print("reply=" + data.decode().strip())
                print("server=" + subject["commonName"])
        """

    @Test(arguments: tlsVersions, [false, true])
    func pythonSSLAgainstOurServer(version: TLSVersion, mutual: Bool) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version, mutual: mutual))
        let script = try pki.directory.write(Self.pythonClient, to: "client.py")
        var arguments = ["python3", script, pki.path("root.pem"), "\(server.port)", version.pythonName, "hello from python\n"]
        if mutual { arguments += [pki.path("client-chain.pem"), pki.path("client.key.pem")] }
        let result = try await runTool(arguments, package: "python3")
        #expect(result.succeeded, "\(result)")
        #expect(result.standardOutput == "version=\(version.opensslName)\nreply=hello from python\nserver=localhost\n", "\(result)")

        let info = try #require(try await server.waitForConnections(1).first)
        #expect(info.protocolVersion == version.description)
        #expect(info.peerSubject == (mutual ? pki.client.leaf.subject : nil))
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    // MARK: Resumption, seen by both sides

    @Test(arguments: tlsVersions)
    func gnutlsCliResumesWithOurServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        let peer = try await PeerProcess(["gnutls-cli", "--resume", "-p", "\(server.port)", "--x509cafile", pki.path("root.pem"),
                                    "--priority", version.gnutlsPriority, "127.0.0.1"], in: pki.directory, package: "gnutls-bin")
        defer { peer.stop() }
        try await peer.waitForOutput("This is a resumed session")
        try await peer.waitForOutput("Handshake was completed")
        peer.send("hello again\n")
        #expect(try await peer.waitForExit(), "\(peer.transcript)")
        #expect(peer.standardOutput.contains("hello again\n"), "\(peer.transcript)")

        let infos = try await server.waitForConnections(2)
        #expect(infos.count == 2, "\(server.summary)")
        // One full handshake and one resumed; the server's handler tasks may record them in
        // either order, so count rather than index.
        #expect(infos.filter(\.isResumed).count == 1, "\(server.summary)")
        #expect(infos.filter { !$0.isResumed }.count == 1, "\(server.summary)")
        #expect(infos.allSatisfy { $0.protocolVersion == version.description })
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    /// TLS 1.2: `s_client -reconnect` (one full handshake, then five resumed). TLS 1.3:
    /// `-reconnect` reconnects before reading the ticket (it never resumes, against
    /// `s_server` either), so a first run exchanges a line and saves the session with
    /// `-sess_out`, and a second run resumes it with `-sess_in`.
    @Test(arguments: tlsVersions)
    func opensslClientResumesWithOurServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(pki.serverConfiguration(version))
        let base = ["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", version.opensslFlag,
                    "-CAfile", pki.path("root.pem"), "-verify_return_error"]
        let expectedConnections: Int
        if version == .tls12 {
            let result = try await runTool(base + ["-reconnect"])
            #expect(!result.timedOut, "\(result)")
            #expect(result.output.components(separatedBy: "New, TLSv1.2").count - 1 == 1, "\(result)")
            #expect(result.output.components(separatedBy: "Reused, TLSv1.2").count - 1 == 5, "\(result)")
            expectedConnections = 6
        } else {
            let session = pki.path("session.pem")
            for (index, options) in [["-sess_out", session], ["-sess_in", session]].enumerated() {
                let peer = try await PeerProcess(base + options, in: pki.directory)
                defer { peer.stop() }
                try await peer.waitForOutput("Verify return code")
                peer.send("line \(index)\n")
                #expect(try await peer.waitForExit(), "\(peer.transcript)")
                #expect(peer.standardOutput.contains("line \(index)\n"), "\(peer.transcript)")
                #expect(peer.output.contains(index == 0 ? "New, TLSv1.3" : "Reused, TLSv1.3"), "\(peer.transcript)")
            }
            expectedConnections = 2
        }

        let infos = try await server.waitForConnections(expectedConnections)
        #expect(infos.count == expectedConnections, "\(server.summary)")
        // Handler tasks may record connections out of order: count, don't index.
        #expect(infos.filter { !$0.isResumed }.count == 1, "\(server.summary)")
        #expect(infos.filter(\.isResumed).count == expectedConnections - 1, "\(server.summary)")
        #expect(infos.allSatisfy { $0.protocolVersion == version.description })
        #expect(server.failures.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func ourClientResumesWithOpenSSLServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let (peer, port) = try await startOpenSSLServer(
            ["-cert", pki.path("server.pem"), "-cert_chain", pki.path("issuing.pem"), "-key", pki.path("server.key.pem"), "-rev",
             version.opensslFlag], in: pki.directory)
        defer { peer.stop() }
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        // Data is exchanged on the first connection: in TLS 1.3 the ticket comes after the handshake.
        let first = try await exchange(port: port, context: context, message: "first\n")
        #expect(first.info.isResumed == false)
        #expect(first.reply == "tsrif\n")
        let second = try await exchange(port: port, context: context, message: "second\n")
        #expect(second.info.isResumed == true, "\(second.info); \(peer.transcript)")
        #expect(second.reply == "dnoces\n")
        #expect(second.info.protocolVersion == version.description)
        // The resumed session was verified when it was made: its server is the one we trust.
        if version == .tls12 { #expect(second.info.peerSubject == pki.server.leaf.subject) }
    }

    @Test(arguments: tlsVersions)
    func ourClientResumesWithGnuTLSServer(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        defer { pki.directory.remove() }
        let (peer, port) = try await startGnuTLSServer(
            ["--echo", "--x509certfile", pki.path("server-chain.pem"), "--x509keyfile", pki.path("server.key.pem"),
             "--priority", version.gnutlsPriority], in: pki.directory)
        defer { peer.stop() }
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        let first = try await exchange(port: port, context: context, message: "first\n")
        #expect(first.info.isResumed == false)
        #expect(first.reply == "first\n")
        let second = try await exchange(port: port, context: context, message: "second\n")
        #expect(second.info.isResumed == true, "\(second.info); \(peer.transcript)")
        #expect(second.reply == "second\n")
        #expect(second.info.protocolVersion == version.description)
    }

    // MARK: sslyze

    /// sslyze (PyPI) checks our in-process server against Mozilla's "intermediate"
    /// configuration: versions, cipher suites, curves, certificate profile and lifetime, and
    /// the TLS vulnerabilities it scans for (compression, CCS injection, fallback SCSV,
    /// Heartbleed, ROBOT, insecure and client-initiated renegotiation, extended master secret).
    @Test func sslyzeMozillaIntermediate() async throws {
        let pki = try TLSTestPKI(name: "sslyze")
        defer { pki.directory.remove() }
        let server = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: pki.server), behaviour: .http)
        try await expectMozillaIntermediate(port: server.port, pki: pki)
        #expect(server.otherErrors.values.isEmpty, "\(server.summary)")
        await server.stop()
    }

    /// The same check against `tlsctl serve`, as a user deploys it (ECDSA P-256 certificate
    /// for 127.0.0.1, default settings).
    @Test func sslyzeMozillaIntermediateAgainstTlsctlServe() async throws {
        let pki = try TLSTestPKI(name: "sslyze")
        defer { pki.directory.remove() }
        let serve = try await PeerProcess([BuiltProducts.tlsctl, "serve", "--cert", pki.path("server-chain.pem"), "--key", pki.path("server.key.pem"),
                                     "--port", "0"], in: pki.directory, package: "tlsctl (swift build)")
        defer { serve.stop() }
        let text = try await serve.waitForOutput("listening on ")
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("listening on ") }, "\(serve.transcript)")
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0) }, "\(serve.transcript)")
        try await expectMozillaIntermediate(port: port, pki: pki)
        #expect(serve.isRunning, "\(serve.transcript)")
    }

    /// Runs `python3 -m sslyze --mozilla_config intermediate` against 127.0.0.1:`port`
    /// (trusting the PKI's root for the certificate checks) and expects it compliant, with no
    /// client-initiated renegotiation.
    func expectMozillaIntermediate(port: Int, pki: TLSTestPKI) async throws {
        // Probe the module so a missing sslyze fails with an install hint.
        let probe = try await runTool(["python3", "-c", "import sslyze"], package: "python3")
        guard probe.succeeded else {
            throw PeerError("required Python module 'sslyze' was not found: install it (PyPI: python3 -m pip install sslyze); the test cannot run without it\n\(probe)")
        }
        let result = try await runTool(["python3", "-m", "sslyze", "--mozilla_config", "intermediate", "--certinfo_ca_file", pki.path("root.pem"),
                                        "127.0.0.1:\(port)"], timeout: 300, package: "sslyze")
        // Column alignment varies between versions: compare with runs of spaces collapsed.
        let output = result.standardOutput.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        #expect(result.succeeded, "\(result)")
        #expect(output.contains("Checking results against Mozilla's \"intermediate\" configuration"), "\(result)")
        #expect(output.contains("127.0.0.1:\(port): OK - Compliant."), "\(result)")
        // The renegotiation scan: client-initiated renegotiation refused, secure renegotiation supported.
        #expect(output.contains("Client Renegotiation DoS Attack: OK - Not vulnerable"), "\(result)")
        #expect(output.contains("Secure Renegotiation: OK - Supported"), "\(result)")
        #expect(output.contains("TLS_FALLBACK_SCSV: OK - Supported"), "\(result)")
        #expect(output.contains("Verified Chain: localhost --> sslyze TLS Issuing CA --> sslyze TLS Root"), "\(result)")
    }
}
