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

    @Option(help: ArgumentHelp("The client certificate's private key: a PEM file, or the pkcs11: URI of a key on a token (with --pin-file).", valueName: "file-or-uri"))
    var key: String?

    @Option(help: ArgumentHelp("File whose first line is the passphrase of --key.", valueName: "file"))
    var passphraseFile: String?

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("File whose first line is the token PIN, when --key is a pkcs11: URI.", valueName: "file"))
    var pinFile: String?

    @Option(help: ArgumentHelp("The PKCS#11 module (shared library) of the --key token, e.g. /usr/lib/softhsm/libsofthsm2.so; p11-kit's configured modules otherwise.", valueName: "path"))
    var module: String?

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
        let identity = try cert.map { try loadIdentity(certificate: $0, key: key!, passphraseFile: passphraseFile, pinFile: pinFile, module: module) }
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
            channel = try await SecureChannel.connect(host: endpoint.host, port: endpoint.port, context: tlsContext,
                                                      logger: session.makeLogger(label: "tlsctl.connect"))
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
