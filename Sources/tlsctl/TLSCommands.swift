import ArgumentParser
import Foundation
import GnuTLS
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
func loadIdentity(certificate: String, key: String, passphraseFile: String?) throws -> TLSIdentity {
    let chain = try context("cannot load certificate chain \(certificate) (--cert)") { try Certificate.load(contentsOfFile: certificate) }
    guard !chain.isEmpty else { throw CLIError("\(certificate) (--cert) holds no certificate") }
    let keyPair = try Inputs.key(at: key, passphraseFile: passphraseFile, passphraseOption: "--passphrase-file")
    return try TLSIdentity(chain: chain, key: keyPair)
}

// MARK: - serve

/// `tlsctl serve`: an echo server over TLS or mutual TLS.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a TLS (or mutual-TLS) echo server that logs each peer's identity.",
        discussion: """
            Binds 127.0.0.1 unless --host names another address, and prints \
            `listening on HOST:PORT` once bound (--port 0 picks a free port). Every connection \
            is logged as one line on stdout: `accepted` with the version, cipher, ALPN \
            protocol, resumption and the client's subject, alternative names and SHA-256 \
            fingerprint (or `client=anonymous`), or `refused` with the reason. Whatever a \
            client sends is sent back. With --client-ca, clients may present certificates \
            that chain to it; with --require-client-cert as well, they must (mutual TLS). \
            SIGINT or SIGTERM stops accepting and gives open connections 5 seconds to finish.
            """)

    @Option(help: ArgumentHelp("PEM file with the server's certificate chain, leaf first.", valueName: "file"))
    var cert: String

    @Option(help: ArgumentHelp("The server's private key (PEM).", valueName: "file"))
    var key: String

    @Option(help: ArgumentHelp("File whose first line is the passphrase of --key.", valueName: "file"))
    var passphraseFile: String?

    @Option(help: ArgumentHelp("Address to bind (default: the loopback address 127.0.0.1).", valueName: "address"))
    var host: String = "127.0.0.1"

    @Option(help: ArgumentHelp("Port to listen on; 0 picks a free one.", valueName: "port"))
    var port: Int = 8443

    @Option(name: .customLong("client-ca"), help: ArgumentHelp("PEM bundle of CAs client certificates must chain to (asks clients for certificates).", valueName: "file"))
    var clientCA: String?

    @Flag(help: "Refuse clients without a valid certificate (needs --client-ca).")
    var requireClientCert = false

    @OptionGroup var session: SessionOptions

    @Option(help: ArgumentHelp("Exit (status 0) after this many connections, served or refused.", valueName: "n"))
    var maxConnections: Int?

    @Option(name: .customLong("ocsp-staple"), help: ArgumentHelp("Staple this OCSP response (DER or PEM), or 'auto': fetch it from the leaf's OCSP URL at start. It must verify and say good.", valueName: "file|auto"))
    var ocspStaple: String?

    @Option(name: .customLong("ocsp-issuer"), help: ArgumentHelp("The leaf's issuer certificate, to verify the stapled response when --cert holds only the leaf.", valueName: "file"))
    var ocspIssuer: String?

    @Option(help: ArgumentHelp("Hold at most this many connections open at once; more wait in the listen backlog (default: no limit).", valueName: "n"))
    var maxOpenConnections: Int?

    @Option(help: ArgumentHelp("Run at most this many handshakes at once; more wait in the listen backlog (default: no limit).", valueName: "n"))
    var maxHandshakes: Int?

    func validate() throws {
        if requireClientCert && clientCA == nil {
            throw ValidationError("--require-client-cert needs --client-ca: the CAs client certificates must chain to")
        }
        if !session.crls.isEmpty && clientCA == nil {
            throw ValidationError("--crls needs --client-ca: CRLs are checked against client certificates")
        }
        if let maxConnections, maxConnections < 1 {
            throw ValidationError("--max-connections must be at least 1")
        }
        if let maxOpenConnections, maxOpenConnections < 1 {
            throw ValidationError("--max-open-connections must be at least 1")
        }
        if let maxHandshakes, maxHandshakes < 1 {
            throw ValidationError("--max-handshakes must be at least 1")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
    }

    func makeConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(identity: try loadIdentity(certificate: cert, key: key, passphraseFile: passphraseFile))
        if let clientCA {
            var trust = try context("cannot load client CAs from \(clientCA) (--client-ca)") { try TrustStore(contentsOfFile: clientCA) }
            guard !trust.certificates.isEmpty else { throw CLIError("\(clientCA) (--client-ca) holds no certificate") }
            try session.addCRLs(to: &trust)
            configuration.trustStore = trust
            configuration.clientCertificates = requireClientCert ? .required : .optional
        }
        session.apply(to: &configuration)
        return configuration
    }

    func run() async throws {
        var configuration = try makeConfiguration()
        try await OCSPStapleOption.apply(ocspStaple, issuerFile: ocspIssuer, to: &configuration)
        let tlsContext = try context("invalid server configuration") { try TLSContext(configuration: configuration) }
        let server: TLSServer
        do {
            server = try await TLSServer.bind(host: host, port: port, context: tlsContext,
                                              limits: TLSServerLimits(maxConnections: maxOpenConnections, maxConcurrentHandshakes: maxHandshakes))
        } catch {
            throw CLIError("cannot listen on \(Endpoint.format(host: host, port: port)): \(error)")
        }
        let counter = ConnectionCounter(limit: maxConnections)
        let stop: @Sendable () -> Void = { Task { try? await server.close() } }
        SignalHandlers.install(signals: [SIGINT, SIGTERM]) { signal in
            Console.error("tlsctl: \(signal == SIGINT ? "SIGINT" : "SIGTERM"): closing the listener; open connections get 5 seconds")
            stop()
            DispatchQueue.global().asyncAfter(deadline: .now() + 5) {
                // Still open: close them (close_notify), and exit even if that hangs.
                counter.closeAll()
                DispatchQueue.global().asyncAfter(deadline: .now() + 2) { Foundation.exit(0) }
            }
        }

        // Announced only now, so a signal sent as soon as the line is read is handled.
        let bound = server.localAddress
        TLSOutput.line("listening on \(Endpoint.format(host: bound?.ipAddress ?? host, port: server.port))")
        if !Self.isLoopback(host) {
            Console.error("tlsctl: warning: listening on \(host), which is not a loopback address: other machines can connect")
        }

        try await server.serve(onFailure: { error in
            let number = counter.next()
            TLSOutput.line("refused #\(number): \(TLSOutput.reason(error))")
            if counter.isDone(number) { stop() }
        }, handler: { channel in
            let number = counter.next(channel)
            let remote = channel.channel.remoteAddress.map { Endpoint.format(host: $0.ipAddress ?? "?", port: $0.port ?? 0) } ?? "?"
            let info = channel.info
            TLSOutput.line("accepted #\(number) from \(remote): version=\(info.protocolVersion) cipher=\(info.cipherSuite) alpn=\(info.applicationProtocol ?? "none") resumed=\(info.isResumed ? "yes" : "no") sni=\(TLSOutput.serverName(info.serverName)) \(TLSOutput.identity(info))")
            defer { if counter.isDone(number) { stop() } }
            defer { counter.remove(number) }
            do {
                let bytes = try await channel.executeThenClose { inbound, outbound in
                    var total = 0
                    for try await chunk in inbound {
                        total += chunk.readableBytes
                        try await outbound.write(chunk)
                    }
                    return total
                }
                TLSOutput.line("closed #\(number): echoed \(bytes) bytes")
            } catch {
                TLSOutput.line("closed #\(number): \(TLSOutput.reason(error))")
            }
        })
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

extension Endpoint {
    static func format(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Numbers connections, keeps the open ones, and says when `--max-connections` is reached.
final class ConnectionCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var finished = 0
    private var open: [Int: SecureChannel] = [:]
    let limit: Int?

    init(limit: Int?) { self.limit = limit }

    /// The next connection's number (1, 2, …), remembering `channel` while it is open.
    func next(_ channel: SecureChannel? = nil) -> Int {
        lock.lock(); defer { lock.unlock() }
        count += 1
        open[count] = channel
        return count
    }

    /// Connection `number` is closed.
    func remove(_ number: Int) {
        lock.lock(); defer { lock.unlock() }
        open[number] = nil
    }

    /// Closes every open connection (each sends close_notify).
    func closeAll() {
        lock.lock()
        let channels = Array(open.values)
        lock.unlock()
        for channel in channels { channel.channel.close(promise: nil) }
    }

    /// Records that connection `number` is over; true when it is the last one allowed.
    func isDone(_ number: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        finished += 1
        guard let limit else { return false }
        return finished >= limit
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

// MARK: - connect

/// `tlsctl connect`: a TLS client that prints the connection and pipes stdin/stdout.
struct ConnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Connect over TLS, show the server's identity and verification, and pipe stdin/stdout.",
        discussion: """
            The server is verified (chain to --ca, or to the system's CAs without it; host \
            name; purpose; validity; CRLs given with --crls) before any byte is sent. What was \
            negotiated, the server's identity and `verification: ok` go to stderr; stdout \
            carries only the server's bytes. Standard input is sent until end of file, then \
            close_notify; the command ends when the server closes. A TLS or verification \
            failure exits 1 with the TLS error code and every verification problem, e.g. \
            `tlsctl: TLS verificationFailed: [0] nameMismatch: …`.
            """)

    @Argument(help: ArgumentHelp("The server: HOST:PORT or [IPv6]:PORT.", valueName: "host:port"))
    var endpoint: Endpoint

    @Option(help: ArgumentHelp("PEM bundle of CAs the server must chain to (default: the system's).", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("Client certificate chain (PEM, leaf first), for servers that ask.", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("The client certificate's private key (PEM).", valueName: "file"))
    var key: String?

    @Option(help: ArgumentHelp("File whose first line is the passphrase of --key.", valueName: "file"))
    var passphraseFile: String?

    @Option(help: ArgumentHelp("Name sent in SNI and verified in the certificate (default: HOST).", valueName: "name"))
    var servername: String?

    @OptionGroup var session: SessionOptions

    @Flag(name: .customLong("insecure-no-verify"), help: "Do not verify the server at all (INSECURE: anyone can impersonate it).")
    var insecureNoVerify = false

    @Option(help: ArgumentHelp("OCSP revocation checking: off, soft (refuse only a definite revoked) or hard (every certificate below the anchor needs a fresh good answer from a staple, a CRL or its OCSP responder). Must-staple certificates need a valid staple in every mode.", valueName: "off|soft|hard"))
    var ocsp: RevocationCheckingMode = .off
    @Flag(name: .customLong("web-pki"), help: "Verify the server with the CA/Browser Forum Web PKI rules on top of RFC 5280 + RFC 9525.")
    var webPKI = false

    func validate() throws {
        if (cert == nil) != (key == nil) {
            throw ValidationError("--cert and --key go together: the client certificate and its private key")
        }
        if insecureNoVerify && (ca != nil || !session.crls.isEmpty) {
            throw ValidationError("--insecure-no-verify turns verification off: --ca and --crls would be ignored")
        }
    }

    func makeConfiguration() throws -> TLSConfiguration {
        var trust: TrustStore = .system
        if let ca {
            trust = try context("cannot load CAs from \(ca) (--ca)") { try TrustStore(contentsOfFile: ca) }
            guard !trust.certificates.isEmpty else { throw CLIError("\(ca) (--ca) holds no certificate") }
        }
        try session.addCRLs(to: &trust)
        let identity = try cert.map { try loadIdentity(certificate: $0, key: key!, passphraseFile: passphraseFile) }
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust, identity: identity)
        configuration.serverName = servername
        if insecureNoVerify { configuration.peerVerification = .insecureNoVerification }
        configuration.ocspRevocation = ocsp
        if webPKI { configuration.verificationProfile = .webPKI }
        session.apply(to: &configuration)
        return configuration
    }

    func run() async throws {
        let configuration = try makeConfiguration()
        let tlsContext = try context("invalid client configuration") { try TLSContext(configuration: configuration) }
        let channel: SecureChannel
        do {
            channel = try await SecureChannel.connect(host: endpoint.host, port: endpoint.port, context: tlsContext)
        } catch let error as TLSError {
            Console.error("tlsctl: \(TLSOutput.reason(error))")
            throw ExitCode.failure
        } catch {
            throw CLIError("cannot connect to \(endpoint): \(error)")
        }
        report(channel.info, configuration: configuration)
        do {
            try await pipe(channel)
        } catch {
            Console.error("tlsctl: \(TLSOutput.reason(error))")
            throw ExitCode.failure
        }
    }

    /// What was negotiated and who the server is, on stderr.
    func report(_ info: ConnectionInfo, configuration: TLSConfiguration) {
        let name = configuration.serverName ?? endpoint.host
        Console.error("connected to \(endpoint) (server name \(name))")
        Console.error("version: \(info.protocolVersion)")
        Console.error("cipher: \(info.cipherSuite)")
        Console.error("alpn: \(info.applicationProtocol ?? "none")")
        Console.error("resumed: \(info.isResumed ? "yes" : "no")")
        if let leaf = info.peerCertificate {
            Console.error("server subject: \(leaf.subject)")
            Console.error("server names: \(leaf.subjectAlternativeNames.map(\.description).joined(separator: ", "))")
            Console.error("server sha256: \(Format.colonHex(leaf.sha256Fingerprint))")
            Console.error("server valid until: \(Format.date(leaf.notValidAfter))")
        }
        if configuration.peerVerification == .insecureNoVerification {
            Console.error("verification: DISABLED (--insecure-no-verify): the server was not verified, anyone could be on the other end")
            return
        }
        if let chain = info.verifiedChain {
            Console.error("verified chain: \(TLSOutput.chain(chain))")
        }
        let trust = ca.map { "the CAs in \($0)" } ?? "the system's CAs"
        let crls = session.crls.isEmpty ? "" : ", not revoked (\(session.crls.joined(separator: ", ")))"
        Console.error("verification: ok (chain to \(trust), host name \(name), purpose serverAuth, validity\(crls))")
    }

    /// Sends stdin to the server (then close_notify) and the server's bytes to stdout,
    /// until the server closes.
    func pipe(_ channel: SecureChannel) async throws {
        let input = StandardInput.chunks()
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await chunk in input {
                        do {
                            try await outbound.write(ByteBuffer(bytes: chunk))
                        } catch {
                            // The server went away; the read side reports why.
                            return false
                        }
                    }
                    try? await channel.channel.close(mode: .output)
                    return false
                }
                group.addTask {
                    for try await chunk in inbound {
                        try FileHandle.standardOutput.write(contentsOf: Data(chunk.readableBytesView))
                    }
                    return true
                }
                // Done when the server's side ends; stdin may still be open.
                while let readerFinished = try await group.next() {
                    if readerFinished {
                        group.cancelAll()
                        return
                    }
                }
            }
        }
    }
}

/// Standard input as an async sequence of chunks, read on a thread of its own (a blocking
/// read must not hold a thread of the cooperative pool).
enum StandardInput {
    static func chunks() -> AsyncStream<[UInt8]> {
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count > 0 {
                    continuation.yield(Array(buffer[..<count]))
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            continuation.finish()
        }
        thread.start()
        return stream
    }
}
