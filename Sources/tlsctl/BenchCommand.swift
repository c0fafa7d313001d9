import ArgumentParser
import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
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

// `tlsctl bench handshake`: how many handshakes per second this machine does, in memory
// (both peers in this process, a throwaway PKI) or against a real server (verified
// connections, like `openssl s_time`, but concurrent), for `--seconds` or for a count of
// `--handshakes`.
//
// Exit status: 0 when every handshake succeeded; 1 when any failed (the first failure on
// stderr) or the setup failed; 64 a usage error.

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure TLS performance.",
        subcommands: [HandshakeBenchCommand.self])
}

/// The key types `--key` offers.
struct BenchKeyArgument: ExpressibleByArgument {
    var algorithm: KeyAlgorithm
    init?(argument: String) {
        guard Self.allValueStrings.contains(argument), let algorithm = KeyAlgorithm(rawValue: argument) else { return nil }
        self.algorithm = algorithm
    }
    static var allValueStrings: [String] { ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-2048"] }
}

struct HandshakeBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handshake",
        abstract: "Full or resumed handshakes per second, latency and CPU per handshake.",
        discussion: """
            In memory (the default, or --in-memory), one process runs client and server back to \
            back on a throwaway PKI (root, issuing CA, leaf; the client verifying chain and host \
            name), so CPU per handshake counts both peers; handshakes/s is then counted per \
            CPU-second of the threads doing the handshakes (times the cores they can use, at most \
            --concurrency), as the Benchmarks package counts it, so a busy machine does not skew \
            it; the wall-clock rate is printed beside it. Against HOST:PORT, it opens real \
            verified connections (the system's trust unless --ca-file), handshakes/s is per \
            wall-clock second, and CPU per handshake counts the client's.
            """)

    @Flag(name: .customLong("in-memory"), help: "Both peers in this process (the default when no HOST:PORT is given).")
    var inMemory = false

    @Argument(help: ArgumentHelp("A server to connect to: HOST:PORT or [IPv6]:PORT.", valueName: "host:port"))
    var endpoint: Endpoint?

    @Option(help: ArgumentHelp("In memory: the key type of the throwaway PKI.", valueName: "type"))
    var key: BenchKeyArgument = BenchKeyArgument(argument: "ecdsa-p256")!

    @Option(help: ArgumentHelp("Only this TLS version: 1.2 or 1.3 (default: 1.3 in memory, both against a host).", valueName: "version"))
    var tls: TLSVersionArgument?

    @Flag(help: "Resume sessions: every connection after the first resumes the first one's session.")
    var resume = false

    @Flag(help: "Mutual TLS: the client presents a certificate the server requires and verifies.")
    var mutual = false

    @Flag(name: .customLong("no-tickets"), help: "Turn session tickets off (no resumption; a TLS 1.3 server sends no tickets).")
    var noTickets = false

    @Option(help: ArgumentHelp("Handshakes in flight at once.", valueName: "n"))
    var concurrency = 1

    @Option(help: ArgumentHelp("How long to measure (default: 5).", valueName: "seconds"))
    var seconds: Double?

    @Option(help: ArgumentHelp("Stop after this many handshakes (successful or failed) instead of after --seconds.", valueName: "n"))
    var handshakes: Int?

    @Flag(name: .customLong("no-chain-cache"), help: "Turn the verified-chain cache off: the Swift verifier runs on every handshake.")
    var noChainCache = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("Against a host: PEM bundle of CAs the server must chain to (default: the system's).", valueName: "file"))
    var caFile: String?

    @Option(name: .customLong("server-name"), help: ArgumentHelp("Against a host: the name sent in SNI and verified (default: HOST).", valueName: "name"))
    var serverName: String?

    @Option(name: .customLong("cert"), help: ArgumentHelp("Against a host with --mutual: the client certificate chain (PEM).", valueName: "file"))
    var certificate: String?

    @Option(name: .customLong("key-file"), help: ArgumentHelp("Against a host with --mutual: the client certificate's private key (PEM).", valueName: "file"))
    var keyFile: String?

    func validate() throws {
        if inMemory && endpoint != nil { throw ValidationError("give either --in-memory or HOST:PORT, not both") }
        if resume && noTickets { throw ValidationError("--resume needs session tickets: drop --no-tickets") }
        guard (1...1024).contains(concurrency) else { throw ValidationError("--concurrency must be between 1 and 1024") }
        if let seconds, !(seconds > 0 && seconds <= 3600) { throw ValidationError("--seconds must be above 0 and at most 3600") }
        if let handshakes, !(1...10_000_000).contains(handshakes) { throw ValidationError("--handshakes must be between 1 and 10000000") }
        if seconds != nil && handshakes != nil { throw ValidationError("give either --seconds or --handshakes, not both") }
        if endpoint != nil && mutual && (certificate == nil || keyFile == nil) {
            throw ValidationError("--mutual against a host needs --cert and --key-file")
        }
        if endpoint == nil && (caFile != nil || serverName != nil || certificate != nil || keyFile != nil) {
            throw ValidationError("--ca-file, --server-name, --cert and --key-file apply only against HOST:PORT")
        }
    }

    func run() async throws {
        let tally = BenchTally(showsProgress: !json && isatty(STDERR_FILENO) != 0)
        let mode: String
        let cache: VerifiedChainCache?
        if let endpoint {
            mode = endpoint.description
            cache = try await runAgainstHost(endpoint, tally: tally)
        } else {
            mode = "in-memory"
            cache = try runInMemory(tally: tally)
        }
        let cacheStatistics = cache?.statistics
        // From the first handshake on: building the PKI and contexts is not measured.
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - tally.startedAt) / 1e9
        let cpu = processCPUSeconds() - tally.cpuAtStart
        tally.finishProgress()
        // In memory the handshake threads' own CPU time is the clock (Benchmarks' BenchReport
        // counts per CPU-second of its one thread); against a host, the wall clock.
        let result = tally.result(elapsed: elapsed, cpuSeconds: cpu,
                                  threads: endpoint == nil ? min(concurrency, ProcessInfo.processInfo.activeProcessorCount) : nil)
        if json {
            var object: [String: Any] = [
                "handshakesPerSecond": result.rate, "meanLatencyMicroseconds": result.mean, "p99LatencyMicroseconds": result.p99,
                "cpuMicrosecondsPerHandshake": result.cpuPerHandshake, "handshakes": result.count, "resumed": result.resumed,
                "wallClockHandshakesPerSecond": result.wallRate,
                "failures": result.failures, "seconds": elapsed, "concurrency": concurrency, "mode": mode,
                "resume": resume, "mutual": mutual, "tickets": !noTickets,
            ]
            if endpoint == nil { object["key"] = key.algorithm.rawValue }
            object["chainCache"] = cacheStatistics != nil
            if let cacheStatistics {
                object["chainCacheHits"] = cacheStatistics.hits
                object["chainCacheMisses"] = cacheStatistics.misses
                object["chainCacheHitRate"] = cacheStatistics.hitRate
            }
            if let version = result.version { object["protocolVersion"] = version }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            let what = endpoint == nil ? "in memory, \(key.algorithm), both peers in this process" : "against \(mode)"
            print("\(result.count) handshakes in \(String(format: "%.2f", elapsed)) s (\(what), \(result.version ?? "no TLS version"), concurrency \(concurrency)\(resume ? ", \(result.resumed) resumed" : ""))")
            if endpoint == nil {
                print(String(format: "handshakes/s:       %.1f per CPU-second of the handshake threads (wall clock: %.1f)", result.rate, result.wallRate))
            } else {
                print(String(format: "handshakes/s:       %.1f", result.rate))
            }
            print(String(format: "mean latency:       %.0f µs", result.mean))
            print(String(format: "p99 latency:        %.0f µs", result.p99))
            print(String(format: "CPU per handshake:  %.0f µs", result.cpuPerHandshake))
            print("chain cache:        \(cacheStatistics.map { "\($0)" } ?? "off")")
            if result.failures > 0 { print("failures:           \(result.failures)") }
        }
        if result.failures > 0 {
            if let first = tally.firstFailure { Console.error("tlsctl: error: \(result.failures) handshakes failed; the first: \(first)") }
            throw ExitCode.failure
        }
        if result.count == 0 { throw CLIError("no handshake completed in \(handshakes.map { "\($0) attempts" } ?? "\(measuredSeconds) s")") }
    }

    /// The measuring time when no --handshakes count is given.
    private var measuredSeconds: Double { seconds ?? 5 }

    /// When the workers stop: after --handshakes attempts, or at the end of --seconds.
    private func makeStop() -> BenchStop {
        handshakes.map(BenchStop.init(handshakes:)) ?? BenchStop(seconds: measuredSeconds)
    }

    // MARK: In memory

    /// Runs the handshakes; returns the client's verified-chain cache.
    private func runInMemory(tally: BenchTally) throws -> VerifiedChainCache? {
        let pki = try context("cannot create the throwaway PKI") { try BenchmarkPKI(algorithm: key.algorithm) }
        let version = tls?.version ?? .tls13
        var clientConfiguration = pki.clientConfiguration(version: version, tickets: !noTickets, mutual: mutual)
        var serverConfiguration = pki.serverConfiguration(version: version, tickets: !noTickets, mutual: mutual)
        if noChainCache {
            clientConfiguration.chainCache = .disabled
            serverConfiguration.chainCache = .disabled
        }
        let client = try TLSContext(configuration: clientConfiguration)
        let server = try TLSContext(configuration: serverConfiguration)
        if resume {
            // Resumption goes through the client context's session cache, as a connection
            // does: this first handshake fills it, every later one resumes from it.
            let first = try InMemoryTLSPair(client: client, server: server, sessionCache: true)
            try first.handshake()
            guard first.resumptionData != nil else { throw CLIError("the server sent no session ticket to resume") }
        }
        tally.start()
        let stop = makeStop()
        let resume = resume
        let workers = (0..<concurrency).map { _ in
            Thread {
                let cpuAtStart = threadCPUSeconds()
                while stop.mayStartAnother() {
                    let start = DispatchTime.now().uptimeNanoseconds
                    do {
                        let pair = try InMemoryTLSPair(client: client, server: server, sessionCache: resume)
                        try pair.handshake()
                        tally.record(latency: DispatchTime.now().uptimeNanoseconds - start, resumed: pair.isResumed, version: pair.protocolVersion)
                    } catch {
                        tally.fail(error)
                    }
                }
                // Before `workerDone`: the result is read once every worker is done.
                tally.addThreadCPU(threadCPUSeconds() - cpuAtStart)
                tally.workerDone()
            }
        }
        workers.forEach { $0.start() }
        tally.waitForWorkers(concurrency)
        return client.verifiedChainCache
    }

    // MARK: Against a host

    /// Runs the connections; returns the client's verified-chain cache.
    private func runAgainstHost(_ endpoint: Endpoint, tally: BenchTally) async throws -> VerifiedChainCache? {
        var trust = TrustStore.system
        if let caFile {
            trust = try context("cannot load the CAs in \(caFile) (--ca-file)") { try TrustStore(contentsOfFile: caFile) }
        }
        var identity: TLSIdentity?
        if mutual, let certificate, let keyFile {
            identity = try loadIdentity(certificate: certificate, key: keyFile, passphraseFile: nil)
        }
        var configuration = TLSConfiguration.makeClientConfiguration(trustStore: trust, identity: identity)
        configuration.serverName = serverName
        configuration.sessionResumption = resume
        if noChainCache { configuration.chainCache = .disabled }
        if let tls {
            configuration.minimumVersion = tls.version
            configuration.maximumVersion = tls.version
        }
        let context = try TLSContext(configuration: configuration)
        tally.start()
        let stop = makeStop()
        let host = endpoint.host
        let port = endpoint.port
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while stop.mayStartAnother() {
                        let start = DispatchTime.now().uptimeNanoseconds
                        do {
                            // TCP first, then TLS over the connected channel: a refused
                            // connection never reaches the TLS layer.
                            let tcp = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                                .connectTimeout(.seconds(10))
                                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                                .connect(host: host, port: port).get()
                            let channel = try await SecureChannel.wrap(tcp, serverHostname: host, context: context)
                            tally.record(latency: DispatchTime.now().uptimeNanoseconds - start, resumed: channel.info.isResumed,
                                         version: channel.info.protocolVersion)
                            try? await channel.executeThenClose { _, _ in }
                        } catch {
                            tally.fail(error)
                            // A refusing server must not be hammered in a tight loop.
                            try? await Task.sleep(for: .milliseconds(50))
                        }
                    }
                }
            }
        }
        return context.verifiedChainCache
    }
}

/// CPU time of the calling thread, user and system.
private func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// CPU time of this process (all threads), user and system.
private func processCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// When the workers stop: at a deadline (`--seconds`, counted from creation) or after a
/// number of handshakes (`--handshakes`), each worker claiming one before it starts it.
private final class BenchStop: @unchecked Sendable {
    private let lock = NSLock()
    private let deadline: UInt64?
    private var remaining: Int

    init(seconds: Double) {
        deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        remaining = 0
    }

    init(handshakes: Int) {
        deadline = nil
        remaining = handshakes
    }

    /// Whether a worker may start another handshake; with a count, claims one of them.
    func mayStartAnother() -> Bool {
        if let deadline { return DispatchTime.now().uptimeNanoseconds < deadline }
        lock.lock()
        defer { lock.unlock() }
        guard remaining > 0 else { return false }
        remaining -= 1
        return true
    }
}

/// Latencies and counts, shared by the workers; prints a progress line on a terminal.
private final class BenchTally: @unchecked Sendable {
    struct Result {
        var count: Int
        var resumed: Int
        var failures: Int
        /// Per CPU-second of the handshake threads (in memory) or per wall-clock second.
        var rate: Double
        var wallRate: Double
        var mean: Double
        var p99: Double
        var cpuPerHandshake: Double
        var version: String?
    }

    private let condition = NSCondition()
    private var latencies: [UInt64] = []
    private var resumed = 0
    private var failures = 0
    private var finishedWorkers = 0
    private var threadCPUSeconds = 0.0
    private var version: String?
    private(set) var firstFailure: String?
    private let showsProgress: Bool
    private var started = DispatchTime.now().uptimeNanoseconds
    private var lastProgress: UInt64 = 0
    private(set) var cpuAtStart = processCPUSeconds()
    var startedAt: UInt64 { started }

    init(showsProgress: Bool) {
        self.showsProgress = showsProgress
        latencies.reserveCapacity(1 << 16)
    }

    /// Marks the start of the measured period (set up before workers run).
    func start() {
        started = DispatchTime.now().uptimeNanoseconds
        cpuAtStart = processCPUSeconds()
    }

    func record(latency: UInt64, resumed wasResumed: Bool, version negotiated: String) {
        condition.lock()
        latencies.append(latency)
        if wasResumed { resumed += 1 }
        if version == nil { version = negotiated }
        let now = DispatchTime.now().uptimeNanoseconds
        var line: String?
        if showsProgress && now - lastProgress > 500_000_000 {
            lastProgress = now
            let rate = Double(latencies.count) / (Double(now - started) / 1e9)
            line = String(format: "\r%d handshakes, %.1f/s ", latencies.count, rate)
        }
        condition.unlock()
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }

    func fail(_ error: Error) {
        condition.lock()
        failures += 1
        if firstFailure == nil { firstFailure = "\(error)" }
        condition.unlock()
    }

    /// Adds the CPU time one in-memory handshake thread spent.
    func addThreadCPU(_ seconds: Double) {
        condition.lock()
        threadCPUSeconds += seconds
        condition.unlock()
    }

    func workerDone() {
        condition.lock()
        finishedWorkers += 1
        condition.broadcast()
        condition.unlock()
    }

    func waitForWorkers(_ count: Int) {
        condition.lock()
        while finishedWorkers < count { condition.wait() }
        condition.unlock()
    }

    func finishProgress() {
        if showsProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// - Parameter threads: in memory, how many handshake threads could run at once (the
    ///   rate is then per CPU-second of those threads, times this); `nil` for wall clock.
    func result(elapsed: Double, cpuSeconds: Double, threads: Int?) -> Result {
        condition.lock(); defer { condition.unlock() }
        let wallRate = Double(latencies.count) / max(elapsed, 1e-9)
        let rate = threads.map { Double(latencies.count) * Double($0) / max(threadCPUSeconds, 1e-9) } ?? wallRate
        let sorted = latencies.sorted()
        let count = sorted.count
        let mean = count == 0 ? 0 : Double(sorted.reduce(0, +)) / Double(count) / 1000
        let p99 = count == 0 ? 0 : Double(sorted[min(count - 1, Int((Double(count) * 0.99).rounded(.up)) - 1)]) / 1000
        return Result(count: count, resumed: resumed, failures: failures, rate: rate, wallRate: wallRate, mean: mean, p99: p99,
                      cpuPerHandshake: count == 0 ? 0 : cpuSeconds * 1e6 / Double(count), version: version)
    }
}
