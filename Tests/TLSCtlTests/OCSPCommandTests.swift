import Foundation
import GnuTLS
import Testing
import TestSupport

@Suite("tlsctl ocsp serve|request|verify, ca issue --must-staple / --profile ocsp-responder")
struct OCSPCommandTests {
    /// A root CA `root`, a server certificate `leaf.pem` and a delegated responder `responder.pem`.
    static func makePKI(_ work: CLIWorkspace) async throws {
        try await work.makeRoot("root")
        try await work.makeRequest("leaf", subject: "CN=leaf.example.com", dns: ["leaf.example.com"])
        try await work.succeed(["ca", "issue", "--ca", "root", "--csr", "leaf.csr.pem", "--profile", "server", "--days", "30", "--out", "leaf.pem",
                          "--ocsp-url", "http://127.0.0.1:9/", "--must-staple"])
        try await work.makeRequest("responder", subject: "CN=OCSP Responder")
        try await work.succeed(["ca", "issue", "--ca", "root", "--csr", "responder.csr.pem", "--profile", "ocsp-responder", "--days", "7",
                          "--out", "responder.pem"])
    }

    @Test func serveRequestRevokeVerify() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makePKI(work)
        let leaf = try Certificate.load(contentsOfFile: work.file("leaf.pem"))[0]
        #expect(leaf.requiresOCSPStapling)
        let responderCert = try Certificate.load(contentsOfFile: work.file("responder.pem"))[0]
        #expect(responderCert.extendedKeyUsage == [.ocspSigning] && responderCert.hasOCSPNoCheck)

        let server = try await BackgroundTLSCtl(["ocsp", "serve", "--ca", "root", "--port", "0", "--validity-hours", "1"], directory: work.path)
        defer { server.terminate() }
        let port = try await server.port(timeout: 120)
        let url = "http://127.0.0.1:\(port)/"

        let good = try await work.tlsctl(["ocsp", "request", "--cert", "leaf.pem", "--issuer", "root/ca.pem", "--url", url, "--nonce",
                                    "--response-out", "good.der"])
        #expect(good.exitCode == 0, "\(good)")
        #expect(good.standardOutput.hasPrefix("CN=leaf.example.com (serial "), "\(good)")
        #expect(good.standardOutput.contains("): good\n"), "\(good)")
        let logLine = await server.waitForLine(prefix: "POST serial=", timeout: 120)
        #expect(logLine?.contains("status=good") == true, "\(server)")
        #expect(logLine?.contains("latency=") == true, "\(server)")

        try await work.succeed(["ca", "revoke", "--ca", "root", "--cert", "leaf.pem", "--reason", "keyCompromise"])
        let revoked = try await work.tlsctl(["ocsp", "request", "--cert", "leaf.pem", "--issuer", "root/ca.pem", "--url", url])
        #expect(revoked.exitCode == 1, "\(revoked)")
        #expect(revoked.standardOutput.contains("): revoked\n"), "\(revoked)")
        #expect(revoked.standardOutput.contains("Reason:      keyCompromise"), "\(revoked)")
        #expect(revoked.standardError == "tlsctl: refused (revoked): the certificate is revoked (keyCompromise)\n", "\(revoked)")

        // The good answer saved before the revocation still verifies (it is valid for an hour)…
        let verified = try await work.tlsctl(["ocsp", "verify", "--response", "good.der", "--cert", "leaf.pem", "--issuer", "root/ca.pem"])
        #expect(verified.exitCode == 0, "\(verified)")
        // …but not two hours later, nor for another certificate, nor as garbage.
        let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(7200))
        let stale = try await work.tlsctl(["ocsp", "verify", "--response", "good.der", "--cert", "leaf.pem", "--issuer", "root/ca.pem", "--time", later])
        #expect(stale.exitCode == 1 && stale.standardError.hasPrefix("tlsctl: refused (ocspStale): "), "\(stale)")
        let wrong = try await work.tlsctl(["ocsp", "verify", "--response", "good.der", "--cert", "responder.pem", "--issuer", "root/ca.pem"])
        #expect(wrong.exitCode == 1 && wrong.standardError.hasPrefix("tlsctl: refused (ocspWrongCertificate): "), "\(wrong)")
        _ = try work.directory.write("garbage", to: "garbage.der")
        let garbage = try await work.tlsctl(["ocsp", "verify", "--response", "garbage.der", "--cert", "leaf.pem", "--issuer", "root/ca.pem"])
        #expect(garbage.exitCode == 1 && garbage.standardError.hasPrefix("tlsctl: refused (ocspMalformed): "), "\(garbage)")

        // An unreachable responder: exit 1 with the reason.
        let unreachable = try await work.tlsctl(["ocsp", "request", "--cert", "leaf.pem", "--issuer", "root/ca.pem", "--timeout", "5"])
        #expect(unreachable.exitCode == 1 && unreachable.standardError.hasPrefix("tlsctl: error: cannot ask http://127.0.0.1:9/"), "\(unreachable)")
    }

    @Test func delegatedResponderWithOpenSSL() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await Self.makePKI(work)
        let server = try await BackgroundTLSCtl(["ocsp", "serve", "--ca", "root", "--port", "0", "--responder-cert", "responder.pem",
                                           "--responder-key", "responder.key.pem"], directory: work.path)
        defer { server.terminate() }
        let port = try await server.port(timeout: 120)
        let result = try await Tool.run(["openssl", "ocsp", "-issuer", "root/ca.pem", "-cert", "leaf.pem", "-url", "http://127.0.0.1:\(port)",
                                   "-CAfile", "root/ca.pem", "-timeout", "20"], timeout: 60, directory: work.path)
        #expect(result.output.contains("Response verify OK"), "\(result)")
        #expect(result.standardOutput.contains("leaf.pem: good"), "\(result)")
        // A certificate for the responder signed by someone else is refused at start.
        let refused = try await work.tlsctl(["ocsp", "serve", "--ca", "root", "--port", "0", "--responder-cert", "leaf.pem",
                                       "--responder-key", "leaf.key.pem"])
        #expect(refused.exitCode == 1 && refused.standardError.contains("OCSP-signing"), "\(refused)")
    }
}
