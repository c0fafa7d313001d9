import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Helpers shared by every tlsctl command: reading passphrase files, loading keys, requests
// and authorities with messages that name the file, writing files (keys with mode 0600),
// and turning library errors into one line on stderr and an exit code.
//
// Exit codes (documented in the README):
//   0  success
//   1  an error: a refused request (IssuanceError), a wrong or missing passphrase, a file
//      that cannot be read, parsed or written
//   64 a usage error: an unknown option or value, a missing required option
//      (swift-argument-parser's `ExitCode.validationFailure`, EX_USAGE)

/// A failure tlsctl reports itself: one line on stderr, exit code 1.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Writing to the terminal.
enum Console {
    /// Writes `text` and a newline to standard error, with control and bidirectional
    /// characters escaped (``safe(_:)``): messages quote hostile requests and files.
    static func error(_ text: String) {
        FileHandle.standardError.write(Data((safe(text) + "\n").utf8))
    }

    /// `text` with every control character but the line feed, and every bidirectional
    /// formatting character, written as `\u{…}`: a NUL, an escape sequence or a
    /// right-to-left override quoted from a hostile input cannot reach the terminal.
    static func safe(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { Escaping.escaped(String($0)) }.joined(separator: "\n")
    }

    /// Turns an error from a command into what the user sees: library errors and
    /// ``CLIError``s become `tlsctl: error: …` (or `tlsctl: refused (reason): …` for a policy
    /// refusal) on stderr and exit code 1; swift-argument-parser's own errors (usage errors,
    /// `--help`, `ExitCode`) pass through unchanged so it prints and exits as usual.
    static func report(_ error: Error) -> Error {
        switch error {
        case let refusal as IssuanceError:
            Console.error("tlsctl: refused (\(refusal.reason)): \(refusal.message)")
        case let failure as GnuTLSError:
            Console.error("tlsctl: error: \(failure.description)")
        case let failure as CLIError:
            Console.error("tlsctl: error: \(failure.message)")
        case is ExitCode, is CleanExit, is ValidationError:
            return error
        default:
            // Argument parsing errors are internal types of swift-argument-parser: let it
            // format them. Anything else is reported in one line, never as a stack trace.
            let typeName = String(reflecting: type(of: error))
            if typeName.hasPrefix("ArgumentParser.") { return error }
            Console.error("tlsctl: error: \(error)")
        }
        return ExitCode.failure
    }
}

/// Runs `body`, turning a library error into a ``CLIError`` that says what tlsctl was doing
/// (`what`), then the library's own words, then a hint for the error's code, if any.
func context<T>(_ what: String, hint: [GnuTLSError.Code: String] = [:], _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as GnuTLSError {
        var message = "\(what): \(error.description)"
        if let extra = hint[error.code] { message += "; \(extra)" }
        throw CLIError(message)
    }
}

/// Passphrase files: the first line of a file, without its trailing newline.
enum Passphrase {
    /// Reads the passphrase in `path`. One trailing newline (`\n` or `\r\n`) is stripped;
    /// everything else, spaces included, is part of the passphrase.
    static func read(_ path: String, option: String) throws -> String {
        guard let data = Inputs.readFile(path) else {
            throw CLIError("cannot read passphrase file \(path) (\(option)): \(FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file")")
        }
        var bytes = [UInt8](data)
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard !text.isEmpty else {
            throw CLIError("passphrase file \(path) (\(option)) is empty: write the passphrase on its first line")
        }
        return text
    }

    /// Reads `path` when given.
    static func read(ifGiven path: String?, option: String) throws -> String? {
        guard let path else { return nil }
        return try read(path, option: option)
    }
}

/// Loading inputs with messages that name the file and the option to fix.
enum Inputs {
    /// The bytes of the file at `path`, or `nil` when it cannot be read. (Not
    /// `FileManager.contents(atPath:)`: swift-foundation 6.3 leaks its 4 KiB read buffer
    /// for an empty file, which LeakSanitizer reports; `FileHandle` does not.)
    static func readFile(_ path: String) -> Data? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        do {
            return try handle.readToEnd() ?? Data()  // nil at once: an empty file
        } catch {
            return nil
        }
    }

    /// Loads a private key, telling the user which option gives its passphrase.
    static func key(at path: String, passphraseFile: String?, passphraseOption: String) throws -> KeyPair {
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: passphraseOption)
        return try context("cannot load private key \(path)", hint: [
            .passphraseRequired: "give it with \(passphraseOption) FILE",
            .wrongPassphrase: "check \(passphraseOption)",
        ]) {
            try KeyPair(contentsOfFile: path, passphrase: passphrase)
        }
    }

    /// A token PIN from `--pin-file`, or no PIN.
    static func pin(file: String?) throws -> PKCS11PIN {
        guard let file else { return .none }
        return try context("cannot read the PIN file \(file) (--pin-file)") { try PKCS11PIN.file(file) }
    }

    /// What to tell the user for each token failure.
    static let tokenHints: [GnuTLSError.Code: String] = [
        .pinRequired: "give the token PIN with --pin-file FILE",
        .wrongPIN: "check --pin-file",
        .pinLocked: "unlock the token's user PIN with its security officer PIN",
        .tokenNotPresent: "check the token= part of the URI, the PKCS#11 module, or SOFTHSM2_CONF",
        .objectNotFound: "check the object= part of the URI (tlsctl key list shows the token's keys)",
        .moduleNotFound: "check the module path",
    ]

    /// Loads `--key`: a `pkcs11:` URI opens a key on a token (PIN from `--pin-file`), anything
    /// else is a key file (passphrase from `passphraseOption`). `module`: a PKCS#11 module to
    /// load first (`--module`).
    static func signingKey(_ key: String, passphraseFile: String?, pinFile: String?, module: String? = nil, passphraseOption: String) throws -> any SigningKey {
        guard key.hasPrefix("pkcs11:") else {
            if module != nil { throw CLIError("--module loads the PKCS#11 module of a token key: it goes with --key pkcs11:…") }
            return try self.key(at: key, passphraseFile: passphraseFile, passphraseOption: passphraseOption)
        }
        let pin = try pin(file: pinFile)
        return try context("cannot open token key \(key)", hint: tokenHints) { try PKCS11Key(uri: key, pin: pin, module: module) }
    }

    /// Loads a CA directory (`ca.pem`, `ca.key.pem` or `ca.key.uri`, `chain.pem`).
    static func authority(at directory: String, passphraseFile: String?, pinFile: String? = nil) throws -> LocalAuthority {
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--ca-passphrase-file")
        let pin = try pin(file: pinFile)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("CA directory \(directory) does not exist: create one with `tlsctl ca init --dir \(directory) …`")
        }
        return try context("cannot open CA in \(directory)", hint: [
            .passphraseRequired: "give it with --ca-passphrase-file FILE",
            .wrongPassphrase: "check --ca-passphrase-file",
        ].merging(tokenHints) { $1 }) {
            try LocalAuthority.load(from: directory, passphrase: passphrase, pin: pin)
        }
    }

    /// Loads a certificate request (PEM or DER).
    static func request(at path: String) throws -> CertificateRequest {
        try context("cannot load certificate request \(path)") {
            try CertificateRequest(contentsOfFile: path)
        }
    }

    /// Parses an RFC 4514 subject.
    static func subject(_ text: String) throws -> DistinguishedName {
        try context("invalid --subject '\(text)'") { try DistinguishedName(text) }
    }

    /// Name constraints from the `--permit-*` / `--exclude-*` options.
    static func nameConstraints(_ options: NameConstraintOptions) throws -> NameConstraints? {
        func networks(_ values: [String], _ option: String) throws -> [IPNetwork] {
            try values.map { value in
                guard let network = IPNetwork(value) else {
                    throw CLIError("\(option) '\(value)' is not an IP network: write 10.0.0.0/8 or fd00::/8")
                }
                return network
            }
        }
        let constraints = NameConstraints(
            permittedDNSDomains: options.permitDNS, excludedDNSDomains: options.excludeDNS,
            permittedIPRanges: try networks(options.permitIP, "--permit-ip"),
            excludedIPRanges: try networks(options.excludeIP, "--exclude-ip"),
            permittedEmailAddresses: options.permitEmail, excludedEmailAddresses: options.excludeEmail)
        return constraints.isEmpty ? nil : constraints
    }
}

/// Name-constraint options shared by `ca init` and `ca intermediate`.
struct NameConstraintOptions: ParsableArguments {
    @Option(name: .customLong("permit-dns"), help: ArgumentHelp("A DNS subtree certificates below may use (example.com: the domain and its subdomains; .example.com: subdomains only). Repeatable.", valueName: "domain"))
    var permitDNS: [String] = []

    @Option(name: .customLong("exclude-dns"), help: ArgumentHelp("A DNS subtree certificates below may not use. Repeatable.", valueName: "domain"))
    var excludeDNS: [String] = []

    @Option(name: .customLong("permit-ip"), help: ArgumentHelp("An IP range certificates below may use (10.0.0.0/8). Repeatable.", valueName: "network"))
    var permitIP: [String] = []

    @Option(name: .customLong("exclude-ip"), help: ArgumentHelp("An IP range certificates below may not use. Repeatable.", valueName: "network"))
    var excludeIP: [String] = []

    @Option(name: .customLong("permit-email"), help: ArgumentHelp("A mailbox, host (example.com) or domain (.example.com) email names below may use. Repeatable.", valueName: "email"))
    var permitEmail: [String] = []

    @Option(name: .customLong("exclude-email"), help: ArgumentHelp("A mailbox, host or domain email names below may not use. Repeatable.", valueName: "email"))
    var excludeEmail: [String] = []
}

/// Writing outputs.
enum Outputs {
    /// Writes `text` to `path` atomically through the library's one file writer
    /// (`O_EXCL`, the final mode from the start: 0600 for `secret` files, `fsync`, rename).
    static func write(_ text: String, to path: String, secret: Bool = false) throws {
        do {
            try FileIO.write(text, to: path, secret: secret)
        } catch let error as GnuTLSError {
            throw CLIError(error.message)
        }
    }

    /// Checks, before anything is signed, that `path` can be written: its directory exists
    /// and is writable, and `path` is not a directory. (Writing can still fail later, for
    /// a full disk; callers then say what was issued.)
    static func requireWritable(_ path: String, option: String) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("cannot write \(option) \(path): directory \(directory) does not exist")
        }
        guard access(directory, W_OK | X_OK) == 0 else {
            throw CLIError("cannot write \(option) \(path): directory \(directory) is not writable (\(String(cString: strerror(errno))))")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CLIError("cannot write \(option) \(path): it is a directory")
        }
    }

    /// Refuses to overwrite a CA directory that already holds a CA.
    static func requireNewAuthorityDirectory(_ directory: String) throws {
        let certificate = (directory as NSString).appendingPathComponent(LocalAuthority.DirectoryLayout.certificate)
        let key = (directory as NSString).appendingPathComponent(LocalAuthority.DirectoryLayout.key)
        if FileManager.default.fileExists(atPath: certificate) || FileManager.default.fileExists(atPath: key) {
            throw CLIError("\(directory) already holds a CA (\(LocalAuthority.DirectoryLayout.certificate) or \(LocalAuthority.DirectoryLayout.key) exists): choose another --dir; tlsctl never overwrites a CA")
        }
    }
}

/// Text formatting for `show` and `demo`.
enum Format {
    /// Upper-case hex pairs joined by colons (fingerprints, key identifiers, serials).
    static func colonHex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
    }

    /// `2026-11-29 01:55:14 UTC`.
    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }
}

extension KeyAlgorithm: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
