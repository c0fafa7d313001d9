import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The harness that runs external programs (``Tool``): it must hold
/// on a busy machine, where system calls get interrupted and everything is slow.
@Suite("Running external programs")
struct ProcessRunnerTests {
    /// Issue 9, part 3: a signal that interrupts a blocked read (EINTR) made Foundation's
    /// `readDataToEndOfFile()` in the old `Tool.run` hit a `try!`, killing the whole test
    /// process (signal 4) after 258 passed tests. Here every thread of a child test process
    /// is hit by a stream of SIGPROF (a handler without SA_RESTART, as a profiler installs;
    /// it is one of the few signals Dispatch's worker threads leave unblocked) while programs
    /// run, synchronously and async; each must deliver all of its output.
    @Test func interruptedSystemCallsAreRetried() async {
        await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            await interruptedReadsScenario()
        }
    }

    /// The timeout is a safety net that kills the program and what it started, through its
    /// process group, and says so in the result.
    @Test func timeoutKillsTheProcessGroup() async throws {
        // The shell prints its background child's pid, then waits for it (forever).
        let result = try await Tool.run(["sh", "-c", "sleep 100000 & echo $!; wait"], timeout: 1)
        #expect(result.timedOut && result.signal == SIGKILL && !result.succeeded, "\(result)")
        let child = try #require(Int32(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)), "\(result)")
        // SIGKILL was sent to the group before `run` returned; wait for the child to be gone.
        #expect(await processEnds(child), "the shell's child \(child) survived the timeout")
    }

    /// A program that cannot be found fails the test by name, before anything runs.
    @Test func missingProgramIsNamed() async throws {
        await #expect(throws: MissingToolError.self) {
            try await Tool.run(["no-such-program-\(UUID().uuidString)"], package: "nothing")
        }
    }

    /// Synchronous waits from more tasks than Swift's cooperative pool has threads (one per
    /// core): each holds a pool thread while it waits, so nothing they wait for may need the
    /// pool. (swift-subprocess ends each run with a task on the global pool; waiting for
    /// `Subprocess.run` to return from a synchronous wait deadlocked the suite.)
    @Test func synchronousWaitsDoNotNeedTheCooperativePool() async throws {
        let width = 4 * ProcessInfo.processInfo.activeProcessorCount
        let codes = await withTaskGroup(of: Int32?.self) { group in
            for index in 0..<width {
                group.addTask {
                    try? runSynchronously(["sh", "-c", "cat; exit 7"], input: "\(index)").exitCode
                }
            }
            var codes: [Int32?] = []
            for await code in group { codes.append(code) }
            return codes
        }
        #expect(codes.count == width)
        #expect(codes.allSatisfy { $0 == 7 }, "\(codes)")
    }

    /// The synchronous `run` (for synchronous tests) gives the same result as the async one.
    @Test func synchronousRunCollectsOutput() throws {
        let result = try Tool.run(["sh", "-c", "cat; echo err >&2; exit 3"], input: "in\n")
        #expect(result.exitCode == 3 && result.standardOutput == "in\n" && result.standardError == "err\n" && !result.timedOut,
                "\(result)")
    }
}

/// Whether `pid` is gone or a zombie, waiting (bounded, polling `/proc`: no event tells
/// another process's death) up to 60 seconds.
private func processEnds(_ pid: Int32) async -> Bool {
    for _ in 0..<6000 {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // `pid (comm) STATE ...`: the state follows the last parenthesis.
        if let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z") {
            return true
        }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return false
}

/// Runs in the exit test's own process: interrupts every thread with SIGPROF while programs
/// run, and exits non-zero (with a message) on any lost or wrong output.
private func interruptedReadsScenario() async {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in }
    action.sa_flags = 0  // no SA_RESTART: blocked reads fail with EINTR
    sigemptyset(&action.sa_mask)
    sigaction(SIGPROF, &action, nil)

    // tgkill(2) is in glibc but not in the Swift module: look it up.
    typealias ThreadKill = @convention(c) (Int32, Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "tgkill") else {
        FileHandle.standardError.write(Data("tgkill not found\n".utf8))
        exit(2)
    }
    let threadKill = unsafeBitCast(symbol, to: ThreadKill.self)
    let stop = StopFlag()
    let stopped = DispatchSemaphore(value: 0)
    let interrupter = Thread {
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGPROF)
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        while !stop.isSet {
            for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
                if let tid = Int32(task) { _ = threadKill(getpid(), tid, SIGPROF) }
            }
            usleep(500)
        }
        stopped.signal()
    }
    interrupter.start()

    func fail(_ message: String) -> Never {
        stop.set()
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
    // The program prints in bursts, so the readers block (and are interrupted) in between.
    let script = "for i in 1 2 3 4 5 6 7 8; do echo line $i; echo err $i >&2; sleep 0.02; done"
    let expected = (1...8).map { "line \($0)\n" }.joined()
    do {
        for round in 0..<15 {
            let sync = try runSynchronously(["sh", "-c", script])
            if sync.standardOutput != expected || !sync.succeeded { fail("round \(round), synchronous run: \(sync)") }
            let piped = try await Tool.run(["sh", "-c", "cat; " + script], input: "from stdin\n")
            if piped.standardOutput != "from stdin\n" + expected || !piped.succeeded { fail("round \(round), async run: \(piped)") }
        }
    } catch {
        fail("error: \(error)")
    }
    // No signal may reach the test runner's own reporting once this returns.
    stop.set()
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            stopped.wait()
            continuation.resume()
        }
    }
}

/// The synchronous `Tool.run` (an async function would pick the async one).
private func runSynchronously(_ arguments: [String], input: String? = nil) throws -> ProcessResult {
    try Tool.run(arguments, input: input)
}

/// A flag set once, read from another thread.
private final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
