import Foundation

/// Lets a test wait for a condition on state that other threads change, woken by each
/// change instead of polling on a clock.
///
/// Whoever changes the state calls ``signal()`` after the change; a waiter re-checks its
/// condition after every signal. The timeout of ``wait(for:timeout:_:)`` is a safety net
/// against a hang, never a measurement: a busy machine makes a wait longer, never red.
public final class ChangeSignal: Sendable {
    private struct State: Sendable {
        /// Bumped by every signal; a waiter sleeps only while it is unchanged.
        var generation = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Locked(State())

    /// A signal nobody waits on yet.
    public init() {}

    /// Wakes every waiter to re-check its condition. Call it after each change.
    public func signal() {
        let waiters = state.withLock { value -> [CheckedContinuation<Void, Never>] in
            value.generation += 1
            defer { value.waiters = [] }
            return value.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until `probe` returns a value (or throws), checking it now and after every
    /// ``signal()``.
    ///
    /// - Throws: what `probe` throws, or ``WaitTimedOut`` when `timeout` seconds passed
    ///   without it succeeding (looked at once more after the timeout, so a starved waiter
    ///   never misses a change that came in time).
    public func wait<T: Sendable>(for what: String, timeout: Double = 120,
                                  _ probe: @escaping @Sendable () throws -> T?) async throws -> T {
        let outcome: T? = try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                while true {
                    let generation = self.state.withLock { $0.generation }
                    if let value = try probe() { return value }
                    await self.changed(after: generation)
                    try Task.checkCancellation()
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(timeout))
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        if let value = try outcome ?? probe() { return value }
        throw WaitTimedOut(what: what, timeout: timeout)
    }

    /// Returns once a signal came after `generation` (at once if one already did), or the
    /// waiting task is cancelled.
    private func changed(after generation: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { value -> Bool in
                    if value.generation != generation || Task.isCancelled { return true }
                    value.waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
    }
}

/// A ``ChangeSignal`` wait whose safety-net timeout passed.
public struct WaitTimedOut: Error, CustomStringConvertible {
    /// What was waited for.
    public var what: String
    /// The safety net, in seconds.
    public var timeout: Double
    /// What was waited for and how long.
    public var description: String { "\(what) did not happen within \(timeout) s (a safety net: something hangs)" }
}

/// Values appended by other threads (a server's handlers, failure callbacks), which a test
/// can wait for without polling.
public final class RecordedValues<Value: Sendable>: Sendable {
    private let items = Locked<[Value]>([])
    private let changes = ChangeSignal()

    /// Nothing recorded yet.
    public init() {}

    /// Records `value` and wakes the waiters.
    public func append(_ value: Value) {
        items.withLock { $0.append(value) }
        changes.signal()
    }

    /// What was recorded so far, in order.
    public var values: [Value] { items.withLock { $0 } }

    /// Waits until at least `count` values were recorded; returns them all.
    @discardableResult
    public func waitForCount(_ count: Int, _ what: String, timeout: Double = 120) async throws -> [Value] {
        try await changes.wait(for: what, timeout: timeout) { [items] in
            let values = items.withLock { $0 }
            return values.count >= count ? values : nil
        }
    }
}
