import Foundation
import GnuTLS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tlsctl serve` and `tlsctl connect`, run as a user would: the built binary, a PKI made
/// with `tlsctl ca`/`key`/`csr` in a temporary directory, the server in the background on
/// 127.0.0.1 with a free port (`--port 0`), stopped by `--max-connections` or, always, by
/// its pid at the end.
@Suite("tlsctl serve and connect")
struct TLSCommandTests {
    /// A root CA, a server certificate for server.test and 127.0.0.1, and a client
    /// certificate for alice, all issued by `tlsctl ca issue`.
    struct PKI {
        let work: CLIWorkspace
        let clientSubject: DistinguishedName
        let serverSubject: DistinguishedName

        init() async throws {
            work = try CLIWorkspace()
            try await work.makeRoot("root")
            try await work.makeRequest("server", subject: "CN=server.test,O=tlsctl tests", dns: ["server.test"], extra: ["--ip", "127.0.0.1"])
            try await work.succeed(["ca", "issue", "--ca", "root", "--csr", "server.csr.pem", "--profile", "server", "--days", "7",
                              "--out", "server.pem", "--chain-out", "server-chain.pem"])
            try await work.makeRequest("client", subject: "CN=alice,O=tlsctl tests", extra: ["--email", "alice@client.test"])
            try await work.succeed(["ca", "issue", "--ca", "root", "--csr", "client.csr.pem", "--profile", "client", "--days", "7",
                              "--out", "client.pem", "--chain-out", "client-chain.pem"])
            clientSubject = try Certificate(pemEncoded: work.read("client.pem")).subject
            serverSubject = try Certificate(pemEncoded: work.read("server.pem")).subject
        }

        /// `tlsctl serve` with the server certificate, on a free port, plus `extra`.
        func serve(_ extra: [String]) async throws -> BackgroundTLSCtl {
            try await BackgroundTLSCtl(["serve", "--cert", "server-chain.pem", "--key", "server.key.pem", "--port", "0"] + extra, directory: work.path)
        }

        /// `tlsctl connect 127.0.0.1:PORT` with `extra`, sending `input`.
        func connect(_ port: Int, _ extra: [String], input: String? = nil) async throws -> ProcessResult {
            let binary = BuiltProducts.tlsctl
            guard FileManager.default.isExecutableFile(atPath: binary) else { throw TLSCtlNotBuilt(path: binary) }
            return try await Tool.run([binary, "connect", "127.0.0.1:\(port)"] + extra, input: input, timeout: 120, directory: work.path)
        }

        static let clientCertificate = ["--cert", "client-chain.pem", "--key", "client.key.pem"]

        /// Makes a PKI, starts `tlsctl serve` with `extra`, reads its port, runs `body`, and
        /// always stops the server (by its pid) and removes the directory.
        static func serving(_ extra: [String], _ body: (PKI, BackgroundTLSCtl, Int) async throws -> Void) async throws {
            let pki = try await PKI()
            defer { pki.work.remove() }
            let server = try await pki.serve(extra)
            defer { server.terminate() }
            try await body(pki, server, try await server.port())
        }
    }

    @Test("mutual TLS: the server logs the issued client subject, the client sees the server verified, bytes echo", arguments: ["1.2", "1.3"])
    func mutualTLS(version: String) async throws {
        try await PKI.serving(["--client-ca", "root/ca.pem", "--require-client-cert", "--tls-version", version, "--max-connections", "1"]) { pki, server, port in
            let result = try await pki.connect(port, ["--ca", "root/ca.pem"] + PKI.clientCertificate, input: "hello over TLS \(version)\n")
            #expect(result.exitCode == 0 && !result.timedOut, "\(result)")
            #expect(result.standardOutput == "hello over TLS \(version)\n", "\(result)")
            for line in ["version: TLS\(version)", "server subject: \(pki.serverSubject)", "resumed: no",
                         "verified chain: 'server.test' <- 'Test Root CA'", "verification: ok"] {
                #expect(result.standardError.contains(line), "stderr lacks \(line): \(result)")
            }

            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            let accepted = try #require(server.lines.first { $0.hasPrefix("accepted #1 ") }, "\(server)")
            #expect(accepted.contains("version=TLS\(version)"), "\(accepted)")
            #expect(TLSCommandTests.field("subject", in: accepted) == pki.clientSubject.description, "\(accepted)")
            #expect(TLSCommandTests.field("sans", in: accepted) == "email:alice@client.test" || accepted.contains("alice@client.test"), "\(accepted)")
            let fingerprint = try Certificate(pemEncoded: pki.work.read("client.pem")).sha256Fingerprint
            #expect(accepted.contains("sha256=\(colonHex(fingerprint))"), "\(accepted)")
            #expect(server.lines.contains("closed #1: echoed \("hello over TLS \(version)\n".utf8.count) bytes"), "\(server)")
        }
    }

    @Test("a plain TLS server: anonymous clients, ALPN agreed, the host name from --servername")
    func plainTLS() async throws {
        try await PKI.serving(["--alpn", "h2", "--alpn", "http/1.1", "--max-connections", "1"]) { pki, server, port in
            let result = try await pki.connect(port, ["--ca", "root/ca.pem", "--servername", "server.test", "--alpn", "http/1.1"], input: "ping\n")
            #expect(result.exitCode == 0 && result.standardOutput == "ping\n", "\(result)")
            #expect(result.standardError.contains("connected to 127.0.0.1:\(port) (server name server.test)"), "\(result)")
            #expect(result.standardError.contains("alpn: http/1.1"), "\(result)")
            #expect(result.standardError.contains("verification: ok (chain to the CAs in root/ca.pem, host name server.test"), "\(result)")

            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            let accepted = try #require(server.lines.first { $0.hasPrefix("accepted #1 ") }, "\(server)")
            #expect(accepted.contains("alpn=http/1.1") && accepted.contains("sni=server.test") && accepted.hasSuffix("client=anonymous"), "\(accepted)")
        }
    }

    @Test("--client-ca without --require-client-cert: certificates are optional, and verified when sent")
    func optionalClientCertificates() async throws {
        try await PKI.serving(["--client-ca", "root/ca.pem", "--max-connections", "2"]) { pki, server, port in
            let anonymous = try await pki.connect(port, ["--ca", "root/ca.pem"], input: "one\n")
            #expect(anonymous.exitCode == 0 && anonymous.standardOutput == "one\n", "\(anonymous)")
            let named = try await pki.connect(port, ["--ca", "root/ca.pem"] + PKI.clientCertificate, input: "two\n")
            #expect(named.exitCode == 0 && named.standardOutput == "two\n", "\(named)")

            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            let accepted = server.lines.filter { $0.hasPrefix("accepted #") }
            #expect(accepted.count == 2, "\(server)")
            #expect(accepted.contains { $0.hasSuffix("client=anonymous") }, "\(server)")
            #expect(accepted.contains { TLSCommandTests.field("subject", in: $0) == pki.clientSubject.description }, "\(server)")
        }
    }

    @Test("a host name the certificate does not hold is refused with the verifier's reason")
    func wrongHostName() async throws {
        try await PKI.serving(["--max-connections", "1"]) { pki, server, port in
            let result = try await pki.connect(port, ["--ca", "root/ca.pem", "--servername", "wrong.test"])
            #expect(result.exitCode == 1 && !result.timedOut, "\(result)")
            #expect(result.standardOutput.isEmpty, "\(result)")
            #expect(result.standardError.hasPrefix("tlsctl: TLS verificationFailed: [0] nameMismatch: "), "\(result)")
            #expect(result.standardError.contains("wrong.test"), "\(result)")
            #expect(!result.standardError.contains("verification: ok"), "\(result)")

            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            #expect(server.lines.contains { $0.hasPrefix("refused #1: TLS ") }, "\(server)")
            #expect(!server.lines.contains { $0.hasPrefix("accepted") }, "\(server)")
        }
    }

    @Test("a client without a certificate is refused by a --require-client-cert server, both sides saying why", arguments: ["1.2", "1.3"])
    func missingClientCertificate(version: String) async throws {
        try await PKI.serving(["--client-ca", "root/ca.pem", "--require-client-cert", "--tls-version", version, "--max-connections", "1"]) { pki, server, port in
            let result = try await pki.connect(port, ["--ca", "root/ca.pem"])
            #expect(result.exitCode == 1 && !result.timedOut, "\(result)")
            #expect(result.standardOutput.isEmpty, "\(result)")
            // TLS 1.3 says so with a certificate_required alert; in TLS 1.2 the server asked for a
            // certificate, got none and sent handshake_failure.
            let lastLine = result.standardError.split(separator: "\n").last.map(String.init) ?? ""
            #expect(lastLine == "tlsctl: TLS peerCertificateRequired: the server requires a client certificate, and none is configured", "\(result)")

            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            let refused = try #require(server.lines.first { $0.hasPrefix("refused #1: ") }, "\(server)")
            #expect(refused.hasPrefix("refused #1: TLS peerCertificateRequired: "), "\(refused)")
        }
    }

    @Test("--crls: a client revoked with `tlsctl ca revoke` and listed by `tlsctl ca crl` is refused, the server saying why")
    func revokedClient() async throws {
        let pki = try await PKI()
        defer { pki.work.remove() }
        try await pki.work.succeed(["ca", "revoke", "--ca", "root", "--cert", "client.pem", "--reason", "keyCompromise"])
        try await pki.work.succeed(["ca", "crl", "--ca", "root", "--out", "root.crl.pem"])
        let server = try await pki.serve(["--client-ca", "root/ca.pem", "--require-client-cert", "--crls", "root.crl.pem", "--max-connections", "1"])
        defer { server.terminate() }
        let result = try await pki.connect(try await server.port(), ["--ca", "root/ca.pem"] + PKI.clientCertificate)
        #expect(result.exitCode == 1 && result.standardOutput.isEmpty, "\(result)")
        #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
        let refused = try #require(server.lines.first { $0.hasPrefix("refused #1: ") }, "\(server)")
        #expect(refused.hasPrefix("refused #1: TLS verificationFailed: [0] revoked: "), "\(refused)")
        #expect(refused.contains("keyCompromise"), "\(refused)")
    }

    @Test("without --ca the system's CAs are used, which do not know a private root; --insecure-no-verify connects, saying so")
    func systemTrustAndInsecure() async throws {
        try await PKI.serving(["--max-connections", "2"]) { pki, server, port in
            let system = try await pki.connect(port, [])
            #expect(system.exitCode == 1 && system.standardError.hasPrefix("tlsctl: TLS verificationFailed: [0] untrustedIssuer: "), "\(system)")
            let insecure = try await pki.connect(port, ["--insecure-no-verify"], input: "y\n")
            #expect(insecure.exitCode == 0 && insecure.standardOutput == "y\n", "\(insecure)")
            #expect(insecure.standardError.contains("verification: DISABLED (--insecure-no-verify)"), "\(insecure)")
            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
        }
    }

    @Test("SIGTERM closes the server gracefully (exit 0), and an open connection with close_notify after its 5 seconds")
    func sigterm() async throws {
        let pki = try await PKI()
        defer { pki.work.remove() }
        let server = try await pki.serve([])
        defer { server.terminate() }
        let port = try await server.port()
        // A client whose stdin stays open: the connection is still up when the signal comes.
        let client = try await BackgroundTLSCtl(["connect", "127.0.0.1:\(port)", "--ca", "root/ca.pem"], directory: pki.work.path, holdStandardInput: true)
        defer { client.terminate() }
        #expect(await server.waitForLine(prefix: "accepted #1 ", timeout: 120) != nil, "\(server)")

        kill(server.pid, SIGTERM)
        #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
        #expect(server.standardError.contains("SIGTERM: closing the listener"), "\(server)")
        #expect(server.lines.contains("closed #1: echoed 0 bytes"), "\(server)")
        #expect(await client.waitForExit(timeout: 120) == 0, "the client saw close_notify: \(client)")
    }

    @Test("SIGINT stops an idle server at once (exit 0)")
    func sigint() async throws {
        let pki = try await PKI()
        defer { pki.work.remove() }
        let server = try await pki.serve([])
        defer { server.terminate() }
        _ = try await server.port()
        kill(server.pid, SIGINT)
        #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
        #expect(server.standardError.contains("SIGINT: closing the listener"), "\(server)")
    }

    @Test("usage errors: --require-client-cert without --client-ca, an endpoint without a port")
    func usage() async throws {
        let pki = try await PKI()
        defer { pki.work.remove() }
        let serve = try await pki.work.tlsctl(["serve", "--cert", "server-chain.pem", "--key", "server.key.pem", "--require-client-cert"])
        #expect(serve.exitCode == 64 && serve.standardError.contains("--require-client-cert needs --client-ca"), "\(serve)")
        let connect = try await pki.work.tlsctl(["connect", "127.0.0.1"])
        #expect(connect.exitCode == 64, "\(connect)")
        let halfIdentity = try await pki.work.tlsctl(["connect", "127.0.0.1:1", "--cert", "client.pem"])
        #expect(halfIdentity.exitCode == 64 && halfIdentity.standardError.contains("--cert and --key go together"), "\(halfIdentity)")
    }

    @Test("serve opens a passphrase-protected key with --passphrase-file, and says which option to fix when it is wrong")
    func passphraseProtectedKey() async throws {
        let pki = try await PKI()
        defer { pki.work.remove() }
        try pki.work.passphraseFile("right.pass", "correct horse")
        try pki.work.passphraseFile("wrong.pass", "wrong horse")
        try await pki.work.succeed(["key", "generate", "--out", "locked.key.pem", "--passphrase-file", "right.pass"])
        try await pki.work.succeed(["csr", "create", "--key", "locked.key.pem", "--passphrase-file", "right.pass", "--subject", "CN=locked.test",
                              "--dns", "locked.test", "--ip", "127.0.0.1", "--out", "locked.csr.pem"])
        try await pki.work.succeed(["ca", "issue", "--ca", "root", "--csr", "locked.csr.pem", "--profile", "server", "--days", "7", "--out", "locked.pem"])

        let wrong = try await pki.work.tlsctl(["serve", "--cert", "locked.pem", "--key", "locked.key.pem", "--passphrase-file", "wrong.pass", "--port", "0"], timeout: 30)
        #expect(wrong.exitCode == 1 && wrong.standardError.hasPrefix("tlsctl: error: cannot load private key locked.key.pem") &&
                wrong.standardError.contains("--passphrase-file"), "\(wrong)")

        let server = try await BackgroundTLSCtl(["serve", "--cert", "locked.pem", "--key", "locked.key.pem", "--passphrase-file", "right.pass",
                                           "--port", "0", "--max-connections", "1"], directory: pki.work.path)
        defer { server.terminate() }
        let result = try await pki.connect(try await server.port(), ["--ca", "root/ca.pem"], input: "unlocked\n")
        #expect(result.exitCode == 0 && result.standardOutput == "unlocked\n", "\(result)")
        #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
    }

    @Test("--help lists every serve and connect option")
    func help() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let serve = try await work.succeed(["serve", "--help"]).standardOutput
        for option in ["--cert", "--key", "--passphrase-file", "--host", "--port", "--client-ca", "--require-client-cert", "--crls", "--alpn",
                       "--tls-version", "--max-connections"] {
            #expect(serve.contains(option), "serve --help lacks \(option):\n\(serve)")
        }
        let connect = try await work.succeed(["connect", "--help"]).standardOutput
        for option in ["<host:port>", "--ca", "--cert", "--key", "--passphrase-file", "--servername", "--crls", "--alpn", "--tls-version",
                       "--insecure-no-verify"] {
            #expect(connect.contains(option), "connect --help lacks \(option):\n\(connect)")
        }
        let top = try await work.succeed(["--help"]).standardOutput
        #expect(top.contains("serve") && top.contains("connect"), "\(top)")
    }

    @Test("tlsctl demo serves mutual TLS on 127.0.0.1 and shows the four refusals with their reasons")
    func demo() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.tlsctl(["demo"], timeout: 240)
        #expect(result.exitCode == 0 && !result.timedOut, "\(result)")
        let output = result.standardOutput
        for expected in [
            "Mutual TLS on 127.0.0.1",
            "ok   client: server chain verified up to the trusted root",
            "ok   client: host name server.demo.test verified",
            "ok   server: client chain verified up to the trusted root",
            "ok   server: client identity read from its certificate: subject CN=demo client",
            "ok   client: received the server's reply over the verified channel: 'hello demo client, the server read: hello from the demo client",
            "Refused: a wrong host name", "ok   client refuses the server (nameMismatch): TLS verificationFailed: [0] nameMismatch: ",
            "Refused: an expired server certificate", "ok   client refuses the server (expired): TLS verificationFailed: [0] expired: ",
            "Refused: a server certificate from a CA the client does not trust",
            "ok   client refuses the server (untrustedIssuer): TLS verificationFailed: [0] untrustedIssuer: ",
            "Refused: a revoked client certificate", "ok   server refuses the revoked client: TLS verificationFailed: [0] revoked: ",
        ] {
            #expect(output.contains(expected), "demo output lacks \(expected):\n\(output)")
        }
        #expect(!output.contains("FAIL"), "\(output)")
    }

    /// The value of `name="…"` in a server log line.
    static func field(_ name: String, in line: String) -> String? {
        guard let start = line.range(of: "\(name)=\"") else { return nil }
        let rest = line[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }
}

/// `tlsctl` running in the background (a server): a ``BackgroundProcess`` whose output is
/// collected as it comes, every wait woken by its output or its exit (the timeouts are
/// safety nets), always stopped by its process group (``terminate()``, in a `defer`).
final class BackgroundTLSCtl: Sendable, CustomStringConvertible {
    let process: BackgroundProcess
    let arguments: [String]

    /// Starts `executable` (tlsctl unless given) with `arguments` in `directory`, with
    /// `environment` added to this process's; its standard input is kept open (until it
    /// ends) when `holdStandardInput` is set, and at end of file otherwise.
    init(_ arguments: [String], directory: String, holdStandardInput: Bool = false, environment: [String: String]? = nil,
         executable: String = BuiltProducts.tlsctl) async throws {
        let binary = executable
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw TLSCtlNotBuilt(path: binary) }
        self.arguments = arguments
        process = try await BackgroundProcess([binary] + arguments, directory: directory, environment: environment,
                                              closeInput: !holdStandardInput)
    }

    var pid: Int32 { process.pid }
    var standardOutput: String { process.standardOutput }
    var standardError: String { process.standardError }
    /// Complete stdout lines so far.
    var lines: [String] { process.lines }

    /// The port from the first line, `listening on 127.0.0.1:PORT` (woken by each output).
    func port(timeout: TimeInterval = 120) async throws -> Int {
        let first: String
        do {
            first = try await process.waitFor("a first line", timeout: timeout) { $0.lines.first }
        } catch {
            throw ServerDidNotStart(detail: "no `listening on` line: \(error)")
        }
        guard first.hasPrefix("listening on "), let port = first.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw ServerDidNotStart(detail: "unexpected first line '\(first)': \(self)")
        }
        return port
    }

    /// The first complete stdout line starting with `prefix`, or nil when the program ended
    /// without printing one or `timeout` seconds (the safety net) passed.
    func waitForLine(prefix: String, timeout: TimeInterval) async -> String? {
        try? await process.waitFor("a line starting with '\(prefix)'", timeout: timeout) { process in
            process.lines.first { $0.hasPrefix(prefix) }
        }
    }

    /// Waits for the process to exit by itself and for the end of its output; its status,
    /// or nil when it still runs after `timeout` seconds (the safety net).
    func waitForExit(timeout: TimeInterval) async -> Int32? {
        await process.waitForExit(timeout: timeout)
    }

    /// Starts stopping the process if it still runs: SIGTERM to its process group, SIGKILL
    /// a second later. Returns at once (made for a `defer`).
    func terminate() {
        process.stop()
    }

    var description: String { process.description }
}

struct ServerDidNotStart: Error, CustomStringConvertible {
    var detail: String
    var description: String { "tlsctl serve did not start: \(detail)" }
}
