import Foundation
import GnuTLSCore

// The end-entity checks of RFC 5280 and RFC 9525: purposes and key usage, and the expected
// names. The web-PKI profile's subscriber rules are in WebPKIChecks.swift.
extension PathValidation {
    func checkLeaf(_ leaf: Certificate) -> [VerificationError.Problem] {
        var problems: [VerificationError.Problem] = []
        func add(_ problem: VerificationError.Problem) { problems.append(problem) }
        if let purposes = leaf.extendedKeyUsage, !purposes.contains(.any) {
            // RFC 5280 4.2.1.12: anyExtendedKeyUsage allows every purpose (the web PKI
            // refuses it: WebPKIChecks.swift).
            for wanted in policy.purposes where wanted != .any && !purposes.contains(wanted) {
                add(Self.purposeMismatch(leaf, purposes, wanted))
            }
        }
        if !policy.requiredKeyUsage.isEmpty, let usage = leaf.keyUsage, !usage.isSuperset(of: policy.requiredKeyUsage) {
            add(VerificationError.Problem(.keyUsageMissing, "'\(leaf.subject)' allows key usage \(usage), not \(policy.requiredKeyUsage.subtracting(usage))", position: 0, subject: leaf.subject))
        }
        for expected in policy.expectedNames where !HostnameMatcher.matches(expected, leaf.subjectAlternativeNames) {
            var problem = VerificationError.Problem(.nameMismatch, "certificate for \(Self.describeNames(leaf)) is not valid for \(expected)", position: 0, subject: leaf.subject)
            problem.expectedName = expected
            problem.presentedNames = leaf.subjectAlternativeNames
            add(problem)
        }
        return problems
    }

    /// The leaf's extended key usage does not allow `wanted`.
    static func purposeMismatch(_ leaf: Certificate, _ purposes: [ExtendedKeyUsage], _ wanted: ExtendedKeyUsage) -> VerificationError.Problem {
        VerificationError.Problem(.purposeMismatch, "'\(leaf.subject)' allows \(purposes.isEmpty ? "no purpose" : purposes.map(\.description).joined(separator: ", ")), not \(wanted)", position: 0, subject: leaf.subject)
    }

    static func describeNames(_ leaf: Certificate) -> String {
        let names = leaf.subjectAlternativeNames.map(\.description)
        return names.isEmpty ? "'\(leaf.subject)' (no alternative names)" : names.joined(separator: ", ")
    }
}
