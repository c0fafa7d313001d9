import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import GnuTLSTestSupport
import TestSupport

/// A ledger that refuses the first `refusals` serial claims, as if they had been used before:
/// shows that the authority draws again, and that callers only need the protocol.
final class CollidingLedger: CertificateLedger {
    let inner: SQLiteLedger
    private let lock = NSLock()
    private var refusals: Int
    private(set) var refused: [SerialNumber] = []

    init(refusals: Int) throws {
        inner = try SQLiteLedger()
        self.refusals = refusals
    }

    func reserve(serial: SerialNumber) throws -> Bool {
        let refuse = lock.withLock {
            guard refusals > 0 else { return false }
            refusals -= 1
            refused.append(serial)
            return true
        }
        return refuse ? false : try inner.reserve(serial: serial)
    }
    func record(_ certificate: Certificate) throws { try inner.record(certificate) }
    func certificate(serial: SerialNumber) throws -> LedgerEntry? { try inner.certificate(serial: serial) }
    func issuedCertificates() throws -> [LedgerEntry] { try inner.issuedCertificates() }
    func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) throws -> Revocation {
        try inner.revoke(serial: serial, reason: reason, date: date)
    }
    func revocations() throws -> [Revocation] { try inner.revocations() }
    func nextCRLNumber() throws -> Int { try inner.nextCRLNumber() }
    func nextCRLSnapshot() throws -> CRLSnapshot { try inner.nextCRLSnapshot() }
}

extension CollidingLedger: @unchecked Sendable {}

@Suite struct LedgerTests {
    static func request(_ name: String) throws -> CertificateRequest {
        try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: KeyPair.generate(.ecdsaP256),
                                      alternativeNames: [.dnsName(name)])
    }

    static func savedAuthority(_ dir: TemporaryDirectory) throws -> (LocalAuthority, String) {
        let path = dir.file("ca")
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Ledger Test Root"))
        try root.save(to: path, passphrase: nil)
        return (root, path)
    }

    @Test func issuanceIsRecordedAndSurvivesReload() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, path) = try Self.savedAuthority(dir)
        #expect(FileManager.default.fileExists(atPath: dir.file("ca/ledger.sqlite")))
        let first = try ca.issue(Self.request("a.example.com"), profile: .tlsServer)
        let second = try ca.issue(Self.request("b.example.com"), profile: .tlsServer)

        let reloaded = try LocalAuthority.load(from: path, passphrase: nil)
        let ledger = try #require(reloaded.ledger)
        #expect(try ledger.issuedCertificates().map(\.certificate) == [first, second])
        #expect(try ledger.certificate(serial: second.serialNumber)?.certificate == second)
        #expect(try ledger.certificate(serial: SerialNumber(bytes: [0x42])) == nil)
        #expect(try ledger.revocations().isEmpty)
    }

    /// Issue 8, item 8: listings page instead of loading every certificate; the SQLite
    /// ledger pages in SQL, a store without its own paging gets the default one, and both
    /// walk the same certificates in the same order, revocations included.
    @Test func issuedCertificatesPage() throws {
        // CollidingLedger has no paging of its own (the protocol's default); its inner
        // SQLiteLedger pages in SQL.
        let wrapper = try CollidingLedger(refusals: 0)
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Paging Root"))
        let ca = try LocalAuthority(certificate: root.certificate, key: root.key, ledger: wrapper)
        let leaves = try (0..<7).map { try ca.issue(Self.request("p\($0).example.com"), profile: .tlsServer) }
        _ = try wrapper.revoke(serial: leaves[3].serialNumber, reason: .superseded, date: Date())
        let all = try wrapper.issuedCertificates()
        for store in [wrapper.inner, wrapper] as [any CertificateLedger] {
            for limit in [1, 3, 7, 50] {
                var walked: [LedgerEntry] = []
                var cursor: LedgerPage.Cursor?
                var pages = 0
                repeat {
                    let page = try store.issuedCertificates(after: cursor, limit: limit)
                    #expect(page.entries.count <= limit)
                    walked += page.entries
                    cursor = page.next
                    pages += 1
                } while cursor != nil && pages < 20
                #expect(walked == all, "limit \(limit)")
                #expect(pages == (all.count + limit - 1) / limit, "limit \(limit)")
            }
            #expect(try store.issuedCertificates(after: nil, limit: 0).entries.isEmpty)
        }
        #expect(all.map(\.certificate) == leaves)
        #expect(all[3].isRevoked)
    }

    @Test func revokeTwiceAndUnknownSerialAreTypedErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, _) = try Self.savedAuthority(dir)
        let leaf = try ca.issue(Self.request("r.example.com"), profile: .tlsServer)
        let date = Date(timeIntervalSince1970: 1_800_000_000)
        let revocation = try ca.revoke(leaf, reason: .keyCompromise, date: date)
        #expect(revocation == Revocation(serialNumber: leaf.serialNumber, date: date, reason: .keyCompromise))

        let twice = #expect(throws: LedgerError.self) { try ca.revoke(serial: leaf.serialNumber, reason: .superseded) }
        #expect(twice?.code == .alreadyRevoked)
        #expect(twice?.serialNumber == leaf.serialNumber)
        // The first revocation stands, unchanged.
        #expect(try ca.ledger?.revocations() == [revocation])
        #expect(try ca.ledger?.certificate(serial: leaf.serialNumber)?.revocation == revocation)

        let unknown = #expect(throws: LedgerError.self) { try ca.revoke(serial: SerialNumber(bytes: [0x01, 0x02, 0x03])) }
        #expect(unknown?.code == .unknownSerial)

        // A certificate from another CA, even one whose serial this CA happens to know, is refused.
        let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
        let foreign = try other.issue(Self.request("f.example.com"), profile: .tlsServer)
        let foreignError = #expect(throws: LedgerError.self) { try ca.revoke(foreign) }
        #expect(foreignError?.code == .unknownSerial)
    }

    @Test func authorityWithoutLedgerSaysSo() throws {
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=No Ledger Root"))
        #expect(ca.ledger == nil)
        _ = try ca.issue(Self.request("n.example.com"), profile: .tlsServer)
        let error = #expect(throws: LedgerError.self) { try ca.makeCRL() }
        #expect(error?.code == .noLedger)
    }

    @Test func crlNumberIsMonotonicAcrossReloads() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, path) = try Self.savedAuthority(dir)
        var numbers = [try #require(try ca.makeCRL().number), try #require(try ca.makeCRL().number)]
        for _ in 0..<3 {
            let reloaded = try LocalAuthority.load(from: path, passphrase: nil)
            numbers.append(try #require(try reloaded.makeCRL(nextUpdateIn: 1).number))
        }
        #expect(numbers.count == 5)
        #expect(zip(numbers, numbers.dropFirst()).allSatisfy { $0 < $1 })
        #expect(numbers.first ?? 0 >= 1)
    }

    @Test func crlListsEveryRevocationWithReasons() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, path) = try Self.savedAuthority(dir)
        let leaves = try (0..<3).map { try ca.issue(Self.request("l\($0).example.com"), profile: .tlsServer) }
        let date = Date(timeIntervalSince1970: TimeInterval(Int(Date().timeIntervalSince1970) - 120))
        try ca.revoke(leaves[0], reason: .keyCompromise, date: date)
        try ca.revoke(serial: leaves[2].serialNumber, reason: nil, date: date)

        let crl = try LocalAuthority.load(from: path, passphrase: nil).makeCRL(nextUpdateIn: 3)
        #expect(crl.isSigned(by: ca.certificate))
        #expect(crl.entries.count == 2)
        #expect(crl.entry(for: leaves[0].serialNumber) == .init(serialNumber: leaves[0].serialNumber, revocationDate: date, reason: .keyCompromise))
        #expect(crl.entry(for: leaves[2].serialNumber)?.reason == nil)
        #expect(crl.entry(for: leaves[1].serialNumber) == nil)
        #expect(crl.authorityKeyIdentifier == ca.certificate.subjectKeyIdentifier)
        let nextUpdate = try #require(crl.nextUpdate)
        #expect(nextUpdate.timeIntervalSince(crl.thisUpdate) == 3 * 86_400)
    }

    @Test func ledgerRefusesDuplicateSerials() throws {
        let ledger = try SQLiteLedger()
        let ca = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Dup Root"))
        let leaf = try ca.issue(Self.request("d.example.com"), profile: .tlsServer)
        #expect(try ledger.reserve(serial: leaf.serialNumber))
        #expect(try !ledger.reserve(serial: leaf.serialNumber))
        try ledger.record(leaf)
        let error = #expect(throws: LedgerError.self) { try ledger.record(leaf) }
        #expect(error?.code == .duplicateSerial)
        #expect(try ledger.issuedCertificates().count == 1)
        // A recorded certificate's serial cannot be claimed again either.
        let other = try ca.issue(Self.request("e.example.com"), profile: .tlsServer)
        try ledger.record(other)
        #expect(try !ledger.reserve(serial: other.serialNumber))
    }

    @Test func authorityDrawsAnotherSerialWhenTheLedgerHasIt() throws {
        let ledger = try CollidingLedger(refusals: 2)
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Colliding Root"))
        let ca = try LocalAuthority(certificate: root.certificate, key: root.key, ledger: ledger)
        let leaf = try ca.issue(Self.request("c.example.com"), profile: .tlsServer)
        #expect(ledger.refused.count == 2)
        #expect(!ledger.refused.contains(leaf.serialNumber))
        #expect(try ledger.issuedCertificates().map(\.certificate) == [leaf])
    }

    @Test func intermediatesAreRecordedInTheParentsLedger() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, _) = try Self.savedAuthority(dir)
        let intermediate = try ca.createIntermediate(subject: try DistinguishedName("CN=Ledger Sub CA"))
        #expect(try ca.ledger?.certificate(serial: intermediate.certificate.serialNumber)?.certificate == intermediate.certificate)
        #expect(intermediate.ledger == nil)
    }

    @Test func ledgerIsWALAndSound() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (ca, _) = try Self.savedAuthority(dir)
        _ = try ca.issue(Self.request("w.example.com"), profile: .tlsServer)
        let ledger = try SQLiteLedger(path: dir.file("ca/ledger.sqlite"))
        #expect(try ledger.integrityProblems().isEmpty)
        #expect(try ledger.unusedReservedSerials().isEmpty)
        // WAL mode is persistent in the file header: bytes 18 and 19 (write and read
        // format versions) are 2 for WAL, 1 for a rollback journal (sqlite.org/fileformat.html).
        let header = try #require(FileManager.default.contents(atPath: dir.file("ca/ledger.sqlite")))
        #expect(header.count >= 100)
        #expect(Array(header.prefix(16)) == Array("SQLite format 3\0".utf8))
        #expect(header[18] == 2 && header[19] == 2)
    }
}
