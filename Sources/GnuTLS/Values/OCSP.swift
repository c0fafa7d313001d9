import Foundation
import GnuTLSCore
import SwiftASN1

/// The hash an OCSP certificate ID is computed with (RFC 6960 section 4.1.1).
public struct OCSPHashAlgorithm: Hashable, Sendable, CustomStringConvertible {
    /// The dotted OID of the hash.
    public let oid: String
    /// A short name (`SHA-1`, `SHA-256`), or the OID for other hashes.
    public var name: String {
        switch oid {
        case Self.sha1.oid: return "SHA-1"
        case Self.sha256.oid: return "SHA-256"
        default: return oid
        }
    }

    /// SHA-1 (1.3.14.3.2.26): what RFC 5019 responders and most clients use.
    public static let sha1 = OCSPHashAlgorithm(oid: "1.3.14.3.2.26")
    /// SHA-256 (2.16.840.1.101.3.4.2.1).
    public static let sha256 = OCSPHashAlgorithm(oid: "2.16.840.1.101.3.4.2.1")

    /// A hash by its OID; only SHA-1 and SHA-256 can be computed.
    public init(oid: String) { self.oid = oid }

    /// A readable form, for logs and messages.
    public var description: String { name }

    func digest(_ bytes: [UInt8]) -> [UInt8]? {
        switch oid {
        case Self.sha1.oid: return CoreCrypto.sha1(bytes)
        case Self.sha256.oid: return CoreCrypto.sha256(bytes)
        default: return nil
        }
    }
}

/// Which certificate an OCSP request or single response is about: hashes of the issuer's
/// name and key, and the serial number (RFC 6960 `CertID`).
public struct OCSPCertificateID: Hashable, Sendable, CustomStringConvertible {
    /// The hash of ``issuerNameHash`` and ``issuerKeyHash``.
    public var hashAlgorithm: OCSPHashAlgorithm
    /// Hash of the DER of the issuer's subject name.
    public var issuerNameHash: [UInt8]
    /// Hash of the issuer's `subjectPublicKey` bits.
    public var issuerKeyHash: [UInt8]
    /// The certificate's serial number.
    public var serialNumber: SerialNumber

    /// A certificate ID from its fields.
    public init(hashAlgorithm: OCSPHashAlgorithm, issuerNameHash: [UInt8], issuerKeyHash: [UInt8], serialNumber: SerialNumber) {
        self.hashAlgorithm = hashAlgorithm
        self.issuerNameHash = issuerNameHash
        self.issuerKeyHash = issuerKeyHash
        self.serialNumber = serialNumber
    }

    /// The ID of `certificate`, issued by `issuer`.
    /// - Throws: ``GnuTLSError`` `.unsupportedAlgorithm` for a hash other than SHA-1/SHA-256.
    public init(certificate: Certificate, issuer: Certificate, hashAlgorithm: OCSPHashAlgorithm = .sha1) throws {
        try self.init(serialNumber: certificate.serialNumber, issuer: issuer, hashAlgorithm: hashAlgorithm)
    }

    /// The ID of the certificate with `serialNumber` issued by `issuer`.
    public init(serialNumber: SerialNumber, issuer: Certificate, hashAlgorithm: OCSPHashAlgorithm = .sha1) throws {
        let hashes = try Self.issuerHashes(issuer, hashAlgorithm)
        self.init(hashAlgorithm: hashAlgorithm, issuerNameHash: hashes.name, issuerKeyHash: hashes.key, serialNumber: serialNumber)
    }

    /// Whether this ID names a certificate issued by `issuer` (any serial).
    public func isIssued(by issuer: Certificate) -> Bool {
        guard let hashes = try? Self.issuerHashes(issuer, hashAlgorithm) else { return false }
        return hashes.name == issuerNameHash && hashes.key == issuerKeyHash
    }

    /// Whether this ID names `certificate` issued by `issuer`.
    public func matches(certificate: Certificate, issuer: Certificate) -> Bool {
        serialNumber == certificate.serialNumber && isIssued(by: issuer)
    }

    static func issuerHashes(_ issuer: Certificate, _ algorithm: OCSPHashAlgorithm) throws -> (name: [UInt8], key: [UInt8]) {
        let name = try CRLEncoding.subjectDER(of: issuer)
        let keyBits = PublicKey.subjectPublicKeyBits(issuer.publicKey.derEncoded) ?? issuer.publicKey.derEncoded
        guard let nameHash = algorithm.digest(name), let keyHash = algorithm.digest(keyBits) else {
            throw GnuTLSError(.unsupportedAlgorithm, "OCSP certificate IDs with hash \(algorithm) are not supported: use SHA-1 or SHA-256")
        }
        return (nameHash, keyHash)
    }

    /// A readable form, for logs and messages.
    public var description: String {
        "CertID(\(hashAlgorithm), serial \(serialNumber), issuer name \(issuerNameHash.hexString.prefix(16))…, key \(issuerKeyHash.hexString.prefix(16))…)"
    }
}

/// An OCSP request (RFC 6960 section 4.1): one or more certificate IDs and an optional nonce.
///
/// ```swift
/// let request = try OCSPRequest(certificate: leaf, issuer: ca, nonce: OCSPRequest.randomNonce())
/// let body = request.derEncoded  // POST it as application/ocsp-request
/// ```
public struct OCSPRequest: Hashable, Sendable, CustomStringConvertible {
    /// The DER encoding.
    public let derEncoded: [UInt8]
    /// The certificates asked about, in order.
    public let certificateIDs: [OCSPCertificateID]
    /// The nonce (the contents of the RFC 8954 nonce), when the request has one.
    public let nonce: [UInt8]?
    /// Whether the request carries a signature (this library neither makes nor checks them).
    public let isSigned: Bool
    /// The `extnValue` of the nonce extension as sent, echoed verbatim by responders.
    package let nonceExtensionValue: [UInt8]?

    /// The most certificate IDs a parsed request may hold.
    public static let maximumCertificateIDs = 64

    /// A request for `certificate`, issued by `issuer`.
    /// - Parameters:
    ///   - certificate: the certificate whose status is asked.
    ///   - issuer: its issuer's certificate (for the issuer name and key hashes).
    ///   - hashAlgorithm: the hash of the certificate ID (SHA-1, what responders expect, by default).
    ///   - nonce: 1 to 32 bytes (RFC 8954), or `nil` for none; see ``randomNonce()``.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` for a nonce outside 1…32 bytes.
    public init(certificate: Certificate, issuer: Certificate, hashAlgorithm: OCSPHashAlgorithm = .sha1, nonce: [UInt8]? = nil) throws {
        try self.init(certificateIDs: [OCSPCertificateID(certificate: certificate, issuer: issuer, hashAlgorithm: hashAlgorithm)], nonce: nonce)
    }

    /// A request for the given IDs.
    public init(certificateIDs: [OCSPCertificateID], nonce: [UInt8]? = nil) throws {
        guard !certificateIDs.isEmpty else { throw GnuTLSError(.invalidArgument, "an OCSP request needs at least one certificate ID") }
        if let nonce, !(1...32).contains(nonce.count) {
            throw GnuTLSError(.invalidArgument, "an OCSP nonce must be 1 to 32 bytes (RFC 8954), not \(nonce.count)")
        }
        let nonceValue = try nonce.map { nonce -> [UInt8] in
            var coder = DER.Serializer()
            try coder.serialize(ASN1OctetString(contentBytes: nonce[...]))
            return coder.serializedBytes
        }
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.appendConstructedNode(identifier: .sequence) { coder in  // TBSRequest
                try coder.appendConstructedNode(identifier: .sequence) { coder in  // requestList
                    for id in certificateIDs {
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try OCSPEncoding.certID(id, into: &coder)
                        }
                    }
                }
                if let nonceValue {
                    try coder.serialize(explicitlyTaggedWithTagNumber: 2, tagClass: .contextSpecific) { coder in
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try CRLEncoding.nonCriticalExtension(OCSPEncoding.nonceOID, value: { $0.serializeRawBytes(nonceValue) }, into: &coder)
                        }
                    }
                }
            }
        }
        self.derEncoded = coder.serializedBytes
        self.certificateIDs = certificateIDs
        self.nonce = nonce
        self.nonceExtensionValue = nonceValue
        self.isSigned = false
    }

    /// Parses a DER OCSP request (ours, `openssl ocsp -reqout`, any RFC 6960 client's).
    /// - Throws: ``GnuTLSError`` `.malformedDER` with what is wrong.
    public init(derEncoded der: [UInt8]) throws {
        do {
            let root = try DER.parse(der)
            let top = try OCSPEncoding.children(root, "OCSPRequest")
            guard let tbs = top.first else { throw OCSPEncoding.malformed("OCSP request has no tbsRequest") }
            var fields = try OCSPEncoding.children(tbs, "TBSRequest")[...]
            if let first = fields.first, first.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                let version = try DER.explicitlyTagged(first, tagNumber: 0, tagClass: .contextSpecific) { try Int(derEncoded: $0) }
                guard version == 0 else { throw OCSPEncoding.malformed("OCSP request version \(version + 1) is not supported") }
                fields = fields.dropFirst()
            }
            if let first = fields.first, first.identifier == ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific) {
                fields = fields.dropFirst()  // requestorName: not used
            }
            guard let list = fields.first, list.identifier == .sequence else { throw OCSPEncoding.malformed("OCSP request has no requestList") }
            fields = fields.dropFirst()
            let requests = try OCSPEncoding.children(list, "requestList")
            guard !requests.isEmpty else { throw OCSPEncoding.malformed("OCSP request asks about no certificate") }
            guard requests.count <= Self.maximumCertificateIDs else {
                throw OCSPEncoding.malformed("OCSP request asks about \(requests.count) certificates: at most \(Self.maximumCertificateIDs) are accepted")
            }
            certificateIDs = try requests.map { request in
                let parts = try OCSPEncoding.children(request, "Request")
                guard let certID = parts.first else { throw OCSPEncoding.malformed("OCSP request entry has no CertID") }
                return try OCSPEncoding.parseCertID(certID)
            }
            var nonceValue: [UInt8]?
            if let extensions = fields.first {
                guard extensions.identifier == ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific) else {
                    throw OCSPEncoding.malformed("OCSP request has unexpected field \(extensions.identifier)")
                }
                let parsed = try DER.explicitlyTagged(extensions, tagNumber: 2, tagClass: .contextSpecific) { try OCSPEncoding.parseExtensions($0) }
                nonceValue = parsed.first { $0.oid == OCSPEncoding.nonceOID.description }?.value
            }
            nonceExtensionValue = nonceValue
            nonce = nonceValue.map(OCSPEncoding.nonceContents)
            isSigned = top.count > 1
            derEncoded = der
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw OCSPEncoding.malformed("bytes are not a DER OCSP request: \(error)")
        }
    }

    /// 32 random bytes for a nonce (the length RFC 8954 section 2.1 recommends).
    public static func randomNonce() throws -> [UInt8] { try CoreCrypto.random(32) }

    /// A readable form, for logs and messages.
    public var description: String {
        "OCSPRequest(\(certificateIDs.map { "\($0.serialNumber)" }.joined(separator: ", "))\(nonce == nil ? "" : ", nonce"))"
    }
}

/// An OCSP response (RFC 6960 section 4.2): a status and, when successful, a signed
/// `BasicOCSPResponse`. Parsed with swift-asn1; its signature is checked through GnuTLS by
/// ``verify(certificate:issuer:at:nonce:position:allowedSkew:maximumAge:)``.
public struct OCSPResponse: Hashable, Sendable, CustomStringConvertible {
    /// The `OCSPResponseStatus`.
    public struct Status: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The ENUMERATED value.
        public let rawValue: Int
        /// A status from its value (any value is kept, so unknown ones can be reported).
        public init(rawValue: Int) { self.rawValue = rawValue }

        /// successful (0): the response carries certificate statuses.
        public static let successful = Status(rawValue: 0)
        /// malformedRequest (1): the responder could not parse the request.
        public static let malformedRequest = Status(rawValue: 1)
        /// internalError (2): the responder failed.
        public static let internalError = Status(rawValue: 2)
        /// tryLater (3): the responder cannot answer now.
        public static let tryLater = Status(rawValue: 3)
        /// sigRequired (5): the request must be signed.
        public static let sigRequired = Status(rawValue: 5)
        /// unauthorized (6): the responder does not answer for this issuer.
        public static let unauthorized = Status(rawValue: 6)

        /// A readable form, for logs and messages.
        public var description: String {
            switch rawValue {
            case 0: return "successful"
            case 1: return "malformedRequest"
            case 2: return "internalError"
            case 3: return "tryLater"
            case 5: return "sigRequired"
            case 6: return "unauthorized"
            default: return "status \(rawValue)"
            }
        }
    }

    /// What a responder says about one certificate.
    public enum CertificateStatus: Hashable, Sendable, CustomStringConvertible {
        /// Not revoked (as far as the responder knows).
        case good
        /// Revoked at `date`, with the reason when the responder gave one.
        case revoked(date: Date, reason: RevocationReason?)
        /// The responder does not know the certificate.
        case unknown

        /// A readable form, for logs and messages.
        public var description: String {
            switch self {
            case .good: return "good"
            case .revoked(let date, let reason): return "revoked \(date)" + (reason.map { " (\($0))" } ?? "")
            case .unknown: return "unknown"
            }
        }
    }

    /// How the responder names itself.
    public enum ResponderID: Hashable, Sendable, CustomStringConvertible {
        /// By its certificate's subject.
        case byName(DistinguishedName)
        /// By the SHA-1 hash of its `subjectPublicKey` bits.
        case byKeyHash([UInt8])

        /// A readable form, for logs and messages.
        public var description: String {
            switch self {
            case .byName(let name): return "name \(name)"
            case .byKeyHash(let hash): return "key hash \(hash.hexString)"
            }
        }
    }

    /// The status of one certificate (`SingleResponse`).
    public struct SingleResponse: Hashable, Sendable, CustomStringConvertible {
        /// Which certificate.
        public var certificateID: OCSPCertificateID
        /// Its status.
        public var status: CertificateStatus
        /// When the status was known to be correct.
        public var thisUpdate: Date
        /// When newer information will be available; the answer is stale after it.
        public var nextUpdate: Date?

        /// A single response.
        public init(certificateID: OCSPCertificateID, status: CertificateStatus, thisUpdate: Date, nextUpdate: Date?) {
            self.certificateID = certificateID
            self.status = status
            self.thisUpdate = thisUpdate
            self.nextUpdate = nextUpdate
        }

        /// A readable form, for logs and messages.
        public var description: String {
            "\(certificateID.serialNumber): \(status), thisUpdate \(thisUpdate)" + (nextUpdate.map { ", nextUpdate \($0)" } ?? "")
        }
    }

    /// The DER encoding (`OCSPResponse`).
    public let derEncoded: [UInt8]
    /// The response status; the fields below are only set when it is ``Status/successful``.
    public let responseStatus: Status
    /// Who signed the response.
    public let responderID: ResponderID?
    /// When the response was signed.
    public let producedAt: Date?
    /// The certificate statuses, in order.
    public let responses: [SingleResponse]
    /// The nonce (contents of the RFC 8954 nonce extension), when present.
    public let nonce: [UInt8]?
    /// Certificates the responder included (a delegated responder's certificate).
    public let certificates: [Certificate]
    /// The signature algorithm OID.
    public let signatureAlgorithmOID: String?
    /// The `extnValue` of the nonce extension.
    let nonceExtensionValue: [UInt8]?

    /// Parses a DER OCSP response (ours, `openssl ocsp -respout`, `ocsptool`, any RFC 6960 responder's).
    /// - Throws: ``GnuTLSError`` `.malformedDER` with what is wrong.
    public init(derEncoded der: [UInt8]) throws {
        do {
            let top = try OCSPEncoding.children(try DER.parse(der), "OCSPResponse")
            guard let statusNode = top.first else { throw OCSPEncoding.malformed("OCSP response has no status") }
            let status = Status(rawValue: try Int(derEncoded: statusNode, withIdentifier: .enumerated))
            derEncoded = der
            responseStatus = status
            guard status == .successful else {
                guard top.count == 1 else { throw OCSPEncoding.malformed("an unsuccessful OCSP response (\(status)) carries response bytes") }
                (responderID, producedAt, responses, nonce, nonceExtensionValue, certificates, signatureAlgorithmOID) = (nil, nil, [], nil, nil, [], nil)
                return
            }
            guard top.count == 2 else { throw OCSPEncoding.malformed("a successful OCSP response has no response bytes") }
            let basicDER = try DER.explicitlyTagged(top[1], tagNumber: 0, tagClass: .contextSpecific) { node -> ArraySlice<UInt8> in
                let parts = try OCSPEncoding.children(node, "ResponseBytes")
                guard parts.count == 2 else { throw OCSPEncoding.malformed("ResponseBytes must hold a type and a response") }
                let type = try ASN1ObjectIdentifier(derEncoded: parts[0])
                guard type == OCSPEncoding.basicOID else { throw OCSPEncoding.malformed("OCSP response type \(type) is not id-pkix-ocsp-basic") }
                return try ASN1OctetString(derEncoded: parts[1]).bytes
            }
            let basic = try OCSPEncoding.children(try DER.parse(basicDER), "BasicOCSPResponse")
            guard basic.count == 3 || basic.count == 4 else { throw OCSPEncoding.malformed("BasicOCSPResponse has \(basic.count) fields") }
            signatureAlgorithmOID = try OCSPEncoding.algorithmOID(basic[1])
            _ = try ASN1BitString(derEncoded: basic[2])
            if basic.count == 4 {
                certificates = try DER.explicitlyTagged(basic[3], tagNumber: 0, tagClass: .contextSpecific) { node in
                    try OCSPEncoding.children(node, "certs").map { try Certificate(derEncoded: Array($0.encodedBytes)) }
                }
            } else {
                certificates = []
            }
            var data = try OCSPEncoding.children(basic[0], "ResponseData")[...]
            if let first = data.first, first.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                let version = try DER.explicitlyTagged(first, tagNumber: 0, tagClass: .contextSpecific) { try Int(derEncoded: $0) }
                guard version == 0 else { throw OCSPEncoding.malformed("OCSP response version \(version + 1) is not supported") }
                data = data.dropFirst()
            }
            guard data.count >= 3 else { throw OCSPEncoding.malformed("ResponseData lacks responderID, producedAt or responses") }
            let responder = data[data.startIndex]
            switch responder.identifier {
            case ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific):
                responderID = .byName(try DER.explicitlyTagged(responder, tagNumber: 1, tagClass: .contextSpecific) {
                    try DistinguishedName(derEncoded: Array($0.encodedBytes))
                })
            case ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific):
                responderID = .byKeyHash(try DER.explicitlyTagged(responder, tagNumber: 2, tagClass: .contextSpecific) {
                    Array(try ASN1OctetString(derEncoded: $0).bytes)
                })
            default:
                throw OCSPEncoding.malformed("OCSP responderID has tag \(responder.identifier)")
            }
            producedAt = try OCSPEncoding.date(GeneralizedTime(derEncoded: data[data.startIndex + 1]))
            responses = try OCSPEncoding.children(data[data.startIndex + 2], "responses").map(OCSPEncoding.parseSingleResponse)
            var nonceValue: [UInt8]?
            if data.count > 3 {
                let parsed = try DER.explicitlyTagged(data[data.startIndex + 3], tagNumber: 1, tagClass: .contextSpecific) {
                    try OCSPEncoding.parseExtensions($0)
                }
                nonceValue = parsed.first { $0.oid == OCSPEncoding.nonceOID.description }?.value
            }
            nonceExtensionValue = nonceValue
            nonce = nonceValue.map(OCSPEncoding.nonceContents)
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw OCSPEncoding.malformed("bytes are not a DER OCSP response: \(error)")
        }
    }

    /// An unsuccessful response with `status` (never ``Status/successful``): no signature, no data.
    public init(unsuccessful status: Status) {
        var coder = DER.Serializer()
        try? coder.appendConstructedNode(identifier: .sequence) { coder in
            try status.rawValue.serialize(into: &coder, withIdentifier: .enumerated)
        }
        derEncoded = coder.serializedBytes
        responseStatus = status
        (responderID, producedAt, responses, nonce, nonceExtensionValue, certificates, signatureAlgorithmOID) = (nil, nil, [], nil, nil, [], nil)
    }

    /// Reads a response file (DER, or PEM `OCSP RESPONSE`).
    public static func load(contentsOfFile path: String) throws -> OCSPResponse {
        let bytes = try FileIO.read(path)
        if PEMBlock.looksLikePEM(bytes) {
            let blocks = try PEMBlock.parseAll(String(decoding: bytes, as: UTF8.self))
            guard let block = blocks.first(where: { $0.label == "OCSP RESPONSE" }) else {
                throw GnuTLSError(.unexpectedObject, "\(path) holds no OCSP RESPONSE PEM block")
            }
            return try OCSPResponse(derEncoded: block.derBytes)
        }
        return try OCSPResponse(derEncoded: bytes)
    }

    /// The single response about `certificate` issued by `issuer`, if the response has one.
    public func response(for certificate: Certificate, issuer: Certificate) -> SingleResponse? {
        responses.first { $0.certificateID.matches(certificate: certificate, issuer: issuer) }
    }

    /// Two responses are equal when their DER encodings are.
    public static func == (lhs: OCSPResponse, rhs: OCSPResponse) -> Bool { lhs.derEncoded == rhs.derEncoded }
    /// Hashes the DER encoding.
    public func hash(into hasher: inout Hasher) { hasher.combine(derEncoded) }

    /// A readable form, for logs and messages.
    public var description: String {
        guard responseStatus == .successful else { return "OCSPResponse(\(responseStatus))" }
        return "OCSPResponse(responder \(responderID.map { "\($0)" } ?? "?"), producedAt \(producedAt.map { "\($0)" } ?? "?"), \(responses.map(\.description).joined(separator: "; ")))"
    }
}

/// The DER of OCSP requests and responses, written and read with swift-asn1 (RFC 6960).
package enum OCSPEncoding {
    package static let basicOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 1]
    package static let nonceOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 2]
    /// id-pkix-ocsp-nocheck (RFC 6960 section 4.2.2.2.1).
    package static let noCheckOID = "1.3.6.1.5.5.7.48.1.5"
    /// TLS feature (RFC 7633), value `SEQUENCE { INTEGER 5 }` = status_request: "must staple".
    package static let tlsFeatureOID = "1.3.6.1.5.5.7.1.24"
    package static let mustStapleValue: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x05]

    static func malformed(_ message: String) -> GnuTLSError { GnuTLSError(.malformedDER, message) }

    static func children(_ node: ASN1Node, _ what: String) throws -> [ASN1Node] {
        guard node.identifier == .sequence, case .constructed(let nodes) = node.content else {
            throw malformed("\(what) is not a SEQUENCE")
        }
        return Array(nodes)
    }

    static func algorithmOID(_ node: ASN1Node) throws -> String {
        let parts = try children(node, "AlgorithmIdentifier")
        guard let first = parts.first else { throw malformed("empty AlgorithmIdentifier") }
        return try ASN1ObjectIdentifier(derEncoded: first).description
    }

    package static func certID(_ id: OCSPCertificateID, into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try CRLEncoding.algorithmIdentifier(id.hashAlgorithm.oid, nullParameters: true, into: &coder)
            try coder.serialize(ASN1OctetString(contentBytes: id.issuerNameHash[...]))
            try coder.serialize(ASN1OctetString(contentBytes: id.issuerKeyHash[...]))
            try coder.serialize(ArraySlice(id.serialNumber.bytes))
        }
    }

    static func parseCertID(_ node: ASN1Node) throws -> OCSPCertificateID {
        let parts = try children(node, "CertID")
        guard parts.count == 4 else { throw malformed("CertID has \(parts.count) fields, not 4") }
        let algorithm = OCSPHashAlgorithm(oid: try algorithmOID(parts[0]))
        let nameHash = Array(try ASN1OctetString(derEncoded: parts[1]).bytes)
        let keyHash = Array(try ASN1OctetString(derEncoded: parts[2]).bytes)
        let serial = Array(try ArraySlice<UInt8>(derEncoded: parts[3]))
        guard serial.count <= 21 else { throw malformed("CertID serial number has \(serial.count) octets") }
        return OCSPCertificateID(hashAlgorithm: algorithm, issuerNameHash: nameHash, issuerKeyHash: keyHash, serialNumber: SerialNumber(bytes: serial))
    }

    static func parseSingleResponse(_ node: ASN1Node) throws -> OCSPResponse.SingleResponse {
        let parts = try children(node, "SingleResponse")
        guard parts.count >= 3 else { throw malformed("SingleResponse lacks certID, certStatus or thisUpdate") }
        let id = try parseCertID(parts[0])
        let statusNode = parts[1]
        let status: OCSPResponse.CertificateStatus
        switch statusNode.identifier {
        case ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific):
            status = .good
        case ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific):
            status = .unknown
        case ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific):
            guard case .constructed(let revokedNodes) = statusNode.content else { throw malformed("RevokedInfo is not constructed") }
            let revoked = Array(revokedNodes)
            guard let timeNode = revoked.first else { throw malformed("RevokedInfo has no revocationTime") }
            let date = try date(GeneralizedTime(derEncoded: timeNode))
            var reason: RevocationReason?
            if revoked.count > 1 {
                let code = try DER.explicitlyTagged(revoked[1], tagNumber: 0, tagClass: .contextSpecific) {
                    try Int(derEncoded: $0, withIdentifier: .enumerated)
                }
                guard let decoded = RevocationReason(rawValue: code) else { throw malformed("RevokedInfo has invalid reason code \(code)") }
                reason = decoded
            }
            status = .revoked(date: date, reason: reason)
        default:
            throw malformed("certStatus has tag \(statusNode.identifier)")
        }
        let thisUpdate = try date(GeneralizedTime(derEncoded: parts[2]))
        var nextUpdate: Date?
        if parts.count > 3, parts[3].identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
            nextUpdate = try DER.explicitlyTagged(parts[3], tagNumber: 0, tagClass: .contextSpecific) { try date(GeneralizedTime(derEncoded: $0)) }
        }
        return OCSPResponse.SingleResponse(certificateID: id, status: status, thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    struct Extension {
        var oid: String
        var critical: Bool
        var value: [UInt8]
    }

    static func parseExtensions(_ node: ASN1Node) throws -> [Extension] {
        try children(node, "Extensions").map { ext in
            let parts = try children(ext, "Extension")
            guard parts.count == 2 || parts.count == 3 else { throw malformed("an extension has \(parts.count) fields") }
            let oid = try ASN1ObjectIdentifier(derEncoded: parts[0]).description
            let critical = parts.count == 3 ? try Bool(derEncoded: parts[1]) : false
            let value = Array(try ASN1OctetString(derEncoded: parts[parts.count - 1]).bytes)
            return Extension(oid: oid, critical: critical, value: value)
        }
    }

    /// The nonce inside an `extnValue`: the OCTET STRING's contents (RFC 8954), or the raw
    /// value for old clients that put the bytes there unwrapped.
    static func nonceContents(_ value: [UInt8]) -> [UInt8] {
        if let node = try? DER.parse(value), let octets = try? ASN1OctetString(derEncoded: node) { return Array(octets.bytes) }
        return value
    }

    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0) ?? calendar.timeZone
        return calendar
    }()

    static func date(_ time: GeneralizedTime) throws -> Date {
        let components = DateComponents(year: time.year, month: time.month, day: time.day, hour: time.hours, minute: time.minutes, second: time.seconds)
        guard let date = utc.date(from: components) else { throw malformed("time \(time) cannot be represented") }
        return date.addingTimeInterval(time.fractionalSeconds)
    }

    /// A whole-second GeneralizedTime (RFC 6960 / RFC 5280: no fractional seconds, Zulu).
    package static func generalizedTime(_ date: Date) throws -> GeneralizedTime {
        let c = utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard let year = c.year, let month = c.month, let day = c.day, let hours = c.hour, let minutes = c.minute, let seconds = c.second else {
            throw GnuTLSError(.invalidArgument, "date \(date) cannot be written as a GeneralizedTime")
        }
        return try GeneralizedTime(year: year, month: month, day: day, hours: hours, minutes: minutes, seconds: seconds, fractionalSeconds: 0)
    }
}

extension Certificate {
    /// Whether the certificate carries the TLS feature extension with status_request
    /// (RFC 7633, "must staple"): a client must refuse it without a valid stapled OCSP response.
    public var requiresOCSPStapling: Bool {
        guard let ext = self.extension(oid: OCSPEncoding.tlsFeatureOID),
              let node = try? DER.parse(ext.value), case .constructed(let features) = node.content else { return false }
        return features.contains { (try? Int(derEncoded: $0)) == 5 }
    }

    /// Whether the certificate carries id-pkix-ocsp-nocheck (a delegated OCSP responder's
    /// certificate, whose own revocation status is not asked for).
    public var hasOCSPNoCheck: Bool { self.extension(oid: OCSPEncoding.noCheckOID) != nil }
}
