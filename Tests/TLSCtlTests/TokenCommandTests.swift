import Foundation
import GnuTLS
import NIOGnuTLS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A SoftHSM2 token store of its own in a temporary directory: `SOFTHSM2_CONF` is set for
/// each child process (tlsctl, softhsm2-util, p11tool), never for this process. GnuTLS finds
/// SoftHSM through p11-kit's module configuration (Debian's softhsm2 registers it).
struct SoftHSM {
    static let pin = "1234"
    static let soPIN = "5678"
    let work: CLIWorkspace
    let environment: [String: String]

    /// Initializes one token per label, each with user PIN ``pin``; writes `pin` (the right
    /// PIN) and `wrong-pin` files.
    init(tokens: [String] = ["ca"]) async throws {
        work = try CLIWorkspace()
        let tokenDirectory = work.file("tokens")
        try FileManager.default.createDirectory(atPath: tokenDirectory, withIntermediateDirectories: true)
        let configuration = try work.directory.write("directories.tokendir = \(tokenDirectory)\nobjectstore.backend = file\nlog.level = ERROR\n", to: "softhsm2.conf")
        environment = ["SOFTHSM2_CONF": configuration]
        for label in tokens {
            let result = try await Tool.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", Self.pin, "--so-pin", Self.soPIN],
                                      timeout: 60, environment: environment, package: "softhsm2")
            #expect(result.succeeded, "\(result)")
        }
        _ = try work.directory.write(Self.pin + "\n", to: "pin")
        _ = try work.directory.write("0000\n", to: "wrong-pin")
    }

    /// Runs tlsctl with the token environment.
    @discardableResult
    func tlsctl(_ arguments: [String]) async throws -> ProcessResult {
        try await Tool.run([BuiltProducts.tlsctl] + arguments, timeout: 180, directory: work.path, environment: environment)
    }

    /// Runs tlsctl, which must succeed.
    @discardableResult
    func succeed(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> ProcessResult {
        let result = try await tlsctl(arguments)
        #expect(result.succeeded, "\(result)", sourceLocation: sourceLocation)
        return result
    }

    /// Runs a tool in the workspace with the token environment; it must succeed.
    @discardableResult
    func tool(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> ProcessResult {
        let result = try await Tool.run(arguments, timeout: 120, directory: work.path, environment: environment)
        #expect(result.succeeded, "\(result)", sourceLocation: sourceLocation)
        return result
    }

    /// The token's flags as p11tool prints them (`USER_PIN_COUNT_LOW`, …).
    func tokenFlags(_ label: String) async throws -> String {
        let result = try await Tool.run(["p11tool", "--list-token-urls", "--list-tokens"], timeout: 60, environment: environment, package: "gnutls-bin")
        let blocks = result.standardOutput.components(separatedBy: "Token ")
        return blocks.first { $0.contains("Label: \(label)\n") }.flatMap { block in
            block.split(separator: "\n").first { $0.contains("Flags:") }.map(String.init)
        } ?? ""
    }

    func remove() { work.remove() }
}

@Suite("tlsctl with keys on a PKCS#11 token (SoftHSM2)", .serialized)
struct TokenCommandTests {
    @Test("a root CA on the token issues an intermediate, a server and a client certificate and a CRL that openssl verifies")
    func tokenRoot() async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Token Root,O=tlsctl tests",
                         "--key-uri", "pkcs11:token=ca;object=root", "--pin-file", "pin"])
        #expect(FileManager.default.fileExists(atPath: hsm.work.file("root/ca.key.uri")))
        #expect(!FileManager.default.fileExists(atPath: hsm.work.file("root/ca.key.pem")))
        try await hsm.succeed(["ca", "intermediate", "--ca", "root", "--pin-file", "pin", "--dir", "issuing", "--subject", "CN=Token Issuing,O=tlsctl tests"])
        for (name, profile, names) in [("server", "server", ["--dns", "server.example.com"]), ("client", "client", ["--email", "alice@example.com"])] {
            try await hsm.succeed(["key", "generate", "--out", "\(name).key.pem"])
            try await hsm.succeed(["csr", "create", "--key", "\(name).key.pem", "--subject", "CN=\(name == "server" ? "server.example.com" : "alice")", "--out", "\(name).csr"] + names)
            try await hsm.succeed(["ca", "issue", "--ca", "root", "--pin-file", "pin", "--csr", "\(name).csr", "--profile", profile,
                             "--days", "30", "--out", "\(name).pem"])
        }
        for certificate in ["issuing/ca.pem", "server.pem", "client.pem"] {
            try await hsm.tool(["openssl", "verify", "-CAfile", "root/ca.pem", certificate])
            let lint = try await Tool.run(["lint_pkix_cert", "lint", "-s", "WARNING", hsm.work.file(certificate)], timeout: 120, package: "pkilint")
            #expect(lint.succeeded && lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(certificate) has findings: \(lint)")
        }
        try await hsm.succeed(["ca", "revoke", "--ca", "root", "--pin-file", "pin", "--cert", "client.pem"])
        try await hsm.succeed(["ca", "crl", "--ca", "root", "--pin-file", "pin", "--out", "root.crl"])
        try await hsm.tool(["openssl", "crl", "-in", "root.crl", "-CAfile", "root/ca.pem", "-verify", "-noout"])
    }

    @Test("key generate, csr create and key list with a token key", arguments: ["ecdsa-p256", "rsa-2048"])
    func tokenKeyRequest(_ algorithm: String) async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=leaf-\(algorithm)"
        try await hsm.succeed(["key", "generate", "--algorithm", algorithm, "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["csr", "create", "--key", uri, "--pin-file", "pin", "--subject", "CN=localhost", "--dns", "localhost", "--out", "leaf.csr"])
        try await hsm.tool(["openssl", "req", "-in", "leaf.csr", "-verify", "-noout"])
        let list = try await hsm.succeed(["key", "list", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--pin-file", "pin"])
        #expect(list.standardOutput.contains("object=leaf-\(algorithm)"), "\(list)")
    }

    @Test("ca init --existing-key uses a key already on the token; the CA signs through it after reloading")
    func existingKey() async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=made-earlier"
        try await hsm.succeed(["key", "generate", "--algorithm", "rsa-2048", "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Existing Key Root", "--key-uri", uri, "--pin-file", "pin", "--existing-key"])
        #expect(try hsm.work.read("root/ca.key.uri") == uri + "\n")
        try await hsm.succeed(["key", "generate", "--out", "leaf.key.pem"])
        try await hsm.succeed(["csr", "create", "--key", "leaf.key.pem", "--subject", "CN=leaf", "--email", "leaf@example.com", "--out", "leaf.csr"])
        // Without the PIN the CA cannot sign, and says how to fix it.
        let refused = try await hsm.tlsctl(["ca", "issue", "--ca", "root", "--csr", "leaf.csr", "--profile", "client", "--days", "7", "--out", "leaf.pem"])
        #expect(refused.exitCode == 1 && refused.standardError.contains("give the token PIN with --pin-file FILE"), "\(refused)")
        try await hsm.succeed(["ca", "issue", "--ca", "root", "--pin-file", "pin", "--csr", "leaf.csr", "--profile", "client", "--days", "7", "--out", "leaf.pem"])
        try await hsm.tool(["openssl", "verify", "-CAfile", "root/ca.pem", "leaf.pem"])
    }

    @Test("serve --key pkcs11: completes handshakes with openssl, gnutls-cli and tlsctl, TLS 1.2 and 1.3", arguments: ["ecdsa-p256", "rsa-2048"])
    func serveTokenKey(_ algorithm: String) async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=server"
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Serve Root"])
        try await hsm.succeed(["key", "generate", "--algorithm", algorithm, "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["csr", "create", "--key", uri, "--pin-file", "pin", "--subject", "CN=localhost", "--dns", "localhost", "--ip", "127.0.0.1", "--out", "server.csr"])
        try await hsm.succeed(["ca", "issue", "--ca", "root", "--csr", "server.csr", "--profile", "server", "--days", "7", "--out", "server.pem", "--chain-out", "server-chain.pem"])
        let server = try await BackgroundTLSCtl(["serve", "--cert", "server-chain.pem", "--key", uri, "--pin-file", "pin", "--port", "0"],
                                          directory: hsm.work.path, environment: hsm.environment)
        defer { server.terminate() }
        let port = try await server.port()
        for (openssl, gnutls) in [("-tls1_2", "NORMAL:-VERS-ALL:+VERS-TLS1.2"), ("-tls1_3", "NORMAL:-VERS-ALL:+VERS-TLS1.3")] {
            let s = try await Tool.run(["openssl", "s_client", "-connect", "127.0.0.1:\(port)", openssl, "-CAfile", hsm.work.file("root/ca.pem"),
                                  "-verify_return_error", "-servername", "localhost"], input: "ping\n", timeout: 30)
            #expect(s.succeeded && s.standardOutput.contains("Verify return code: 0"), "\(s)")
            let g = try await Tool.run(["gnutls-cli", "--port", "\(port)", "--x509cafile", hsm.work.file("root/ca.pem"), "--priority", gnutls,
                                  "--sni-hostname", "localhost", "--verify-hostname", "localhost", "127.0.0.1"], input: "ping\n", timeout: 30, package: "gnutls-bin")
            #expect(g.succeeded, "\(g)")
        }
        for version in ["1.2", "1.3"] {
            let c = try await Tool.run([BuiltProducts.tlsctl, "connect", "127.0.0.1:\(port)", "--ca", "root/ca.pem", "--tls-version", version],
                                 input: "ping\n", timeout: 30, directory: hsm.work.path)
            #expect(c.succeeded, "\(c)")
        }
    }

    @Test("a mutual-TLS client whose key is on the token is accepted by openssl s_server -Verify, TLS 1.2 and 1.3", arguments: ["-tls1_2", "-tls1_3"])
    func tokenClientAgainstOpenSSL(_ version: String) async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=client"
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Client Root"])
        try await hsm.succeed(["key", "generate", "--out", "server.key.pem"])
        try await hsm.succeed(["csr", "create", "--key", "server.key.pem", "--subject", "CN=server", "--ip", "127.0.0.1", "--out", "server.csr"])
        try await hsm.succeed(["ca", "issue", "--ca", "root", "--csr", "server.csr", "--profile", "server", "--days", "7", "--out", "server.pem"])
        try await hsm.succeed(["key", "generate", "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["csr", "create", "--key", uri, "--pin-file", "pin", "--subject", "CN=alice", "--email", "alice@example.com", "--out", "client.csr"])
        try await hsm.succeed(["ca", "issue", "--ca", "root", "--csr", "client.csr", "--profile", "client", "--days", "7", "--out", "client.pem", "--chain-out", "client-chain.pem"])
        let server = try await OpenSSLServer(["-Verify", "1", "-verify_return_error", version, "-CAfile", "root/ca.pem",
                                        "-cert", "server.pem", "-key", "server.key.pem", "-naccept", "1"], in: hsm.work)
        defer { server.stop() }
        let port = try await server.port()
        let connect = try await Tool.run([BuiltProducts.tlsctl, "connect", "127.0.0.1:\(port)", "--ca", "root/ca.pem", "--cert", "client-chain.pem",
                                    "--key", uri, "--pin-file", "pin"], input: "hello from the token\n", timeout: 30,
                                   directory: hsm.work.path, environment: hsm.environment)
        #expect(connect.succeeded, "\(connect)")
        #expect(await server.waitForExit(), "s_server did not finish its one connection: \(server.output)")
        #expect(server.output.contains("subject=CN = alice") && server.output.contains("hello from the token"), "\(server.output)")
    }

    @Test("a wrong PIN reaches the token once per operation (C_Login counted at the token) and is reported, never retried")
    func wrongPINOnce() async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=k"
        try await hsm.succeed(["key", "generate", "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Any Certificate"])
        #expect(try await !hsm.tokenFlags("ca").contains("low count"))
        // Every C_Login below GnuTLS and p11-kit is recorded by the shim, whatever they retry.
        let shim = try await PKCS11Shim(in: hsm.work.path)
        let csr = ["csr", "create", "--key", uri, "--module", shim.modulePath, "--subject", "CN=x", "--out", "x.csr"]
        for arguments in [csr + ["--pin-file", "wrong-pin"],
                          ["key", "list", "--module", shim.modulePath, "--uri", "pkcs11:token=ca", "--pin-file", "wrong-pin"],
                          // Any certificate: the key is opened (and refused) before they are paired.
                          ["serve", "--cert", "root/ca.pem", "--key", uri, "--module", shim.modulePath, "--pin-file", "wrong-pin", "--port", "0"]] {
            shim.resetLogins()
            let result = try await hsm.tlsctl(arguments)
            #expect(result.exitCode == 1, "\(result)")
            #expect(result.standardError.contains("the token refused the PIN (given to it once, not retried)"), "\(result)")
            // GnuTLS asks the PIN callback again after CKR_PIN_INCORRECT (attempt 1,
            // GNUTLS_PIN_WRONG); the callback refuses, so the token sees exactly one login.
            let logins = shim.logins()
            #expect(logins.count == 1 && logins.allSatisfy { $0.hasSuffix("rv=0xa0") }, "\(arguments[0]): \(logins)")
        }
        // The token saw the failures (SoftHSM flags a low count) and is not locked: the
        // right PIN still works, with one login.
        #expect(try await hsm.tokenFlags("ca").contains("low count"))
        shim.resetLogins()
        try await hsm.succeed(csr + ["--pin-file", "pin"])
        #expect(shim.logins().count == 1 && shim.logins().allSatisfy { $0.hasSuffix("rv=0x0") }, "\(shim.logins())")
        #expect(try await !hsm.tokenFlags("ca").contains("low count"))
    }

    @Test("a locked user PIN is a typed error that says how to unlock it: refused before any login when the token flags it, after one when C_Login answers CKR_PIN_LOCKED")
    func pinLocked() async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        let uri = "pkcs11:token=ca;object=k"
        try await hsm.succeed(["key", "generate", "--key-uri", uri, "--pin-file", "pin"])
        try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Any Certificate"])
        let shim = try await PKCS11Shim(in: hsm.work.path)
        let csr = ["csr", "create", "--key", uri, "--pin-file", "pin", "--module", shim.modulePath, "--subject", "CN=x", "--out", "x.csr"]
        let list = ["key", "list", "--module", shim.modulePath, "--uri", "pkcs11:token=ca", "--pin-file", "pin"]
        let serve = ["serve", "--cert", "root/ca.pem", "--key", uri, "--pin-file", "pin", "--module", shim.modulePath, "--port", "0"]
        // Through the shim, unlocked: the right PIN works.
        try await hsm.succeed(csr)
        let unlock = "unlock the token's user PIN with its security officer PIN"
        for (lock, logins) in [(PKCS11Shim.Lock.flag, 0), (.login, 1), (.both, 0)] {
            try shim.lock(lock)
            for arguments in [csr, list, serve] {
                shim.resetLogins()
                let result = try await hsm.tlsctl(arguments)
                #expect(result.exitCode == 1, "\(lock) \(arguments[0]): \(result)")
                #expect(result.standardError.contains("is locked (too many wrong PINs)") && result.standardError.contains(unlock),
                        "\(lock) \(arguments[0]): \(result)")
                #expect(!result.standardError.contains("Fatal error"), "\(result)")
                // A PIN flagged locked is never tried; a C_Login that answers locked is not retried.
                let seen = shim.logins()
                #expect(seen.count == logins && seen.allSatisfy { $0.hasSuffix("rv=0xa4") }, "\(lock) \(arguments[0]): \(seen)")
            }
        }
        try shim.lock(.none)
        try await hsm.succeed(csr)
    }

    /// A root, a key on the token and two certificates for it (A, then its renewal B), a
    /// certificate for another key, and the PKCS#11 shim counting logins; `chain.pem` holds A.
    struct TokenServer {
        static let uri = "pkcs11:token=ca;object=server"
        let hsm: SoftHSM
        let shim: PKCS11Shim
        let serialA: String
        let serialB: String

        init() async throws {
            hsm = try await SoftHSM()
            try await hsm.succeed(["ca", "init", "--dir", "root", "--subject", "CN=Token Reload Root"])
            try await hsm.succeed(["key", "generate", "--key-uri", Self.uri, "--pin-file", "pin"])
            try await hsm.succeed(["csr", "create", "--key", Self.uri, "--pin-file", "pin", "--subject", "CN=localhost", "--ip", "127.0.0.1", "--out", "server.csr"])
            for name in ["a", "b"] {
                try await hsm.succeed(["ca", "issue", "--ca", "root", "--csr", "server.csr", "--profile", "server", "--days", "7",
                                       "--out", "server-\(name).pem", "--chain-out", "chain-\(name).pem"])
            }
            try await hsm.succeed(["key", "generate", "--out", "other.key.pem"])
            try await hsm.succeed(["csr", "create", "--key", "other.key.pem", "--subject", "CN=other", "--ip", "127.0.0.1", "--out", "other.csr"])
            try await hsm.succeed(["ca", "issue", "--ca", "root", "--csr", "other.csr", "--profile", "server", "--days", "7", "--out", "other.pem"])
            serialA = try Self.serial(hsm.work.file("server-a.pem"))
            serialB = try Self.serial(hsm.work.file("server-b.pem"))
            shim = try await PKCS11Shim(in: hsm.work.path)
            try install("chain-a.pem", as: "chain.pem")
        }

        static func serial(_ path: String) throws -> String {
            try #require(try Certificate.load(contentsOfFile: path).first).serialNumber.hexString
        }

        /// Copies `source` to `name` by renaming a complete file into place.
        func install(_ source: String, as name: String) throws {
            let text = try hsm.work.read(source)
            _ = try hsm.work.directory.write(text, to: name + ".new")
            guard rename(hsm.work.file(name + ".new"), hsm.work.file(name)) == 0 else { throw CocoaError(.fileWriteUnknown) }
        }

        func serve(reloadInterval: String) async throws -> BackgroundTLSCtl {
            try await BackgroundTLSCtl(["serve", "--cert", "chain.pem", "--key", Self.uri, "--pin-file", "pin", "--module", shim.modulePath,
                                        "--port", "0", "--reload-interval", reloadInterval],
                                       directory: hsm.work.path, environment: hsm.environment)
        }

        /// The serial of the certificate the server at `port` presents now (a handshake
        /// signed on the token).
        func servedSerial(_ port: Int) async throws -> String? {
            let trust = TrustStore(certificates: try Certificate.load(contentsOfFile: hsm.work.file("root/ca.pem")))
            let context = try TLSContext(configuration: .makeClientConfiguration(trustStore: trust))
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
            let serial = channel.info.peerCertificate?.serialNumber.hexString
            try await channel.executeThenClose { _, _ in }
            return serial
        }
    }

    /// The `count`th line of `server` that starts with `reload` (woken by each output).
    func reloadLine(_ count: Int, of server: BackgroundTLSCtl) async -> String? {
        try? await server.process.waitFor("reload line \(count)", timeout: 60) { process in
            process.lines.filter { $0.hasPrefix("reload") }.dropFirst(count - 1).first
        }
    }

    @Test("serve --key pkcs11: reloads a renewed chain on SIGHUP (the key opened again on the token); a certificate for another key is refused and the served one kept; reloads need no new login")
    func serveTokenKeySIGHUP() async throws {
        let setup = try await TokenServer()
        defer { setup.hsm.remove() }
        let server = try await setup.serve(reloadInterval: "0")
        defer { server.terminate() }
        let port = try await server.port()
        #expect(try await setup.servedSerial(port) == setup.serialA)
        let loginsAtStart = setup.shim.logins().count

        try setup.install("chain-b.pem", as: "chain.pem")
        kill(server.pid, SIGHUP)
        #expect(await reloadLine(1, of: server) == "reloaded identity: serial \(setup.serialB)", "\(server)")
        #expect(try await setup.servedSerial(port) == setup.serialB)
        let loginsPerReload = setup.shim.logins().count - loginsAtStart

        try setup.install("other.pem", as: "chain.pem")
        kill(server.pid, SIGHUP)
        let mismatch = await reloadLine(2, of: server)
        #expect(mismatch?.hasPrefix("reload refused: ") == true && mismatch?.hasSuffix("; keeping \(setup.serialB)") == true, "\(server)")
        #expect(try await setup.servedSerial(port) == setup.serialB)

        // The served key keeps the token logged in (PKCS#11 login state belongs to the
        // process, not to one session): the key opened again at a reload needs no login, so
        // reloads never spend the token's PIN tries, and a wrong PIN in the (watched) PIN
        // file never reaches the token while the server runs.
        #expect(loginsAtStart == 1 && loginsPerReload == 0, "at start: \(loginsAtStart), per reload: \(loginsPerReload)")
        try setup.install("chain-b.pem", as: "chain.pem")
        try setup.install("wrong-pin", as: "pin")
        setup.shim.resetLogins()
        kill(server.pid, SIGHUP)
        #expect(await reloadLine(3, of: server) == "reloaded identity: serial \(setup.serialB)", "\(server)")
        #expect(setup.shim.logins().isEmpty, "\(setup.shim.logins())")
        #expect(try await setup.servedSerial(port) == setup.serialB)
        #expect(server.lines.filter { $0.hasPrefix("reload") }.count == 3, "one line per attempt: \(server)")
    }

    @Test("serve --key pkcs11: reloads by itself when the chain file changes (--reload-interval)")
    func serveTokenKeyFileChange() async throws {
        let setup = try await TokenServer()
        defer { setup.hsm.remove() }
        let server = try await setup.serve(reloadInterval: "0.05")
        defer { server.terminate() }
        let port = try await server.port()
        #expect(try await setup.servedSerial(port) == setup.serialA)
        try setup.install("chain-b.pem", as: "chain.pem")
        #expect(await reloadLine(1, of: server) == "reloaded identity: serial \(setup.serialB)", "\(server)")
        #expect(try await setup.servedSerial(port) == setup.serialB)
    }

    @Test("typed errors: token not present, object not found, PIN required, module not found, mechanism not supported, key does not match the certificate")
    func negativeErrors() async throws {
        let hsm = try await SoftHSM()
        defer { hsm.remove() }
        try await hsm.succeed(["key", "generate", "--key-uri", "pkcs11:token=ca;object=k", "--pin-file", "pin"])
        let cases: [([String], String)] = [
            (["csr", "create", "--key", "pkcs11:token=nosuch;object=k", "--pin-file", "pin", "--subject", "CN=x", "--out", "x.csr"],
             "no token matching pkcs11:token=nosuch is present"),
            (["csr", "create", "--key", "pkcs11:token=ca;object=missing", "--pin-file", "pin", "--subject", "CN=x", "--out", "x.csr"],
             "no such object on the token"),
            (["csr", "create", "--key", "pkcs11:token=ca;object=k", "--subject", "CN=x", "--out", "x.csr"],
             "the token needs a PIN and none was given"),
            (["key", "list", "--module", "/nonexistent/libpkcs11.so"],
             "PKCS#11 module /nonexistent/libpkcs11.so was not found"),
            // SoftHSM 2.6 has no EdDSA key generation.
            (["key", "generate", "--algorithm", "ed25519", "--key-uri", "pkcs11:token=ca;object=ed", "--pin-file", "pin"],
             "the token does not support this mechanism"),
            (["key", "generate", "--key-uri", "pkcs11:token=ca;object=k", "--pin-file", "pin"],
             "a private key matching pkcs11:token=ca;object=k is already on the token"),
            (["serve", "--cert", "other.pem", "--key", "pkcs11:token=ca;object=k", "--pin-file", "pin", "--port", "0"],
             "the private key does not match certificate 'CN=Other'"),
        ]
        // A certificate for another key, to pair with the token key.
        try await hsm.succeed(["ca", "init", "--dir", "other-ca", "--subject", "CN=Other CA"])
        try await hsm.succeed(["key", "generate", "--out", "other.key.pem"])
        try await hsm.succeed(["csr", "create", "--key", "other.key.pem", "--subject", "CN=Other", "--dns", "other.example.com", "--out", "other.csr"])
        try await hsm.succeed(["ca", "issue", "--ca", "other-ca", "--csr", "other.csr", "--profile", "server", "--days", "7", "--out", "other.pem"])
        for (arguments, reason) in cases {
            let result = try await hsm.tlsctl(arguments)
            #expect(result.exitCode != 0 && result.standardError.contains(reason), "\(result)")
            #expect(!result.standardError.contains("Fatal error"), "\(result)")
        }
    }
}

/// `openssl s_server` on a port it picks on 127.0.0.1, its standard input held open (it
/// quits at end of input), run as a ``BackgroundProcess`` and stopped by its process group.
final class OpenSSLServer: Sendable {
    private let process: BackgroundProcess

    init(_ arguments: [String], in work: CLIWorkspace) async throws {
        process = try await BackgroundProcess(["openssl", "s_server", "-accept", "127.0.0.1:0"] + arguments, directory: work.path)
    }

    var output: String { process.output }

    /// The port from s_server's `ACCEPT 127.0.0.1:PORT` line (woken by each output; the
    /// timeout is a safety net).
    func port(timeout: TimeInterval = 120) async throws -> Int {
        do {
            return try await process.waitFor("an ACCEPT line", timeout: timeout) { process in
                process.lines.first { $0.hasPrefix("ACCEPT") }.flatMap { $0.split(separator: ":").last.flatMap { Int($0) } }
            }
        } catch {
            throw ServerDidNotStart(detail: "openssl s_server printed no ACCEPT line: \(error)")
        }
    }

    /// Whether s_server exited on its own (woken by its exit; the timeout is a safety net).
    func waitForExit(timeout: TimeInterval = 120) async -> Bool {
        await process.waitForExit(timeout: timeout) != nil
    }

    func stop() { process.stop() }
}
