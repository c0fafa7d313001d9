import Foundation
import GnuTLS
import SwiftASN1

// MARK: - Signing responses

/// Signing OCSP responses, which GnuTLS itself cannot write.
extension OCSPResponse {
    /// Signs a successful response (a `BasicOCSPResponse`) holding `responses`.
    ///
    /// GnuTLS can parse OCSP responses but not write them, so the `ResponseData` is built
    /// in DER with swift-asn1, signed through GnuTLS with `key`, and the result parsed back.
    /// The responder is named by key hash (RFC 6960 section 4.2.1, as RFC 5019 asks).
    ///
    /// - Parameters:
    ///   - responses: the status of each certificate asked about.
    ///   - signer: the signing certificate: the CA itself, or a delegated responder it
    ///     issued (see ``CertificateProfile/ocspResponder``).
    ///   - key: `signer`'s private key.
    ///   - producedAt: the response's production time; now by default.
    ///   - nonce: the nonce to echo (the request's `nonce`), or `nil`.
    ///   - includeSignerCertificate: put `signer` in `certs` (needed for a delegated
    ///     responder, so a client can check its authorisation).
    /// - Throws: `GnuTLSError` `.invalidArgument` when `key` does not match `signer`.
    public static func sign(
        responses: [SingleResponse], signer: Certificate, key: any SigningKey, producedAt: Date = Date(),
        nonce: [UInt8]? = nil, includeSignerCertificate: Bool = false
    ) throws -> OCSPResponse {
        let nonceValue = try nonce.map { nonce -> [UInt8] in
            var coder = DER.Serializer()
            try coder.serialize(ASN1OctetString(contentBytes: nonce[...]))
            return coder.serializedBytes
        }
        return try sign(responses: responses, signer: signer, key: key, producedAt: producedAt,
                        nonceExtensionValue: nonceValue, includeSignerCertificate: includeSignerCertificate)
    }

    static func sign(
        responses: [SingleResponse], signer: Certificate, key: any SigningKey, producedAt: Date,
        nonceExtensionValue: [UInt8]?, includeSignerCertificate: Bool
    ) throws -> OCSPResponse {
        guard key.publicKey.derEncoded == signer.publicKey.derEncoded else {
            throw GnuTLSError(.invalidArgument, "the signing key does not match the public key of OCSP signer '\(signer.subject)'")
        }
        guard !responses.isEmpty else { throw GnuTLSError(.invalidArgument, "a successful OCSP response needs at least one single response") }
        let handle = try coreKeyHandle(for: key)
        let keyHash = CoreCrypto.sha1(PublicKey.subjectPublicKeyBits(signer.publicKey.derEncoded) ?? signer.publicKey.derEncoded)
        var coder = DER.Serializer()
        try coder.appendConstructedNode(identifier: .sequence) { coder in  // ResponseData, version v1 (DEFAULT, omitted)
            try coder.serialize(explicitlyTaggedWithTagNumber: 2, tagClass: .contextSpecific) { coder in
                try coder.serialize(ASN1OctetString(contentBytes: keyHash[...]))
            }
            try coder.serialize(OCSPEncoding.generalizedTime(producedAt))
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                for single in responses {
                    try OCSPEncoding.singleResponse(single, into: &coder)
                }
            }
            if let nonceExtensionValue {
                try coder.serialize(explicitlyTaggedWithTagNumber: 1, tagClass: .contextSpecific) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try CRLEncoding.nonCriticalExtension(OCSPEncoding.nonceOID, value: { $0.serializeRawBytes(nonceExtensionValue) }, into: &coder)
                    }
                }
            }
        }
        let tbs = coder.serializedBytes
        let signed = try handle.signX509(tbs)
        var basic = DER.Serializer()
        try basic.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs)
            try CRLEncoding.algorithmIdentifier(signed.algorithmOID, nullParameters: signed.parametersAreNull, into: &coder)
            try coder.serialize(ASN1BitString(bytes: signed.signature[...]))
            if includeSignerCertificate {
                coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                    coder.appendConstructedNode(identifier: .sequence) { coder in
                        coder.serializeRawBytes(signer.derEncoded)
                    }
                }
            }
        }
        var outer = DER.Serializer()
        try outer.appendConstructedNode(identifier: .sequence) { coder in
            try Status.successful.rawValue.serialize(into: &coder, withIdentifier: .enumerated)
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.serialize(OCSPEncoding.basicOID)
                    try coder.serialize(ASN1OctetString(contentBytes: basic.serializedBytes[...]))
                }
            }
        }
        return try OCSPResponse(derEncoded: outer.serializedBytes)
    }
}

extension OCSPEncoding {
    static func singleResponse(_ single: OCSPResponse.SingleResponse, into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try certID(single.certificateID, into: &coder)
            switch single.status {
            case .good:
                ASN1Null().serialize(into: &coder, withIdentifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific))
            case .unknown:
                ASN1Null().serialize(into: &coder, withIdentifier: ASN1Identifier(tagWithNumber: 2, tagClass: .contextSpecific))
            case .revoked(let date, let reason):
                try coder.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific)) { coder in
                    try coder.serialize(generalizedTime(date))
                    if let reason {
                        try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                            try reason.rawValue.serialize(into: &coder, withIdentifier: .enumerated)
                        }
                    }
                }
            }
            try coder.serialize(generalizedTime(single.thisUpdate))
            if let nextUpdate = single.nextUpdate {
                try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                    try coder.serialize(generalizedTime(nextUpdate))
                }
            }
        }
    }
}

// MARK: - Answering requests from a ledger

/// Answers OCSP requests for one CA from its ledger: good for a serial it issued, revoked
/// (with time and reason) for one it revoked, unknown for one it never issued;
/// `unauthorized` for another issuer's certificates and `malformedRequest` for bytes that
/// are not a request. Never throws and never traps on hostile input.
///
/// Signed answers to nonce-less requests are kept until half their lifetime has passed,
/// keyed on the certificate ID *and* the status the ledger gives now, so a revocation (even
/// one made by another process, such as `tlsctl ca revoke`) shows in the very next answer.
public final class OCSPResponder: Sendable {
    /// The CA whose certificates are answered for.
    public let issuer: Certificate
    /// The signing certificate (the CA, or a delegated responder).
    public let signer: Certificate
    /// How long each answer is valid (nextUpdate − thisUpdate).
    public let validity: TimeInterval
    private let key: any SigningKey
    private let ledger: any CertificateLedger
    private let isDelegated: Bool
    private let cache = OCSPResponseCache()

    /// A responder signing as the CA `authority` itself.
    /// - Throws: ``LedgerError`` `.noLedger` when the authority has no ledger.
    public convenience init(authority: LocalAuthority, validity: TimeInterval = 3600) throws {
        guard let ledger = authority.ledger else {
            throw LedgerError(.noLedger, "CA '\(authority.certificate.subject)' has no ledger to answer OCSP requests from")
        }
        try self.init(issuer: authority.certificate, ledger: ledger, signer: authority.certificate, key: authority.key, validity: validity)
    }

    /// A responder for `issuer`'s certificates answering from `ledger`, signing with
    /// `signer`/`key`: `issuer` itself, or a delegated responder `issuer` issued with the
    /// OCSP-signing purpose.
    /// - Throws: `GnuTLSError` `.invalidArgument` when the key does not match, the
    ///   delegated signer was not issued by `issuer` or lacks OCSP signing, or `validity` is not positive.
    public init(issuer: Certificate, ledger: any CertificateLedger, signer: Certificate, key: any SigningKey, validity: TimeInterval = 3600) throws {
        guard key.publicKey.derEncoded == signer.publicKey.derEncoded else {
            throw GnuTLSError(.invalidArgument, "the OCSP signing key does not match certificate '\(signer.subject)'")
        }
        guard validity >= 60 else { throw GnuTLSError(.invalidArgument, "OCSP responses must be valid for at least a minute, not \(validity) s") }
        let delegated = signer != issuer
        if delegated {
            guard OCSPSignerCheck.isDelegatedResponder(signer, of: issuer) else {
                throw GnuTLSError(.invalidArgument, "'\(signer.subject)' cannot sign OCSP responses for '\(issuer.subject)': it must be issued by that CA with the OCSP-signing extended key usage")
            }
        }
        self.issuer = issuer
        self.signer = signer
        self.key = key
        self.ledger = ledger
        self.validity = validity
        self.isDelegated = delegated
    }

    /// What one request was answered with, for logging.
    public struct Answer: Sendable {
        /// The response to send.
        public var response: OCSPResponse
        /// The serials asked about, with their statuses (empty for an unsuccessful response).
        public var statuses: [(SerialNumber, OCSPResponse.CertificateStatus)]
        /// Whether the response came from the cache.
        public var cached: Bool
    }

    /// Answers the DER request `requestDER` at `now`.
    public func respond(to requestDER: [UInt8], at now: Date = Date()) -> Answer {
        guard let request = try? OCSPRequest(derEncoded: requestDER) else {
            return Answer(response: OCSPResponse(unsuccessful: .malformedRequest), statuses: [], cached: false)
        }
        return respond(to: request, at: now)
    }

    /// Answers `request` at `now`.
    public func respond(to request: OCSPRequest, at now: Date = Date()) -> Answer {
        guard request.certificateIDs.allSatisfy({ $0.isIssued(by: issuer) }) else {
            return Answer(response: OCSPResponse(unsuccessful: .unauthorized), statuses: [], cached: false)
        }
        do {
            let statuses = try request.certificateIDs.map { id in (id, try status(of: id.serialNumber)) }
            let cacheKey = request.nonceExtensionValue == nil ? OCSPResponseCache.Key(statuses: statuses) : nil
            if let cacheKey, let hit = cache.lookup(cacheKey, at: now) {
                return Answer(response: hit, statuses: statuses.map { ($0.0.serialNumber, $0.1) }, cached: true)
            }
            let thisUpdate = Policy.wholeSeconds(now)
            let nextUpdate = thisUpdate.addingTimeInterval(validity)
            let singles = statuses.map { OCSPResponse.SingleResponse(certificateID: $0.0, status: $0.1, thisUpdate: thisUpdate, nextUpdate: nextUpdate) }
            let response = try OCSPResponse.sign(
                responses: singles, signer: signer, key: key, producedAt: thisUpdate,
                nonceExtensionValue: request.nonceExtensionValue, includeSignerCertificate: isDelegated)
            if let cacheKey {
                cache.store(cacheKey, response, until: thisUpdate.addingTimeInterval(validity / 2))
            }
            return Answer(response: response, statuses: statuses.map { ($0.0.serialNumber, $0.1) }, cached: false)
        } catch {
            return Answer(response: OCSPResponse(unsuccessful: .internalError), statuses: [], cached: false)
        }
    }

    private func status(of serial: SerialNumber) throws -> OCSPResponse.CertificateStatus {
        guard let entry = try ledger.certificate(serial: serial) else { return .unknown }
        if let revocation = entry.revocation {
            return .revoked(date: revocation.date, reason: revocation.reason)
        }
        return .good
    }
}

/// Signed nonce-less answers, keyed on the exact IDs and statuses they carry.
final class OCSPResponseCache: @unchecked Sendable {
    struct Key: Hashable {
        var ids: [OCSPCertificateID]
        var statuses: [OCSPResponse.CertificateStatus]
        init(statuses: [(OCSPCertificateID, OCSPResponse.CertificateStatus)]) {
            ids = statuses.map(\.0)
            self.statuses = statuses.map(\.1)
        }
    }

    private let lock = NSLock()
    private var entries: [Key: (OCSPResponse, Date)] = [:]
    static let capacity = 4096

    func lookup(_ key: Key, at now: Date) -> OCSPResponse? {
        lock.withLock {
            guard let (response, until) = entries[key] else { return nil }
            guard now < until, response.responses.allSatisfy({ $0.thisUpdate <= now }) else {
                entries[key] = nil
                return nil
            }
            return response
        }
    }

    func store(_ key: Key, _ response: OCSPResponse, until: Date) {
        lock.withLock {
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = (response, until)
        }
    }
}
