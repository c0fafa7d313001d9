import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// Issue 8, item 5, the invariant: whatever the CA issues verifies with our `Verifier`,
/// `openssl verify -x509_strict` and `certtool --verify`, and lints clean with pkilint;
/// whatever it refuses is refused with a typed ``IssuanceError``. Requests are generated
/// from a fixed seed (so a failure reproduces): key types, subjects (CN a SAN, a wildcard,
/// an IP, a name outside the SANs, none), SAN sets with DNS names, wildcards, IPv4 and IPv6
/// addresses inside and outside the constraints, three profiles, and an unconstrained and a
/// name-constrained issuer.
///
/// "Strictest profile": the Web PKI verification profile (CA/Browser Forum rules on top of
/// RFC 5280), the certificate's purpose and every SAN as an expected name, security profile
/// `.high` (`.medium` for the RSA-2048 keys it would refuse by size).
@Suite("Interop: what the CA issues verifies everywhere and lints clean")
struct IssuanceInvariantTests {
    /// SplitMix64: a small deterministic generator.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
    }

    struct Issued {
        var certificate: Certificate
        var issuer: LocalAuthority
        var issuerFile: String
        var profile: CertificateProfile
        var key: KeyAlgorithm
        var path: String
    }

    static let caseCount = 40

    @Test("40 generated requests: issued ones verify (Verifier, openssl, certtool) and lint clean; refused ones are typed")
    func generatedRequests() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Invariant Root,O=Example,C=US"))
        let open = try root.createIntermediate(subject: try DistinguishedName("CN=Invariant Open CA,O=Example,C=US"))
        let constraints = NameConstraints(permittedDNSDomains: ["example.com"], permittedIPRanges: [try #require(IPNetwork("10.0.0.0/8"))])
        let constrained = try root.createIntermediate(subject: try DistinguishedName("CN=Invariant Constrained CA,O=Example,C=US"),
                                                      nameConstraints: constraints)
        let rootFile = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let issuers = [(open, try directory.write(open.certificate.pemEncoded, to: "open.pem")),
                       (constrained, try directory.write(constrained.certificate.pemEncoded, to: "constrained.pem"))]

        var random = Generator(state: 0x5EED_0008)
        var keys: [KeyAlgorithm: [KeyPair]] = [:]
        var issued: [Issued] = []
        var refusals: [IssuanceError.Reason: Int] = [:]
        for index in 0..<Self.caseCount {
            let algorithm = random.pick([KeyAlgorithm.ecdsaP256, .ecdsaP384, .ed25519, .ecdsaP256, .rsa2048])
            // Key generation dominates the cost: reuse up to two keys per algorithm.
            if keys[algorithm, default: []].count < 2 { keys[algorithm, default: []].append(try KeyPair.generate(algorithm)) }
            let key = random.pick(keys[algorithm] ?? [])
            let pool: [GeneralName] = [
                .dnsName("h\(index).example.com"), .dnsName("api\(index).svc.example.com"), .dnsName("*.svc.example.com"),
                .dnsName("h\(index).example.org"), .ipAddress(IPAddress("10.1.2.\(index + 1)")!),
                .ipAddress(IPAddress("192.0.2.\(index + 1)")!), .ipAddress(IPAddress("2001:db8::\(index + 1)")!),
            ]
            var names: [GeneralName] = []
            for _ in 0..<(1 + random.below(3)) {
                let name = random.pick(pool)
                if !names.contains(name) { names.append(name) }
            }
            let profile = random.pick([CertificateProfile.tlsServer, .tlsClient, .tlsServerClient])
            let (issuer, issuerFile) = random.pick(issuers)
            var common: String?
            switch random.below(5) {
            case 0: common = nil
            case 1: common = "outside\(index).example.com"
            case 2: common = names.first.map(Self.text)
            default: common = Self.text(random.pick(names))
            }
            var subject = common.map { "CN=\($0)" } ?? ""
            if random.below(2) == 0 { subject += (subject.isEmpty ? "" : ",") + "O=Example Invariant,C=US" }
            if subject.isEmpty { subject = "O=Example Invariant" }
            let request = try CertificateRequest.create(subject: try DistinguishedName(subject), key: key, alternativeNames: names)
            do {
                let certificate = try issuer.issue(request, profile: profile, options: IssuanceOptions(validityDays: 90))
                let path = try directory.write(certificate.pemEncoded, to: "leaf\(index).pem")
                issued.append(Issued(certificate: certificate, issuer: issuer, issuerFile: issuerFile, profile: profile, key: algorithm, path: path))
            } catch let error as IssuanceError {
                refusals[error.reason, default: 0] += 1
            } catch {
                Issue.record("case \(index) (\(subject), \(names)) was refused with an untyped error: \(error)")
            }
        }
        // The generator must exercise both sides of the invariant.
        #expect(issued.count >= 10, "issued \(issued.count), refused \(refusals)")
        #expect(!refusals.isEmpty, "nothing was refused: the generator does not reach the CA's rules")

        for item in issued {
            // Our verifier, under the strictest policy it has.
            let verifier = try Verifier(trustStore: TrustStore(certificates: [root.certificate]))
            let purpose: ExtendedKeyUsage = item.profile == .tlsClient ? .clientAuth : .serverAuth
            var policy = VerificationPolicy(purposes: [purpose], expectedNames: item.certificate.subjectAlternativeNames,
                                            securityProfile: item.key == .rsa2048 ? .medium : .high)
            policy.profile = .webPKI
            #expect(throws: Never.self, "\(item.certificate.subject) \(item.certificate.subjectAlternativeNames)") {
                try verifier.verify(item.certificate, intermediates: [item.issuer.certificate], policy: policy)
            }
            // certtool: the chain (leaf, issuer) against the root.
            let chain = try directory.write(item.certificate.pemEncoded + item.issuer.certificate.pemEncoded, to: "chain-\(URL(fileURLWithPath: item.path).lastPathComponent)")
            let certtool = try await Tool.run(["certtool", "--verify", "--load-ca-certificate", rootFile, "--infile", chain])
            #expect(certtool.succeeded && certtool.output.contains("Chain verification output: Verified."), "\(item.path): \(certtool)")
        }

        // openssl verify, strict, with the purpose, one run per issuer and purpose.
        for (issuerFile, purpose) in Set(issued.map { IssuerPurpose(file: $0.issuerFile, purpose: $0.profile == .tlsClient ? "sslclient" : "sslserver") }).map({ ($0.file, $0.purpose) }) {
            let paths = issued.filter { $0.issuerFile == issuerFile && ($0.profile == .tlsClient ? "sslclient" : "sslserver") == purpose }.map(\.path)
            let result = try await Tool.run(["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", rootFile, "-untrusted", issuerFile] + paths)
            #expect(result.succeeded, "\(result)")
            for path in paths { #expect(result.output.contains("\(path): OK"), "\(path): \(result)") }
        }

        // pkilint, in one Python process for every certificate (a process each costs seconds).
        let script = """
            import sys
            from pkilint.bin.lint_pkix_cert import main
            for path in sys.argv[1:]:
                print("=== " + path, flush=True)
                main(["lint", "-s", "WARNING", path])
                sys.stdout.flush()
            """
        let lint = try await Tool.run(["python3", "-c", script] + issued.map(\.path), timeout: 300, package: "pkilint")
        #expect(!lint.timedOut, "\(lint)")
        var findings: [String: [String]] = [:]
        var current = ""
        for line in lint.output.split(separator: "\n").map(String.init) {
            if line.hasPrefix("=== ") { current = String(line.dropFirst(4)); findings[current] = []; continue }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if ["(FATAL)", "(ERROR)", "(WARNING)"].contains(where: { trimmed.contains($0) }) { findings[current, default: []].append(trimmed) }
        }
        #expect(findings.count == issued.count, "\(lint)")
        for item in issued {
            // The one pinned finding (see LintTests): pkilint's dNSName syntax rejects wildcards.
            let unexpected = (findings[item.path] ?? []).filter {
                !($0.hasPrefix("pkix.invalid_domain_name_syntax (ERROR)") && item.certificate.subjectAlternativeNames.contains(.dnsName("*.svc.example.com")))
            }
            #expect(unexpected.isEmpty, "\(item.path) (\(item.certificate.subject)) has findings: \(unexpected)")
        }
    }

    struct IssuerPurpose: Hashable {
        var file: String
        var purpose: String
    }

    /// A name as a CN would carry it.
    static func text(_ name: GeneralName) -> String {
        switch name {
        case .dnsName(let value): return value
        case .ipAddress(let address): return address.description
        default: return name.description
        }
    }
}
