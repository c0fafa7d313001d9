import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOGnuTLS
import NIOPosix
import ServiceLifecycle
import Testing
import TestSupport

/// Certificate rotation through `TLSContextProvider`s: a `TLSFileWatcher` that reloads
/// identity, trust anchors and CRLs from files, refuses broken renewals, and a `TLSServer`
/// that asks it for a context on every new connection. Every wait is on an event (a reload
/// event, a handshake, a closed listener), bounded by a deadline.
@Suite("certificate rotation and graceful shutdown")
struct RotationTests {
    /// Files on disk for one server identity, replaced the way deployment tools do: a
    /// complete file renamed into place.
    struct Files {
        let directory: TemporaryDirectory
        var chain: String { directory.file("chain.pem") }
        var key: String { directory.file("key.pem") }
        var trust: String { directory.file("trust.pem") }
        var crl: String { directory.file("crl.pem") }

        func replace(_ path: String, with text: String) throws {
            let temporary = path + ".new"
            try text.write(toFile: temporary, atomically: false, encoding: .utf8)
            guard rename(temporary, path) == 0 else { throw POSIXFailure(call: "rename", path: path) }
        }

        func install(_ identity: TLSIdentity, passphrase: String? = nil) throws {
            try replace(key, with: try identity.keyPair().pemEncoded(passphrase: passphrase))
            try replace(chain, with: identity.chain.map(\.pemEncoded).joined())
        }
    }

    struct POSIXFailure: Error { var call: String; var path: String }

    /// The serial the server presents to a new client.
    static func servedSerial(port: Int, trust: TrustStore, identity: TLSIdentity? = nil) async throws -> SerialNumber? {
        let context = try TLSContext(configuration: .makeClientConfiguration(trustStore: trust, identity: identity))
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: port, context: context)
        let serial = channel.info.peerCertificate?.serialNumber
        try await channel.executeThenClose { _, _ in }
        return serial
    }

    /// The next event of `events` that `matches`, within `seconds`.
    static func next(_ events: AsyncStream<TLSReloadEvent>, within seconds: Double = 120,
                     where matches: @escaping @Sendable (TLSReloadEvent) -> Bool) async throws -> TLSReloadEvent {
        try await withDeadline(.seconds(seconds), "a reload event") {
            for await event in events where matches(event) { return event }
            throw DeadlineExceeded(what: "the reload event stream (it ended)")
        }
    }

    /// An echo server on 127.0.0.1 with `provider`, served until the test closes it.
    static func echoServer(_ provider: some TLSContextProvider,
                           onFailure: @escaping @Sendable (any Error) -> Void = { _ in }) async throws -> (TLSServer, Task<Void, any Error>) {
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, contextProvider: provider)
        let serving = Task {
            try await server.serve(onFailure: onFailure) { channel in
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound { try await outbound.write(chunk) }
                }
            }
        }
        return (server, serving)
    }

    @Test("a fixed context is its own provider")
    func fixedContext() throws {
        let pki = try TestPKI()
        let context = try TLSContext(configuration: .makeServerConfiguration(identity: pki.serverIdentity))
        #expect(context.currentContext() === context)
    }

    @Test("replaced files are served to the next client (serial A, then B) with no refused connection under load; an open connection keeps A")
    func rotatesUnderLoad() async throws {
        let pki = try TestPKI()
        let renewed = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)], profile: .tlsServer)
        let files = Files(directory: try TemporaryDirectory())
        defer { files.directory.remove() }
        // Passphrase-protected key: the watcher opens it on every reload.
        try files.install(pki.serverIdentity, passphrase: "correct horse")
        let watcher = try TLSFileWatcher(
            configuration: .makeServerConfiguration(identity: pki.serverIdentity),
            identities: [TLSIdentityFiles(chainPath: files.chain, keyPath: files.key, passphrase: "correct horse")],
            pollInterval: .milliseconds(20))
        let events = watcher.events()
        let polling = Task { try await watcher.run() }
        defer { polling.cancel() }
        let (server, serving) = try await Self.echoServer(watcher)

        let serialA = pki.serverIdentity.leaf.serialNumber
        let serialB = renewed.leaf.serialNumber
        #expect(try await Self.servedSerial(port: server.port, trust: pki.trust) == serialA)

        // A connection opened before the change, used after it.
        let clientContext = try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trust))
        let early = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: clientContext)
        #expect(early.info.peerCertificate?.serialNumber == serialA)

        // A bounded load loop of sequential connections, running across the change.
        let stop = Box(false)
        let seen = Collected<SerialNumber>()
        let refused = Collected<String>()
        let load = Task {
            for _ in 0..<2_000 where !stop.value {
                do {
                    let serial = try await Self.servedSerial(port: server.port, trust: pki.trust)
                    if let serial { seen.append(serial) }
                } catch {
                    refused.append("\(error)")
                }
            }
        }

        try files.install(renewed, passphrase: "correct horse")
        let reloaded = try await Self.next(events) { $0.outcome == .reloaded }
        #expect(reloaded.serials == [serialB])
        #expect(reloaded.previousSerials == [serialA])
        #expect(try await Self.servedSerial(port: server.port, trust: pki.trust) == serialB)
        stop.value = true
        _ = await load.result

        #expect(refused.value.isEmpty, "connections refused during rotation: \(refused.value)")
        #expect(seen.value.contains(serialA) || seen.value.contains(serialB))
        #expect(Set(seen.value).isSubset(of: [serialA, serialB]))

        let echoed = try await early.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "still A"))
            var iterator = inbound.makeAsyncIterator()
            return try await iterator.next().map { String(buffer: $0) }
        }
        #expect(echoed == "still A")
        try await server.close()
        _ = await serving.result
    }

    @Test("identities selected by SNI are reloaded through the same watcher: renewing b.example changes what b.example's clients see, not a.example's")
    func sniIdentities() async throws {
        let pki = try TestPKI()
        func identity(_ name: String) throws -> TLSIdentity {
            try TestPKI.issue(by: pki.issuing, subject: "CN=\(name)", names: [.dnsName(name)], profile: .tlsServer)
        }
        let a = try identity("a.example"), b = try identity("b.example"), renewedB = try identity("b.example")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let filesA = TLSIdentityFiles(chainPath: directory.file("a.pem"), keyPath: directory.file("a.key.pem"))
        let filesB = TLSIdentityFiles(chainPath: directory.file("b.pem"), keyPath: directory.file("b.key.pem"))
        func install(_ identity: TLSIdentity, _ files: TLSIdentityFiles) throws {
            _ = try directory.write(try identity.keyPair().pemEncoded(), to: (files.keyPath as NSString).lastPathComponent)
            _ = try directory.write(identity.chain.map(\.pemEncoded).joined(), to: (files.chainPath as NSString).lastPathComponent)
        }
        try install(a, filesA)
        try install(b, filesB)
        let watcher = try TLSFileWatcher(configuration: .makeServerConfiguration(identity: a), identities: [filesA, filesB])
        let (server, serving) = try await Self.echoServer(watcher)
        func served(_ name: String) async throws -> SerialNumber? {
            var configuration = TLSConfiguration.makeClientConfiguration(trustStore: pki.trust)
            configuration.serverName = name
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, contextProvider: try TLSContext(configuration: configuration))
            let serial = channel.info.peerCertificate?.serialNumber
            try await channel.executeThenClose { _, _ in }
            return serial
        }
        #expect(try await served("a.example") == a.leaf.serialNumber)
        #expect(try await served("b.example") == b.leaf.serialNumber)
        try install(renewedB, filesB)
        let event = watcher.reload()
        #expect(event.serials == [a.leaf.serialNumber, renewedB.leaf.serialNumber])
        #expect(try await served("a.example") == a.leaf.serialNumber)
        #expect(try await served("b.example") == renewedB.leaf.serialNumber)
        try await server.close()
        _ = await serving.result
    }

    @Test("a client consults its provider on every connection: after reload() the server sees the renewed client certificate")
    func clientRotation() async throws {
        let pki = try TestPKI()
        let renewed = try TestPKI.issue(by: pki.issuing, subject: "CN=client-1,O=Example", names: [.uri("spiffe://example.org/client-1")], profile: .tlsClient)
        let current = Box(pki.clientIdentity)
        let reloader = try TLSContextReloader {
            TLSConfiguration.makeClientConfiguration(trustStore: pki.trust, identity: current.value)
        }
        let serverContext = try TLSContext(configuration: .makeMutualTLSServerConfiguration(identity: pki.serverIdentity, clientTrustStore: pki.trust))
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, context: serverContext)
        let (seen, see) = AsyncStream<SerialNumber?>.makeStream()
        let serving = Task {
            try await server.serve { channel in
                see.yield(channel.info.peerCertificate?.serialNumber)
                try await channel.executeThenClose { _, _ in }
            }
        }
        var iterator = seen.makeAsyncIterator()
        func connectOnce() async throws {
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, contextProvider: reloader)
            try await channel.executeThenClose { inbound, _ in for try await _ in inbound {} }
        }
        try await connectOnce()
        #expect(await iterator.next() == pki.clientIdentity.leaf.serialNumber)
        current.value = renewed
        #expect(reloader.reload().outcome == .reloaded)
        try await connectOnce()
        #expect(await iterator.next() == renewed.leaf.serialNumber)
        try await server.close()
        _ = await serving.result
    }

    @Test("a truncated key file or a mismatched pair is refused with its reason, logged, and A is still served")
    func brokenRenewalKeepsServing() async throws {
        let pki = try TestPKI()
        let other = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)], profile: .tlsServer)
        let files = Files(directory: try TemporaryDirectory())
        defer { files.directory.remove() }
        try files.install(pki.serverIdentity)
        let log = Collected<RecordingLogHandler.Record>()
        let watcher = try TLSFileWatcher(
            configuration: .makeServerConfiguration(identity: pki.serverIdentity),
            identities: [TLSIdentityFiles(chainPath: files.chain, keyPath: files.key)],
            pollInterval: .milliseconds(20),
            logger: Logger(label: "test.reload") { _ in RecordingLogHandler(records: log) })
        let events = watcher.events()
        let polling = Task { try await watcher.run() }
        defer { polling.cancel() }
        let (server, serving) = try await Self.echoServer(watcher)
        let serialA = pki.serverIdentity.leaf.serialNumber

        // A truncated key, noticed by the poll.
        let keyText = try pki.serverIdentity.keyPair().pemEncoded()
        try files.replace(files.key, with: String(keyText.prefix(keyText.count / 2)))
        let truncated = try await Self.next(events) { _ in true }
        #expect(truncated.outcome == .refused)
        #expect(truncated.error?.code == .loadFailed, "\(String(describing: truncated.error))")
        #expect(truncated.serials == [serialA])
        #expect(try await Self.servedSerial(port: server.port, trust: pki.trust) == serialA)

        // Another certificate with the old key: a mismatched pair, reloaded on demand.
        try files.replace(files.key, with: keyText)
        try files.replace(files.chain, with: other.chain.map(\.pemEncoded).joined())
        let mismatched = watcher.reload()
        #expect(mismatched.outcome == .refused)
        #expect(mismatched.error?.code == .keyMismatch, "\(String(describing: mismatched.error))")
        #expect(mismatched.description.hasPrefix("refused: the private key does not match certificate"), "\(mismatched)")
        #expect(try await Self.servedSerial(port: server.port, trust: pki.trust) == serialA)

        let refusals = log.value.filter { $0.level == .error }
        #expect(refusals.count >= 2, "\(log.value)")
        #expect(refusals.contains { $0.metadata[TLSLogKey.errorCode] == "keyMismatch" && $0.metadata[TLSLogKey.certificateSerial] == serialA.hexString })
        #expect(refusals.allSatisfy { $0.metadata[TLSLogKey.errorMessage] != nil && $0.metadata[TLSLogKey.event] == TLSLogEvent.reloadRefused })
        #expect(refusals.allSatisfy { $0.metadata[TLSLogKey.reloadSource] == "\(files.chain),\(files.key)" })

        // Fixed: the pair is loaded and logged as a reload.
        try files.install(other)
        let fixed = watcher.reload()
        #expect(fixed.outcome == .reloaded && fixed.serials == [other.leaf.serialNumber])
        #expect(log.value.contains { $0.level == .info && $0.metadata[TLSLogKey.event] == TLSLogEvent.reload })
        try await server.close()
        _ = await serving.result
    }

    @Test("a new CRL picked up from its file refuses a revoked client at once (mutual TLS)")
    func newCRLRefusesRevokedClient() async throws {
        let pki = try TestPKI()
        let files = Files(directory: try TemporaryDirectory())
        defer { files.directory.remove() }
        try files.install(pki.serverIdentity)
        try files.replace(files.trust, with: pki.root.certificate.pemEncoded)
        func crl(number: UInt8, revoking: [SerialNumber]) throws -> String {
            try CertificateRevocationList.create(
                issuer: pki.issuing.certificate, key: pki.issuing.key, number: SerialNumber(bytes: [number]),
                nextUpdate: Date().addingTimeInterval(86_400),
                entries: revoking.map { CertificateRevocationList.Entry(serialNumber: $0, revocationDate: Date()) }).pemEncoded
        }
        try files.replace(files.crl, with: try crl(number: 1, revoking: []))
        let watcher = try TLSFileWatcher(
            configuration: .makeMutualTLSServerConfiguration(identity: pki.serverIdentity, clientTrustStore: pki.trust),
            identities: [TLSIdentityFiles(chainPath: files.chain, keyPath: files.key)],
            trustStoreFile: files.trust, crlFiles: [files.crl], pollInterval: .milliseconds(20))
        let events = watcher.events()
        let polling = Task { try await watcher.run() }
        defer { polling.cancel() }
        let (failures, failed) = AsyncStream<any Error>.makeStream()
        let (server, serving) = try await Self.echoServer(watcher) { failed.yield($0) }

        #expect(try await Self.servedSerial(port: server.port, trust: pki.trust, identity: pki.clientIdentity) == pki.serverIdentity.leaf.serialNumber)

        try files.replace(files.crl, with: try crl(number: 2, revoking: [pki.clientIdentity.leaf.serialNumber]))
        let reloaded = try await Self.next(events) { $0.outcome == .reloaded }
        #expect(reloaded.context.configuration.trustStore?.crls.first?.entries.count == 1)

        // The next handshake is refused by the server: the client sees an alert or a closed
        // connection, the server reports the revoked certificate.
        let clientContext = try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trust, identity: pki.clientIdentity))
        let reply: String? = try? await {
            let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: clientContext)
            return try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "revoked?"))
                var iterator = inbound.makeAsyncIterator()
                return try await iterator.next().map { String(buffer: $0) }
            }
        }()
        #expect(reply == nil)
        // Other failures (an earlier connection's idle timeout on a loaded machine) are skipped.
        let first: (any Error)? = try await withDeadline(.seconds(30), "the server's refusal") {
            for await failure in failures where (failure as? TLSError)?.code == .verificationFailed { return failure }
            return nil
        }
        let refusal = try #require(first as? TLSError, "\(String(describing: first))")
        #expect(refusal.code == .verificationFailed)
        #expect(refusal.verification?.problems.contains { "\($0)".contains("revoked") } == true, "\(refusal)")
        try await server.close()
        _ = await serving.result
    }

    @Test("the file watcher is a Service: it polls inside a ServiceGroup and returns on graceful shutdown")
    func watcherInServiceGroup() async throws {
        let pki = try TestPKI()
        let renewed = try TestPKI.issue(by: pki.issuing, subject: "CN=localhost", names: [.dnsName("localhost")], profile: .tlsServer)
        let files = Files(directory: try TemporaryDirectory())
        defer { files.directory.remove() }
        try files.install(pki.serverIdentity)
        let watcher = try TLSFileWatcher(
            configuration: .makeServerConfiguration(identity: pki.serverIdentity),
            identities: [TLSIdentityFiles(chainPath: files.chain, keyPath: files.key)], pollInterval: .milliseconds(20))
        let events = watcher.events()
        let group = ServiceGroup(services: [watcher], logger: Logger(label: "test.lifecycle") { _ in SwiftLogNoOpLogHandler() })
        let running = Task { try await group.run() }
        try files.install(renewed)
        let event = try await Self.next(events) { $0.outcome == .reloaded }
        #expect(event.serials == [renewed.leaf.serialNumber])
        await group.triggerGracefulShutdown()
        try await withDeadline(.seconds(30), "the service group") { try await running.value }
    }

    @Test("graceful shutdown in a ServiceGroup: the listener closes, new clients are refused, an open connection is closed with close_notify at the drain deadline")
    func gracefulShutdownDrainDeadline() async throws {
        let pki = try TestPKI()
        let context = try TLSContext(configuration: .makeServerConfiguration(identity: pki.serverIdentity))
        let (accepted, accept) = AsyncStream<Void>.makeStream()
        let server = try await TLSServer.bind(host: "127.0.0.1", port: 0, contextProvider: context, drainTimeout: .milliseconds(200), handler: { channel in
            try await channel.executeThenClose { inbound, outbound in
                for try await chunk in inbound {
                    try await outbound.write(chunk)
                    accept.yield()
                }
            }
        })
        let group = ServiceGroup(services: [server], logger: Logger(label: "test.lifecycle") { _ in SwiftLogNoOpLogHandler() })
        let running = Task { try await group.run() }

        let clientContext = try TLSContext(configuration: .makeClientConfiguration(trustStore: pki.trust))
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: clientContext)
        let port = server.port
        let ended = Task {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "ping"))
                var chunks: [String] = []
                // Ends without an error only if the server closed with close_notify.
                for try await chunk in inbound { chunks.append(String(buffer: chunk)) }
                return chunks
            }
        }
        // Shut down only once the request was answered: the client's write must not race the
        // drain deadline's close on a loaded machine.
        try await withDeadline(.seconds(120), "the echo of the request") {
            var iterator = accepted.makeAsyncIterator()
            _ = await iterator.next()
        }

        await group.triggerGracefulShutdown()
        try await server.listenerClosed.get()
        // Plain TCP: the kernel refuses the connection (no listener any more).
        await #expect(throws: (any Error).self) {
            let refused = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try? await refused.close()
        }
        let received = try await withDeadline(.seconds(30), "the drain deadline") { try await ended.value }
        #expect(received.joined() == "ping")
        try await withDeadline(.seconds(30), "the service group") { try await running.value }
    }
}

/// A swift-log handler that keeps every record, for assertions on reload logging.
struct RecordingLogHandler: LogHandler {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    let records: Collected<Record>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        for (key, value) in event.metadata ?? [:] { merged[key] = value }
        records.append(Record(level: event.level, message: "\(event.message)",
                              metadata: merged.mapValues { "\($0)" }))
    }
}

/// Test identities hold their keys in memory: the key file a reloader reads is written from it.
struct NotAKeyPair: Error, CustomStringConvertible {
    var description: String { "this test identity's key is not a KeyPair in memory" }
}

extension TLSIdentity {
    /// The in-memory key of a test identity, to write to a key file.
    func keyPair() throws -> KeyPair {
        guard let pair = key as? KeyPair else { throw NotAKeyPair() }
        return pair
    }
}
