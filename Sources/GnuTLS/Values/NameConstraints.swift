import Foundation
import GnuTLSCore

/// The name constraints extension (RFC 5280 section 4.2.1.10), by name type.
public struct NameConstraints: Hashable, Sendable, CustomStringConvertible {
    /// DNS subtrees: `example.com` covers the domain and every subdomain; `.example.com`
    /// only subdomains.
    public var permittedDNSDomains: [String] = []
    /// Excluded DNS subtrees, written as the permitted ones.
    public var excludedDNSDomains: [String] = []
    /// IP ranges.
    public var permittedIPRanges: [IPNetwork] = []
    /// Excluded IP ranges.
    public var excludedIPRanges: [IPNetwork] = []
    /// Email constraints: a mailbox, a host (`example.com`) or a domain (`.example.com`).
    public var permittedEmailAddresses: [String] = []
    /// Excluded email constraints, written as the permitted ones.
    public var excludedEmailAddresses: [String] = []
    /// URI host constraints.
    public var permittedURIDomains: [String] = []
    /// Excluded URI host constraints.
    public var excludedURIDomains: [String] = []
    /// Directory name subtrees.
    public var permittedDirectoryNames: [DistinguishedName] = []
    /// Excluded directory name subtrees.
    public var excludedDirectoryNames: [DistinguishedName] = []
    /// Name forms with subtrees this library cannot evaluate (`otherName`, `x400Address`,
    /// `ediPartyName`, `registeredID`), by GeneralName tag number. A certificate holding a
    /// name of such a form under these constraints fails verification.
    public var permittedUnsupportedForms: Set<Int> = []
    /// Excluded name forms this library cannot evaluate, by GeneralName tag number.
    public var excludedUnsupportedForms: Set<Int> = []

    /// Constraints with the given subtrees.
    public init(
        permittedDNSDomains: [String] = [], excludedDNSDomains: [String] = [],
        permittedIPRanges: [IPNetwork] = [], excludedIPRanges: [IPNetwork] = [],
        permittedEmailAddresses: [String] = [], excludedEmailAddresses: [String] = [],
        permittedURIDomains: [String] = [], excludedURIDomains: [String] = []
    ) {
        self.permittedDNSDomains = permittedDNSDomains
        self.excludedDNSDomains = excludedDNSDomains
        self.permittedIPRanges = permittedIPRanges
        self.excludedIPRanges = excludedIPRanges
        self.permittedEmailAddresses = permittedEmailAddresses
        self.excludedEmailAddresses = excludedEmailAddresses
        self.permittedURIDomains = permittedURIDomains
        self.excludedURIDomains = excludedURIDomains
    }

    /// Whether no subtree is given.
    public var isEmpty: Bool {
        permitted.isEmpty && excluded.isEmpty && permittedUnsupportedForms.isEmpty && excludedUnsupportedForms.isEmpty
    }

    /// Parses the DER extension value with SwiftASN1 (GnuTLS's parser refuses subtrees of
    /// forms it does not know, such as `otherName`, and does not return directory names).
    ///
    /// `NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees OPTIONAL,
    /// excludedSubtrees [1] GeneralSubtrees OPTIONAL }`; `GeneralSubtree ::= SEQUENCE {
    /// base GeneralName, minimum [0] DEFAULT 0, maximum [1] OPTIONAL }`.
    init(derEncoded der: [UInt8]) throws {
        func malformed(_ why: String) -> GnuTLSError {
            GnuTLSError(.malformedDER, "name constraints extension is malformed: \(why)")
        }
        let parts: [DERReader.Element]
        do { parts = try DERReader.children(of: der) } catch { throw malformed("not a DER SEQUENCE") }
        for part in parts {
            guard part.tag == 0xA0 || part.tag == 0xA1 else { throw malformed("unexpected field tag \(part.tag)") }
            let permitted = part.tag == 0xA0
            for subtree in part.children {
                guard subtree.tag == 0x30, let base = subtree.children.first else { throw malformed("a subtree is not a SEQUENCE") }
                if subtree.children.dropFirst().contains(where: { $0.tag == 0x80 && $0.content.contains { $0 != 0 } }) || subtree.children.dropFirst().contains(where: { $0.tag == 0x81 }) {
                    throw malformed("subtrees with minimum or maximum are not allowed (RFC 5280 4.2.1.10)")
                }
                let text = { () throws -> String in
                    guard let string = String(validating: base.content, as: UTF8.self), string.unicodeScalars.allSatisfy(\.isASCII) else {
                        throw malformed("a name is not IA5 text")
                    }
                    return string
                }
                switch base.tag {
                case 0x81:
                    if permitted { permittedEmailAddresses.append(try text()) } else { excludedEmailAddresses.append(try text()) }
                case 0x82:
                    if permitted { permittedDNSDomains.append(try text()) } else { excludedDNSDomains.append(try text()) }
                case 0x86:
                    if permitted { permittedURIDomains.append(try text()) } else { excludedURIDomains.append(try text()) }
                case 0x87:
                    guard let network = IPNetwork(constraintBytes: Array(base.content)) else {
                        throw malformed("an IP subtree is not an address and mask of 8 or 32 bytes")
                    }
                    if permitted { permittedIPRanges.append(network) } else { excludedIPRanges.append(network) }
                case 0xA4:
                    guard let inner = base.children.first, let name = try? DistinguishedName(derEncoded: inner.encoded) else {
                        throw malformed("a directory name subtree is not a Name")
                    }
                    if permitted { permittedDirectoryNames.append(name) } else { excludedDirectoryNames.append(name) }
                default:
                    let form = Int(base.tag & 0x1F)
                    if permitted { permittedUnsupportedForms.insert(form) } else { excludedUnsupportedForms.insert(form) }
                }
            }
        }
    }

    package var permitted: [CoreGeneralName] {
        permittedDNSDomains.map { .dns($0) } + permittedIPRanges.map { .ip($0.constraintBytes) }
            + permittedEmailAddresses.map { .email($0) } + permittedURIDomains.map { .uri($0) }
            + permittedDirectoryNames.map { .directoryName($0.derEncoded) }
    }

    package var excluded: [CoreGeneralName] {
        excludedDNSDomains.map { .dns($0) } + excludedIPRanges.map { .ip($0.constraintBytes) }
            + excludedEmailAddresses.map { .email($0) } + excludedURIDomains.map { .uri($0) }
            + excludedDirectoryNames.map { .directoryName($0.derEncoded) }
    }

    /// A readable form, for logs and messages.
    public var description: String {
        var parts: [String] = []
        parts += permittedDNSDomains.map { "permitted DNS:\($0)" } + permittedIPRanges.map { "permitted IP:\($0)" }
        parts += permittedEmailAddresses.map { "permitted email:\($0)" } + permittedURIDomains.map { "permitted URI:\($0)" }
        parts += permittedDirectoryNames.map { "permitted DirName:\($0)" }
        parts += excludedDNSDomains.map { "excluded DNS:\($0)" } + excludedIPRanges.map { "excluded IP:\($0)" }
        parts += excludedEmailAddresses.map { "excluded email:\($0)" } + excludedURIDomains.map { "excluded URI:\($0)" }
        parts += excludedDirectoryNames.map { "excluded DirName:\($0)" }
        return parts.joined(separator: ", ")
    }
}

/// Name-constraint matching (RFC 5280 section 4.2.1.10), used by the authority before it
/// signs and by the verifier.
package enum NameConstraintCheck {
    /// `nil` when `name` satisfies `constraints`, otherwise "excluded" or "not permitted".
    package static func violation(of constraints: NameConstraints, by name: GeneralName) -> String? {
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
    package static func looksLikeHostName(_ text: String) -> Bool {
        var labels = text.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" { labels.removeFirst() }
        guard labels.count >= 2 else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
        }
    }

    /// `nil` when `subject` is inside the permitted directory-name subtrees (if any) and
    /// outside the excluded ones; a subtree is a prefix of RDNs (RFC 5280 section 4.2.1.10),
    /// each compared as names are matched (RFC 5280 section 7.1: case-insensitive, spaces
    /// folded).
    package static func directoryNameViolation(of constraints: NameConstraints, by subject: DistinguishedName) -> String? {
        func within(_ base: DistinguishedName) -> Bool {
            base.rdns.count <= subject.rdns.count
                && zip(base.rdns, subject.rdns).allSatisfy { DistinguishedName([$0]).matches(DistinguishedName([$1])) }
        }
        if constraints.excludedDirectoryNames.contains(where: within) { return "excluded" }
        if !constraints.permittedDirectoryNames.isEmpty && !constraints.permittedDirectoryNames.contains(where: within) { return "not permitted" }
        return nil
    }

    /// `example.com` covers itself and subdomains; `.example.com` only subdomains.
    package static func dnsMatches(_ name: String, _ constraint: String) -> Bool {
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
    package static func wildcardMayMatch(_ name: String, _ constraint: String) -> Bool {
        guard name.hasPrefix("*.") else { return false }
        let base = name.dropFirst(2).lowercased()
        let constraint = constraint.lowercased().hasPrefix(".") ? String(constraint.lowercased().dropFirst()) : constraint.lowercased()
        guard constraint.hasSuffix("." + base) else { return false }
        let extra = constraint.dropLast(base.count + 1)
        return !extra.isEmpty && !extra.contains(".")
    }

    /// A mailbox matches exactly; `example.com` matches mailboxes at that host; `.example.com`
    /// mailboxes at any subdomain.
    package static func emailMatches(_ email: String, _ constraint: String) -> Bool {
        if constraint.contains("@") { return email.caseInsensitiveCompare(constraint) == .orderedSame }
        guard let at = email.lastIndex(of: "@") else { return false }
        let host = email[email.index(after: at)...].lowercased()
        let constraint = constraint.lowercased()
        if constraint.hasPrefix(".") { return host.hasSuffix(constraint) }
        return host == constraint
    }
}
