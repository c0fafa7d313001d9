import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

/// `tlsctl demo`: builds root -> intermediate -> server and client certificates in a
/// directory, printing each step, then checks the chains with the library.
///
/// Extending it: ``DemoPKI/build(in:log:)`` makes the artifacts (a ``DemoPKI`` value holds
/// every authority, key, certificate and path); ``DemoChecks`` checks them; later steps
/// (verification with a trust store, a TLS connection between the server and the client)
/// take the ``DemoPKI`` value and add their own steps to the same ``DemoLog``.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Build a root CA, an intermediate CA, a server and a client certificate, check them, and use them for mutual TLS on 127.0.0.1.",
        discussion: """
            Everything is written to a new temporary directory, removed at the end unless \
            --keep is given, or to --dir, which is kept. Exits 1 if any check fails.
            """)

    @Option(help: ArgumentHelp("Write the PKI into this directory (created; must not hold a CA) and keep it.", valueName: "dir"))
    var dir: String?

    @Flag(help: "Keep the temporary directory.")
    var keep = false

    func run() async throws {
        let workspace = try DemoWorkspace(directory: dir, keep: keep || dir != nil)
        var log = DemoLog()
        log.say("tlsctl demo: root CA -> intermediate CA -> server and client certificates -> mutual TLS on 127.0.0.1, in \(workspace.path)")
        let pki: DemoPKI
        do {
            pki = try DemoPKI.build(in: workspace, log: &log)
            try DemoChecks.run(pki, log: &log)
            // Mutual TLS on 127.0.0.1 with these certificates, and four refusals (DemoTLS.swift).
            try await DemoTLS.run(pki, workspace: workspace, log: &log)
            // OCSP: responder, stapling, hard-fail client, revocation (DemoOCSP.swift).
            try await DemoOCSP.run(pki, workspace: workspace, log: &log)
        } catch {
            workspace.finish()
            throw error
        }
        workspace.finish()
        log.summary()
        if log.failures > 0 {
            throw CLIError("\(log.failures) demo check\(log.failures == 1 ? "" : "s") failed")
        }
        if workspace.kept {
            log.say("The files are in \(workspace.path); try `tlsctl show \(pki.server.chainPath)`.")
        }
    }
}

/// Where the demo writes.
struct DemoWorkspace {
    let path: String
    let kept: Bool

    init(directory: String?, keep: Bool) throws {
        if let directory {
            path = directory
        } else {
            path = (NSTemporaryDirectory() as NSString).appendingPathComponent("tlsctl-demo-\(UUID().uuidString.prefix(8).lowercased())")
        }
        kept = keep
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CLIError("cannot create demo directory \(path): \(error.localizedDescription)")
        }
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func finish() {
        guard !kept else { return }
        // A ledger still closing on another thread (the OCSP responder's pool may hold the
        // last reference) deletes its -wal/-shm files while the tree is removed, and
        // FileManager then stops at the vanished entry: try again until the tree is gone.
        for _ in 0..<5 where FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}

/// Numbered steps and checks, printed as they happen.
struct DemoLog {
    private(set) var step = 0
    private(set) var passed = 0
    private(set) var failures = 0
    private(set) var notes: [String] = []

    func say(_ text: String) { print(text) }

    /// Starts a numbered step.
    mutating func begin(_ title: String) {
        step += 1
        print("")
        print("[\(step)] \(title)")
    }

    /// A detail line of the current step.
    func detail(_ text: String) { print("    \(text)") }

    /// Records and prints one check.
    mutating func check(_ what: String, _ ok: Bool, _ detail: String = "") {
        if ok { passed += 1 } else { failures += 1 }
        print("    \(ok ? "ok  " : "FAIL") \(what)\(detail.isEmpty ? "" : ": \(detail)")")
    }

    /// Something the demo did not check, said plainly in the summary.
    mutating func note(_ text: String) {
        notes.append(text)
        print("    note: \(text)")
    }

    func summary() {
        print("")
        print("Demo checks: \(passed) passed, \(failures) failed")
        for note in notes { print("Not checked: \(note)") }
    }
}

/// One end-entity certificate of the demo, with its files.
struct DemoLeaf {
    var key: KeyPair
    var request: CertificateRequest
    var certificate: Certificate
    /// The certificate followed by the intermediate (what a TLS peer sends).
    var chain: [Certificate]
    var keyPath: String
    var certificatePath: String
    var chainPath: String
}

/// Everything the demo built.
struct DemoPKI {
    var root: LocalAuthority
    var intermediate: LocalAuthority
    var server: DemoLeaf
    var client: DemoLeaf
    var rootDirectory: String
    var intermediateDirectory: String
    /// The passphrase file protecting both CA keys.
    var passphrasePath: String
    /// The server's host names and addresses: loopback addresses for connections on this
    /// machine, and a DNS name under the intermediate's constraints. (`localhost` is left
    /// out: single-label DNS names are not valid in certificates by RFC 5280 linters.)
    static let serverNames: [GeneralName] = [.dnsName("server.demo.test"), .ipAddress(IPAddress("127.0.0.1")!), .ipAddress(IPAddress("::1")!)]
    /// The client's identity.
    static let clientNames: [GeneralName] = [.email("client@demo.test")]

    static func build(in workspace: DemoWorkspace, log: inout DemoLog) throws -> DemoPKI {
        // A passphrase for the CA keys, written the way `--passphrase-file` reads it.
        let passphrasePath = workspace.file("ca-passphrase.txt")
        let passphrase = Format.colonHex(try KeyPair.generate(.ed25519).publicKey.keyIdentifier).replacingOccurrences(of: ":", with: "")
        try Outputs.write(passphrase + "\n", to: passphrasePath, secret: true)

        log.begin("Root CA")
        let rootKey = try KeyPair.generate(.ecdsaP384)
        log.detail("generated key: \(rootKey.keyDescription)")
        let root = try LocalAuthority.createRoot(
            subject: try DistinguishedName("CN=tlsctl Demo Root CA,O=swift-gnutls demo"), key: rootKey, validityDays: 3650, pathLength: 1)
        let rootDirectory = workspace.file("root")
        try root.save(to: rootDirectory, passphrase: passphrase)
        log.detail("self-signed \(root.certificate.subject), \(root.certificate.basicConstraints?.description ?? ""), valid until \(Format.date(root.certificate.notValidAfter))")
        log.detail("saved to \(rootDirectory) (key encrypted with the passphrase in \(passphrasePath))")

        log.begin("Intermediate CA")
        // Reload the root from disk, as `tlsctl ca intermediate --ca` would.
        let reloaded = try LocalAuthority.load(from: rootDirectory, passphrase: passphrase)
        log.detail("reloaded the root from \(rootDirectory) with its passphrase")
        let constraints = NameConstraints(
            permittedDNSDomains: ["demo.test"],
            permittedIPRanges: [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!],
            permittedEmailAddresses: ["demo.test"],
            permittedURIDomains: ["demo.test"])
        let intermediate = try reloaded.createIntermediate(
            subject: try DistinguishedName("CN=tlsctl Demo Issuing CA,O=swift-gnutls demo"),
            key: try KeyPair.generate(.ecdsaP256), validityDays: 1825, pathLength: 0, nameConstraints: constraints)
        let intermediateDirectory = workspace.file("intermediate")
        try intermediate.save(to: intermediateDirectory, passphrase: passphrase)
        log.detail("\(intermediate.certificate.subject) signed by \(intermediate.certificate.issuer), \(intermediate.certificate.basicConstraints?.description ?? "")")
        log.detail("name constraints: \(constraints)")
        log.detail("saved to \(intermediateDirectory)")

        log.begin("Server certificate")
        let server = try issueLeaf(
            name: "server", subject: "CN=server.demo.test,O=swift-gnutls demo", algorithm: .ecdsaP256,
            names: serverNames, profile: .tlsServer, authority: intermediate, workspace: workspace, log: &log)

        log.begin("Client certificate")
        let client = try issueLeaf(
            name: "client", subject: "CN=demo client,O=swift-gnutls demo", algorithm: .ed25519,
            names: clientNames, profile: .tlsClient, authority: intermediate, workspace: workspace, log: &log)

        return DemoPKI(
            root: root, intermediate: intermediate, server: server, client: client,
            rootDirectory: rootDirectory, intermediateDirectory: intermediateDirectory, passphrasePath: passphrasePath)
    }

    static func issueLeaf(
        name: String, subject: String, algorithm: KeyAlgorithm, names: [GeneralName], profile: CertificateProfile,
        authority: LocalAuthority, workspace: DemoWorkspace, log: inout DemoLog
    ) throws -> DemoLeaf {
        let key = try KeyPair.generate(algorithm)
        let keyPath = workspace.file("\(name).key.pem")
        try Outputs.write(try key.pemEncoded(), to: keyPath, secret: true)
        log.detail("generated key: \(key.keyDescription), written to \(keyPath) (mode 0600)")
        let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
        try Outputs.write(request.pemEncoded, to: workspace.file("\(name).csr.pem"))
        log.detail("request for \(request.subject) with \(request.subjectAlternativeNames.map(\.description).joined(separator: ", "))")
        let chain = try authority.issueWithChain(request, profile: profile, options: IssuanceOptions(validityDays: 90))
        let certificatePath = workspace.file("\(name).pem")
        let chainPath = workspace.file("\(name)-chain.pem")
        try Outputs.write(chain[0].pemEncoded, to: certificatePath)
        try Outputs.write(chain.map(\.pemEncoded).joined(), to: chainPath)
        log.detail("issued '\(profile)' certificate, serial \(Format.colonHex(chain[0].serialNumber.bytes).prefix(23))…, valid until \(Format.date(chain[0].notValidAfter))")
        log.detail("key usage \(chain[0].keyUsage?.description ?? "-"); extended key usage \(chain[0].extendedKeyUsage?.map(\.description).joined(separator: ", ") ?? "-")")
        log.detail("written to \(certificatePath) and \(chainPath)")
        return DemoLeaf(key: key, request: request, certificate: chain[0], chain: chain, keyPath: keyPath, certificatePath: certificatePath, chainPath: chainPath)
    }
}

/// The demo's checks, made with the library: request signatures (proof of possession),
/// issuer/subject links, key identifiers, CA flags, key usage, validity nesting and purposes,
/// that policy refuses what it should, and then full verification of both chains by the
/// library's `Verifier`.
enum DemoChecks {
    static func run(_ pki: DemoPKI, log: inout DemoLog) throws {
        log.begin("Checking the certificate requests")
        for (name, leaf) in [("server", pki.server), ("client", pki.client)] {
            log.check("\(name) request is signed by the key it carries (proof of possession)", leaf.request.isSignatureValid)
            log.check("\(name) certificate certifies the requested key", leaf.certificate.publicKey == leaf.key.publicKey)
        }

        log.begin("Checking the chains")
        let root = pki.root.certificate
        let intermediate = pki.intermediate.certificate
        log.check("root is self-issued and names its own key", root.isSelfIssued && root.authorityKeyIdentifier == root.subjectKeyIdentifier)
        checkLink(child: intermediate, issuer: root, log: &log)
        for leaf in [pki.server, pki.client] {
            checkLink(child: leaf.certificate, issuer: intermediate, log: &log)
            log.check("\(short(leaf.certificate)) is not a CA", !leaf.certificate.isCertificateAuthority)
            log.check("\(short(leaf.certificate)) chain file holds the leaf and the intermediate, not the root",
                      leaf.chain == [leaf.certificate, intermediate])
        }
        log.check("intermediate allows no further CA (path length 0)", intermediate.basicConstraints?.pathLengthConstraint == 0)
        log.check("server certificate is for TLS servers", pki.server.certificate.extendedKeyUsage == [.serverAuth],
                  pki.server.certificate.dnsNames.joined(separator: ", "))
        log.check("client certificate is for TLS clients", pki.client.certificate.extendedKeyUsage == [.clientAuth])

        log.begin("Checking what the CA directories hold")
        let reloaded = try LocalAuthority.load(from: pki.intermediateDirectory, passphrase: try Passphrase.read(pki.passphrasePath, option: "demo"))
        log.check("intermediate CA reloads from \(pki.intermediateDirectory)", reloaded.certificate == intermediate && reloaded.chain == [intermediate, root])

        log.begin("Checking that policy refuses what it should")
        let stranger = try KeyPair.generate(.ecdsaP256)
        let outside = try CertificateRequest.create(
            subject: try DistinguishedName("CN=www.example.com"), key: stranger, alternativeNames: [.dnsName("www.example.com")])
        expectRefusal("a server certificate for www.example.com (outside the name constraints)", .nameNotPermitted, log: &log) {
            _ = try pki.intermediate.issue(outside, profile: .tlsServer, options: IssuanceOptions(validityDays: 30))
        }
        expectRefusal("another CA under the path-length-0 intermediate", .pathLengthExhausted, log: &log) {
            _ = try pki.intermediate.createIntermediate(subject: try DistinguishedName("CN=too deep"), key: stranger)
        }
        expectRefusal("a certificate outliving the intermediate", .validityExceedsIssuer, log: &log) {
            let inside = try CertificateRequest.create(subject: try DistinguishedName("CN=server.demo.test"), key: stranger, alternativeNames: [.dnsName("server.demo.test")])
            _ = try pki.intermediate.issue(inside, profile: .tlsServer, options: IssuanceOptions(validityDays: 20 * 365))
        }

        try verifyChains(pki, log: &log)
    }

    /// Verifies both chains with the library's `Verifier` (signatures, validity,
    /// constraints, purposes, names), trusting only the demo root, and checks that it rejects
    /// what it should.
    static func verifyChains(_ pki: DemoPKI, log: inout DemoLog) throws {
        log.begin("Verifying the chains with the library's verifier (trusting only the demo root)")
        let root = pki.root.certificate
        let intermediate = pki.intermediate.certificate
        let verifier = try Verifier(trustStore: TrustStore(certificates: [root]))
        for host in ["server.demo.test", "127.0.0.1", "::1"] {
            expectVerified("server certificate for \(host)", [pki.server.certificate, intermediate, root], log: &log) {
                try verifier.verify(pki.server.certificate, intermediates: [intermediate], policy: .server(host: host))
            }
        }
        expectVerified("client certificate for client@demo.test", [pki.client.certificate, intermediate, root], log: &log) {
            try verifier.verify(pki.client.certificate, intermediates: [intermediate], policy: .client(names: [.email("client@demo.test")]))
        }
        expectRejected("server certificate for www.example.com (a name it does not hold)", .nameMismatch, log: &log) {
            try verifier.verify(pki.server.certificate, intermediates: [intermediate], policy: .server(host: "www.example.com"))
        }
        expectRejected("client certificate used as a server's", .purposeMismatch, log: &log) {
            try verifier.verify(pki.client.certificate, intermediates: [intermediate], policy: VerificationPolicy(purposes: [.serverAuth]))
        }
        expectRejected("server chain without the intermediate", .untrustedIssuer, log: &log) {
            try verifier.verify(pki.server.certificate, intermediates: [], policy: .server(host: "server.demo.test"))
        }
        expectRejected("server certificate a year from now (expired by then)", .expired, log: &log) {
            var policy = VerificationPolicy.server(host: "server.demo.test")
            policy.time = Date().addingTimeInterval(365 * 86_400)
            return try verifier.verify(pki.server.certificate, intermediates: [intermediate], policy: policy)
        }
    }

    static func expectVerified(_ what: String, _ expected: [Certificate], log: inout DemoLog, _ body: () throws -> VerifiedChain) {
        do {
            let chain = try body()
            log.check("verifies \(what)", chain.certificates == expected, chain.certificates.map { short($0) }.joined(separator: " <- "))
        } catch {
            log.check("verifies \(what)", false, "\(error)")
        }
    }

    static func expectRejected(_ what: String, _ reason: VerificationError.Reason, log: inout DemoLog, _ body: () throws -> VerifiedChain) {
        do {
            _ = try body()
            log.check("rejects \(what)", false, "it was accepted")
        } catch let error as VerificationError {
            log.check("rejects \(what)", error.contains(reason), error.problems.map(\.description).joined(separator: "; "))
        } catch {
            log.check("rejects \(what)", false, "unexpected error: \(error)")
        }
    }

    static func checkLink(child: Certificate, issuer: Certificate, log: inout DemoLog) {
        let label = "\(short(child)) <- \(short(issuer))"
        log.check("\(label): issuer name matches", child.issuer == issuer.subject)
        log.check("\(label): authority key ID matches the issuer's subject key ID",
                  child.authorityKeyIdentifier != nil && child.authorityKeyIdentifier == issuer.subjectKeyIdentifier,
                  child.authorityKeyIdentifier.map { Format.colonHex($0).prefix(23) + "…" } ?? "missing")
        log.check("\(label): issuer is a CA allowed to sign certificates",
                  issuer.isCertificateAuthority && (issuer.keyUsage?.contains(.keyCertSign) ?? false))
        log.check("\(label): validity lies within the issuer's",
                  child.notValidBefore >= issuer.notValidBefore && child.notValidAfter <= issuer.notValidAfter)
    }

    /// The common name, or the whole subject when there is none.
    static func short(_ certificate: Certificate) -> String {
        certificate.subject.commonName.map { "'\($0)'" } ?? certificate.subject.description
    }

    static func expectRefusal(_ what: String, _ reason: IssuanceError.Reason, log: inout DemoLog, _ body: () throws -> Void) {
        do {
            try body()
            log.check("refuses \(what)", false, "it was issued")
        } catch let error as IssuanceError {
            log.check("refuses \(what)", error.reason == reason, "\(error.reason): \(error.message)")
        } catch {
            log.check("refuses \(what)", false, "unexpected error: \(error)")
        }
    }
}
