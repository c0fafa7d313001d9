import GnuTLS

/// Why a TLS connection failed.
///
/// ```swift
/// catch let error as TLSError where error.code == .verificationFailed {
///     print(error.verification?.problems ?? [])
/// }
/// ```
public struct TLSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// The peer's certificate failed verification; ``TLSError/verification`` says why.
        public static let verificationFailed = Code(rawValue: "verificationFailed")
        /// The user's verification hook refused the connection.
        public static let verificationHookRejected = Code(rawValue: "verificationHookRejected")
        /// The peer sent a fatal alert; ``TLSError/alert`` names it.
        public static let peerAlert = Code(rawValue: "peerAlert")
        /// The handshake did not finish within the configured timeout.
        public static let handshakeTimeout = Code(rawValue: "handshakeTimeout")
        /// The peer closed the connection during the handshake.
        public static let peerClosedDuringHandshake = Code(rawValue: "peerClosedDuringHandshake")
        /// The peer closed the connection without close_notify (possible truncation).
        public static let uncleanShutdown = Code(rawValue: "uncleanShutdown")
        /// The server requires a client certificate and none was sent.
        public static let peerCertificateRequired = Code(rawValue: "peerCertificateRequired")
        /// The peer sent something that is not valid TLS, or negotiation failed.
        public static let protocolError = Code(rawValue: "protocolError")
        /// The peer reset the TCP connection (RST) during the handshake.
        public static let connectionReset = Code(rawValue: "connectionReset")
        /// No data went either way for the configured idle timeout after the handshake;
        /// the connection was closed (with close_notify).
        public static let idleTimeout = Code(rawValue: "idleTimeout")
        /// A write or read on a connection that is closed.
        public static let channelClosed = Code(rawValue: "channelClosed")
        /// The ``GnuTLSHandler`` was removed from the pipeline while it still held the write
        /// (or the handshake, or a close waiting for close_notify).
        public static let handlerRemoved = Code(rawValue: "handlerRemoved")
        /// The peer did not answer close_notify within the configuration's
        /// `TLSConfiguration.shutdownTimeout`; the channel was closed anyway.
        public static let shutdownTimeout = Code(rawValue: "shutdownTimeout")
    }

    /// What kind of failure.
    public var code: Code
    /// A sentence a user can act on.
    public var message: String
    /// For `.verificationFailed`: every problem found, with chain positions.
    public var verification: VerificationError?
    /// For `.peerAlert`: GnuTLS's name of the alert ("Bad certificate", "Unknown CA", …).
    public var alert: String?
    /// The GnuTLS error name, when GnuTLS reported the failure.
    public var gnutlsName: String?

    /// An error with `code`, a sentence a user can act on, and what is known of the cause: the verification problems, the alert received, GnuTLS's error name.
    public init(_ code: Code, _ message: String, verification: VerificationError? = nil, alert: String? = nil, gnutlsName: String? = nil) {
        self.code = code
        self.message = message
        self.verification = verification
        self.alert = alert
        self.gnutlsName = gnutlsName
    }

    /// A readable form, for logs and messages.
    public var description: String { "TLS \(code): \(message)" }
}
