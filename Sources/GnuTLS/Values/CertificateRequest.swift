import Foundation
import GnuTLSCore

/// A PKCS#10 certificate request: subject, public key and requested extensions, signed by
/// the private key (proof of possession).
///
/// ```swift
/// let key = try KeyPair.generate()
/// let csr = try CertificateRequest.create(
///     subject: try DistinguishedName("CN=api.example.com"), key: key,
///     alternativeNames: [.dnsName("api.example.com")])
/// ```
public struct CertificateRequest: Hashable, Sendable, CustomStringConvertible {
    /// The DER encoding.
    public let derEncoded: [UInt8]
    /// The requested subject.
    public let subject: DistinguishedName
    /// The key to certify.
    public let publicKey: PublicKey
    /// How the request was signed.
    public let signatureAlgorithm: SignatureAlgorithm
    /// The challenge password attribute, when present.
    public let challengePassword: String?
    /// Whether the signature verifies with ``publicKey``.
    public let isSignatureValid: Bool
    /// Every requested extension, as encoded.
    public let requestedExtensions: [CertificateExtension]
    let decoded: DecodedExtensions

    /// Requested alternative names.
    public var subjectAlternativeNames: [GeneralName] { decoded.subjectAlternativeNames }
    /// Requested key usage.
    public var keyUsage: KeyUsage? { decoded.keyUsage }
    /// Requested extended key usage.
    public var extendedKeyUsage: [ExtendedKeyUsage]? { decoded.extendedKeyUsage }
    /// Requested basic constraints.
    public var basicConstraints: BasicConstraints? { decoded.basicConstraints }
    /// Whether the request asks to be a CA.
    public var requestsCertificateAuthority: Bool { decoded.basicConstraints?.isCertificateAuthority ?? false }

    /// Parses a DER request.
    /// - Throws: ``GnuTLSError`` `.malformedDER` or `.unexpectedObject`.
    public init(derEncoded der: [UInt8]) throws {
        let fields: CoreRequestFields
        do {
            fields = try RequestHandle(der: der).fields()
        } catch let error as GnuTLSError where error.code == .malformedDER {
            if (try? CertificateHandle(der: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a certificate request, found a certificate")
            }
            throw error
        }
        // CertificationRequest ::= SEQUENCE { CertificationRequestInfo ::= SEQUENCE { version, subject, … } … }
        let info = try DERReader.children(of: der)
        guard let requestInfo = info.first?.children, requestInfo.count >= 2 else {
            throw GnuTLSError(.malformedDER, "certificate request has no subject")
        }
        derEncoded = der
        subject = try DistinguishedName(derEncoded: requestInfo[1].encoded)
        publicKey = PublicKey(spki: fields.spki, kind: fields.publicKeyKind)
        signatureAlgorithm = SignatureAlgorithm(name: fields.signatureAlgorithmName, oid: fields.signatureAlgorithmOID)
        challengePassword = fields.challengePassword
        isSignatureValid = fields.signatureValid
        requestedExtensions = fields.extensions.map { CertificateExtension(oid: $0.oid, critical: $0.critical, value: $0.value) }
        decoded = try DecodedExtensions(fields.extensions)
    }

    /// Parses a PEM `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`).
    public init(pemEncoded text: String) throws {
        let blocks = try PEMBlock.parseAll(text)
        guard let block = blocks.first(where: { $0.label == "CERTIFICATE REQUEST" || $0.label == "NEW CERTIFICATE REQUEST" }) else {
            throw GnuTLSError(.unexpectedObject, "expected a certificate request, found \(KeyPair.describe(labels: blocks.map(\.label).joined(separator: ", ")))")
        }
        try self.init(derEncoded: block.derBytes)
    }

    /// Parses PEM or DER bytes.
    public init(bytes: [UInt8]) throws {
        if PEMBlock.looksLikePEM(bytes) {
            try self.init(pemEncoded: String(decoding: bytes, as: UTF8.self))
        } else {
            try self.init(derEncoded: bytes)
        }
    }

    /// Reads a request file (PEM or DER).
    public init(contentsOfFile path: String) throws {
        try self.init(bytes: FileIO.read(path))
    }

    /// Creates a request for `key`'s public key, signed by `key`.
    ///
    /// - Parameters:
    ///   - subject: the requested subject; may be empty when alternative names identify the subject.
    ///   - alternativeNames: DNS names, IP addresses, email addresses, URIs (SPIFFE IDs).
    ///   - key: the subject's key: its public key goes in the request, and it signs it.
    ///   - keyUsage: the key usage the subject asks for; the authority decides.
    ///   - extendedKeyUsage: the purposes the subject asks for; the authority decides.
    ///   - challengePassword: the PKCS#9 challenge password attribute.
    public static func create(
        subject: DistinguishedName, key: any SigningKey, alternativeNames: [GeneralName] = [],
        keyUsage: KeyUsage? = nil, extendedKeyUsage: [ExtendedKeyUsage] = [], challengePassword: String? = nil
    ) throws -> CertificateRequest {
        if subject.isEmpty && alternativeNames.isEmpty {
            throw GnuTLSError(.invalidArgument, "a certificate request needs a subject or at least one alternative name")
        }
        try AlternativeNames.validate(alternativeNames)
        let spec = CoreRequestSpec(
            subject: try subject.coreAttributes, alternativeNames: alternativeNames.map(\.core),
            keyUsage: keyUsage?.rawValue, extendedKeyUsage: extendedKeyUsage.map(\.rawValue),
            challengePassword: challengePassword)
        return try CertificateRequest(derEncoded: RequestHandle.create(spec, key: try coreKeyHandle(for: key)))
    }

    /// Throws `.signatureInvalid` unless the request is signed by the key it carries.
    public func verifySignature() throws {
        guard isSignatureValid else {
            throw GnuTLSError(.signatureInvalid, "certificate request for '\(subject)' is not signed by the key it carries (no proof of possession)")
        }
    }

    /// The `CERTIFICATE REQUEST` PEM block.
    public var pemEncoded: String { PEMBlock(label: "CERTIFICATE REQUEST", derBytes: derEncoded).pemString }

    /// A readable form, for logs and messages.
    public var description: String { "CertificateRequest(subject: \(subject), key: \(publicKey.keyDescription))" }
}

/// Checks on alternative names before they are written.
package enum AlternativeNames {
    package static func validate(_ names: [GeneralName]) throws {
        for name in names {
            switch name {
            case .dnsName(let dns):
                guard isValidDNSName(dns) else {
                    throw GnuTLSError(.invalidArgument, "'\(dns)' is not a valid DNS name for a certificate (letters, digits, hyphens, dots; a wildcard only as the whole first label)")
                }
            case .email(let email):
                let parts = email.split(separator: "@", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, isValidDNSName(String(parts[1])) else {
                    throw GnuTLSError(.invalidArgument, "'\(email)' is not a valid email address")
                }
            case .uri(let uri):
                guard let url = URL(string: uri), url.scheme != nil else {
                    throw GnuTLSError(.invalidArgument, "'\(uri)' is not a valid absolute URI")
                }
            case .invalidIPAddress(let bytes):
                throw GnuTLSError(.invalidArgument, "an IP address has 4 or 16 bytes, not \(bytes.count)")
            case .directoryName, .otherName, .invalidDirectoryName:
                // GnuTLS cannot write these into a subject alternative name
                // (gnutls_x509_crt_set_subject_alt_name fails with an internal error).
                throw GnuTLSError(.invalidArgument, "alternative name \(name) is not supported: use DNS, IP, email or URI names")
            default:
                break
            }
        }
    }

    package static func isValidDNSName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253, !name.hasSuffix(".") else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for (index, label) in labels.enumerated() {
            if label == "*" && index == 0 && labels.count > 2 { continue }
            guard !label.isEmpty, label.utf8.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                  label.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D })
            else { return false }
        }
        return true
    }
}
