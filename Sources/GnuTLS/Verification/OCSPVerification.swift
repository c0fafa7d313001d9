import Foundation
import GnuTLSCore

extension VerificationError.Reason {
    /// The OCSP responder says it does not know the certificate.
    public static let ocspUnknown = VerificationError.Reason(rawValue: "ocspUnknown")
    /// The OCSP answer's nextUpdate has passed (or, without one, its thisUpdate is too old).
    public static let ocspStale = VerificationError.Reason(rawValue: "ocspStale")
    /// The OCSP answer's thisUpdate (or producedAt) lies in the future beyond the allowed skew.
    public static let ocspNotYetValid = VerificationError.Reason(rawValue: "ocspNotYetValid")
    /// The OCSP response is signed by neither the issuer nor a responder the issuer authorised.
    public static let ocspUnauthorizedSigner = VerificationError.Reason(rawValue: "ocspUnauthorizedSigner")
    /// The OCSP response's signature does not verify with its signer's key.
    public static let ocspSignatureInvalid = VerificationError.Reason(rawValue: "ocspSignatureInvalid")
    /// The OCSP response holds no answer for this certificate (another serial or issuer).
    public static let ocspWrongCertificate = VerificationError.Reason(rawValue: "ocspWrongCertificate")
    /// The OCSP response does not echo the nonce the request carried.
    public static let ocspNonceMismatch = VerificationError.Reason(rawValue: "ocspNonceMismatch")
    /// The OCSP response cannot be parsed.
    public static let ocspMalformed = VerificationError.Reason(rawValue: "ocspMalformed")
    /// The responder answered with an error status (`malformedRequest`, `internalError`,
    /// `tryLater`, `sigRequired`, `unauthorized`).
    public static let ocspResponderError = VerificationError.Reason(rawValue: "ocspResponderError")
}

extension OCSPResponse {
    /// Clock skew tolerated for thisUpdate and producedAt in the future.
    public static let defaultAllowedSkew: TimeInterval = 300
    /// How old an answer without nextUpdate may be.
    public static let defaultMaximumAge: TimeInterval = 7 * 86_400

    /// Verifies this response as an answer about `certificate` issued by `issuer` at `time`,
    /// and returns the single response when the certificate is good.
    ///
    /// Checks, each failure a typed ``VerificationError`` reason at `position`:
    /// status successful (``VerificationError/Reason/ocspResponderError``); signer is the
    /// issuer or a responder it issued with OCSP signing (``VerificationError/Reason/ocspUnauthorizedSigner``);
    /// signature (``VerificationError/Reason/ocspSignatureInvalid``); an answer for this
    /// certificate (``VerificationError/Reason/ocspWrongCertificate``); thisUpdate not
    /// beyond `allowedSkew` in the future (``VerificationError/Reason/ocspNotYetValid``);
    /// nextUpdate not passed (``VerificationError/Reason/ocspStale``); the nonce, when
    /// one was sent (``VerificationError/Reason/ocspNonceMismatch``); then the status:
    /// revoked is ``VerificationError/Reason/revoked`` with date and reason, unknown is
    /// ``VerificationError/Reason/ocspUnknown``.
    @discardableResult
    public func verify(
        certificate: Certificate, issuer: Certificate, at time: Date = Date(), nonce: [UInt8]? = nil,
        position: Int = 0, allowedSkew: TimeInterval = OCSPResponse.defaultAllowedSkew,
        maximumAge: TimeInterval = OCSPResponse.defaultMaximumAge
    ) throws(VerificationError) -> SingleResponse {
        let single = try validate(certificate: certificate, issuer: issuer, at: time, nonce: nonce, position: position,
                                  allowedSkew: allowedSkew, maximumAge: maximumAge)
        func fail(_ reason: VerificationError.Reason, _ message: String) -> VerificationError {
            VerificationError(problems: [VerificationError.Problem(reason, message, position: position, subject: certificate.subject)])
        }
        switch single.status {
        case .good:
            return single
        case .unknown:
            throw fail(.ocspUnknown, "the OCSP responder does not know certificate '\(certificate.subject)' (serial \(certificate.serialNumber))")
        case .revoked(let date, let reason):
            var problem = VerificationError.Problem(.revoked, "certificate '\(certificate.subject)' (serial \(certificate.serialNumber)) was revoked on \(date) (\(reason ?? .unspecified)), says its OCSP responder", position: position, subject: certificate.subject)
            problem.revocationDate = date
            problem.revocationReason = reason
            throw VerificationError(problems: [problem])
        }
    }

    /// Like ``verify(certificate:issuer:at:nonce:position:allowedSkew:maximumAge:)`` but
    /// returns the single response whatever its status (good, revoked or unknown), once the
    /// response itself is authentic, current and about `certificate`.
    public func validate(
        certificate: Certificate, issuer: Certificate, at time: Date = Date(), nonce: [UInt8]? = nil,
        position: Int = 0, allowedSkew: TimeInterval = OCSPResponse.defaultAllowedSkew,
        maximumAge: TimeInterval = OCSPResponse.defaultMaximumAge
    ) throws(VerificationError) -> SingleResponse {
        func fail(_ reason: VerificationError.Reason, _ message: String) -> VerificationError {
            VerificationError(problems: [VerificationError.Problem(reason, message, position: position, subject: certificate.subject)])
        }
        let who = "OCSP response for '\(certificate.subject)'"
        guard responseStatus == .successful else {
            throw fail(.ocspResponderError, "the OCSP responder answered \(responseStatus) instead of a status for '\(certificate.subject)'")
        }
        // The signer: the issuer itself, or a certificate in the response that the issuer
        // authorised (issued, with OCSP signing).
        guard let responderID else { throw fail(.ocspMalformed, "\(who) has no responder ID") }
        func named(_ candidate: Certificate) -> Bool {
            switch responderID {
            case .byName(let name): return candidate.subject == name
            case .byKeyHash(let hash): return candidate.publicKey.keyIdentifier == hash
            }
        }
        let signer: Certificate
        if named(issuer) {
            signer = issuer
        } else if let delegated = certificates.first(where: named) {
            guard OCSPSignerCheck.isDelegatedResponder(delegated, of: issuer) else {
                throw fail(.ocspUnauthorizedSigner, "\(who) is signed by '\(delegated.subject)', which '\(issuer.subject)' did not authorise (it must issue it with the OCSP-signing purpose)")
            }
            guard delegated.notValidBefore <= time.addingTimeInterval(allowedSkew), time <= delegated.notValidAfter else {
                throw fail(.ocspUnauthorizedSigner, "\(who) is signed by responder '\(delegated.subject)', whose certificate is not valid at \(time)")
            }
            signer = delegated
        } else {
            throw fail(.ocspUnauthorizedSigner, "\(who) is signed by responder \(responderID), which is neither the issuer '\(issuer.subject)' nor a certificate included in the response")
        }
        do {
            let handle = try OCSPResponseHandle(der: derEncoded)
            let check = try handle.verifySignature(signer: CertificateHandle(der: signer.derEncoded))
            if check.insecureAlgorithm {
                throw fail(.insecureAlgorithm, "\(who) is signed with an insecure algorithm (\(signatureAlgorithmOID ?? "?"))")
            }
            guard check.signatureValid else {
                throw fail(.ocspSignatureInvalid, "the signature of the \(who) does not verify with the key of '\(signer.subject)'")
            }
        } catch let error as VerificationError {
            throw error
        } catch {
            throw fail(.ocspMalformed, "\(who) cannot be checked: \(error)")
        }
        guard let single = response(for: certificate, issuer: issuer) else {
            let serials = responses.map { "\($0.certificateID.serialNumber)" }.joined(separator: ", ")
            throw fail(.ocspWrongCertificate, "the OCSP response answers for \(serials.isEmpty ? "no certificate" : "serial \(serials)"), not for '\(certificate.subject)' (serial \(certificate.serialNumber)) issued by '\(issuer.subject)'")
        }
        if single.thisUpdate > time.addingTimeInterval(allowedSkew) {
            throw fail(.ocspNotYetValid, "\(who) has thisUpdate \(single.thisUpdate), in the future at \(time)")
        }
        if let producedAt, producedAt > time.addingTimeInterval(allowedSkew) {
            throw fail(.ocspNotYetValid, "\(who) was produced at \(producedAt), in the future at \(time)")
        }
        if let nextUpdate = single.nextUpdate {
            if nextUpdate < time {
                throw fail(.ocspStale, "\(who) expired at its nextUpdate \(nextUpdate), before \(time)")
            }
        } else if single.thisUpdate.addingTimeInterval(maximumAge) < time {
            throw fail(.ocspStale, "\(who) has no nextUpdate and its thisUpdate \(single.thisUpdate) is older than \(Int(maximumAge)) s at \(time)")
        }
        if let nonce, self.nonce != nonce {
            throw fail(.ocspNonceMismatch, self.nonce == nil ? "\(who) does not echo the request's nonce" : "\(who) carries a different nonce than the request")
        }
        return single
    }

    /// Parses `der` and verifies it (see ``verify(certificate:issuer:at:nonce:position:allowedSkew:maximumAge:)``);
    /// bytes that are not an OCSP response fail with ``VerificationError/Reason/ocspMalformed``.
    @discardableResult
    public static func verify(
        derEncoded der: [UInt8], certificate: Certificate, issuer: Certificate, at time: Date = Date(),
        nonce: [UInt8]? = nil, position: Int = 0
    ) throws(VerificationError) -> SingleResponse {
        let response: OCSPResponse
        do {
            response = try OCSPResponse(derEncoded: der)
        } catch {
            throw VerificationError(problems: [VerificationError.Problem(.ocspMalformed, "the OCSP response for '\(certificate.subject)' cannot be parsed: \(error)", position: position, subject: certificate.subject)])
        }
        return try response.verify(certificate: certificate, issuer: issuer, at: time, nonce: nonce, position: position)
    }
}

/// Checks made before a server staples a response.
enum OCSPStapling {
    /// `response` must verify for `identity`'s leaf: its issuer is the next certificate of
    /// the chain, or found among the trust store's anchors. Never staple what a strict
    /// client would refuse.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` with the verification failure.
    static func check(_ response: OCSPResponse, for identity: TLSIdentity, trust: TrustStore?, at time: Date = Date()) throws {
        let leaf = identity.leaf
        let candidates = identity.chain.dropFirst().filter { $0.subject == leaf.issuer }
            + (trust?.certificates ?? []).filter { $0.subject == leaf.issuer }
        guard !candidates.isEmpty else {
            throw GnuTLSError(.invalidArgument, "cannot staple an OCSP response for '\(leaf.subject)': its issuer '\(leaf.issuer)' is neither in the chain nor in the trust store, so the response cannot be verified")
        }
        var failure: VerificationError?
        for issuer in candidates {
            do throws(VerificationError) {
                try response.verify(certificate: leaf, issuer: issuer, at: time)
                return
            } catch {
                failure = error
            }
        }
        throw GnuTLSError(.invalidArgument, "refusing to staple the OCSP response for '\(leaf.subject)': \(failure.map { "\($0)" } ?? "it does not verify")")
    }
}

/// Who may sign OCSP responses for a CA (RFC 6960 section 4.2.2.2).
package enum OCSPSignerCheck {
    /// `candidate` was issued (and signed) by `issuer` and carries the OCSP-signing purpose.
    package static func isDelegatedResponder(_ candidate: Certificate, of issuer: Certificate) -> Bool {
        guard candidate.issuer == issuer.subject, candidate.extendedKeyUsage?.contains(.ocspSigning) == true,
              let crt = try? CertificateHandle(der: candidate.derEncoded), let ca = try? CertificateHandle(der: issuer.derEncoded)
        else { return false }
        return crt.isSigned(by: ca)
    }
}
