import Foundation

/// The threads that drive every program the tests start (spawning it, reading its output,
/// writing its input, its timeout, its teardown), outside Swift's cooperative pool.
///
/// Swift Testing runs test functions on the cooperative pool, which has one thread per core
/// (two on the CI machine), and synchronous tests hold those threads while they wait. The
/// async `Tool.run` does its work here (as a task executor preference, which child tasks
/// inherit) and reports the program's end as soon as it is seen. swift-subprocess still
/// needs the global pool for parts of each run (its final unstructured task does not
/// inherit the preference), which is why synchronous waits do not go through it.
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
