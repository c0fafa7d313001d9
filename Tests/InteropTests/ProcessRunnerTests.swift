import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The harness that runs external programs (``Tool``, ``BackgroundProcess``): it must hold
/// on a busy machine, where system calls get interrupted and everything is slow.
@Suite("Running external programs")
struct ProcessRunnerTests {
    /// Issue 9, part 3: a signal that interrupts a blocked read (EINTR) made Foundation's
    /// `readDataToEndOfFile()` in the old `Tool.run` hit a `try!`, killing the whole test
    /// process (signal 4) after 258 passed tests. Here every thread of a child test process
    /// is hit by a stream of SIGPROF (a handler without SA_RESTART, as a profiler installs;
    /// it is one of the few signals Dispatch's worker threads leave unblocked) while programs
    /// run, one-shot and in the background; each must deliver all of its output.
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

    /// A background program: input in order, output as an event, the exit as an event.
    @Test func backgroundProcessTalksAndExits() async throws {
        let cat = try BackgroundProcess(["cat"])
        defer { cat.stop() }
        cat.send("first line\n")
        cat.send("second line\n")
        let line = await cat.waitForLine { $0 == "second line" }
        #expect(line != nil && cat.lines == ["first line", "second line"], "\(cat)")
        cat.closeInput()
        #expect(await cat.waitForExit() == 0, "\(cat)")
    }

    /// `stop` ends a background program that ignores its input, by SIGTERM to its group.
    @Test func backgroundProcessStops() async throws {
        let sleeper = try BackgroundProcess(["sleep", "100000"])
        #expect(sleeper.isRunning)
        let code = await sleeper.stop()
        #expect(code == SIGTERM && !sleeper.isRunning, "\(sleeper)")
    }

    /// A program that cannot be found fails the test by name, before anything runs.
    @Test func missingProgramIsNamed() async throws {
        await #expect(throws: MissingToolError.self) {
            try await Tool.run(["no-such-program-\(UUID().uuidString)"], package: "nothing")
        }
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
        let peer = try BackgroundProcess(["sh", "-c", "while read line; do echo got $line; done"])
        for index in 0..<20 {
            peer.send("\(index)\n")
            if await peer.waitForLine(where: { $0 == "got \(index)" }) == nil { fail("background: no 'got \(index)': \(peer)") }
        }
        peer.closeInput()
        if await peer.waitForExit() != 0 { fail("background: \(peer)") }
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
private func runSynchronously(_ arguments: [String]) throws -> ProcessResult {
    try Tool.run(arguments)
}

/// A flag set once, read from another thread.
private final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
