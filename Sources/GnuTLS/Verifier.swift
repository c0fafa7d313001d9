import Foundation
import GnuTLSCore

/// Verifies certificate chains against a ``TrustStore`` under a ``VerificationPolicy``.
///
/// Path building and every RFC 5280 / CA-Browser-Forum check run in Swift, leaf to anchor,
/// over any order of untrusted intermediates (extras, duplicates and cycles allowed); a
/// path the Swift checks accept is then verified by GnuTLS too
/// (`gnutls_x509_trust_list_verify_crt2`), so the result is never weaker than GnuTLS.
///
/// Build a verifier once and reuse it: the GnuTLS trust list is built in `init`.
///
/// ```swift
/// let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
/// let chain = try verifier.verify(leaf, intermediates: [issuing], policy: .server(host: "api.example.com"))
/// ```
public final class Verifier: Sendable {
    /// The trust this verifier was built from.
    public let trustStore: TrustStore
    /// The policy used when a call gives none.
    public let defaultPolicy: VerificationPolicy
    let trustList: TrustListHandle
    let anchors: [Certificate]
    /// One checker per ``RevocationCheckingMode``, so good OCSP answers fetched online are
    /// cached across calls until their nextUpdate (OCSPRevocation.swift).
    let revocationCheckers: [RevocationCheckingMode: RevocationChecker]

    /// Builds the GnuTLS trust list for `trustStore`.
    public init(trustStore: TrustStore, policy: VerificationPolicy = VerificationPolicy()) throws {
        self.trustStore = trustStore
        self.defaultPolicy = policy
        (trustList, anchors) = try trustStore.prepare()
        revocationCheckers = Dictionary(uniqueKeysWithValues: RevocationCheckingMode.allModes.map { ($0, RevocationChecker(mode: $0)) })
    }

    /// Verifies `leaf` with the help of `intermediates` (any order).
    ///
    /// - Returns: the validated chain, leaf first.
    /// - Throws: ``VerificationError`` naming every problem and its chain position.
    @discardableResult
    public func verify(_ leaf: Certificate, intermediates: [Certificate] = [], policy: VerificationPolicy? = nil) throws -> VerifiedChain {
        try verify(leaf, intermediates: intermediates, policy: policy, consultGnuTLS: true)
    }

    /// As ``verify(_:intermediates:policy:)``; `consultGnuTLS: false` skips GnuTLS's second
    /// opinion, for callers that already had GnuTLS verify the same chain (a TLS handshake).
    package func verify(_ leaf: Certificate, intermediates: [Certificate], policy: VerificationPolicy?, consultGnuTLS: Bool) throws -> VerifiedChain {
        let policy = policy ?? defaultPolicy
        var run = PathValidation(anchors: anchors, intermediates: intermediates, crls: trustStore.crls, policy: policy)
        let path: [Certificate]
        switch run.findPath(from: leaf) {
        case .success(let found): path = found
        case .failure(let error): throw error
        }
        guard consultGnuTLS else { return VerifiedChain(certificates: path) }
        // Second opinion: GnuTLS on the same ordered path (anchor excluded), time checks
        // off because the time was checked against the caller's clock.
        let chain = path.count > 1 ? Array(path.dropLast()) : path
        let purpose = policy.purposes.first(where: { $0 != .any })?.rawValue
        // SHA-1 signatures passed the Swift checks only where the profile allows them
        // (low); GnuTLS 3.7 refuses them at every profile unless told otherwise.
        let verdict = try trustList.verify(chain: chain.map(\.derEncoded), purposeOID: purpose, profile: policy.securityProfile.core,
                                           allowSHA1: policy.securityProfile.allowsSHA1)
        // GnuTLS 3.7.9 counts self-issued intermediates against path-length limits and
        // cannot parse name constraints on forms it does not know (otherName); both are
        // checked above per RFC 5280, so a constraints-only objection is not a veto.
        guard verdict.status == 0 || TrustListHandle.isOnlyConstraintFailure(verdict.status) else {
            throw VerificationError(problems: [VerificationError.Problem(.rejectedByGnuTLS, "GnuTLS rejected the chain: \(verdict.text)")])
        }
        return VerifiedChain(certificates: path)
    }
}

/// One verification: path building with a bounded budget, then the checks of each path.
struct PathValidation {
    let anchors: [Certificate]
    let candidates: [Certificate]
    let crls: [CertificateRevocationList]
    let policy: VerificationPolicy
    let now: Date
    /// Limits against pathological inputs (x509-limbo's `pathological::` cases).
    var budget = 2_000
    let maxDepth: Int
    var signatureCache: [SignatureKey: CoreSignature.Outcome] = [:]
    var bestFailure: VerificationError?

    struct SignatureKey: Hashable {
        var child: [UInt8]
        var issuerKey: [UInt8]
    }

    init(anchors: [Certificate], intermediates: [Certificate], crls: [CertificateRevocationList], policy: VerificationPolicy) {
        self.anchors = anchors
        var unique: [Certificate] = []
        for certificate in intermediates where !unique.contains(certificate) && !anchors.contains(certificate) {
            unique.append(certificate)
        }
        self.candidates = unique
        self.crls = crls
        self.policy = policy
        self.now = policy.time ?? Date()
        self.maxDepth = min(Self.gnuTLSMaximumDepth, (policy.maximumIntermediates.map { $0 + 2 } ?? Self.gnuTLSMaximumDepth) + 4)
    }

    mutating func findPath(from leaf: Certificate) -> Result<[Certificate], VerificationError> {
        if anchors.contains(leaf) {
            // The leaf itself is trusted (a pinned, often self-signed, certificate): no
            // issuer to check, but its own validity, key, purpose and names still count.
            let problems = validate([leaf])
            if problems.isEmpty { return .success([leaf]) }
            record(VerificationError(problems: problems), depth: 1_000)
        }
        if let path = extend([leaf]) { return .success(path) }
        return .failure(bestFailure ?? VerificationError(problems: [
            VerificationError.Problem(.untrustedIssuer, "no chain from '\(leaf.subject)' to a trusted certificate was found", position: 0, subject: leaf.subject),
        ]))
    }

    /// Depth-first search over issuers, anchors first; returns the first path that passes.
    private mutating func extend(_ path: [Certificate]) -> [Certificate]? {
        budget -= 1
        guard budget > 0 else { return nil }
        let current = path[path.count - 1]
        var issuers: [(Certificate, Bool)] = []
        for anchor in anchors where Self.mayIssue(anchor, current) { issuers.append((anchor, true)) }
        if path.count < maxDepth {
            for candidate in candidates where Self.mayIssue(candidate, current) && !path.contains(where: { $0 == candidate || ($0.subject == candidate.subject && $0.publicKey == candidate.publicKey) }) {
                issuers.append((candidate, false))
            }
        }
        if issuers.isEmpty {
            record(VerificationError(problems: [missingIssuerProblem(path)]), depth: path.count)
            return nil
        }
        for (issuer, isAnchor) in issuers {
            guard budget > 0 else { return nil }
            // Prune on a bad signature: this link cannot be part of any valid path.
            if signatureOutcome(of: current, by: issuer) != .valid {
                record(VerificationError(problems: [signatureProblem(current, issuer, position: path.count - 1)]), depth: path.count)
                continue
            }
            let next = path + [issuer]
            if isAnchor {
                let problems = validate(next)
                if problems.isEmpty { return next }
                record(VerificationError(problems: problems), depth: next.count + 100)
            } else if let found = extend(next) {
                return found
            }
        }
        return nil
    }

    /// Why `path` cannot be extended: its last certificate's issuer is missing, or it is
    /// there but the path already holds as many certificates as may be verified (GnuTLS
    /// verifies at most 16, `DEFAULT_MAX_VERIFY_DEPTH`; a policy may allow fewer).
    private func missingIssuerProblem(_ path: [Certificate]) -> VerificationError.Problem {
        let current = path[path.count - 1]
        let position = path.count - 1
        let issuerGiven = candidates.contains { candidate in
            Self.mayIssue(candidate, current) && !path.contains { $0 == candidate }
        }
        guard path.count >= maxDepth, issuerGiven else {
            return VerificationError.Problem(
                .untrustedIssuer, "issuer '\(current.issuer)' of '\(current.subject)' is not trusted and no intermediate for it was given",
                position: position, subject: current.subject)
        }
        let limit = maxDepth == Self.gnuTLSMaximumDepth
            ? "GnuTLS's limit of \(Self.gnuTLSMaximumDepth) certificates"
            : "the \(maxDepth) certificates this policy's maximum number of intermediates allows"
        return VerificationError.Problem(
            .pathLengthExceeded, "chain longer than \(limit): '\(current.subject)' at position \(position) still needs its issuer '\(current.issuer)' before a trust anchor is reached",
            position: position, subject: current.subject)
    }

    /// The longest chain GnuTLS verifies (`DEFAULT_MAX_VERIFY_DEPTH` in GnuTLS 3.7).
    static let gnuTLSMaximumDepth = 16

    /// Keeps the failure of the candidate path that got furthest (complete paths rank above
    /// incomplete ones), so the error describes the chain the caller most likely meant.
    private mutating func record(_ failure: VerificationError, depth: Int) {
        if bestFailure == nil || depth > bestDepth {
            bestFailure = failure
            bestDepth = depth
        }
    }
    private var bestDepth = -1

    /// Whether `issuer`'s subject names `child`'s issuer (and their key identifiers agree).
    static func mayIssue(_ issuer: Certificate, _ child: Certificate) -> Bool {
        guard issuer.subject.matches(child.issuer) else { return false }
        if let aki = child.authorityKeyIdentifier, let ski = issuer.subjectKeyIdentifier, aki != ski { return false }
        return true
    }

    private mutating func signatureOutcome(of child: Certificate, by issuer: Certificate) -> CoreSignature.Outcome {
        let key = SignatureKey(child: child.sha256Fingerprint, issuerKey: issuer.publicKey.derEncoded)
        if let cached = signatureCache[key] { return cached }
        let outcome: CoreSignature.Outcome
        if let parts = SignedParts(child.derEncoded) {
            outcome = CoreSignature.verify(spki: issuer.publicKey.derEncoded, algorithmOID: child.signatureAlgorithm.oid, data: parts.tbs, signature: parts.signature)
        } else {
            outcome = .invalid
        }
        signatureCache[key] = outcome
        return outcome
    }

    private func signatureProblem(_ child: Certificate, _ issuer: Certificate, position: Int) -> VerificationError.Problem {
        VerificationError.Problem(.signatureInvalid, "signature of '\(child.subject)' does not verify with the key of '\(issuer.subject)'", position: position, subject: child.subject)
    }

    // MARK: Checks of one complete path (leaf at 0, anchor last)

    func validate(_ path: [Certificate]) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        let anchorIndex = path.count - 1
        for (index, certificate) in path.enumerated() {
            problems += checkProfile(certificate, position: index, isLeaf: index == 0, isAnchor: index == anchorIndex)
            problems += checkTime(certificate, position: index)
            problems += checkKey(certificate, position: index)
            if index < anchorIndex {
                problems += checkSignatureAlgorithm(certificate, position: index)
            }
        }
        for index in 1..<path.count {
            problems += checkIssuer(path, index: index)
        }
        problems += checkLeaf(path[0])
        problems += checkDepth(path)
        if policy.revocation != .disabledInsecure {
            for index in 0..<anchorIndex {
                problems += checkRevocation(path[index], issuer: path[index + 1], position: index)
            }
        }
        return problems
    }

    /// Extensions this validator processes; a critical extension outside this set fails.
    static let understoodCritical: Set<String> = [
        ExtensionOID.keyUsage, ExtensionOID.basicConstraints, ExtensionOID.subjectAlternativeName,
        ExtensionOID.nameConstraints, ExtensionOID.extendedKeyUsage,
        "2.5.29.32",  // certificate policies (any policy is acceptable: no policy set is requested)
    ]

    /// Extensions RFC 5280 requires to be non-critical.
    static let mustBeNonCritical: Set<String> = [
        ExtensionOID.authorityKeyIdentifier, ExtensionOID.subjectKeyIdentifier,
        ExtensionOID.authorityInformationAccess,
    ]

    func checkProfile(_ cert: Certificate, position: Int, isLeaf: Bool, isAnchor: Bool) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        let webPKI = policy.profile.isWebPKI
        func add(_ reason: VerificationError.Reason, _ message: String) {
            problems.append(VerificationError.Problem(reason, message, position: position, subject: cert.subject))
        }
        if cert.version != 3 {
            add(.malformedCertificate, "'\(cert.subject)' is an X.509 v\(cert.version) certificate; only v3 is accepted")
        }
        if !isAnchor {
            let serial = cert.serialNumber.bytes
            if serial == [0] {
                add(.malformedCertificate, "'\(cert.subject)' has serial number zero (RFC 5280 4.1.2.2)")
            } else if serial.count > 20 || (serial.count == 20 && serial[0] & 0x80 != 0) {
                add(.malformedCertificate, "'\(cert.subject)' has a serial number longer than 20 octets (RFC 5280 4.1.2.2)")
            }
        }
        if let policyConstraints = cert.extension(oid: "2.5.29.36"), !policyConstraints.critical {
            add(.malformedCertificate, "'\(cert.subject)' must mark policy constraints critical (RFC 5280 4.2.1.11)")
        }
        if cert.issuer.isEmpty {
            add(.malformedCertificate, "'\(cert.subject)' has an empty issuer name")
        }
        for ext in cert.extensions {
            if ext.critical && !Self.understoodCritical.contains(ext.oid) {
                add(.unhandledCriticalExtension, "'\(cert.subject)' has critical extension \(ext.oid), which is not understood")
            }
            if ext.critical && Self.mustBeNonCritical.contains(ext.oid) {
                add(.malformedCertificate, "'\(cert.subject)' marks extension \(ext.oid) critical, which RFC 5280 forbids")
            }
        }
        if let usage = cert.keyUsage, usage.contains(.keyCertSign), !cert.isCertificateAuthority {
            add(.malformedCertificate, "'\(cert.subject)' asserts keyCertSign without being a CA (RFC 5280 4.2.1.3)")
        }
        if cert.extension(oid: ExtensionOID.subjectAlternativeName).map({ !$0.critical }) == true && cert.subject.isEmpty {
            add(.malformedCertificate, "'\(cert.subject)' has an empty subject, so its alternative names must be critical")
        }
        if let ski = cert.extension(oid: ExtensionOID.subjectKeyIdentifier), ski.critical == false, cert.subjectKeyIdentifier?.isEmpty == true {
            add(.malformedCertificate, "'\(cert.subject)' has an empty subject key identifier")
        }
        if !isLeaf {
            if cert.subject.isEmpty {
                add(.malformedCertificate, "a CA certificate has an empty subject name")
            }
            if cert.subjectKeyIdentifier == nil {
                // RFC 5280 4.2.1.2: MUST appear in all conforming CA certificates.
                add(.malformedCertificate, "CA certificate '\(cert.subject)' has no subject key identifier")
            }
        } else {
            if cert.nameConstraints != nil || cert.extension(oid: ExtensionOID.nameConstraints) != nil {
                add(.malformedCertificate, "end-entity certificate '\(cert.subject)' carries name constraints, which only CA certificates may (RFC 5280 4.2.1.10)")
            }
            if webPKI && (cert.isCertificateAuthority || cert.keyUsage?.contains(.keyCertSign) == true) && !isAnchor {
                // CA/Browser Forum 7.1.2.7.8 and 7.1.2.7.11: a subscriber certificate is not a
                // CA. RFC 5280 does not forbid a CA certificate in the leaf position.
                add(.malformedCertificate, "'\(cert.subject)' is a CA certificate presented as an end-entity certificate")
            }
            if webPKI, let eku = cert.extension(oid: ExtensionOID.extendedKeyUsage) {
                // CA/B Forum 7.1.2.7.6 and 7.1.2.7.10: not critical, never anyExtendedKeyUsage.
                if eku.critical { add(.malformedCertificate, "'\(cert.subject)' marks extended key usage critical (CA/B Forum 7.1.2.7.6)") }
                if cert.extendedKeyUsage?.contains(.any) == true && policy.purposes.contains(.serverAuth) {
                    add(.purposeMismatch, "'\(cert.subject)' asserts anyExtendedKeyUsage, which a TLS server certificate must not (CA/B Forum 7.1.2.7.10)")
                }
            }
            if webPKI, let san = cert.extension(oid: ExtensionOID.subjectAlternativeName), san.critical, !cert.subject.isEmpty {
                add(.malformedCertificate, "'\(cert.subject)' marks its alternative names critical although its subject is not empty (RFC 5280 4.2.1.6, CA/B Forum 7.1.2.7.12)")
            }
        }
        if cert.authorityKeyIdentifier == nil && !cert.isSelfIssued {
            // RFC 5280 4.2.1.1: MUST be included in all certificates except self-signed ones,
            // a trusted cross-signed (not self-issued) certificate included.
            add(.malformedCertificate, "'\(cert.subject)' has no authority key identifier")
        }
        if let aki = cert.extension(oid: ExtensionOID.authorityKeyIdentifier) {
            let fields = (try? DERReader.children(of: aki.value)) ?? []
            // A trust anchor is trusted for its name and key (RFC 5280 6.1.1 d); its AKI is
            // judged only under the Web PKI's root rules.
            if !fields.contains(where: { $0.tag == 0x80 }) && (!isAnchor || webPKI) {
                add(.malformedCertificate, "'\(cert.subject)' has an authority key identifier without a keyIdentifier")
            }
            if webPKI && isAnchor && cert.isSelfIssued {
                // CA/B Forum 7.1.2.1.3: a root's AKI holds only keyIdentifier, equal to its SKI.
                if fields.contains(where: { $0.tag != 0x80 }) {
                    add(.malformedCertificate, "root '\(cert.subject)' has authorityCertIssuer or authorityCertSerialNumber in its authority key identifier")
                }
                if let ski = cert.subjectKeyIdentifier, let keyID = cert.authorityKeyIdentifier, ski != keyID {
                    add(.malformedCertificate, "root '\(cert.subject)' has an authority key identifier that differs from its subject key identifier")
                }
            }
        }
        if let constraints = cert.extension(oid: ExtensionOID.nameConstraints) {
            if !constraints.critical && !webPKI {
                // RFC 5280 4.2.1.10: conforming CAs MUST mark name constraints critical. The
                // Web PKI accepts non-critical ones (x509-limbo's conflicting pair).
                add(.malformedCertificate, "'\(cert.subject)' does not mark its name constraints critical (RFC 5280 4.2.1.10)")
            }
            if let parsed = cert.nameConstraints, parsed.isEmpty {
                add(.malformedCertificate, "'\(cert.subject)' has name constraints with neither permitted nor excluded subtrees (RFC 5280 4.2.1.10)")
            }
            for domain in (cert.nameConstraints?.permittedDNSDomains ?? []) + (cert.nameConstraints?.excludedDNSDomains ?? [])
            where !domain.isEmpty && !AlternativeNames.isValidDNSName(domain) {
                add(.malformedCertificate, "'\(cert.subject)' has a malformed DNS name constraint '\(domain)'")
            }
        }
        for name in cert.subjectAlternativeNames {
            switch name {
            case .dnsName(let dns) where !AlternativeNames.isValidDNSName(dns):
                add(.malformedCertificate, "'\(cert.subject)' has a malformed DNS alternative name '\(dns)' (RFC 5280 4.2.1.6)")
            case .email(let email) where email.split(separator: "@", omittingEmptySubsequences: false).count != 2:
                add(.malformedCertificate, "'\(cert.subject)' has a malformed email alternative name '\(email)'")
            case .invalidIPAddress:
                add(.malformedCertificate, "'\(cert.subject)' has an IP alternative name that is neither 4 nor 16 bytes")
            default:
                break
            }
        }
        return problems
    }

    func checkTime(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        let formatter = ISO8601DateFormatter()
        if now > cert.notValidAfter {
            var problem = VerificationError.Problem(.expired, "'\(cert.subject)' expired on \(formatter.string(from: cert.notValidAfter)) (verification time \(formatter.string(from: now)))", position: position, subject: cert.subject)
            problem.notValidBefore = cert.notValidBefore
            problem.notValidAfter = cert.notValidAfter
            return [problem]
        }
        if now < cert.notValidBefore {
            var problem = VerificationError.Problem(.notYetValid, "'\(cert.subject)' is not valid before \(formatter.string(from: cert.notValidBefore)) (verification time \(formatter.string(from: now)))", position: position, subject: cert.subject)
            problem.notValidBefore = cert.notValidBefore
            problem.notValidAfter = cert.notValidAfter
            return [problem]
        }
        return []
    }

    func checkKey(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        let key = cert.publicKey.keyDescription
        let profile = policy.securityProfile
        var why: String?
        switch key.family {
        case .rsa:
            if key.bits < profile.minimumRSABits { why = "RSA-\(key.bits) is below the \(profile) profile's \(profile.minimumRSABits) bits" }
            else if policy.profile.isWebPKI && key.bits < 2048 { why = "RSA-\(key.bits) is below the 2048 bits the CA/Browser Forum requires (6.1.5)" }
            else if key.bits % 8 != 0 { why = "an RSA modulus of \(key.bits) bits is not a whole number of bytes" }
        case .ecdsa:
            if key.curve == nil || key.bits < profile.minimumECBits { why = "curve \(key) is not allowed" }
        case .ed25519:
            break
        default:
            why = "\(key.family) keys are not allowed"
        }
        guard let why else { return [] }
        return [VerificationError.Problem(.insecureAlgorithm, "key of '\(cert.subject)': \(why)", position: position, subject: cert.subject)]
    }

    func checkSignatureAlgorithm(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        let algorithm = cert.signatureAlgorithm
        if algorithm.isInsecure && !(policy.securityProfile.allowsSHA1 && algorithm.name.contains("SHA1")) {
            problems.append(VerificationError.Problem(.insecureAlgorithm, "'\(cert.subject)' is signed with \(algorithm), which the \(policy.securityProfile) profile refuses", position: position, subject: cert.subject))
        }
        if let allowed = policy.allowedSignatureAlgorithms, !allowed.contains(algorithm.name), !allowed.contains(algorithm.oid) {
            problems.append(VerificationError.Problem(.insecureAlgorithm, "'\(cert.subject)' is signed with \(algorithm), which is not among the allowed algorithms", position: position, subject: cert.subject))
        }
        if let parts = SignedParts(cert.derEncoded), parts.innerAlgorithm != parts.outerAlgorithm {
            problems.append(VerificationError.Problem(.malformedCertificate, "'\(cert.subject)' names different signature algorithms inside and outside the signed part (RFC 5280 4.1.1.2)", position: position, subject: cert.subject))
        }
        return problems
    }

    func checkIssuer(_ path: [Certificate], index: Int) -> [VerificationError.Problem] {
        let ca = path[index]
        var problems: [VerificationError.Problem] = []
        func add(_ reason: VerificationError.Reason, _ message: String) {
            problems.append(VerificationError.Problem(reason, message, position: index, subject: ca.subject))
        }
        if let parts = SignedParts(ca.derEncoded), parts.innerAlgorithm != parts.outerAlgorithm, index == path.count - 1 {
            add(.malformedCertificate, "trust anchor '\(ca.subject)' names different signature algorithms inside and outside the signed part")
        }
        guard let constraints = ca.basicConstraints, constraints.isCertificateAuthority else {
            add(.notCA, "'\(ca.subject)' issued a certificate but is not a CA (basic constraints \(ca.basicConstraints.map { "\($0)" } ?? "absent"))")
            return problems
        }
        if ca.extension(oid: ExtensionOID.basicConstraints)?.critical != true {
            add(.notCA, "CA certificate '\(ca.subject)' must mark basic constraints critical (RFC 5280 4.2.1.9)")
        }
        if let usage = ca.keyUsage, !usage.contains(.keyCertSign) {
            add(.keyUsageMissing, "CA '\(ca.subject)' has a key usage extension without keyCertSign")
        }
        if let limit = constraints.pathLengthConstraint {
            // Non-self-issued intermediates between this CA and the leaf.
            let below = path[1..<index].filter { !$0.isSelfIssued }.count
            if below > limit {
                add(.pathLengthExceeded, "'\(ca.subject)' allows \(limit) intermediate CA\(limit == 1 ? "" : "s") below it, the chain has \(below)")
            }
        }
        if policy.profile.isWebPKI, index == path.count - 1, ca.isSelfIssued, ca.extension(oid: ExtensionOID.extendedKeyUsage) != nil {
            // CA/B Forum 7.1.2.1.2: a root certificate MUST NOT carry extended key usage.
            add(.malformedCertificate, "root '\(ca.subject)' carries an extended key usage extension, which the CA/Browser Forum forbids on roots (7.1.2.1.2)")
        }
        if let purposes = ca.extendedKeyUsage, !purposes.contains(.any) {
            for wanted in policy.purposes where wanted != .any && !purposes.contains(wanted) {
                add(.purposeMismatch, "CA '\(ca.subject)' restricts extended key usage to \(purposes.map(\.description).joined(separator: ", ")), which excludes \(wanted)")
            }
        }
        if let constraints = ca.nameConstraints {
            problems += checkNameConstraints(constraints, of: ca, index: index, below: Array(path[0..<index]))
        }
        return problems
    }

    func checkNameConstraints(_ constraints: NameConstraints, of ca: Certificate, index: Int, below: [Certificate]) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        // Bound the work (x509-limbo nc-dos cases): names × subtrees.
        let subtreeCount = constraints.permitted.count + constraints.excluded.count
        for (position, cert) in below.enumerated() {
            // RFC 5280 6.1.3 (b): constraints do not apply to self-issued intermediates.
            if position > 0 && cert.isSelfIssued { continue }
            var names = cert.subjectAlternativeNames
            names += cert.subject.values(of: .emailAddress).map { GeneralName.email($0) }
            if names.count * max(1, subtreeCount) > 4_096 {
                problems.append(VerificationError.Problem(.nameConstraintViolated, "'\(cert.subject)' has too many names (\(names.count)) to check against \(subtreeCount) name constraints", position: position, subject: cert.subject))
                continue
            }
            for name in names {
                if let violation = NameConstraintCheck.violation(of: constraints, by: name) {
                    problems.append(VerificationError.Problem(.nameConstraintViolated, "\(name) of '\(cert.subject)' is \(violation) by the name constraints of '\(ca.subject)'", position: position, subject: cert.subject))
                }
            }
            if !cert.subject.isEmpty, let violation = Self.directoryViolation(constraints, cert.subject) {
                problems.append(VerificationError.Problem(.nameConstraintViolated, "subject '\(cert.subject)' is \(violation) by the directory-name constraints of '\(ca.subject)'", position: position, subject: cert.subject))
            }
            // RFC 9525: the CN is never matched, so it is never constrained when the leaf has
            // alternative names. A leaf without any is matched on nothing, but a CN that
            // looks like a host name or an IP address must still respect the constraints
            // (as Go and rustls do), so a constrained CA cannot name outside its subtree.
            if position == 0, cert.subjectAlternativeNames.isEmpty {
                for cn in cert.subject.values(of: .commonName) {
                    let name: GeneralName
                    if let ip = IPAddress(cn) {
                        name = .ipAddress(ip)
                    } else if AlternativeNames.isValidDNSName(cn) && cn.contains(".") {
                        name = .dnsName(cn)
                    } else {
                        continue
                    }
                    if let violation = NameConstraintCheck.violation(of: constraints, by: name) {
                        problems.append(VerificationError.Problem(.nameConstraintViolated, "common name \(cn) of '\(cert.subject)' is \(violation) by the name constraints of '\(ca.subject)'", position: position, subject: cert.subject))
                    }
                }
            }
        }
        return problems
    }

    static func directoryViolation(_ constraints: NameConstraints, _ name: DistinguishedName) -> String? {
        func within(_ subtree: DistinguishedName) -> Bool {
            guard subtree.rdns.count <= name.rdns.count else { return false }
            return zip(subtree.rdns, name.rdns).allSatisfy { DistinguishedName([$0]).matches(DistinguishedName([$1])) }
        }
        if constraints.excludedDirectoryNames.contains(where: within) { return "excluded" }
        if !constraints.permittedDirectoryNames.isEmpty && !constraints.permittedDirectoryNames.contains(where: within) { return "not permitted" }
        return nil
    }

    func checkLeaf(_ leaf: Certificate) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        func add(_ problem: VerificationError.Problem) { problems.append(problem) }
        let webPKI = policy.profile.isWebPKI
        if let purposes = leaf.extendedKeyUsage {
            // RFC 5280 4.2.1.12: anyExtendedKeyUsage allows every purpose; the Web PKI
            // refuses it on a server certificate (checkProfile).
            for wanted in policy.purposes where wanted != .any && !purposes.contains(wanted) && (webPKI || !purposes.contains(.any)) {
                add(VerificationError.Problem(.purposeMismatch, "'\(leaf.subject)' allows \(purposes.isEmpty ? "no purpose" : purposes.map(\.description).joined(separator: ", ")), not \(wanted)", position: 0, subject: leaf.subject))
            }
        }
        if !policy.requiredKeyUsage.isEmpty, let usage = leaf.keyUsage, !usage.isSuperset(of: policy.requiredKeyUsage) {
            add(VerificationError.Problem(.keyUsageMissing, "'\(leaf.subject)' allows key usage \(usage), not \(policy.requiredKeyUsage.subtracting(usage))", position: 0, subject: leaf.subject))
        }
        if webPKI && leaf.extension(oid: ExtensionOID.extendedKeyUsage) == nil && policy.purposes.contains(where: { $0 != .any }) {
            // CA/B Forum 7.1.2.7.10: a subscriber certificate carries an EKU. (RFC 5280
            // reads a missing EKU as "any purpose".)
            add(VerificationError.Problem(.purposeMismatch, "'\(leaf.subject)' has no extended key usage extension, which the CA/Browser Forum requires of a subscriber certificate (7.1.2.7.10)", position: 0, subject: leaf.subject))
        }
        if webPKI && leaf.extension(oid: ExtensionOID.subjectAlternativeName) == nil {
            // CA/B Forum 7.1.2.7.12: a subscriber certificate carries alternative names.
            add(VerificationError.Problem(.malformedCertificate, "'\(leaf.subject)' has no subject alternative names, which the CA/Browser Forum requires (7.1.2.7.12)", position: 0, subject: leaf.subject))
        }
        if webPKI && policy.purposes.contains(.serverAuth) {
            // CA/B Forum 7.1.4.3: a common name must be a character-for-character copy of a
            // DNS or IP alternative name. Never applied under RFC 9525 (the default profile),
            // which ignores the CN whenever alternative names exist.
            for cn in leaf.subject.values(of: .commonName) {
                if let why = Self.commonNameConflict(cn, leaf.subjectAlternativeNames) {
                    add(VerificationError.Problem(.malformedCertificate, "common name '\(cn)' of '\(leaf.subject)' \(why) (CA/B Forum 7.1.4.3)", position: 0, subject: leaf.subject))
                }
            }
        }
        for expected in policy.expectedNames where !HostnameMatcher.matches(expected, leaf.subjectAlternativeNames) {
            var problem = VerificationError.Problem(.nameMismatch, "certificate for \(Self.describeNames(leaf)) is not valid for \(expected)", position: 0, subject: leaf.subject)
            problem.expectedName = expected
            problem.presentedNames = leaf.subjectAlternativeNames
            add(problem)
        }
        return problems
    }

    /// Why a common name contradicts the alternative names, or `nil`. The CN is never used
    /// to match a host; this only refuses leaves whose CN names another host than its SANs:
    /// an IP-like CN that is not the canonical text of an IP SAN (hex, leading zeros,
    /// upper-case or uncompressed IPv6), a CN equal to a SAN but for letter case, a non-ASCII
    /// CN, or a host name that is neither a DNS SAN nor a parent domain of one.
    static func commonNameConflict(_ cn: String, _ names: [GeneralName]) -> String? {
        let dnsNames = names.compactMap(\.dnsName)
        let ips = names.compactMap(\.ipAddress)
        if dnsNames.contains(cn) || ips.contains(where: { $0.description == cn }) { return nil }
        let looksLikeIP = IPAddress(cn) != nil || cn.contains(":")
            || (cn.lowercased().hasPrefix("0x") && cn.dropFirst(2).allSatisfy(\.isHexDigit))
            || (!cn.isEmpty && cn.split(separator: ".").count == 4 && cn.allSatisfy { $0.isNumber || $0 == "." })
        if looksLikeIP {
            return ips.isEmpty && IPAddress(cn) == nil ? nil : "is an IP address that is not the canonical text of an IP alternative name"
        }
        if !cn.unicodeScalars.allSatisfy(\.isASCII) && cn.contains(".") {
            return "is not an ASCII host name, so it cannot copy a DNS alternative name"
        }
        if dnsNames.contains(where: { $0.lowercased() == cn.lowercased() }) {
            return "differs from a DNS alternative name in letter case"
        }
        guard AlternativeNames.isValidDNSName(cn), cn.contains("."), !dnsNames.isEmpty else { return nil }
        let lower = cn.lowercased()
        if dnsNames.contains(where: { $0.lowercased().hasSuffix("." + lower) }) { return nil }
        return "is a host name that is not among the DNS alternative names"
    }

    static func describeNames(_ leaf: Certificate) -> String {
        let names = leaf.subjectAlternativeNames.map(\.description)
        return names.isEmpty ? "'\(leaf.subject)' (no alternative names)" : names.joined(separator: ", ")
    }

    func checkDepth(_ path: [Certificate]) -> [VerificationError.Problem] {
        guard let maximum = policy.maximumIntermediates else { return [] }
        let intermediates = path.dropFirst().dropLast().filter { !$0.isSelfIssued }.count
        guard intermediates > maximum else { return [] }
        return [VerificationError.Problem(.pathLengthExceeded, "the chain has \(intermediates) intermediate CA\(intermediates == 1 ? "" : "s"); at most \(maximum) allowed")]
    }

    // MARK: Revocation

    func checkRevocation(_ cert: Certificate, issuer: Certificate, position: Int) -> [VerificationError.Problem] {
        let candidates = crls.filter { $0.issuer.matches(issuer.subject) }
        var reasons: [String] = []
        var usable: [CertificateRevocationList] = []
        for crl in candidates {
            if let aki = crl.authorityKeyIdentifier, let ski = issuer.subjectKeyIdentifier, aki != ski {
                // Another CA of the same name: not this issuer's CRL, neither revokes nor vouches.
                // But a CRL this issuer did sign, with a damaged key identifier, was given for
                // it and cannot be used: reported, never skipped in silence.
                guard crl.isSigned(by: issuer) else { continue }
                reasons.append("a CRL naming '\(issuer.subject)' as its issuer was not used: its authority key identifier \(aki.colonHex) is not the issuer's key identifier \(ski.colonHex)")
                continue
            }
            guard crl.isSigned(by: issuer) else { reasons.append("a CRL from '\(issuer.subject)' is not signed by its key"); continue }
            if let usage = issuer.keyUsage, !usage.contains(.cRLSign) {
                reasons.append("'\(issuer.subject)' may not sign CRLs (key usage lacks cRLSign)")
                continue
            }
            if let problem = crl.profileProblem {
                reasons.append(problem)
                continue
            }
            if crl.thisUpdate > now {
                reasons.append("the CRL from '\(issuer.subject)' is not yet valid (thisUpdate \(crl.thisUpdate))")
                continue
            }
            if let next = crl.nextUpdate, next < now {
                reasons.append("the CRL from '\(issuer.subject)' is stale (nextUpdate \(next))")
                continue
            }
            usable.append(crl)
        }
        // The newest CRL speaks for the issuer: a hold released in a later CRL is released.
        if let newest = usable.max(by: { ($0.number ?? -1, $0.thisUpdate) < ($1.number ?? -1, $1.thisUpdate) }) {
            usable = [newest]
        }
        for crl in usable {
            if let entry = crl.entry(for: cert.serialNumber) {
                if entry.revocationDate > now { continue }
                var problem = VerificationError.Problem(.revoked, "'\(cert.subject)' (serial \(cert.serialNumber)) was revoked on \(ISO8601DateFormatter().string(from: entry.revocationDate))\(entry.reason.map { " (\($0))" } ?? "")", position: position, subject: cert.subject)
                problem.revocationDate = entry.revocationDate
                problem.revocationReason = entry.reason
                return [problem]
            }
        }
        if !usable.isEmpty { return [] }
        if !candidates.isEmpty && !reasons.isEmpty {
            return [VerificationError.Problem(.revocationStatusUnknown, "revocation status of '\(cert.subject)' is unknown: \(reasons.joined(separator: "; "))", position: position, subject: cert.subject)]
        }
        if policy.revocation == .requireCRLs {
            return [VerificationError.Problem(.revocationStatusUnknown, "revocation status of '\(cert.subject)' is unknown: no CRL from '\(issuer.subject)' was given, and CRLs are required", position: position, subject: cert.subject)]
        }
        return []
    }
}

/// The signed part of a certificate or CRL, split with SwiftASN1:
/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`.
struct SignedParts {
    var tbs: [UInt8]
    var outerAlgorithm: [UInt8]
    var innerAlgorithm: [UInt8]
    var signature: [UInt8]

    init?(_ der: [UInt8]) {
        guard let top = try? DERReader.children(of: der), top.count == 3, top[2].tag == 0x03 else { return nil }
        tbs = top[0].encoded
        outerAlgorithm = top[1].encoded
        let content = top[2].content
        guard content.first == 0 else { return nil }
        signature = Array(content.dropFirst())
        // TBSCertificate: [0] version?, serialNumber, signature, … ; TBSCertList: version?, signature, …
        let fields = top[0].children
        guard let algorithm = fields.first(where: { $0.tag == 0x30 }) else { return nil }
        innerAlgorithm = algorithm.encoded
    }
}

/// RFC 6125 host-name matching on subject alternative names only.
enum HostnameMatcher {
    static func matches(_ expected: GeneralName, _ names: [GeneralName]) -> Bool {
        switch expected {
        case .dnsName(let host):
            return names.contains { $0.dnsName.map { dnsMatches(pattern: $0, host: host) } ?? false }
        case .ipAddress(let address):
            return names.contains { $0.ipAddress == address }
        case .email(let email):
            return names.contains { $0.email.map { emailEquals($0, email) } ?? false }
        case .uri(let uri):
            return names.contains { $0.uri == uri }
        default:
            return false
        }
    }

    /// `*.example.com` matches exactly one label (`a.example.com`, not `example.com` nor
    /// `a.b.example.com`); a wildcard must be the whole left-most label, and not on a
    /// two-label name (`*.com`). Comparison is case-insensitive; one trailing dot is ignored.
    static func dnsMatches(pattern: String, host: String) -> Bool {
        let host = host.lowercased().hasSuffix(".") ? String(host.lowercased().dropLast()) : host.lowercased()
        let pattern = pattern.lowercased()
        guard !host.isEmpty, !pattern.isEmpty, IPAddress(host) == nil else { return false }
        if !pattern.contains("*") { return pattern == host }
        let patternLabels = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let hostLabels = host.split(separator: ".", omittingEmptySubsequences: false)
        guard patternLabels.first == "*", patternLabels.dropFirst().allSatisfy({ !$0.contains("*") && !$0.isEmpty }),
              patternLabels.count >= 3, hostLabels.count == patternLabels.count, !hostLabels[0].isEmpty else { return false }
        return Array(hostLabels.dropFirst()) == Array(patternLabels.dropFirst())
    }

    /// Local part exact, domain case-insensitive.
    static func emailEquals(_ a: String, _ b: String) -> Bool {
        guard let atA = a.lastIndex(of: "@"), let atB = b.lastIndex(of: "@") else { return a == b }
        return a[..<atA] == b[..<atB] && a[atA...].lowercased() == b[atB...].lowercased()
    }
}

extension DistinguishedName {
    /// RFC 5280 7.1 name matching: identical DER, or the same attributes in the same RDNs
    /// with string values equal after case folding and space collapsing (RFC 4518, simplified).
    func matches(_ other: DistinguishedName) -> Bool {
        if self == other { return true }
        guard rdns.count == other.rdns.count else { return false }
        for (a, b) in zip(rdns, other.rdns) {
            guard a.attributes.count == b.attributes.count else { return false }
            let left = a.attributes.map(Self.normalized).sorted()
            let right = b.attributes.map(Self.normalized).sorted()
            guard left == right, !left.contains(where: { $0.hasSuffix("\u{0}") }) else { return false }
        }
        return true
    }

    private static func normalized(_ attribute: Attribute) -> String {
        guard let value = attribute.value.stringValue else { return attribute.type.oid + "=#" + attribute.value.derEncoded.hexString + "\u{0}" }
        let collapsed = value.split(whereSeparator: { $0 == " " }).joined(separator: " ").lowercased()
        return attribute.type.oid + "=" + collapsed
    }
}

extension CertificateRevocationList {
    /// Why this CRL cannot be relied on under RFC 5280 section 5, or `nil`.
    var profileProblem: String? {
        if version != 2 { return "the CRL from '\(issuer)' is version \(version), not 2" }
        guard let number = extensions.first(where: { $0.oid == "2.5.29.20" }) else {
            return "the CRL from '\(issuer)' has no CRL number (RFC 5280 5.2.3)"
        }
        if number.critical { return "the CRL from '\(issuer)' marks its CRL number critical (RFC 5280 5.2.3)" }
        if let unknown = extensions.first(where: { $0.critical && !["2.5.29.20", "2.5.29.35", "2.5.29.28"].contains($0.oid) }) {
            return "the CRL from '\(issuer)' has critical extension \(unknown.oid), which is not understood"
        }
        if extensions.contains(where: { $0.oid == "2.5.29.28" }) {
            return "the CRL from '\(issuer)' is a partitioned (issuing distribution point) CRL, which is not supported"
        }
        return nil
    }
}

extension VerificationError {
    /// GnuTLS keeps at most 16 of the certificates a TLS peer presents
    /// (`DEFAULT_MAX_VERIFY_DEPTH`). When the peer presented that many and the chain breaks
    /// at the last one kept, its issuer is one GnuTLS dropped: report the chain's length
    /// (``Reason/pathLengthExceeded``), not a missing intermediate.
    package func explainingPeerChainLimit(presented: Int) -> VerificationError {
        let limit = PathValidation.gnuTLSMaximumDepth
        guard presented >= limit else { return self }
        var explained = self
        explained.problems = problems.map { problem in
            guard problem.reason == .untrustedIssuer, problem.position == limit - 1 else { return problem }
            var relabeled = problem
            relabeled.reason = .pathLengthExceeded
            relabeled.message = "chain longer than GnuTLS's limit of \(limit) certificates: the peer's chain does not reach a trust anchor within the first \(limit), and GnuTLS keeps no more (\(problem.message))"
            return relabeled
        }
        return explained
    }
}
