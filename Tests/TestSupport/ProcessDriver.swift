import Foundation

/// The threads that drive every program the tests start (spawning it, reading its output,
/// writing its input, its timeout, its teardown), outside Swift's cooperative pool.
///
/// Swift Testing runs test functions on the cooperative pool, which has one thread per core
/// (two on the CI machine). `Tool.run` and ``BackgroundProcess`` do their work here (as a
/// task executor preference, which child tasks inherit), so a test that blocks a pool
/// thread (a NIO future's `wait()`, a CPU-bound key generation) never delays reading a
/// program's output or noticing its exit. swift-subprocess still runs its last step (an
/// unstructured task) on the global pool, which only `async` waiters, never blocked
/// threads, wait for.
final class ProcessDriver: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` is only touched with `condition` locked.

    static let shared = ProcessDriver(threads: 2)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init(threads: Int) {
        for index in 0..<threads {
            let thread = Thread { [self] in self.work() }
            thread.name = "TestSupport.ProcessDriver-\(index)"
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// A value behind a lock.
final class Locked<Value: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is only touched with `lock` held.
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
