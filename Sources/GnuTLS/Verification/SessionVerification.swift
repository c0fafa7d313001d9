import Foundation

/// The verification a client's session was authenticated with: the chain this context's
/// Swift verifier accepted in the full handshake that made the session, for which host, and
/// the times between which that verdict holds.
///
/// A resumed connection is the same authenticated session (RFC 5246 7.3, RFC 8446 2.2): the
/// peer's certificates restored with it are the ones verified then (TLS 1.3 restores none).
/// Within one context nothing else the verdict rests on can change: the anchors, the CRLs
/// and the policy are fixed when the context is built. So a resumption that offered this
/// session is judged by this record at the current time, and the chain is verified again
/// whenever the record does not hold: another host, other certificates, or a time outside
/// the record (a certificate expired, a CRL consulted is past its next update).
package struct SessionVerification: Sendable {
    /// The chain the verifier accepted, leaf to anchor.
    package let chain: VerifiedChain
    /// The certificates the peer presented, DER, leaf first.
    package let presented: [[UInt8]]
    /// The host name or IP the chain was verified for.
    package let host: String?
    /// The latest `notBefore` in the chain.
    package let validFrom: Date
    /// The earliest `notAfter` in the chain and `nextUpdate` of the CRLs consulted.
    package let validUntil: Date

    /// - Parameter crls: the CRLs the verification consulted.
    package init(chain: VerifiedChain, presented: [[UInt8]], host: String?, crls: [CertificateRevocationList]) {
        self.chain = chain
        self.presented = presented
        self.host = host
        validFrom = chain.certificates.map(\.notValidBefore).max() ?? .distantPast
        validUntil = chain.validUntil(consulting: crls)
    }

    /// Whether the record answers for a resumed connection to `host` whose peer
    /// certificates are `presented` (empty: TLS 1.3, which restores none) at `now`.
    package func holds(presented: [[UInt8]], host: String?, at now: Date) -> Bool {
        host == self.host && now >= validFrom && now < validUntil
            && (presented.isEmpty || DERList.equal(presented, self.presented))
    }
}

extension VerifiedChain {
    /// Until when a verdict on this chain holds: the earliest `notAfter` in the chain and
    /// `nextUpdate` of the CRLs consulted.
    func validUntil(consulting crls: [CertificateRevocationList]) -> Date {
        var until = Date.distantFuture
        for certificate in certificates { until = min(until, certificate.notValidAfter) }
        for crl in crls {
            if let nextUpdate = crl.nextUpdate { until = min(until, nextUpdate) }
        }
        return until
    }
}

/// Comparing lists of DER encodings by their bytes (memcmp), not element by element.
enum DERList {
    static func equal(_ lhs: [[UInt8]], _ rhs: [[UInt8]]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for index in lhs.indices {
            let same = lhs[index].withUnsafeBytes { left in
                rhs[index].withUnsafeBytes { right in
                    guard left.count == right.count else { return false }
                    guard let l = left.baseAddress, let r = right.baseAddress else { return true }  // both empty
                    return memcmp(l, r, left.count) == 0
                }
            }
            if !same { return false }
        }
        return true
    }

    static func hash(_ list: [[UInt8]], into hasher: inout Hasher) {
        hasher.combine(list.count)
        for der in list {
            hasher.combine(der.count)
            der.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }
}
