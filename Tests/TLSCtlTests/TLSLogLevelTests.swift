import Foundation
import GnuTLS
import Testing
import TestSupport

/// `--log-level` on `tlsctl serve` and `tlsctl connect` (issue 13): the library's events,
/// with their metadata, on stderr; nothing without it.
@Suite("tlsctl --log-level")
struct TLSLogLevelTests {
    @Test("serve and connect print the handshake and the refusal with their metadata")
    func eventsOnStderr() throws {
        try TLSCommandTests.PKI.serving(["--client-ca", "root/ca.pem", "--require-client-cert", "--max-connections", "2",
                                         "--log-level", "info"]) { pki, server, port in
            let ok = try pki.connect(port, ["--ca", "root/ca.pem", "--log-level", "info"] + TLSCommandTests.PKI.clientCertificate,
                                     input: "logged\n")
            #expect(ok.exitCode == 0, "\(ok)")
            // The client's handshake event names the server it verified.
            #expect(ok.standardError.contains("TLS handshake completed"), "\(ok)")
            #expect(ok.standardError.contains("tls.event=handshake"), "\(ok)")
            #expect(ok.standardError.contains("tls.peer.subject=\(pki.serverSubject)"), "\(ok)")
            #expect(ok.standardError.contains("tls.role=client"), "\(ok)")

            // No client certificate: the server refuses, and logs why.
            let refused = try pki.connect(port, ["--ca", "root/ca.pem"], input: "refused\n")
            #expect(refused.exitCode == 1, "\(refused)")
            // Without --log-level the client logs nothing beyond its own lines.
            #expect(!refused.standardError.contains("tls.event="), "\(refused)")

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
            let log = server.standardError
            #expect(log.contains("tls.event=handshake"), "\(server)")
            #expect(log.contains("tls.peer.subject=\(pki.clientSubject)"), "\(server)")
            #expect(log.contains("tls.peer.fingerprint_sha256="), "\(server)")
            #expect(log.contains("tls.event=refused"), "\(server)")
            #expect(log.contains("tls.error.code=peerCertificateRequired"), "\(server)")
            // stdout keeps its own lines.
            #expect(server.lines.contains { $0.hasPrefix("accepted #1 ") }, "\(server)")
        }
    }

    @Test("an unknown level is a usage error")
    func unknownLevel() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try work.tlsctl(["connect", "127.0.0.1:1", "--log-level", "loud"])
        #expect(result.exitCode == 64, "\(result)")
        #expect(result.standardError.contains("--log-level"), "\(result)")
    }
}
