import Foundation
import GnuTLS
import GnuTLSAuthority
import TestSupport

/// A CA with a ledger in a temporary directory, and certificates it issued (OCSP signing
/// tests in GnuTLSAuthorityTests, OCSP checking tests in GnuTLSTests).
public struct OCSPFixture {
    public let directory: TemporaryDirectory
    public let ca: LocalAuthority
    public let ledger: SQLiteLedger

    public init() throws {
        directory = try TemporaryDirectory()
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=OCSP Test Root"))
        ledger = try SQLiteLedger.create(path: directory.file("ledger.sqlite"), authority: root.certificate)
        ca = try LocalAuthority(certificate: root.certificate, key: root.key, ledger: ledger)
    }

    public func leaf(_ name: String = "host.example.com", options: IssuanceOptions = IssuanceOptions(validityDays: 30)) throws -> Certificate {
        let key = try KeyPair.generate(.ecdsaP256)
        let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: key, alternativeNames: [.dnsName(name)])
        return try ca.issue(csr, profile: .tlsServer, options: options)
    }

    public func responder(profile: CertificateProfile = .ocspResponder) throws -> (Certificate, KeyPair) {
        let key = try KeyPair.generate(.ecdsaP256)
        let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=OCSP Responder"), key: key)
        return (try ca.issue(csr, profile: profile, options: IssuanceOptions(validityDays: 7)), key)
    }
}
