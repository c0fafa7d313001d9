import Foundation
import GnuTLS
import Testing
import TestSupport

/// `tlsctl ca revoke` and `tlsctl ca crl`, run as the built binary, and the ledger's crash
/// consistency when `ca issue` / `ca revoke` die mid-way.
@Suite struct RevocationCommandTests {
    /// A workspace with a root CA in `ca` and `count` issued server certificates `leafN.pem`.
    static func workspace(leaves count: Int, passphrase: String? = nil) throws -> (CLIWorkspace, [Certificate]) {
        let work = try CLIWorkspace()
        try work.makeRoot("ca", passphrase: passphrase)
        var leaves: [Certificate] = []
        for index in 0..<count {
            let csr = try work.makeRequest("leaf\(index)", subject: "CN=leaf\(index).example.com", dns: ["leaf\(index).example.com"])
            try work.succeed(["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", "30", "--out", "leaf\(index).pem"]
                             + (passphrase == nil ? [] : ["--ca-passphrase-file", "ca.pass"]))
            leaves.append(try Certificate(pemEncoded: work.read("leaf\(index).pem")))
        }
        return (work, leaves)
    }

    static func ledger(_ work: CLIWorkspace) throws -> SQLiteLedger {
        try SQLiteLedger(path: work.file("ca/\(LocalAuthority.DirectoryLayout.ledger)"))
    }

    @Test func revokeBySerialAndByCertificateThenCRL() throws {
        let (work, leaves) = try Self.workspace(leaves: 3)
        defer { work.remove() }
        let colonSerial = leaves[0].serialNumber.bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
        let bySerial = try work.succeed(["ca", "revoke", "--ca", "ca", "--serial", colonSerial, "--reason", "keyCompromise"])
        #expect(bySerial.standardOutput.contains("keyCompromise"), "\(bySerial)")
        try work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf1.pem"])
        try work.succeed(["ca", "crl", "--ca", "ca", "--out", "crl.pem", "--days", "3"])

        let crl = try CertificateRevocationList(pemEncoded: work.read("crl.pem"))
        let root = try Certificate(pemEncoded: work.read("ca/ca.pem"))
        #expect(crl.isSigned(by: root))
        #expect(crl.entries.count == 2)
        #expect(crl.entry(for: leaves[0].serialNumber)?.reason == .keyCompromise)
        let second = try #require(crl.entry(for: leaves[1].serialNumber))
        #expect(second.reason == nil)
        #expect(crl.entry(for: leaves[2].serialNumber) == nil)
        let nextUpdate = try #require(crl.nextUpdate)
        #expect(nextUpdate.timeIntervalSince(crl.thisUpdate) == 3 * 86_400)

        // openssl agrees: the revoked leaf is rejected, the other accepted.
        let revoked = try Tool.run(["openssl", "verify", "-crl_check", "-CRLfile", work.file("crl.pem"), "-CAfile", work.file("ca/ca.pem"), work.file("leaf0.pem")])
        #expect(!revoked.succeeded && revoked.output.contains("certificate revoked"), "\(revoked)")
        let good = try Tool.run(["openssl", "verify", "-crl_check", "-CRLfile", work.file("crl.pem"), "-CAfile", work.file("ca/ca.pem"), work.file("leaf2.pem")])
        #expect(good.succeeded, "\(good)")
    }

    @Test func revokingTwiceFailsAndKeepsTheFirstRevocation() throws {
        let (work, leaves) = try Self.workspace(leaves: 1)
        defer { work.remove() }
        try work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem", "--reason", "superseded"])
        let twice = try work.fail(["ca", "revoke", "--ca", "ca", "--serial", leaves[0].serialNumber.hexString, "--reason", "keyCompromise"])
        #expect(twice.standardError.contains("already revoked"), "\(twice)")
        #expect(twice.standardError.hasPrefix("tlsctl: error:"), "\(twice)")
        let revocations = try Self.ledger(work).revocations()
        #expect(revocations.map(\.serialNumber) == [leaves[0].serialNumber])
        #expect(revocations.first?.reason == .superseded)
    }

    @Test func unknownSerialsAndBadArgumentsFail() throws {
        let (work, _) = try Self.workspace(leaves: 1)
        defer { work.remove() }
        let unknown = try work.fail(["ca", "revoke", "--ca", "ca", "--serial", "0102030405"])
        #expect(unknown.standardError.contains("no certificate with serial"), "\(unknown)")

        // A certificate from another CA is refused, even when given as a file.
        try work.makeRoot("other", subject: "CN=Other Root")
        let csr = try work.makeRequest("foreign", subject: "CN=foreign.example.com", dns: ["foreign.example.com"])
        try work.succeed(["ca", "issue", "--ca", "other", "--csr", csr, "--profile", "server", "--days", "30", "--out", "foreign.pem"])
        let foreign = try work.fail(["ca", "revoke", "--ca", "ca", "--cert", "foreign.pem"])
        #expect(foreign.standardError.contains("was not issued by"), "\(foreign)")

        let notHex = try work.fail(["ca", "revoke", "--ca", "ca", "--serial", "xyz"])
        #expect(notHex.standardError.contains("not a hexadecimal serial"), "\(notHex)")
        try work.fail(["ca", "revoke", "--ca", "ca"], exitCode: 64)
        try work.fail(["ca", "revoke", "--ca", "ca", "--serial", "01", "--cert", "leaf0.pem"], exitCode: 64)
        try work.fail(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem", "--reason", "bogus"], exitCode: 64)
        try work.fail(["ca", "crl", "--ca", "ca", "--out", "crl.pem", "--days", "0"], exitCode: 64)
        let missing = try work.fail(["ca", "crl", "--ca", "nowhere", "--out", "crl.pem"])
        #expect(missing.standardError.contains("does not exist"), "\(missing)")
        #expect(try Self.ledger(work).revocations().isEmpty)
        #expect(!work.exists("crl.pem"))
    }

    @Test func crlNumbersIncreaseAndPassphraseProtectedCAsWork() throws {
        let (work, leaves) = try Self.workspace(leaves: 1, passphrase: "ca secret")
        defer { work.remove() }
        let withoutPassphrase = try work.fail(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem"])
        #expect(withoutPassphrase.standardError.contains("passphrase"), "\(withoutPassphrase)")
        try work.succeed(["ca", "revoke", "--ca", "ca", "--ca-passphrase-file", "ca.pass", "--cert", "leaf0.pem", "--reason", "cessationOfOperation"])
        var numbers: [Int] = []
        for index in 0..<3 {
            try work.succeed(["ca", "crl", "--ca", "ca", "--ca-passphrase-file", "ca.pass", "--out", "crl\(index).pem"])
            let crl = try CertificateRevocationList(pemEncoded: work.read("crl\(index).pem"))
            #expect(crl.entry(for: leaves[0].serialNumber)?.reason == .cessationOfOperation)
            numbers.append(try #require(crl.number))
        }
        #expect(numbers == numbers.sorted() && Set(numbers).count == 3, "\(numbers)")
    }

    // MARK: Crash consistency

    /// Runs tlsctl with the library's crash hook set to `point`; it must die, not succeed.
    static func crash(_ work: CLIWorkspace, at point: String, _ arguments: [String]) throws -> ProcessResult {
        let result = try Tool.run([BuiltProducts.tlsctl] + arguments, timeout: 120, directory: work.path,
                                  environment: ["SWIFT_GNUTLS_TEST_CRASH_AT": point, "SWIFT_BACKTRACE": "enable=no"])
        #expect(!result.succeeded && !result.timedOut, "tlsctl should have aborted at \(point): \(result)")
        return result
    }

    /// The ledger opens, SQLite finds nothing wrong, and every recorded certificate parses.
    static func expectSound(_ work: CLIWorkspace, sourceLocation: SourceLocation = #_sourceLocation) throws -> SQLiteLedger {
        let ledger = try ledger(work)
        #expect(try ledger.integrityProblems() == [], sourceLocation: sourceLocation)
        _ = try ledger.issuedCertificates()
        _ = try LocalAuthority.load(from: work.file("ca"), passphrase: nil)
        return ledger
    }

    @Test(arguments: ["after-reserve", "after-sign", "before-commit"])
    func issuanceKilledMidwayLeavesNoHalfWrittenCertificateAndNoReusedSerial(point: String) throws {
        let (work, leaves) = try Self.workspace(leaves: 1)
        defer { work.remove() }
        let csr = try work.makeRequest("victim", subject: "CN=victim.example.com", dns: ["victim.example.com"])
        _ = try Self.crash(work, at: point, ["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", "30", "--out", "victim.pem"])
        #expect(!work.exists("victim.pem"))

        let ledger = try Self.expectSound(work)
        // Nothing was recorded for the killed issuance; its serial stays claimed.
        #expect(try ledger.issuedCertificates().map(\.certificate) == leaves)
        let claimed = try ledger.unusedReservedSerials()
        #expect(claimed.count == 1, "\(claimed)")

        // Later issuances work and never reuse a claimed or issued serial.
        for index in 0..<3 {
            try work.succeed(["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", "30", "--out", "after\(index).pem"])
        }
        let issued = try ledger.issuedCertificates().map(\.serialNumber)
        #expect(issued.count == 4)
        #expect(Set(issued).count == issued.count)
        #expect(Set(issued).isDisjoint(with: claimed))
        #expect(try ledger.unusedReservedSerials() == claimed)
        try work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "after0.pem"])
    }

    @Test func revocationKilledBeforeCommitLeavesNoRevocation() throws {
        let (work, leaves) = try Self.workspace(leaves: 2)
        defer { work.remove() }
        try work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem", "--reason", "keyCompromise"])
        _ = try Self.crash(work, at: "before-commit", ["ca", "revoke", "--ca", "ca", "--cert", "leaf1.pem", "--reason", "superseded"])

        let ledger = try Self.expectSound(work)
        #expect(try ledger.revocations().map(\.serialNumber) == [leaves[0].serialNumber])
        #expect(try ledger.certificate(serial: leaves[1].serialNumber)?.revocation == nil)

        // The killed revocation can be made again, once, and the CRL lists both.
        try work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf1.pem", "--reason", "superseded"])
        try work.fail(["ca", "revoke", "--ca", "ca", "--cert", "leaf1.pem"])
        try work.succeed(["ca", "crl", "--ca", "ca", "--out", "crl.pem"])
        let crl = try CertificateRevocationList(pemEncoded: work.read("crl.pem"))
        #expect(crl.entries.map(\.serialNumber) == leaves.map(\.serialNumber))
        #expect(crl.entries.map(\.reason) == [.keyCompromise, .superseded])
    }
}
