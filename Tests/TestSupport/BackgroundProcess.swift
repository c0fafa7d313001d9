import Foundation
import Subprocess

/// A program running in the background while a test talks to it (a server, or a client fed
/// through its standard input), started and driven through swift-subprocess on
/// ``ProcessDriver`` threads.
///
/// Its output is collected as it arrives, and every wait is for an event: a marker or a
/// line in the output, or the exit. A waiter wakes when new output or the exit arrives, and
/// looks once more when its timeout (a safety net only) expires, so a starved machine makes
/// a wait longer, never wrong. The program leads its own process group; ``stop(grace:)``
/// signals that group (SIGTERM, then SIGKILL) and waits for the exit. Always call it (or its
/// synchronous twin) when done, typically in a `defer`.
///
/// Waits come in an `async` form for `async` tests and a synchronous form that blocks only
/// the calling thread.
public final class BackgroundProcess: Sendable, CustomStringConvertible {
    /// The program's absolute path and its arguments.
    public let command: [String]
    private let state = Locked(State())
    private let commands: AsyncStream<Command>.Continuation

    private struct State: Sendable {
        var pid: Int32?
        var standardOutput = Data()
        var standardError = Data()
        /// Set once the program has ended (and was reaped), or could not start.
        var exit: ExitStatus?
        var failure: String?
        var finished: Bool { exit != nil || failure != nil }
        /// Bumped on every change, so a waiter that looked at an older state never sleeps
        /// through a change.
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private enum Command: Sendable {
        case write(String)
        case closeInput
        case signal(Signal)
    }

    /// Starts `arguments[0]` (looked up on PATH) with the rest as arguments and returns once
    /// it is running (or throws when it cannot start).
    ///
    /// - Parameters:
    ///   - directory: working directory.
    ///   - holdStandardInput: keep standard input open for ``send(_:)`` until
    ///     ``closeInput()``; otherwise it is closed at once (the program reads end of file).
    public init(_ arguments: [String], directory: String? = nil, environment: [String: String]? = nil,
                holdStandardInput: Bool = true, package: String? = nil) throws {
        guard let name = arguments.first else { throw EmptyCommandError() }
        command = [try Tool.locate(name, package: package)] + arguments.dropFirst()
        let configuration = try Invocation.configuration(command, directory: directory, environment: environment)
        let (stream, continuation) = AsyncStream<Command>.makeStream()
        commands = continuation
        if !holdStandardInput { continuation.yield(.closeInput) }

        let state = self.state
        let started = DispatchSemaphore(value: 0)
        Task(executorPreference: ProcessDriver.shared) {
            do {
                let result = try await Subprocess.run(configuration, input: .inputWriter, output: .sequence, error: .sequence) { execution in
                    Self.update(state) { $0.pid = execution.processIdentifier.value }
                    started.signal()
                    await withTaskGroup(of: Bool.self) { group in
                        group.addTask {
                            await drain(execution.standardOutput) { bytes in Self.update(state) { $0.standardOutput.append(bytes) } }
                            return true
                        }
                        group.addTask {
                            await drain(execution.standardError) { bytes in Self.update(state) { $0.standardError.append(bytes) } }
                            return true
                        }
                        group.addTask {
                            // Ends when the group is cancelled, once both streams ended.
                            for await command in stream {
                                switch command {
                                case .write(let text): _ = try? await execution.standardInputWriter.write(text)
                                case .closeInput: try? await execution.standardInputWriter.finish()
                                // The group, by the pid of its leader, which is not reaped before this closure returns.
                                case .signal(let signal): try? execution.send(signal: signal, toProcessGroup: true)
                                }
                            }
                            return false
                        }
                        var ended = 0
                        for await isStream in group where isStream {
                            ended += 1
                            if ended == 2 { break }
                        }
                        group.cancelAll()
                    }
                }
                Self.update(state) { $0.exit = ExitStatus(result.terminationStatus) }
            } catch {
                Self.update(state) { $0.failure = "\(error)" }
            }
            continuation.finish()
            // Only reached first when the program could not be started.
            started.signal()
        }
        started.wait()
        if let failure = state.withLock({ $0.pid == nil ? $0.failure : nil }) {
            throw BackgroundProcessError(description: "cannot start `\(command.joined(separator: " "))`: \(failure)")
        }
    }

    // MARK: What it printed, how it ended

    /// The process id (of the program and of its process group).
    public var pid: Int32 { state.withLock { $0.pid ?? -1 } }
    public var isRunning: Bool { state.withLock { !$0.finished } }
    /// The exit code (the signal number when a signal ended it), or nil while it runs.
    public var exitCode: Int32? { state.withLock { $0.exit?.code } }
    public var standardOutput: String { state.withLock { String(decoding: $0.standardOutput, as: UTF8.self) } }
    public var standardError: String { state.withLock { String(decoding: $0.standardError, as: UTF8.self) } }
    /// Standard output and error together.
    public var output: String { standardOutput + standardError }

    /// The complete lines of standard output so far (without the part after the last newline).
    public var lines: [String] { Self.completeLines(standardOutput) }

    /// The command, its state and what it printed, for failure messages.
    public var description: String {
        let (status, out, err) = state.withLock { state -> (String, Data, Data) in
            let status: String
            if let exit = state.exit {
                status = exit.signal.map { "killed by signal \($0)" } ?? "exited \(exit.code)"
            } else if let failure = state.failure {
                status = "failed: \(failure)"
            } else {
                status = "running"
            }
            return (status, state.standardOutput, state.standardError)
        }
        return "`\(command.joined(separator: " "))` (pid \(pid), \(status))\nstdout:\n\(String(decoding: out, as: UTF8.self))\nstderr:\n\(String(decoding: err, as: UTF8.self))"
    }

    // MARK: Talking to it

    /// Writes `text` to the program's standard input (in order with other writes; a write
    /// to a program that stopped reading is dropped).
    public func send(_ text: String) { commands.yield(.write(text)) }

    /// Closes the program's standard input, after what was sent before.
    public func closeInput() { commands.yield(.closeInput) }

    /// Sends `signal` to the program's process group (while it runs).
    public func signal(_ signal: Int32) { commands.yield(.signal(Signal(rawValue: signal))) }

    // MARK: Waiting for events (async)

    /// Waits until standard output and error together contain `marker`; returns them, or
    /// nil when the program ended or `timeout` seconds passed without it.
    public func waitForOutput(_ marker: String, timeout: TimeInterval = 60) async -> String? {
        await waitFor(timeout: timeout) { state in
            let text = String(decoding: state.standardOutput, as: UTF8.self) + String(decoding: state.standardError, as: UTF8.self)
            return text.contains(marker) ? text : nil
        }
    }

    /// Waits for the first complete line of standard output that satisfies `predicate`;
    /// nil when the program ended or `timeout` seconds passed without one.
    public func waitForLine(timeout: TimeInterval = 60, where predicate: @escaping @Sendable (String) -> Bool) async -> String? {
        await waitFor(timeout: timeout) { state in
            Self.completeLines(String(decoding: state.standardOutput, as: UTF8.self)).first(where: predicate)
        }
    }

    /// Waits for the program to end; its exit code, or nil when it still runs after
    /// `timeout` seconds.
    @discardableResult
    public func waitForExit(timeout: TimeInterval = 60) async -> Int32? {
        await waitFor(timeout: timeout) { $0.exit?.code }
    }

    /// Ends the program: closes its input, sends SIGTERM to its process group, then SIGKILL
    /// when it is still running after `grace` seconds, and waits for it to be reaped. Its
    /// exit code (the signal number when a signal ended it).
    @discardableResult
    public func stop(grace: TimeInterval = 5) async -> Int32? {
        closeInput()
        if let code = exitCode { return code }
        signal(SIGTERM)
        if let code = await waitForExit(timeout: grace) { return code }
        signal(SIGKILL)
        return await waitForExit(timeout: 60)
    }

    // MARK: Waiting for events (blocking the calling thread)

    /// ``waitForOutput(_:timeout:)``, blocking the calling thread.
    public func waitForOutput(_ marker: String, timeout: TimeInterval = 60) -> String? {
        Self.blocking { await self.waitForOutput(marker, timeout: timeout) }
    }

    /// ``waitForLine(timeout:where:)``, blocking the calling thread.
    public func waitForLine(timeout: TimeInterval = 60, where predicate: @escaping @Sendable (String) -> Bool) -> String? {
        Self.blocking { await self.waitForLine(timeout: timeout, where: predicate) }
    }

    /// ``waitForExit(timeout:)``, blocking the calling thread.
    @discardableResult
    public func waitForExit(timeout: TimeInterval = 60) -> Int32? {
        Self.blocking { await self.waitForExit(timeout: timeout) }
    }

    /// ``stop(grace:)``, blocking the calling thread (for a `defer`).
    @discardableResult
    public func stop(grace: TimeInterval = 5) -> Int32? {
        Self.blocking { await self.stop(grace: grace) }
    }

    // MARK: Internals

    private static func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T?) -> T? {
        (try? ProcessDriver.block(body)) ?? nil
    }

    private static func completeLines(_ text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline
        return lines
    }

    /// Changes the state and wakes every waiter.
    private static func update(_ state: Locked<State>, _ change: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state)
            state.generation &+= 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Evaluates `check` on every change until it gives a value, the program has ended
    /// (one last look), or `timeout` seconds passed (one last look).
    private func waitFor<T: Sendable>(timeout: TimeInterval, _ check: @escaping @Sendable (State) -> T?) async -> T? {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while true {
            let (value, finished, generation) = state.withLock { (check($0), $0.finished, $0.generation) }
            if let value { return value }
            if finished || ContinuousClock.now >= deadline || Task.isCancelled { return nil }
            await nextChange(after: generation, deadline: deadline)
        }
    }

    /// Returns when the state changed after `generation`, at `deadline`, or on cancellation.
    private func nextChange(after generation: UInt64, deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            let id = state.withLock { state -> UInt64 in
                state.nextWaiter &+= 1
                return state.nextWaiter
            }
            group.addTask { [state] in
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let now = state.withLock { state -> Bool in
                            if state.generation != generation || Task.isCancelled { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
            }
            await group.next()
            group.cancelAll()
        }
    }
}

/// A background program that could not be started.
public struct BackgroundProcessError: Error, CustomStringConvertible {
    public var description: String
}
