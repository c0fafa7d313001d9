import Foundation
import GnuTLSCore

// The opt-in web-PKI profile (`VerificationProfile.webPKI`): the CA/Browser Forum Baseline
// Requirements that x509-limbo's `webpki::` namespace expects, checked on top of the RFC 5280
// and RFC 9525 checks (RFC5280Checks.swift, LeafChecks.swift) of the same path. They only
// add problems, except one RFC 5280 rule the web PKI relaxes:
// ``toleratesNonCriticalNameConstraints``.
extension PathValidation {
    /// Whether a CA's non-critical name constraints are accepted. RFC 5280 4.2.1.10 requires
    /// them critical; the web PKI accepts non-critical ones (x509-limbo's conflicting pair).
    var toleratesNonCriticalNameConstraints: Bool { policy.profile.isWebPKI }

    /// The CA/Browser Forum rules for `path` (leaf at 0, anchor last); none under RFC 5280.
    func checkWebPKI(_ path: [Certificate]) -> [VerificationError.Problem] {
        guard policy.profile.isWebPKI else { return [] }
        var problems: [VerificationError.Problem] = []
        let anchorIndex = path.count - 1
        for (index, certificate) in path.enumerated() {
            if index == 0 {
                problems += checkSubscriberExtensions(certificate, isAnchor: index == anchorIndex)
            }
            if index == anchorIndex {
                problems += checkRootKeyIdentifiers(certificate, position: index)
            }
            problems += checkWebPKIKey(certificate, position: index)
        }
        if path.count > 1 {
            problems += checkRootPurposes(path[anchorIndex], position: anchorIndex)
        }
        problems += checkSubscriber(path[0])
        return problems
    }

    /// The leaf's extensions (CA/B Forum 7.1.2.7): not a CA, EKU not critical and never
    /// anyExtendedKeyUsage on a server, alternative names critical only with an empty subject.
    private func checkSubscriberExtensions(_ cert: Certificate, isAnchor: Bool) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        func add(_ reason: VerificationError.Reason, _ message: String) {
            problems.append(VerificationError.Problem(reason, message, position: 0, subject: cert.subject))
        }
        if (cert.isCertificateAuthority || cert.keyUsage?.contains(.keyCertSign) == true) && !isAnchor {
            // CA/Browser Forum 7.1.2.7.8 and 7.1.2.7.11: a subscriber certificate is not a
            // CA. RFC 5280 does not forbid a CA certificate in the leaf position.
            add(.malformedCertificate, "'\(cert.subject)' is a CA certificate presented as an end-entity certificate")
        }
        if let eku = cert.extension(oid: ExtensionOID.extendedKeyUsage) {
            // CA/B Forum 7.1.2.7.6 and 7.1.2.7.10: not critical, never anyExtendedKeyUsage.
            if eku.critical { add(.malformedCertificate, "'\(cert.subject)' marks extended key usage critical (CA/B Forum 7.1.2.7.6)") }
            if cert.extendedKeyUsage?.contains(.any) == true && policy.purposes.contains(.serverAuth) {
                add(.purposeMismatch, "'\(cert.subject)' asserts anyExtendedKeyUsage, which a TLS server certificate must not (CA/B Forum 7.1.2.7.10)")
            }
        }
        if let san = cert.extension(oid: ExtensionOID.subjectAlternativeName), san.critical, !cert.subject.isEmpty {
            add(.malformedCertificate, "'\(cert.subject)' marks its alternative names critical although its subject is not empty (RFC 5280 4.2.1.6, CA/B Forum 7.1.2.7.12)")
        }
        return problems
    }

    /// The trust anchor's authority key identifier, which RFC 5280 leaves unjudged (6.1.1 d):
    /// it holds a keyIdentifier, and on a self-issued root (CA/B Forum 7.1.2.1.3) only that,
    /// equal to the subject key identifier.
    private func checkRootKeyIdentifiers(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        guard let aki = cert.extension(oid: ExtensionOID.authorityKeyIdentifier) else { return [] }
        var problems: [VerificationError.Problem] = []
        func add(_ message: String) {
            problems.append(VerificationError.Problem(.malformedCertificate, message, position: position, subject: cert.subject))
        }
        let fields = (try? DERReader.children(of: aki.value)) ?? []
        if !fields.contains(where: { $0.tag == 0x80 }) {
            add(Self.akiWithoutKeyIdentifier(cert))
        }
        if cert.isSelfIssued {
            if fields.contains(where: { $0.tag != 0x80 }) {
                add("root '\(cert.subject)' has authorityCertIssuer or authorityCertSerialNumber in its authority key identifier")
            }
            if let ski = cert.subjectKeyIdentifier, let keyID = cert.authorityKeyIdentifier, ski != keyID {
                add("root '\(cert.subject)' has an authority key identifier that differs from its subject key identifier")
            }
        }
        return problems
    }

    /// CA/B Forum 6.1.5: RSA keys of at least 2048 bits, whatever the security profile allows.
    private func checkWebPKIKey(_ cert: Certificate, position: Int) -> [VerificationError.Problem] {
        let key = cert.publicKey.keyDescription
        guard key.family == .rsa, key.bits >= policy.securityProfile.minimumRSABits, key.bits < 2048 else { return [] }
        return [VerificationError.Problem(.insecureAlgorithm, "key of '\(cert.subject)': RSA-\(key.bits) is below the 2048 bits the CA/Browser Forum requires (6.1.5)", position: position, subject: cert.subject)]
    }

    /// CA/B Forum 7.1.2.1.2: a root certificate (the self-issued anchor of a longer path)
    /// carries no extended key usage.
    private func checkRootPurposes(_ root: Certificate, position: Int) -> [VerificationError.Problem] {
        guard root.isSelfIssued, root.extension(oid: ExtensionOID.extendedKeyUsage) != nil else { return [] }
        return [VerificationError.Problem(.malformedCertificate, "root '\(root.subject)' carries an extended key usage extension, which the CA/Browser Forum forbids on roots (7.1.2.1.2)", position: position, subject: root.subject)]
    }

    /// The subscriber rules on the leaf's purposes and names: an EKU is present and
    /// anyExtendedKeyUsage does not stand in for a purpose (7.1.2.7.10), alternative names are
    /// present (7.1.2.7.12), and a TLS server's common name copies one of them (7.1.4.3).
    private func checkSubscriber(_ leaf: Certificate) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        func add(_ problem: VerificationError.Problem) { problems.append(problem) }
        if let purposes = leaf.extendedKeyUsage, purposes.contains(.any) {
            // RFC 5280 4.2.1.12 lets anyExtendedKeyUsage allow every purpose; the web PKI
            // asks for the purpose itself.
            for wanted in policy.purposes where wanted != .any && !purposes.contains(wanted) {
                add(Self.purposeMismatch(leaf, purposes, wanted))
            }
        }
        if leaf.extension(oid: ExtensionOID.extendedKeyUsage) == nil && policy.purposes.contains(where: { $0 != .any }) {
            // CA/B Forum 7.1.2.7.10: a subscriber certificate carries an EKU. (RFC 5280
            // reads a missing EKU as "any purpose".)
            add(VerificationError.Problem(.purposeMismatch, "'\(leaf.subject)' has no extended key usage extension, which the CA/Browser Forum requires of a subscriber certificate (7.1.2.7.10)", position: 0, subject: leaf.subject))
        }
        if leaf.extension(oid: ExtensionOID.subjectAlternativeName) == nil {
            // CA/B Forum 7.1.2.7.12: a subscriber certificate carries alternative names.
            add(VerificationError.Problem(.malformedCertificate, "'\(leaf.subject)' has no subject alternative names, which the CA/Browser Forum requires (7.1.2.7.12)", position: 0, subject: leaf.subject))
        }
        if policy.purposes.contains(.serverAuth) {
            // CA/B Forum 7.1.4.3: a common name must be a character-for-character copy of a
            // DNS or IP alternative name. Never applied under RFC 9525 (the default profile),
            // which ignores the CN whenever alternative names exist.
            for cn in leaf.subject.values(of: .commonName) {
                if let why = Self.commonNameConflict(cn, leaf.subjectAlternativeNames) {
                    add(VerificationError.Problem(.malformedCertificate, "common name '\(cn)' of '\(leaf.subject)' \(why) (CA/B Forum 7.1.4.3)", position: 0, subject: leaf.subject))
                }
            }
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
}
