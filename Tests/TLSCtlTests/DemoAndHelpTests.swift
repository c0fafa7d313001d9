import Foundation
import GnuTLS
import Testing
import TestSupport

@Suite("tlsctl demo")
struct DemoTests {
    @Test("builds root -> intermediate -> server and client, prints each step, and every check passes")
    func demo() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.succeed(["demo", "--dir", "pki"])
        let output = result.standardOutput
        for step in ["[1] Root CA", "[2] Intermediate CA", "[3] Server certificate", "[4] Client certificate", "Checking the chains",
                     "Verifying the chains with the library's verifier", "ok   verifies server certificate for server.demo.test",
                     "ok   verifies client certificate", "ok   rejects server certificate for www.example.com"] {
            #expect(output.contains(step), "demo output lacks \(step):\n\(output)")
        }
        #expect(!output.contains("FAIL"), "\(output)")
        let summary = try #require(output.split(separator: "\n").first { $0.hasPrefix("Demo checks: ") })
        #expect(summary.hasSuffix(" passed, 0 failed"), "\(summary)")

        // What it built verifies with independent tools, for the right purposes.
        for (leaf, purpose) in [("server", "sslserver"), ("client", "sslclient")] {
            let verify = try await work.tool(["openssl", "verify", "-CAfile", "pki/root/ca.pem", "-untrusted", "pki/intermediate/ca.pem",
                                        "-purpose", purpose, "pki/\(leaf).pem"])
            #expect(verify.standardOutput == "pki/\(leaf).pem: OK\n", "\(verify)")
            let certtool = try await work.tool(["certtool", "--verify", "--load-ca-certificate", "pki/root/ca.pem", "--infile", "pki/\(leaf)-chain.pem"])
            #expect(certtool.standardOutput.contains("Chain verification output: Verified."), "\(certtool)")
            #expect(try work.mode("pki/\(leaf).key.pem") == 0o600)
            #expect(try KeyPair(contentsOfFile: work.file("pki/\(leaf).key.pem")).publicKey
                    == (try Certificate(pemEncoded: work.read("pki/\(leaf).pem")).publicKey))
        }
        for certificate in ["pki/root/ca.pem", "pki/intermediate/ca.pem", "pki/server.pem", "pki/client.pem"] {
            try await expectLintClean(certificate, in: work)
        }
        // The CA directories open with the passphrase file the demo wrote, through tlsctl itself.
        let request = try await work.makeRequest("extra", subject: "CN=extra.demo.test", dns: ["extra.demo.test"])
        try await work.succeed(["ca", "issue", "--ca", "pki/intermediate", "--ca-passphrase-file", "pki/ca-passphrase.txt", "--csr", request,
                          "--profile", "server", "--days", "7", "--out", "extra.pem"])
    }

    @Test("without --dir it works in a temporary directory, removed at the end unless --keep is given", arguments: [false, true])
    func temporary(keep: Bool) async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let output = try await work.succeed(["demo"] + (keep ? ["--keep"] : [])).standardOutput
        let firstLine = try #require(output.split(separator: "\n").first)
        let directory = try #require(firstLine.split(separator: " ").last.map(String.init))
        if keep {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            #expect(FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("server-chain.pem")), "\(output)")
            #expect(output.contains("The files are in \(directory)"), "\(output)")
        } else {
            #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) was left behind")
        }
    }
}

@Suite("tlsctl --help")
struct HelpTests {
    /// Every command, and the options its help must list.
    static let commands: [([String], [String])] = [
        ([], ["key", "csr", "ca", "show", "demo", "64"]),
        (["key"], ["generate"]),
        (["key", "generate"], ["--algorithm", "--out", "--passphrase-file", "ecdsa-p256", "rsa-4096", "ed25519"]),
        (["csr"], ["create"]),
        (["csr", "create"], ["--key", "--passphrase-file", "--subject", "--dns", "--ip", "--email", "--uri", "--out"]),
        (["ca"], ["init", "intermediate", "issue"]),
        (["ca", "init"], ["--dir", "--subject", "--algorithm", "--days", "--passphrase-file", "--path-length", "--permit-dns", "--exclude-dns"]),
        (["ca", "intermediate"], ["--ca", "--ca-passphrase-file", "--dir", "--subject", "--path-length", "--permit-dns", "--exclude-dns",
                                  "--passphrase-file", "--algorithm", "--days"]),
        (["ca", "issue"], ["--ca", "--ca-passphrase-file", "--csr", "--profile", "--days", "--out", "--chain-out", "--crl-url", "--ocsp-url",
                           "server-client"]),
        (["show"], ["--passphrase-file"]),
        (["demo"], ["--dir", "--keep"]),
    ]

    @Test("every command has --help listing its options", arguments: commands.indices)
    func help(index: Int) async throws {
        let (command, options) = Self.commands[index]
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.succeed(command + ["--help"])
        #expect(result.standardOutput.hasPrefix("OVERVIEW: "), "\(result)")
        #expect(result.standardOutput.contains("USAGE: tlsctl \(command.joined(separator: " "))"), "\(result)")
        for option in options {
            #expect(result.standardOutput.contains(option), "`tlsctl \(command.joined(separator: " ")) --help` lacks \(option)")
        }
    }

    @Test("an unknown command is a usage error (exit 64)")
    func unknownCommand() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.fail(["sign-everything"], exitCode: 64)
        #expect(result.standardError.contains("Unexpected argument 'sign-everything'"), "\(result)")
    }
}
