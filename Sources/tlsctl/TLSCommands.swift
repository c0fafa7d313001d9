import ArgumentParser
import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOGnuTLS
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// `tlsctl serve` and `tlsctl connect`: an echo server and a client on the library's
// `TLSServer` and `SecureChannel`. Everything TLS is a library call; this file only reads
// options, prints what the connection negotiated and who the peer is, and moves bytes.
//
// Exit status: 0 success; 1 a TLS or verification failure (the TLS error code and every
// verification problem on stderr, `tlsctl: TLS verificationFailed: [0] expired: …`) or any
// other error; 64 a usage error.

/// `--tls-version 1.2|1.3`: pins both the minimum and the maximum.
struct TLSVersionArgument: ExpressibleByArgument {
    var version: TLSVersion
    init?(argument: String) {
        switch argument {
        case "1.2", "tls1.2", "TLS1.2": version = .tls12
        case "1.3", "tls1.3", "TLS1.3": version = .tls13
        default: return nil
        }
    }
    static var allValueStrings: [String] { ["1.2", "1.3"] }
}

/// `--log-level trace|debug|info|notice|warning|error|critical`.
struct LogLevelArgument: ExpressibleByArgument {
    var level: Logger.Level
    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument.lowercased()) else { return nil }
        self.level = level
    }
    static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
}

/// Options both commands take for the TLS session itself.
struct SessionOptions: ParsableArguments {
    @Option(name: .customLong("tls-version"), help: ArgumentHelp("Only this TLS version: 1.2 or 1.3 (default: both).", valueName: "version"))
    var tlsVersion: TLSVersionArgument?

    @Option(help: ArgumentHelp("An ALPN protocol to offer, most preferred first (repeatable).", valueName: "protocol"))
    var alpn: [String] = []

    @Option(help: ArgumentHelp("PEM bundle of CRLs checked against the peer's chain (repeatable).", valueName: "file"))
    var crls: [String] = []

    @Option(help: ArgumentHelp("Close a connection after this many seconds without data either way; 0: never (default: 120 for serve, never for connect).",
                               valueName: "seconds"))
    var idleTimeout: Double?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("Log the library's events (handshakes, refusals with their reasons, expiring certificates) to stderr from this level on: trace, debug, info, notice, warning, error or critical (default: no log).", valueName: "level"))
    var logLevel: LogLevelArgument?

    /// The library's events on stderr (swift-log's stream handler), or `nil` without --log-level.
    func makeLogger(label: String) -> Logger? {
        guard let logLevel else { return nil }
        var logger = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = logLevel.level
        return logger
    }

    func validate() throws {
        if let idleTimeout, !(idleTimeout >= 0 && idleTimeout <= 86_400 * 365) {
            throw ValidationError("--idle-timeout must be a number of seconds between 0 and 31536000")
        }
    }

    func apply(to configuration: inout TLSConfiguration) {
        if let tlsVersion {
            configuration.minimumVersion = tlsVersion.version
            configuration.maximumVersion = tlsVersion.version
        }
        configuration.applicationProtocols = alpn
        if let idleTimeout {
            configuration.idleTimeout = idleTimeout > 0 ? .milliseconds(Int64((idleTimeout * 1000).rounded(.up))) : nil
        }
    }

    func addCRLs(to trust: inout TrustStore) throws {
        for path in crls {
            try context("cannot load CRLs from \(path) (--crls)") { try trust.addCRLs(contentsOfFile: path) }
        }
    }
}

/// Output for the TLS commands: whole lines, flushed at once (tests and scripts read them
/// from a pipe while the process runs).
enum TLSOutput {
    private static let lock = NSLock()

    /// The SNI name for the log: `none`, the name, or `too-long(N bytes)` for names over
    /// 255 bytes (no DNS name is that long; the bytes are not echoed into the log).
    static func serverName(_ name: String?) -> String {
        guard let name else { return "none" }
        return name.utf8.count > 255 ? "too-long(\(name.utf8.count) bytes)" : name
    }

    /// One line on stdout, flushed.
    static func line(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// The one-line reason for a failed connection: the TLS error code, then every
    /// verification problem with its chain position, or the error's sentence.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let failure as TLSError:
            if let verification = failure.verification, !verification.problems.isEmpty {
                return "TLS \(failure.code): " + verification.problems.map(\.description).joined(separator: "; ")
            }
            return "TLS \(failure.code): \(failure.message)"
        case let failure as GnuTLSError:
            return "error: \(failure.description)"
        case let failure as CLIError:
            return "error: \(failure.message)"
        default:
            return "error: \(error)"
        }
    }

    /// `subject="…" sans="…" sha256=…` for a peer, or `anonymous` when it sent no certificate.
    static func identity(_ info: ConnectionInfo) -> String {
        guard let leaf = info.peerCertificate else { return "client=anonymous" }
        let names = leaf.subjectAlternativeNames.map(\.description).joined(separator: ", ")
        return "subject=\"\(leaf.subject)\" sans=\"\(names)\" sha256=\(Format.colonHex(leaf.sha256Fingerprint))"
    }

    /// `'leaf' <- 'intermediate' <- 'root'`.
    static func chain(_ chain: VerifiedChain) -> String {
        chain.certificates.map { certificate in
            certificate.subject.commonName.map { "'\($0)'" } ?? "'\(certificate.subject)'"
        }.joined(separator: " <- ")
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`.
struct Endpoint: ExpressibleByArgument, CustomStringConvertible {
    var host: String
    var port: Int

    init?(argument: String) {
        let hostPart: Substring
        let portPart: Substring
        if argument.hasPrefix("[") {
            guard let close = argument.firstIndex(of: "]"), argument[argument.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = argument[argument.index(after: argument.startIndex)..<close]
            portPart = argument[argument.index(close, offsetBy: 2)...]
        } else {
            guard let colon = argument.lastIndex(of: ":"), !argument[..<colon].contains(":") else { return nil }
            hostPart = argument[..<colon]
            portPart = argument[argument.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (1...65535).contains(port) else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Loads `--cert` and `--key` into an identity.
/// A `pkcs11:` URI as `--key` opens the key on its token with `--pin-file`.
func loadIdentity(certificate: String, key: String, passphraseFile: String?, pinFile: String? = nil, module: String? = nil) throws -> TLSIdentity {
    let chain = try context("cannot load certificate chain \(certificate) (--cert)") { try Certificate.load(contentsOfFile: certificate) }
    guard !chain.isEmpty else { throw CLIError("\(certificate) (--cert) holds no certificate") }
    let signingKey = try Inputs.signingKey(key, passphraseFile: passphraseFile, pinFile: pinFile, module: module, passphraseOption: "--passphrase-file")
    return try TLSIdentity(chain: chain, key: signingKey)
}

extension Endpoint {
    static func format(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The write end of the signal pipe, for the C signal handler (set once, before any
/// handler is installed; an `Int32` is read atomically).
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// SIGINT/SIGTERM handling with the self-pipe trick: a process-wide `sigaction` handler
/// (whichever thread the kernel picks) writes the signal number to a pipe, and a thread of
/// its own reads it and calls `handler`. (A Dispatch signal source on Linux blocks the signal
/// only in its own thread: delivered to another, it would still kill the process.)
enum SignalHandlers {
    static func install(signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return }
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        signalPipeWriteEnd = ends[1]
        let readEnd = ends[0]
        let thread = Thread {
            var number: UInt8 = 0
            while true {
                let count = read(readEnd, &number, 1)
                if count == 1 {
                    handler(Int32(number))
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        thread.start()
        for number in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                var byte = UInt8(truncatingIfNeeded: signal)
                _ = write(signalPipeWriteEnd, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(number, &action, nil)
        }
    }
}
