import Foundation
import GnuTLS

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

extension NameConstraintCheck {
    /// Throws `IssuanceError.nameNotPermitted` when a name of the new certificate (an alternative
    /// name, a subject email, a CN read as a host name or IP address, the subject itself) is outside
    /// the name constraints of a CA of `chain`.
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
}
