import Foundation
import GnuTLSCore

// The end-entity checks: purposes and key usage, the CA/Browser Forum subscriber rules of the
// Web PKI profile (EKU and SANs present, 7.1.4.3 common name), and the expected names.
extension PathValidation {
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
}
