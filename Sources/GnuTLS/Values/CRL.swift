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
    /// A readable form, for logs and messages.
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

    /// Every reason code of RFC 5280, in code order.
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

        /// A readable form, for logs and messages.
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

    /// Parses one DER CRL with swift-asn1, in one linear pass: the `TBSCertList` once into
    /// its fields and a dictionary of serials (GnuTLS's `gnutls_x509_crl_import` is
    /// quadratic in the number of entries, so no path hands a CRL to it).
    /// - Throws: ``GnuTLSError`` `.malformedDER` (or `.unexpectedObject` for a certificate).
    public init(derEncoded der: [UInt8]) throws {
        let decoded: CRLDecoding.Decoded
        do {
            decoded = try CRLDecoding.decode(der)
        } catch let error as GnuTLSError where error.code == .malformedDER {
            if (try? Certificate(derEncoded: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a CRL, found a certificate")
            }
            throw error
        }
        var index: [SerialNumber: Int] = [:]
        index.reserveCapacity(decoded.entries.count)
        for (position, entry) in decoded.entries.enumerated() where index[entry.serialNumber] == nil {
            index[entry.serialNumber] = position
        }
        derEncoded = der
        version = decoded.version
        issuer = decoded.issuer
        thisUpdate = decoded.thisUpdate
        nextUpdate = decoded.nextUpdate
        extensions = decoded.extensions
        crlNumber = decoded.number
        authorityKeyIdentifier = decoded.authorityKeyIdentifier
        signatureAlgorithm = SignatureAlgorithm(name: CoreSignature.name(algorithmOID: decoded.signatureAlgorithmOID),
                                                oid: decoded.signatureAlgorithmOID)
        self.entries = decoded.entries
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
    /// with `issuer`'s public key: the `TBSCertList` bytes checked directly with
    /// `gnutls_pubkey_verify_data2` for the algorithm the CRL names (the same in its signed
    /// part and outside). Dates are not checked here.
    ///
    /// The answer is remembered per issuer for the life of this value (and its copies): a
    /// large CRL is verified once, not on every revocation lookup.
    public func isSigned(by issuer: Certificate) -> Bool {
        if let known = signatureCache.answer(for: issuer.derEncoded) { return known }
        let answer: Bool
        if self.issuer.matches(issuer.subject), let parts = SignedParts(derEncoded), parts.outerAlgorithm == parts.innerAlgorithm {
            answer = CoreSignature.verify(spki: issuer.publicKey.derEncoded, algorithmOID: signatureAlgorithm.oid,
                                          data: parts.tbs, signature: parts.signature) == .valid
        } else {
            answer = false
        }
        signatureCache.remember(answer, for: issuer.derEncoded)
        return answer
    }

    /// Whether the list is past its nextUpdate at `date` (a list without nextUpdate never is).
    public func isStale(at date: Date = Date()) -> Bool {
        nextUpdate.map { $0 < date } ?? false
    }

    /// Two CRLs are equal when their DER encodings are.
    public static func == (lhs: CertificateRevocationList, rhs: CertificateRevocationList) -> Bool { lhs.derEncoded == rhs.derEncoded }
    /// Hashes the DER encoding.
    public func hash(into hasher: inout Hasher) { hasher.combine(derEncoded) }

    /// A readable form, for logs and messages.
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
    ///   - issuer: the CA certificate whose revocations the CRL lists.
    ///   - key: the issuer's signing key.
    ///   - number: the CRL number, positive and monotonic per issuer (a ledger hands them out).
    ///   - thisUpdate: when the CRL is issued; now by default.
    ///   - nextUpdate: when the next CRL is due (`nil`: none promised).
    ///   - entries: the revoked serials with their dates and reasons.
    ///   - authorityKeyIdentifier: the key identifier to write; the issuer's subject key
    ///     identifier (or its key's identifier) by default.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` when `key` is not `issuer`'s key or the
    ///   dates are inconsistent.
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
        let handle = try coreKeyHandle(for: key)
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
package enum CRLEncoding {
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
        let c = UTCCalendar.components(of: date)
        if (1950..<2050).contains(c.year) {
            try coder.serialize(UTCTime(year: c.year, month: c.month, day: c.day, hours: c.hours, minutes: c.minutes, seconds: c.seconds))
        } else {
            try coder.serialize(GeneralizedTime(year: c.year, month: c.month, day: c.day, hours: c.hours, minutes: c.minutes,
                                                seconds: c.seconds, fractionalSeconds: 0))
        }
    }

    package static func algorithmIdentifier(_ oid: String, nullParameters: Bool, into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(ASN1ObjectIdentifier(dotRepresentation: oid))
            if nullParameters { try coder.serialize(ASN1Null()) }
        }
    }

    /// `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }`,
    /// non-critical (the DEFAULT is omitted, as DER requires).
    package static func nonCriticalExtension(_ oid: ASN1ObjectIdentifier, value: (inout DER.Serializer) throws -> Void,
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


/// A CRL's DER read with swift-asn1 in one pass (RFC 5280 section 5.1): GnuTLS's importer
/// is quadratic in the number of entries, and it does not expose entry reason codes.
enum CRLDecoding {
    struct Decoded {
        var version: Int
        var signatureAlgorithmOID: String
        var issuer: DistinguishedName
        var thisUpdate: Date
        var nextUpdate: Date?
        var entries: [CertificateRevocationList.Entry]
        var extensions: [CertificateExtension]
        var number: [UInt8]?
        var authorityKeyIdentifier: [UInt8]?
    }

    static func decode(_ der: [UInt8]) throws -> Decoded {
        do {
            let root = try DER.parse(der)
            return try DER.sequence(root, identifier: .sequence) { top in
                // CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
                guard let tbsNode = top.next(), let algorithmNode = top.next(), let signatureNode = top.next(), top.next() == nil else {
                    throw GnuTLSError(.malformedDER, "a CRL is a SEQUENCE of tbsCertList, signatureAlgorithm and signatureValue")
                }
                _ = try algorithmOID(algorithmNode)
                _ = try ASN1BitString(derEncoded: signatureNode)
                return try tbsCertList(tbsNode)
            }
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw GnuTLSError(.malformedDER, "bytes are not a DER X.509 CRL: \(error)")
        }
    }

    /// TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature, issuer, thisUpdate,
    /// nextUpdate OPTIONAL, revokedCertificates SEQUENCE OF OPTIONAL, [0] crlExtensions OPTIONAL }
    private static func tbsCertList(_ node: ASN1Node) throws -> Decoded {
        try DER.sequence(node, identifier: .sequence) { fields in
            var next = fields.next()
            var version = 1
            if let node = next, node.identifier == .integer {
                let value = try Int(derEncoded: node)
                guard value == 0 || value == 1 else { throw GnuTLSError(.malformedDER, "CRL version \(value + 1) is not 1 or 2") }
                version = value + 1
                next = fields.next()
            }
            guard let algorithmNode = next else { throw GnuTLSError(.malformedDER, "CRL has no signature algorithm") }
            let algorithm = try algorithmOID(algorithmNode)
            guard let issuerNode = fields.next(), issuerNode.identifier == .sequence else {
                throw GnuTLSError(.malformedDER, "CRL has no issuer name")
            }
            let issuer = try DistinguishedName(derEncoded: Array(issuerNode.encodedBytes))
            guard let thisNode = fields.next(), let thisUpdate = try time(thisNode) else {
                throw GnuTLSError(.malformedDER, "CRL has no thisUpdate")
            }
            next = fields.next()
            var nextUpdate: Date?
            if let node = next, let date = try time(node) {
                nextUpdate = date
                next = fields.next()
            }
            var entries: [CertificateRevocationList.Entry] = []
            if let node = next, node.identifier == .sequence {
                entries = try DER.sequence(node, identifier: .sequence) { items in
                    var entries: [CertificateRevocationList.Entry] = []
                    while let item = items.next() { entries.append(try entry(item)) }
                    return entries
                }
                next = fields.next()
            }
            var extensions: [CertificateExtension] = []
            if let node = next, node.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                extensions = try DER.explicitlyTagged(node, tagNumber: 0, tagClass: .contextSpecific) { inner in
                    try DER.sequence(inner, identifier: .sequence) { items in
                        var extensions: [CertificateExtension] = []
                        while let item = items.next() { extensions.append(try self.extension(item)) }
                        return extensions
                    }
                }
                next = fields.next()
            }
            guard next == nil else { throw GnuTLSError(.malformedDER, "CRL has unexpected fields after its extensions") }
            var number: [UInt8]?
            var keyIdentifier: [UInt8]?
            for ext in extensions {
                if ext.oid == "2.5.29.20", number == nil {
                    number = Array(try ArraySlice<UInt8>(derEncoded: DER.parse(ext.value)))
                } else if ext.oid == "2.5.29.35", keyIdentifier == nil {
                    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL, … }
                    keyIdentifier = try DER.sequence(DER.parse(ext.value), identifier: .sequence) { parts in
                        guard let first = parts.next(), first.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) else { return nil }
                        return Array(try ASN1OctetString(derEncoded: first, withIdentifier: first.identifier).bytes)
                    }
                }
            }
            return Decoded(version: version, signatureAlgorithmOID: algorithm, issuer: issuer, thisUpdate: thisUpdate,
                           nextUpdate: nextUpdate, entries: entries, extensions: extensions, number: number,
                           authorityKeyIdentifier: keyIdentifier)
        }
    }

    /// The OID of an `AlgorithmIdentifier`, dotted.
    private static func algorithmOID(_ node: ASN1Node) throws -> String {
        try DER.sequence(node, identifier: .sequence) { parts in
            guard let oidNode = parts.next() else { throw GnuTLSError(.malformedDER, "an algorithm identifier has no OID") }
            _ = parts.next()
            return try ASN1ObjectIdentifier(derEncoded: oidNode).description
        }
    }

    /// A `Time` (UTCTime or GeneralizedTime) at second precision; `nil` for another element.
    private static func time(_ node: ASN1Node) throws -> Date? {
        switch node.identifier {
        case .utcTime:
            let t = try UTCTime(derEncoded: node)
            return UTCCalendar.date(year: t.year, month: t.month, day: t.day, hours: t.hours, minutes: t.minutes, seconds: t.seconds)
        case .generalizedTime:
            let t = try GeneralizedTime(derEncoded: node)
            return UTCCalendar.date(year: t.year, month: t.month, day: t.day, hours: t.hours, minutes: t.minutes, seconds: t.seconds)
        default:
            return nil
        }
    }

    /// revokedCertificate ::= SEQUENCE { userCertificate, revocationDate, crlEntryExtensions OPTIONAL }
    private static func entry(_ node: ASN1Node) throws -> CertificateRevocationList.Entry {
        try DER.sequence(node, identifier: .sequence) { fields in
            guard let serialNode = fields.next(), let dateNode = fields.next(), let date = try time(dateNode) else {
                throw GnuTLSError(.malformedDER, "a CRL entry lacks its serial or revocation date")
            }
            let serial = SerialNumber(bytes: Array(try ArraySlice<UInt8>(derEncoded: serialNode)))
            var reason: RevocationReason?
            if let extensionsNode = fields.next() {
                try DER.sequence(extensionsNode, identifier: .sequence) { items in
                    while let item = items.next() {
                        let ext = try self.extension(item)
                        guard ext.oid == "2.5.29.21" else { continue }
                        let code = try Int(derEncoded: try DER.parse(ext.value), withIdentifier: .enumerated)
                        guard let decoded = RevocationReason(rawValue: code) else {
                            throw GnuTLSError(.malformedDER, "CRL entry for serial \(serial) has an invalid reason code \(code)")
                        }
                        reason = decoded
                    }
                }
            }
            guard fields.next() == nil else { throw GnuTLSError(.malformedDER, "CRL entry for serial \(serial) has unexpected fields") }
            return CertificateRevocationList.Entry(serialNumber: serial, revocationDate: date, reason: reason)
        }
    }

    /// Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    private static func `extension`(_ node: ASN1Node) throws -> CertificateExtension {
        try DER.sequence(node, identifier: .sequence) { parts in
            guard let oidNode = parts.next() else { throw GnuTLSError(.malformedDER, "a CRL extension has no OID") }
            let oid = try ASN1ObjectIdentifier(derEncoded: oidNode)
            var valueNode = parts.next()
            var critical = false
            if let node = valueNode, node.identifier == .boolean {
                critical = try Bool(derEncoded: node)
                valueNode = parts.next()
            }
            guard let valueNode, parts.next() == nil else { throw GnuTLSError(.malformedDER, "CRL extension \(oid) has no value") }
            return CertificateExtension(oid: oid.description, critical: critical, value: Array(try ASN1OctetString(derEncoded: valueNode).bytes))
        }
    }
}

/// Proleptic Gregorian UTC date arithmetic without `Calendar` (which costs microseconds a
/// call: too slow for 100,000 CRL entries). Howard Hinnant's days-from-civil algorithms.
enum UTCCalendar {
    static func date(year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) -> Date {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hours * 3_600 + minutes * 60 + seconds))
    }

    /// The UTC fields of `date`, truncated to the second.
    static func components(of date: Date) -> (year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) {
        let total = Int(date.timeIntervalSince1970.rounded(.down))
        var days = total / 86_400
        var rest = total % 86_400
        if rest < 0 { rest += 86_400; days -= 1 }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day, rest / 3_600, rest % 3_600 / 60, rest % 60)
    }
}
