import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// `tlsctl ca revoke` and `tlsctl ca crl`, run as the built binary.
@Suite struct RevocationCommandTests {
    /// A workspace with a root CA in `ca` and `count` issued server certificates `leafN.pem`.
    static func workspace(leaves count: Int, passphrase: String? = nil) async throws -> (CLIWorkspace, [Certificate]) {
        let work = try CLIWorkspace()
        try await work.makeRoot("ca", passphrase: passphrase)
        var leaves: [Certificate] = []
        for index in 0..<count {
            let csr = try await work.makeRequest("leaf\(index)", subject: "CN=leaf\(index).example.com", dns: ["leaf\(index).example.com"])
            try await work.succeed(["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", "30", "--out", "leaf\(index).pem"]
                             + (passphrase == nil ? [] : ["--ca-passphrase-file", "ca.pass"]))
            leaves.append(try Certificate(pemEncoded: work.read("leaf\(index).pem")))
        }
        return (work, leaves)
    }

    static func ledger(_ work: CLIWorkspace) throws -> SQLiteLedger {
        try SQLiteLedger(path: work.file("ca/\(LocalAuthority.DirectoryLayout.ledger)"))
    }

    @Test func revokeBySerialAndByCertificateThenCRL() async throws {
        let (work, leaves) = try await Self.workspace(leaves: 3)
        defer { work.remove() }
        let colonSerial = leaves[0].serialNumber.bytes.map { String(format: "%02X", $0) }.joined(separator: ":")
        let bySerial = try await work.succeed(["ca", "revoke", "--ca", "ca", "--serial", colonSerial, "--reason", "keyCompromise"])
        #expect(bySerial.standardOutput.contains("keyCompromise"), "\(bySerial)")
        try await work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf1.pem"])
        try await work.succeed(["ca", "crl", "--ca", "ca", "--out", "crl.pem", "--days", "3"])

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
        let revoked = try await Tool.run(["openssl", "verify", "-crl_check", "-CRLfile", work.file("crl.pem"), "-CAfile", work.file("ca/ca.pem"), work.file("leaf0.pem")])
        #expect(!revoked.succeeded && revoked.output.contains("certificate revoked"), "\(revoked)")
        let good = try await Tool.run(["openssl", "verify", "-crl_check", "-CRLfile", work.file("crl.pem"), "-CAfile", work.file("ca/ca.pem"), work.file("leaf2.pem")])
        #expect(good.succeeded, "\(good)")
    }

    @Test func revokingTwiceFailsAndKeepsTheFirstRevocation() async throws {
        let (work, leaves) = try await Self.workspace(leaves: 1)
        defer { work.remove() }
        try await work.succeed(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem", "--reason", "superseded"])
        let twice = try await work.fail(["ca", "revoke", "--ca", "ca", "--serial", leaves[0].serialNumber.hexString, "--reason", "keyCompromise"])
        #expect(twice.standardError.contains("already revoked"), "\(twice)")
        #expect(twice.standardError.hasPrefix("tlsctl: error:"), "\(twice)")
        let revocations = try Self.ledger(work).revocations()
        #expect(revocations.map(\.serialNumber) == [leaves[0].serialNumber])
        #expect(revocations.first?.reason == .superseded)
    }

    @Test func unknownSerialsAndBadArgumentsFail() async throws {
        let (work, _) = try await Self.workspace(leaves: 1)
        defer { work.remove() }
        let unknown = try await work.fail(["ca", "revoke", "--ca", "ca", "--serial", "0102030405"])
        #expect(unknown.standardError.contains("no certificate with serial"), "\(unknown)")

        // A certificate from another CA is refused, even when given as a file.
        try await work.makeRoot("other", subject: "CN=Other Root")
        let csr = try await work.makeRequest("foreign", subject: "CN=foreign.example.com", dns: ["foreign.example.com"])
        try await work.succeed(["ca", "issue", "--ca", "other", "--csr", csr, "--profile", "server", "--days", "30", "--out", "foreign.pem"])
        let foreign = try await work.fail(["ca", "revoke", "--ca", "ca", "--cert", "foreign.pem"])
        #expect(foreign.standardError.contains("was not issued by"), "\(foreign)")

        let notHex = try await work.fail(["ca", "revoke", "--ca", "ca", "--serial", "xyz"])
        #expect(notHex.standardError.contains("not a hexadecimal serial"), "\(notHex)")
        try await work.fail(["ca", "revoke", "--ca", "ca"], exitCode: 64)
        try await work.fail(["ca", "revoke", "--ca", "ca", "--serial", "01", "--cert", "leaf0.pem"], exitCode: 64)
        try await work.fail(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem", "--reason", "bogus"], exitCode: 64)
        try await work.fail(["ca", "crl", "--ca", "ca", "--out", "crl.pem", "--days", "0"], exitCode: 64)
        let missing = try await work.fail(["ca", "crl", "--ca", "nowhere", "--out", "crl.pem"])
        #expect(missing.standardError.contains("does not exist"), "\(missing)")
        #expect(try Self.ledger(work).revocations().isEmpty)
        #expect(!work.exists("crl.pem"))
    }

    @Test func crlNumbersIncreaseAndPassphraseProtectedCAsWork() async throws {
        let (work, leaves) = try await Self.workspace(leaves: 1, passphrase: "ca secret")
        defer { work.remove() }
        let withoutPassphrase = try await work.fail(["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem"])
        #expect(withoutPassphrase.standardError.contains("passphrase"), "\(withoutPassphrase)")
        try await work.succeed(["ca", "revoke", "--ca", "ca", "--ca-passphrase-file", "ca.pass", "--cert", "leaf0.pem", "--reason", "cessationOfOperation"])
        var numbers: [Int] = []
        for index in 0..<3 {
            try await work.succeed(["ca", "crl", "--ca", "ca", "--ca-passphrase-file", "ca.pass", "--out", "crl\(index).pem"])
            let crl = try CertificateRevocationList(pemEncoded: work.read("crl\(index).pem"))
            #expect(crl.entry(for: leaves[0].serialNumber)?.reason == .cessationOfOperation)
            numbers.append(try #require(crl.number))
        }
        #expect(numbers == numbers.sorted() && Set(numbers).count == 3, "\(numbers)")
    }
    // Crash consistency (a process dying mid-issuance or mid-revocation) is tested at the
    // library level through the `package` crash-point seam: LedgerIntegrityTests.
}
