import Foundation
import Subprocess
import SystemPackage

/// The outcome of running an external program.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public var command: [String]
    public var exitCode: Int32
    public var standardOutput: String
    public var standardError: String
    public var timedOut: Bool
    /// The signal that ended the program (SIGKILL after a timeout), or nil when it exited.
    public var signal: Int32? = nil

    public var succeeded: Bool { exitCode == 0 && !timedOut }
    /// stdout and stderr together, for messages.
    public var output: String { standardOutput + standardError }

    public var description: String {
        "`\(command.joined(separator: " "))` \(signal.map { "was killed by signal \($0)" } ?? "exited \(exitCode)")\(timedOut ? " (timed out)" : "")\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
    }
}

/// Thrown when a test needs a program that is not installed: the test fails, naming it.
public struct MissingToolError: Error, CustomStringConvertible {
    public var tool: String
    public var package: String
    public var description: String {
        "required tool '\(tool)' was not found on PATH: install it (Debian package or PyPI: \(package)); the test cannot run without it"
    }
}

/// Runs external programs (openssl, certtool, pkilint, tlsctl).
///
/// Both a synchronous and an `async` `run` exist: in an `async` function the compiler picks
/// the `async` one (and asks for `await`), which suspends instead of holding a thread of the
/// cooperative pool while the program runs.
///
/// - The `async` one runs the program through swift-subprocess, in a process group of its
///   own: reads retry EINTR, the exit is an event, and the timeout (a safety net) kills the
///   whole group (SIGKILL) and sets `timedOut`.
/// - The synchronous one (for synchronous tests) uses Foundation's `Process` with pipe
///   reads that retry EINTR, and never needs Swift's cooperative pool, whose threads
///   synchronous tests hold while they wait: swift-subprocess ends each run with an
///   unstructured task on that pool, so a synchronous wait on it can deadlock the suite
///   when every pool thread waits (two on a 2-core machine). Its timeout kills the program
///   by its pid.
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

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments, blocking the
    /// calling thread until it ends.
    ///
    /// - Parameters:
    ///   - input: bytes written to standard input, which is then closed (it is closed at
    ///     once when `nil`).
    ///   - timeout: seconds before the program is killed (SIGKILL) and `timedOut` is set. A
    ///     safety net against a hang, never a measurement.
    ///   - directory: working directory.
    @discardableResult
    public static func run(
        _ arguments: [String], input: String? = nil, timeout: TimeInterval = 60, directory: String? = nil,
        environment: [String: String]? = nil, package: String? = nil
    ) throws -> ProcessResult {
        guard let name = arguments.first else { throw EmptyCommandError() }
        let executable = try locate(name, package: package)
        _ = ignoreSIGPIPE
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(arguments.dropFirst())
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let stdout = Pipe()
        let stderr = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin

        // Foundation's readDataToEndOfFile() hits a `try!` when a signal interrupts its
        // read (EINTR), killing the test process: read the pipes with a loop that retries.
        let outBox = Locked(Data())
        let errBox = Locked(Data())
        let group = DispatchGroup()
        for (pipe, box) in [(stdout, outBox), (stderr, errBox)] {
            group.enter()
            DispatchQueue.global().async {
                let data = readToEnd(pipe.fileHandleForReading.fileDescriptor)
                box.withLock { $0 = data }
                group.leave()
            }
        }
        // The exit is an event (Foundation's termination handler); the timeout only a bound.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        if let input {
            let handle = stdin.fileHandleForWriting
            DispatchQueue.global().async {
                // A program that exits before reading all of its input just fails the write.
                try? handle.write(contentsOf: Data(input.utf8))
                try? handle.close()
            }
        }
        var timedOut = false
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        group.wait()
        let status = process.terminationReason == .uncaughtSignal
            ? ExitStatus(code: process.terminationStatus, signal: process.terminationStatus)
            : ExitStatus(code: process.terminationStatus, signal: nil)
        return ProcessResult(
            command: [executable] + arguments.dropFirst(), exitCode: status.code,
            standardOutput: String(decoding: outBox.withLock { $0 }, as: UTF8.self),
            standardError: String(decoding: errBox.withLock { $0 }, as: UTF8.self), timedOut: timedOut, signal: status.signal)
    }

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments, suspending the
    /// calling task until it ends. Parameters as in the synchronous `run`.
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
        if let environment {
            var updates: [Environment.Key: String?] = [:]
            for (name, value) in environment {
                guard let key = Environment.Key(rawValue: name) else { throw InvalidEnvironmentError(name: name) }
                updates[key] = value
            }
            variables = variables.updating(updates)
        }
        return Configuration(
            executable: .path(FilePath(command[0])), arguments: Arguments(Array(command.dropFirst())),
            environment: variables, workingDirectory: directory.map { FilePath($0) }, platformOptions: options)
    }

    /// Starts the program on the ``ProcessDriver`` threads and calls `deliver` once with the
    /// outcome.
    ///
    /// The outcome is delivered as soon as both output streams ended and the program has
    /// exited (seen without reaping it), not when `Subprocess.run` returns: its last step
    /// awaits an unstructured task on Swift's global cooperative pool, which synchronous
    /// tests may be holding all of (two threads here). Nothing a waiting test depends on
    /// needs that pool; swift-subprocess finishes (and reaps) whenever it gets a thread.
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
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    await drain(execution.standardOutput) { bytes in collected.withLock { $0.standardOutput.append(bytes) } }
                    return true
                }
                group.addTask {
                    await drain(execution.standardError) { bytes in collected.withLock { $0.standardError.append(bytes) } }
                    return true
                }
                group.addTask { [input] in
                    // A program that exits before reading all of its input (a refused
                    // connection) makes this write fail: that is its business, not an error.
                    if let input { _ = try? await execution.standardInputWriter.write(input) }
                    try? await execution.standardInputWriter.finish()
                    return false
                }
                group.addTask { [timeout] in
                    // The safety net: cancelled as soon as both streams end (the program
                    // exited); otherwise kill the whole group, which ends the streams.
                    guard (try? await Task.sleep(for: .seconds(timeout))) != nil else { return false }
                    collected.withLock { $0.timedOut = true }
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
            if let status = peekExit(execution.processIdentifier.value) {
                deliver(.success(self.result(collected.withLock { $0 }, status)))
            }
        }
        deliver(.success(self.result(collected.withLock { $0 }, ExitStatus(result.terminationStatus))))
    }
}

struct CollectedOutput: Sendable {
    var standardOutput = Data()
    var standardError = Data()
    var timedOut = false
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

/// Everything readable from `descriptor` until end of file, retrying reads that a signal
/// interrupted (EINTR); a read error ends it with what was read.
func readToEnd(_ descriptor: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count > 0 {
            data.append(contentsOf: buffer[0..<count])
        } else if count == 0 || errno != EINTR {
            return data
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
    public let path: String

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

    @discardableResult
    public func write(_ bytes: [UInt8], to name: String) throws -> String {
        let full = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
        return full
    }

    public func read(_ name: String) throws -> String {
        try String(contentsOfFile: file(name), encoding: .utf8)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Where the package's built products are (the directory of the test bundle).
public enum BuiltProducts {
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
