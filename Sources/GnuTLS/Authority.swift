import Foundation
import GnuTLSCore

/// Why an authority refused to issue a certificate.
public struct IssuanceError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The policy that refused.
    public struct Reason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
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
        /// (``Policy/maximumAlternativeNames``).
        public static let tooManyNames = Reason(rawValue: "tooManyNames")
        /// A server certificate's common name is not one of its DNS or IP alternative names
        /// (CA/Browser Forum Baseline Requirements 7.1.4.3).
        public static let commonNameNotInAlternativeNames = Reason(rawValue: "commonNameNotInAlternativeNames")
    }

    /// Which policy refused.
    public var reason: Reason
    /// What was refused and why, in words a user can act on.
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

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
    /// - Throws: ``IssuanceError`` for a policy refusal, ``GnuTLSError`` for a library failure.
    func issue(_ request: CertificateRequest, profile: CertificateProfile, options: IssuanceOptions) async throws -> Certificate
    /// Revokes the certificate this authority issued with `serial`.
    /// - Throws: ``LedgerError`` `.unknownSerial`, `.alreadyRevoked`, `.noLedger`.
    @discardableResult
    func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) async throws -> Revocation
    /// Issues a CRL of every revocation, valid for `days` days.
    func makeCRL(nextUpdateIn days: Int) async throws -> CertificateRevocationList
}

/// A certificate authority whose key is held by this process: creates roots and
/// intermediates, issues certificates from requests under a profile, and saves itself to a
/// directory (`ca.pem`, `ca.key.pem`, `chain.pem`).
///
/// ```swift
/// let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Example Root"))
/// let issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Example Issuing CA"), pathLength: 0)
/// let leaf = try issuing.issue(csr, profile: .tlsServer, options: IssuanceOptions(validityDays: 90))
/// ```
public final class LocalAuthority: Authority {
    public let certificate: Certificate
    public let chain: [Certificate]
    /// The signing key.
    public let key: any SigningKey
    private let ledgerBox: LedgerBox

    /// Where this authority records what it issues and revokes: the CA directory's
    /// `ledger.sqlite` once loaded from or saved to a directory, `nil` before.
    public var ledger: (any CertificateLedger)? { ledgerBox.value }

    /// An authority from its certificate, key and chain (its issuers up to the root; the
    /// certificate itself may lead the chain or not).
    /// - Throws: ``IssuanceError`` `.authorityMisconfigured` when the key does not match or the
    ///   certificate is not a CA allowed to sign certificates.
    ///
    /// With a `ledger`, every issued certificate is recorded in it and ``revoke(serial:reason:date:)``
    /// and ``makeCRL(nextUpdateIn:)`` work.
    public init(certificate: Certificate, key: any SigningKey, issuers: [Certificate] = [], ledger: (any CertificateLedger)? = nil) throws {
        guard key.publicKey.keyIdentifier == certificate.publicKey.keyIdentifier else {
            throw IssuanceError(.authorityMisconfigured, "the private key does not match the public key of CA certificate '\(certificate.subject)'")
        }
        guard certificate.isCertificateAuthority else {
            throw IssuanceError(.authorityMisconfigured, "certificate '\(certificate.subject)' is not a CA (basic constraints CA:FALSE or absent)")
        }
        if let usage = certificate.keyUsage, !usage.contains(.keyCertSign) {
            throw IssuanceError(.authorityMisconfigured, "CA certificate '\(certificate.subject)' does not allow certificate signing (key usage lacks keyCertSign)")
        }
        self.certificate = certificate
        self.key = key
        self.chain = [certificate] + issuers.filter { $0 != certificate }
        self.ledgerBox = LedgerBox(ledger)
    }

    /// Creates a self-signed root CA.
    ///
    /// - Parameters:
    ///   - key: the root's key; a new ECDSA P-256 key when omitted.
    ///   - validityDays: lifetime from now (default ten years).
    ///   - pathLength: how many intermediate levels may follow (`nil`: unlimited).
    ///   - nameConstraints: subtrees every certificate below must stay within.
    public static func createRoot(
        subject: DistinguishedName, key: (any SigningKey)? = nil, validityDays: Int = 3650,
        pathLength: Int? = nil, nameConstraints: NameConstraints? = nil
    ) throws -> LocalAuthority {
        let key = try key ?? KeyPair.generate(.ecdsaP256)
        try Policy.checkKeyStrength(key.publicKey.keyDescription, what: "root key")
        guard !subject.isEmpty else { throw IssuanceError(.missingIdentity, "a root CA needs a non-empty subject") }
        try Policy.checkSubject(subject)
        let now = Policy.wholeSeconds(Date())
        let notAfter = try Policy.validityEnd(days: validityDays, from: now)
        var spec = CoreCertificateSpec(
            serial: try Policy.newSerial(), notBefore: Int(now.timeIntervalSince1970 - 300),
            notAfter: Int(notAfter.timeIntervalSince1970),
            subject: try subject.coreAttributes, subjectPublicKeyInfo: key.publicKey.derEncoded, isCA: true,
            pathLength: pathLength, keyUsage: KeyUsage([.keyCertSign, .cRLSign]).rawValue,
            subjectKeyIdentifier: key.publicKey.keyIdentifier, authorityKeyIdentifier: key.publicKey.keyIdentifier)
        if let nameConstraints, !nameConstraints.isEmpty {
            spec.permittedNames = nameConstraints.permitted
            spec.excludedNames = nameConstraints.excluded
        }
        let der = try CertificateHandle.issue(spec, issuer: nil, key: try coreKeyHandle(for: key))
        return try LocalAuthority(certificate: Certificate(derEncoded: der), key: key)
    }

    /// Creates an intermediate CA signed by this authority, for `key` (a new ECDSA P-256 key
    /// when omitted).
    public func createIntermediate(
        subject: DistinguishedName, key: (any SigningKey)? = nil, validityDays: Int = 1825,
        pathLength: Int? = nil, nameConstraints: NameConstraints? = nil
    ) throws -> LocalAuthority {
        let key = try key ?? KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: subject, key: key)
        let certificate = try issue(
            request, profile: .intermediateCA(pathLength: pathLength, nameConstraints: nameConstraints),
            options: IssuanceOptions(validityDays: validityDays))
        return try LocalAuthority(certificate: certificate, key: key, issuers: chain)
    }

    public func issue(_ request: CertificateRequest, profile: CertificateProfile, options: IssuanceOptions = IssuanceOptions()) throws -> Certificate {
        var spec = try Policy.check(request: request, profile: profile, options: options, authority: self)
        let ledger = self.ledger
        if let ledger {
            // Claim the serial before signing; draw again while the ledger has seen it.
            var attempts = 1
            while try !ledger.reserve(serial: SerialNumber(bytes: spec.serial)) {
                guard attempts < 16 else {
                    throw LedgerError(.duplicateSerial, "the ledger refused \(attempts) fresh random serials in a row: is it shared by another CA?")
                }
                spec.serial = try Policy.newSerial()
                attempts += 1
            }
            try CrashPoint.afterReserve.reached()
        }
        let der = try CertificateHandle.issue(spec, issuer: certificate.derEncoded, key: try coreKeyHandle(for: key))
        try CrashPoint.afterSign.reached()
        let issued = try Certificate(derEncoded: der)
        try ledger?.record(issued)
        return issued
    }

    /// Issues a certificate for the leaf's chain: the new certificate followed by this
    /// authority's chain without the root (what a TLS server sends).
    public func issueWithChain(_ request: CertificateRequest, profile: CertificateProfile, options: IssuanceOptions = IssuanceOptions()) throws -> [Certificate] {
        let leaf = try issue(request, profile: profile, options: options)
        return [leaf] + chain.filter { !$0.isSelfIssued }
    }

    /// The root of this authority's chain.
    public var root: Certificate { chain.last ?? certificate }

    // MARK: Saving and loading

    /// File names inside a CA directory.
    public enum DirectoryLayout {
        /// The CA certificate.
        public static let certificate = "ca.pem"
        /// The CA key: encrypted PKCS#8 when saved with a passphrase.
        public static let key = "ca.key.pem"
        /// Instead of ``key``, for a key that lives elsewhere: its URI (`pkcs11:…`) on one line.
        public static let keyURI = "ca.key.uri"
        /// The CA certificate followed by its issuers up to the root.
        public static let chain = "chain.pem"
        /// The ledger of issued and revoked certificates (SQLite, with its `-wal`/`-shm` files).
        public static let ledger = "ledger.sqlite"
    }

    /// Writes `ca.pem`, `ca.key.pem` (mode 0600, encrypted with `passphrase` when given; or
    /// `ca.key.uri` for a key named by URI, such as a ``PKCS11Key``: the key stays where it is) and
    /// `chain.pem` into `directory`, creating it (mode 0700) if needed, and opens (or creates)
    /// the directory's `ledger.sqlite` as this authority's ledger.
    public func save(to directory: String, passphrase: String?) throws {
        guard let reference = key.reference else {
            throw GnuTLSError(.invalidArgument, "the CA key (\(key.publicKey.keyDescription), \(type(of: key))) has no saved form: only a key pair in memory or a key named by URI (PKCS11Key) can be saved to a CA directory")
        }
        let path = { (name: String) in (directory as NSString).appendingPathComponent(name) }
        // A ledger already in the directory must be this CA's (checked before anything is written).
        let ledgerPath = path(DirectoryLayout.ledger)
        let existingLedger = FileManager.default.fileExists(atPath: ledgerPath)
            ? try SQLiteLedger(path: ledgerPath, authority: certificate) : nil
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw GnuTLSError(.fileAccess, "cannot create CA directory \(directory): \(error.localizedDescription)")
        }
        switch reference.backing {
        case .inMemory(let keyPair):
            try FileIO.write(try keyPair.pemEncoded(passphrase: passphrase), to: path(DirectoryLayout.key), secret: true)
        case .uri(let uri):
            try FileIO.write(uri + "\n", to: path(DirectoryLayout.keyURI))
        }
        try FileIO.write(certificate.pemEncoded, to: path(DirectoryLayout.certificate))
        try FileIO.write(chain.map(\.pemEncoded).joined(), to: path(DirectoryLayout.chain))
        // Saving is how a CA directory is created, and the only place a ledger is created:
        // bound to this CA, it becomes this authority's ledger.
        ledgerBox.value = try existingLedger ?? SQLiteLedger.create(path: ledgerPath, authority: certificate)
    }

    /// Loads an authority saved by ``save(to:passphrase:)`` (or laid out the same way by hand),
    /// with the directory's ledger, which must exist and belong to this CA: loading never
    /// creates a ledger.
    ///
    /// Everything that can be refused is checked before the ledger is opened, so a refused
    /// load touches nothing. With `readOnlyLedger`, the ledger is opened read-only (issuing,
    /// revoking and CRLs then fail with `.readOnly`) and no file is created or changed.
    /// - Throws: `.passphraseRequired` / `.wrongPassphrase` for the key, `.fileAccess` for a
    ///   missing file, ``IssuanceError`` `.authorityMisconfigured` when the key does not match,
    ///   ``LedgerError`` `.ledgerMissing`, `.notALedger`, `.corrupted`, `.foreignLedger`.
    ///
    /// A directory holding `ca.key.uri` instead of `ca.key.pem` opens its key as a
    /// ``PKCS11Key`` with `pin` (`.wrongPIN`, `.tokenNotPresent`, … for the token).
    public static func load(from directory: String, passphrase: String?, pin: PKCS11PIN = .none, readOnlyLedger: Bool = false) throws -> LocalAuthority {
        let path = { (name: String) in (directory as NSString).appendingPathComponent(name) }
        let certificate = try Certificate(pemEncoded: FileIO.readText(path(DirectoryLayout.certificate)))
        let key: any SigningKey
        if FileManager.default.fileExists(atPath: path(DirectoryLayout.keyURI)) {
            let uri = try FileIO.readText(path(DirectoryLayout.keyURI)).trimmingCharacters(in: .whitespacesAndNewlines)
            key = try PKCS11Key(uri: uri, pin: pin)
        } else {
            key = try KeyPair(contentsOfFile: path(DirectoryLayout.key), passphrase: passphrase)
        }
        let chainPath = path(DirectoryLayout.chain)
        let issuers = FileManager.default.fileExists(atPath: chainPath) ? try Certificate.load(contentsOfFile: chainPath) : []
        let authority = try LocalAuthority(certificate: certificate, key: key, issuers: issuers)
        authority.ledgerBox.value = try SQLiteLedger(path: path(DirectoryLayout.ledger), authority: certificate, readOnly: readOnlyLedger)
        return authority
    }
}

/// The checks an authority makes before it signs, and how it fills a certificate.
enum Policy {
    static func checkKeyStrength(_ key: KeyDescription, what: String) throws {
        switch key.family {
        case .rsa:
            guard key.bits >= 2048 else {
                throw IssuanceError(.weakKey, "\(what) is RSA-\(key.bits): at least 2048 bits are required")
            }
        case .ecdsa:
            guard [256, 384, 521].contains(key.bits) else {
                throw IssuanceError(.unsupportedAlgorithm, "\(what) uses an unsupported curve (\(key)): use P-256, P-384 or P-521")
            }
        case .ed25519:
            break
        default:
            throw IssuanceError(.unsupportedAlgorithm, "\(what) is \(key.family): only RSA, ECDSA (P-256/384/521) and Ed25519 keys are certified")
        }
    }

    /// 9999-12-31 23:59:59 UTC: the latest time X.509 can carry (GeneralizedTime, RFC 5280
    /// section 4.1.2.5).
    static let latestDate = Date(timeIntervalSince1970: 253_402_300_799)
    /// The largest backdate accepted either way (a negative one starts validity in the
    /// future): one year.
    static let maximumBackdate: TimeInterval = 366 * 86_400

    /// The end of a validity of `days` days from `start`, range-checked: at least one day,
    /// and no later than ``latestDate`` (no arithmetic overflow, no silent clamp).
    static func validityEnd(days: Int, from start: Date) throws -> Date {
        guard days > 0 else {
            throw IssuanceError(.invalidRequest, "validity must be at least one day, not \(days)")
        }
        let maximumDays = Int((latestDate.timeIntervalSince1970 - start.timeIntervalSince1970) / 86_400)
        guard days <= maximumDays else {
            throw IssuanceError(.invalidRequest, "validity of \(days) days would end after 9999-12-31 23:59:59 UTC, the latest time a certificate can carry: at most \(maximumDays) days are possible")
        }
        return start.addingTimeInterval(TimeInterval(days) * 86_400)
    }

    /// `date` truncated to the whole second, as `Int(timeIntervalSince1970)` writes it.
    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    /// The most subject alternative names one certificate may hold (Let's Encrypt's limit).
    static let maximumAlternativeNames = 100

    static func checkSubject(_ subject: DistinguishedName) throws {
        if let problem = subject.issuanceProblem {
            throw IssuanceError(.invalidSubject, problem)
        }
    }

    /// Whether `commonName` is one of `names`' DNS names (ignoring case) or IP addresses.
    static func commonNameIsListed(_ commonName: String, in names: [GeneralName]) -> Bool {
        if let address = IPAddress(commonName) {
            return names.contains { $0.ipAddress == address }
        }
        return names.contains { $0.dnsName.map { $0.caseInsensitiveCompare(commonName) == .orderedSame } ?? false }
    }

    /// A random positive serial of 127 bits: well above the 64 bits CA/B Forum requires.
    static func newSerial() throws -> [UInt8] {
        var bytes = try CoreCrypto.random(16)
        bytes[0] &= 0x7F
        if bytes[0] == 0 { bytes[0] = 0x01 }
        return bytes
    }

    static func check(request: CertificateRequest, profile: CertificateProfile, options: IssuanceOptions, authority: LocalAuthority) throws -> CoreCertificateSpec {
        let issuer = authority.certificate
        guard request.isSignatureValid else {
            throw IssuanceError(.requestSignatureInvalid, "certificate request for '\(request.subject)' is not signed by the key it carries (no proof of possession)")
        }
        if request.signatureAlgorithm.isInsecure {
            throw IssuanceError(.unsupportedAlgorithm, "certificate request is signed with \(request.signatureAlgorithm): SHA-1 and MD5 signatures are not accepted")
        }
        try checkKeyStrength(request.publicKey.keyDescription, what: "the requested key")
        if request.requestsCertificateAuthority && !profile.isCertificateAuthority {
            throw IssuanceError(.certificateAuthorityNotAllowed, "certificate request for '\(request.subject)' asks to be a CA, but the profile is '\(profile.name)': issue it with the intermediate-CA profile if that is intended")
        }

        let subject = options.subject ?? request.subject
        let names = options.alternativeNames ?? request.subjectAlternativeNames
        try checkSubject(subject)
        if profile.requiresNetworkName {
            // CA/B Forum BR 7.1.4.3: a server certificate's CN is one of its SANs. A CN that
            // reads as a host name (dotted) or an IP address and is not a SAN is refused, never
            // added silently: a verifier with CN fallback would accept a name the SANs do not
            // grant. A CN that is neither (a label such as "server", free text) names no host
            // and is left alone, as internal PKIs use it.
            for commonName in subject.values(of: .commonName) where !commonNameIsListed(commonName, in: names) {
                if IPAddress(commonName) != nil || NameConstraintCheck.looksLikeHostName(commonName) {
                    throw IssuanceError(.commonNameNotInAlternativeNames, "the common name '\(Escaping.escaped(commonName))' of a '\(profile.name)' certificate is not one of its DNS or IP alternative names: add it to the request's SANs, or use a CN that is not a host name")
                }
            }
        }
        guard !subject.isEmpty else {
            throw IssuanceError(.missingIdentity, "the certificate would have an empty subject: give a subject in the request or the options")
        }
        guard names.count <= maximumAlternativeNames else {
            throw IssuanceError(.tooManyNames, "the request names \(names.count) subject alternative names: at most \(maximumAlternativeNames) are issued in one certificate")
        }
        if profile.requiresNetworkName && !names.contains(where: { $0.dnsName != nil || $0.ipAddress != nil }) {
            throw IssuanceError(.missingIdentity, "a '\(profile.name)' certificate needs at least one DNS name or IP address: clients match host names against alternative names only")
        }
        do {
            try AlternativeNames.validate(names)
        } catch let error as GnuTLSError {
            throw IssuanceError(.invalidRequest, error.message)
        }
        for name in names {
            if case .otherName = name {
                throw IssuanceError(.invalidRequest, "alternative name \(name) is not supported: use DNS, IP, email or URI names")
            }
        }
        try NameConstraintCheck.check(names: names, subject: subject, chain: authority.chain)

        // Path length: each CA at position k above the new certificate (k = 0 is the
        // issuer) allows `pathLength` further intermediates; a new CA adds k + 1.
        var pathLength = profile.pathLength
        if profile.isCertificateAuthority {
            var allowed: Int?
            for (k, ca) in authority.chain.enumerated() {
                guard let limit = ca.basicConstraints?.pathLengthConstraint else { continue }
                let remaining = limit - (k + 1)
                if remaining < 0 {
                    throw IssuanceError(.pathLengthExhausted, "'\(ca.subject)' allows \(limit) intermediate CA level\(limit == 1 ? "" : "s") below it: no further CA can be issued under '\(issuer.subject)'")
                }
                allowed = min(allowed ?? remaining, remaining)
            }
            if let allowed {
                if let requested = pathLength, requested > allowed {
                    throw IssuanceError(.pathLengthExhausted, "path length \(requested) was asked for, but the issuer chain allows at most \(allowed) below the new CA")
                }
                pathLength = pathLength ?? allowed
            }
        }

        // Validity: a small backdate, never before the issuer's start, never after its end.
        // Certificates hold whole seconds: compare the times that will be written, or a
        // certificate asking for its issuer's lifetime within the same second is refused
        // for a fraction of a second the certificate would never carry.
        let now = wholeSeconds(Date())
        guard options.backdate.isFinite, abs(options.backdate) <= maximumBackdate else {
            throw IssuanceError(.invalidRequest, "the backdate must be within \(Int(maximumBackdate)) seconds of now (negative: a start in the future), not \(options.backdate)")
        }
        let notBefore = max(now.addingTimeInterval(-options.backdate), issuer.notValidBefore)
        let notAfter: Date
        if let explicit = options.notValidAfter {
            guard explicit.timeIntervalSince1970.isFinite, explicit <= latestDate else {
                throw IssuanceError(.invalidRequest, "the end of validity \(explicit) is after 9999-12-31 23:59:59 UTC, the latest time a certificate can carry")
            }
            notAfter = wholeSeconds(explicit)
        } else {
            notAfter = try validityEnd(days: options.validityDays, from: now)
        }
        guard notAfter > notBefore else {
            throw IssuanceError(.invalidRequest, "the validity would end (\(notAfter)) before it starts (\(notBefore))")
        }
        guard notAfter <= issuer.notValidAfter else {
            throw IssuanceError(.validityExceedsIssuer, "the certificate would be valid until \(notAfter), after its issuer '\(issuer.subject)' expires on \(issuer.notValidAfter): ask for fewer days")
        }

        var spec = CoreCertificateSpec(
            serial: try newSerial(), notBefore: Int(notBefore.timeIntervalSince1970), notAfter: Int(notAfter.timeIntervalSince1970),
            subject: try subject.coreAttributes, subjectPublicKeyInfo: request.publicKey.derEncoded,
            isCA: profile.isCertificateAuthority, pathLength: profile.isCertificateAuthority ? pathLength : nil,
            keyUsage: profile.keyUsage(for: request.publicKey.keyDescription).rawValue,
            subjectKeyIdentifier: request.publicKey.keyIdentifier,
            authorityKeyIdentifier: issuer.subjectKeyIdentifier ?? issuer.publicKey.keyIdentifier)
        spec.alternativeNames = names.map(\.core)
        spec.extendedKeyUsage = profile.extendedKeyUsage.map(\.rawValue)
        spec.crlDistributionPoints = options.crlDistributionPoints
        spec.ocspURLs = options.ocspURLs
        spec.caIssuerURLs = options.caIssuerURLs
        if profile.extendedKeyUsage.contains(.ocspSigning) {
            spec.extraExtensions.append((OCSPEncoding.noCheckOID, false, [0x05, 0x00]))
        }
        if options.mustStaple {
            spec.extraExtensions.append((OCSPEncoding.tlsFeatureOID, false, OCSPEncoding.mustStapleValue))
        }
        if let constraints = profile.nameConstraints, !constraints.isEmpty {
            spec.permittedNames = constraints.permitted
            spec.excludedNames = constraints.excluded
        }
        return spec
    }
}

/// Name-constraint matching (RFC 5280 section 4.2.1.10), used by the authority before it
/// signs and by the verifier.
enum NameConstraintCheck {
    static func check(names: [GeneralName], subject: DistinguishedName, chain: [Certificate]) throws {
        for ca in chain {
            guard let constraints = ca.nameConstraints else { continue }
            for name in names {
                if let violation = violation(of: constraints, by: name) {
                    throw IssuanceError(.nameNotPermitted, "\(name) is \(violation) by the name constraints of '\(ca.subject)'")
                }
            }
            for email in subject.values(of: .emailAddress) {
                if let violation = violation(of: constraints, by: .email(email)) {
                    throw IssuanceError(.nameNotPermitted, "subject email \(Escaping.escaped(email)) is \(violation) by the name constraints of '\(ca.subject)'")
                }
            }
            // A CN that reads as an IP address or a host name is judged like one (verifiers,
            // openssl among them, apply DNS and IP constraints to such CNs). A dotted-quad
            // IPv4 CN is both: openssl and our verifier hold it to DNS constraints too (when
            // the certificate has no DNS SANs), so it must pass both.
            for commonName in subject.values(of: .commonName) {
                var readings: [GeneralName] = []
                if let address = IPAddress(commonName) { readings.append(.ipAddress(address)) }
                if looksLikeHostName(commonName) || (AlternativeNames.isValidDNSName(commonName) && commonName.contains(".")) {
                    readings.append(.dnsName(commonName))
                }
                for name in readings {
                    if let violation = violation(of: constraints, by: name) {
                        throw IssuanceError(.nameNotPermitted, "subject common name \(commonName) is \(violation) by the name constraints of '\(ca.subject)'")
                    }
                }
            }
            if let violation = directoryNameViolation(of: constraints, by: subject) {
                throw IssuanceError(.nameNotPermitted, "subject '\(subject)' is \(violation) by the directory-name constraints of '\(ca.subject)'")
            }
        }
    }

    /// `nil` when `name` satisfies `constraints`, otherwise "excluded" or "not permitted".
    static func violation(of constraints: NameConstraints, by name: GeneralName) -> String? {
        switch name {
        case .dnsName(let dns):
            if constraints.excludedDNSDomains.contains(where: { dnsMatches(dns, $0) || wildcardMayMatch(dns, $0) }) { return "excluded" }
            if !constraints.permittedDNSDomains.isEmpty && !constraints.permittedDNSDomains.contains(where: { dnsMatches(dns, $0) }) { return "not permitted" }
        case .ipAddress(let ip):
            let sameFamilyPermitted = constraints.permittedIPRanges.filter { $0.address.bytes.count == ip.bytes.count }
            if constraints.excludedIPRanges.contains(where: { $0.contains(ip) }) { return "excluded" }
            if !constraints.permittedIPRanges.isEmpty && !sameFamilyPermitted.contains(where: { $0.contains(ip) }) { return "not permitted" }
        case .email(let email):
            if constraints.excludedEmailAddresses.contains(where: { emailMatches(email, $0) }) { return "excluded" }
            if !constraints.permittedEmailAddresses.isEmpty && !constraints.permittedEmailAddresses.contains(where: { emailMatches(email, $0) }) { return "not permitted" }
        case .otherName, .registeredID:
            let form = { if case .registeredID = name { return 8 } else { return 0 } }()
            if constraints.excludedUnsupportedForms.contains(form) || constraints.permittedUnsupportedForms.contains(form) {
                return "not checkable (constraints on this name form are not supported) and so not permitted"
            }
        case .uri(let uri):
            guard let host = URL(string: uri)?.host, !host.isEmpty else {
                return constraints.permittedURIDomains.isEmpty && constraints.excludedURIDomains.isEmpty ? nil : "not permitted (no host)"
            }
            if constraints.excludedURIDomains.contains(where: { dnsMatches(host, $0) }) { return "excluded" }
            if !constraints.permittedURIDomains.isEmpty && !constraints.permittedURIDomains.contains(where: { dnsMatches(host, $0) }) { return "not permitted" }
        case .invalidIPAddress:
            if !constraints.permittedIPRanges.isEmpty || !constraints.excludedIPRanges.isEmpty {
                return "not checkable (a malformed IP address) and so not permitted"
            }
        default:
            break
        }
        return nil
    }

    /// Whether `text` has the shape of a DNS host name (labels of letters, digits and
    /// hyphens, with at least one dot; a leading `*.` allowed), as openssl decides which CNs
    /// to hold to DNS name constraints.
    static func looksLikeHostName(_ text: String) -> Bool {
        var labels = text.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" { labels.removeFirst() }
        guard labels.count >= 2 else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
        }
    }

    /// `nil` when `subject` is inside the permitted directory-name subtrees (if any) and
    /// outside the excluded ones; a subtree is a prefix of RDNs (RFC 5280 section 4.2.1.10).
    static func directoryNameViolation(of constraints: NameConstraints, by subject: DistinguishedName) -> String? {
        func within(_ base: DistinguishedName) -> Bool {
            base.rdns.count <= subject.rdns.count && Array(subject.rdns.prefix(base.rdns.count)) == base.rdns
        }
        if constraints.excludedDirectoryNames.contains(where: within) { return "excluded" }
        if !constraints.permittedDirectoryNames.isEmpty && !constraints.permittedDirectoryNames.contains(where: within) { return "not permitted" }
        return nil
    }

    /// `example.com` covers itself and subdomains; `.example.com` only subdomains.
    static func dnsMatches(_ name: String, _ constraint: String) -> Bool {
        let name = name.lowercased()
        var constraint = constraint.lowercased()
        if constraint.isEmpty { return true }
        if constraint.hasPrefix(".") {
            return name.hasSuffix(constraint)
        }
        if name == constraint { return true }
        constraint = "." + constraint
        return name.hasSuffix(constraint)
    }

    /// Whether a wildcard name (`*.example.com`) could stand for a name inside the subtree
    /// `constraint` (`bar.example.com`): such a name must count as excluded (CVE-2025-61727).
    static func wildcardMayMatch(_ name: String, _ constraint: String) -> Bool {
        guard name.hasPrefix("*.") else { return false }
        let base = name.dropFirst(2).lowercased()
        let constraint = constraint.lowercased().hasPrefix(".") ? String(constraint.lowercased().dropFirst()) : constraint.lowercased()
        guard constraint.hasSuffix("." + base) else { return false }
        let extra = constraint.dropLast(base.count + 1)
        return !extra.isEmpty && !extra.contains(".")
    }

    /// A mailbox matches exactly; `example.com` matches mailboxes at that host; `.example.com`
    /// mailboxes at any subdomain.
    static func emailMatches(_ email: String, _ constraint: String) -> Bool {
        if constraint.contains("@") { return email.caseInsensitiveCompare(constraint) == .orderedSame }
        guard let at = email.lastIndex(of: "@") else { return false }
        let host = email[email.index(after: at)...].lowercased()
        let constraint = constraint.lowercased()
        if constraint.hasPrefix(".") { return host.hasSuffix(constraint) }
        return host == constraint
    }
}
