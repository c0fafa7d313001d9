import Foundation
import Testing
@testable import GnuTLS
import TestSupport

@Suite struct CRLTests {
    static func makeLeaf(_ authority: LocalAuthority, _ name: String) throws -> Certificate {
        let key = try KeyPair.generate(.ecdsaP256)
        let csr = try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: key, alternativeNames: [.dnsName(name)])
        return try authority.issue(csr, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
    }

    /// Whole seconds, as CRLs carry them.
    static func seconds(_ date: Date) -> Date { Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)) }

    @Test func issuedCRLRoundTripsEveryField() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=CRL Test Root,O=Example"))
        let now = Self.seconds(Date())
        let revoked = try (0..<4).map { try Self.makeLeaf(ca, "host\($0).example.com") }
        let entries = [
            CertificateRevocationList.Entry(serialNumber: revoked[0].serialNumber, revocationDate: now.addingTimeInterval(-3600), reason: .keyCompromise),
            CertificateRevocationList.Entry(serialNumber: revoked[1].serialNumber, revocationDate: now.addingTimeInterval(-60), reason: .cessationOfOperation),
            CertificateRevocationList.Entry(serialNumber: revoked[2].serialNumber, revocationDate: now, reason: nil),
            CertificateRevocationList.Entry(serialNumber: revoked[3].serialNumber, revocationDate: now, reason: .unspecified),
        ]
        let crl = try CertificateRevocationList.create(
            issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [0x01, 0x00]), thisUpdate: now,
            nextUpdate: now.addingTimeInterval(7 * 86_400), entries: entries)

        #expect(crl.version == 2)
        #expect(crl.issuer == ca.certificate.subject)
        #expect(crl.thisUpdate == now)
        #expect(crl.nextUpdate == now.addingTimeInterval(7 * 86_400))
        #expect(crl.crlNumber == [0x01, 0x00])
        #expect(crl.number == 256)
        #expect(crl.authorityKeyIdentifier == ca.certificate.subjectKeyIdentifier)
        #expect(crl.signatureAlgorithm.oid == "1.2.840.10045.4.3.2")
        #expect(crl.entries.map(\.serialNumber) == revoked.map(\.serialNumber))
        #expect(crl.entries.map(\.revocationDate) == entries.map(\.revocationDate))
        // unspecified is written as an absent extension (RFC 5280: SHOULD be absent).
        #expect(crl.entries.map(\.reason) == [.keyCompromise, .cessationOfOperation, nil, nil])
        #expect(crl.entry(for: revoked[1].serialNumber)?.reason == .cessationOfOperation)
        let notRevoked = try Self.makeLeaf(ca, "fine.example.com")
        #expect(crl.entry(for: notRevoked.serialNumber) == nil)
        #expect(crl.isSigned(by: ca.certificate))
        #expect(!crl.isStale(at: now.addingTimeInterval(86_400)))
        #expect(crl.isStale(at: now.addingTimeInterval(8 * 86_400)))

        // No CRL extension is critical; the entries' reason extension is 2.5.29.21.
        #expect(Set(crl.extensions.map(\.oid)) == ["2.5.29.35", "2.5.29.20"])
        #expect(crl.extensions.allSatisfy { !$0.critical })

        // PEM and DER round trips give the same value.
        #expect(try CertificateRevocationList(pemEncoded: crl.pemEncoded) == crl)
        #expect(try CertificateRevocationList(derEncoded: crl.derEncoded).entries == crl.entries)
    }

    @Test(arguments: [
        (KeyAlgorithm.ecdsaP256, "1.2.840.10045.4.3.2"),
        (KeyAlgorithm.ecdsaP384, "1.2.840.10045.4.3.3"),
        (KeyAlgorithm.ecdsaP521, "1.2.840.10045.4.3.4"),
        (KeyAlgorithm.ed25519, "1.3.101.112"),
        (KeyAlgorithm.rsa2048, "1.2.840.113549.1.1.11"),
    ])
    func signsWithEveryKeyType(algorithm: KeyAlgorithm, oid: String) throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=\(algorithm) Root"), key: KeyPair.generate(algorithm))
        let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=\(algorithm) Root"), key: KeyPair.generate(algorithm))
        let leaf = try Self.makeLeaf(ca, "a.example.com")
        let crl = try CertificateRevocationList.create(
            issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [7]), nextUpdate: Date().addingTimeInterval(3600),
            entries: [.init(serialNumber: leaf.serialNumber, revocationDate: Date(), reason: .superseded)])
        #expect(crl.signatureAlgorithm.oid == oid)
        #expect(crl.isSigned(by: ca.certificate))
        // Same subject name, different key: the signature must not verify.
        #expect(!crl.isSigned(by: other.certificate))
        #expect(crl.entries.first?.reason == .superseded)
    }

    @Test func isSignedIsFalseForAnotherCA() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Issuer A"))
        let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Issuer B"))
        let intermediate = try ca.createIntermediate(subject: try DistinguishedName("CN=Issuer A Sub"))
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: nil, entries: [])
        #expect(crl.isSigned(by: ca.certificate))
        #expect(!crl.isSigned(by: other.certificate))
        #expect(!crl.isSigned(by: intermediate.certificate))
        #expect(crl.entries.isEmpty)
        #expect(crl.nextUpdate == nil)
    }

    @Test func tamperedCRLDoesNotVerify() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Tamper Root"))
        let leaf = try Self.makeLeaf(ca, "t.example.com")
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: Date().addingTimeInterval(60),
                                                       entries: [.init(serialNumber: leaf.serialNumber, revocationDate: Date(), reason: .keyCompromise)])
        // Change the reason code (ENUMERATED 1 -> 4) inside the signed part.
        var der = crl.derEncoded
        let pattern: [UInt8] = [0x06, 0x03, 0x55, 0x1D, 0x15, 0x04, 0x03, 0x0A, 0x01, 0x01]
        let at = try #require((0...(der.count - pattern.count)).first { Array(der[$0..<$0 + pattern.count]) == pattern })
        der[at + pattern.count - 1] = 0x04
        let tampered = try CertificateRevocationList(derEncoded: der)
        #expect(tampered.entries.first?.reason == .superseded)
        #expect(!tampered.isSigned(by: ca.certificate))
    }

    @Test func bundlesAndFiles() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Bundle Root"))
        let first = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                         nextUpdate: Date().addingTimeInterval(60), entries: [])
        let second = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [2]),
                                                          nextUpdate: Date().addingTimeInterval(60), entries: [])
        let all = try CertificateRevocationList.parseAll(pemEncoded: "text before\n" + first.pemEncoded + ca.certificate.pemEncoded + second.pemEncoded)
        #expect(all.map(\.number) == [1, 2])
        #expect(throws: GnuTLSError.self) { try CertificateRevocationList(pemEncoded: first.pemEncoded + second.pemEncoded) }

        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let pemPath = try dir.write(first.pemEncoded + second.pemEncoded, to: "crls.pem")
        let derPath = try dir.write(second.derEncoded, to: "crl.der")
        #expect(try CertificateRevocationList.load(contentsOfFile: pemPath) == [first, second])
        #expect(try CertificateRevocationList.load(contentsOfFile: derPath) == [second])
    }

    @Test func refusesWhatIsNotACRL() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Not A CRL Root"))
        let certError = #expect(throws: GnuTLSError.self) { try CertificateRevocationList(derEncoded: ca.certificate.derEncoded) }
        #expect(certError?.code == .unexpectedObject)
        let garbage = #expect(throws: GnuTLSError.self) { try CertificateRevocationList(derEncoded: [0x30, 0x03, 0x02, 0x01, 0x01]) }
        #expect(garbage?.code == .malformedDER)
        let pemError = #expect(throws: GnuTLSError.self) { try CertificateRevocationList(pemEncoded: ca.certificate.pemEncoded) }
        #expect(pemError?.code == .unexpectedObject)
    }

    @Test func refusesAKeyThatIsNotTheIssuers() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Key Root"))
        let error = #expect(throws: GnuTLSError.self) {
            try CertificateRevocationList.create(issuer: ca.certificate, key: KeyPair.generate(.ecdsaP256), number: SerialNumber(bytes: [1]),
                                                 nextUpdate: nil, entries: [])
        }
        #expect(error?.code == .invalidArgument)
    }

    @Test func datesFrom2050AreGeneralizedTime() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Far Root"), validityDays: 40_000)
        let far = try #require(Calendar(identifier: .gregorian).date(from: DateComponents(timeZone: TimeZone(identifier: "UTC"), year: 2051, month: 3, day: 4, hour: 5)))
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: far, entries: [])
        #expect(crl.nextUpdate == far)
        let tbs = try DERReader.children(of: crl.derEncoded)[0].children
        #expect(tbs[3].tag == 0x17)  // thisUpdate: UTCTime
        #expect(tbs[4].tag == 0x18)  // nextUpdate: GeneralizedTime
    }

    /// `tlsctl ca revoke --serial` takes serials as `tlsctl` and openssl print them.
    @Test func serialNumbersFromHexWithColons() {
        #expect(SerialNumber(hex: "0A:1B:2C") == SerialNumber(bytes: [0x0A, 0x1B, 0x2C]))
        #expect(SerialNumber(hex: "0a1b2c") == SerialNumber(bytes: [0x0A, 0x1B, 0x2C]))
        #expect(SerialNumber(hex: "a1b2c") == SerialNumber(bytes: [0x0A, 0x1B, 0x2C]))
        #expect(SerialNumber(hex: "10:A0:FA") == SerialNumber(bytes: [0x10, 0xA0, 0xFA]))
        #expect(SerialNumber(hex: "xyz") == nil)
        #expect(SerialNumber(hex: "") == nil)
    }

    @Test func reasonNames() {
        #expect(RevocationReason.allCases.count == 10)
        for reason in RevocationReason.allCases {
            #expect(RevocationReason(name: reason.name) == reason)
            #expect(RevocationReason(rawValue: reason.rawValue) == reason)
        }
        #expect(RevocationReason(name: "KEYCOMPROMISE") == .keyCompromise)
        #expect(RevocationReason(name: "aACompromise")?.rawValue == 10)
        #expect(RevocationReason(name: "bogus") == nil)
        #expect(RevocationReason(name: "") == nil)
        #expect(RevocationReason(rawValue: 7) == nil)
        #expect(RevocationReason(rawValue: 11) == nil)
        #expect(RevocationReason(rawValue: -1) == nil)
    }

    @Test func theSignatureVerdictIsRememberedPerIssuer() throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Verdict Root"))
        let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Verdict Root"))
        let crl = try CertificateRevocationList.create(issuer: root.certificate, key: root.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: Date().addingTimeInterval(3_600), entries: [])
        let copy = crl
        for _ in 0..<2 {
            #expect(crl.isSigned(by: root.certificate))
            #expect(!crl.isSigned(by: other.certificate))
            #expect(copy.isSigned(by: root.certificate))
            #expect(!copy.isSigned(by: other.certificate))
        }
    }
}
