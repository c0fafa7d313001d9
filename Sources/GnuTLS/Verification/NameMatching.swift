import Foundation
import GnuTLSCore

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
