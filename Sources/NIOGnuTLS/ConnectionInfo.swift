import GnuTLS

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
