import Foundation
import GnuTLSCore

extension PathValidation {
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
