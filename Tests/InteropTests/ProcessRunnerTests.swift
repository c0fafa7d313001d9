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
    /// run (to their end, and in the background); each must deliver all of its output.
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

    /// More programs at once than Swift's cooperative pool has threads (one per core), each
    /// awaited: none holds a pool thread while it runs, so none waits for another.
    @Test func manyProgramsAtOnceDoNotHoldThePool() async throws {
        let width = 4 * ProcessInfo.processInfo.activeProcessorCount
        let codes = await withTaskGroup(of: Int32?.self) { group in
            for index in 0..<width {
                group.addTask {
                    try? await Tool.run(["sh", "-c", "cat; exit 7"], input: "\(index)").exitCode
                }
            }
            var codes: [Int32?] = []
            for await code in group { codes.append(code) }
            return codes
        }
        #expect(codes.count == width)
        #expect(codes.allSatisfy { $0 == 7 }, "\(codes)")
    }

    /// `run` collects standard output and error apart, feeds standard input, reports the code.
    @Test func runCollectsOutput() async throws {
        let result = try await Tool.run(["sh", "-c", "cat; echo err >&2; exit 3"], input: "in\n")
        #expect(result.exitCode == 3 && result.standardOutput == "in\n" && result.standardError == "err\n" && !result.timedOut,
                "\(result)")
    }

    /// A background program is driven through its standard input, and each wait wakes on
    /// what it prints and on its exit.
    @Test func backgroundProcessWaitsOnItsOutputAndExit() async throws {
        let process = try await BackgroundProcess(["sh", "-c", "while read line; do echo \"got $line\"; done; echo done >&2; exit 4"])
        defer { process.stop() }
        for word in ["one", "two", "three"] {
            process.send("\(word)\n")
            try await process.waitForOutput("got \(word)\n")
        }
        #expect(process.isRunning, "\(process)")
        process.closeInput()
        #expect(await process.waitForExit() == 4, "\(process)")
        #expect(process.lines == ["got one", "got two", "got three"] && process.standardError == "done\n", "\(process)")
    }

    /// A wait for output that can no longer come fails as soon as the program exits, with
    /// its output, not after the safety net's timeout.
    @Test func waitingForOutputFromAnExitedProgramFails() async throws {
        let process = try await BackgroundProcess(["sh", "-c", "echo something else"], closeInput: true)
        defer { process.stop() }
        let error = await #expect(throws: BackgroundProcessError.self) {
            try await process.waitForOutput("never printed", timeout: 600)
        }
        #expect(error?.description.contains("exited before") == true && error?.description.contains("something else") == true,
                "\(String(describing: error))")
    }

    /// ``BackgroundProcess/terminate()`` ends the program and what it started, through its
    /// process group (SIGTERM), and waits for the exit.
    @Test func terminateEndsTheProcessGroup() async throws {
        let process = try await BackgroundProcess(["sh", "-c", "sleep 100000 & echo $!; wait"])
        defer { process.stop() }
        let line = try await process.waitFor("the child's pid") { $0.lines.first }
        let child = try #require(Int32(line), "\(process)")
        let code = await process.terminate()
        #expect(code == SIGTERM && process.exitSignal == SIGTERM && !process.isRunning, "\(process)")
        #expect(await processEnds(child), "the shell's child \(child) survived terminate()")
    }

    /// Values recorded from other threads wake their waiters; nothing polls.
    @Test func recordedValuesWakeTheirWaiters() async throws {
        let recorded = RecordedValues<Int>()
        async let waited = recorded.waitForCount(100, "100 values")
        await withTaskGroup(of: Void.self) { group in
            for value in 0..<100 {
                group.addTask { recorded.append(value) }
            }
        }
        #expect(try await waited.count == 100)
        await #expect(throws: WaitTimedOut.self) { try await recorded.waitForCount(101, "a value nobody records", timeout: 0.2) }
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
            let plain = try await Tool.run(["sh", "-c", script])
            if plain.standardOutput != expected || !plain.succeeded { fail("round \(round), run: \(plain)") }
            let piped = try await Tool.run(["sh", "-c", "cat; " + script], input: "from stdin\n")
            if piped.standardOutput != "from stdin\n" + expected || !piped.succeeded { fail("round \(round), run with input: \(piped)") }
            let background = try await BackgroundProcess(["sh", "-c", script], closeInput: true)
            if await background.waitForExit() != 0 || background.standardOutput != expected { fail("round \(round), background: \(background)") }
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

/// A flag set once, read from another thread.
private final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
