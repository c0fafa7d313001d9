import Foundation
import GnuTLS

/// Why an authority refused to issue a certificate.
public struct IssuanceError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The policy that refused.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// The request is not signed by the key it carries (no proof of possession).
        public static let requestSignatureInvalid = Reason(rawValue: "requestSignatureInvalid")
        /// The request asks to be a CA, but the profile is not an intermediate-CA profile.
        public static let certificateAuthorityNotAllowed = Reason(rawValue: "certificateAuthorityNotAllowed")
        /// A name is outside the name constraints of the issuer chain.
        public static let nameNotPermitted = Reason(rawValue: "nameNotPermitted")
        /// A path-length constraint of the issuer chain allows no further CA (or not the depth asked).
        public static let pathLengthExhausted = Reason(rawValue: "pathLengthExhausted")
        /// The key is too weak (RSA below 2048 bits).
        public static let weakKey = Reason(rawValue: "weakKey")
        /// The validity would end after the issuer's, or is empty.
        public static let validityExceedsIssuer = Reason(rawValue: "validityExceedsIssuer")
        /// The key or signature algorithm is not supported (SHA-1 signed requests, unknown curves).
        public static let unsupportedAlgorithm = Reason(rawValue: "unsupportedAlgorithm")
        /// The certificate would not identify anyone: empty subject, or a server profile without a DNS or IP name.
        public static let missingIdentity = Reason(rawValue: "missingIdentity")
        /// A name or option is malformed (an invalid DNS name, a non-positive validity).
        public static let invalidRequest = Reason(rawValue: "invalidRequest")
        /// The authority's key does not match its certificate, or its certificate is not a CA.
        public static let authorityMisconfigured = Reason(rawValue: "authorityMisconfigured")
        /// The subject is out of bounds: an attribute over its X.520 upper bound, too many
        /// attributes, or a control or bidirectional-override character in a value.
        public static let invalidSubject = Reason(rawValue: "invalidSubject")
        /// The request names more subject alternative names than a certificate may hold
        /// (the issuance policy's maximum).
        public static let tooManyNames = Reason(rawValue: "tooManyNames")
        /// A server certificate's common name is not one of its DNS or IP alternative names
        /// (CA/Browser Forum Baseline Requirements 7.1.4.3).
        public static let commonNameNotInAlternativeNames = Reason(rawValue: "commonNameNotInAlternativeNames")
    }

    /// Which policy refused.
    public var reason: Reason
    /// What was refused and why, in words a user can act on.
    public var message: String

    /// An error with `reason` and a sentence a user can act on.
    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// A readable form, for logs and messages.
    public var description: String { message }
}

/// What kind of certificate to issue; decides key usage, extended key usage and basic
/// constraints. Requested extensions are never copied from a request.
public struct CertificateProfile: Hashable, Sendable, CustomStringConvertible {
    /// The profile's name (`server`, `client`, `server-client`, `intermediate-ca`).
    public var name: String
    /// Extended key usage written into certificates of this profile.
    public var extendedKeyUsage: [ExtendedKeyUsage]
    /// Whether certificates of this profile are CAs.
    public var isCertificateAuthority: Bool
    /// For CA profiles: the path-length limit to write (`nil`: as deep as the issuer allows).
    public var pathLength: Int?
    /// For CA profiles: name constraints to write.
    public var nameConstraints: NameConstraints?

    /// TLS server: digitalSignature (and keyEncipherment for RSA), serverAuth. Needs a DNS or IP name.
    public static let tlsServer = CertificateProfile(name: "server", extendedKeyUsage: [.serverAuth], isCertificateAuthority: false)
    /// TLS client: digitalSignature, clientAuth.
    public static let tlsClient = CertificateProfile(name: "client", extendedKeyUsage: [.clientAuth], isCertificateAuthority: false)
    /// TLS server and client: both purposes. Needs a DNS or IP name.
    public static let tlsServerClient = CertificateProfile(name: "server-client", extendedKeyUsage: [.serverAuth, .clientAuth], isCertificateAuthority: false)
    /// A delegated OCSP responder (RFC 6960 section 4.2.2.2): digitalSignature, OCSPSigning,
    /// and id-pkix-ocsp-nocheck so clients do not ask about the responder itself. Issue it
    /// short-lived: nothing can revoke it in practice.
    public static let ocspResponder = CertificateProfile(name: "ocsp-responder", extendedKeyUsage: [.ocspSigning], isCertificateAuthority: false)

    /// An intermediate CA: keyCertSign and cRLSign, CA:TRUE with an optional path-length
    /// limit and name constraints.
    public static func intermediateCA(pathLength: Int? = nil, nameConstraints: NameConstraints? = nil) -> CertificateProfile {
        CertificateProfile(name: "intermediate-ca", extendedKeyUsage: [], isCertificateAuthority: true,
                           pathLength: pathLength, nameConstraints: nameConstraints)
    }

    /// Looks up `server`, `client` or `server-client`.
    public init?(name: String) {
        switch name {
        case "server": self = .tlsServer
        case "client": self = .tlsClient
        case "server-client", "server+client": self = .tlsServerClient
        case "intermediate-ca", "ca": self = .intermediateCA()
        case "ocsp-responder", "ocsp": self = .ocspResponder
        default: return nil
        }
    }

    init(name: String, extendedKeyUsage: [ExtendedKeyUsage], isCertificateAuthority: Bool,
         pathLength: Int? = nil, nameConstraints: NameConstraints? = nil) {
        self.name = name
        self.extendedKeyUsage = extendedKeyUsage
        self.isCertificateAuthority = isCertificateAuthority
        self.pathLength = pathLength
        self.nameConstraints = nameConstraints
    }

    var requiresNetworkName: Bool { extendedKeyUsage.contains(.serverAuth) }

    func keyUsage(for key: KeyDescription) -> KeyUsage {
        if isCertificateAuthority { return [.keyCertSign, .cRLSign] }
        return key.family == .rsa && requiresNetworkName ? [.digitalSignature, .keyEncipherment] : [.digitalSignature]
    }

    /// A readable form, for logs and messages.
    public var description: String { name }
}

/// Options of one issuance: validity, overrides of what the request asks for, and the
/// revocation pointers to embed.
public struct IssuanceOptions: Hashable, Sendable {
    /// Days of validity from now (ignored when ``notValidAfter`` is set).
    public var validityDays: Int
    /// An explicit end of validity.
    public var notValidAfter: Date?
    /// How far the start of validity is set back from now, for clocks that run behind.
    public var backdate: TimeInterval
    /// Replaces the requested subject.
    public var subject: DistinguishedName?
    /// Replaces the requested alternative names.
    public var alternativeNames: [GeneralName]?
    /// CRL distribution point URLs to embed.
    public var crlDistributionPoints: [String]
    /// OCSP responder URLs to embed (authority information access).
    public var ocspURLs: [String]
    /// CA issuer URLs to embed (authority information access).
    public var caIssuerURLs: [String]
    /// Write the TLS feature extension with status_request (RFC 7633, "must staple"):
    /// clients then refuse the certificate without a valid stapled OCSP response.
    public var mustStaple: Bool = false

    /// Options with the given values; by default 365 days, backdated 5 minutes.
    public init(
        validityDays: Int = 365, notValidAfter: Date? = nil, backdate: TimeInterval = 300,
        subject: DistinguishedName? = nil, alternativeNames: [GeneralName]? = nil,
        crlDistributionPoints: [String] = [], ocspURLs: [String] = [], caIssuerURLs: [String] = []
    ) {
        self.validityDays = validityDays
        self.notValidAfter = notValidAfter
        self.backdate = backdate
        self.subject = subject
        self.alternativeNames = alternativeNames
        self.crlDistributionPoints = crlDistributionPoints
        self.ocspURLs = ocspURLs
        self.caIssuerURLs = caIssuerURLs
    }
}

/// Something that signs certificates: a ``LocalAuthority`` whose key this process reaches
/// (in memory, on a token, through a signer), or an authority behind a network call.
///
/// Every operation is `async` so an authority backed by a remote service fits without
/// blocking its caller. ``LocalAuthority`` satisfies them with synchronous methods, which
/// Swift accepts for `async` requirements; call them with `await` through `any Authority`.
public protocol Authority: Sendable {
    /// The authority's own certificate.
    var certificate: Certificate { get }
    /// The authority's certificate followed by its issuers, up to and including the root.
    var chain: [Certificate] { get }
    /// Checks `request` against policy and issues a certificate for it.
    /// - Throws: ``IssuanceError`` for a policy refusal, `GnuTLSError` for a library failure.
    func issue(_ request: CertificateRequest, profile: CertificateProfile, options: IssuanceOptions) async throws -> Certificate
    /// Revokes the certificate this authority issued with `serial`.
    /// - Throws: ``LedgerError`` `.unknownSerial`, `.alreadyRevoked`, `.noLedger`.
    @discardableResult
    func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) async throws -> Revocation
    /// Issues a CRL of every revocation, valid for `days` days.
    func makeCRL(nextUpdateIn days: Int) async throws -> CertificateRevocationList
}
