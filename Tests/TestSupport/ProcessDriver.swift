import Foundation

/// The threads that drive every program the tests start (spawning it, reading its output,
/// writing its input, its timeout, its teardown), outside Swift's cooperative pool.
///
/// Swift Testing runs test functions on the cooperative pool, which has one thread per core
/// (two on the CI machine). A test that waits synchronously for a program (``Tool/run(_:input:timeout:directory:environment:package:)``
/// from a synchronous test, ``BackgroundProcess/waitForExit(timeout:)``) holds one of those
/// threads; if the program's output were read by tasks on the same pool, two such tests
/// would starve each other until their timeouts fired. Here the work runs on threads of its
/// own (as a task executor preference, which child tasks inherit), so a blocked test thread
/// only makes the suite slower, never stuck.
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

    /// Runs `body` on the driver threads and blocks the calling thread until it returns: the
    /// synchronous face of the async helpers, for synchronous tests.
    static func block<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Locked<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: shared) {
            do {
                let value = try await body()
                outcome.withLock { $0 = .success(value) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        guard let result = outcome.withLock({ $0 }) else { throw DriverError.noResult }
        return try result.get()
    }

    /// Runs `body` with the driver threads as the task executor preference, suspending (not
    /// blocking) the caller.
    static func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withTaskExecutorPreference(shared) { try await body() }
    }

    private struct DriverError: Error, CustomStringConvertible {
        static let noResult = DriverError()
        var description: String { "the process driver task ended without a result" }
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
