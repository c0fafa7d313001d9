import Foundation
import GnuTLS
import NIOCore

/// Keeps an `OCSPStapleSource` fresh while a server runs (`tlsctl serve --ocsp-staple
/// auto`): fetches a new response at half the current one's lifetime (between thisUpdate
/// and nextUpdate), retries with a growing delay when the responder fails or answers
/// something that may not be stapled (revoked, unknown, not verifying), keeps stapling the
/// last good response until its nextUpdate, and stops stapling it then.
///
/// It runs in its own task, never on an event loop: handshakes only read the source's
/// current response. Every outcome is an ``Event`` on ``events`` (for logs and tests).
public final class OCSPStapleRefresher: Sendable {
    /// One outcome of the refresher.
    public struct Event: Sendable, CustomStringConvertible {
        /// What happened.
        public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
            /// The kind's name, stable across releases.
            public var rawValue: String
            /// A kind by name; prefer the static members.
            public init(rawValue: String) { self.rawValue = rawValue }
            /// A readable form, for logs and messages.
            public var description: String { rawValue }
            /// A new response verified and is stapled from now on.
            public static let refreshed = Kind(rawValue: "refreshed")
            /// The responder answered, but the answer may not be stapled (revoked, unknown,
            /// not verifying); the last good response stays until it expires.
            public static let refused = Kind(rawValue: "refused")
            /// The responder could not be asked (unreachable, timeout, HTTP error).
            public static let fetchFailed = Kind(rawValue: "fetchFailed")
            /// The stapled response reached its nextUpdate without a replacement: nothing
            /// is stapled until a refresh succeeds.
            public static let expired = Kind(rawValue: "expired")
        }

        /// What happened.
        public var kind: Kind
        /// The new response (``Kind/refreshed``) or the refused one, when there is one.
        public var response: OCSPResponse?
        /// A sentence for the log.
        public var message: String

        /// A readable form, for logs and messages.
        public var description: String { "OCSP staple \(kind): \(message)" }
    }

    /// Every outcome, in order (the newest 64 are kept for a slow reader).
    public let events: AsyncStream<Event>
    private let task: Task<Void, Never>

    /// Starts refreshing `source` with responses from `fetch`.
    /// - Parameters:
    ///   - source: the staple source whose response is replaced (the identity's `ocspStapleSource`).
    ///   - fetch: asks the responder for a fresh response (for instance with ``OCSPClient``).
    ///   - retryDelay: the first wait after a failed refresh; it doubles up to
    ///     `maximumRetryDelay`, and never postpones a refresh past the current response's
    ///     expiry by more than it must.
    ///   - maximumRetryDelay: the longest wait between failed refreshes.
    public init(
        source: OCSPStapleSource, retryDelay: TimeInterval = 5, maximumRetryDelay: TimeInterval = 300,
        fetch: @escaping @Sendable () async throws -> OCSPResponse
    ) {
        let (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
        self.events = events
        task = Task {
            await Self.run(source: source, retryDelay: max(0.1, retryDelay), maximumRetryDelay: max(retryDelay, maximumRetryDelay),
                           fetch: fetch, emit: { continuation.yield($0) })
            continuation.finish()
        }
    }

    /// Refreshes `source` from the leaf's OCSP responder (its first `http://` OCSP URL), the
    /// issuer found in the identity's chain or the source's trust store.
    /// - Throws: `GnuTLSError` `.invalidArgument` when the leaf names no HTTP OCSP URL or
    ///   its issuer is not at hand.
    public convenience init(source: OCSPStapleSource, timeout: TimeAmount = .seconds(10), retryDelay: TimeInterval = 5) throws {
        let leaf = source.identity.leaf
        guard let url = leaf.ocspURLs.first(where: { $0.lowercased().hasPrefix("http://") }) else {
            throw GnuTLSError(.invalidArgument, "certificate '\(leaf.subject)' names no http:// OCSP responder URL to refresh its staple from")
        }
        let candidates = source.identity.intermediates + (source.trustStore?.certificates ?? [])
        guard let issuer = candidates.first(where: { $0.subject == leaf.issuer }) else {
            throw GnuTLSError(.invalidArgument, "the issuer '\(leaf.issuer)' of '\(leaf.subject)' is neither in its chain nor in the trust store: its OCSP request cannot be built")
        }
        let request = try OCSPRequest(certificate: leaf, issuer: issuer)
        self.init(source: source, retryDelay: retryDelay) {
            try await OCSPClient.fetch(request, from: url, timeout: timeout)
        }
    }

    /// Stops refreshing; the source keeps its current response until it expires.
    public func stop() { task.cancel() }

    deinit { task.cancel() }

    /// When a response should be replaced: half-way between thisUpdate and nextUpdate
    /// (an hour after thisUpdate when it gives no nextUpdate).
    static func halfLife(of response: OCSPResponse) -> Date {
        guard let single = response.responses.first else { return Date() }
        let end = single.nextUpdate ?? single.thisUpdate.addingTimeInterval(7200)
        return single.thisUpdate.addingTimeInterval(end.timeIntervalSince(single.thisUpdate) / 2)
    }

    private static func run(
        source: OCSPStapleSource, retryDelay: TimeInterval, maximumRetryDelay: TimeInterval,
        fetch: @Sendable () async throws -> OCSPResponse, emit: (Event) -> Void
    ) async {
        var latest = source.current()
        var nextAttempt = latest.map(halfLife) ?? Date()
        var delay = retryDelay
        var expiryReported = false
        while !Task.isCancelled {
            let expiry = expiryReported ? nil : latest?.responses.first?.nextUpdate
            let wake = min(nextAttempt, expiry ?? .distantFuture)
            let wait = wake.timeIntervalSinceNow
            if wait > 0 {
                do {
                    try await Task.sleep(nanoseconds: UInt64(min(wait, 86_400) * 1e9))
                } catch {
                    return  // cancelled
                }
                continue  // re-evaluate: the wait may have been capped
            }
            let now = Date()
            if let expiry, now >= expiry {
                source.clear()
                expiryReported = true
                emit(Event(kind: .expired, response: latest, message: "the stapled response expired at \(expiry); nothing is stapled until a refresh succeeds"))
            }
            guard now >= nextAttempt else { continue }
            do {
                let response = try await fetch()
                do {
                    try source.update(response)
                } catch let error as GnuTLSError {
                    emit(Event(kind: .refused, response: response, message: error.message))
                    nextAttempt = Date().addingTimeInterval(delay)
                    delay = min(delay * 2, maximumRetryDelay)
                    continue
                }
                latest = response
                expiryReported = false
                delay = retryDelay
                // Never sooner than the retry delay: a responder may hand out a cached
                // answer that is already near its half-life.
                nextAttempt = max(halfLife(of: response), Date().addingTimeInterval(retryDelay))
                emit(Event(kind: .refreshed, response: response,
                           message: "stapling a response from \(response.responses.first.map { "\($0.thisUpdate)" } ?? "?"), next refresh at \(nextAttempt)"))
            } catch {
                if Task.isCancelled { return }
                emit(Event(kind: .fetchFailed, response: nil, message: "\(error)"))
                nextAttempt = Date().addingTimeInterval(delay)
                delay = min(delay * 2, maximumRetryDelay)
            }
        }
    }
}
