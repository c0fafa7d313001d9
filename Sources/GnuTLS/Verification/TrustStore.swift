import Foundation
import GnuTLSCore

/// The certificates (and CRLs) a verifier trusts: trust anchors, optionally the system's.
///
/// A cheap-to-copy value; it becomes a GnuTLS trust list once, when a ``Verifier`` (or a TLS
/// context) is built from it.
///
/// ```swift
/// var trust = try TrustStore(contentsOfFile: "ca.pem")
/// trust.add(crl)
/// let verifier = try Verifier(trustStore: trust)
/// ```
public struct TrustStore: Hashable, Sendable {
    /// Trust anchors given explicitly. Any certificate may be an anchor, not only a
    /// self-signed root: a trusted intermediate is trusted as such.
    public private(set) var certificates: [Certificate]
    /// Revocation lists consulted during verification.
    public private(set) var crls: [CertificateRevocationList]
    /// Whether the system's trusted CAs (p11-kit / ca-certificates) are included.
    public var includesSystemTrust: Bool

    /// A store of the given anchors and CRLs.
    public init(certificates: [Certificate] = [], crls: [CertificateRevocationList] = [], includesSystemTrust: Bool = false) {
        self.certificates = []
        self.crls = []
        self.includesSystemTrust = includesSystemTrust
        add(contentsOf: certificates)
        for crl in crls { add(crl) }
    }

    /// The system's trusted CAs.
    public static var system: TrustStore { TrustStore(includesSystemTrust: true) }

    /// Anchors from a PEM bundle (or one DER certificate). Loading follows one convention
    /// across the package: `init(contentsOfFile:)` for a value, `load(contentsOfFile:)` for
    /// a list (``Certificate/load(contentsOfFile:)``), `add…(contentsOfFile:)` to extend.
    public init(contentsOfFile path: String) throws {
        self.init(certificates: try Certificate.load(contentsOfFile: path))
    }

    /// Anchors from every `*.pem`, `*.crt` and `*.cer` file in a directory (CRL files,
    /// `*.crl`, are added as CRLs).
    public init(directory path: String) throws {
        self.init()
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw GnuTLSError(.fileAccess, "cannot list trust directory \(path): \(error.localizedDescription)")
        }
        for name in names {
            let full = (path as NSString).appendingPathComponent(name)
            let lower = name.lowercased()
            if lower.hasSuffix(".crl") {
                for crl in try CertificateRevocationList.load(contentsOfFile: full) { add(crl) }
            } else if lower.hasSuffix(".pem") || lower.hasSuffix(".crt") || lower.hasSuffix(".cer") {
                add(contentsOf: try Certificate.load(contentsOfFile: full))
            }
        }
    }

    /// Adds an anchor (duplicates are ignored).
    public mutating func add(_ certificate: Certificate) {
        if !certificates.contains(certificate) { certificates.append(certificate) }
    }

    /// Adds anchors.
    public mutating func add(contentsOf certificates: [Certificate]) {
        for certificate in certificates { add(certificate) }
    }

    /// Adds a CRL (duplicates are ignored).
    public mutating func add(_ crl: CertificateRevocationList) {
        if !crls.contains(crl) { crls.append(crl) }
    }

    /// Adds every CRL of a PEM bundle or DER file.
    public mutating func addCRLs(contentsOfFile path: String) throws {
        for crl in try CertificateRevocationList.load(contentsOfFile: path) { add(crl) }
    }

    /// Builds the GnuTLS trust list and returns it with every anchor as a value.
    func prepare() throws -> (TrustListHandle, [Certificate]) {
        let list = try TrustListHandle()
        try list.addAnchors(certificates.map(\.derEncoded))
        var anchors = certificates
        if includesSystemTrust {
            let system = try TrustListHandle()
            try system.addSystemTrust()
            for der in try system.anchors() {
                guard let certificate = try? Certificate(derEncoded: der), !anchors.contains(certificate) else { continue }
                anchors.append(certificate)
            }
            try list.addAnchors(anchors.dropFirst(certificates.count).map(\.derEncoded))
        }
        return (list, anchors)
    }
}
