import Foundation

/// How strong keys and signature algorithms must be, after GnuTLS's verification profiles.
///
/// Closed: one of ``low``, ``medium`` and ``high``. Each maps to exactly one GnuTLS
/// profile (`GNUTLS_PROFILE_*`, `%PROFILE_*` in priority strings), and the numbers below are
/// the ones GnuTLS applies for it, so the Swift verifier and GnuTLS agree.
public struct SecurityProfile: Hashable, Sendable, CustomStringConvertible {
    private enum Backing: Hashable, Sendable { case low, medium, high }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }

    /// GnuTLS's LOW profile: RSA ≥ 1024, SHA-1 accepted. For legacy peers only.
    public static let low = SecurityProfile(.low)
    /// GnuTLS's MEDIUM profile (the default): RSA ≥ 2048, curves ≥ P-256, no SHA-1.
    public static let medium = SecurityProfile(.medium)
    /// GnuTLS's HIGH profile: RSA ≥ 3072, curves ≥ P-256, no SHA-1.
    public static let high = SecurityProfile(.high)

    /// Looks up `low`, `medium` or `high` (any letter case).
    public init?(name: String) {
        switch name.lowercased() {
        case "low": self = .low
        case "medium": self = .medium
        case "high": self = .high
        default: return nil
        }
    }

    /// The profile's name (`low`, `medium`, `high`).
    public var name: String {
        switch backing {
        case .low: return "low"
        case .medium: return "medium"
        case .high: return "high"
        }
    }
    /// Smallest acceptable RSA modulus.
    public var minimumRSABits: Int {
        switch backing {
        case .low: return 1024
        case .medium: return 2048
        case .high: return 3072
        }
    }
    /// Smallest acceptable elliptic curve.
    public var minimumECBits: Int { 256 }
    /// Whether SHA-1 signatures are acceptable.
    public var allowsSHA1: Bool { backing == .low }

    /// A readable form, for logs and messages.
    public var description: String { name }
}

/// Whether and how revocation is checked against the trust store's CRLs. Closed: one of
/// the three below.
public struct RevocationPolicy: Hashable, Sendable, CustomStringConvertible {
    private enum Backing: Hashable, Sendable { case disabled, checkAvailable, require }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }

    /// `disabled`, `check-available` or `require`.
    public var name: String {
        switch backing {
        case .disabled: return "disabled"
        case .checkAvailable: return "check-available"
        case .require: return "require"
        }
    }

    /// Revocation is not checked. Named so that turning it off is visible in code review.
    public static let disabledInsecure = RevocationPolicy(.disabled)
    /// The default: where the trust store holds CRLs from a certificate's issuer, they must
    /// be valid and current (otherwise the status is unknown and verification fails) and the
    /// certificate must not be listed. Certificates whose issuer published no CRL pass.
    public static let checkAvailableCRLs = RevocationPolicy(.checkAvailable)
    /// Every certificate below the trust anchor needs a valid, current CRL from its issuer;
    /// without one verification fails with `revocationStatusUnknown` (fail closed).
    public static let requireCRLs = RevocationPolicy(.require)

    /// A readable form, for logs and messages.
    public var description: String { name }
}

/// The rule set a verification follows.
///
/// - ``rfc5280`` (the default): RFC 5280 path validation and RFC 9525 service identity,
///   as Go, BoringSSL and rustls apply them. The subject common name is never used to match
///   a name, never judged against the alternative names, and name-constrained only when the
///   leaf has no subject alternative names at all.
/// - ``webPKI`` (opt-in): adds the CA/Browser Forum Baseline Requirements that x509-limbo's
///   `webpki::` namespace checks: the CN must copy a DNS or IP alternative name, the leaf
///   must have alternative names and an extended key usage (without anyExtendedKeyUsage,
///   not critical), roots carry no EKU and only a keyIdentifier AKI equal to their SKI, no
///   CA certificate as a leaf, alternative names not critical, and Web PKI key types only.
public struct VerificationProfile: Hashable, Sendable, CustomStringConvertible {
    private enum Backing: Hashable, Sendable { case rfc5280, webPKI }
    private let backing: Backing
    private init(_ backing: Backing) { self.backing = backing }

    /// RFC 5280 + RFC 9525: the default.
    public static let rfc5280 = VerificationProfile(.rfc5280)
    /// RFC 5280 + RFC 9525 + the CA/Browser Forum Baseline Requirements.
    public static let webPKI = VerificationProfile(.webPKI)

    /// Whether the CA/Browser Forum rules apply.
    public var isWebPKI: Bool { backing == .webPKI }

    /// `rfc5280` or `web-pki`.
    public var description: String { backing == .webPKI ? "web-pki" : "rfc5280" }
}

/// What a verification checks besides the chain itself.
public struct VerificationPolicy: Hashable, Sendable {
    /// The rule set: RFC 5280 + RFC 9525 (default) or the Web PKI's.
    public var profile: VerificationProfile
    /// Purposes the leaf must allow (extended key usage); CAs in the chain that carry an
    /// EKU extension must allow them too.
    public var purposes: [ExtendedKeyUsage]
    /// Identities the leaf must hold, every one of them: `.dnsName` (matched against DNS
    /// SANs only, RFC 6125 wildcards, no common-name fallback), `.ipAddress` (IP SANs only),
    /// `.email` (rfc822Name SANs).
    public var expectedNames: [GeneralName]
    /// The moment to verify at; `nil` means now. Per call, never GnuTLS's process-wide clock.
    public var time: Date?
    /// The most non-self-issued intermediates a chain may have.
    public var maximumIntermediates: Int?
    /// Key sizes and signature algorithms.
    public var securityProfile: SecurityProfile
    /// Key usage bits the leaf must allow (when it has a key usage extension).
    public var requiredKeyUsage: KeyUsage
    /// When set, the only signature algorithms (GnuTLS names or OIDs) accepted below the anchor.
    public var allowedSignatureAlgorithms: Set<String>?
    /// Revocation checking.
    public var revocation: RevocationPolicy

    /// A policy with the given checks. The default verifies a TLS server without a name.
    public init(
        purposes: [ExtendedKeyUsage] = [.serverAuth], expectedNames: [GeneralName] = [], time: Date? = nil,
        maximumIntermediates: Int? = nil, securityProfile: SecurityProfile = .medium, requiredKeyUsage: KeyUsage = [],
        allowedSignatureAlgorithms: Set<String>? = nil, revocation: RevocationPolicy = .checkAvailableCRLs,
        profile: VerificationProfile = .rfc5280
    ) {
        self.profile = profile
        self.purposes = purposes
        self.expectedNames = expectedNames
        self.time = time
        self.maximumIntermediates = maximumIntermediates
        self.securityProfile = securityProfile
        self.requiredKeyUsage = requiredKeyUsage
        self.allowedSignatureAlgorithms = allowedSignatureAlgorithms
        self.revocation = revocation
    }

    /// Verifies a TLS server for `host` (a DNS name or an IP address literal).
    public static func server(host: String) -> VerificationPolicy {
        VerificationPolicy(purposes: [.serverAuth], expectedNames: [IPAddress(host).map { .ipAddress($0) } ?? .dnsName(host)])
    }

    /// Verifies a TLS client, optionally one that must hold every name in `names`.
    public static func client(names: [GeneralName] = []) -> VerificationPolicy {
        VerificationPolicy(purposes: [.clientAuth], expectedNames: names)
    }
}

/// A chain that passed verification: the leaf first, the trust anchor last.
public struct VerifiedChain: Hashable, Sendable {
    /// Leaf, intermediates, anchor.
    public let certificates: [Certificate]
    /// The leaf.
    public var leaf: Certificate { certificates[0] }
    /// The trust anchor.
    public var anchor: Certificate { certificates[certificates.count - 1] }
}

/// Why a chain was rejected: every problem found on the best candidate chain, each with
/// the position it applies to.
public struct VerificationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// One problem.
    public struct Problem: Hashable, Sendable, CustomStringConvertible {
        /// What is wrong.
        public var reason: Reason
        /// Position in the chain: 0 is the leaf, increasing towards the anchor; `nil` when
        /// the problem is not about one certificate.
        public var position: Int?
        /// Subject of the certificate at ``position``.
        public var subject: DistinguishedName?
        /// A sentence a user can act on.
        public var message: String
        /// For expired / not yet valid: the validity period.
        public var notValidBefore: Date?
        /// For expired / not yet valid: the end of the validity period.
        public var notValidAfter: Date?
        /// For a revoked certificate.
        public var revocationDate: Date?
        /// For a revoked certificate: the reason code on the CRL or OCSP response, if any.
        public var revocationReason: RevocationReason?
        /// For a name mismatch: what was asked, and what the certificate holds.
        public var expectedName: GeneralName?
        /// For a name mismatch: the names the certificate holds.
        public var presentedNames: [GeneralName]?

        init(_ reason: Reason, _ message: String, position: Int? = nil, subject: DistinguishedName? = nil) {
            self.reason = reason
            self.message = message
            self.position = position
            self.subject = subject
        }

        /// A readable form, for logs and messages.
        public var description: String {
            position.map { "[\($0)] \(reason): \(message)" } ?? "\(reason): \(message)"
        }
    }

    /// Problem kinds.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// No chain reaches a trust anchor.
        public static let untrustedIssuer = Reason(rawValue: "untrustedIssuer")
        /// A signature does not verify with its issuer's key.
        public static let signatureInvalid = Reason(rawValue: "signatureInvalid")
        /// The verification time is after the certificate's notAfter.
        public static let expired = Reason(rawValue: "expired")
        /// The verification time is before the certificate's notBefore.
        public static let notYetValid = Reason(rawValue: "notYetValid")
        /// The leaf does not hold an expected name.
        public static let nameMismatch = Reason(rawValue: "nameMismatch")
        /// The leaf (or a CA's EKU) does not allow the purpose.
        public static let purposeMismatch = Reason(rawValue: "purposeMismatch")
        /// An issuer is not a CA (basic constraints missing, not critical, or CA:FALSE).
        public static let notCA = Reason(rawValue: "notCA")
        /// A path-length constraint or the maximum chain depth is exceeded.
        public static let pathLengthExceeded = Reason(rawValue: "pathLengthExceeded")
        /// A required key usage bit is missing: keyCertSign on a CA, or a bit the policy requires of the leaf. (A CRL whose issuer lacks cRLSign is not relied on: ``revocationStatusUnknown``.)
        public static let keyUsageMissing = Reason(rawValue: "keyUsageMissing")
        /// A name is outside an issuer's name constraints.
        public static let nameConstraintViolated = Reason(rawValue: "nameConstraintViolated")
        /// The certificate is listed on its issuer's CRL.
        public static let revoked = Reason(rawValue: "revoked")
        /// Revocation could not be established (no valid current CRL where one is required).
        public static let revocationStatusUnknown = Reason(rawValue: "revocationStatusUnknown")
        /// A key or signature algorithm is too weak or not allowed.
        public static let insecureAlgorithm = Reason(rawValue: "insecureAlgorithm")
        /// A critical extension is not understood.
        public static let unhandledCriticalExtension = Reason(rawValue: "unhandledCriticalExtension")
        /// A certificate violates the X.509 profile (version, empty names, extension rules).
        public static let malformedCertificate = Reason(rawValue: "malformedCertificate")
        /// GnuTLS's own verification rejected a chain the Swift checks accepted.
        public static let rejectedByGnuTLS = Reason(rawValue: "rejectedByGnuTLS")
    }

    /// Every problem, leaf first.
    public var problems: [Problem]

    /// Whether any problem has `reason`.
    public func contains(_ reason: Reason) -> Bool { problems.contains { $0.reason == reason } }

    /// The problems with `reason`.
    public func problems(_ reason: Reason) -> [Problem] { problems.filter { $0.reason == reason } }

    /// A readable form, for logs and messages.
    public var description: String {
        "certificate verification failed: " + problems.map(\.description).joined(separator: "; ")
    }
}
