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
                                              limits: TLSServerLimits(maxConnections: maxOpenConnections, maxConcurrentHandshakes: maxHandshakes),
                                              logger: session.makeLogger(label: "tlsctl.serve"))
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
