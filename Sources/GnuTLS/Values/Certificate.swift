import Foundation
import Synchronization
import GnuTLSCore
import SwiftASN1

/// A certificate serial number: a positive integer of up to 20 octets.
public struct SerialNumber: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The big-endian bytes, without a leading zero.
    public let bytes: [UInt8]
    /// A serial number from big-endian bytes (leading zeros are dropped).
    public init(bytes: [UInt8]) {
        let trimmed = Array(bytes.drop { $0 == 0 })
        self.bytes = trimmed.isEmpty ? [0] : trimmed
    }
    /// Parses hex (`0a1b…`, colons allowed).
    public init?(hex: String) {
        // Colons go first: "0a:1b" has an odd length but an even number of digits.
        let digits = hex.filter { $0 != ":" }
        guard let bytes = [UInt8](hex: digits.count % 2 == 1 ? "0" + digits : digits), !bytes.isEmpty else { return nil }
        self.init(bytes: bytes)
    }
    /// Lower-case hex.
    public var hexString: String { bytes.hexString }
    /// A readable form, for logs and messages.
    public var description: String { bytes.colonHex.lowercased() }
    /// Orders serial numbers by their bytes as an unsigned big-endian integer.
    public static func < (lhs: SerialNumber, rhs: SerialNumber) -> Bool {
        lhs.bytes.count != rhs.bytes.count ? lhs.bytes.count < rhs.bytes.count : lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// A signature algorithm: GnuTLS's name (`ECDSA-SHA256`, `RSA-SHA256`, `EdDSA-Ed25519`) and OID.
public struct SignatureAlgorithm: Hashable, Sendable, CustomStringConvertible {
    /// GnuTLS's name, or the OID when GnuTLS does not know the algorithm.
    public var name: String
    /// The dotted OID.
    public var oid: String
    /// A readable form, for logs and messages.
    public var description: String { name }
    /// Whether the algorithm hashes with SHA-1 or MD5 (refused by the MEDIUM profile).
    public var isInsecure: Bool {
        ["1.2.840.113549.1.1.5", "1.2.840.113549.1.1.4", "1.2.840.10045.4.1", "1.2.840.10040.4.3", "1.2.840.113549.1.1.2"].contains(oid)
    }
}

/// One X.509 extension as encoded.
public struct CertificateExtension: Hashable, Sendable {
    /// The extension OID.
    public var oid: String
    /// Whether it is marked critical.
    public var critical: Bool
    /// The DER of the extension value (the contents of `extnValue`).
    public var value: [UInt8]
}

/// The basic constraints extension.
public struct BasicConstraints: Hashable, Sendable, CustomStringConvertible {
    /// Whether the subject is a CA.
    public var isCertificateAuthority: Bool
    /// The maximum number of intermediate CAs that may follow this one, if limited.
    public var pathLengthConstraint: Int?
    /// A readable form, for logs and messages.
    public var description: String {
        isCertificateAuthority ? "CA:TRUE" + (pathLengthConstraint.map { ", pathlen:\($0)" } ?? "") : "CA:FALSE"
    }
}

/// The extensions both certificates and requests carry, decoded.
struct DecodedExtensions: Sendable, Hashable {
    var subjectAlternativeNames: [GeneralName] = []
    var basicConstraints: BasicConstraints?
    var keyUsage: KeyUsage?
    var extendedKeyUsage: [ExtendedKeyUsage]?
    var subjectKeyIdentifier: [UInt8]?
    var authorityKeyIdentifier: [UInt8]?
    var crlDistributionPoints: [GeneralName] = []
    var ocspURLs: [String] = []
    var caIssuerURLs: [String] = []
    var nameConstraints: NameConstraints?

    init(_ extensions: [CoreExtension]) throws {
        var seen = Set<String>()
        for ext in extensions {
            guard seen.insert(ext.oid).inserted else {
                throw GnuTLSError(.malformedDER, "extension \(ext.oid) appears twice (RFC 5280 section 4.2)")
            }
            switch ext.oid {
            case ExtensionOID.subjectAlternativeName:
                subjectAlternativeNames = try ExtensionCodec.subjectAlternativeNames(ext.value).map(GeneralName.init)
            case ExtensionOID.basicConstraints:
                let (isCA, pathLength) = try ExtensionCodec.basicConstraints(ext.value)
                basicConstraints = BasicConstraints(isCertificateAuthority: isCA, pathLengthConstraint: pathLength)
            case ExtensionOID.keyUsage:
                keyUsage = KeyUsage(rawValue: try ExtensionCodec.keyUsage(ext.value))
            case ExtensionOID.extendedKeyUsage:
                extendedKeyUsage = try ExtensionCodec.extendedKeyUsage(ext.value).map(ExtendedKeyUsage.init(oid:))
            case ExtensionOID.subjectKeyIdentifier:
                subjectKeyIdentifier = try ExtensionCodec.subjectKeyIdentifier(ext.value)
            case ExtensionOID.authorityKeyIdentifier:
                authorityKeyIdentifier = try ExtensionCodec.authorityKeyIdentifier(ext.value)
            case ExtensionOID.crlDistributionPoints:
                crlDistributionPoints = try ExtensionCodec.crlDistributionPoints(ext.value).map(GeneralName.init)
            case ExtensionOID.authorityInformationAccess:
                for (method, location) in try ExtensionCodec.authorityInformationAccess(ext.value) {
                    guard case .uri(let url) = location else { continue }
                    if method == "1.3.6.1.5.5.7.48.1" { ocspURLs.append(url) }
                    if method == "1.3.6.1.5.5.7.48.2" { caIssuerURLs.append(url) }
                }
            case ExtensionOID.nameConstraints:
                nameConstraints = try NameConstraints(derEncoded: ext.value)
            default:
                break
            }
        }
    }
}

/// An X.509 certificate: an immutable value whose truth is its DER encoding, with every
/// field this library uses parsed once, when the value is made.
///
/// Equality and hashing are by DER.
public struct Certificate: Hashable, Sendable, CustomStringConvertible {
    /// The parsed fields, shared by every copy of the value: a copy is one reference, and
    /// certificates from the verifier's memo are one object however often they are seen.
    private final class Storage: Sendable {
        let derEncoded: [UInt8]
        let version: Int
        let serialNumber: SerialNumber
        let subject: DistinguishedName
        let issuer: DistinguishedName
        let notValidBefore: Date
        let notValidAfter: Date
        let publicKey: PublicKey
        let signatureAlgorithm: SignatureAlgorithm
        let extensions: [CertificateExtension]
        let decoded: DecodedExtensions
        /// The RFC 5280 profile checks (`PathValidation.checkProfile`) that found nothing,
        /// one bit per combination of their flags: a pure function of the certificate.
        let cleanProfiles = Atomic<UInt8>(0)

        init(der: [UInt8], fields: CoreCertificateFields) throws {
            derEncoded = der
            version = fields.version
            serialNumber = SerialNumber(bytes: fields.serial)
            subject = try DistinguishedName(derEncoded: fields.subjectDN)
            issuer = try DistinguishedName(derEncoded: fields.issuerDN)
            notValidBefore = Date(timeIntervalSince1970: TimeInterval(fields.notBefore))
            notValidAfter = Date(timeIntervalSince1970: TimeInterval(fields.notAfter))
            publicKey = PublicKey(spki: fields.spki, kind: fields.publicKeyKind)
            signatureAlgorithm = SignatureAlgorithm(name: fields.signatureAlgorithmName, oid: fields.signatureAlgorithmOID)
            extensions = fields.extensions.map { CertificateExtension(oid: $0.oid, critical: $0.critical, value: $0.value) }
            decoded = try DecodedExtensions(fields.extensions)
        }
    }

    private let storage: Storage

    /// The DER encoding.
    public var derEncoded: [UInt8] { storage.derEncoded }
    /// The version (3 for every modern certificate).
    public var version: Int { storage.version }
    /// The serial number.
    public var serialNumber: SerialNumber { storage.serialNumber }
    /// Who the certificate is about.
    public var subject: DistinguishedName { storage.subject }
    /// Who signed it.
    public var issuer: DistinguishedName { storage.issuer }
    /// Start of the validity period.
    public var notValidBefore: Date { storage.notValidBefore }
    /// End of the validity period.
    public var notValidAfter: Date { storage.notValidAfter }
    /// The subject's public key.
    public var publicKey: PublicKey { storage.publicKey }
    /// How the issuer signed it.
    public var signatureAlgorithm: SignatureAlgorithm { storage.signatureAlgorithm }
    /// Every extension, in order, as encoded.
    public var extensions: [CertificateExtension] { storage.extensions }
    var decoded: DecodedExtensions { storage.decoded }

    /// Whether the profile check with `flags` (0-7) found nothing on this certificate before.
    func profileWasClean(_ flags: UInt8) -> Bool {
        storage.cleanProfiles.load(ordering: .relaxed) & (1 << flags) != 0
    }

    /// Remembers that the profile check with `flags` (0-7) found nothing.
    func rememberCleanProfile(_ flags: UInt8) {
        storage.cleanProfiles.bitwiseOr(1 << flags, ordering: .relaxed)
    }

    /// Parses one DER certificate.
    /// - Throws: ``GnuTLSError`` `.malformedDER` (or `.unexpectedObject` for a key or request).
    public init(derEncoded der: [UInt8]) throws {
        let fields: CoreCertificateFields
        do {
            fields = try CertificateHandle(der: der).fields()
        } catch let error as GnuTLSError where error.code == .malformedDER {
            if (try? RequestHandle(der: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a certificate, found a certificate request")
            }
            throw error
        }
        storage = try Storage(der: der, fields: fields)
    }

    /// Parses a PEM text holding exactly one certificate.
    public init(pemEncoded text: String) throws {
        let chain = try Certificate.parseChain(pemEncoded: text)
        guard chain.count == 1 else {
            throw GnuTLSError(.unexpectedObject, "expected one certificate, found \(chain.count)")
        }
        self = chain[0]
    }

    /// Parses every `CERTIFICATE` block of a PEM bundle, in order.
    /// - Throws: `.malformedPEM`, `.malformedDER`, or `.unexpectedObject` when the text holds
    ///   no certificate (a key, say).
    public static func parseChain(pemEncoded text: String) throws -> [Certificate] {
        let blocks = try PEMBlock.parseAll(text)
        let certificates = blocks.filter { $0.label == "CERTIFICATE" || $0.label == "X509 CERTIFICATE" || $0.label == "TRUSTED CERTIFICATE" }
        guard !certificates.isEmpty else {
            throw GnuTLSError(.unexpectedObject, "expected a certificate, found \(KeyPair.describe(labels: blocks.map(\.label).joined(separator: ", ")))")
        }
        return try certificates.map {
            try Certificate(derEncoded: $0.label == "TRUSTED CERTIFICATE" ? certificatePart(ofTrusted: $0.derBytes) : $0.derBytes)
        }
    }

    /// OpenSSL's `TRUSTED CERTIFICATE` holds the certificate followed by its trust settings
    /// (`X509_CERT_AUX`); the certificate is the first of the two DER elements. The trust
    /// settings are not kept.
    static func certificatePart(ofTrusted bytes: [UInt8]) throws -> [UInt8] {
        do {
            // Wrapped in a SEQUENCE, the two elements parse as its children.
            guard let certificate = try DERReader.children(of: DERWriter.element(tag: 0x30, content: bytes)).first else {
                throw GnuTLSError(.malformedDER, "TRUSTED CERTIFICATE block is empty")
            }
            return certificate.encoded
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw GnuTLSError(.malformedDER, "TRUSTED CERTIFICATE block is not DER: \(error)")
        }
    }

    /// Parses PEM (one or more certificates) or DER (one certificate) bytes.
    public static func parseChain(bytes: [UInt8]) throws -> [Certificate] {
        PEMBlock.looksLikePEM(bytes)
            ? try parseChain(pemEncoded: String(decoding: bytes, as: UTF8.self))
            : [try Certificate(derEncoded: bytes)]
    }

    /// Reads a certificate file or bundle (PEM or DER).
    public static func load(contentsOfFile path: String) throws -> [Certificate] {
        try parseChain(bytes: FileIO.read(path))
    }

    /// The `CERTIFICATE` PEM block.
    public var pemEncoded: String { PEMBlock(label: "CERTIFICATE", derBytes: derEncoded).pemString }

    /// SHA-256 of the DER encoding.
    public var sha256Fingerprint: [UInt8] { CoreCrypto.sha256(derEncoded) }

    /// Subject alternative names, in order.
    public var subjectAlternativeNames: [GeneralName] { decoded.subjectAlternativeNames }
    /// The DNS names among the alternative names.
    public var dnsNames: [String] { subjectAlternativeNames.compactMap(\.dnsName) }
    /// The IP addresses among the alternative names.
    public var ipAddresses: [IPAddress] { subjectAlternativeNames.compactMap(\.ipAddress) }
    /// Basic constraints, when present.
    public var basicConstraints: BasicConstraints? { decoded.basicConstraints }
    /// Whether basic constraints say this is a CA.
    public var isCertificateAuthority: Bool { decoded.basicConstraints?.isCertificateAuthority ?? false }
    /// Key usage, when present.
    public var keyUsage: KeyUsage? { decoded.keyUsage }
    /// Extended key usage purposes, when the extension is present.
    public var extendedKeyUsage: [ExtendedKeyUsage]? { decoded.extendedKeyUsage }
    /// The subject key identifier, when present.
    public var subjectKeyIdentifier: [UInt8]? { decoded.subjectKeyIdentifier }
    /// The key identifier of the authority key identifier extension, when present.
    public var authorityKeyIdentifier: [UInt8]? { decoded.authorityKeyIdentifier }
    /// CRL distribution point names (URIs, usually).
    public var crlDistributionPoints: [GeneralName] { decoded.crlDistributionPoints }
    /// OCSP responder URLs from authority information access.
    public var ocspURLs: [String] { decoded.ocspURLs }
    /// CA issuer URLs from authority information access.
    public var caIssuerURLs: [String] { decoded.caIssuerURLs }
    /// Name constraints, when present (CA certificates).
    public var nameConstraints: NameConstraints? { decoded.nameConstraints }
    /// Whether subject and issuer are the same name.
    public var isSelfIssued: Bool { subject == issuer }

    /// The extension with `oid`, if present.
    public func `extension`(oid: String) -> CertificateExtension? { extensions.first { $0.oid == oid } }

    /// Two certificates are equal when their DER encodings are.
    public static func == (lhs: Certificate, rhs: Certificate) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.derEncoded == rhs.storage.derEncoded
    }
    /// Hashes the DER encoding.
    public func hash(into hasher: inout Hasher) { hasher.combine(derEncoded) }

    /// A readable form, for logs and messages.
    public var description: String {
        "Certificate(subject: \(subject), issuer: \(issuer), serial: \(serialNumber), notAfter: \(notValidAfter))"
    }
}
