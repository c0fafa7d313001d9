/// A safety net ran out: what was awaited did not happen in time (a hang, not a slow machine).
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public var what: String
    public init(what: String) { self.what = what }
    public var description: String { "\(what) did not finish before its deadline" }
}

/// Runs `body`, failing with ``DeadlineExceeded`` (instead of hanging) if it outlives
/// `limit`. A safety net against a hang, never a measurement: give it a limit a loaded
/// machine cannot reach.
public func withDeadline<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded(what: what) }
        return value
    }
}
