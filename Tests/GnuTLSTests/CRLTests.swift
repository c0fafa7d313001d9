import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import GnuTLSTestSupport
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

    // MARK: Item 8: CRLs at scale, parsed with swift-asn1 and verified on the TBS bytes

    /// 20,000 entries took 17 s to parse through GnuTLS's importer (quadratic); the value is
    /// now read in one pass and each serial is a dictionary lookup. No timing is asserted:
    /// the test checks every field at that size (and, before the fix, ran for minutes).
    @Test func aCRLWithTwentyThousandEntriesKeepsEveryEntry() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Large CRL Root"))
        let now = Self.seconds(Date())
        let reasons: [RevocationReason?] = [.keyCompromise, .superseded, nil, nil]
        var entries: [CertificateRevocationList.Entry] = []
        for index in 0..<20_000 {
            let serial: [UInt8] = [0x20] + withUnsafeBytes(of: UInt32(index).bigEndian, Array.init)
            entries.append(CertificateRevocationList.Entry(serialNumber: SerialNumber(bytes: serial),
                                                           revocationDate: now.addingTimeInterval(TimeInterval(-index)), reason: reasons[index % 4]))
        }
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [9]),
                                                       thisUpdate: now, nextUpdate: now.addingTimeInterval(86_400), entries: entries)
        #expect(crl.entries == entries)
        #expect(crl.isSigned(by: ca.certificate))
        for index in stride(from: 0, to: entries.count, by: 997) {
            #expect(crl.entry(for: entries[index].serialNumber) == entries[index])
        }
        #expect(crl.entry(for: SerialNumber(bytes: [0x21, 0, 0, 0, 0])) == nil)
        let verifier = try Verifier(trustStore: TrustStore(certificates: [ca.certificate], crls: [crl]))
        #expect(verifier.trustStore.crls.first?.entries.count == 20_000)
    }

    /// The parse agrees with the one GnuTLS made before, field by field, on dates across the
    /// UTCTime/GeneralizedTime boundary and before 1970.
    @Test func datesAreReadExactly() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Dates Root"), validityDays: 40_000)
        let dates = [-86_400.0 * 365 * 15, 0, 946_684_799, 951_782_400, 2_524_607_999, 2_524_608_000, 4_107_542_400]
            .map { Date(timeIntervalSince1970: $0) }
        let crl = try CertificateRevocationList.create(
            issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]), thisUpdate: Self.seconds(Date()), nextUpdate: nil,
            entries: dates.enumerated().map { .init(serialNumber: SerialNumber(bytes: [UInt8($0.offset + 1)]), revocationDate: $0.element) })
        #expect(crl.entries.map(\.revocationDate) == dates)
        for date in dates {
            let c = UTCCalendar.components(of: date)
            #expect(UTCCalendar.date(year: c.year, month: c.month, day: c.day, hours: c.hours, minutes: c.minutes, seconds: c.seconds) == date)
        }
    }

    /// Structures GnuTLS refused on import are refused by the swift-asn1 parser too, with
    /// `.malformedDER`: trailing fields, an entry without its date, a bad version, a
    /// truncated list.
    @Test func hostileStructuresAreMalformedDER() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Hostile CRL Root"))
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: nil, entries: [.init(serialNumber: SerialNumber(bytes: [5]), revocationDate: Date())])
        let parts = try DERReader.children(of: crl.derEncoded)
        let tbs = parts[0].children
        func sequence(_ children: [[UInt8]]) -> [UInt8] {
            let body = children.flatMap { $0 }
            let length: [UInt8] = body.count < 128 ? [UInt8(body.count)]
                : body.count < 256 ? [0x81, UInt8(body.count)] : [0x82, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
            return [0x30] + length + body
        }
        func list(_ tbsFields: [[UInt8]], extra: [[UInt8]] = []) -> [UInt8] {
            sequence([sequence(tbsFields), parts[1].encoded, parts[2].encoded] + extra)
        }
        let fields = tbs.map(\.encoded)
        let cases: [(String, [UInt8])] = [
            ("trailing field in the list", list(fields, extra: [[0x05, 0x00]])),
            ("trailing field in the TBS", list(fields + [[0x02, 0x01, 0x01]])),
            ("version 3", list([[0x02, 0x01, 0x02]] + fields.dropFirst())),
            ("entry without a date", list(fields.prefix(4) + [sequence([sequence([[0x02, 0x01, 0x05]])])] + fields.dropFirst(5))),
            ("no thisUpdate", list(Array(fields.prefix(3)))),
            ("truncated", Array(crl.derEncoded.dropLast(3))),
            ("empty", []),
        ]
        for (name, der) in cases {
            let error = #expect(throws: GnuTLSError.self, "\(name)") { try CertificateRevocationList(derEncoded: der) }
            #expect(error?.code == .malformedDER, "\(name): \(String(describing: error))")
        }
    }

    /// The signature is checked on the TBS bytes with the algorithm the CRL names, and only
    /// when the algorithm outside the signed part is the one inside it.
    @Test func anOuterAlgorithmOtherThanTheSignedOneIsNotSigned() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Algorithm Root"))
        let crl = try CertificateRevocationList.create(issuer: ca.certificate, key: ca.key, number: SerialNumber(bytes: [1]),
                                                       nextUpdate: nil, entries: [])
        #expect(crl.isSigned(by: ca.certificate))
        // ecdsa-with-SHA256 (…04 03 02) outside becomes ecdsa-with-SHA384 (…04 03 03); the TBS is untouched.
        var der = crl.derEncoded
        let oid: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]
        let last = try #require((0...(der.count - oid.count)).last { Array(der[$0..<$0 + oid.count]) == oid })
        der[last + oid.count - 1] = 0x03
        let changed = try CertificateRevocationList(derEncoded: der)
        #expect(!changed.isSigned(by: ca.certificate))
    }
}
