import Foundation
import GnuTLSCore

// The checks of one complete path (RFC 5280 section 6 and 4.2), leaf at 0, anchor last.
// The web-PKI profile's CA/Browser Forum rules are in WebPKIChecks.swift.
extension PathValidation {
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
        problems += checkWebPKI(path)
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

    /// The certificate's own RFC 5280 profile problems. They depend only on the certificate
    /// and the three flags, so a certificate that passed with the same flags before (the
    /// verifier's memo hands out the same parsed certificate for the same DER) is not checked
    /// again.
    func checkProfile(_ cert: Certificate, position: Int, isLeaf: Bool, isAnchor: Bool) -> [VerificationError.Problem] {
        let flags: UInt8 = (isLeaf ? 1 : 0) | (isAnchor ? 2 : 0) | (toleratesNonCriticalNameConstraints ? 4 : 0)
        if cert.profileWasClean(flags) { return [] }
        let problems = profileProblems(cert, position: position, isLeaf: isLeaf, isAnchor: isAnchor)
        if problems.isEmpty { cert.rememberCleanProfile(flags) }
        return problems
    }

    private func profileProblems(_ cert: Certificate, position: Int, isLeaf: Bool, isAnchor: Bool) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
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
        }
        if cert.authorityKeyIdentifier == nil && !cert.isSelfIssued {
            // RFC 5280 4.2.1.1: MUST be included in all certificates except self-signed ones,
            // a trusted cross-signed (not self-issued) certificate included.
            add(.malformedCertificate, "'\(cert.subject)' has no authority key identifier")
        }
        if let aki = cert.extension(oid: ExtensionOID.authorityKeyIdentifier) {
            let fields = (try? DERReader.children(of: aki.value)) ?? []
            // A trust anchor is trusted for its name and key (RFC 5280 6.1.1 d); its AKI is
            // judged only under the web PKI's root rules (WebPKIChecks.swift).
            if !fields.contains(where: { $0.tag == 0x80 }) && !isAnchor {
                add(.malformedCertificate, Self.akiWithoutKeyIdentifier(cert))
            }
        }
        if let constraints = cert.extension(oid: ExtensionOID.nameConstraints) {
            if !constraints.critical && !toleratesNonCriticalNameConstraints {
                // RFC 5280 4.2.1.10: conforming CAs MUST mark name constraints critical. The
                // web PKI accepts non-critical ones (x509-limbo's conflicting pair).
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

    static func akiWithoutKeyIdentifier(_ cert: Certificate) -> String {
        "'\(cert.subject)' has an authority key identifier without a keyIdentifier"
    }

    func checkTime(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        guard now > cert.notValidAfter || now < cert.notValidBefore else { return [] }
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
        if SignedParts.algorithmsAgree(cert.derEncoded) == false {
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
        if index == path.count - 1, SignedParts.algorithmsAgree(ca.derEncoded) == false {
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
            if !cert.subject.isEmpty, let violation = NameConstraintCheck.directoryNameViolation(of: constraints, by: cert.subject) {
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

    func checkDepth(_ path: [Certificate]) -> [VerificationError.Problem] {
        guard let maximum = policy.maximumIntermediates else { return [] }
        let intermediates = path.dropFirst().dropLast().filter { !$0.isSelfIssued }.count
        guard intermediates > maximum else { return [] }
        return [VerificationError.Problem(.pathLengthExceeded, "the chain has \(intermediates) intermediate CA\(intermediates == 1 ? "" : "s"); at most \(maximum) allowed")]
    }
}
