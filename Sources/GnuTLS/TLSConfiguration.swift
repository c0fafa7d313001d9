import Foundation
import GnuTLSCore

/// A TLS protocol version.
public struct TLSVersion: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// TLS 1.2 (GnuTLS `VERS-TLS1.2`).
    public static let tls12 = TLSVersion(rawValue: 12)
    /// TLS 1.3 (GnuTLS `VERS-TLS1.3`).
    public static let tls13 = TLSVersion(rawValue: 13)
    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { rawValue == 13 ? "TLS1.3" : "TLS1.2" }
    var priorityToken: String { rawValue == 13 ? "+VERS-TLS1.3" : "+VERS-TLS1.2" }
}

/// How the peer's certificate is verified.
public struct PeerVerification: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    /// Chain to a trusted anchor, host name (clients), purpose, validity, revocation. The default.
    public static let fullVerification = PeerVerification(name: "full")
    /// Chain, purpose, validity and revocation, but not the host name.
    public static let chainOnlyNoHostnameCheck = PeerVerification(name: "chain-only")
    /// Nothing is verified: any certificate is accepted. For tests against throwaway peers
    /// only; the name is meant to stand out in code review.
    public static let insecureNoVerification = PeerVerification(name: "none")
    public var description: String { name }
}

/// Whether a server asks clients for certificates.
public struct ClientCertificatePolicy: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    /// Clients are not asked for a certificate.
    public static let none = ClientCertificatePolicy(name: "none")
    /// Clients are asked; one that sends a certificate must pass verification, one that
    /// sends none is accepted without an identity.
    public static let optional = ClientCertificatePolicy(name: "optional")
    /// Clients must send a certificate that passes verification (mutual TLS).
    public static let required = ClientCertificatePolicy(name: "required")
    public var description: String { name }
}

/// A certificate chain (leaf first, without the root) and its private key.
public struct TLSIdentity: Hashable, Sendable {
    /// Leaf first, then intermediates.
    public var chain: [Certificate]
    /// The leaf's private key.
    public var key: KeyPair

    /// An identity from values.
    public init(chain: [Certificate], key: KeyPair) {
        self.chain = chain
        self.key = key
    }

    /// Reads a PEM chain file and a (possibly passphrase-protected) key file.
    public init(chainFile: String, keyFile: String, passphrase: String? = nil) throws {
        self.chain = try Certificate.load(contentsOfFile: chainFile)
        self.key = try KeyPair(contentsOfFile: keyFile, passphrase: passphrase)
    }

    /// The leaf certificate.
    public var leaf: Certificate { chain[0] }
}

/// Everything a TLS client or server needs, as a value. Build it with a factory, adjust
/// fields, then make a ``TLSContext`` once and share it across connections.
///
/// ```swift
/// var client = TLSConfiguration.makeClientConfiguration(trustStore: TrustStore(certificates: [root]))
/// client.applicationProtocols = ["h2", "http/1.1"]
/// let context = try TLSContext(configuration: client)
/// ```
public struct TLSConfiguration: Hashable, Sendable {
    /// Which side of the connection this configuration is for.
    public struct Role: Hashable, Sendable, CustomStringConvertible {
        public var name: String
        public static let client = Role(name: "client")
        public static let server = Role(name: "server")
        public var description: String { name }
    }

    /// Client or server.
    public let role: Role
    /// Certificates to present. A server needs at least one; several are chosen by SNI.
    /// A client presents the first when the server asks.
    public var identities: [TLSIdentity]
    /// The anchors (and CRLs) the peer's chain must lead to; `nil` means the system's.
    public var trustStore: TrustStore?
    /// How much of the peer's certificate is verified.
    public var peerVerification: PeerVerification
    /// Servers: whether clients are asked for certificates.
    public var clientCertificates: ClientCertificatePolicy
    /// Lowest and highest protocol versions (TLS 1.2 and 1.3 by default).
    public var minimumVersion: TLSVersion
    public var maximumVersion: TLSVersion
    /// ALPN protocols, most preferred first.
    public var applicationProtocols: [String]
    /// Clients: the SNI name and the name verified, when it differs from the host connected to.
    public var serverName: String?
    /// Session resumption with tickets (TLS 1.3 and 1.2). On by default.
    public var sessionResumption: Bool
    /// How long a handshake (including verification) may take.
    public var handshakeTimeout: Duration
    /// Key sizes and signature algorithms accepted in the peer's chain.
    public var securityProfile: SecurityProfile
    /// Revocation checking against the trust store's CRLs.
    public var revocation: RevocationPolicy
    /// A complete GnuTLS priority string that replaces the defaults (versions, ciphers,
    /// groups). For experts; `nil` uses ``defaultPriority(minimum:maximum:)``.
    public var priorityString: String?

    private init(role: Role) {
        self.role = role
        identities = []
        trustStore = nil
        peerVerification = .fullVerification
        clientCertificates = .none
        minimumVersion = .tls12
        maximumVersion = .tls13
        applicationProtocols = []
        serverName = nil
        sessionResumption = true
        handshakeTimeout = .seconds(10)
        securityProfile = .medium
        revocation = .checkAvailableCRLs
        priorityString = nil
    }

    /// A client that verifies servers against `trustStore` (the system's when `nil`), and
    /// presents `identity` when a server asks for a certificate.
    public static func makeClientConfiguration(trustStore: TrustStore? = nil, identity: TLSIdentity? = nil) -> TLSConfiguration {
        var configuration = TLSConfiguration(role: .client)
        configuration.trustStore = trustStore
        configuration.identities = identity.map { [$0] } ?? []
        return configuration
    }

    /// A server presenting `identity` (more can be added to ``identities`` for SNI).
    public static func makeServerConfiguration(identity: TLSIdentity) -> TLSConfiguration {
        var configuration = TLSConfiguration(role: .server)
        configuration.identities = [identity]
        return configuration
    }

    /// A mutual-TLS server: presents `identity` and requires client certificates that chain
    /// to `clientTrustStore` and allow client authentication.
    public static func makeMutualTLSServerConfiguration(identity: TLSIdentity, clientTrustStore: TrustStore) -> TLSConfiguration {
        var configuration = makeServerConfiguration(identity: identity)
        configuration.trustStore = clientTrustStore
        configuration.clientCertificates = .required
        return configuration
    }

    /// The default GnuTLS priority string: TLS 1.2–1.3, AEAD ciphers with forward secrecy
    /// only (ECDHE; AES-GCM, ChaCha20-Poly1305), X25519/P-256/P-384, no SHA-1 signatures,
    /// the MEDIUM verification profile.
    public static func defaultPriority(minimum: TLSVersion = .tls12, maximum: TLSVersion = .tls13) -> String {
        let versions = [TLSVersion.tls12, .tls13].filter { $0 >= minimum && $0 <= maximum }.map(\.priorityToken).joined(separator: ":")
        return "NORMAL:-VERS-ALL:\(versions):-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"
            + ":-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"
            + ":-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:-SIGN-RSA-SHA224:-SIGN-ECDSA-SHA224:%PROFILE_MEDIUM"
    }
}

/// Connection-independent TLS state built once from a ``TLSConfiguration``: GnuTLS
/// credentials (identities, trust list, CRLs), the priority cache, the session-ticket key
/// and the chain verifier. Share one context across every connection it serves.
public final class TLSContext: Sendable {
    /// The configuration this context was built from.
    public let configuration: TLSConfiguration
    package let handle: TLSContextHandle
    /// The Swift verifier run on every peer chain (nil when verification is off).
    public let verifier: Verifier?
    /// CRLs with more entries than this are checked by ``verifier`` only, not handed to
    /// GnuTLS's trust list too (whose import is quadratic in the entries).
    package static let gnutlsCRLEntryLimit = 1_000
    /// Client-side resumption data by server name and port.
    package let sessionCache: SessionCache

    /// Validates `configuration` (keys match certificates, chains are in order, a server has
    /// an identity) and builds the GnuTLS objects.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` naming what is wrong.
    public init(configuration: TLSConfiguration) throws {
        self.configuration = configuration
        if configuration.role == .server && configuration.identities.isEmpty {
            throw GnuTLSError(.invalidArgument, "a TLS server configuration needs at least one identity (certificate chain and key)")
        }
        guard configuration.minimumVersion <= configuration.maximumVersion else {
            throw GnuTLSError(.invalidArgument, "minimum TLS version \(configuration.minimumVersion) is above the maximum \(configuration.maximumVersion)")
        }
        for identity in configuration.identities {
            guard let leaf = identity.chain.first else {
                throw GnuTLSError(.invalidArgument, "an identity has an empty certificate chain")
            }
            guard leaf.publicKey.keyIdentifier == identity.key.publicKey.keyIdentifier else {
                throw GnuTLSError(.invalidArgument, "the private key does not match certificate '\(leaf.subject)'")
            }
            for (child, parent) in zip(identity.chain, identity.chain.dropFirst()) where !parent.subject.matches(child.issuer) {
                throw GnuTLSError(.invalidArgument, "the certificate chain is out of order: '\(child.subject)' is issued by '\(child.issuer)', but the next certificate is '\(parent.subject)'")
            }
        }
        var settings = CoreTLSSettings(
            role: configuration.role == .server ? .server : .client,
            priority: configuration.priorityString ?? TLSConfiguration.defaultPriority(minimum: configuration.minimumVersion, maximum: configuration.maximumVersion))
        settings.identities = configuration.identities.map { identity in
            (chainPEM: identity.chain.map(\.pemEncoded).joined(), key: identity.key.handle)
        }
        let verifies = configuration.peerVerification != .insecureNoVerification
            && (configuration.role == .client || configuration.clientCertificates != .none)
        let trust = configuration.trustStore ?? TrustStore.system
        if verifies {
            settings.trustAnchors = trust.certificates.map(\.derEncoded)
            // Revocation is decided by the Swift verifier (`verifier` below), which runs on every
            // handshake, resumed ones included, before any application byte is released, from
            // the CRLs parsed once into dictionaries. GnuTLS's trust list gets only small CRLs
            // as a second opinion: its importer is quadratic in the entries (100,000 would take
            // minutes in every context built).
            settings.crls = configuration.revocation == .disabledInsecure
                ? [] : trust.crls.filter { $0.entries.count <= Self.gnutlsCRLEntryLimit }.map(\.derEncoded)
            settings.systemTrust = trust.includesSystemTrust
        }
        switch configuration.clientCertificates {
        case .required: settings.clientCertificates = .required
        case .optional: settings.clientCertificates = .optional
        default: settings.clientCertificates = .none
        }
        settings.alpn = configuration.applicationProtocols
        settings.sessionTickets = configuration.sessionResumption
        settings.profile = configuration.securityProfile == .low ? .low : configuration.securityProfile == .high ? .high : .medium
        self.handle = try TLSContextHandle(settings)
        self.verifier = verifies ? try Verifier(trustStore: trust) : nil
        self.sessionCache = SessionCache()
    }

    /// The policy peers are verified with: for a client, the server's purpose and name;
    /// for a server, the client purpose.
    public func verificationPolicy(forHost host: String?) -> VerificationPolicy {
        var policy: VerificationPolicy
        if configuration.role == .client {
            let name = configuration.serverName ?? host
            if configuration.peerVerification == .fullVerification, let name {
                policy = .server(host: name)
            } else {
                policy = VerificationPolicy(purposes: [.serverAuth])
            }
        } else {
            policy = .client()
        }
        policy.securityProfile = configuration.securityProfile
        policy.revocation = configuration.revocation
        return policy
    }
}

/// Resumption data a client keeps per server, shared by the connections of one context.
package final class SessionCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: [UInt8]] = [:]

    package func data(for key: String) -> [UInt8]? {
        lock.lock(); defer { lock.unlock() }
        return entries[key]
    }

    package func store(_ data: [UInt8], for key: String) {
        lock.lock(); defer { lock.unlock() }
        if entries.count > 1024 { entries.removeAll() }
        entries[key] = data
    }
}

extension TLSContext {
    /// A new engine for one connection. `host` is the name (or IP literal) a client
    /// connects to; servers pass `nil`.
    package func makeEngine(host: String?) throws -> TLSEngine {
        let configuration = self.configuration
        if configuration.role == .client {
            let name = configuration.serverName ?? host
            let ip = name.flatMap { IPAddress($0) }
            let full = configuration.peerVerification == .fullVerification
            let verifies = configuration.peerVerification != .insecureNoVerification
            let engine = try TLSEngine(
                context: handle, serverName: name, verifyHostname: full ? name : nil, verifyIP: full ? ip?.bytes : nil,
                verifyPeer: verifies, purposeOID: ExtendedKeyUsage.serverAuth.rawValue,
                sessionData: configuration.sessionResumption ? name.flatMap { sessionCache.data(for: $0) } : nil)
            return engine
        }
        // GnuTLS's in-handshake verification fails a handshake in which the client sent no
        // certificate, so it runs only when certificates are required; optional ones are
        // verified by the Swift verifier after the handshake (GnuTLSHandler), when sent.
        let verifies = configuration.peerVerification != .insecureNoVerification && configuration.clientCertificates == .required
        return try TLSEngine(
            context: handle, serverName: nil, verifyHostname: nil, verifyIP: nil, verifyPeer: verifies,
            purposeOID: ExtendedKeyUsage.clientAuth.rawValue)
    }
}
