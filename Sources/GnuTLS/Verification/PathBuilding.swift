import Foundation
import GnuTLSCore

/// One verification: path building with a bounded budget, then the checks of each path.
struct PathValidation {
    let anchors: AnchorIndex
    let candidates: [Certificate]
    let crls: [CertificateRevocationList]
    let policy: VerificationPolicy
    let now: Date
    /// Limits against pathological inputs (x509-limbo's `pathological::` cases).
    var budget = 2_000
    let maxDepth: Int
    var signatureCache: [SignatureKey: CoreSignature.Outcome] = [:]
    var bestFailure: VerificationError?
    /// Issuer links whose signatures GnuTLS checked in the handshake that presented the chain
    /// (``linksVerifiedByGnuTLS(presented:anchors:)``): not checked a second time. Every
    /// other check of the link (names, key usage, constraints, algorithm policy) still runs.
    var preverifiedLinks: [(child: Certificate, issuer: Certificate)] = []
    /// Good signatures the verifier checked in earlier runs (nil: none kept).
    var memo: SignatureMemo?

    typealias SignatureKey = CertificateSignatureKey

    init(anchors: AnchorIndex, intermediates: [Certificate], crls: [CertificateRevocationList], policy: VerificationPolicy) {
        self.anchors = anchors
        var unique: [Certificate] = []
        for certificate in intermediates where !unique.contains(certificate) && !anchors.contains(certificate) {
            unique.append(certificate)
        }
        self.candidates = unique
        self.crls = crls
        self.policy = policy
        self.now = policy.time ?? Date()
        self.maxDepth = min(Self.gnuTLSMaximumDepth, (policy.maximumIntermediates.map { $0 + 2 } ?? Self.gnuTLSMaximumDepth) + 4)
    }

    mutating func findPath(from leaf: Certificate) -> Result<[Certificate], VerificationError> {
        if anchors.contains(leaf) {
            // The leaf itself is trusted (a pinned, often self-signed, certificate): no
            // issuer to check, but its own validity, key, purpose and names still count.
            let problems = validate([leaf])
            if problems.isEmpty { return .success([leaf]) }
            record(VerificationError(problems: problems), depth: 1_000)
        }
        if let path = extend([leaf]) { return .success(path) }
        return .failure(bestFailure ?? VerificationError(problems: [
            VerificationError.Problem(.untrustedIssuer, "no chain from '\(leaf.subject)' to a trusted certificate was found", position: 0, subject: leaf.subject),
        ]))
    }

    /// Depth-first search over issuers, anchors first; returns the first path that passes.
    private mutating func extend(_ path: [Certificate]) -> [Certificate]? {
        budget -= 1
        guard budget > 0 else { return nil }
        let current = path[path.count - 1]
        var issuers: [(Certificate, Bool)] = []
        for anchor in anchors.issuers(of: current) { issuers.append((anchor, true)) }
        if path.count < maxDepth {
            for candidate in candidates where Self.mayIssue(candidate, current) && !path.contains(where: { $0 == candidate || ($0.subject == candidate.subject && $0.publicKey == candidate.publicKey) }) {
                issuers.append((candidate, false))
            }
        }
        if issuers.isEmpty {
            record(VerificationError(problems: [missingIssuerProblem(path)]), depth: path.count)
            return nil
        }
        for (issuer, isAnchor) in issuers {
            guard budget > 0 else { return nil }
            // Prune on a bad signature: this link cannot be part of any valid path.
            if signatureOutcome(of: current, by: issuer) != .valid {
                record(VerificationError(problems: [signatureProblem(current, issuer, position: path.count - 1)]), depth: path.count)
                continue
            }
            let next = path + [issuer]
            if isAnchor {
                let problems = validate(next)
                if problems.isEmpty { return next }
                record(VerificationError(problems: problems), depth: next.count + 100)
            } else if let found = extend(next) {
                return found
            }
        }
        return nil
    }

    /// Why `path` cannot be extended: its last certificate's issuer is missing, or it is
    /// there but the path already holds as many certificates as may be verified (GnuTLS
    /// verifies at most 16, `DEFAULT_MAX_VERIFY_DEPTH`; a policy may allow fewer).
    private func missingIssuerProblem(_ path: [Certificate]) -> VerificationError.Problem {
        let current = path[path.count - 1]
        let position = path.count - 1
        let issuerGiven = candidates.contains { candidate in
            Self.mayIssue(candidate, current) && !path.contains { $0 == candidate }
        }
        guard path.count >= maxDepth, issuerGiven else {
            return VerificationError.Problem(
                .untrustedIssuer, "issuer '\(current.issuer)' of '\(current.subject)' is not trusted and no intermediate for it was given",
                position: position, subject: current.subject)
        }
        let limit = maxDepth == Self.gnuTLSMaximumDepth
            ? "GnuTLS's limit of \(Self.gnuTLSMaximumDepth) certificates"
            : "the \(maxDepth) certificates this policy's maximum number of intermediates allows"
        return VerificationError.Problem(
            .pathLengthExceeded, "chain longer than \(limit): '\(current.subject)' at position \(position) still needs its issuer '\(current.issuer)' before a trust anchor is reached",
            position: position, subject: current.subject)
    }

    /// The issuer links GnuTLS must have verified when it accepted `presented` (a TLS peer's
    /// chain, leaf first) against exactly `anchors` in a handshake.
    ///
    /// GnuTLS sorts the chain by issuer, cuts it at the first trusted certificate and checks
    /// each link's signature; which issuer it picks where several match is its own choice.
    /// So a link is vouched for only where there was no choice: walking up from the leaf,
    /// every certificate has exactly one possible issuer among the presented certificates
    /// and the anchors (GnuTLS's issuer match, equal raw names and agreeing key identifiers,
    /// implies ``mayIssue(_:_:)``), up to an anchor. Any ambiguity on the way, or a walk that
    /// never reaches an anchor, vouches for nothing and every signature is checked here.
    static func linksVerifiedByGnuTLS(presented: [Certificate], anchors: AnchorIndex) -> [(child: Certificate, issuer: Certificate)] {
        guard var current = presented.first, !anchors.contains(current) else { return [] }
        var links: [(child: Certificate, issuer: Certificate)] = []
        while links.count < gnuTLSMaximumDepth {
            var issuer: Certificate?
            // An anchor found here is an anchor; a presented copy of an anchor (same DER) is
            // the same candidate, already found among the anchors.
            var issuerIsAnchor = false
            for candidate in anchors.issuers(of: current) where candidate != current {
                if let found = issuer, found != candidate { return [] }
                issuer = candidate
                issuerIsAnchor = true
            }
            for candidate in presented where candidate != current && mayIssue(candidate, current) {
                if let found = issuer, found != candidate { return [] }
                issuer = candidate
            }
            guard let issuer else { return [] }
            links.append((current, issuer))
            if issuerIsAnchor { return links }
            current = issuer
        }
        return []
    }

    /// The longest chain GnuTLS verifies (`DEFAULT_MAX_VERIFY_DEPTH` in GnuTLS 3.7).
    static let gnuTLSMaximumDepth = 16

    /// Keeps the failure of the candidate path that got furthest (complete paths rank above
    /// incomplete ones), so the error describes the chain the caller most likely meant.
    private mutating func record(_ failure: VerificationError, depth: Int) {
        if bestFailure == nil || depth > bestDepth {
            bestFailure = failure
            bestDepth = depth
        }
    }
    private var bestDepth = -1

    /// Whether `issuer`'s subject names `child`'s issuer (and their key identifiers agree).
    static func mayIssue(_ issuer: Certificate, _ child: Certificate) -> Bool {
        // The key identifiers first: comparing bytes is cheap, name matching is not.
        if let aki = child.authorityKeyIdentifier, let ski = issuer.subjectKeyIdentifier, aki != ski { return false }
        return issuer.subject.matches(child.issuer)
    }

    private mutating func signatureOutcome(of child: Certificate, by issuer: Certificate) -> CoreSignature.Outcome {
        if preverifiedLinks.contains(where: { $0.child == child && $0.issuer == issuer }) { return .valid }
        let key = SignatureKey(child: child.derEncoded, issuerKey: issuer.publicKey.derEncoded)
        if let cached = signatureCache[key] { return cached }
        if let memo, memo.contains(key) { return .valid }
        let outcome: CoreSignature.Outcome
        if let parts = SignedParts(child.derEncoded) {
            outcome = CoreSignature.verify(spki: issuer.publicKey.derEncoded, algorithmOID: child.signatureAlgorithm.oid, data: parts.tbs, signature: parts.signature)
        } else {
            outcome = .invalid
        }
        signatureCache[key] = outcome
        if outcome == .valid { memo?.insert(key) }
        return outcome
    }

    private func signatureProblem(_ child: Certificate, _ issuer: Certificate, position: Int) -> VerificationError.Problem {
        VerificationError.Problem(.signatureInvalid, "signature of '\(child.subject)' does not verify with the key of '\(issuer.subject)'", position: position, subject: child.subject)
    }
}

/// A verifier's trust anchors, indexed by subject key identifier, built once per
/// ``Verifier``: finding the anchors that may have issued a certificate looks up the
/// certificate's authority key identifier instead of matching names against every anchor
/// (a system trust store holds about 150).
struct AnchorIndex: Sendable {
    /// The anchors, in trust-store order.
    let certificates: [Certificate]
    /// Positions in ``certificates`` by subject key identifier.
    private let bySubjectKeyIdentifier: [[UInt8]: [Int]]
    /// Positions of the anchors without a subject key identifier (any child may name them).
    private let withoutSubjectKeyIdentifier: [Int]

    init(_ certificates: [Certificate]) {
        self.certificates = certificates
        var index: [[UInt8]: [Int]] = [:]
        var without: [Int] = []
        for (position, certificate) in certificates.enumerated() {
            if let ski = certificate.subjectKeyIdentifier {
                index[ski, default: []].append(position)
            } else {
                without.append(position)
            }
        }
        bySubjectKeyIdentifier = index
        withoutSubjectKeyIdentifier = without
    }

    /// The anchors that may have issued `child` (``PathValidation/mayIssue(_:_:)``), in
    /// trust-store order. A child with an authority key identifier can only name anchors
    /// whose subject key identifier equals it or that have none; a child without one is
    /// matched by name against every anchor.
    func issuers(of child: Certificate) -> [Certificate] {
        guard let aki = child.authorityKeyIdentifier else {
            return certificates.filter { PathValidation.mayIssue($0, child) }
        }
        let matching = bySubjectKeyIdentifier[aki] ?? []
        let positions = withoutSubjectKeyIdentifier.isEmpty ? matching : (matching + withoutSubjectKeyIdentifier).sorted()
        return positions.map { certificates[$0] }.filter { PathValidation.mayIssue($0, child) }
    }

    /// Whether `certificate` (its exact DER) is an anchor.
    func contains(_ certificate: Certificate) -> Bool { certificates.contains(certificate) }
}

/// A signature check's whole input: the signed certificate's DER (the signed part, the
/// algorithm and the signature value) and the issuer's public key (SPKI DER). Both are
/// hashed in one pass each and compared by value; a certificate the verifier parsed once
/// shares its DER buffer with every key made from it, so equal keys compare cheaply.
package struct CertificateSignatureKey: Hashable, Sendable {
    package var child: [UInt8]
    package var issuerKey: [UInt8]

    package init(child: [UInt8], issuerKey: [UInt8]) {
        self.child = child
        self.issuerKey = issuerKey
    }

    package func hash(into hasher: inout Hasher) {
        child.withUnsafeBytes { hasher.combine(bytes: $0) }
        hasher.combine(child.count)
        issuerKey.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// A lock-protected dictionary bounded in entries and in bytes, which starts over when
/// either bound would be passed: the verifier's memos (``SignatureMemo``,
/// ``CertificateMemo``), which a peer must not be able to grow without bound.
package final class BoundedMemo<Key: Hashable, Value>: @unchecked Sendable {  // `values` and `bytes` are only touched under `lock`.
    private let capacity: Int
    private let byteCapacity: Int
    private let lock = NSLock()
    private var values: [Key: Value] = [:]
    private var bytes = 0

    package init(capacity: Int, byteCapacity: Int) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
    }

    package func value(for key: Key) -> Value? {
        lock.lock(); defer { lock.unlock() }
        return values[key]
    }

    /// Keeps `value` for `key`, counting `size` bytes; empties the memo first when it is full.
    package func insert(_ value: Value, for key: Key, size: Int) {
        lock.lock(); defer { lock.unlock() }
        if values.count >= capacity || bytes + size > byteCapacity {
            values.removeAll(keepingCapacity: true)
            bytes = 0
        }
        if values.updateValue(value, forKey: key) == nil { bytes += size }
    }

    package var count: Int {
        lock.lock(); defer { lock.unlock() }
        return values.count
    }

    /// The bytes held (tests).
    package var heldBytes: Int {
        lock.lock(); defer { lock.unlock() }
        return bytes
    }
}

/// The good certificate signatures one ``Verifier`` has checked, by exact input. A
/// signature check is a pure function of the signed certificate (its DER: the signed part,
/// the algorithm and the signature value) and the issuer's public key, so a repeat (the
/// same peer chain on the next connection, a resumed session's stored chain) is answered
/// from here. Every other check of a path still runs each time. Only successes are kept,
/// up to ``capacity`` keys and ``byteCapacity`` bytes of them (then the set starts over):
/// a peer's own CA can sign many large certificates, which must not grow the set without
/// bound.
package final class SignatureMemo: Sendable {
    static let capacity = 4_096
    static let byteCapacity = 2 << 20
    private let valid: BoundedMemo<CertificateSignatureKey, Void>

    package init(capacity: Int = SignatureMemo.capacity, byteCapacity: Int = SignatureMemo.byteCapacity) {
        valid = BoundedMemo(capacity: capacity, byteCapacity: byteCapacity)
    }

    package func contains(_ key: CertificateSignatureKey) -> Bool { valid.value(for: key) != nil }

    package var count: Int { valid.count }

    package func insert(_ key: CertificateSignatureKey) {
        valid.insert((), for: key, size: key.child.count + key.issuerKey.count)
    }

    /// The bytes of DER and keys held (tests).
    package var heldBytes: Int { valid.heldBytes }
}

/// Certificates parsed from peer chains, by exact DER, so that the same chain presented on
/// the next connection (or restored from a resumed session) is not parsed again. Parsing is
/// a pure function of the bytes; every check of a verification still runs on the value.
/// Holds at most ``capacity`` certificates and ``byteCapacity`` bytes of DER (then starts
/// over), so peers presenting many or large certificates cannot grow it without bound;
/// failures are not kept.
package final class CertificateMemo: Sendable {
    static let capacity = 512
    static let byteCapacity = 2 << 20
    private let parsed: BoundedMemo<DERKey, Certificate>

    /// DER bytes hashed in one pass (an array of bytes hashes byte by byte).
    struct DERKey: Hashable {
        var bytes: [UInt8]
        func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    }

    package init(capacity: Int = CertificateMemo.capacity, byteCapacity: Int = CertificateMemo.byteCapacity) {
        parsed = BoundedMemo(capacity: capacity, byteCapacity: byteCapacity)
    }

    package func certificate(derEncoded der: [UInt8]) throws -> Certificate {
        let key = DERKey(bytes: der)
        if let known = parsed.value(for: key) { return known }
        let certificate = try Certificate(derEncoded: der)
        parsed.insert(certificate, for: key, size: der.count)
        return certificate
    }

    package var count: Int { parsed.count }

    /// The bytes of DER held (tests).
    package var heldBytes: Int { parsed.heldBytes }
}

/// The signed part of a certificate or CRL, split with SwiftASN1:
/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`.
struct SignedParts {
    var tbs: [UInt8]
    var outerAlgorithm: [UInt8]
    var innerAlgorithm: [UInt8]
    var signature: [UInt8]

    init?(_ der: [UInt8]) {
        guard let top = try? DERReader.children(of: der), top.count == 3, top[2].tag == 0x03 else { return nil }
        tbs = top[0].encoded
        outerAlgorithm = top[1].encoded
        let content = top[2].content
        guard content.first == 0 else { return nil }
        signature = Array(content.dropFirst())
        // TBSCertificate: [0] version?, serialNumber, signature, … ; TBSCertList: version?, signature, …
        let fields = top[0].children
        guard let algorithm = fields.first(where: { $0.tag == 0x30 }) else { return nil }
        innerAlgorithm = algorithm.encoded
    }
}

extension SignedParts {
    /// Whether the signature algorithm inside the signed part equals the one outside it
    /// (RFC 5280 4.1.1.2), read in place: the same answer as comparing ``innerAlgorithm`` and
    /// ``outerAlgorithm`` without parsing the whole certificate. `nil` when `der` is not
    /// `SEQUENCE { SEQUENCE tbs, SEQUENCE algorithm, BIT STRING signature }` (as
    /// ``init(_:)`` would fail).
    static func algorithmsAgree(_ der: [UInt8]) -> Bool? {
        der.withUnsafeBufferPointer { bytes -> Bool? in
            guard let top = DERHeader(bytes, at: 0, limit: bytes.count), top.tag == 0x30, top.end == bytes.count,
                  let tbs = DERHeader(bytes, at: top.contentStart, limit: top.end), tbs.tag == 0x30,
                  let outer = DERHeader(bytes, at: tbs.end, limit: top.end), outer.tag == 0x30,
                  let signature = DERHeader(bytes, at: outer.end, limit: top.end), signature.tag == 0x03, signature.end == top.end,
                  signature.contentStart < signature.end, bytes[signature.contentStart] == 0 else { return nil }
            // The first SEQUENCE among the TBS fields ([0] version and the serial come first).
            var offset = tbs.contentStart
            while offset < tbs.end {
                guard let field = DERHeader(bytes, at: offset, limit: tbs.end) else { return nil }
                if field.tag == 0x30 {
                    return bytes[field.start..<field.end].elementsEqual(bytes[outer.start..<outer.end])
                }
                offset = field.end
            }
            return nil
        }
    }
}

/// The identifier and length octets of one DER element with a one-octet tag, bounds-checked.
private struct DERHeader {
    var tag: UInt8
    var start: Int
    var contentStart: Int
    var end: Int

    init?(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int, limit: Int) {
        guard start >= 0, start + 2 <= limit, limit <= bytes.count else { return nil }
        tag = bytes[start]
        guard tag & 0x1F != 0x1F else { return nil }
        var length = Int(bytes[start + 1])
        var cursor = start + 2
        if length & 0x80 != 0 {
            let octets = length & 0x7F
            guard (1...4).contains(octets), cursor + octets <= limit else { return nil }
            length = 0
            for _ in 0..<octets {
                length = length << 8 | Int(bytes[cursor])
                cursor += 1
            }
        }
        guard length <= limit - cursor else { return nil }
        self.start = start
        contentStart = cursor
        end = cursor + length
    }
}

extension VerificationError {
    /// GnuTLS keeps at most 16 of the certificates a TLS peer presents
    /// (`DEFAULT_MAX_VERIFY_DEPTH`). When the peer presented that many and the chain breaks
    /// at the last one kept, its issuer is one GnuTLS dropped: report the chain's length
    /// (``Reason/pathLengthExceeded``), not a missing intermediate.
    package func explainingPeerChainLimit(presented: Int) -> VerificationError {
        let limit = PathValidation.gnuTLSMaximumDepth
        guard presented >= limit else { return self }
        var explained = self
        explained.problems = problems.map { problem in
            guard problem.reason == .untrustedIssuer, problem.position == limit - 1 else { return problem }
            var relabeled = problem
            relabeled.reason = .pathLengthExceeded
            relabeled.message = "chain longer than GnuTLS's limit of \(limit) certificates: the peer's chain does not reach a trust anchor within the first \(limit), and GnuTLS keeps no more (\(problem.message))"
            return relabeled
        }
        return explained
    }
}
