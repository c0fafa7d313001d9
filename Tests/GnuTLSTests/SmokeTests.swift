import Foundation
import Testing
@testable import GnuTLS

@Suite struct SmokeTests {
    @Test func wholeFlow() throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Smoke Root,O=Example,C=US"))
        let intermediate = try root.createIntermediate(subject: try DistinguishedName("CN=Smoke Issuing,O=Example"), pathLength: 0,
                                                        nameConstraints: NameConstraints(permittedDNSDomains: ["example.com"]))
        let key = try KeyPair.generate(.ecdsaP256)
        let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=api.example.com"), key: key,
                                                alternativeNames: [.dnsName("api.example.com"), .ipAddress(IPAddress("127.0.0.1")!)])
        #expect(csr.isSignatureValid)
        let leaf = try intermediate.issue(csr, profile: .tlsServer, options: IssuanceOptions(validityDays: 30, ocspURLs: ["http://127.0.0.1:8080/ocsp"]))
        #expect(leaf.issuer == intermediate.certificate.subject)
        #expect(leaf.dnsNames == ["api.example.com"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try root.certificate.pemEncoded.write(toFile: dir + "/root.pem", atomically: true, encoding: .utf8)
        try intermediate.certificate.pemEncoded.write(toFile: dir + "/int.pem", atomically: true, encoding: .utf8)
        try leaf.pemEncoded.write(toFile: dir + "/leaf.pem", atomically: true, encoding: .utf8)
        try key.pemEncoded(passphrase: "pw").write(toFile: dir + "/leaf.key", atomically: true, encoding: .utf8)
        try csr.pemEncoded.write(toFile: dir + "/csr.pem", atomically: true, encoding: .utf8)
        print(dir)
    }
}
