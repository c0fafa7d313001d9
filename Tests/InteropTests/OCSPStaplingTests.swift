import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import Testing
import TestSupport

@Suite("Interop: OCSP stapling and the client revocation modes", .serialized)
struct OCSPStaplingTests {
    /// A server identity for 127.0.0.1 whose OCSP URL points at `url`, issued by `fixture.ca`.
    static func serverIdentity(_ fixture: OCSPInteropFixture, url: String, mustStaple: Bool = false) throws -> TLSIdentity {
        let key = try KeyPair.generate()
        var options = IssuanceOptions(validityDays: 30, ocspURLs: [url])
        options.mustStaple = mustStaple
        let leaf = try fixture.ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=127.0.0.1"), key: key, alternativeNames: [.ipAddress(IPAddress("127.0.0.1")!)]),
            profile: .tlsServer, options: options)
        return TLSIdentity(chain: [leaf, fixture.ca.certificate], key: key)
    }

    static func client(_ fixture: OCSPInteropFixture, _ mode: RevocationCheckingMode) throws -> TLSContext {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [fixture.ca.certificate]))
        configuration.ocspRevocation = mode
        configuration.handshakeTimeout = .seconds(60)
        return try TLSContext(configuration: configuration)
    }

    @Test("our staple: openssl s_client -status shows good; our hard-fail client accepts it; a revoked answer is never stapled")
    func serverStaplesGood() async throws {
        let fixture = try OCSPInteropFixture()
        let responder = try await fixture.startResponder()
        defer { Task { try? await responder.close() } }
        let url = "http://127.0.0.1:\(responder.port)/"
        var identity = try Self.serverIdentity(fixture, url: url, mustStaple: true)
        identity.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: identity.leaf, issuer: fixture.ca.certificate), from: url)
        let server = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: identity))
        defer { Task { await server.stop() } }

        let openssl = try await runTool(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-status", "-CAfile", fixture.path("ca.pem"),
                                         "-verify_return_error"], input: "hello\n", timeout: 60)
        #expect(openssl.output.contains("OCSP Response Status: successful"), "\(openssl)")
        #expect(openssl.output.contains("Cert Status: good"), "\(openssl)")

        let (info, reply) = try await exchange(port: server.port, context: try Self.client(fixture, .hardFail), message: "ping\n", timeout: 60)
        #expect(reply == "ping\n")
        #expect(info.verifiedChain != nil)

        // After a revocation, a fresh answer is revoked, and the server refuses to staple it.
        try fixture.ca.revoke(identity.leaf, reason: .keyCompromise)
        var revokedIdentity = identity
        revokedIdentity.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: identity.leaf, issuer: fixture.ca.certificate), from: url)
        #expect(throws: GnuTLSError.self) { try TLSContext(configuration: .makeServerConfiguration(identity: revokedIdentity)) }
    }

    @Test("our client refuses a revoked staple from openssl s_server -status_file, in soft and hard mode")
    func clientRefusesRevokedStaple() async throws {
        let fixture = try OCSPInteropFixture()
        let identity = try Self.serverIdentity(fixture, url: "http://127.0.0.1:9/")
        try fixture.ca.revoke(identity.leaf, reason: .keyCompromise)
        let staple = try OCSPResponder(authority: fixture.ca).respond(to: try OCSPRequest(certificate: identity.leaf, issuer: fixture.ca.certificate)).response
        let stapleFile = try fixture.directory.write(staple.derEncoded, to: "revoked-staple.der")
        _ = try fixture.directory.write(identity.chain.map(\.pemEncoded).joined(), to: "server-chain.pem")
        _ = try fixture.directory.write(try identity.key.pemEncodedForTests(), to: "server.key")
        let (peer, port) = try await startOpenSSLServer(["-cert", fixture.path("server-chain.pem"), "-key", fixture.path("server.key"),
                                                         "-status_file", stapleFile, "-naccept", "3"], in: fixture.directory)
        defer { peer.stop() }
        for mode in [RevocationCheckingMode.softFail, .hardFail] {
            do {
                _ = try await exchange(port: port, context: try Self.client(fixture, mode), message: "ping\n", timeout: 60)
                Issue.record("the \(mode) client accepted a revoked staple")
            } catch let error as TLSError {
                #expect(error.verification?.contains(.revoked) == true, "\(error)")
                #expect(error.verification?.problems.first?.revocationReason == .keyCompromise, "\(error)")
            }
        }
    }

    @Test("hard-fail asks the leaf's responder online when nothing is stapled; an unreachable responder: soft accepts, hard refuses")
    func onlineQueries() async throws {
        let fixture = try OCSPInteropFixture()
        let responder = try await fixture.startResponder()
        defer { Task { try? await responder.close() } }
        let reachable = try Self.serverIdentity(fixture, url: "http://127.0.0.1:\(responder.port)/")
        let server = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: reachable))
        defer { Task { await server.stop() } }
        let (_, reply) = try await exchange(port: server.port, context: try Self.client(fixture, .hardFail), message: "ping\n", timeout: 60)
        #expect(reply == "ping\n")
        try fixture.ca.revoke(reachable.leaf, reason: .affiliationChanged)
        do {
            _ = try await exchange(port: server.port, context: try Self.client(fixture, .softFail), message: "ping\n", timeout: 60)
            Issue.record("the soft-fail client accepted a revoked server")
        } catch let error as TLSError {
            #expect(error.verification?.problems.first?.revocationReason == .affiliationChanged, "\(error)")
        }

        let unreachable = try Self.serverIdentity(fixture, url: "http://127.0.0.1:9/")
        let server2 = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: unreachable))
        defer { Task { await server2.stop() } }
        _ = try await exchange(port: server2.port, context: try Self.client(fixture, .softFail), message: "ping\n", timeout: 60)
        do {
            _ = try await exchange(port: server2.port, context: try Self.client(fixture, .hardFail), message: "ping\n", timeout: 60)
            Issue.record("the hard-fail client accepted a server whose responder is unreachable")
        } catch let error as TLSError {
            #expect(error.verification?.contains(.revocationStatusUnknown) == true, "\(error)")
        }
    }

    /// Issue 10: `gnutls-cli --ocsp` and `curl --cert-status` (OpenSSL) read our staple; a
    /// revoked certificate gets no staple from us (a revoked answer is never stapled), so
    /// curl refuses it.
    @Test("our staple: gnutls-cli --ocsp and curl --cert-status accept the good one; curl fails once the certificate is revoked")
    func gnutlsCLIAndCurlReadOurStaple() async throws {
        let fixture = try OCSPInteropFixture()
        let responder = try await fixture.startResponder()
        defer { Task { try? await responder.close() } }
        let url = "http://127.0.0.1:\(responder.port)/"
        var identity = try Self.serverIdentity(fixture, url: url)
        identity.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: identity.leaf, issuer: fixture.ca.certificate), from: url)
        let server = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: identity), behaviour: .http)
        defer { Task { await server.stop() } }

        let saved = fixture.path("gnutls-cli-staple.der")
        let gnutls = try await runTool(["gnutls-cli", "--ocsp", "--save-ocsp", saved, "--x509cafile", fixture.path("ca.pem"),
                                        "--port", "\(server.port)", "127.0.0.1"], input: "GET / HTTP/1.0\r\n\r\n", timeout: 60, package: "gnutls-bin")
        #expect(gnutls.succeeded, "\(gnutls)")
        // gnutls-cli --ocsp checks the staple in its verification: a bad one is not "trusted".
        #expect(gnutls.output.contains("The certificate is trusted"), "\(gnutls)")
        #expect(gnutls.output.contains("OCSP status request"), "\(gnutls)")
        let received = try OCSPResponse.load(contentsOfFile: saved)
        #expect(received.derEncoded == identity.ocspResponse?.derEncoded)
        #expect(received.responses.first?.status == .good)

        let curl = try await runTool(["curl", "--silent", "--show-error", "--cert-status", "--cacert", fixture.path("ca.pem"),
                                      "--max-time", "30", "https://127.0.0.1:\(server.port)/"], timeout: 60, package: "curl")
        #expect(curl.succeeded, "\(curl)")
        #expect(curl.output.contains("hello"), "\(curl)")

        // Revoked: the fresh answer says so, the server will not staple it, curl refuses.
        try fixture.ca.revoke(identity.leaf, reason: .keyCompromise)
        var revoked = identity
        revoked.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: identity.leaf, issuer: fixture.ca.certificate), from: url)
        #expect(throws: GnuTLSError.self) { try TLSContext(configuration: .makeServerConfiguration(identity: revoked)) }
        revoked.ocspResponse = nil
        let unstapled = try await RunningServer.start(TLSConfiguration.makeServerConfiguration(identity: revoked), behaviour: .http)
        defer { Task { await unstapled.stop() } }
        let refused = try await runTool(["curl", "--silent", "--show-error", "--cert-status", "--cacert", fixture.path("ca.pem"),
                                         "--max-time", "30", "https://127.0.0.1:\(unstapled.port)/"], timeout: 60, package: "curl")
        #expect(!refused.succeeded, "\(refused)")
        #expect(refused.output.lowercased().contains("ocsp"), "\(refused)")
    }
}
