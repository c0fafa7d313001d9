import Foundation
import GnuTLS

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
    /// The authority's own certificate.
    public let certificate: Certificate
    /// The authority's certificate and its issuers up to the root, the authority first.
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
    ///   - subject: the root's distinguished name (not empty).
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

    /// Checks `request` against `profile`, `options` and this authority's policy, records the certificate in the ledger (when there is one) and signs it.
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
    /// `ca.key.uri` for a key named by URI, such as a `PKCS11Key`: the key stays where it is) and
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
        switch reference.storedForm {
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
    /// `PKCS11Key` with `pin` (`.wrongPIN`, `.tokenNotPresent`, … for the token).
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
