import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `tlsctl serve` reloading its files on SIGHUP and when they change, and a `ServiceGroup`
/// running a `TLSServer` (the TLSServiceFixture executable) shutting down on SIGTERM. Each
/// process runs on 127.0.0.1 and is stopped by its pid.
@Suite("tlsctl serve reload and service shutdown")
struct ReloadCommandTests {
    /// A root and two server certificates for 127.0.0.1 (A, then its renewal B), files in a
    /// temporary directory.
    struct Setup {
        let directory: TemporaryDirectory
        let root: LocalAuthority
        let first: TLSIdentity
        let second: TLSIdentity
        var trust: TrustStore { TrustStore(certificates: [root.certificate]) }

        init() throws {
            directory = try TemporaryDirectory()
            root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Reload Test Root,O=tlsctl tests"))
            first = try Self.issue(by: root)
            second = try Self.issue(by: root)
            try install(first)
        }

        static func issue(by root: LocalAuthority) throws -> TLSIdentity {
            let key = try KeyPair.generate(.ecdsaP256)
            let request = try CertificateRequest.create(subject: try DistinguishedName("CN=server.test"), key: key,
                                                        alternativeNames: [.dnsName("server.test"), .ipAddress(IPAddress("127.0.0.1")!)])
            return TLSIdentity(chain: try root.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 7)), key: key)
        }

        /// Renames complete files into place, key first.
        func replace(_ name: String, with text: String) throws {
            _ = try directory.write(text, to: name + ".new")
            guard rename(directory.file(name + ".new"), directory.file(name)) == 0 else {
                throw CocoaError(.fileWriteUnknown)
            }
        }

        func install(_ identity: TLSIdentity) throws {
            try replace("key.pem", with: try identity.key.pemEncoded())
            try replace("chain.pem", with: identity.chain.map(\.pemEncoded).joined())
        }

        /// The serial of the certificate the server at `port` presents now.
        func servedSerial(_ port: Int) async throws -> SerialNumber? {
            let context = try TLSContext(configuration: .makeClientConfiguration(trustStore: trust))
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
            let serial = channel.info.peerCertificate?.serialNumber
            try await channel.executeThenClose { _, _ in }
            return serial
        }
    }

    @Test("SIGHUP reloads the files: serial A, then B with no refused connection under load; a truncated key is refused and B kept")
    func sighup() async throws {
        let setup = try Setup()
        defer { setup.directory.remove() }
        // --reload-interval 0: only SIGHUP reloads, so the signal is what is tested.
        let server = try BackgroundTLSCtl(["serve", "--cert", "chain.pem", "--key", "key.pem", "--port", "0", "--reload-interval", "0"],
                                          directory: setup.directory.path)
        defer { server.terminate() }
        let port = try await server.listeningPort()
        let serialA = setup.first.leaf.serialNumber
        let serialB = setup.second.leaf.serialNumber
        #expect(try await setup.servedSerial(port) == serialA)

        try setup.install(setup.second)
        #expect(try await setup.servedSerial(port) == serialA, "without SIGHUP the files are not read again")

        // A bounded load loop across the reload.
        let failures = Failures()
        let load = Task {
            for _ in 0..<1_000 where !failures.stopped {
                do { _ = try await setup.servedSerial(port) } catch { failures.add("\(error)") }
            }
        }
        kill(server.pid, SIGHUP)
        let reloaded = await server.nextLine(prefix: "reload", timeout: 30)
        #expect(reloaded == "reloaded identity: serial \(serialB.hexString)", "\(server)")
        #expect(try await setup.servedSerial(port) == serialB)
        failures.stop()
        _ = await load.result
        #expect(failures.items.isEmpty, "\(failures.items)")
        #expect(!server.lines.contains { $0.hasPrefix("refused #") }, "\(server)")

        let keyText = try setup.second.key.pemEncoded()
        try setup.replace("key.pem", with: String(keyText.prefix(keyText.count / 2)))
        kill(server.pid, SIGHUP)
        let refused = await server.nextLine(prefix: "reload refused: ", timeout: 30)
        #expect(refused?.hasSuffix("; keeping \(serialB.hexString)") == true, "\(server)")
        #expect(server.lines.filter { $0.hasPrefix("reload") }.count == 2, "one line per attempt: \(server)")
        #expect(try await setup.servedSerial(port) == serialB)
    }

    @Test("serve reloads by itself when its files change (--reload-interval)")
    func fileChange() async throws {
        let setup = try Setup()
        defer { setup.directory.remove() }
        let server = try BackgroundTLSCtl(["serve", "--cert", "chain.pem", "--key", "key.pem", "--port", "0", "--reload-interval", "0.05"],
                                          directory: setup.directory.path)
        defer { server.terminate() }
        let port = try await server.listeningPort()
        #expect(try await setup.servedSerial(port) == setup.first.leaf.serialNumber)
        try setup.install(setup.second)
        let line = await server.nextLine(prefix: "reloaded identity: ", timeout: 30)
        #expect(line == "reloaded identity: serial \(setup.second.leaf.serialNumber.hexString)", "\(server)")
        #expect(try await setup.servedSerial(port) == setup.second.leaf.serialNumber)
    }

    @Test("SIGHUP with a new CRL: the revoked client is refused at once (mutual TLS), the line counts the client CAs and CRLs")
    func sighupCRL() async throws {
        let setup = try Setup()
        defer { setup.directory.remove() }
        let clientKey = try KeyPair.generate(.ecdsaP256)
        let clientRequest = try CertificateRequest.create(subject: try DistinguishedName("CN=alice"), key: clientKey, alternativeNames: [.uri("spiffe://test/alice")])
        let client = TLSIdentity(chain: try setup.root.issueWithChain(clientRequest, profile: .tlsClient, options: IssuanceOptions(validityDays: 7)), key: clientKey)
        func crl(_ number: UInt8, revoking: [SerialNumber]) throws -> String {
            try CertificateRevocationList.create(
                issuer: setup.root.certificate, key: setup.root.key, number: SerialNumber(bytes: [number]),
                nextUpdate: Date().addingTimeInterval(86_400),
                entries: revoking.map { CertificateRevocationList.Entry(serialNumber: $0, revocationDate: Date()) }).pemEncoded
        }
        try setup.replace("ca.pem", with: setup.root.certificate.pemEncoded)
        try setup.replace("crl.pem", with: try crl(1, revoking: []))
        let server = try BackgroundTLSCtl(["serve", "--cert", "chain.pem", "--key", "key.pem", "--port", "0", "--client-ca", "ca.pem",
                                           "--require-client-cert", "--crls", "crl.pem", "--reload-interval", "0"],
                                          directory: setup.directory.path)
        defer { server.terminate() }
        let port = try await server.listeningPort()
        let clientContext = try TLSContext(configuration: .makeClientConfiguration(trustStore: setup.trust, identity: client))
        func exchange() async throws -> String? {
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: clientContext)
            return try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "hi"))
                var iterator = inbound.makeAsyncIterator()
                return try await iterator.next().map { String(buffer: $0) }
            }
        }
        #expect(try await exchange() == "hi")

        try setup.replace("crl.pem", with: try crl(2, revoking: [client.leaf.serialNumber]))
        kill(server.pid, SIGHUP)
        let line = await server.nextLine(prefix: "reload", timeout: 30)
        #expect(line == "reloaded identity: serial \(setup.first.leaf.serialNumber.hexString); client CAs: 1; CRLs: 1", "\(server)")
        #expect((try? await exchange()) == nil)
        let refused = await server.nextLine(prefix: "refused #", timeout: 30)
        #expect(refused?.contains("revoked") == true, "\(server)")
    }

    @Test("a ServiceGroup with a TLSServer shuts down on SIGTERM: the request in flight completes, new connections are refused")
    func serviceGroupSIGTERM() async throws {
        let setup = try Setup()
        defer { setup.directory.remove() }
        let fixture = (BuiltProducts.directory as NSString).appendingPathComponent("TLSServiceFixture")
        let process = try BackgroundTLSCtl([setup.directory.file("chain.pem"), setup.directory.file("key.pem"), "30"],
                                           directory: setup.directory.path, executable: fixture)
        defer { process.terminate() }
        let port = try await process.listeningPort()
        let context = try TLSContext(configuration: .makeClientConfiguration(trustStore: setup.trust))
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        let reply = Task {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "request\n"))
                var text = ""
                // Ends without an error only after the server's close_notify.
                for try await chunk in inbound { text += String(buffer: chunk) }
                return text
            }
        }
        #expect(await process.nextLine(prefix: "request received", timeout: 30) != nil, "\(process)")

        kill(process.pid, SIGTERM)
        #expect(await process.nextLine(prefix: "listener closed", timeout: 30) != nil, "\(process)")
        // Plain TCP: the kernel refuses the connection (no listener any more).
        await #expect(throws: (any Error).self, "a new connection after shutdown began") {
            let refused = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try? await refused.close()
        }
        #expect(try await reply.value == "done\n")
        #expect(await process.exitStatus(timeout: 30) == 0, "\(process)")
        #expect(process.lines.contains("connection finished") && process.lines.last == "stopped", "\(process)")
    }
}

/// Failures recorded by a load loop, and its stop flag.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String] = []
    private var isStopped = false
    func add(_ value: String) { lock.lock(); values.append(value); lock.unlock() }
    func stop() { lock.lock(); isStopped = true; lock.unlock() }
    var stopped: Bool { lock.lock(); defer { lock.unlock() }; return isStopped }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return values }
}
