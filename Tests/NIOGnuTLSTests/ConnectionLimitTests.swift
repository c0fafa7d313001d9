import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOPosix
import Testing
import TestSupport

// A server with `maxConnections` 100 under 300 idle post-handshake connections and 300
// slowloris sockets (issue 7, item 5): it never holds more than 100, normal clients are
// still served, idle connections are closed by the idle timeout, slowloris sockets by the
// handshake timeout, and every descriptor comes back. Nothing is timed: the deadlines only
// keep a broken run from hanging.

/// Accepted server-side sockets of this process on `port` (the kernel's backlog, not yet
/// accepted, has no descriptor and does not count).
func acceptedDescriptors(port: Int) -> Int {
    var inodes = Set<String>()
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // Read to the end: `String(contentsOfFile:)` stops after the first page of a /proc
        // file (4 KiB, ~27 sockets), which misses ours on a machine with many sockets.
        guard let data = FileHandle(forReadingAtPath: table)?.readDataToEndOfFile() else { continue }
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] != "0A", fields[9] != "0",
                  fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) == port else { continue }
            inodes.insert(String(fields[9]))
        }
    }
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    return entries.filter { entry in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)") else { return false }
        return target.hasPrefix("socket:[") && inodes.contains(String(target.dropFirst(8).dropLast()))
    }.count
}

/// The highest value `sample` returned while it was polled in the background.
final class PeakSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var _peak = 0
    private var running = true
    var peak: Int { lock.withLock { _peak } }

    init(_ sample: @escaping @Sendable () -> Int) {
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                let value = sample()
                lock.withLock { _peak = max(_peak, value) }
                usleep(20_000)
            }
        }
    }

    func stop() { lock.withLock { running = false } }
}

@Suite(.serialized) struct ConnectionLimitTests {
    static let limit = 100
    static let idleCount = 300
    static let slowlorisCount = 300

    @Test func idleAndSlowlorisSocketsCannotExhaustTheServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let pki = try TestPKI()
        var serverConfiguration = TLSConfiguration.makeServerConfiguration(identity: pki.serverIdentity)
        serverConfiguration.handshakeTimeout = .seconds(2)
        serverConfiguration.idleTimeout = .seconds(2)
        let server = try await TLSServer.bind(
            host: "127.0.0.1", port: 0, context: try TLSContext(configuration: serverConfiguration), eventLoopGroup: group,
            backlog: 2048, limits: TLSServerLimits(maxConnections: Self.limit))
        let port = server.port
        let baseline = ProcessResources.openFileDescriptors()

        let idleClosed = Collected<Int>()
        let idleEnded = Collected<Int>()
        let served = Collected<String>()
        let idleRefused = Collected<Int>()
        let serverFailures = Collected<Int>()
        let serving = Task {
            try await server.serve(onFailure: { _ in serverFailures.append(1) }) { channel in
                do {
                    let echoed = try await channel.executeThenClose { inbound, outbound in
                        var echoed = false
                        for try await chunk in inbound {
                            echoed = true
                            try await outbound.write(chunk)
                        }
                        return echoed
                    }
                    // An idle client whose connection ended without a byte either way: the
                    // idle timeout closed it, but its close_notify answer reached the
                    // application before the timeout's error did.
                    if !echoed { idleEnded.append(1) }
                } catch let error as TLSError where error.code == .idleTimeout {
                    idleClosed.append(1)
                }
            }
        }
        let peak = PeakSampler { acceptedDescriptors(port: port) }

        var clientConfiguration = TLSConfiguration.makeClientConfiguration(trustStore: pki.trust)
        // Clients wait in the backlog while the server is full: a generous safety net.
        clientConfiguration.handshakeTimeout = .seconds(120)
        clientConfiguration.sessionResumption = false
        let clientContext = try TLSContext(configuration: clientConfiguration)

        try await withDeadline(.seconds(300), "the idle, slowloris and normal clients") {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                // Slowloris: three bytes of a record header, then silence.
                for _ in 0..<Self.slowlorisCount {
                    tasks.addTask {
                        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
                        // The server may already have closed it (handshake timeout) on a busy machine.
                        try? await channel.writeAndFlush(ByteBuffer(bytes: [0x16, 0x03, 0x01])).get()
                        try await channel.closeFuture.get()
                    }
                }
                // Idle: a full handshake, then nothing until the server closes.
                for _ in 0..<Self.idleCount {
                    tasks.addTask {
                        // On a loaded machine the server's 2 s handshake timeout may refuse some:
                        // counted, not fatal (the idle ones that did connect are asserted below).
                        do {
                            let channel = try await SecureChannel.connect(host: "localhost", port: port, context: clientContext, eventLoopGroup: group)
                            try? await channel.executeThenClose { inbound, _ in
                                for try await _ in inbound {}
                            }
                        } catch {
                            idleRefused.append(1)
                        }
                    }
                }
                // Normal clients among them are still served.
                for index in 0..<5 {
                    tasks.addTask {
                        // A stall of the whole machine longer than the 2 s timeouts may close a
                        // normal client too: it tries again (bounded), as a real client would.
                        for _ in 0..<5 {
                            do {
                                let channel = try await SecureChannel.connect(host: "localhost", port: port, context: clientContext, eventLoopGroup: group)
                                let reply = try await channel.executeThenClose { inbound, outbound in
                                    try await outbound.write(ByteBuffer(string: "hello \(index)"))
                                    var iterator = inbound.makeAsyncIterator()
                                    return try await iterator.next().map { String(buffer: $0) }
                                }
                                if reply == "hello \(index)" { served.append("hello \(index)"); return }
                            } catch {
                                continue
                            }
                        }
                    }
                }
                try await tasks.waitForAll()
            }
        }
        peak.stop()

        #expect(served.value.count == 5)
        #expect(peak.peak <= Self.limit, "the server held \(peak.peak) connections at once")
        #expect(peak.peak > 0)
        #expect(await eventually(timeout: .seconds(60)) { ProcessResources.connectionDescriptors(port: port) == 0 },
                "connections left: \(ProcessResources.connectionDescriptors(port: port))")
        #expect(await eventually(timeout: .seconds(60)) { ProcessResources.openFileDescriptors() <= baseline + 8 },
                "descriptors: \(baseline) before, \(ProcessResources.openFileDescriptors()) after")
        // The server's connection tasks count what they saw after their clients are done (a
        // client ends at the close_notify, before the server's task has counted the idle
        // timeout): the counts are read once `serve` has returned, which waits for them all.
        try await server.close()
        _ = try? await serving.value
        #expect(idleClosed.value.count > 0)
        // Every idle client ended: closed by the idle timeout, or (on a busy machine) refused
        // by the server's handshake timeout, seen by the client before or after its own
        // TLS 1.3 handshake completed (the server's failures beyond the slowloris sockets).
        let lateFailures = max(0, serverFailures.value.count - Self.slowlorisCount)
        #expect(idleClosed.value.count + idleEnded.value.count + max(idleRefused.value.count, lateFailures) >= Self.idleCount,
                "\(idleClosed.value.count) idle connections closed by the idle timeout, \(idleEnded.value.count) ended without data, \(idleRefused.value.count) refused, \(serverFailures.value.count) server-side handshake failures")
        try await group.shutdownGracefully()
    }

    @Test func aTCPResetDuringTheHandshakeIsReportedAsOne() async throws {
        let pki = try TestPKI()
        let server = try await TLSServer.bind(
            host: "127.0.0.1", port: 0, context: try TLSContext(configuration: .makeServerConfiguration(identity: pki.serverIdentity)))
        let failures = Collected<TLSError.Code>()
        let serving = Task {
            try await server.serve(onFailure: { error in
                if let error = error as? TLSError { failures.append(error.code) }
            }) { _ in }
        }
        // Half a record header, then an abortive close (SO_LINGER 0): the server reads RST.
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port).get()
        let provider = try #require(channel as? any SocketOptionProvider)
        try await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        try await channel.writeAndFlush(ByteBuffer(bytes: [0x16, 0x03])).get()
        try await channel.close()
        #expect(await eventually { !failures.value.isEmpty })
        #expect(failures.value == [.connectionReset])
        try await server.close()
        _ = try? await serving.value
    }
}
