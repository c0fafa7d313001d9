import Dispatch
import Foundation
import GnuTLS
import Testing
import TestSupport

/// The CA directory's ledger under an adversarial operator: concurrent commands, deleted
/// ledgers, huge validities, unwritable outputs and hostile names, through the built `tlsctl`.
@Suite struct LedgerCommandTests {
    static func issueArguments(_ csr: String, out: String) -> [String] {
        ["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", "30", "--out", out]
    }

    /// Item 1: N revokes, M CRLs and K issuances at once, each its own tlsctl process.
    @Test func concurrentRevokesCRLsAndIssuancesKeepTheLedgerConsistent() async throws {
        let revokes = 6, crls = 6, issues = 4
        let (work, leaves) = try await RevocationCommandTests.workspace(leaves: revokes)
        defer { work.remove() }
        let csr = try await work.makeRequest("new", subject: "CN=new.example.com", dns: ["new.example.com"])
        var commands: [[String]] = []
        for index in 0..<max(revokes, crls, issues) {
            if index < revokes { commands.append(["ca", "revoke", "--ca", "ca", "--cert", "leaf\(index).pem", "--reason", "keyCompromise"]) }
            if index < crls { commands.append(["ca", "crl", "--ca", "ca", "--out", "crl\(index).pem"]) }
            if index < issues { commands.append(Self.issueArguments(csr, out: "new\(index).pem")) }
        }
        let all = commands
        let outcomes = try await withThrowingTaskGroup(of: (Int, ProcessResult).self) { group in
            for index in all.indices {
                group.addTask { (index, try await work.tlsctl(all[index])) }
            }
            var outcomes = [ProcessResult?](repeating: nil, count: all.count)
            for try await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        for (command, outcome) in zip(commands, outcomes) {
            let outcome = try #require(outcome, "\(command) did not run")
            #expect(outcome.succeeded && outcome.standardError.isEmpty, "\(command): \(outcome)")
        }

        // CRL entry sets never shrink as the number rises; numbers are unique.
        let lists = try (0..<crls).map { try CertificateRevocationList(pemEncoded: work.read("crl\($0).pem")) }
            .sorted { ($0.number ?? 0) < ($1.number ?? 0) }
        #expect(Set(lists.compactMap(\.number)).count == crls)
        for (earlier, later) in zip(lists, lists.dropFirst()) {
            #expect(Set(earlier.entries.map(\.serialNumber)).isSubset(of: Set(later.entries.map(\.serialNumber))),
                    "CRL \(later.number ?? 0) lists \(later.entries.count) entries, CRL \(earlier.number ?? 0) lists \(earlier.entries.count)")
        }
        // Serials are unique, and every certificate on disk is in the ledger.
        let ledger = try RevocationCommandTests.ledger(work)
        let issued = try ledger.issuedCertificates()
        #expect(Set(issued.map(\.serialNumber)).count == issued.count)
        #expect(issued.count == revokes + issues)
        let onDisk = (0..<revokes).map { "leaf\($0).pem" } + (0..<issues).map { "new\($0).pem" }
        for file in onDisk {
            let certificate = try Certificate(pemEncoded: work.read(file))
            #expect(try ledger.certificate(serial: certificate.serialNumber)?.certificate == certificate, "\(file)")
        }
        #expect(Set(try ledger.revocations().map(\.serialNumber)) == Set(leaves.map(\.serialNumber)))
        try await work.succeed(["ca", "crl", "--ca", "ca", "--out", "final.pem"])
        #expect(try CertificateRevocationList(pemEncoded: work.read("final.pem")).entries.count == revokes)
    }

    /// Item 2: a deleted or emptied ledger is refused by every command, never recreated.
    @Test func aMissingOrEmptyLedgerIsRefusedByEveryCommand() async throws {
        let (work, _) = try await RevocationCommandTests.workspace(leaves: 1)
        defer { work.remove() }
        let csr = try await work.makeRequest("again", subject: "CN=again.example.com", dns: ["again.example.com"])
        try FileManager.default.removeItem(atPath: work.file("ca/ledger.sqlite"))
        for arguments in [Self.issueArguments(csr, out: "again.pem"), ["ca", "crl", "--ca", "ca", "--out", "crl.pem"],
                          ["ca", "revoke", "--ca", "ca", "--cert", "leaf0.pem"]] {
            let result = try await work.fail(arguments)
            #expect(result.standardError.contains("ledger.sqlite is missing"), "\(result)")
            #expect(!work.exists("ca/ledger.sqlite"))
        }
        #expect(!work.exists("again.pem") && !work.exists("crl.pem"))
        #expect(FileManager.default.createFile(atPath: work.file("ca/ledger.sqlite"), contents: Data()))
        let empty = try await work.fail(["ca", "crl", "--ca", "ca", "--out", "crl.pem"])
        #expect(empty.standardError.contains("empty file"), "\(empty)")
    }

    /// Item 4: huge --days are typed refusals, and a refused CRL burns no number.
    @Test func hugeDaysAreRefusedWithoutSideEffects() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let huge = "106751991167301"
        try await work.fail(["ca", "init", "--dir", "forever", "--subject", "CN=Forever", "--days", huge],
                      stderr: "tlsctl: refused (invalidRequest): validity of \(huge) days would end after 9999-12-31 23:59:59 UTC, the latest time a certificate can carry: at most \(Self.maximumDays()) days are possible")
        #expect(!work.exists("forever/ca.pem"))
        try await work.makeRoot("ca")
        let csr = try await work.makeRequest("leaf", subject: "CN=leaf.example.com", dns: ["leaf.example.com"])
        let issue = try await work.fail(["ca", "issue", "--ca", "ca", "--csr", csr, "--profile", "server", "--days", huge, "--out", "leaf.pem"])
        #expect(issue.standardError.hasPrefix("tlsctl: refused (invalidRequest): validity of \(huge) days"), "\(issue)")
        let crl = try await work.fail(["ca", "crl", "--ca", "ca", "--out", "crl.pem", "--days", huge])
        #expect(crl.standardError.contains("9999-12-31"), "\(crl)")
        try await work.succeed(["ca", "crl", "--ca", "ca", "--out", "crl.pem"])
        #expect(try CertificateRevocationList(pemEncoded: work.read("crl.pem")).number == 1)
    }

    static func maximumDays() -> Int {
        Int((253_402_300_799 - Date().timeIntervalSince1970) / 86_400)
    }

    /// Item 9: unwritable outputs are found before signing; nothing is issued.
    @Test func unwritableOutputsAreRefusedBeforeSigning() async throws {
        let (work, leaves) = try await RevocationCommandTests.workspace(leaves: 1)
        defer { work.remove() }
        let csr = try await work.makeRequest("out", subject: "CN=out.example.com", dns: ["out.example.com"])
        let missing = try await work.fail(Self.issueArguments(csr, out: "no/such/dir/out.pem"))
        #expect(missing.standardError.contains("--out") && missing.standardError.contains("does not exist"), "\(missing)")
        try FileManager.default.createDirectory(atPath: work.file("adir"), withIntermediateDirectories: false)
        let directory = try await work.fail(Self.issueArguments(csr, out: "out.pem") + ["--chain-out", "adir"])
        #expect(directory.standardError.contains("--chain-out") && directory.standardError.contains("is a directory"), "\(directory)")
        #expect(!work.exists("out.pem"))
        #expect(try RevocationCommandTests.ledger(work).issuedCertificates().map(\.certificate) == leaves)
        #expect(try RevocationCommandTests.ledger(work).unusedReservedSerials().isEmpty)
    }

    /// Item 11: control and bidi characters from a hostile request are escaped on stderr.
    @Test func hostileNamesAreEscapedInErrors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        try await work.makeRoot("ca")
        let hostile = "a\u{1B}[2Jb\u{202E}moc.evil\u{0}x.example.com"
        let request = try CertificateRequest.create(subject: [.init(.commonName, hostile)], key: KeyPair.generate(.ecdsaP256),
                                                    alternativeNames: [.dnsName("x.example.com")])
        var der = request.derEncoded
        der[der.count - 1] ^= 0x01  // a broken signature: the refusal quotes the subject
        _ = try work.directory.write(PEMFile.encode(der, label: "CERTIFICATE REQUEST"), to: "hostile.csr")
        let result = try await work.fail(Self.issueArguments("hostile.csr", out: "x.pem"))
        #expect(result.standardError.contains("requestSignatureInvalid"), "\(result)")
        for scalar in ["\u{1B}", "\u{202E}", "\u{0}"] {
            #expect(!result.standardError.contains(scalar), "\(result)")
        }
        // (The RFC 4514 rendering escapes ESC and NUL itself; the terminal writer escapes the rest.)
        #expect(result.standardError.contains("a\\1B[2Jb\\u{202E}moc.evil\\00x.example.com"), "\(result)")
    }
}

/// PEM text for raw DER, for files the library would not write (broken requests).
enum PEMFile {
    static func encode(_ der: [UInt8], label: String) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(label)-----\n\(base64)\n-----END \(label)-----\n"
    }
}
