import GnuTLS
import NIOCore

/// What a TLS handshake negotiated and who the peer is.
public struct ConnectionInfo: Hashable, Sendable, CustomStringConvertible {
    /// The negotiated protocol version.
    public var version: TLSVersion
    /// `TLS1.3` or `TLS1.2`: the text of ``version``.
    public var protocolVersion: String { version.description }
    /// The cipher suite's IANA name.
    public var cipherSuite: String
    /// The ALPN protocol agreed on, if any.
    public var applicationProtocol: String?
    /// Clients: the name sent in SNI. Servers: the name the client asked for.
    public var serverName: String?
    /// Whether the session was resumed from a ticket.
    public var isResumed: Bool
    /// The peer's certificates as sent, leaf first (empty when it sent none).
    public var peerCertificates: [Certificate]
    /// The chain the verifier accepted, leaf first, anchor last (nil when not verified).
    public var verifiedChain: VerifiedChain?
    /// Whether ``verifiedChain`` came from the context's verified-chain cache (an identical
    /// chain, trust and policy verified earlier) rather than a new Swift verifier pass.
    public var verificationCacheHit = false
    /// Whether ``verifiedChain`` is the verification a resumed session was made with (kept
    /// with the session in the context's session cache and still valid now, for this host and
    /// these certificates) rather than a new Swift verifier pass or a cache hit.
    public var verificationFromResumedSession = false

    /// The peer's leaf certificate.
    public var peerCertificate: Certificate? { peerCertificates.first }
    /// The peer's subject: on a mutual-TLS server, who the client is.
    public var peerSubject: DistinguishedName? { peerCertificate?.subject }
    /// The peer's alternative names (DNS, IP, email, URI/SPIFFE).
    public var peerAlternativeNames: [GeneralName] { peerCertificate?.subjectAlternativeNames ?? [] }
    /// SHA-256 of the peer's leaf certificate.
    public var peerFingerprint: [UInt8]? { peerCertificate?.sha256Fingerprint }

    /// A readable form, for logs and messages.
    public var description: String {
        var text = "\(protocolVersion) \(cipherSuite)"
        if let applicationProtocol { text += " alpn=\(applicationProtocol)" }
        if isResumed { text += " resumed" }
        if let peerSubject { text += " peer='\(peerSubject)'" }
        return text
    }
}

// MARK: Reading the connection info from a pipeline

/// Reading the TLS connection info of a channel whose pipeline holds a ``GnuTLSHandler``.
extension Channel {
    /// What the handshake of this channel's ``GnuTLSHandler`` negotiated and who the peer
    /// is (like NIOSSL's `nioSSL_peerCertificate()`): `nil` before the handshake completes;
    /// fails when the pipeline has no `GnuTLSHandler`.
    ///
    /// ```swift
    /// let info = try await channel.gnuTLSConnectionInfo().get()
    /// print(info?.peerSubject ?? "anonymous")
    /// ```
    public func gnuTLSConnectionInfo() -> EventLoopFuture<ConnectionInfo?> {
        if eventLoop.inEventLoop {
            return eventLoop.makeCompletedFuture { try pipeline.syncOperations.gnuTLSConnectionInfo() }
        }
        return eventLoop.submit { try self.pipeline.syncOperations.gnuTLSConnectionInfo() }
    }
}

/// Reading the TLS connection info on the channel's event loop, without a future.
extension ChannelPipeline.SynchronousOperations {
    /// The pipeline's ``GnuTLSHandler/connectionInfo``: `nil` before the handshake completes.
    /// Call it on the channel's event loop.
    /// - Throws: `ChannelPipelineError.notFound` when the pipeline has no `GnuTLSHandler`.
    public func gnuTLSConnectionInfo() throws -> ConnectionInfo? {
        try handler(type: GnuTLSHandler.self).connectionInfo
    }
}

/// Reading the TLS connection info from a handler placed after ``GnuTLSHandler``.
extension ChannelHandlerContext {
    /// The connection info of the ``GnuTLSHandler`` in this handler's pipeline: `nil`
    /// before the handshake completes.
    /// - Throws: `ChannelPipelineError.notFound` when the pipeline has no `GnuTLSHandler`.
    public func gnuTLSConnectionInfo() throws -> ConnectionInfo? {
        try pipeline.syncOperations.gnuTLSConnectionInfo()
    }
}
