import Foundation
import GnuTLSCore
import SwiftASN1

/// Why a certificate was revoked: the `CRLReason` of RFC 5280 section 5.3.1.
///
/// GnuTLS has no API for entry reason codes; this library reads and writes the
/// reasonCode entry extension (2.5.29.21) itself.
public struct RevocationReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible, CaseIterable {
    /// The `CRLReason` ENUMERATED value.
    public let rawValue: Int

    /// A reason from its `CRLReason` value; `nil` for 7 (unused) and values outside 0…10.
    public init?(rawValue: Int) {
        guard Self.names.indices.contains(rawValue), !Self.names[rawValue].isEmpty else { return nil }
        self.rawValue = rawValue
    }

    /// A reason from its RFC 5280 name (`keyCompromise`, `superseded`, …), ignoring case.
    public init?(name: String) {
        guard let index = Self.names.firstIndex(where: { !$0.isEmpty && $0.caseInsensitiveCompare(name) == .orderedSame }) else {
            return nil
        }
        self.rawValue = index
    }

    private init(_ value: Int) { rawValue = value }

    // Index = CRLReason value; 7 is not used.
    private static let names = [
        "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
        "cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise",
    ]

    /// The RFC 5280 name.
    public var name: String { Self.names[rawValue] }
    public var description: String { name }

    /// unspecified (0). CRLs this library issues omit the extension for it (RFC 5280: SHOULD be absent).
    public static let unspecified = RevocationReason(0)
    /// keyCompromise (1).
    public static let keyCompromise = RevocationReason(1)
    /// cACompromise (2).
    public static let cACompromise = RevocationReason(2)
    /// affiliationChanged (3).
    public static let affiliationChanged = RevocationReason(3)
    /// superseded (4).
    public static let superseded = RevocationReason(4)
    /// cessationOfOperation (5).
    public static let cessationOfOperation = RevocationReason(5)
    /// certificateHold (6).
    public static let certificateHold = RevocationReason(6)
    /// removeFromCRL (8): only in delta CRLs.
    public static let removeFromCRL = RevocationReason(8)
    /// privilegeWithdrawn (9).
    public static let privilegeWithdrawn = RevocationReason(9)
    /// aACompromise (10).
    public static let aACompromise = RevocationReason(10)

    public static let allCases: [RevocationReason] = [
        .unspecified, .keyCompromise, .cACompromise, .affiliationChanged, .superseded, .cessationOfOperation,
        .certificateHold, .removeFromCRL, .privilegeWithdrawn, .aACompromise,
    ]
}

/// An X.509 certificate revocation list (RFC 5280 section 5): an immutable value whose
/// truth is its DER encoding, parsed through GnuTLS when the value is made (entry reason
/// codes, which GnuTLS does not expose, are decoded from the DER with swift-asn1).
///
/// Equality and hashing are by DER.
///
/// ```swift
/// let crl = try CertificateRevocationList(pemEncoded: text)
/// guard crl.isSigned(by: issuingCA) else { … }
/// if let entry = crl.entry(for: leaf.serialNumber) { print("revoked on \(entry.revocationDate): \(entry.reason ?? .unspecified)") }
/// ```
public struct CertificateRevocationList: Hashable, Sendable, CustomStringConvertible {
    /// One revoked certificate.
    public struct Entry: Hashable, Sendable, CustomStringConvertible {
        /// The revoked certificate's serial number.
        public var serialNumber: SerialNumber
        /// When it was revoked (second precision).
        public var revocationDate: Date
        /// The reason code entry extension; `nil` when absent (which means unspecified).
        public var reason: RevocationReason?

        /// An entry for a CRL.
        public init(serialNumber: SerialNumber, revocationDate: Date, reason: RevocationReason? = nil) {
            self.serialNumber = serialNumber
            self.revocationDate = revocationDate
            self.reason = reason
        }

        public var description: String {
            "\(serialNumber) revoked \(revocationDate)" + (reason.map { " (\($0))" } ?? "")
        }
    }

    /// The DER encoding (`CertificateList`).
    public let derEncoded: [UInt8]
    /// The version: 2 for CRLs with extensions, 1 for old ones without.
    public let version: Int
    /// Who issued (and signed) the list.
    public let issuer: DistinguishedName
    /// When the list was issued.
    public let thisUpdate: Date
    /// When the next list will be issued, if said; the list is stale after it.
    public let nextUpdate: Date?
    /// The CRL number extension (big-endian integer bytes), when present.
    public let crlNumber: [UInt8]?
    /// The key identifier of the authority key identifier extension, when present.
    public let authorityKeyIdentifier: [UInt8]?
    /// How the issuer signed it.
    public let signatureAlgorithm: SignatureAlgorithm
    /// Every CRL extension, in order, as encoded.
    public let extensions: [CertificateExtension]
    /// The revoked certificates, in list order.
    public let entries: [Entry]
    private let index: [SerialNumber: Int]
    private var signatureCache = SignatureCache()

    /// The CRL number as an `Int`, when present and small enough.
    public var number: Int? {
        guard let crlNumber else { return nil }
        let bytes = crlNumber.drop { $0 == 0 }
        guard bytes.count <= 7 else { return nil }
        return bytes.reduce(0) { $0 << 8 | Int($1) }
    }

    /// Parses one DER CRL.
    /// - Throws: ``GnuTLSError`` `.malformedDER` (or `.unexpectedObject` for a certificate).
    public init(derEncoded der: [UInt8]) throws {
        let handle: CRLHandle
        let fields: CoreCRLFields
        do {
            handle = try CRLHandle(der: der)
            fields = try handle.fields()
        } catch let error as GnuTLSError where error.code == .malformedDER {
            if (try? CertificateHandle(der: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a CRL, found a certificate")
            }
            throw error
        }
        let reasons = try CRLEntryReasons.read(der)
        guard reasons.count == fields.entries.count else {
            throw GnuTLSError(.malformedDER, "CRL lists \(fields.entries.count) revoked certificates, but \(reasons.count) entries were decoded")
        }
        var entries: [Entry] = []
        var index: [SerialNumber: Int] = [:]
        entries.reserveCapacity(fields.entries.count)
        for (entry, decoded) in zip(fields.entries, reasons) {
            let serial = SerialNumber(bytes: entry.serial)
            guard serial == decoded.serial else {
                throw GnuTLSError(.malformedDER, "CRL entry \(entries.count) has serial \(serial) in GnuTLS but \(decoded.serial) in the DER")
            }
            if index[serial] == nil { index[serial] = entries.count }
            entries.append(Entry(serialNumber: serial, revocationDate: Date(timeIntervalSince1970: TimeInterval(entry.revocationTime)),
                                 reason: decoded.reason))
        }
        derEncoded = der
        version = fields.version
        issuer = try DistinguishedName(derEncoded: fields.issuerDN)
        thisUpdate = Date(timeIntervalSince1970: TimeInterval(fields.thisUpdate))
        nextUpdate = fields.nextUpdate.map { Date(timeIntervalSince1970: TimeInterval($0)) }
        crlNumber = fields.number
        authorityKeyIdentifier = fields.authorityKeyIdentifier
        signatureAlgorithm = SignatureAlgorithm(name: fields.signatureAlgorithmName, oid: fields.signatureAlgorithmOID)
        extensions = fields.extensions.map { CertificateExtension(oid: $0.oid, critical: $0.critical, value: $0.value) }
        self.entries = entries
        self.index = index
    }

    /// Parses a PEM text holding exactly one `X509 CRL` block.
    public init(pemEncoded text: String) throws {
        let all = try Self.parseAll(pemEncoded: text)
        guard all.count == 1 else {
            throw GnuTLSError(.unexpectedObject, "expected one CRL, found \(all.count)")
        }
        self = all[0]
    }

    /// Parses every `X509 CRL` block of a PEM bundle, in order.
    /// - Throws: `.malformedPEM`, `.malformedDER`, or `.unexpectedObject` when the text holds no CRL.
    public static func parseAll(pemEncoded text: String) throws -> [CertificateRevocationList] {
        let blocks = try PEMBlock.parseAll(text)
        let crls = blocks.filter { $0.label == "X509 CRL" }
        guard !crls.isEmpty else {
            throw GnuTLSError(.unexpectedObject, "expected a CRL (X509 CRL PEM block), found \(KeyPair.describe(labels: blocks.map(\.label).joined(separator: ", ")))")
        }
        return try crls.map { try CertificateRevocationList(derEncoded: $0.derBytes) }
    }

    /// Parses PEM (one or more CRLs) or DER (one CRL) bytes.
    public static func parseAll(bytes: [UInt8]) throws -> [CertificateRevocationList] {
        PEMBlock.looksLikePEM(bytes)
            ? try parseAll(pemEncoded: String(decoding: bytes, as: UTF8.self))
            : [try CertificateRevocationList(derEncoded: bytes)]
    }

    /// Reads a CRL file or bundle (PEM or DER).
    public static func load(contentsOfFile path: String) throws -> [CertificateRevocationList] {
        try parseAll(bytes: FileIO.read(path))
    }

    /// The `X509 CRL` PEM block.
    public var pemEncoded: String { PEMBlock(label: "X509 CRL", derBytes: derEncoded).pemString }

    /// The entry for `serial`, if the list revokes it.
    public func entry(for serial: SerialNumber) -> Entry? {
        index[serial].map { entries[$0] }
    }

    /// Whether the list names `issuer`'s subject as its issuer and its signature verifies
    /// with `issuer`'s public key (`gnutls_x509_crl_verify`). Dates are not checked here.
    ///
    /// The answer is remembered per issuer for the life of this value (and its copies): a
    /// large CRL is verified once, not on every revocation lookup.
    public func isSigned(by issuer: Certificate) -> Bool {
        if let known = signatureCache.answer(for: issuer.derEncoded) { return known }
        guard let crl = try? CRLHandle(der: derEncoded), let ca = try? CertificateHandle(der: issuer.derEncoded),
              let result = try? crl.verify(issuer: ca) else {
            signatureCache.remember(false, for: issuer.derEncoded)
            return false
        }
        signatureCache.remember(result.signatureValid, for: issuer.derEncoded)
        return result.signatureValid
    }

    /// Whether the list is past its nextUpdate at `date` (a list without nextUpdate never is).
    public func isStale(at date: Date = Date()) -> Bool {
        nextUpdate.map { $0 < date } ?? false
    }

    public static func == (lhs: CertificateRevocationList, rhs: CertificateRevocationList) -> Bool { lhs.derEncoded == rhs.derEncoded }
    public func hash(into hasher: inout Hasher) { hasher.combine(derEncoded) }

    public var description: String {
        "CertificateRevocationList(issuer: \(issuer), number: \(crlNumber.map { SerialNumber(bytes: $0).description } ?? "none"), thisUpdate: \(thisUpdate), entries: \(entries.count))"
    }
}

// MARK: - Issuing

extension CertificateRevocationList {
    /// Issues a version 2 CRL signed by `key` for the CA `issuer`: issuer name, this and next
    /// update, CRL number, authority key identifier, and the entries with their revocation
    /// dates and reason codes (omitted for `nil` and `.unspecified`, as RFC 5280 asks).
    ///
    /// GnuTLS cannot write entry reason codes, so the `TBSCertList` is built in DER with
    /// swift-asn1, signed through GnuTLS, and the result parsed back through GnuTLS.
    ///
    /// - Parameters:
    ///   - number: the CRL number, positive and monotonic per issuer (a ledger hands them out).
    /// - Throws: ``GnuTLSError`` `.invalidArgument` when `key` is not `issuer`'s key or the
    ///   dates are inconsistent.
    ///   - authorityKeyIdentifier: the key identifier to write; the issuer's subject key
    ///     identifier (or its key's identifier) by default.
    public static func create(
        issuer: Certificate, key: any SigningKey, number: SerialNumber, thisUpdate: Date = Date(),
        nextUpdate: Date?, entries: [Entry], authorityKeyIdentifier: [UInt8]? = nil
    ) throws -> CertificateRevocationList {
        guard key.publicKey.derEncoded == issuer.publicKey.derEncoded else {
            throw GnuTLSError(.invalidArgument, "the signing key does not match the public key of CRL issuer '\(issuer.subject)'")
        }
        if let nextUpdate, nextUpdate <= thisUpdate {
            throw GnuTLSError(.invalidArgument, "a CRL's nextUpdate (\(nextUpdate)) must be after its thisUpdate (\(thisUpdate))")
        }
        guard number.bytes.count <= 20, number.bytes != [0] else {
            throw GnuTLSError(.invalidArgument, "a CRL number must be positive and at most 20 octets (RFC 5280 section 5.2.3)")
        }
        let issuerName = try CRLEncoding.subjectDER(of: issuer)
        let keyIdentifier = authorityKeyIdentifier ?? issuer.subjectKeyIdentifier ?? issuer.publicKey.keyIdentifier
        let handle = key.signingBackend.handle
        // The signed part names the signature algorithm too, so ask the key for it first.
        let algorithm = try handle.x509SignatureAlgorithm()
        let tbs = try CRLEncoding.tbsCertList(
            algorithmOID: algorithm.oid, nullParameters: algorithm.parametersAreNull,
            issuerName: issuerName, thisUpdate: thisUpdate, nextUpdate: nextUpdate,
            entries: entries, number: number, authorityKeyIdentifier: keyIdentifier)
        let signed = try handle.signX509(tbs)
        let der = try CRLEncoding.certificateList(
            tbs: tbs, algorithmOID: signed.algorithmOID, nullParameters: signed.parametersAreNull, signature: signed.signature)
        return try CertificateRevocationList(derEncoded: der)
    }
}

/// What ``CertificateRevocationList/isSigned(by:)`` found, per issuer certificate (by DER).
/// A reference shared by copies of one CRL value; not part of its equality.
private final class SignatureCache: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var answers: [[UInt8]: Bool] = [:]

    func answer(for issuer: [UInt8]) -> Bool? { lock.withLock { answers[issuer] } }
    func remember(_ answer: Bool, for issuer: [UInt8]) { lock.withLock { answers[issuer] = answer } }
}

/// The DER of CRLs, written and read with swift-asn1 (RFC 5280 section 5.1).
enum CRLEncoding {
    static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]
    static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]
    static let authorityKeyIdentifierOID: ASN1ObjectIdentifier = [2, 5, 29, 35]

    /// The exact DER of a certificate's subject `Name`, as encoded in the certificate.
    static func subjectDER(of certificate: Certificate) throws -> [UInt8] {
        guard let tbs = try DERReader.children(of: certificate.derEncoded).first else {
            throw GnuTLSError(.malformedDER, "certificate has no tbsCertificate")
        }
        let fields = tbs.children
        // [0] version is optional; then serial, signature, issuer, validity, subject.
        let offset = fields.first?.tag == 0xA0 ? 1 : 0
        guard fields.count > offset + 4, fields[offset + 4].tag == 0x30 else {
            throw GnuTLSError(.malformedDER, "certificate has no subject")
        }
        return fields[offset + 4].encoded
    }

    /// UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 section 5.1.2.4).
    static func serializeTime(_ date: Date, into coder: inout DER.Serializer) throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let (year, month, day) = (c.year!, c.month!, c.day!)
        let (hours, minutes, seconds) = (c.hour!, c.minute!, c.second!)
        if (1950..<2050).contains(year) {
            try coder.serialize(UTCTime(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds))
        } else {
            try coder.serialize(GeneralizedTime(year: year, month: month, day: day, hours: hours, minutes: minutes,
                                                seconds: seconds, fractionalSeconds: 0))
        }
    }

    static func algorithmIdentifier(_ oid: String, nullParameters: Bool, into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(ASN1ObjectIdentifier(dotRepresentation: oid))
            if nullParameters { try coder.serialize(ASN1Null()) }
        }
    }

    /// `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }`,
    /// non-critical (the DEFAULT is omitted, as DER requires).
    static func nonCriticalExtension(_ oid: ASN1ObjectIdentifier, value: (inout DER.Serializer) throws -> Void,
                                     into coder: inout DER.Serializer) throws {
        var inner = DER.Serializer()
        try value(&inner)
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(oid)
            try coder.serialize(ASN1OctetString(contentBytes: inner.serializedBytes[...]))
        }
    }

    static func tbsCertList(
        algorithmOID: String, nullParameters: Bool, issuerName: [UInt8], thisUpdate: Date, nextUpdate: Date?,
        entries: [CertificateRevocationList.Entry], number: SerialNumber, authorityKeyIdentifier: [UInt8]
    ) throws -> [UInt8] {
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            try algorithmIdentifier(algorithmOID, nullParameters: nullParameters, into: &coder)
            coder.serializeRawBytes(issuerName)
            try serializeTime(thisUpdate, into: &coder)
            if let nextUpdate { try serializeTime(nextUpdate, into: &coder) }
            // RFC 5280 section 5.1.2.6: when there are no revoked certificates, the list is absent.
            if !entries.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    for entry in entries {
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try coder.serialize(ArraySlice(entry.serialNumber.bytes))
                            try serializeTime(entry.revocationDate, into: &coder)
                            if let reason = entry.reason, reason != .unspecified {
                                try coder.appendConstructedNode(identifier: .sequence) { coder in
                                    try nonCriticalExtension(reasonCodeOID, value: { value in
                                        try reason.rawValue.serialize(into: &value, withIdentifier: .enumerated)
                                    }, into: &coder)
                                }
                            }
                        }
                    }
                }
            }
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try nonCriticalExtension(authorityKeyIdentifierOID, value: { value in
                        try value.appendConstructedNode(identifier: .sequence) { value in
                            // keyIdentifier [0] IMPLICIT OCTET STRING
                            try ASN1OctetString(contentBytes: authorityKeyIdentifier[...])
                                .serialize(into: &value, withIdentifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific))
                        }
                    }, into: &coder)
                    try nonCriticalExtension(crlNumberOID, value: { value in
                        try value.serialize(ArraySlice(number.bytes))
                    }, into: &coder)
                }
            }
        }
        return coder.serializedBytes
    }

    static func certificateList(tbs: [UInt8], algorithmOID: String, nullParameters: Bool, signature: [UInt8]) throws -> [UInt8] {
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs)
            try algorithmIdentifier(algorithmOID, nullParameters: nullParameters, into: &coder)
            try coder.serialize(ASN1BitString(bytes: signature[...]))
        }
        return coder.serializedBytes
    }
}

/// The serial and reason code of each entry, read from the DER with swift-asn1 because
/// GnuTLS does not expose CRL entry extensions.
enum CRLEntryReasons {
    struct Decoded {
        var serial: SerialNumber
        var reason: RevocationReason?
    }

    static func read(_ der: [UInt8]) throws -> [Decoded] {
        do {
            let list = try children(of: DER.parse(der))
            guard let tbsNode = list.first else { throw GnuTLSError(.malformedDER, "CRL has no tbsCertList") }
            let nodes = try children(of: tbsNode)
            // version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate Time OPTIONAL,
            // revokedCertificates SEQUENCE OF OPTIONAL, [0] crlExtensions OPTIONAL.
            var position = (nodes.first?.identifier == .integer ? 1 : 0) + 3
            if position < nodes.count, [.utcTime, .generalizedTime].contains(nodes[position].identifier) { position += 1 }
            guard position < nodes.count, nodes[position].identifier == .sequence else { return [] }
            return try children(of: nodes[position]).map(entry)
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw GnuTLSError(.malformedDER, "CRL entries cannot be decoded: \(error)")
        }
    }

    /// The elements of a SEQUENCE (OF).
    private static func children(of node: ASN1Node) throws -> [ASN1Node] {
        try DER.sequence(node, identifier: .sequence) { iterator in
            var nodes: [ASN1Node] = []
            while let child = iterator.next() { nodes.append(child) }
            return nodes
        }
    }

    private static func entry(_ node: ASN1Node) throws -> Decoded {
        try DER.sequence(node, identifier: .sequence) { fields in
            guard let serialNode = fields.next(), fields.next() != nil else {
                throw GnuTLSError(.malformedDER, "a CRL entry lacks its serial or revocation date")
            }
            let serial = SerialNumber(bytes: Array(try ArraySlice<UInt8>(derEncoded: serialNode)))
            var reason: RevocationReason?
            if let extensionsNode = fields.next() {
                for extensionNode in try children(of: extensionsNode) {
                    try DER.sequence(extensionNode, identifier: .sequence) { ext in
                        guard let oidNode = ext.next() else { throw GnuTLSError(.malformedDER, "a CRL entry extension has no OID") }
                        let oid = try ASN1ObjectIdentifier(derEncoded: oidNode)
                        var valueNode = ext.next()
                        if valueNode?.identifier == .boolean { valueNode = ext.next() }
                        guard let valueNode else { throw GnuTLSError(.malformedDER, "CRL entry extension \(oid) has no value") }
                        guard oid == CRLEncoding.reasonCodeOID else { return }
                        let value = try ASN1OctetString(derEncoded: valueNode)
                        let code = try Int(derEncoded: try DER.parse(value.bytes), withIdentifier: .enumerated)
                        guard let decoded = RevocationReason(rawValue: code) else {
                            throw GnuTLSError(.malformedDER, "CRL entry for serial \(serial) has an invalid reason code \(code)")
                        }
                        reason = decoded
                    }
                }
            }
            return Decoded(serial: serial, reason: reason)
        }
    }
}
