import Foundation
import Subprocess

/// A program running in the background while a test talks to it (a server, or a client
/// driven through its standard input), run through swift-subprocess like ``Tool/run(_:input:timeout:directory:environment:package:)``.
///
/// - Its output is collected as it comes; every wait (``waitFor(_:timeout:_:)``,
///   ``waitForOutput(_:timeout:)``, ``waitForExit(timeout:)``) wakes on an event (a new
///   chunk of output, the exit) and re-checks its condition, never on a clock. Each also has
///   a timeout, a safety net against a hang, never a measurement.
/// - The program leads its own process group. ``stop()`` (usable in a `defer`) and
///   ``terminate()`` end it by that group: SIGTERM, SIGKILL a second later. The `lifetime`
///   safety net kills the group if a test forgot to.
public final class BackgroundProcess: Sendable, CustomStringConvertible {
    /// The program (its absolute path) and its arguments.
    public let command: [String]
    /// The process id, which is also its process group id.
    public let pid: Int32

    private let state: Locked<BackgroundState>
    private let changes: ChangeSignal
    private let input: AsyncStream<String>.Continuation
    private let task: Task<Void, Never>

    /// Starts `arguments[0]` (looked up on PATH) with the rest as arguments, and returns
    /// once it was spawned.
    ///
    /// - Parameters:
    ///   - arguments: the program's name (or path) and its arguments.
    ///   - directory: working directory.
    ///   - environment: variables set for the program on top of this process's environment.
    ///   - package: the Debian package that provides the program, named when it is missing.
    ///   - closeInput: close standard input at once (the program reads end of file);
    ///     otherwise it stays open for ``send(_:)`` until ``closeInput()``.
    ///   - lineBuffered: run the program under `stdbuf -oL -eL`, for programs (openssl) that
    ///     buffer what they print to a pipe.
    ///   - lifetime: seconds after which the process group is killed (SIGKILL), a safety net.
    public init(_ arguments: [String], directory: String? = nil, environment: [String: String]? = nil, package: String? = nil,
                closeInput: Bool = false, lineBuffered: Bool = false, lifetime: TimeInterval = 600) async throws {
        guard let name = arguments.first else { throw EmptyCommandError() }
        let executable = try Tool.locate(name, package: package)
        let command = [executable] + arguments.dropFirst()
        let launched = lineBuffered ? [try Tool.locate("stdbuf", package: "coreutils"), "-oL", "-eL"] + command : command
        let configuration = try Invocation.configuration(launched, directory: directory, environment: environment)
        let (inputStream, input) = AsyncStream.makeStream(of: String.self)
        if closeInput { input.finish() }
        let state = Locked(BackgroundState())
        let changes = ChangeSignal()
        let pid: Int32 = try await withCheckedThrowingContinuation { started in
            state.withLock { $0.started = started }
            // The task is kept in `state` below; `stop()` cancels it, which makes
            // swift-subprocess run the teardown (SIGTERM to the group, then SIGKILL).
            let task = Task(executorPreference: ProcessDriver.shared) {
                await Self.run(configuration, input: inputStream, lifetime: lifetime, state: state, changes: changes)
            }
            state.withLock { $0.task = task }
        }
        guard let task = state.withLock({ $0.task }) else { throw BackgroundProcessError("`\(command.joined(separator: " "))` did not start") }
        self.command = command
        self.pid = pid
        self.state = state
        self.changes = changes
        self.input = input
        self.task = task
    }

    private static func run(_ configuration: Configuration, input: AsyncStream<String>, lifetime: TimeInterval,
                            state: Locked<BackgroundState>, changes: ChangeSignal) async {
        do {
            let result = try await Subprocess.run(configuration, input: .inputWriter, output: .sequence, error: .sequence) { execution in
                let pid = execution.processIdentifier.value
                state.withLock { $0.started.take() }?.resume(returning: pid)
                await pump(execution, input: input, lifetime: lifetime, onTimeout: {},
                           output: { bytes in change(state, changes) { $0.standardOutput.append(contentsOf: bytes) } },
                           error: { bytes in change(state, changes) { $0.standardError.append(contentsOf: bytes) } })
                // Both streams ended: the program exited (or closed them). Report the exit
                // as soon as it is seen; swift-subprocess reaps it afterwards.
                if let status = peekExit(pid) {
                    change(state, changes) {
                        if $0.exit == nil { $0.exit = status }
                        $0.finished = true
                    }
                }
            }
            change(state, changes) {
                if $0.exit == nil { $0.exit = ExitStatus(result.terminationStatus) }
                $0.finished = true
            }
        } catch {
            let notStarted = state.withLock { $0.started.take() }
            if let notStarted {
                notStarted.resume(throwing: error)
            }
            change(state, changes) {
                if $0.exit == nil { $0.exit = ExitStatus(code: -1, signal: nil) }
                $0.finished = true
                $0.failure = "\(error)"
            }
        }
    }

    /// Everything the program wrote to standard output so far.
    public var standardOutput: String { state.withLock { String(decoding: $0.standardOutput, as: UTF8.self) } }
    /// Everything the program wrote to standard error so far.
    public var standardError: String { state.withLock { String(decoding: $0.standardError, as: UTF8.self) } }
    /// Standard output and error together.
    public var output: String { standardOutput + standardError }
    /// The complete lines of standard output so far (without the part after the last newline).
    public var lines: [String] {
        var lines = standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()
        return lines
    }
    /// Whether the program's exit has not been seen yet.
    public var isRunning: Bool { state.withLock { $0.exit == nil } }
    /// The exit code (the signal number when a signal ended it), nil while it runs.
    public var exitCode: Int32? { state.withLock { $0.exit?.code } }
    /// The signal that ended the program, if one did.
    public var exitSignal: Int32? { state.withLock { $0.exit?.signal } }

    /// The command, its state and what it printed, for failure messages.
    public var description: String {
        let (exit, failure) = state.withLock { ($0.exit, $0.failure) }
        let status = exit.map { $0.signal.map { "killed by signal \($0)" } ?? "exited \($0.code)" } ?? "running"
        return "`\(command.joined(separator: " "))` (pid \(pid), \(status)\(failure.map { ", \($0)" } ?? ""))\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }

    /// Writes `text` to the program's standard input (in order, without waiting).
    public func send(_ text: String) { input.yield(text) }

    /// Closes the program's standard input once what was sent is written.
    public func closeInput() { input.finish() }

    /// Sends `signal` to the program (only while it runs, so never to a reused pid).
    public func signal(_ signal: Int32) {
        state.withLock { if $0.exit == nil { _ = kill(pid, signal) } }
    }

    /// Waits until `probe` returns a value, re-checking it whenever the program prints
    /// something or exits.
    ///
    /// - Throws: ``BackgroundProcessError`` when the program exited without `probe`
    ///   succeeding, ``WaitTimedOut`` when `timeout` seconds (the safety net) passed.
    public func waitFor<T: Sendable>(_ what: String, timeout: Double = 120,
                                     _ probe: @escaping @Sendable (BackgroundProcess) -> T?) async throws -> T {
        do {
            return try await changes.wait(for: "\(what) from `\(command.joined(separator: " "))`", timeout: timeout) {
                if let value = probe(self) { return value }
                if !self.isRunning { throw BackgroundProcessError("exited before \(what): \(self)") }
                return nil
            }
        } catch let error as WaitTimedOut {
            throw BackgroundProcessError("\(error): \(self)")
        }
    }

    /// Waits until the complete lines of standard output or error contain `marker`;
    /// returns both. Only complete lines count: a program's line may arrive in pieces
    /// (`PORT ` before its number), and callers read the rest of the marker's line.
    @discardableResult
    public func waitForOutput(_ marker: String, timeout: Double = 120) async throws -> String {
        try await waitFor("'\(marker)' in its output", timeout: timeout) { process in
            func completeLines(_ text: String) -> Substring {
                text.lastIndex(of: "\n").map { text[...$0] } ?? ""
            }
            let found = completeLines(process.standardOutput).contains(marker) || completeLines(process.standardError).contains(marker)
            return found ? process.output : nil
        }
    }

    /// Waits until the program exits and its output is complete; its exit code, or nil
    /// when it still runs after `timeout` seconds (the safety net).
    @discardableResult
    public func waitForExit(timeout: Double = 120) async -> Int32? {
        try? await changes.wait(for: "exit", timeout: timeout) { [state] in state.withLock { $0.finished ? $0.exit?.code : nil } }
    }

    /// Starts ending the program and returns at once: SIGTERM to its process group, SIGKILL
    /// a second later (swift-subprocess's teardown). Made for a `defer`.
    public func stop() {
        input.finish()
        task.cancel()
    }

    /// Ends the program like ``stop()`` and waits for its exit; its exit code.
    @discardableResult
    public func terminate() async -> Int32? {
        stop()
        await task.value
        return exitCode
    }
}

/// Applies `update` to `state`, then wakes whoever waits on `changes`.
private func change(_ state: Locked<BackgroundState>, _ changes: ChangeSignal, _ update: (inout BackgroundState) -> Void) {
    state.withLock(update)
    changes.signal()
}

/// A wait on a ``BackgroundProcess`` that did not end as expected (the message holds the
/// program's output).
public struct BackgroundProcessError: Error, CustomStringConvertible {
    /// What happened, with the program's output.
    public var description: String
    init(_ description: String) { self.description = description }
}

/// What a ``BackgroundProcess`` has seen so far.
struct BackgroundState: Sendable {
    /// Bytes, not `Data`: `Data` keeps its storage behind a pointer with enum tag bits set,
    /// which LeakSanitizer does not recognise, so the output of a program still being torn
    /// down when the test process exits (a `stop()` in a `defer`) was reported as leaked.
    var standardOutput: [UInt8] = []
    var standardError: [UInt8] = []
    var exit: ExitStatus?
    /// swift-subprocess returned, or both output streams ended: the output is complete.
    var finished = false
    var failure: String?
    var started: CheckedContinuation<Int32, any Error>?
    var task: Task<Void, Never>?
}
