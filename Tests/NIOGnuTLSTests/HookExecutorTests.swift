import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import NIOHTTP1
import NIOPosix
import Testing

/// Holds the Swift concurrency pool's threads: the state of a service whose tasks are all
/// busy (CPU-bound work, or a blocking call made from a task).
private final class PoolHolder: @unchecked Sendable {
    private let condition = NSCondition()
    private var started = 0
    private var released = false

    /// Starts `count` tasks that each hold their thread until ``release()``; returns once
    /// `needed` of them run (or after `patience`, when other work keeps threads busy too).
    func hold(count: Int, needed: Int, patience: TimeInterval = 60) {
        for _ in 0..<count {
            Task.detached { self.block() }
        }
        condition.lock()
        let deadline = Date(timeIntervalSinceNow: patience)
        while started < needed, condition.wait(until: deadline) {}
        condition.unlock()
    }

    private func block() {
        condition.lock()
        started += 1
        condition.broadcast()
        while !released { condition.wait() }
        condition.unlock()
    }

    func release() {
        condition.lock()
        released = true
        condition.broadcast()
        condition.unlock()
    }
}

/// A task executor that runs its jobs only when told to: a calling task that a busy pool
/// does not get to run.
private final class ManualExecutor: TaskExecutor, @unchecked Sendable {
    private let lock = NSLock()
    private var jobs: [UnownedJob] = []

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.withLock { jobs.append(job) }
    }

    func runQueuedJobs() {
        while let job = lock.withLock({ jobs.isEmpty ? nil : jobs.removeFirst() }) {
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Answers every HTTP request with 404 and reports that one arrived.
private final class NotFoundResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let arrived: Box<Bool>

    init(arrived: Box<Bool>) { self.arrived = arrived }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        arrived.value = true
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "0")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .notFound, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Where a verification hook runs: a handshake must not wait for a free thread of the
/// cooperative pool, which a loaded service (or a test runner) may hold for longer than the
/// handshake timeout.
@Suite struct HookExecutorTests {
    @Test func theHookRunsOnTheChannelsEventLoopWhileThePoolIsBusy() async throws {
        let fixture = try EngineFixture(.tls13)
        let serverContext = try fixture.server { $0.handshakeTimeout = .seconds(5) }
        let clientContext = try fixture.client()
        let ranOnLoop = Box<Bool?>(nil)
        let hook: TLSVerificationHook = { _ in
            ranOnLoop.value = MultiThreadedEventLoopGroup.currentEventLoop != nil
        }
        let outcome = Self.handshake(server: serverContext, client: clientContext, hook: hook)
        #expect(outcome == nil, "\(String(describing: outcome))")
        #expect(ranOnLoop.value == true)
    }

    /// An OCSP responder (ours) closes a connection whose request does not arrive in time:
    /// the client must send its request as soon as it is connected, not when the calling
    /// task next gets a thread (a revocation check inside a handshake of a busy service).
    @Test func anOCSPRequestIsSentWithoutWaitingForTheCallingTask() async throws {
        let pki = try TestPKI()
        let group = MultiThreadedEventLoopGroup.singleton
        let arrived = Box(false)
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(NotFoundResponder(arrived: arrived))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let url = "http://127.0.0.1:\(listener.localAddress?.port ?? 0)/"
        let request = try OCSPRequest(certificate: pki.serverIdentity.leaf, issuer: pki.issuing.certificate)

        let executor = ManualExecutor()
        let started = Box(false)
        let outcome = Box<Result<OCSPResponse, any Error>?>(nil)
        let fetching = Task(executorPreference: executor) {
            started.value = true
            do {
                outcome.value = .success(try await OCSPClient.fetch(request, from: url, timeout: .seconds(60)))
            } catch {
                outcome.value = .failure(error)
            }
        }
        // The fetch starts, connects and suspends, in the job that set `started` (nothing
        // in it suspends before the connection's future).
        while !started.value {
            executor.runQueuedJobs()
            await Task.yield()
        }
        // From here on the calling task runs only when the test says so. The bound is a
        // safety net for a loaded machine, not a timing claim: before the fix the request
        // never arrived at all.
        let sent = await eventually(timeout: .seconds(90), { arrived.value }, between: {})
        #expect(sent, "the request waited for the calling task")
        // The fetch ends by itself (its 60 s timeout at the latest) once its task runs again;
        // the task is run until it has, so that the test cannot hang on it.
        while outcome.value == nil {
            executor.runQueuedJobs()
            try await Task.sleep(for: .milliseconds(10))
        }
        if case .failure(let error as OCSPFetchError) = outcome.value {
            #expect(error.code == .httpError, "\(error)")
        } else {
            Issue.record("expected the responder's 404 as httpError, got \(String(describing: outcome.value))")
        }
        _ = await fetching.result
        try await listener.close()
    }

    /// One handshake on loopback sockets with every thread of the cooperative pool held
    /// (this one blocks too): returns the server's error, `nil` when it succeeded.
    private static func handshake(server: TLSContext, client: TLSContext, hook: @escaping TLSVerificationHook) -> (any Error)? {
        let width = ProcessInfo.processInfo.activeProcessorCount
        let holder = PoolHolder()
        holder.hold(count: 2 * width, needed: max(1, width - 1))
        defer { holder.release() }
        let group = MultiThreadedEventLoopGroup.singleton
        do {
            let serverHandshake = group.next().makePromise(of: ConnectionInfo.self)
            let listener = try ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            GnuTLSHandler(context: server, handshakePromise: serverHandshake, verificationHook: hook))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            defer { try? listener.close().wait() }
            let clientHandshake = group.next().makePromise(of: ConnectionInfo.self)
            let channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            GnuTLSHandler(context: client, serverHostname: "localhost", handshakePromise: clientHandshake))
                    }
                }
                .connect(host: "127.0.0.1", port: listener.localAddress?.port ?? 0).wait()
            defer { try? channel.close().wait() }
            _ = try serverHandshake.futureResult.wait()
            return nil
        } catch {
            return error
        }
    }
}
