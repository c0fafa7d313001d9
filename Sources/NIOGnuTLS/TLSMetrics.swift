import CoreMetrics
import Foundation
import GnuTLS
import NIOCore

/// The names of every metric this module records, in one place, all with the prefix
/// ``prefix`` (`gnutls_tls_`).
///
/// | name | type | dimensions | what |
/// | --- | --- | --- | --- |
/// | `gnutls_tls_handshakes_total` | counter | `outcome` (`success`/`failure`), `version` (`TLS1.3`/`TLS1.2`/`unknown`) | handshakes finished |
/// | `gnutls_tls_handshake_duration_seconds` | timer (ns) | `outcome` | first flight to the last verification step |
/// | `gnutls_tls_verification_failures_total` | counter | `reason` (a `VerificationError.Reason` or a ``TLSError/Code``) | refused peers, once per distinct reason |
/// | `gnutls_tls_resumptions_total` | counter | | resumed sessions |
/// | `gnutls_tls_active_connections` | meter | | established connections not yet closed |
/// | `gnutls_tls_bytes_received_total` / `gnutls_tls_bytes_sent_total` | counter | | TLS bytes on the wire |
/// | `gnutls_tls_reloads_total` | counter | `outcome` (`success`/`refused`) | certificate source reloads |
/// | `gnutls_tls_certificate_expiry_seconds` | gauge | | seconds until the earliest served certificate expires |
///
/// Dimensions given to ``TLSMetrics/init(factory:dimensions:)`` are added to every metric.
public enum TLSMetricName {
    /// The common prefix.
    public static let prefix = "gnutls_tls_"
    /// Handshakes finished, by `outcome` and `version`.
    public static let handshakes = prefix + "handshakes_total"
    /// Handshake duration, by `outcome`.
    public static let handshakeDuration = prefix + "handshake_duration_seconds"
    /// Peers refused, by `reason`.
    public static let verificationFailures = prefix + "verification_failures_total"
    /// Resumed sessions.
    public static let resumptions = prefix + "resumptions_total"
    /// Established connections not yet closed.
    public static let activeConnections = prefix + "active_connections"
    /// TLS bytes read from the network.
    public static let bytesReceived = prefix + "bytes_received_total"
    /// TLS bytes written to the network.
    public static let bytesSent = prefix + "bytes_sent_total"
    /// Certificate source reloads, by `outcome`.
    public static let reloads = prefix + "reloads_total"
    /// Seconds until the earliest served certificate expires (negative once expired).
    public static let certificateExpiry = prefix + "certificate_expiry_seconds"

    /// The `outcome` dimension.
    public static let outcomeDimension = "outcome"
    /// The `version` dimension.
    public static let versionDimension = "version"
    /// The `reason` dimension.
    public static let reasonDimension = "reason"
}

/// The metric objects of one server or client context, made once (not per connection or
/// record) with swift-metrics. Pass one to `TLSServer.bind`, `SecureChannel.connect` or
/// `GnuTLSHandler.init` (their `metrics:` parameter).
///
/// The factory is explicit so tests and services can record into a backend of their own
/// without bootstrapping the process-global `MetricsSystem`; the default is
/// `MetricsSystem.factory`, whose no-op handlers cost a virtual call when no backend is
/// bootstrapped. Recording allocates nothing, except the first failure of each new reason.
public final class TLSMetrics: Sendable {
    private let factory: any MetricsFactory
    private let dimensions: [(String, String)]
    private let successTLS13: Counter
    private let successTLS12: Counter
    private let failureTLS13: Counter
    private let failureTLS12: Counter
    private let failureUnknown: Counter
    private let successDuration: CoreMetrics.Timer
    private let failureDuration: CoreMetrics.Timer
    private let resumptions: Counter
    private let active: Meter
    private let bytesIn: Counter
    private let bytesOut: Counter
    private let reloadSuccess: Counter
    private let reloadRefused: Counter
    private let expiry: Gauge
    private let failureReasons = MetricsLockedBox<[String: Counter]>([:])

    /// Makes the metric objects with `factory`, each carrying `dimensions` besides its own.
    public init(factory: any MetricsFactory = MetricsSystem.factory, dimensions: [(String, String)] = []) {
        self.factory = factory
        self.dimensions = dimensions
        func counter(_ label: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions + extra, factory: factory)
        }
        let outcome = TLSMetricName.outcomeDimension, version = TLSMetricName.versionDimension
        successTLS13 = counter(TLSMetricName.handshakes, [(outcome, "success"), (version, "TLS1.3")])
        successTLS12 = counter(TLSMetricName.handshakes, [(outcome, "success"), (version, "TLS1.2")])
        failureTLS13 = counter(TLSMetricName.handshakes, [(outcome, "failure"), (version, "TLS1.3")])
        failureTLS12 = counter(TLSMetricName.handshakes, [(outcome, "failure"), (version, "TLS1.2")])
        failureUnknown = counter(TLSMetricName.handshakes, [(outcome, "failure"), (version, "unknown")])
        successDuration = CoreMetrics.Timer(label: TLSMetricName.handshakeDuration, dimensions: dimensions + [(outcome, "success")], factory: factory)
        failureDuration = CoreMetrics.Timer(label: TLSMetricName.handshakeDuration, dimensions: dimensions + [(outcome, "failure")], factory: factory)
        resumptions = counter(TLSMetricName.resumptions)
        active = Meter(label: TLSMetricName.activeConnections, dimensions: dimensions, factory: factory)
        bytesIn = counter(TLSMetricName.bytesReceived)
        bytesOut = counter(TLSMetricName.bytesSent)
        reloadSuccess = counter(TLSMetricName.reloads, [(outcome, "success")])
        reloadRefused = counter(TLSMetricName.reloads, [(outcome, "refused")])
        expiry = Gauge(label: TLSMetricName.certificateExpiry, dimensions: dimensions, factory: factory)
    }

    /// A successful handshake: counted by version, timed, a resumption counted, one more
    /// active connection.
    package func handshakeSucceeded(_ info: ConnectionInfo, nanoseconds: Int64) {
        (info.version == .tls13 ? successTLS13 : successTLS12).increment()
        successDuration.recordNanoseconds(nanoseconds)
        if info.isResumed { resumptions.increment() }
        active.increment()
    }

    /// A failed or refused handshake: counted (by version when one was negotiated), timed,
    /// and each distinct verification reason counted once.
    package func handshakeFailed(_ error: TLSError, version: TLSVersion?, nanoseconds: Int64?) {
        switch version {
        case .some(.tls13): failureTLS13.increment()
        case .some(.tls12): failureTLS12.increment()
        default: failureUnknown.increment()
        }
        if let nanoseconds { failureDuration.recordNanoseconds(nanoseconds) }
        guard error.code == .verificationFailed || error.code == .peerCertificateRequired || error.code == .verificationHookRejected else { return }
        if let verification = error.verification, !verification.problems.isEmpty {
            var seen = Set<String>()
            for problem in verification.problems where seen.insert(problem.reason.rawValue).inserted {
                failureCounter(problem.reason.rawValue).increment()
            }
        } else {
            failureCounter(error.code.rawValue).increment()
        }
    }

    private func failureCounter(_ reason: String) -> Counter {
        failureReasons.withLockedValue { counters in
            if let counter = counters[reason] { return counter }
            let counter = Counter(label: TLSMetricName.verificationFailures,
                                  dimensions: dimensions + [(TLSMetricName.reasonDimension, reason)], factory: factory)
            counters[reason] = counter
            return counter
        }
    }

    /// An established connection closed.
    package func connectionClosed() { active.decrement() }

    /// TLS bytes read from the network.
    package func received(_ bytes: Int) { bytesIn.increment(by: bytes) }

    /// TLS bytes written to the network.
    package func sent(_ bytes: Int) { bytesOut.increment(by: bytes) }

    /// Counts one reload of a certificate source: `succeeded` when the new context replaced
    /// the old one, `false` when it was refused and the previous one kept.
    public func recordReload(succeeded: Bool) {
        (succeeded ? reloadSuccess : reloadRefused).increment()
    }

    /// Records the seconds until the earliest of `certificates` expires (negative once
    /// expired); nothing when the list is empty.
    public func recordServedCertificates(_ certificates: [Certificate], now: Date = Date()) {
        guard let earliest = certificates.map(\.notValidAfter).min() else { return }
        recordServedCertificateExpiry(notAfter: earliest, now: now)
    }

    /// Records the seconds until `notAfter` (the earliest served certificate's).
    package func recordServedCertificateExpiry(notAfter: Date, now: Date = Date()) {
        guard notAfter != .distantFuture else { return }
        expiry.record(notAfter.timeIntervalSince(now).rounded(.down))
    }
}

/// A lock-protected value for the few metric objects made after the start.
final class MetricsLockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLockedValue<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
