import Foundation
import GnuTLS
import Testing
import TestSupport

/// A temporary directory in which tests run `tlsctl` (the built binary, as a user would)
/// and independent tools such as `openssl`.
struct CLIWorkspace {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory(prefix: "tlsctl-test")
    }

    var path: String { directory.path }

    /// `path/name`.
    func file(_ name: String) -> String { directory.file(name) }

    /// Runs `tlsctl` with `arguments` in this directory. RSA key generation can take a few
    /// seconds on a busy machine, hence the generous timeout.
    @discardableResult
    func tlsctl(_ arguments: [String], timeout: TimeInterval = 180) async throws -> ProcessResult {
        let binary = BuiltProducts.tlsctl
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TLSCtlNotBuilt(path: binary)
        }
        return try await Tool.run([binary] + arguments, timeout: timeout, directory: path)
    }

    /// Runs `tlsctl` and records an issue unless it exits 0 with nothing on stderr.
    @discardableResult
    func succeed(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> ProcessResult {
        let result = try await tlsctl(arguments)
        #expect(result.exitCode == 0 && !result.timedOut, "\(result)", sourceLocation: sourceLocation)
        #expect(result.standardError.isEmpty, "\(result)", sourceLocation: sourceLocation)
        return result
    }

    /// Runs `tlsctl`, expecting it to fail with `exitCode` and exactly `stderr`.
    @discardableResult
    func fail(_ arguments: [String], exitCode: Int32 = 1, stderr expected: String? = nil,
              sourceLocation: SourceLocation = #_sourceLocation) async throws -> ProcessResult {
        let result = try await tlsctl(arguments)
        #expect(result.exitCode == exitCode && !result.timedOut, "\(result)", sourceLocation: sourceLocation)
        if let expected {
            #expect(result.standardError == expected + "\n", "\(result)", sourceLocation: sourceLocation)
        }
        #expect(!result.standardError.contains("Stack dump") && !result.standardError.contains("Fatal error"),
                "\(result)", sourceLocation: sourceLocation)
        return result
    }

    /// Runs an independent tool (openssl, certtool) in this directory; it must succeed.
    @discardableResult
    func tool(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> ProcessResult {
        let result = try await Tool.run(arguments, timeout: 120, directory: path)
        #expect(result.succeeded, "\(result)", sourceLocation: sourceLocation)
        return result
    }

    /// Writes a passphrase file (with a trailing newline, as editors and `echo` write it).
    @discardableResult
    func passphraseFile(_ name: String, _ passphrase: String) throws -> String {
        try directory.write(passphrase + "\n", to: name)
    }

    /// The file's permission bits.
    func mode(_ name: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: file(name))
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    func read(_ name: String) throws -> String { try directory.read(name) }

    /// Creates a root CA in `dir` (and its passphrase file `dir.pass` when `passphrase` is given).
    func makeRoot(_ dir: String, subject: String = "CN=Test Root CA,O=tlsctl tests", passphrase: String? = nil,
                  extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        var arguments = ["ca", "init", "--dir", dir, "--subject", subject] + extra
        if let passphrase {
            arguments += ["--passphrase-file", try passphraseFile("\(dir).pass", passphrase)]
        }
        try await succeed(arguments, sourceLocation: sourceLocation)
    }

    /// Creates a key and a request for `names` (`--dns`), returning the request's file name.
    @discardableResult
    func makeRequest(_ name: String, subject: String, dns: [String] = [], extra: [String] = [],
                     sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        try await succeed(["key", "generate", "--algorithm", "ecdsa-p256", "--out", "\(name).key.pem"], sourceLocation: sourceLocation)
        try await succeed(["csr", "create", "--key", "\(name).key.pem", "--subject", subject, "--out", "\(name).csr.pem"]
                        + dns.flatMap { ["--dns", $0] } + extra, sourceLocation: sourceLocation)
        return "\(name).csr.pem"
    }

    func remove() { directory.remove() }
}

/// The test run has no built `tlsctl` beside it.
struct TLSCtlNotBuilt: Error, CustomStringConvertible {
    var path: String
    var description: String { "tlsctl was not found at \(path): build it (`swift build --build-tests`) before `swift test`" }
}

/// Reading `tlsctl show` output: rows are `  Name: value`, names padded to align values.
enum ShowOutput {
    /// The values of every row called `name` (with or without a `(critical)` mark), in order.
    static func values(_ name: String, in output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            let trimmed = line.drop { $0 == " " }
            for label in ["\(name):", "\(name) (critical):"] where trimmed.hasPrefix(label) {
                return trimmed.dropFirst(label.count).trimmingCharacters(in: .whitespaces)
            }
            return nil
        }
    }

    /// The single value of the row called `name`, or `nil`.
    static func value(_ name: String, in output: String) -> String? {
        let all = values(name, in: output)
        return all.count == 1 ? all[0] : nil
    }
}

/// Colon-separated upper-case hex, the way `tlsctl show` and `openssl -fingerprint` print it.
func colonHex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
}

/// The error a throwing library call raises, for building the message tlsctl must print.
func libraryError(_ body: () throws -> Void) -> Error? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}
