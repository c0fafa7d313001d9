import Foundation

/// How strictly a client (or a mutual-TLS server) insists on revocation information, one
/// value for channels and for the ``Verifier``.
public struct RevocationCheckingMode: Hashable, Sendable, CustomStringConvertible {
    /// The mode's name (`off`, `soft`, `hard`).
    public let name: String

    /// No revocation check beyond what the trust store's CRLs already give. Must-staple
    /// certificates still need a valid staple.
    public static let off = RevocationCheckingMode(uncheckedName: "off")
    /// Use what is available (staple, CRLs, online OCSP); refuse only a definite revoked.
    public static let softFail = RevocationCheckingMode(uncheckedName: "soft")
    /// Every certificate below the anchor needs a fresh good answer from a staple, a CRL or
    /// an online OCSP query; anything else is refused.
    public static let hardFail = RevocationCheckingMode(uncheckedName: "hard")

    /// `off`, `soft` or `hard`.
    public init?(name: String) {
        switch name.lowercased() {
        case "off": self = .off
        case "soft", "soft-fail": self = .softFail
        case "hard", "hard-fail": self = .hardFail
        default: return nil
        }
    }

    private init(uncheckedName: String) { name = uncheckedName }

    /// Every mode, weakest first.
    static let allModes: [RevocationCheckingMode] = [.off, .softFail, .hardFail]

    /// A readable form, for logs and messages.
    public var description: String { name }
}

extension VerificationError.Reason {
    /// A must-staple certificate (TLS feature status_request) came without a valid stapled response.
    public static let ocspStapleRequired = VerificationError.Reason(rawValue: "ocspStapleRequired")
}

/// Asks an OCSP responder at a URL; the NIO target provides one (`OCSPClient`) that runs
/// off the event loop with a deadline.
public typealias OCSPFetcher = @Sendable (_ request: OCSPRequest, _ url: String) async throws -> OCSPResponse

/// Establishes the revocation status of every certificate of a verified chain below its
/// anchor, from (in this order) a stapled OCSP response for the leaf, the CRLs the caller
/// holds, and an online OCSP query to the certificate's OCSP URL, whose good answers are
/// cached by certificate ID until their nextUpdate.
///
/// Must-staple leaves without a valid good staple are refused in every mode.
public final class RevocationChecker: Sendable {
    /// The mode.
    public let mode: RevocationCheckingMode
    private let fetcher: OCSPFetcher?
    private let cache = OCSPAnswerCache()

    /// A checker in `mode`; `fetcher` asks responders online (`nil`: no online queries).
    public init(mode: RevocationCheckingMode, fetcher: OCSPFetcher? = nil) {
        self.mode = mode
        self.fetcher = fetcher
    }

    /// Checks `chain` (leaf first, anchor last, as ``VerifiedChain`` holds it).
    /// - Throws: ``VerificationError`` with every problem, each at its chain position.
    /// - Parameters:
    ///   - chain: the verified chain, leaf first, anchor last.
    ///   - staple: the OCSP response the server stapled, if any (it is about the leaf).
    ///   - crls: CRLs to use besides OCSP, by the mode's rules.
    ///   - time: the moment the statuses must be current at; now by default.
    ///   - fetcher: asks responders online for this call (overrides the checker's own).
    public func check(
        chain: [Certificate], staple: OCSPResponse?, crls: [CertificateRevocationList] = [], at time: Date = Date(),
        fetcher: OCSPFetcher? = nil
    ) async throws(VerificationError) {
        let fetcher = fetcher ?? self.fetcher
        var problems: [VerificationError.Problem] = []
        for position in 0..<max(0, chain.count - 1) {
            let certificate = chain[position]
            let issuer = chain[position + 1]
            if position > 0 && certificate.hasOCSPNoCheck { continue }
            if let problem = await status(of: certificate, issuer: issuer, position: position,
                                          staple: position == 0 ? staple : nil, crls: crls, at: time, fetcher: fetcher) {
                problems.append(problem)
            }
        }
        if !problems.isEmpty { throw VerificationError(problems: problems) }
    }

    private func status(
        of certificate: Certificate, issuer: Certificate, position: Int, staple: OCSPResponse?,
        crls: [CertificateRevocationList], at time: Date, fetcher: OCSPFetcher?
    ) async -> VerificationError.Problem? {
        func problem(_ reason: VerificationError.Reason, _ message: String) -> VerificationError.Problem {
            VerificationError.Problem(reason, message, position: position, subject: certificate.subject)
        }
        var lastProblem: VerificationError.Problem?
        // 1. The staple.
        if let staple {
            do throws(VerificationError) {
                let single = try staple.validate(certificate: certificate, issuer: issuer, at: time, position: position)
                switch single.status {
                case .good: return nil
                case .revoked: return Self.revokedProblem(single, certificate, position, source: "stapled OCSP response")
                case .unknown: lastProblem = problem(.ocspUnknown, "the stapled OCSP response does not know '\(certificate.subject)'")
                }
            } catch {
                lastProblem = error.problems.first
            }
            if certificate.requiresOCSPStapling {
                return problem(.ocspStapleRequired, "'\(certificate.subject)' must be stapled (TLS feature status_request) but its staple is not a valid good answer: \(lastProblem?.message ?? "")")
            }
        } else if position == 0 && certificate.requiresOCSPStapling {
            return problem(.ocspStapleRequired, "'\(certificate.subject)' must be stapled (TLS feature status_request) but the peer stapled no OCSP response")
        }
        if mode == .off { return nil }
        // 2. CRLs from the issuer.
        for crl in crls where crl.issuer == issuer.subject && crl.isSigned(by: issuer) {
            if let entry = crl.entry(for: certificate.serialNumber) {
                var revoked = problem(.revoked, "'\(certificate.subject)' (serial \(certificate.serialNumber)) is listed on the CRL of '\(issuer.subject)', revoked on \(entry.revocationDate) (\(entry.reason ?? .unspecified))")
                revoked.revocationDate = entry.revocationDate
                revoked.revocationReason = entry.reason
                return revoked
            }
            if crl.thisUpdate <= time.addingTimeInterval(OCSPResponse.defaultAllowedSkew) && !crl.isStale(at: time) { return nil }
        }
        // 3. Online OCSP, cached until nextUpdate.
        if let fetcher, let url = certificate.ocspURLs.first(where: { $0.lowercased().hasPrefix("http://") }) {
            do {
                let request = try OCSPRequest(certificate: certificate, issuer: issuer)
                let response: OCSPResponse
                if let cached = cache.lookup(request.certificateIDs[0], at: time) {
                    response = cached
                } else {
                    response = try await fetcher(request, url)
                }
                let single = try response.validate(certificate: certificate, issuer: issuer, at: time, position: position)
                switch single.status {
                case .good:
                    cache.store(request.certificateIDs[0], response, until: single.nextUpdate ?? time)
                    return nil
                case .revoked:
                    return Self.revokedProblem(single, certificate, position, source: "OCSP responder \(url)")
                case .unknown:
                    lastProblem = problem(.ocspUnknown, "OCSP responder \(url) does not know '\(certificate.subject)'")
                }
            } catch let error as VerificationError {
                lastProblem = error.problems.first
            } catch {
                lastProblem = problem(.revocationStatusUnknown, "cannot ask OCSP responder \(url) about '\(certificate.subject)': \(error)")
            }
        }
        guard mode == .hardFail else { return nil }
        return lastProblem ?? problem(.revocationStatusUnknown, "no stapled OCSP response, current CRL or OCSP responder gives the revocation status of '\(certificate.subject)'")
    }

    private static func revokedProblem(_ single: OCSPResponse.SingleResponse, _ certificate: Certificate, _ position: Int, source: String) -> VerificationError.Problem {
        guard case .revoked(let date, let reason) = single.status else {
            return VerificationError.Problem(.revoked, "'\(certificate.subject)' is revoked", position: position, subject: certificate.subject)
        }
        var problem = VerificationError.Problem(
            .revoked, "'\(certificate.subject)' (serial \(certificate.serialNumber)) was revoked on \(date) (\(reason ?? .unspecified)), says the \(source)",
            position: position, subject: certificate.subject)
        problem.revocationDate = date
        problem.revocationReason = reason
        return problem
    }
}

extension Verifier {
    /// Verifies `leaf` as ``verify(_:intermediates:policy:)`` does, then establishes the
    /// revocation status of the chain it found in `revocation` mode: the same
    /// ``RevocationCheckingMode`` a TLS configuration's `ocspRevocation` takes, checked the
    /// same way (``RevocationChecker``): a stapled response for the leaf, the trust store's
    /// CRLs, then online OCSP through `fetcher`. The policy's time (or now) is the moment
    /// every answer must be current at.
    ///
    /// - Parameters:
    ///   - leaf: the certificate to verify.
    ///   - intermediates: certificates that may complete the path (any order).
    ///   - policy: what the chain must satisfy (purpose, host name, time, profile).
    ///   - revocation: `.off` checks only what the policy's CRL rules and must-staple
    ///     demand; `.softFail` refuses a definite revoked; `.hardFail` needs a fresh good
    ///     answer for every certificate below the anchor.
    ///   - stapledResponse: an OCSP response about the leaf obtained by other means (a TLS
    ///     staple, a file).
    ///   - fetcher: asks OCSP responders online (NIOGnuTLS's `OCSPClient.fetch` does, off
    ///     any event loop); `nil`: no online queries.
    /// - Returns: the validated chain, leaf first.
    /// - Throws: ``VerificationError`` naming every problem and its chain position.
    @discardableResult
    public func verify(
        _ leaf: Certificate, intermediates: [Certificate] = [], policy: VerificationPolicy? = nil,
        revocation: RevocationCheckingMode, stapledResponse: OCSPResponse? = nil, fetcher: OCSPFetcher? = nil
    ) async throws(VerificationError) -> VerifiedChain {
        let chain: VerifiedChain
        do {
            chain = try verify(leaf, intermediates: intermediates, policy: policy)
        } catch let error as VerificationError {
            throw error
        } catch {
            throw VerificationError(problems: [VerificationError.Problem(.rejectedByGnuTLS, "GnuTLS could not verify the chain: \(error)")])
        }
        let checker = revocationCheckers[revocation] ?? RevocationChecker(mode: revocation)
        let crls = (policy ?? defaultPolicy).revocation == .disabledInsecure ? [] : trustStore.crls
        try await checker.check(chain: chain.certificates, staple: stapledResponse, crls: crls,
                                at: (policy ?? defaultPolicy).time ?? Date(), fetcher: fetcher)
        return chain
    }
}

/// Good OCSP answers by certificate ID until their nextUpdate.
final class OCSPAnswerCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [OCSPCertificateID: (OCSPResponse, Date)] = [:]

    func lookup(_ id: OCSPCertificateID, at now: Date) -> OCSPResponse? {
        lock.withLock {
            guard let (response, until) = entries[id] else { return nil }
            guard now < until else {
                entries[id] = nil
                return nil
            }
            return response
        }
    }

    func store(_ id: OCSPCertificateID, _ response: OCSPResponse, until: Date) {
        lock.withLock {
            if entries.count >= 4096 { entries.removeAll(keepingCapacity: true) }
            entries[id] = (response, until)
        }
    }
}
