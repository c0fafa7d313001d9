import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
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
