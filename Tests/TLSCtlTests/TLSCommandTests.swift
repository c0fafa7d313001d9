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

        init() throws {
            work = try CLIWorkspace()
            try work.makeRoot("root")
            try work.makeRequest("server", subject: "CN=server.test,O=tlsctl tests", dns: ["server.test"], extra: ["--ip", "127.0.0.1"])
            try work.succeed(["ca", "issue", "--ca", "root", "--csr", "server.csr.pem", "--profile", "server", "--days", "7",
                              "--out", "server.pem", "--chain-out", "server-chain.pem"])
            try work.makeRequest("client", subject: "CN=alice,O=tlsctl tests", extra: ["--email", "alice@client.test"])
            try work.succeed(["ca", "issue", "--ca", "root", "--csr", "client.csr.pem", "--profile", "client", "--days", "7",
                              "--out", "client.pem", "--chain-out", "client-chain.pem"])
            clientSubject = try Certificate(pemEncoded: work.read("client.pem")).subject
            serverSubject = try Certificate(pemEncoded: work.read("server.pem")).subject
        }

        /// `tlsctl serve` with the server certificate, on a free port, plus `extra`.
        func serve(_ extra: [String]) throws -> BackgroundTLSCtl {
            try BackgroundTLSCtl(["serve", "--cert", "server-chain.pem", "--key", "server.key.pem", "--port", "0"] + extra, directory: work.path)
        }

        /// `tlsctl connect 127.0.0.1:PORT` with `extra`, sending `input`.
        func connect(_ port: Int, _ extra: [String], input: String? = nil) throws -> ProcessResult {
            let binary = BuiltProducts.tlsctl
            guard FileManager.default.isExecutableFile(atPath: binary) else { throw TLSCtlNotBuilt(path: binary) }
            return try Tool.run([binary, "connect", "127.0.0.1:\(port)"] + extra, input: input, timeout: 30, directory: work.path)
        }

        static let clientCertificate = ["--cert", "client-chain.pem", "--key", "client.key.pem"]

        /// Makes a PKI, starts `tlsctl serve` with `extra`, reads its port, runs `body`, and
        /// always stops the server (by its pid) and removes the directory.
        static func serving(_ extra: [String], _ body: (PKI, BackgroundTLSCtl, Int) throws -> Void) throws {
            let pki = try PKI()
            defer { pki.work.remove() }
            let server = try pki.serve(extra)
            defer { server.terminate() }
            try body(pki, server, try server.port())
        }
    }

    @Test("mutual TLS: the server logs the issued client subject, the client sees the server verified, bytes echo", arguments: ["1.2", "1.3"])
    func mutualTLS(version: String) throws {
        try PKI.serving(["--client-ca", "root/ca.pem", "--require-client-cert", "--tls-version", version, "--max-connections", "1"]) { pki, server, port in
            let result = try pki.connect(port, ["--ca", "root/ca.pem"] + PKI.clientCertificate, input: "hello over TLS \(version)\n")
            #expect(result.exitCode == 0 && !result.timedOut, "\(result)")
            #expect(result.standardOutput == "hello over TLS \(version)\n", "\(result)")
            for line in ["version: TLS\(version)", "server subject: \(pki.serverSubject)", "resumed: no",
                         "verified chain: 'server.test' <- 'Test Root CA'", "verification: ok"] {
                #expect(result.standardError.contains(line), "stderr lacks \(line): \(result)")
            }

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
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
    func plainTLS() throws {
        try PKI.serving(["--alpn", "h2", "--alpn", "http/1.1", "--max-connections", "1"]) { pki, server, port in
            let result = try pki.connect(port, ["--ca", "root/ca.pem", "--servername", "server.test", "--alpn", "http/1.1"], input: "ping\n")
            #expect(result.exitCode == 0 && result.standardOutput == "ping\n", "\(result)")
            #expect(result.standardError.contains("connected to 127.0.0.1:\(port) (server name server.test)"), "\(result)")
            #expect(result.standardError.contains("alpn: http/1.1"), "\(result)")
            #expect(result.standardError.contains("verification: ok (chain to the CAs in root/ca.pem, host name server.test"), "\(result)")

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
            let accepted = try #require(server.lines.first { $0.hasPrefix("accepted #1 ") }, "\(server)")
            #expect(accepted.contains("alpn=http/1.1") && accepted.contains("sni=server.test") && accepted.hasSuffix("client=anonymous"), "\(accepted)")
        }
    }

    @Test("--client-ca without --require-client-cert: certificates are optional, and verified when sent")
    func optionalClientCertificates() throws {
        try PKI.serving(["--client-ca", "root/ca.pem", "--max-connections", "2"]) { pki, server, port in
            let anonymous = try pki.connect(port, ["--ca", "root/ca.pem"], input: "one\n")
            #expect(anonymous.exitCode == 0 && anonymous.standardOutput == "one\n", "\(anonymous)")
            let named = try pki.connect(port, ["--ca", "root/ca.pem"] + PKI.clientCertificate, input: "two\n")
            #expect(named.exitCode == 0 && named.standardOutput == "two\n", "\(named)")

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
            let accepted = server.lines.filter { $0.hasPrefix("accepted #") }
            #expect(accepted.count == 2, "\(server)")
            #expect(accepted.contains { $0.hasSuffix("client=anonymous") }, "\(server)")
            #expect(accepted.contains { TLSCommandTests.field("subject", in: $0) == pki.clientSubject.description }, "\(server)")
        }
    }

    @Test("a host name the certificate does not hold is refused with the verifier's reason")
    func wrongHostName() throws {
        try PKI.serving(["--max-connections", "1"]) { pki, server, port in
            let result = try pki.connect(port, ["--ca", "root/ca.pem", "--servername", "wrong.test"])
            #expect(result.exitCode == 1 && !result.timedOut, "\(result)")
            #expect(result.standardOutput.isEmpty, "\(result)")
            #expect(result.standardError.hasPrefix("tlsctl: TLS verificationFailed: [0] nameMismatch: "), "\(result)")
            #expect(result.standardError.contains("wrong.test"), "\(result)")
            #expect(!result.standardError.contains("verification: ok"), "\(result)")

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
            #expect(server.lines.contains { $0.hasPrefix("refused #1: TLS ") }, "\(server)")
            #expect(!server.lines.contains { $0.hasPrefix("accepted") }, "\(server)")
        }
    }

    @Test("a client without a certificate is refused by a --require-client-cert server, both sides saying why", arguments: ["1.2", "1.3"])
    func missingClientCertificate(version: String) throws {
        try PKI.serving(["--client-ca", "root/ca.pem", "--require-client-cert", "--tls-version", version, "--max-connections", "1"]) { pki, server, port in
            let result = try pki.connect(port, ["--ca", "root/ca.pem"])
            #expect(result.exitCode == 1 && !result.timedOut, "\(result)")
            #expect(result.standardOutput.isEmpty, "\(result)")
            // TLS 1.3 says so with a certificate_required alert; in TLS 1.2 the server asked for a
            // certificate, got none and sent handshake_failure.
            let lastLine = result.standardError.split(separator: "\n").last.map(String.init) ?? ""
            #expect(lastLine == "tlsctl: TLS peerCertificateRequired: the server requires a client certificate, and none is configured", "\(result)")

            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
            let refused = try #require(server.lines.first { $0.hasPrefix("refused #1: ") }, "\(server)")
            #expect(refused.hasPrefix("refused #1: TLS peerCertificateRequired: "), "\(refused)")
        }
    }

    @Test("--crls: a client revoked with `tlsctl ca revoke` and listed by `tlsctl ca crl` is refused, the server saying why")
    func revokedClient() throws {
        let pki = try PKI()
        defer { pki.work.remove() }
        try pki.work.succeed(["ca", "revoke", "--ca", "root", "--cert", "client.pem", "--reason", "keyCompromise"])
        try pki.work.succeed(["ca", "crl", "--ca", "root", "--out", "root.crl.pem"])
        let server = try pki.serve(["--client-ca", "root/ca.pem", "--require-client-cert", "--crls", "root.crl.pem", "--max-connections", "1"])
        defer { server.terminate() }
        let result = try pki.connect(try server.port(), ["--ca", "root/ca.pem"] + PKI.clientCertificate)
        #expect(result.exitCode == 1 && result.standardOutput.isEmpty, "\(result)")
        #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
        let refused = try #require(server.lines.first { $0.hasPrefix("refused #1: ") }, "\(server)")
        #expect(refused.hasPrefix("refused #1: TLS verificationFailed: [0] revoked: "), "\(refused)")
        #expect(refused.contains("keyCompromise"), "\(refused)")
    }

    @Test("without --ca the system's CAs are used, which do not know a private root; --insecure-no-verify connects, saying so")
    func systemTrustAndInsecure() throws {
        try PKI.serving(["--max-connections", "2"]) { pki, server, port in
            let system = try pki.connect(port, [])
            #expect(system.exitCode == 1 && system.standardError.hasPrefix("tlsctl: TLS verificationFailed: [0] untrustedIssuer: "), "\(system)")
            let insecure = try pki.connect(port, ["--insecure-no-verify"], input: "y\n")
            #expect(insecure.exitCode == 0 && insecure.standardOutput == "y\n", "\(insecure)")
            #expect(insecure.standardError.contains("verification: DISABLED (--insecure-no-verify)"), "\(insecure)")
            #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
        }
    }

    @Test("SIGTERM closes the server gracefully (exit 0), and an open connection with close_notify after its 5 seconds")
    func sigterm() throws {
        let pki = try PKI()
        defer { pki.work.remove() }
        let server = try pki.serve([])
        defer { server.terminate() }
        let port = try server.port()
        // A client whose stdin stays open: the connection is still up when the signal comes.
        let client = try BackgroundTLSCtl(["connect", "127.0.0.1:\(port)", "--ca", "root/ca.pem"], directory: pki.work.path, holdStandardInput: true)
        defer { client.terminate() }
        #expect(server.waitForLine(prefix: "accepted #1 ", timeout: 30) != nil, "\(server)")

        kill(server.pid, SIGTERM)
        #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
        #expect(server.standardError.contains("SIGTERM: closing the listener"), "\(server)")
        #expect(server.lines.contains("closed #1: echoed 0 bytes"), "\(server)")
        #expect(client.waitForExit(timeout: 10) == 0, "the client saw close_notify: \(client)")
    }

    @Test("SIGINT stops an idle server at once (exit 0)")
    func sigint() throws {
        let pki = try PKI()
        defer { pki.work.remove() }
        let server = try pki.serve([])
        defer { server.terminate() }
        _ = try server.port()
        kill(server.pid, SIGINT)
        #expect(server.waitForExit(timeout: 10) == 0, "\(server)")
        #expect(server.standardError.contains("SIGINT: closing the listener"), "\(server)")
    }

    @Test("usage errors: --require-client-cert without --client-ca, an endpoint without a port")
    func usage() throws {
        let pki = try PKI()
        defer { pki.work.remove() }
        let serve = try pki.work.tlsctl(["serve", "--cert", "server-chain.pem", "--key", "server.key.pem", "--require-client-cert"])
        #expect(serve.exitCode == 64 && serve.standardError.contains("--require-client-cert needs --client-ca"), "\(serve)")
        let connect = try pki.work.tlsctl(["connect", "127.0.0.1"])
        #expect(connect.exitCode == 64, "\(connect)")
        let halfIdentity = try pki.work.tlsctl(["connect", "127.0.0.1:1", "--cert", "client.pem"])
        #expect(halfIdentity.exitCode == 64 && halfIdentity.standardError.contains("--cert and --key go together"), "\(halfIdentity)")
    }

    @Test("serve opens a passphrase-protected key with --passphrase-file, and says which option to fix when it is wrong")
    func passphraseProtectedKey() throws {
        let pki = try PKI()
        defer { pki.work.remove() }
        try pki.work.passphraseFile("right.pass", "correct horse")
        try pki.work.passphraseFile("wrong.pass", "wrong horse")
        try pki.work.succeed(["key", "generate", "--out", "locked.key.pem", "--passphrase-file", "right.pass"])
        try pki.work.succeed(["csr", "create", "--key", "locked.key.pem", "--passphrase-file", "right.pass", "--subject", "CN=locked.test",
                              "--dns", "locked.test", "--ip", "127.0.0.1", "--out", "locked.csr.pem"])
        try pki.work.succeed(["ca", "issue", "--ca", "root", "--csr", "locked.csr.pem", "--profile", "server", "--days", "7", "--out", "locked.pem"])

        let wrong = try pki.work.tlsctl(["serve", "--cert", "locked.pem", "--key", "locked.key.pem", "--passphrase-file", "wrong.pass", "--port", "0"], timeout: 30)
        #expect(wrong.exitCode == 1 && wrong.standardError.hasPrefix("tlsctl: error: cannot load private key locked.key.pem") &&
                wrong.standardError.contains("--passphrase-file"), "\(wrong)")

        let server = try BackgroundTLSCtl(["serve", "--cert", "locked.pem", "--key", "locked.key.pem", "--passphrase-file", "right.pass",
                                           "--port", "0", "--max-connections", "1"], directory: pki.work.path)
        defer { server.terminate() }
        let result = try pki.connect(try server.port(), ["--ca", "root/ca.pem"], input: "unlocked\n")
        #expect(result.exitCode == 0 && result.standardOutput == "unlocked\n", "\(result)")
        #expect(server.waitForExit(timeout: 15) == 0, "\(server)")
    }

    @Test("--help lists every serve and connect option")
    func help() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let serve = try work.succeed(["serve", "--help"]).standardOutput
        for option in ["--cert", "--key", "--passphrase-file", "--host", "--port", "--client-ca", "--require-client-cert", "--crls", "--alpn",
                       "--tls-version", "--max-connections"] {
            #expect(serve.contains(option), "serve --help lacks \(option):\n\(serve)")
        }
        let connect = try work.succeed(["connect", "--help"]).standardOutput
        for option in ["<host:port>", "--ca", "--cert", "--key", "--passphrase-file", "--servername", "--crls", "--alpn", "--tls-version",
                       "--insecure-no-verify"] {
            #expect(connect.contains(option), "connect --help lacks \(option):\n\(connect)")
        }
        let top = try work.succeed(["--help"]).standardOutput
        #expect(top.contains("serve") && top.contains("connect"), "\(top)")
    }

    @Test("tlsctl demo serves mutual TLS on 127.0.0.1 and shows the four refusals with their reasons")
    func demo() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try work.tlsctl(["demo"], timeout: 240)
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

/// `tlsctl` running in the background (a server): its output collected as it comes, every
/// wait bounded, and always stopped by its own pid (``terminate()``).
final class BackgroundTLSCtl: @unchecked Sendable, CustomStringConvertible {
    private let process = Process()
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()
    private var outClosed = false
    let arguments: [String]

    /// Kept open until the process ends when `holdStandardInput` is set.
    private let input = Pipe()

    /// Starts `executable` (tlsctl unless given) with `arguments` in `directory`, with
    /// `environment` added to this process's.
    init(_ arguments: [String], directory: String, holdStandardInput: Bool = false, environment: [String: String]? = nil,
         executable: String = BuiltProducts.tlsctl) throws {
        let binary = executable
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw TLSCtlNotBuilt(path: binary) }
        self.arguments = arguments
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardInput = holdStandardInput ? input : FileHandle.nullDevice
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        stdout.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            self.lock.lock(); defer { self.lock.unlock() }
            if data.isEmpty {
                self.outClosed = true
                handle.readabilityHandler = nil
            } else {
                self.out.append(data)
            }
        }
        stderr.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            self.lock.lock(); defer { self.lock.unlock() }
            if data.isEmpty { handle.readabilityHandler = nil } else { self.err.append(data) }
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    var standardOutput: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: out, as: UTF8.self)
    }

    var standardError: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: err, as: UTF8.self)
    }

    /// Complete stdout lines so far.
    var lines: [String] {
        let text = standardOutput
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline
        return lines
    }

    /// The port from the first line, `listening on 127.0.0.1:PORT`, within `timeout` seconds.
    func port(timeout: TimeInterval = 30) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let first = lines.first {
                guard first.hasPrefix("listening on "), let port = first.split(separator: ":").last.flatMap({ Int($0) }) else {
                    throw ServerDidNotStart(detail: "unexpected first line '\(first)': \(self)")
                }
                return port
            }
            if !process.isRunning { break }
            usleep(10_000)
        }
        throw ServerDidNotStart(detail: "no `listening on` line within \(timeout) s: \(self)")
    }

    /// The first complete stdout line starting with `prefix`, waiting at most `timeout` seconds.
    func waitForLine(prefix: String, timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = lines.first(where: { $0.hasPrefix(prefix) }) { return line }
            if !process.isRunning { break }
            usleep(10_000)
        }
        return lines.first { $0.hasPrefix(prefix) }
    }

    /// `waitForLine` for async tests: polls without blocking a thread of the cooperative
    /// pool (a blocked pool starves the test's own client tasks on a 2-core machine).
    func nextLine(prefix: String, timeout: TimeInterval) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = lines.first(where: { $0.hasPrefix(prefix) }) { return line }
            if !process.isRunning { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return lines.first { $0.hasPrefix(prefix) }
    }

    /// `port()` for async tests (see ``nextLine(prefix:timeout:)``).
    func listeningPort(timeout: TimeInterval = 30) async throws -> Int {
        guard let line = await nextLine(prefix: "", timeout: timeout) else {
            throw ServerDidNotStart(detail: "no `listening on` line within \(timeout) s: \(self)")
        }
        guard line.hasPrefix("listening on "), let port = line.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw ServerDidNotStart(detail: "unexpected first line '\(line)': \(self)")
        }
        return port
    }

    /// `waitForExit` for async tests (see ``nextLine(prefix:timeout:)``).
    func exitStatus(timeout: TimeInterval) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return process.isRunning ? nil : waitForExit(timeout: 0)
    }

    /// Waits at most `timeout` seconds for the process to exit by itself; its status, or nil.
    func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        // Let the readers take what is still in the pipe.
        let drain = Date().addingTimeInterval(2)
        while Date() < drain {
            lock.lock(); let done = outClosed; lock.unlock()
            if done { break }
            usleep(5_000)
        }
        return process.terminationStatus
    }

    /// Stops the process if it still runs: SIGTERM, then SIGKILL after 5 seconds.
    func terminate() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        if waitForExit(timeout: 5) == nil {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 5)
        }
    }

    var description: String {
        "`tlsctl \(arguments.joined(separator: " "))` \(process.isRunning ? "running" : "exited \(process.terminationStatus)")\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }
}

struct ServerDidNotStart: Error, CustomStringConvertible {
    var detail: String
    var description: String { "tlsctl serve did not start: \(detail)" }
}
