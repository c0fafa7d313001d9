import Foundation
import GnuTLSCore

/// A TLS protocol version. Closed: only the versions this package speaks exist.
public struct TLSVersion: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    private enum Backing: Int, Hashable, Sendable { case tls12 = 12, tls13 = 13 }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }

    /// `12` or `13`.
    public var rawValue: Int { backing.rawValue }
    /// The version for `12` (TLS 1.2) or `13` (TLS 1.3); `nil` for any other number.
    public init?(rawValue: Int) {
        guard let backing = Backing(rawValue: rawValue) else { return nil }
        self.backing = backing
    }
    /// TLS 1.2 (GnuTLS `VERS-TLS1.2`).
    public static let tls12 = TLSVersion(.tls12)
    /// TLS 1.3 (GnuTLS `VERS-TLS1.3`).
    public static let tls13 = TLSVersion(.tls13)
    /// Orders versions from older to newer.
    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }
    /// `TLS1.2` or `TLS1.3`, GnuTLS's names.
    public var description: String { backing == .tls13 ? "TLS1.3" : "TLS1.2" }
    /// The version GnuTLS reports by name (`TLS1.2`, `TLS1.3`), or `nil` for one this
    /// package does not negotiate.
    public init?(gnutlsName: String) {
        switch gnutlsName {
        case "TLS1.2": self = .tls12
        case "TLS1.3": self = .tls13
        default: return nil
        }
    }
    var priorityToken: String { backing == .tls13 ? "+VERS-TLS1.3" : "+VERS-TLS1.2" }
}

/// How the peer's certificate is verified. Closed: a value is one of the three below.
public struct PeerVerification: Hashable, Sendable, CustomStringConvertible {
    private enum Backing: Hashable, Sendable { case full, chainOnly, none }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }
    /// `full`, `chain-only` or `none`.
    public var name: String {
        switch backing {
        case .full: return "full"
        case .chainOnly: return "chain-only"
        case .none: return "none"
        }
    }
    /// Chain to a trusted anchor, host name (clients), purpose, validity, revocation. The default.
    public static let fullVerification = PeerVerification(.full)
    /// Chain, purpose, validity and revocation, but not the host name.
    public static let chainOnlyNoHostnameCheck = PeerVerification(.chainOnly)
    /// Nothing is verified: any certificate is accepted. For tests against throwaway peers
    /// only; the name is meant to stand out in code review.
    public static let insecureNoVerification = PeerVerification(.none)
    /// Whether the chain is verified at all.
    var verifiesChain: Bool { backing != .none }
    /// Whether the host name (or IP address) is verified too.
    var verifiesHostname: Bool { backing == .full }
    /// A readable form, for logs and messages.
    public var description: String { name }
}

/// Whether a server asks clients for certificates. Closed: one of the three below.
public struct ClientCertificatePolicy: Hashable, Sendable, CustomStringConvertible {
    private enum Backing: Hashable, Sendable { case none, optional, required }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }
    /// `none`, `optional` or `required`.
    public var name: String {
        switch backing {
        case .none: return "none"
        case .optional: return "optional"
        case .required: return "required"
        }
    }
    /// Clients are not asked for a certificate.
    public static let none = ClientCertificatePolicy(.none)
    /// Clients are asked; one that sends a certificate must pass verification, one that
    /// sends none is accepted without an identity.
    public static let optional = ClientCertificatePolicy(.optional)
    /// Clients must send a certificate that passes verification (mutual TLS).
    public static let required = ClientCertificatePolicy(.required)
    var core: CoreTLSSettings.ClientCertificates {
        switch backing {
        case .none: return .none
        case .optional: return .optional
        case .required: return .required
        }
    }
    /// A readable form, for logs and messages.
    public var description: String { name }
}

/// A certificate chain (leaf first, without the root) and its private key: a ``KeyPair`` in
/// memory, a ``PKCS11Key`` on a token, or any other ``SigningKey`` (a remote signer).
///
/// The chain always holds its leaf: an identity is built from a leaf, or from a chain that
/// is checked not to be empty. Two identities are equal when their chains, staples and
/// public keys are.
public struct TLSIdentity: Hashable, Sendable {
    /// The leaf certificate: the one whose public key belongs to ``key``.
    public var leaf: Certificate
    /// The certificates after the leaf, each the issuer of the one before (without the root).
    public var intermediates: [Certificate]
    /// The leaf's private key.
    public var key: any SigningKey
    /// An OCSP response about the leaf to staple (servers). It must verify (signed by the
    /// leaf's issuer or its delegated responder, current, good) or the context is not built.
    public var ocspResponse: OCSPResponse? = nil
    /// A staple that may change while the server runs (it takes the place of
    /// ``ocspResponse``): every handshake staples the source's current response.
    public var ocspStapleSource: OCSPStapleSource? = nil

    /// Leaf first, then intermediates; never empty.
    public var chain: [Certificate] { [leaf] + intermediates }

    /// An identity from a leaf, the intermediates that follow it, and its key.
    public init(leaf: Certificate, intermediates: [Certificate] = [], key: any SigningKey) {
        self.leaf = leaf
        self.intermediates = intermediates
        self.key = key
    }

    /// An identity from a chain (leaf first) and its key.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` when `chain` is empty.
    public init(chain: [Certificate], key: any SigningKey) throws {
        guard let leaf = chain.first else {
            throw GnuTLSError(.invalidArgument, "a TLS identity needs a certificate chain, and the one given is empty")
        }
        self.init(leaf: leaf, intermediates: Array(chain.dropFirst()), key: key)
    }

    /// Reads a PEM chain file (leaf first) and a (possibly passphrase-protected) key file.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` when the file holds no certificate.
    public init(chainContentsOfFile chainPath: String, keyContentsOfFile keyPath: String, passphrase: String? = nil) throws {
        let chain = try Certificate.load(contentsOfFile: chainPath)
        guard !chain.isEmpty else {
            throw GnuTLSError(.invalidArgument, "\(chainPath) holds no certificate: a TLS identity needs its certificate chain (leaf first)")
        }
        try self.init(chain: chain, key: try KeyPair(contentsOfFile: keyPath, passphrase: passphrase))
    }

    /// Two identities are equal when their chains, staples and public keys are.
    public static func == (lhs: TLSIdentity, rhs: TLSIdentity) -> Bool {
        lhs.chain == rhs.chain && lhs.ocspResponse == rhs.ocspResponse && lhs.key.publicKey == rhs.key.publicKey
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(chain)
        hasher.combine(ocspResponse)
        hasher.combine(key.publicKey)
    }

    /// Whether ``key`` is the leaf certificate's key. Checked by ``TLSContext`` and by
    /// reloaders, which refuse a mismatched renewal with its own code.
    package var keyMatchesLeaf: Bool {
        leaf.publicKey.keyIdentifier == key.publicKey.keyIdentifier
    }
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
    /// Closed: ``client`` or ``server``.
    public struct Role: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable { case client, server }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }
        /// `client` or `server`.
        public var name: String { backing == .client ? "client" : "server" }
        /// The side that connects.
        public static let client = Role(.client)
        /// The side that accepts.
        public static let server = Role(.server)
        var core: CoreTLSSettings.Role { backing == .client ? .client : .server }
        /// A readable form, for logs and messages.
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
    /// The highest protocol version offered or accepted (TLS 1.3 by default).
    public var maximumVersion: TLSVersion
    /// ALPN protocols, most preferred first.
    public var applicationProtocols: [String]
    /// Clients: the SNI name and the name verified, when it differs from the host connected to.
    public var serverName: String?
    /// Session resumption with tickets (TLS 1.3 and 1.2). On by default.
    public var sessionResumption: Bool
    /// How long a handshake (including verification) may take.
    public var handshakeTimeout: Duration
    /// How long an established connection may stay without plaintext going either way
    /// before it is closed (close_notify, then `TLSError.Code.idleTimeout` (NIOGnuTLS) to the
    /// application); `nil`: no limit. Servers default to 2 minutes, clients to `nil`.
    public var idleTimeout: Duration?
    /// How long a closing connection waits for the peer's close_notify after sending its
    /// own; when it passes, the channel closes anyway. `.zero` closes right after sending
    /// close_notify. Defaults to 5 seconds.
    public var shutdownTimeout: Duration = .seconds(5)
    /// Key sizes and signature algorithms accepted in the peer's chain.
    public var securityProfile: SecurityProfile
    /// Revocation checking against the trust store's CRLs.
    public var revocation: RevocationPolicy
    /// OCSP revocation checking of the peer's chain after it verified (stapled response,
    /// the trust store's CRLs, then the online responder; see ``RevocationChecker``).
    /// Must-staple peer certificates need a valid staple whatever the mode.
    public var ocspRevocation: RevocationCheckingMode = .off
    /// A complete GnuTLS priority string that replaces the defaults (versions, ciphers,
    /// groups). For experts; `nil` uses ``defaultPriority(minimum:maximum:)``. The
    /// verification profile always comes from ``securityProfile``: its `%PROFILE_` keyword is
    /// appended, and a string that names a different `%PROFILE_` is refused by ``TLSContext``.
    public var priorityString: String?
    /// The rule set the peer's chain is verified with: RFC 5280 + RFC 9525 (the default) or
    /// the CA/Browser Forum's Web PKI rules (``VerificationProfile/webPKI``).
    public var verificationProfile: VerificationProfile
    /// Whether chains the Swift verifier accepted are remembered for repeat connections, which
    /// then skip the Swift verifier's pass and, for a chain GnuTLS accepted in an earlier full
    /// handshake, GnuTLS's verification of it in the handshake; the peer's handshake signature
    /// is checked every time (see ``VerifiedChainCache``). On by default.
    public var chainCache: ChainCache

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
        idleTimeout = role == .server ? .seconds(120) : nil
        securityProfile = .medium
        revocation = .checkAvailableCRLs
        priorityString = nil
        verificationProfile = .rfc5280
        chainCache = .enabled
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
    /// the MEDIUM verification profile; a server picks the cipher suite in this order
    /// (`%SERVER_PRECEDENCE`), not the client's.
    public static func defaultPriority(minimum: TLSVersion = .tls12, maximum: TLSVersion = .tls13) -> String {
        let versions = [TLSVersion.tls12, .tls13].filter { $0 >= minimum && $0 <= maximum }.map(\.priorityToken).joined(separator: ":")
        return "NORMAL:-VERS-ALL:\(versions):-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"
            + ":-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"
            + ":-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:-SIGN-RSA-SHA224:-SIGN-ECDSA-SHA224:%PROFILE_MEDIUM:%SERVER_PRECEDENCE"
    }
}

// MARK: - The one mapping from policy values to GnuTLS settings and the Swift verifier

extension SecurityProfile {
    /// The GnuTLS verification profile (`GNUTLS_PROFILE_LOW/MEDIUM/HIGH`).
    var core: CoreProfile {
        self == .low ? .low : self == .high ? .high : .medium
    }

    /// The priority-string keyword for the same profile (`%PROFILE_LOW/MEDIUM/HIGH`).
    var priorityKeyword: String { "%PROFILE_" + name.uppercased() }
}

/// Everything a ``TLSConfiguration``'s policy values mean, computed in one place: the
/// priority string and verification profile GnuTLS gets, whether and what GnuTLS verifies
/// in the handshake, and the ``VerificationPolicy`` the Swift verifier runs after it.
///
/// GnuTLS combines the profile of the credentials (`gnutls_certificate_set_verify_flags`)
/// and of the priority string (`%PROFILE_*`, also implied by keywords such as `NORMAL`) by
/// OR-ing their bits, so two different profiles make an unintended, stricter one (MEDIUM |
/// HIGH is ULTRA, which refuses P-256, Ed25519 and RSA-2048). Both are therefore always
/// set from ``TLSConfiguration/securityProfile``.
struct TLSPolicyMapping: Hashable, Sendable {
    /// The priority string, ending with the security profile's `%PROFILE_` keyword.
    let priority: String
    /// The GnuTLS verification profile.
    let profile: CoreProfile
    /// Whether peer chains are verified at all (by GnuTLS in the handshake and by Swift).
    let verifiesPeer: Bool
    let role: TLSConfiguration.Role
    let peerVerification: PeerVerification
    let clientCertificates: ClientCertificatePolicy
    let serverName: String?
    let securityProfile: SecurityProfile
    let revocation: RevocationPolicy
    let verificationProfile: VerificationProfile

    /// - Throws: ``GnuTLSError`` `.invalidArgument` when a custom priority string names a
    ///   `%PROFILE_` other than the configuration's ``TLSConfiguration/securityProfile``.
    init(_ configuration: TLSConfiguration) throws {
        let keyword = configuration.securityProfile.priorityKeyword
        var tokens: [Substring]
        if let custom = configuration.priorityString {
            tokens = custom.split(separator: ":", omittingEmptySubsequences: false)
            if let other = tokens.first(where: { $0.uppercased().hasPrefix("%PROFILE_") && $0.uppercased() != keyword }) {
                throw GnuTLSError(.invalidArgument, "the priority string sets \(other), but securityProfile is \(configuration.securityProfile): set securityProfile instead of a %PROFILE_ keyword")
            }
        } else {
            tokens = TLSConfiguration.defaultPriority(minimum: configuration.minimumVersion, maximum: configuration.maximumVersion)
                .split(separator: ":", omittingEmptySubsequences: false)
        }
        tokens.removeAll { $0.uppercased().hasPrefix("%PROFILE_") }
        // Versions outside minimumVersion...maximumVersion are removed from any string, a
        // custom one included (never added: a string may narrow them further).
        var versions: [Substring] = ["-VERS-SSL3.0", "-VERS-TLS1.0", "-VERS-TLS1.1"]
        if configuration.minimumVersion > .tls12 { versions.append("-VERS-TLS1.2") }
        if configuration.maximumVersion < .tls13 { versions.append("-VERS-TLS1.3") }
        priority = (tokens + versions + [Substring(keyword)]).joined(separator: ":")
        profile = configuration.securityProfile.core
        role = configuration.role
        peerVerification = configuration.peerVerification
        clientCertificates = configuration.clientCertificates
        verifiesPeer = configuration.peerVerification.verifiesChain
            && (configuration.role == .client || configuration.clientCertificates != .none)
        serverName = configuration.serverName
        securityProfile = configuration.securityProfile
        revocation = configuration.revocation
        verificationProfile = configuration.verificationProfile
    }

    /// The policy the Swift verifier applies: for a client, the server purpose and (with
    /// full verification) the name; for a server, the client purpose.
    func verificationPolicy(forHost host: String?) -> VerificationPolicy {
        var policy: VerificationPolicy
        if role == .client {
            let name = serverName ?? host
            if peerVerification.verifiesHostname, let name {
                policy = .server(host: name)
            } else {
                policy = VerificationPolicy(purposes: [.serverAuth])
            }
        } else {
            policy = .client()
        }
        policy.securityProfile = securityProfile
        policy.revocation = revocation
        policy.profile = verificationProfile
        return policy
    }

    /// What GnuTLS checks in the handshake: the name (clients with full verification), the
    /// purpose, and whether it verifies at all. GnuTLS's in-handshake verification fails a
    /// handshake in which the client sent no certificate, so on a server it runs only when
    /// certificates are required; optional ones are verified by the Swift verifier after the
    /// handshake (GnuTLSHandler), when sent.
    /// What an engine is told to verify in the handshake.
    typealias EngineVerification = (serverName: String?, hostname: String?, ip: [UInt8]?, verify: Bool, purposeOID: String)

    func engineVerification(host: String?) -> EngineVerification {
        if role == .client {
            let name = serverName ?? host
            let ip = name.flatMap { IPAddress($0) }
            let full = peerVerification.verifiesHostname
            return (name, full ? name : nil, full ? ip?.bytes : nil, peerVerification.verifiesChain, ExtendedKeyUsage.serverAuth.rawValue)
        }
        return (nil, nil, nil, peerVerification.verifiesChain && clientCertificates == .required, ExtendedKeyUsage.clientAuth.rawValue)
    }
}
