import Foundation
import GnuTLSCore

/// An IPv4 or IPv6 address.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), network order.
    public let bytes: [UInt8]

    /// Parses dotted-quad IPv4 or RFC 5952 IPv6 text.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    /// An address from 4 or 16 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Whether this is an IPv4 address.
    public var isIPv4: Bool { bytes.count == 4 }

    /// A readable form, for logs and messages.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = isIPv4 ? AF_INET : AF_INET6
        return bytes.withUnsafeBytes { source in
            inet_ntop(family, source.baseAddress, &buffer, socklen_t(buffer.count)) != nil
                ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : bytes.hexString
        }
    }
}

/// An IP network (address and prefix length), as used in name constraints.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The network address (host bits cleared).
    public let address: IPAddress
    /// The prefix length: 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// Parses `10.0.0.0/8` or `fd00::/8`. An address without a prefix is a single host.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let address = IPAddress(String(first)) else { return nil }
        let maximum = address.bytes.count * 8
        let prefix = parts.count == 2 ? Int(parts[1]) : maximum
        guard let prefix, (0...maximum).contains(prefix) else { return nil }
        self.init(address: address, prefixLength: prefix)
    }

    /// A network from an address and prefix length; host bits are cleared.
    public init(address: IPAddress, prefixLength: Int) {
        let mask = Self.mask(bytes: address.bytes.count, prefix: prefixLength)
        self.address = IPAddress(bytes: zip(address.bytes, mask).map { $0 & $1 })!
        self.prefixLength = prefixLength
    }

    /// Address followed by mask, as name constraints encode it (8 or 32 bytes).
    init?(constraintBytes bytes: [UInt8]) {
        guard bytes.count == 8 || bytes.count == 32, let address = IPAddress(bytes: Array(bytes.prefix(bytes.count / 2))) else { return nil }
        let mask = bytes.suffix(bytes.count / 2)
        let prefix = mask.reduce(0) { $0 + $1.nonzeroBitCount }
        self.init(address: address, prefixLength: prefix)
    }

    var constraintBytes: [UInt8] { address.bytes + Self.mask(bytes: address.bytes.count, prefix: prefixLength) }

    /// Whether `other` lies inside this network (and is of the same family).
    public func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        let mask = Self.mask(bytes: address.bytes.count, prefix: prefixLength)
        return zip(zip(other.bytes, mask), address.bytes).allSatisfy { $0.0 & $0.1 == $1 }
    }

    static func mask(bytes: Int, prefix: Int) -> [UInt8] {
        (0..<bytes).map { index in
            let bits = max(0, min(8, prefix - index * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }

    /// A readable form, for logs and messages.
    public var description: String { "\(address)/\(prefixLength)" }
}

/// A name in a subject alternative name, CRL distribution point, access location or name
/// constraint (RFC 5280 `GeneralName`).
public enum GeneralName: Hashable, Sendable, CustomStringConvertible {
    /// A DNS host name (`dNSName`), possibly with a leading wildcard label.
    case dnsName(String)
    /// An IP address (`iPAddress`).
    case ipAddress(IPAddress)
    /// An email address (`rfc822Name`).
    case email(String)
    /// A URI (`uniformResourceIdentifier`), SPIFFE IDs included.
    case uri(String)
    /// A directory name.
    case directoryName(DistinguishedName)
    /// An `otherName`: its type OID and the DER of its value.
    case otherName(oid: String, value: [UInt8])
    /// A registered object identifier.
    case registeredID(String)
    /// An `iPAddress` entry that is neither 4 nor 16 bytes long (nor 8 or 32, an address
    /// and mask, in a name constraint): the bytes as found. Verification refuses a
    /// certificate that carries one.
    case invalidIPAddress([UInt8])
    /// A `directoryName` entry whose DER is not a valid distinguished name: the bytes as found.
    case invalidDirectoryName([UInt8])

    /// Parses `DNS:…`, `IP:…`, `email:…` or `URI:…` (the prefixes OpenSSL prints).
    public init?(prefixed text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let kind = text[..<colon].lowercased()
        let value = String(text[text.index(after: colon)...])
        switch kind {
        case "dns": self = .dnsName(value)
        case "ip": guard let ip = IPAddress(value) else { return nil }; self = .ipAddress(ip)
        case "email": self = .email(value)
        case "uri": self = .uri(value)
        default: return nil
        }
    }

    /// A readable form, for logs and messages.
    public var description: String {
        switch self {
        case .dnsName(let name): return "DNS:\(name)"
        case .ipAddress(let address): return "IP:\(address)"
        case .email(let address): return "email:\(address)"
        case .uri(let uri): return "URI:\(uri)"
        case .directoryName(let name): return "DirName:\(name)"
        case .otherName(let oid, let value): return "othername:\(oid):#\(value.hexString)"
        case .registeredID(let oid): return "RID:\(oid)"
        case .invalidIPAddress(let bytes): return "IP:<invalid #\(bytes.hexString)>"
        case .invalidDirectoryName(let bytes): return "DirName:<invalid #\(bytes.hexString)>"
        }
    }

    init(_ core: CoreGeneralName) {
        switch core {
        case .dns(let name): self = .dnsName(name)
        case .ip(let bytes): self = IPAddress(bytes: bytes).map { .ipAddress($0) } ?? .invalidIPAddress(bytes)
        case .email(let name): self = .email(name)
        case .uri(let uri): self = .uri(uri)
        case .directoryName(let der): self = (try? DistinguishedName(derEncoded: der)).map { .directoryName($0) } ?? .invalidDirectoryName(der)
        case .otherName(let oid, let value): self = .otherName(oid: oid, value: value)
        case .registeredID(let oid): self = .registeredID(oid)
        }
    }

    package var core: CoreGeneralName {
        switch self {
        case .dnsName(let name): return .dns(name)
        case .ipAddress(let address): return .ip(address.bytes)
        case .email(let name): return .email(name)
        case .uri(let uri): return .uri(uri)
        case .directoryName(let name): return .directoryName(name.derEncoded)
        case .otherName(let oid, let value): return .otherName(oid: oid, value: value)
        case .registeredID(let oid): return .registeredID(oid)
        case .invalidIPAddress(let bytes): return .ip(bytes)
        case .invalidDirectoryName(let der): return .directoryName(der)
        }
    }

    /// The DNS name, when this is one.
    public var dnsName: String? { if case .dnsName(let name) = self { return name }; return nil }
    /// The IP address, when this is one.
    public var ipAddress: IPAddress? { if case .ipAddress(let address) = self { return address }; return nil }
    /// The email address, when this is one.
    public var email: String? { if case .email(let address) = self { return address }; return nil }
    /// The URI, when this is one.
    public var uri: String? { if case .uri(let uri) = self { return uri }; return nil }
}

/// Key usage bits (RFC 5280 section 4.2.1.3). Raw values are GnuTLS's `GNUTLS_KEY_*` bits.
public struct KeyUsage: OptionSet, Hashable, Sendable, CustomStringConvertible {
    /// The key usage bits.
    public var rawValue: UInt32
    /// Key usage from its bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// digitalSignature (bit 0).
    public static let digitalSignature = KeyUsage(rawValue: CoreKeyUsage.digitalSignature)
    /// contentCommitment, formerly nonRepudiation (bit 1).
    public static let contentCommitment = KeyUsage(rawValue: CoreKeyUsage.nonRepudiation)
    /// keyEncipherment (bit 2).
    public static let keyEncipherment = KeyUsage(rawValue: CoreKeyUsage.keyEncipherment)
    /// dataEncipherment (bit 3).
    public static let dataEncipherment = KeyUsage(rawValue: CoreKeyUsage.dataEncipherment)
    /// keyAgreement (bit 4).
    public static let keyAgreement = KeyUsage(rawValue: CoreKeyUsage.keyAgreement)
    /// keyCertSign (bit 5): may sign certificates.
    public static let keyCertSign = KeyUsage(rawValue: CoreKeyUsage.keyCertSign)
    /// cRLSign (bit 6): may sign CRLs.
    public static let cRLSign = KeyUsage(rawValue: CoreKeyUsage.crlSign)
    /// encipherOnly (bit 7).
    public static let encipherOnly = KeyUsage(rawValue: CoreKeyUsage.encipherOnly)
    /// decipherOnly (bit 8).
    public static let decipherOnly = KeyUsage(rawValue: CoreKeyUsage.decipherOnly)

    /// The bits with the names RFC 5280 and x509-limbo use.
    public static let named: [(String, KeyUsage)] = [
        ("digitalSignature", .digitalSignature), ("contentCommitment", .contentCommitment),
        ("keyEncipherment", .keyEncipherment), ("dataEncipherment", .dataEncipherment),
        ("keyAgreement", .keyAgreement), ("keyCertSign", .keyCertSign), ("cRLSign", .cRLSign),
        ("encipherOnly", .encipherOnly), ("decipherOnly", .decipherOnly),
    ]

    /// Looks a bit up by its RFC 5280 name (`digitalSignature`, …; `nonRepudiation` too).
    public init?(name: String) {
        if name == "nonRepudiation" { self = .contentCommitment; return }
        guard let match = Self.named.first(where: { $0.0 == name }) else { return nil }
        self = match.1
    }

    /// A readable form, for logs and messages.
    public var description: String {
        Self.named.filter { contains($0.1) }.map(\.0).joined(separator: ", ")
    }
}

/// An extended key usage purpose (RFC 5280 section 4.2.1.12), by OID.
public struct ExtendedKeyUsage: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The dotted OID.
    public var rawValue: String
    /// A purpose by its dotted OID; prefer the static members.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A purpose by dotted OID.
    public init(oid: String) { rawValue = oid }

    /// TLS server authentication, 1.3.6.1.5.5.7.3.1 (`GNUTLS_KP_TLS_WWW_SERVER`).
    public static let serverAuth = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.1")
    /// TLS client authentication, 1.3.6.1.5.5.7.3.2 (`GNUTLS_KP_TLS_WWW_CLIENT`).
    public static let clientAuth = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.2")
    /// Code signing, 1.3.6.1.5.5.7.3.3.
    public static let codeSigning = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.3")
    /// Email protection, 1.3.6.1.5.5.7.3.4.
    public static let emailProtection = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.4")
    /// Time stamping, 1.3.6.1.5.5.7.3.8.
    public static let timeStamping = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.8")
    /// OCSP response signing, 1.3.6.1.5.5.7.3.9.
    public static let ocspSigning = ExtendedKeyUsage(oid: "1.3.6.1.5.5.7.3.9")
    /// Any purpose, 2.5.29.37.0.
    public static let any = ExtendedKeyUsage(oid: "2.5.29.37.0")

    static let named: [(String, ExtendedKeyUsage)] = [
        ("serverAuth", .serverAuth), ("clientAuth", .clientAuth), ("codeSigning", .codeSigning),
        ("emailProtection", .emailProtection), ("timeStamping", .timeStamping),
        ("OCSPSigning", .ocspSigning), ("anyExtendedKeyUsage", .any),
    ]

    /// Looks a purpose up by its x509-limbo / OpenSSL name (`serverAuth`, …) or dotted OID.
    public init?(name: String) {
        if let match = Self.named.first(where: { $0.0.caseInsensitiveCompare(name) == .orderedSame }) {
            self = match.1
        } else if name.contains("."), name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ arc in
            !arc.isEmpty && arc.allSatisfy { $0.isASCII && $0.isNumber }  // "1..2", "1.2." and non-ASCII digits are not OIDs
        }) {
            self.init(oid: name)
        } else {
            return nil
        }
    }

    /// A readable form, for logs and messages.
    public var description: String { Self.named.first { $0.1 == self }?.0 ?? rawValue }
}
