import Foundation

/// The outcome of running an external program.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public var command: [String]
    public var exitCode: Int32
    public var standardOutput: String
    public var standardError: String
    public var timedOut: Bool

    public var succeeded: Bool { exitCode == 0 && !timedOut }
    /// stdout and stderr together, for messages.
    public var output: String { standardOutput + standardError }

    public var description: String {
        "`\(command.joined(separator: " "))` exited \(exitCode)\(timedOut ? " (timed out)" : "")\nstdout:\n\(standardOutput)\nstderr:\n\(standardError)"
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

/// Runs external programs (openssl, certtool, pkilint, tlsctl) with a timeout, killing
/// only the process it started, by its id.
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

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments.
    ///
    /// - Parameters:
    ///   - input: bytes written to standard input, which is then closed.
    ///   - timeout: seconds before the process is killed (SIGKILL) and `timedOut` is set.
    ///   - directory: working directory.
    @discardableResult
    public static func run(
        _ arguments: [String], input: String? = nil, timeout: TimeInterval = 60, directory: String? = nil,
        environment: [String: String]? = nil, package: String? = nil
    ) throws -> ProcessResult {
        precondition(!arguments.isEmpty)
        let executable = try locate(arguments[0], package: package)
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

        let outBox = DataBox()
        let errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            outBox.data = stdout.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            errBox.data = stderr.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        try process.run()
        if let input {
            // A program that exits before reading all of its input (a refused connection)
            // must not kill the test process with SIGPIPE: the write just fails.
            signal(SIGPIPE, SIG_IGN)
            let handle = stdin.fileHandleForWriting
            DispatchQueue.global().async {
                try? handle.write(contentsOf: Data(input.utf8))
                try? handle.close()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                break
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        _ = group.wait(timeout: .now() + 5)
        return ProcessResult(
            command: [executable] + Array(arguments.dropFirst()), exitCode: process.terminationStatus,
            standardOutput: String(decoding: outBox.data, as: UTF8.self),
            standardError: String(decoding: errBox.data, as: UTF8.self), timedOut: timedOut)
    }
}

final class DataBox: @unchecked Sendable {
    var data = Data()
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

    /// The path of the built `tlsctl`.
    public static var tlsctl: String { (directory as NSString).appendingPathComponent("tlsctl") }
}
