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
            SIGINT or SIGTERM stops accepting and gives open connections 5 seconds to finish. \
            The certificate chain, key, --client-ca and --crls files are read again on SIGHUP \
            and when they change (checked every --reload-interval seconds); each attempt prints \
            one line: `reloaded identity: serial HEX` (with the client CA and CRL counts when \
            --client-ca is given), or `reload refused: REASON; keeping HEX`, in which case new \
            connections keep the previous certificate. Open connections keep the certificate \
            they started with. A --key pkcs11: URI is opened again on the token at each reload \
            (with --pin-file read again; the chain and PIN files are watched). With \
            --ocsp-staple the files are not reloaded.
            """)

    @Option(help: ArgumentHelp("PEM file with the server's certificate chain, leaf first.", valueName: "file"))
    var cert: String

    @Option(help: ArgumentHelp("The server's private key: a PEM file, or the pkcs11: URI of a key on a token (with --pin-file).", valueName: "file-or-uri"))
    var key: String

    @Option(help: ArgumentHelp("File whose first line is the passphrase of --key.", valueName: "file"))
    var passphraseFile: String?

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("File whose first line is the token PIN, when --key is a pkcs11: URI.", valueName: "file"))
    var pinFile: String?

    @Option(help: ArgumentHelp("The PKCS#11 module (shared library) of the --key token, e.g. /usr/lib/softhsm/libsofthsm2.so; p11-kit's configured modules otherwise.", valueName: "path"))
    var module: String?

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

    @Option(help: ArgumentHelp("Check the certificate, key, CA and CRL files for changes this often; 0: only on SIGHUP (default: 2).", valueName: "seconds"))
    var reloadInterval: Double = 2

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
        guard reloadInterval >= 0 && reloadInterval <= 86_400 else {
            throw ValidationError("--reload-interval must be a number of seconds between 0 and 86400")
        }
    }

    func makeConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(identity: try loadIdentity(certificate: cert, key: key, passphraseFile: passphraseFile, pinFile: pinFile, module: module))
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
        let stapleRefresher = try await OCSPStapleOption.apply(ocspStaple, issuerFile: ocspIssuer, to: &configuration)
        defer { stapleRefresher?.stop() }
        let tlsContext = try context("invalid server configuration") { try TLSContext(configuration: configuration) }
        let watcher = try makeWatcher(configuration)
        let provider: any TLSContextProvider = watcher ?? tlsContext
        let server: TLSServer
        do {
            server = try await TLSServer.bind(host: host, port: port, contextProvider: provider,
                                              limits: TLSServerLimits(maxConnections: maxOpenConnections, maxConcurrentHandshakes: maxHandshakes),
                                              drainTimeout: .seconds(5), logger: session.makeLogger(label: "tlsctl.serve"))
        } catch {
            throw CLIError("cannot listen on \(Endpoint.format(host: host, port: port)): \(error)")
        }
        let polling = reloadInterval > 0 ? watcher.map { watcher in Task { try await watcher.run() } } : nil
        defer { polling?.cancel() }
        let counter = ConnectionCounter(limit: maxConnections)
        let stop: @Sendable () -> Void = { Task { try? await server.close() } }
        SignalHandlers.install(signals: [SIGINT, SIGTERM, SIGHUP]) { signal in
            guard signal != SIGHUP else {
                if let watcher {
                    watcher.reload()
                } else {
                    let serial = tlsContext.configuration.identities.first?.leaf.serialNumber.hexString ?? "none"
                    TLSOutput.line("reload refused: --ocsp-staple staples one response, fixed at start; keeping \(serial)")
                }
                return
            }
            Console.error("tlsctl: \(signal == SIGINT ? "SIGINT" : "SIGTERM"): closing the listener; open connections get 5 seconds")
            // The server's graceful shutdown: the listener closes now, connections still open
            // after 5 seconds are closed with close_notify. Exit even if that hangs.
            server.shutDownGracefully()
            DispatchQueue.global().asyncAfter(deadline: .now() + 7) { Foundation.exit(0) }
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
            let number = counter.next()
            let remote = channel.channel.remoteAddress.map { Endpoint.format(host: $0.ipAddress ?? "?", port: $0.port ?? 0) } ?? "?"
            let info = channel.info
            TLSOutput.line("accepted #\(number) from \(remote): version=\(info.protocolVersion) cipher=\(info.cipherSuite) alpn=\(info.applicationProtocol ?? "none") resumed=\(info.isResumed ? "yes" : "no") sni=\(TLSOutput.serverName(info.serverName)) \(TLSOutput.identity(info))")
            defer { if counter.isDone(number) { stop() } }
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

    /// The file watcher behind SIGHUP and --reload-interval, printing one line per reload
    /// attempt; `nil` with --ocsp-staple (its response is fetched or read once, at start).
    /// A key on a token is opened again by its URI at each reload (its module is loaded
    /// already, by the first load).
    func makeWatcher(_ configuration: TLSConfiguration) throws -> TLSFileWatcher? {
        guard ocspStaple == nil else { return nil }
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--passphrase-file")
        let counts = clientCA != nil
        return try context("cannot watch the server's files") {
            try TLSFileWatcher(
                configuration: configuration,
                identities: [TLSIdentityFiles(chainPath: cert, keyPath: key, passphrase: passphrase, pinPath: pinFile)],
                trustStoreFile: clientCA, crlFiles: session.crls,
                pollInterval: .milliseconds(Int64((max(reloadInterval, 0.01) * 1000).rounded())),
                onReload: { event in TLSOutput.line(Self.reloadLine(event, counts: counts)) })
        }
    }

    /// `reloaded identity: serial HEX[; client CAs: N; CRLs: M]` or
    /// `reload refused: REASON; keeping HEX`.
    static func reloadLine(_ event: TLSReloadEvent, counts: Bool) -> String {
        let serial = event.serials.map(\.hexString).joined(separator: ",")
        if let error = event.error {
            return "reload refused: \(error.message); keeping \(serial.isEmpty ? "none" : serial)"
        }
        var line = "reloaded identity: serial \(serial)"
        if counts, let trust = event.context.configuration.trustStore {
            line += "; client CAs: \(trust.certificates.count); CRLs: \(trust.crls.count)"
        }
        return line
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// Numbers connections and says when `--max-connections` is reached.
final class ConnectionCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var finished = 0
    let limit: Int?

    init(limit: Int?) { self.limit = limit }

    /// The next connection's number (1, 2, …).
    func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        count += 1
        return count
    }

    /// Records that connection `number` is over; true when it is the last one allowed.
    func isDone(_ number: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        finished += 1
        guard let limit else { return false }
        return finished >= limit
    }
}
