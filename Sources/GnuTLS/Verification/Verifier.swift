import Foundation
import GnuTLSCore

/// Verifies certificate chains against a ``TrustStore`` under a ``VerificationPolicy``.
///
/// Path building and every RFC 5280 / CA-Browser-Forum check run in Swift, leaf to anchor,
/// over any order of untrusted intermediates (extras, duplicates and cycles allowed); a
/// path the Swift checks accept is then verified by GnuTLS too
/// (`gnutls_x509_trust_list_verify_crt2`), so the result is never weaker than GnuTLS.
///
/// Build a verifier once and reuse it: the GnuTLS trust list is built in `init`.
///
/// ```swift
/// let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
/// let chain = try verifier.verify(leaf, intermediates: [issuing], policy: .server(host: "api.example.com"))
/// ```
public final class Verifier: Sendable {
    /// The trust this verifier was built from.
    public let trustStore: TrustStore
    /// The policy used when a call gives none.
    public let defaultPolicy: VerificationPolicy
    let trustList: TrustListHandle
    let anchors: [Certificate]
    /// `anchors` indexed for issuer look-ups, built once.
    let anchorIndex: AnchorIndex
    /// One checker per ``RevocationCheckingMode``, so good OCSP answers fetched online are
    /// cached across calls until their nextUpdate (OCSPRevocation.swift).
    let revocationCheckers: [RevocationCheckingMode: RevocationChecker]
    /// Good signatures checked in earlier verifications, answered without a second check.
    let signatureMemo = SignatureMemo()
    /// Peer certificates parsed in earlier handshakes, by exact DER (``certificate(derEncoded:)``).
    let certificateMemo = CertificateMemo()

    /// Builds the GnuTLS trust list for `trustStore`.
    public init(trustStore: TrustStore, policy: VerificationPolicy = VerificationPolicy()) throws {
        self.trustStore = trustStore
        self.defaultPolicy = policy
        (trustList, anchors) = try trustStore.prepare()
        anchorIndex = AnchorIndex(anchors)
        revocationCheckers = Dictionary(uniqueKeysWithValues: RevocationCheckingMode.allModes.map { ($0, RevocationChecker(mode: $0)) })
    }

    /// Verifies `leaf` with the help of `intermediates` (any order).
    ///
    /// - Returns: the validated chain, leaf first.
    /// - Throws: ``VerificationError`` naming every problem and its chain position.
    @discardableResult
    public func verify(_ leaf: Certificate, intermediates: [Certificate] = [], policy: VerificationPolicy? = nil) throws -> VerifiedChain {
        try verify(leaf, intermediates: intermediates, policy: policy, consultGnuTLS: true)
    }

    /// As ``verify(_:intermediates:policy:)``; `consultGnuTLS: false` skips GnuTLS's second
    /// opinion, for callers that already had GnuTLS verify the same chain (a TLS handshake).
    /// `signaturesVerifiedByGnuTLS` says GnuTLS accepted exactly `[leaf] + intermediates`
    /// against this verifier's `anchors` in that handshake: the issuer signatures it must
    /// have checked (`linksVerifiedByGnuTLS(presented:)`) are not
    /// checked again; every other check runs.
    package func verify(_ leaf: Certificate, intermediates: [Certificate], policy: VerificationPolicy?, consultGnuTLS: Bool,
                        signaturesVerifiedByGnuTLS: Bool = false) throws -> VerifiedChain {
        let policy = policy ?? defaultPolicy
        var run = PathValidation(anchors: anchorIndex, intermediates: intermediates, crls: trustStore.crls, policy: policy)
        run.memo = signatureMemo
        if signaturesVerifiedByGnuTLS {
            run.preverifiedLinks = linksVerifiedByGnuTLS(presented: [leaf] + intermediates)
        }
        let path: [Certificate]
        switch run.findPath(from: leaf) {
        case .success(let found): path = found
        case .failure(let error): throw error
        }
        guard consultGnuTLS else { return VerifiedChain(certificates: path) }
        // Second opinion: GnuTLS on the same ordered path (anchor excluded), time checks
        // off because the time was checked against the caller's clock.
        let chain = path.count > 1 ? Array(path.dropLast()) : path
        let purpose = policy.purposes.first(where: { $0 != .any })?.rawValue
        // SHA-1 signatures passed the Swift checks only where the profile allows them
        // (low); GnuTLS 3.7 refuses them at every profile unless told otherwise.
        let verdict = try trustList.verify(chain: chain.map(\.derEncoded), purposeOID: purpose, profile: policy.securityProfile.core,
                                           allowSHA1: policy.securityProfile.allowsSHA1)
        // GnuTLS 3.7.9 counts self-issued intermediates against path-length limits and
        // cannot parse name constraints on forms it does not know (otherName); both are
        // checked above per RFC 5280, so a constraints-only objection is not a veto.
        guard verdict.status == 0 || TrustListHandle.isOnlyConstraintFailure(verdict.status) else {
            throw VerificationError(problems: [VerificationError.Problem(.rejectedByGnuTLS, "GnuTLS rejected the chain: \(verdict.text)")])
        }
        return VerifiedChain(certificates: path)
    }

    /// `der` parsed as a ``Certificate``: the value parsed earlier from the same bytes when
    /// the verifier still keeps it, else parsed now (and kept). Parsing is a pure function of
    /// the DER, so the value is the one `Certificate(derEncoded:)` returns; no check is skipped.
    /// - Throws: what `Certificate(derEncoded:)` throws (failures are not kept).
    package func certificate(derEncoded der: [UInt8]) throws -> Certificate {
        try certificateMemo.certificate(derEncoded: der)
    }

    /// How many parsed certificates the verifier keeps for repeats (tests).
    package var memoizedCertificateCount: Int { certificateMemo.count }

    /// The anchors that may have issued `child` (equal names, agreeing key identifiers), as
    /// the anchor index finds them, in trust-store order (tests).
    package func anchorsThatMayIssue(_ child: Certificate) -> [Certificate] {
        anchorIndex.issuers(of: child)
    }

    /// How many good signatures the verifier keeps for repeats (tests).
    package var memoizedSignatureCount: Int { signatureMemo.count }

    /// The issuer links (child, issuer) whose signatures GnuTLS must have checked when it
    /// accepted `presented` (leaf first) against this verifier's anchors in a handshake.
    package func linksVerifiedByGnuTLS(presented: [Certificate]) -> [(child: Certificate, issuer: Certificate)] {
        PathValidation.linksVerifiedByGnuTLS(presented: presented, anchors: anchorIndex)
    }
}
