import Foundation
import Subprocess
import SystemPackage

/// The outcome of running an external program.
public struct ProcessResult: Sendable, CustomStringConvertible {
    /// The program and its arguments.
    public var command: [String]
    /// The exit status (meaningless when ``signal`` is set).
    public var exitCode: Int32
    /// What the program printed on standard output.
    public var standardOutput: String
    /// What the program printed on standard error.
    public var standardError: String
    /// Whether the program was killed at its timeout.
    public var timedOut: Bool
    /// The signal that ended the program (SIGKILL after a timeout), or nil when it exited.
    public var signal: Int32? = nil

    /// Exit status 0 within the timeout.
    public var succeeded: Bool { exitCode == 0 && !timedOut }
    /// stdout and stderr together, for messages.
    public var output: String { standardOutput + standardError }

    public var description: String {
        "`\(command.joined(separator: " "))` \(signal.map { "was killed by signal \($0)" } ?? "exited \(exitCode)")\(timedOut ? " (timed out)" : "")\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }
}

/// Thrown when a test needs a program that is not installed: the test fails, naming it.
public struct MissingToolError: Error, CustomStringConvertible {
    /// The program's name.
    public var tool: String
    /// The Debian (or PyPI) package that provides it.
    public var package: String
    public var description: String {
        "required tool '\(tool)' was not found on PATH: install it (Debian package or PyPI: \(package)); the test cannot run without it"
    }
}

/// Runs external programs (openssl, certtool, pkilint, tlsctl) through swift-subprocess, in a
/// process group of their own: reads retry EINTR, the exit is an event, and the timeout (a
/// safety net) kills the whole group (SIGKILL) and sets `timedOut`.
///
/// There is only an `async` `run`: a test that runs a program is `async` and suspends
/// instead of holding one of the cooperative pool's threads (one per core) while the
/// program runs. (A synchronous wait on swift-subprocess can deadlock once synchronous
/// waiters hold every pool thread: its last step runs on that pool.) Programs that run
/// beside the test are ``BackgroundProcess``es.
public enum Tool {
    /// The absolute path of `name` on PATH, or a ``MissingToolError``.
    public static func locate(_ name: String, package: String? = nil) throws -> String {
        if name.hasPrefix("/") {
            guard FileManager.default.isExecutableFile(atPath: name) else {
                throw MissingToolError(tool: name, package: package ?? name)
            }
            return name
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw MissingToolError(tool: name, package: package ?? name)
    }

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments, suspending the
    /// calling task until it ends.
    ///
    /// - Parameters:
    ///   - arguments: the program's name (or path) and its arguments.
    ///   - input: bytes written to standard input, which is then closed (it is closed at
    ///     once when `nil`).
    ///   - timeout: seconds before the program's process group is killed (SIGKILL) and
    ///     `timedOut` is set. A safety net against a hang, never a measurement.
    ///   - directory: working directory.
    ///   - environment: variables set for the program on top of this process's environment.
    ///   - package: the Debian package that provides the program, named when it is missing.
    @discardableResult
    public static func run(
        _ arguments: [String], input: String? = nil, timeout: TimeInterval = 60, directory: String? = nil,
        environment: [String: String]? = nil, package: String? = nil
    ) async throws -> ProcessResult {
        let invocation = try Invocation(arguments, input: input, timeout: timeout, directory: directory,
                                        environment: environment, package: package)
        return try await withCheckedThrowingContinuation { continuation in
            invocation.start { continuation.resume(with: $0) }
        }
    }
}

/// One program to run to its end with a timeout, its output collected.
struct Invocation: Sendable {
    let command: [String]
    let configuration: Configuration
    let input: String?
    let timeout: TimeInterval

    init(_ arguments: [String], input: String?, timeout: TimeInterval, directory: String?,
         environment: [String: String]?, package: String?) throws {
        guard let name = arguments.first else { throw EmptyCommandError() }
        let executable = try Tool.locate(name, package: package)
        command = [executable] + arguments.dropFirst()
        configuration = try Self.configuration(command, directory: directory, environment: environment)
        self.input = input
        self.timeout = timeout
    }

    /// The configuration shared by one-shot programs and ``BackgroundProcess``: the program
    /// leads a new process group (so a kill reaches what it starts), and a cancelled run
    /// ends it: SIGTERM to the group, SIGKILL to the group a second later.
    static func configuration(_ command: [String], directory: String?, environment: [String: String]?) throws -> Configuration {
        _ = ignoreSIGPIPE
        var options = PlatformOptions()
        options.processGroupID = 0
        options.teardownSequence = [.gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: .seconds(1))]
        var variables = Environment.inherit
        // The children's LeakSanitizer suppressions, named explicitly: the inherited
        // environment is Foundation's copy, taken before `setenv` added them.
        ChildLeakSuppressions.install()
        var updates: [Environment.Key: String?] = [:]
        if let options = getenv("LSAN_OPTIONS"), let key = Environment.Key(rawValue: "LSAN_OPTIONS") {
            updates[key] = String(cString: options)
        }
        if let environment {
            for (name, value) in environment {
                guard let key = Environment.Key(rawValue: name) else { throw InvalidEnvironmentError(name: name) }
                updates[key] = value
            }
        }
        if !updates.isEmpty { variables = variables.updating(updates) }
        return Configuration(
            executable: .path(FilePath(command[0])), arguments: Arguments(Array(command.dropFirst())),
            environment: variables, workingDirectory: directory.map { FilePath($0) }, platformOptions: options)
    }

    /// Starts the program on the ``ProcessDriver`` threads and calls `deliver` once with the
    /// outcome.
    ///
    /// The outcome is delivered as soon as both output streams ended and the program has
    /// exited (seen without reaping it), not when `Subprocess.run` returns: its last step
    /// awaits an unstructured task on Swift's global cooperative pool, which may be busy
    /// with other tests. swift-subprocess finishes (and reaps) whenever it gets a thread.
    func start(_ deliver: @escaping @Sendable (Result<ProcessResult, any Error>) -> Void) {
        let delivered = Locked(false)
        let once: @Sendable (Result<ProcessResult, any Error>) -> Void = { result in
            let first = delivered.withLock { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { deliver(result) }
        }
        Task(executorPreference: ProcessDriver.shared) {
            do {
                try await run(once)
            } catch {
                once(.failure(error))
            }
        }
    }

    private func result(_ output: CollectedOutput, _ status: ExitStatus) -> ProcessResult {
        ProcessResult(
            command: command, exitCode: status.code,
            standardOutput: String(decoding: output.standardOutput, as: UTF8.self),
            standardError: String(decoding: output.standardError, as: UTF8.self),
            timedOut: output.timedOut, signal: status.signal)
    }

    private func run(_ deliver: @escaping @Sendable (Result<ProcessResult, any Error>) -> Void) async throws {
        let collected = Locked(CollectedOutput())
        let result = try await Subprocess.run(configuration, input: .inputWriter, output: .sequence, error: .sequence) { execution in
            let input = AsyncStream<String> { continuation in
                if let input = self.input { continuation.yield(input) }
                continuation.finish()
            }
            await pump(execution, input: input, lifetime: timeout, onTimeout: { collected.withLock { $0.timedOut = true } },
                       output: { bytes in collected.withLock { $0.standardOutput.append(contentsOf: bytes) } },
                       error: { bytes in collected.withLock { $0.standardError.append(contentsOf: bytes) } })
            if let status = peekExit(execution.processIdentifier.value) {
                deliver(.success(self.result(collected.withLock { $0 }, status)))
            }
        }
        deliver(.success(self.result(collected.withLock { $0 }, ExitStatus(result.terminationStatus))))
    }
}

struct CollectedOutput: Sendable {
    /// Bytes, not `Data`, for LeakSanitizer (see ``BackgroundState``).
    var standardOutput: [UInt8] = []
    var standardError: [UInt8] = []
    var timedOut = false
}

/// Drives a running program until both of its output streams end (it exited, or was killed):
/// hands each chunk of standard output and error to `output` and `error`, writes what
/// `input` yields to standard input and then closes it, and after `lifetime` seconds (a
/// safety net) calls `onTimeout` and kills the program's whole process group, which ends
/// the streams.
func pump(_ execution: Execution<CustomWriteInput, SequenceOutput, SequenceOutput>, input: AsyncStream<String>,
          lifetime: TimeInterval, onTimeout: @escaping @Sendable () -> Void,
          output: @escaping @Sendable (Data) -> Void, error: @escaping @Sendable (Data) -> Void) async {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            await drain(execution.standardOutput, output)
            return true
        }
        group.addTask {
            await drain(execution.standardError, error)
            return true
        }
        group.addTask {
            // A program that exits before reading all of its input (a refused connection)
            // makes a write fail: that is its business, not an error.
            for await text in input {
                guard (try? await execution.standardInputWriter.write(text)) != nil else { break }
            }
            try? await execution.standardInputWriter.finish()
            return false
        }
        group.addTask {
            // Cancelled as soon as both streams end.
            guard (try? await Task.sleep(for: .seconds(lifetime))) != nil else { return false }
            onTimeout()
            try? execution.send(signal: .kill, toProcessGroup: true)
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

/// Hands each chunk of `stream` to `append` until the stream ends. A read that fails (the
/// stream cancelled when the program exited while a child of it still holds the pipe) ends
/// the stream; what was read stays.
func drain(_ stream: SubprocessOutputSequence, _ append: @Sendable (Data) -> Void) async {
    do {
        for try await buffer in stream {
            append(buffer.withUnsafeBytes { Data($0) })
        }
    } catch {
        return
    }
}

/// How a program ended, in the terms of ``ProcessResult``: the exit code, or the signal
/// number as the code (as Foundation's `Process.terminationStatus` reports it) and `signal`.
struct ExitStatus: Sendable {
    var code: Int32
    var signal: Int32?

    init(code: Int32, signal: Int32?) {
        self.code = code
        self.signal = signal
    }

    init(_ status: TerminationStatus) {
        switch status {
        case .exited(let code): self.code = code; signal = nil
        case .signaled(let number): code = number; signal = number
        }
    }
}

/// How the child `pid` ended, looked at without reaping it (swift-subprocess reaps it
/// later), or nil while it still runs.
func peekExit(_ pid: pid_t) -> ExitStatus? {
    var info = siginfo_t()
    var rc: Int32
    repeat {
        rc = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT | WNOHANG)
    } while rc == -1 && errno == EINTR
    guard rc == 0, info._sifields._sigchld.si_pid == pid else { return nil }
    let status = info._sifields._sigchld.si_status
    return info.si_code == Int32(CLD_EXITED) ? ExitStatus(code: status, signal: nil) : ExitStatus(code: status, signal: status)
}

/// Writing to a program that already exited must fail with EPIPE, not end the test
/// process with SIGPIPE. Set once, before the first program starts.
let ignoreSIGPIPE: Void = {
    signal(SIGPIPE, SIG_IGN)
    return ()
}()

struct EmptyCommandError: Error, CustomStringConvertible {
    var description: String { "no program to run: the command is empty" }
}

struct InvalidEnvironmentError: Error, CustomStringConvertible {
    var name: String
    var description: String { "'\(name)' cannot be the name of an environment variable" }
}

/// A fresh directory under the system temporary directory, removed by ``remove()``.
public struct TemporaryDirectory: Sendable {
    /// The directory's absolute path.
    public let path: String

    /// Creates a directory named `prefix-UUID`.
    public init(prefix: String = "swift-gnutls-test") throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }

    /// `path/name`.
    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Writes `text` to `path/name` and returns the full path.
    @discardableResult
    public func write(_ text: String, to name: String) throws -> String {
        let full = file(name)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
        return full
    }

    /// Writes `bytes` to `path/name` and returns the full path.
    @discardableResult
    public func write(_ bytes: [UInt8], to name: String) throws -> String {
        let full = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
        return full
    }

    /// The UTF-8 text of `path/name`.
    public func read(_ name: String) throws -> String {
        try String(contentsOfFile: file(name), encoding: .utf8)
    }

    /// Removes the directory and everything in it (errors are ignored).
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Where the package's built products are (the directory of the test bundle).
public enum BuiltProducts {
    /// The directory holding the built executables (`tlsctl`, the fixtures).
    public static var directory: String {
        // The test runner is .build/<config>/<package>PackageTests.xctest; products sit beside it.
        let candidates = [Bundle.main.bundlePath, CommandLine.arguments.first ?? ""]
        for candidate in candidates {
            var url = URL(fileURLWithPath: candidate)
            for _ in 0..<3 {
                if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("tlsctl").path) { return url.path }
                url.deleteLastPathComponent()
            }
        }
        return URL(fileURLWithPath: CommandLine.arguments.first ?? ".").deletingLastPathComponent().path
    }

    /// The path of the built `tlsctl`. Under AddressSanitizer, asking for it also hands
    /// ``ChildLeakSuppressions`` down to the children started afterwards.
    public static var tlsctl: String {
        ChildLeakSuppressions.install()
        return (directory as NSString).appendingPathComponent("tlsctl")
    }
}
