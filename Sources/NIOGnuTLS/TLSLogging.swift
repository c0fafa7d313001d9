import Foundation
import GnuTLS
import Logging
import NIOCore

/// The metadata keys of every log event this module writes, in one place, so filters,
/// dashboards and other components (the certificate reloader) use the same names.
///
/// Events are written with swift-log (`Logger`). Entry points that do I/O take an optional
/// `Logger`; without one nothing is logged (a no-op logger, never the process's default).
///
/// | event (``event``) | level | written when |
/// | --- | --- | --- |
/// | `handshake` | `info` | a handshake and every verification step passed |
/// | `refused` | `warning` (`notice` when the peer left, timed out or spoke no TLS) | a handshake failed or was refused (``errorCode``, ``reasons``) |
/// | `certificate_expiring` | `warning` (`error` once expired) | a served certificate expires within the warning window |
/// | `shutdown_timeout` | `notice` | the peer did not answer close_notify in time |
/// | `connection_failed` | `warning` | a `TLSServer.serve` handler threw |
/// | `reload` / `reload_refused` | `info` / `error` | a certificate source replaced or kept its context |
/// | `ocsp_request` | `info` | `OCSPServer` answered a request |
/// | `ocsp_fetch` | `debug` (`warning` on failure) | `OCSPClient` fetched a response |
public enum TLSLogKey {
    /// What happened: one of the event names in the table above.
    public static let event = "tls.event"
    /// `client` or `server`: which side of the connection wrote the event.
    public static let role = "tls.role"
    /// The peer's address (`ip:port`).
    public static let peerAddress = "tls.peer.address"
    /// The peer leaf certificate's subject DN (RFC 4514 text).
    public static let peerSubject = "tls.peer.subject"
    /// The peer leaf certificate's subject alternative names, comma separated.
    public static let peerSANs = "tls.peer.sans"
    /// SHA-256 of the peer's leaf certificate, lowercase hex.
    public static let peerFingerprint = "tls.peer.fingerprint_sha256"
    /// The peer leaf certificate's serial number, hex.
    public static let peerSerial = "tls.peer.serial"
    /// The negotiated protocol version (`TLS1.3`, `TLS1.2`).
    public static let version = "tls.version"
    /// The negotiated cipher suite.
    public static let cipher = "tls.cipher"
    /// The ALPN protocol agreed on.
    public static let alpn = "tls.alpn"
    /// The server name sent (clients) or asked for (servers) in SNI.
    public static let serverName = "tls.sni"
    /// `true` when the session was resumed.
    public static let resumed = "tls.resumed"
    /// Handshake duration in milliseconds, from the first flight to the last verification step.
    public static let durationMilliseconds = "tls.duration_ms"
    /// The ``TLSError/Code`` of a failure.
    public static let errorCode = "tls.error.code"
    /// The failure's message.
    public static let errorMessage = "tls.error.message"
    /// Verification failure reasons (`VerificationError.Reason`), comma separated.
    public static let reasons = "tls.error.reasons"
    /// The alert received from the peer, for ``TLSError/Code/peerAlert``.
    public static let alert = "tls.error.alert"
    /// A served (own) certificate's subject DN.
    public static let certificateSubject = "tls.certificate.subject"
    /// A served (own) certificate's serial number, hex.
    public static let certificateSerial = "tls.certificate.serial"
    /// A served (own) certificate's notAfter time, ISO 8601.
    public static let certificateNotAfter = "tls.certificate.not_after"
    /// Whole seconds until a served certificate expires (negative once expired).
    public static let certificateExpiresIn = "tls.certificate.expires_in_seconds"
    /// The serial of the certificate served before a reload (or kept after a refused one).
    public static let previousSerial = "tls.certificate.previous_serial"
    /// Where a reloaded identity, trust store or CRL came from (file paths or a source name).
    public static let reloadSource = "tls.reload.source"
    /// The OCSP responder's URL (client fetches).
    public static let ocspURL = "ocsp.url"
    /// The OCSP response status (`successful`, `malformedRequest`, …).
    public static let ocspStatus = "ocsp.status"
    /// The serials asked about and their answers, `serial=status`, comma separated.
    public static let ocspCertificates = "ocsp.certificates"
    /// The HTTP method of a request to the responder.
    public static let httpMethod = "http.method"
    /// The HTTP status answered.
    public static let httpStatus = "http.status"
}

/// Log event names (the values of ``TLSLogKey/event``).
public enum TLSLogEvent {
    /// A handshake and every verification step passed.
    public static let handshake = "handshake"
    /// A handshake failed or was refused.
    public static let refused = "refused"
    /// A served certificate is near (or past) its notAfter time.
    public static let certificateExpiring = "certificate_expiring"
    /// The peer did not answer close_notify before the shutdown timeout.
    public static let shutdownTimeout = "shutdown_timeout"
    /// A connection handler of `TLSServer.serve` threw.
    public static let connectionFailed = "connection_failed"
    /// A certificate source replaced its context.
    public static let reload = "reload"
    /// A certificate source refused a new identity and kept the previous context.
    public static let reloadRefused = "reload_refused"
    /// The OCSP responder answered a request.
    public static let ocspRequest = "ocsp_request"
    /// The OCSP client fetched a response (or failed to).
    public static let ocspFetch = "ocsp_fetch"
}

/// The logger every swift-gnutls entry point uses when none is given.
extension Logger {
    /// A logger that drops everything: the default of every entry point that takes a
    /// `Logger`, so nothing is printed unless the caller passes a logger.
    public static let gnuTLSNoOp = Logger(label: "swift-gnutls.noop", factory: { _ in SwiftLogNoOpLogHandler() })
}

extension ConnectionInfo {
    /// The connection as log metadata under the ``TLSLogKey`` names: version, cipher,
    /// ALPN, SNI, resumption and the peer's subject, SANs, serial and fingerprint.
    public var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            TLSLogKey.version: .string(protocolVersion),
            TLSLogKey.cipher: .string(cipherSuite),
            TLSLogKey.resumed: .stringConvertible(isResumed),
        ]
        if let applicationProtocol { metadata[TLSLogKey.alpn] = .string(applicationProtocol) }
        if let serverName { metadata[TLSLogKey.serverName] = .string(serverName) }
        if let peer = peerCertificate { metadata.merge(TLSLogging.peerMetadata(peer), uniquingKeysWith: { _, new in new }) }
        return metadata
    }
}

extension TLSError {
    /// The failure as log metadata: ``TLSLogKey/errorCode``, ``TLSLogKey/errorMessage``,
    /// the verification reasons and the alert, when there are any.
    public var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            TLSLogKey.errorCode: .string(code.rawValue),
            TLSLogKey.errorMessage: .string(message),
        ]
        if let verification {
            var seen = Set<String>()
            let reasons = verification.problems.map(\.reason.rawValue).filter { seen.insert($0).inserted }
            metadata[TLSLogKey.reasons] = .string(reasons.joined(separator: ","))
        }
        if let alert { metadata[TLSLogKey.alert] = .string(alert) }
        return metadata
    }
}

/// The log helpers shared by the handler, the server and the certificate sources.
package enum TLSLogging {
    /// The peer certificate's subject, SANs, serial and fingerprint.
    package static func peerMetadata(_ certificate: Certificate) -> Logger.Metadata {
        [
            TLSLogKey.peerSubject: .string(certificate.subject.description),
            TLSLogKey.peerSANs: .string(certificate.subjectAlternativeNames.map { "\($0)" }.joined(separator: ",")),
            TLSLogKey.peerSerial: .string(certificate.serialNumber.hexString),
            TLSLogKey.peerFingerprint: .string(hex(certificate.sha256Fingerprint)),
        ]
    }

    /// A served certificate's subject, serial, notAfter and the seconds left.
    package static func certificateMetadata(_ certificate: Certificate, now: Date = Date()) -> Logger.Metadata {
        [
            TLSLogKey.certificateSubject: .string(certificate.subject.description),
            TLSLogKey.certificateSerial: .string(certificate.serialNumber.hexString),
            TLSLogKey.certificateNotAfter: .string(ISO8601DateFormatter().string(from: certificate.notValidAfter)),
            TLSLogKey.certificateExpiresIn: .stringConvertible(Int(certificate.notValidAfter.timeIntervalSince(now).rounded(.down))),
        ]
    }

    /// How far ahead a served certificate's expiry is logged (30 days).
    package static let expiryWarningWindow: TimeInterval = 30 * 86_400

    /// Logs every served leaf certificate of `context` that expires within
    /// ``expiryWarningWindow`` (`error` once expired), and records the seconds left.
    package static func checkServedCertificates(of context: TLSContext, logger: Logger, metrics: TLSMetrics?, now: Date = Date()) {
        let leaves = context.configuration.identities.map(\.leaf)
        metrics?.recordServedCertificates(leaves, now: now)
        for leaf in leaves {
            let left = leaf.notValidAfter.timeIntervalSince(now)
            guard left < expiryWarningWindow else { continue }
            var metadata = certificateMetadata(leaf, now: now)
            metadata[TLSLogKey.event] = .string(TLSLogEvent.certificateExpiring)
            if left <= 0 {
                logger.error("served certificate has expired", metadata: metadata)
            } else {
                logger.warning("served certificate expires soon", metadata: metadata)
            }
        }
    }

    package static func hex(_ bytes: [UInt8]) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        var text = ""
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return text
    }
}
