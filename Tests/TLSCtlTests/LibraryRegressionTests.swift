import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing

/// Library bugs found while building tlsctl, pinned here by the tlsctl developer.
@Suite("library regressions found through tlsctl")
struct LibraryRegressionTests {
    @Test("a certificate may end in the same second as its issuer: validity is compared in whole seconds")
    func validityInWholeSeconds() throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Whole Seconds Root"), validityDays: 30)
        let key = try KeyPair.generate()
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=www.example.test"), key: key, alternativeNames: [.dnsName("www.example.test")])
        // Half a second past the root's end: the certificate can only carry the root's own
        // second, so it does not outlive the root and is issued, ending exactly with it.
        let leaf = try root.issue(request, profile: .tlsServer,
                                  options: IssuanceOptions(notValidAfter: root.certificate.notValidAfter.addingTimeInterval(0.5)))
        #expect(leaf.notValidAfter == root.certificate.notValidAfter)
        // A whole second past it is refused.
        #expect(throws: IssuanceError.self) {
            try root.issue(request, profile: .tlsServer,
                           options: IssuanceOptions(notValidAfter: root.certificate.notValidAfter.addingTimeInterval(1)))
        }
    }
}
