import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

// Shared by TLSInteropTests and TLSNegativeTests: a run-time PKI written to files, real peer
// programs running in the background (stopped by their own pid), our TLSServer with a
// recorder, and deadlines for everything that waits.

/// The versions every case that applies to both runs in.
let tlsVersions: [TLSVersion] = [.tls12, .tls13]

extension TLSVersion {
    /// `openssl s_server` / `s_client` flag that pins the version.
    var opensslFlag: String { self == .tls13 ? "-tls1_3" : "-tls1_2" }
    /// A GnuTLS priority string (for gnutls-cli / gnutls-serv) that allows only this version.
    var gnutlsPriority: String { "NORMAL:-VERS-ALL:" + (self == .tls13 ? "+VERS-TLS1.3" : "+VERS-TLS1.2") }
    /// How OpenSSL, curl and Python print the version.
    var opensslName: String { self == .tls13 ? "TLSv1.3" : "TLSv1.2" }
    /// curl flags that pin the version.
    var curlFlags: [String] { self == .tls13 ? ["--tlsv1.3", "--tls-max", "1.3"] : ["--tlsv1.2", "--tls-max", "1.2"] }
    /// Python's `ssl.TLSVersion` member.
    var pythonName: String { self == .tls13 ? "TLSv1_3" : "TLSv1_2" }
}

// MARK: PKI

/// A root and an issuing CA (saved to a directory, so it has a ledger and can revoke), a
/// server certificate for localhost and 127.0.0.1 and a client certificate, every file an
/// external peer needs written as PEM.
struct TLSTestPKI: Sendable {
    static let clientSubject = "CN=client-1,OU=Interop,O=Example TLS"
    static let serverSubject = "CN=localhost,O=Example TLS"

    let directory: TemporaryDirectory
    let root: LocalAuthority
    let issuing: LocalAuthority
    let server: TLSIdentity
    let client: TLSIdentity

    init(name: String = "Interop") throws {
        directory = try TemporaryDirectory(prefix: "tls-interop")
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=\(name) TLS Root,O=Example TLS"))
        let issuing = try root.createIntermediate(subject: try DistinguishedName("CN=\(name) TLS Issuing CA,O=Example TLS"), pathLength: 0)
        try issuing.save(to: directory.file("issuing-ca"), passphrase: nil)
        self.issuing = issuing
        server = try Self.issue(by: issuing, subject: Self.serverSubject,
                                names: [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)], profile: .tlsServer)
        client = try Self.issue(by: issuing, subject: Self.clientSubject, names: [.uri("spiffe://example.org/client-1")], profile: .tlsClient)
        try directory.write(root.certificate.pemEncoded, to: "root.pem")
        try directory.write(issuing.certificate.pemEncoded, to: "issuing.pem")
        try directory.write(try issuing.key.pemEncodedForTests(), to: "issuing.key.pem")
        try write(server, as: "server")
        try write(client, as: "client")
    }

    /// A certificate for a new ECDSA P-256 key, with the chain a peer sends.
    static func issue(by authority: LocalAuthority, subject: String, names: [GeneralName], profile: CertificateProfile,
                      options: IssuanceOptions = IssuanceOptions(validityDays: 90)) throws -> TLSIdentity {
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
        return TLSIdentity(chain: try authority.issueWithChain(request, profile: profile, options: options), key: key)
    }

    /// Writes `NAME.pem` (leaf), `NAME-chain.pem` (leaf and intermediates) and `NAME.key.pem`.
    func write(_ identity: TLSIdentity, as name: String) throws {
        try directory.write(identity.leaf.pemEncoded, to: "\(name).pem")
        try directory.write(identity.chain.map(\.pemEncoded).joined(), to: "\(name)-chain.pem")
        try directory.write(try identity.key.pemEncodedForTests(), to: "\(name).key.pem")
    }

    func path(_ name: String) -> String { directory.file(name) }

    /// Trusts this PKI's root.
    var trust: TrustStore { TrustStore(certificates: [root.certificate]) }

    /// A server configuration pinned to `version`, mutual TLS when `mutual`.
    func serverConfiguration(_ version: TLSVersion, mutual: Bool = false) -> TLSConfiguration {
        var configuration = mutual
            ? TLSConfiguration.makeMutualTLSServerConfiguration(identity: server, clientTrustStore: trust)
            : TLSConfiguration.makeServerConfiguration(identity: server)
        configuration.minimumVersion = version
        configuration.maximumVersion = version
        return configuration
    }

    /// A client configuration pinned to `version` that trusts this PKI (and presents the
    /// client certificate when `mutual`).
    func clientConfiguration(_ version: TLSVersion, mutual: Bool = false) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust, identity: mutual ? client : nil)
        configuration.minimumVersion = version
        configuration.maximumVersion = version
        return configuration
    }
}

extension SigningKey {
    /// The PEM of a software key (every authority in these tests has one).
    func pemEncodedForTests() throws -> String {
        guard let pair = self as? KeyPair else { throw PeerError("the authority key is not an in-memory key pair") }
        return try pair.pemEncoded()
    }
}

/// A failure of the test harness itself (a peer that did not start, a deadline), with the
/// peer's output in the message.
struct PeerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: Deadlines

/// Runs `body`, failing with a ``PeerError`` when it takes longer than `seconds`.
func withDeadline<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw PeerError("\(what) did not finish within \(seconds) s")
        }
        return value
    }
}

/// `Tool.run` on a thread outside Swift's cooperative pool, so a slow program never starves
/// the in-process server it talks to.
func runTool(_ arguments: [String], input: String? = nil, timeout: TimeInterval = 30, package: String? = nil) async throws -> ProcessResult {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try Tool.run(arguments, input: input, timeout: timeout, package: package) })
        }
    }
}

// MARK: Peer programs

/// A program running in the background (a server, or a client we talk to through its
/// standard input), its output line-buffered (`stdbuf -oL`) into files. ``stop()`` ends it
/// by its own pid: SIGTERM, then SIGKILL. Call it in a `defer`.
final class PeerProcess: @unchecked Sendable {
    let command: [String]
    private let process = Process()
    private let input = Pipe()
    private let outputPath: String
    private let errorPath: String

    init(_ arguments: [String], in directory: TemporaryDirectory, package: String? = nil) throws {
        // Writing to a peer that already exited must be an error, not a SIGPIPE for the test runner.
        signal(SIGPIPE, SIG_IGN)
        let executable = try Tool.locate(arguments[0], package: package)
        let stdbuf = try Tool.locate("stdbuf", package: "coreutils")
        command = [executable] + arguments.dropFirst()
        let name = "\((arguments[0] as NSString).lastPathComponent)-\(UUID().uuidString.prefix(8))"
        outputPath = directory.file("\(name).out")
        errorPath = directory.file("\(name).err")
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: stdbuf)
        process.arguments = ["-oL", "-eL"] + command
        process.standardInput = input
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var exitCode: Int32? { process.isRunning ? nil : process.terminationStatus }
    var standardOutput: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    var standardError: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }
    /// Standard output and error together.
    var output: String { standardOutput + standardError }

    /// The command and what it printed, for failure messages.
    var transcript: String {
        "`\(command.joined(separator: " "))` (pid \(pid), \(isRunning ? "running" : "exited \(process.terminationStatus)"))\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }

    /// Writes `text` to the program's standard input.
    func send(_ text: String) {
        try? input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
    }

    func closeInput() {
        try? input.fileHandleForWriting.close()
    }

    /// Waits until the output contains `marker`. The output is looked at once more after
    /// the deadline, so a starved task (a busy machine) never misses what was printed.
    @discardableResult
    func waitForOutput(_ marker: String, timeout: Double = 30) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let running = isRunning
            let text = output
            if text.contains(marker) { return text }
            if !running { throw PeerError("exited before printing '\(marker)': \(transcript)") }
            if Date() >= deadline { throw PeerError("did not print '\(marker)' within \(timeout) s: \(transcript)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until the program exits; `false` when it is still running after `timeout`.
    @discardableResult
    func waitForExit(timeout: Double = 30) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning {
            if Date() >= deadline { return false }
            try await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// Ends the program by its pid (SIGTERM, then SIGKILL after a short grace period: a child
    /// started from a thread that blocks SIGTERM inherits the blocked mask) and reaps it.
    func stop() {
        closeInput()
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(0.3)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot bind port 0
/// and report it, like gnutls-serv).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PeerError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    guard bound else { throw PeerError("cannot bind a port on 127.0.0.1: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// `openssl s_server` on a port of 127.0.0.1 it picks, once it is accepting.
func startOpenSSLServer(_ arguments: [String], in directory: TemporaryDirectory) async throws -> (PeerProcess, Int) {
    let peer = try PeerProcess(["openssl", "s_server", "-accept", "127.0.0.1:0"] + arguments, in: directory)
    do {
        let text = try await peer.waitForOutput("ACCEPT")
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
              let port = line.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw PeerError("cannot read the port openssl s_server listens on: \(peer.transcript)")
        }
        return (peer, port)
    } catch {
        peer.stop()
        throw error
    }
}

/// `gnutls-serv` on a free port, once it listens.
func startGnuTLSServer(_ arguments: [String], in directory: TemporaryDirectory) async throws -> (PeerProcess, Int) {
    let port = try freeLoopbackPort()
    let peer = try PeerProcess(["gnutls-serv", "-p", "\(port)"] + arguments, in: directory, package: "gnutls-bin")
    do {
        try await peer.waitForOutput("listening on IPv4")
        // The line is printed before listen() returns in some versions: make sure a
        // connection is accepted before handing the port out.
        try await waitUntilAccepting(port: port)
        return (peer, port)
    } catch {
        peer.stop()
        throw error
    }
}

/// Polls until a TCP connection to 127.0.0.1:`port` succeeds (closing it at once).
func waitUntilAccepting(port: Int, timeout: Double = 30) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(500)).connect(host: "127.0.0.1", port: port).get() {
            try? await channel.close()
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw PeerError("nothing accepts connections on 127.0.0.1:\(port) after \(timeout) s")
}

// MARK: Our side

/// Thread-safe storage for what handlers and failure callbacks see.
final class Recorded<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Value] = []
    func append(_ value: Value) { lock.lock(); items.append(value); lock.unlock() }
    var values: [Value] { lock.lock(); defer { lock.unlock() }; return items }
}

/// Our TLSServer in this process, serving every connection with one behaviour and
/// recording each connection's info, each failed handshake and each handler error.
final class RunningServer: Sendable {
    enum Behaviour: Sendable {
        /// Echo complete lines; close (close_notify) after the first, so line-oriented
        /// clients see the reply and then the end of the connection.
        case echoFirstLine
        /// Echo every chunk until the peer closes.
        case echo
        /// Read a request up to the blank line, answer `HTTP/1.0 200 OK` with `hello`, close.
        case http
    }

    let server: TLSServer
    private let task: Task<Void, any Error>
    /// The ConnectionInfo of every connection whose handshake and verification passed.
    let connections: Recorded<ConnectionInfo>
    /// Handshakes or verifications that failed.
    let failures: Recorded<TLSError>
    /// Errors thrown inside a connection after its handshake (reads, writes).
    let connectionErrors: Recorded<TLSError>
    /// Anything that is not a TLSError (stays empty when all is well).
    let otherErrors: Recorded<String>

    var port: Int { server.port }

    private init(server: TLSServer, task: Task<Void, any Error>, connections: Recorded<ConnectionInfo>, failures: Recorded<TLSError>,
                 connectionErrors: Recorded<TLSError>, otherErrors: Recorded<String>) {
        self.server = server
        self.task = task
        self.connections = connections
        self.failures = failures
        self.connectionErrors = connectionErrors
        self.otherErrors = otherErrors
    }

    static func start(_ configuration: TLSConfiguration, behaviour: Behaviour = .echoFirstLine) async throws -> RunningServer {
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: try TLSContext(configuration: configuration))
        let connections = Recorded<ConnectionInfo>()
        let failures = Recorded<TLSError>()
        let connectionErrors = Recorded<TLSError>()
        let otherErrors = Recorded<String>()
        let task = Task {
            try await server.serve(onFailure: { error in
                if let error = error as? TLSError { failures.append(error) } else { otherErrors.append("\(error)") }
            }) { channel in
                connections.append(channel.info)
                do {
                    try await Self.serve(channel, behaviour)
                } catch let error as TLSError {
                    connectionErrors.append(error)
                } catch {
                    otherErrors.append("\(error)")
                }
            }
        }
        return RunningServer(server: server, task: task, connections: connections, failures: failures,
                             connectionErrors: connectionErrors, otherErrors: otherErrors)
    }

    private static func serve(_ channel: SecureChannel, _ behaviour: Behaviour) async throws {
        try await channel.executeThenClose { inbound, outbound in
            var pending = ""
            for try await chunk in inbound {
                switch behaviour {
                case .echo:
                    try await outbound.write(chunk)
                case .echoFirstLine:
                    pending += String(buffer: chunk)
                    if let newline = pending.firstIndex(of: "\n") {
                        try await outbound.write(ByteBuffer(string: String(pending[...newline])))
                        return
                    }
                case .http:
                    pending += String(buffer: chunk)
                    if pending.contains("\r\n\r\n") || pending.contains("\n\n") {
                        try await outbound.write(ByteBuffer(string: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"))
                        return
                    }
                }
            }
        }
    }

    /// Waits until `count` connections were accepted and verified.
    @discardableResult
    func waitForConnections(_ count: Int, timeout: Double = 30) async throws -> [ConnectionInfo] {
        try await waitFor(timeout: timeout, "\(count) verified connection(s)") { self.connections.values.count >= count }
        return connections.values
    }

    /// Waits until `count` handshakes failed.
    @discardableResult
    func waitForFailures(_ count: Int, timeout: Double = 30) async throws -> [TLSError] {
        try await waitFor(timeout: timeout, "\(count) failed handshake(s)") { self.failures.values.count >= count }
        return failures.values
    }

    /// What the server recorded, for messages.
    var summary: String {
        "server saw connections \(connections.values), failures \(failures.values), connection errors \(connectionErrors.values), other errors \(otherErrors.values)"
    }

    private func waitFor(timeout: Double, _ what: String, _ condition: @escaping @Sendable () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else { throw PeerError("the server did not see \(what) within \(timeout) s; \(summary)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops accepting and waits (bounded) for the serving task.
    func stop() async {
        try? await server.close()
        _ = try? await withDeadline(10, "stopping the server") { [task] in _ = await task.result; return true }
    }
}

/// Connects with `context`, writes `message`, and reads until the reply contains
/// `terminator` or the server closes; the channel is closed afterwards.
func exchange(host: String = "127.0.0.1", port: Int, context: TLSContext, message: String, terminator: String = "\n",
              timeout: Double = 30) async throws -> (info: ConnectionInfo, reply: String) {
    try await withDeadline(timeout, "connecting to \(host):\(port) and exchanging a message") {
        let channel = try await SecureChannel.connect(host: host, port: port, context: context)
        let reply = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: message))
            var received = ""
            for try await chunk in inbound {
                received += String(buffer: chunk)
                if received.contains(terminator) { break }
            }
            return received
        }
        return (channel.info, reply)
    }
}
