import Foundation
import GnuTLS
import GnuTLSAuthority
import TestSupport

/// The run-time PKI behind the NIOGnuTLS articles' snippets: a root and an issuing CA, a
/// server certificate for `api.example.com` (SPIFFE ID `spiffe://example.com/api`), and client certificates with a subject and a
/// SPIFFE ID, written as PEM files (keys encrypted with ``passphrase``) in a temporary
/// directory, because the articles load them from files.
struct DocPKI: Sendable {
    let directory: TemporaryDirectory
    let root: LocalAuthority
    let issuing: LocalAuthority
    let server: TLSIdentity
    let passphrase = "correct horse battery staple"

    init() throws {
        directory = try TemporaryDirectory(prefix: "doc-snippets")
        root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Example Root CA,O=Example"))
        issuing = try root.createIntermediate(subject: try DistinguishedName("CN=Example Issuing CA,O=Example"), pathLength: 0)
        server = try Self.issue(by: issuing, subject: "CN=api.example.com",
                                names: [.dnsName("api.example.com"), .uri("spiffe://example.com/api")], profile: .tlsServer)
        try directory.write(root.certificate.pemEncoded, to: "ca.pem")
        try write(server, as: "server")
    }

    /// A client identity with `subject` and one SPIFFE ID; its files are `NAME.chain.pem`
    /// and `NAME.key.pem`.
    @discardableResult
    func client(_ name: String, subject: String, spiffeID: String) throws -> TLSIdentity {
        let identity = try Self.issue(by: issuing, subject: subject, names: [.uri(spiffeID)], profile: .tlsClient)
        try write(identity, as: name)
        return identity
    }

    func write(_ identity: TLSIdentity, as name: String) throws {
        try directory.write(identity.chain.map(\.pemEncoded).joined(), to: "\(name).chain.pem")
        guard let key = identity.key as? KeyPair else { throw GnuTLSError(.invalidArgument, "the doc PKI writes only in-memory keys") }
        try directory.write(try key.pemEncoded(passphrase: passphrase), to: "\(name).key.pem")
    }

    var caFile: String { directory.file("ca.pem") }
    func chainFile(_ name: String) -> String { directory.file("\(name).chain.pem") }
    func keyFile(_ name: String) -> String { directory.file("\(name).key.pem") }

    static func issue(by authority: LocalAuthority, subject: String, names: [GeneralName], profile: CertificateProfile) throws -> TLSIdentity {
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
        return try TLSIdentity(chain: try authority.issueWithChain(request, profile: profile, options: IssuanceOptions(validityDays: 30)), key: key)
    }
}
