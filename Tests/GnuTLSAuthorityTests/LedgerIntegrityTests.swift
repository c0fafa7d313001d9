import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import GnuTLSTestSupport
import TestSupport

/// A ledger through which another "process" (a second authority on the same file) revokes a
/// certificate and issues a CRL at the worst moment: between reading the revocations and
/// handing out the CRL number, if those are two steps.
final class InterleavingLedger: CertificateLedger, @unchecked Sendable {
    let inner: SQLiteLedger
    private let lock = NSLock()
    private var interleave: (() throws -> Void)?

    init(_ inner: SQLiteLedger, interleave: @escaping () throws -> Void) {
        self.inner = inner
        self.interleave = interleave
    }

    private func runInterleave() throws {
        let body = lock.withLock { () -> (() throws -> Void)? in
            defer { interleave = nil }
            return interleave
        }
        try body?()
    }

    func reserve(serial: SerialNumber) throws -> Bool { try inner.reserve(serial: serial) }
    func record(_ certificate: Certificate) throws { try inner.record(certificate) }
    func certificate(serial: SerialNumber) throws -> LedgerEntry? { try inner.certificate(serial: serial) }
    func issuedCertificates() throws -> [LedgerEntry] { try inner.issuedCertificates() }
    func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) throws -> Revocation {
        try inner.revoke(serial: serial, reason: reason, date: date)
    }
    func revocations() throws -> [Revocation] { try inner.revocations() }
    func nextCRLNumber() throws -> Int {
        try runInterleave()
        return try inner.nextCRLNumber()
    }
    func nextCRLSnapshot() throws -> CRLSnapshot {
        // The other writer can only run before or after the one transaction.
        try runInterleave()
        return try inner.nextCRLSnapshot()
    }
}

@Suite struct LedgerIntegrityTests {
    static func request(_ name: String) throws -> CertificateRequest {
        try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: KeyPair.generate(.ecdsaP256),
                                      alternativeNames: [.dnsName(name)])
    }

    /// A CA saved in `dir/ca` with `leaves` issued server certificates.
    static func savedAuthority(_ dir: TemporaryDirectory, leaves: Int = 0, subject: String = "CN=Integrity Root") throws -> (path: String, leaves: [Certificate]) {
        let path = dir.file("ca")
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName(subject))
        try root.save(to: path, passphrase: nil)
        let issued = try (0..<leaves).map { try root.issue(Self.request("leaf\($0).example.com"), profile: .tlsServer) }
        return (path, issued)
    }

    static func ledgerError(_ code: LedgerError.Code, mentioning words: [String] = [],
                            sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        _ = expectThrows(code, { (error: LedgerError) in error.code }, \.message, words: words, sourceLocation: sourceLocation, body)
    }

    // MARK: 1. The revocation snapshot and the CRL number are one step

    @Test func aCRLWithAHigherNumberNeverListsFewerRevocations() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, leaves) = try Self.savedAuthority(dir, leaves: 2)
        let other = try LocalAuthority.load(from: path, passphrase: nil)
        var otherCRL: CertificateRevocationList?
        let loaded = try LocalAuthority.load(from: path, passphrase: nil)
        let ledger = InterleavingLedger(try #require(loaded.ledger as? SQLiteLedger)) {
            try other.revoke(leaves[1], reason: .keyCompromise)
            otherCRL = try other.makeCRL()
        }
        let ca = try LocalAuthority(certificate: loaded.certificate, key: loaded.key, ledger: ledger)
        try ca.revoke(leaves[0], reason: .superseded)

        let crl = try ca.makeCRL()
        let earlier = try #require(otherCRL)
        let (lower, higher) = try #require(crl.number) > #require(earlier.number) ? (earlier, crl) : (crl, earlier)
        #expect(Set(lower.entries.map(\.serialNumber)).isSubset(of: Set(higher.entries.map(\.serialNumber))),
                "CRL \(higher.number ?? 0) lists \(higher.entries.count) entries, CRL \(lower.number ?? 0) lists \(lower.entries.count)")
        #expect(crl.entry(for: leaves[1].serialNumber)?.reason == .keyCompromise)
    }

    // MARK: 2. Only creating a CA creates a ledger, and a ledger belongs to its CA

    @Test func aDeletedLedgerIsRefusedNotRecreated() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir, leaves: 1)
        try FileManager.default.removeItem(atPath: dir.file("ca/ledger.sqlite"))
        Self.ledgerError(.ledgerMissing, mentioning: ["ledger.sqlite", "missing"]) {
            _ = try LocalAuthority.load(from: path, passphrase: nil)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.file("ca/ledger.sqlite")))
    }

    @Test func anEmptyLedgerFileIsRefusedAndLeftAlone() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir, leaves: 1)
        let ledgerPath = dir.file("ca/ledger.sqlite")
        try FileManager.default.removeItem(atPath: ledgerPath)
        #expect(FileManager.default.createFile(atPath: ledgerPath, contents: Data()))
        Self.ledgerError(.notALedger, mentioning: ["empty"]) { _ = try LocalAuthority.load(from: path, passphrase: nil) }
        #expect(try FileManager.default.attributesOfItem(atPath: ledgerPath)[.size] as? Int == 0)
        #expect(!FileManager.default.fileExists(atPath: ledgerPath + "-wal"))
    }

    @Test func anotherDatabaseIsNotALedger() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir)
        let ledgerPath = dir.file("ca/ledger.sqlite")
        try FileManager.default.removeItem(atPath: ledgerPath)
        try await Tool.runChecked(["sqlite3", ledgerPath, "CREATE TABLE notes (text TEXT)"])
        Self.ledgerError(.notALedger, mentioning: ["no CA ledger"]) { _ = try LocalAuthority.load(from: path, passphrase: nil) }
        try FileManager.default.removeItem(atPath: ledgerPath)
        _ = try dir.write("not a database, just text that is long enough to have a header", to: "ca/ledger.sqlite")
        Self.ledgerError(.notALedger) { _ = try LocalAuthority.load(from: path, passphrase: nil) }
    }

    @Test func aLedgerFromAnotherCAIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir, leaves: 1)
        let otherCertificate = try {
            let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
            try other.save(to: dir.file("other"), passphrase: nil)
            return other.certificate
        }()  // released: its ledger is closed and checkpointed
        try FileManager.default.removeItem(atPath: dir.file("ca/ledger.sqlite"))
        try FileManager.default.copyItem(atPath: dir.file("other/ledger.sqlite"), toPath: dir.file("ca/ledger.sqlite"))
        Self.ledgerError(.foreignLedger, mentioning: ["another CA", "CN=Integrity Root"]) {
            _ = try LocalAuthority.load(from: path, passphrase: nil)
        }
        // Saving a CA into a directory holding another CA's ledger is refused before anything is written.
        let third = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Third Root"))
        Self.ledgerError(.foreignLedger) { try third.save(to: dir.file("other"), passphrase: nil) }
        #expect(try Certificate(pemEncoded: String(contentsOfFile: dir.file("other/ca.pem"), encoding: .utf8)) == otherCertificate)
    }

    // MARK: 3. A damaged ledger is never written to

    @Test func aLedgerFailingTheIntegrityCheckIsRefused() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir, leaves: 40)
        let ledgerPath = dir.file("ca/ledger.sqlite")
        // Zero the root page of the certificates' primary-key index: the tables still open,
        // but SQLite's integrity check fails.
        let rootPage = try await Tool.runChecked(["sqlite3", ledgerPath,
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_certificates_1'"]).standardOutput
        let page = try #require(Int(rootPage.trimmingCharacters(in: .whitespacesAndNewlines)))
        let pageSize = try #require(Int(try await Tool.runChecked(["sqlite3", ledgerPath, "PRAGMA page_size"]).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        var bytes = try #require(FileManager.default.contents(atPath: ledgerPath))
        bytes.replaceSubrange((page - 1) * pageSize..<page * pageSize, with: Data(count: pageSize))
        try bytes.write(to: URL(fileURLWithPath: ledgerPath))

        Self.ledgerError(.corrupted, mentioning: ["ledger.sqlite", "restore it from a backup"]) {
            _ = try LocalAuthority.load(from: path, passphrase: nil)
        }
        #expect(FileManager.default.contents(atPath: ledgerPath) == bytes)
    }

    // MARK: 12. Refusals touch nothing; read-only opening leaves no files

    @Test func aRefusedLoadDoesNotOpenTheLedger() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir, leaves: 1)
        try FileManager.default.removeItem(atPath: dir.file("ca/ledger.sqlite"))
        // A key that does not match the certificate.
        _ = try dir.write(try KeyPair.generate(.ecdsaP256).pemEncoded(passphrase: nil), to: "ca/ca.key.pem")
        expectIssuanceError(.authorityMisconfigured) { _ = try LocalAuthority.load(from: path, passphrase: nil) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).sorted() == ["ca.key.pem", "ca.pem", "chain.pem"])
    }

    @Test func aReadOnlyLedgerLeavesNoFilesAndRefusesWrites() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, leaves) = try Self.savedAuthority(dir, leaves: 2)
        let before = FileManager.default.contents(atPath: dir.file("ca/ledger.sqlite"))
        do {
            let ca = try LocalAuthority.load(from: path, passphrase: nil, readOnlyLedger: true)
            let ledger = try #require(ca.ledger)
            #expect(try ledger.issuedCertificates().map(\.certificate) == leaves)
            Self.ledgerError(.readOnly) { try ca.revoke(leaves[0]) }
            Self.ledgerError(.readOnly) { _ = try ca.makeCRL() }
            #expect(try FileManager.default.contentsOfDirectory(atPath: path).sorted() == ["ca.key.pem", "ca.pem", "chain.pem", "ledger.sqlite"])
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).sorted() == ["ca.key.pem", "ca.pem", "chain.pem", "ledger.sqlite"])
        #expect(FileManager.default.contents(atPath: dir.file("ca/ledger.sqlite")) == before)
    }

    // MARK: 4. Validity inputs are range-checked

    @Test func hugeValiditiesAreTypedRefusals() throws {
        expectIssuanceError(.invalidRequest, mentioning: ["106751991167301 days", "9999-12-31"]) {
            _ = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Forever"), validityDays: 106_751_991_167_301)
        }
        expectIssuanceError(.invalidRequest, mentioning: ["9999-12-31"]) {
            _ = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Forever"), validityDays: Int.max)
        }
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Bounded"))
        for days in [Int.max, 3_000_000, 106_751_991_167_301] {
            expectIssuanceError(.invalidRequest, mentioning: ["9999-12-31"]) {
                _ = try root.issue(Self.request("x.example.com"), profile: .tlsServer, options: IssuanceOptions(validityDays: days))
            }
        }
        expectIssuanceError(.invalidRequest, mentioning: ["backdate"]) {
            _ = try root.issue(Self.request("x.example.com"), profile: .tlsServer, options: IssuanceOptions(validityDays: 1, backdate: .infinity))
        }
        expectIssuanceError(.invalidRequest, mentioning: ["9999-12-31"]) {
            _ = try root.issue(Self.request("x.example.com"), profile: .tlsServer,
                               options: IssuanceOptions(notValidAfter: Date(timeIntervalSince1970: 1e300)))
        }
    }

    @Test func aRefusedCRLBurnsNoNumber() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, _) = try Self.savedAuthority(dir)
        let ca = try LocalAuthority.load(from: path, passphrase: nil)
        #expect(try ca.makeCRL().number == 1)
        for days in [Int.max, 106_751_991_167_301, 4_000_000] {
            expectGnuTLSError(.invalidArgument, mentioning: ["9999-12-31"]) { _ = try ca.makeCRL(nextUpdateIn: days) }
        }
        #expect(try ca.makeCRL().number == 2)
    }

    // MARK: Also: crash consistency through the package-level crash-point seam

    struct SimulatedCrash: Error {}

    /// Runs `body` with a crash simulated at `point` (inside a transaction the ledger
    /// reports it as a storage failure, after rolling back).
    static func crashing(at point: CrashPoint, _ body: () throws -> Void) {
        #expect(throws: (any Error).self) {
            try CrashPoint.$handler.withValue({ reached in if reached == point { throw SimulatedCrash() } }) { try body() }
        }
    }

    @Test(arguments: [CrashPoint.afterReserve, .afterSign, .beforeCommit])
    func issuanceDyingMidwayLeavesNoHalfWrittenCertificateAndNoReusedSerial(point: CrashPoint) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, leaves) = try Self.savedAuthority(dir, leaves: 1)
        let ca = try LocalAuthority.load(from: path, passphrase: nil)
        let ledger = try #require(ca.ledger as? SQLiteLedger)
        Self.crashing(at: point) { _ = try ca.issue(Self.request("victim.example.com"), profile: .tlsServer) }

        #expect(try ledger.integrityProblems().isEmpty)
        #expect(try ledger.issuedCertificates().map(\.certificate) == leaves)
        let claimed = try ledger.unusedReservedSerials()
        #expect(claimed.count == 1, "\(claimed)")
        let later = try (0..<3).map { try ca.issue(Self.request("after\($0).example.com"), profile: .tlsServer) }
        let issued = try ledger.issuedCertificates().map(\.serialNumber)
        #expect(issued.count == 4 && Set(issued).count == 4)
        #expect(Set(issued).isDisjoint(with: claimed))
        try ca.revoke(later[0])
    }

    @Test func revocationDyingBeforeCommitLeavesNoRevocation() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (path, leaves) = try Self.savedAuthority(dir, leaves: 2)
        let ca = try LocalAuthority.load(from: path, passphrase: nil)
        try ca.revoke(leaves[0], reason: .keyCompromise)
        Self.crashing(at: .beforeCommit) { try ca.revoke(leaves[1], reason: .superseded) }
        let ledger = try #require(ca.ledger)
        #expect(try ledger.revocations().map(\.serialNumber) == [leaves[0].serialNumber])
        try ca.revoke(leaves[1], reason: .superseded)
        Self.ledgerError(.alreadyRevoked) { try ca.revoke(leaves[1]) }
        let crl = try ca.makeCRL()
        #expect(crl.entries.map(\.serialNumber) == leaves.map(\.serialNumber))
        #expect(crl.entries.map(\.reason) == [.keyCompromise, .superseded])
    }
}
