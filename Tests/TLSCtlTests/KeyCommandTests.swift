import Foundation
import GnuTLS
import Testing
import TestSupport

@Suite("tlsctl key generate")
struct KeyCommandTests {
    @Test("generates each algorithm as a PKCS#8 key, mode 0600, that openssl reads", arguments: KeyAlgorithm.allCases)
    func generate(algorithm: KeyAlgorithm) throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try work.succeed(["key", "generate", "--algorithm", algorithm.rawValue, "--out", "key.pem"])
        #expect(try work.mode("key.pem") == 0o600)
        #expect(try work.read("key.pem").hasPrefix(PEMText.header("PRIVATE KEY")))

        // The library reads back a key of the algorithm asked for.
        let key = try KeyPair(contentsOfFile: work.file("key.pem"))
        #expect(key.keyDescription.algorithm == algorithm)
        #expect(result.standardOutput.contains("Public key SHA-256: \(colonHex(key.publicKey.sha256Fingerprint))"), "\(result)")

        // openssl, independently, finds the same public key and size.
        let publicKey = try work.tool(["openssl", "pkey", "-in", "key.pem", "-pubout"]).standardOutput
        #expect(publicKey == key.publicKey.pemEncoded)
        let text = try work.tool(["openssl", "pkey", "-in", "key.pem", "-noout", "-text"]).standardOutput
        if algorithm == .ed25519 {
            #expect(text.hasPrefix("ED25519 Private-Key:"), "\(text)")
        } else {
            #expect(text.contains("Private-Key: (\(key.keyDescription.bits) bit"), "\(text)")
        }
    }

    @Test("the default algorithm is ECDSA P-256")
    func defaultAlgorithm() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try work.succeed(["key", "generate", "--out", "key.pem"])
        #expect(try KeyPair(contentsOfFile: work.file("key.pem")).keyDescription.algorithm == .ecdsaP256)
    }

    @Test("--passphrase-file encrypts the key; the file's trailing newline is not part of the passphrase")
    func encrypted() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let passphrase = "correct horse \(UUID().uuidString)"
        let file = try work.passphraseFile("pass.txt", passphrase)
        let result = try work.succeed(["key", "generate", "--algorithm", "ecdsa-p384", "--out", "key.pem", "--passphrase-file", file])
        #expect(result.standardOutput.contains("(encrypted)"))
        #expect(try work.mode("key.pem") == 0o600)
        #expect(try work.read("key.pem").hasPrefix(PEMText.header("ENCRYPTED PRIVATE KEY")))

        // openssl opens it with the passphrase without the newline, and not without it.
        try work.tool(["openssl", "pkey", "-in", "key.pem", "-passin", "pass:\(passphrase)", "-noout"])
        let wrong = try Tool.run(["openssl", "pkey", "-in", "key.pem", "-passin", "pass:\(passphrase)\n", "-noout"], directory: work.path)
        #expect(!wrong.succeeded, "\(wrong)")
        // PBES2 with AES-256, as the library promises.
        let info = try work.tool(["openssl", "asn1parse", "-in", "key.pem"]).standardOutput
        #expect(info.contains("PBES2") && info.contains("aes-256-cbc"), "\(info)")

        // The library opens it with the same passphrase.
        #expect(try KeyPair(contentsOfFile: work.file("key.pem"), passphrase: passphrase).keyDescription.algorithm == .ecdsaP384)
    }

    @Test("a Windows line ending is stripped from a passphrase file too")
    func crlfPassphrase() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try work.directory.write("secret-crlf\r\n", to: "pass.txt")
        try work.succeed(["key", "generate", "--out", "key.pem", "--passphrase-file", "pass.txt"])
        try work.tool(["openssl", "pkey", "-in", "key.pem", "-passin", "pass:secret-crlf", "-noout"])
    }

    @Test("an empty or missing passphrase file is an error, and no key is written")
    func badPassphraseFile() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try work.directory.write("\n", to: "empty.txt")
        try work.fail(["key", "generate", "--out", "key.pem", "--passphrase-file", "empty.txt"],
                      stderr: "tlsctl: error: passphrase file empty.txt (--passphrase-file) is empty: write the passphrase on its first line")
        try work.directory.write("", to: "zero.txt")
        try work.fail(["key", "generate", "--out", "key.pem", "--passphrase-file", "zero.txt"],
                      stderr: "tlsctl: error: passphrase file zero.txt (--passphrase-file) is empty: write the passphrase on its first line")
        try work.fail(["key", "generate", "--out", "key.pem", "--passphrase-file", "absent.txt"],
                      stderr: "tlsctl: error: cannot read passphrase file absent.txt (--passphrase-file): no such file")
        #expect(!work.exists("key.pem"))
    }

    @Test("an unknown algorithm, or neither --out nor --key-uri, is a usage error (exit 64)")
    func usageErrors() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let unknown = try work.fail(["key", "generate", "--algorithm", "dsa-1024", "--out", "key.pem"], exitCode: 64)
        #expect(unknown.standardError.contains("'dsa-1024' is invalid for '--algorithm <algorithm>'"), "\(unknown)")
        for algorithm in KeyAlgorithm.allCases {
            #expect(unknown.standardError.contains(algorithm.rawValue), "the message lists \(algorithm)")
        }
        let missing = try work.fail(["key", "generate"], exitCode: 64)
        #expect(missing.standardError.contains("give exactly one of --out (a key file) and --key-uri (a key on a token)"), "\(missing)")
        #expect(!work.exists("key.pem"))
    }

    @Test("a key cannot be written into a directory that does not exist")
    func unwritable() throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try work.fail(["key", "generate", "--out", "no/such/dir/key.pem"])
        #expect(result.standardError.hasPrefix("tlsctl: error: cannot write no/such/dir/key.pem: "), "\(result)")
    }
}
