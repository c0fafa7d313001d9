import ArgumentParser
import Foundation
import GnuTLS

/// `tlsctl verify`: the x509-limbo verifier interface
/// (`../shared/conformance/limbo/README.md`), also usable by hand with `--chain`.
///
/// Exit status (the limbo interface): 0 the chain is accepted; 1 it is rejected (every
/// reason is printed); 2 an option cannot be honoured (unknown option or value); 3 an input
/// file cannot be read.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a certificate chain for a purpose, a name and a moment.",
        discussion: """
            Exit status: 0 accepted, 1 rejected (reasons on stdout), 2 an option cannot be \
            honoured, 3 an input file cannot be read. Host names match subject alternative \
            names only (no common-name fallback); a CRL from a certificate's issuer must be \
            valid and current.
            """)

    @Option(help: "PEM bundle of trusted certificates (trust anchors).")
    var roots: String?

    @Flag(help: "Trust the system's CAs (p11-kit / ca-certificates) as well.")
    var systemRoots = false

    @Option(help: "PEM bundle of untrusted intermediates, any order (may be empty).")
    var intermediates: String?

    @Option(help: "The certificate to verify (exactly one).")
    var leaf: String?

    @Option(help: "A bundle: the leaf first, then intermediates (instead of --leaf/--intermediates).")
    var chain: String?

    @Option(help: "PEM bundle of CRLs to check revocation against.")
    var crls: String?

    @Flag(help: "Fail unless every certificate below the anchor has a current CRL from its issuer.")
    var requireCRL = false

    @Option(help: "Verification time as UNIX seconds (default: now).")
    var time: Int64?

    @Option(help: "Expected DNS name (repeatable: every one must match).")
    var host: [String] = []

    @Option(help: "Expected IP address (repeatable).")
    var ip: [String] = []

    @Option(help: "Expected email address (repeatable).")
    var email: [String] = []

    @Option(help: "Required purpose: serverAuth, clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning, anyExtendedKeyUsage, or a dotted OID (repeatable).")
    var purpose: [String] = []

    @Option(help: "Maximum number of intermediate CAs.")
    var maxChainDepth: Int?

    @Option(help: "Key usage the leaf must allow (repeatable): digitalSignature, keyEncipherment, …")
    var keyUsage: [String] = []

    @Option(help: "Acceptable signature algorithm (repeatable), e.g. RSA_WITH_SHA256, ECDSA_WITH_SHA384, ED25519.")
    var signatureAlgorithm: [String] = []

    @Option(help: "Key and algorithm strength: low, medium (default) or high.")
    var profile: String = "medium"

    @Flag(name: .customLong("web-pki"), help: "Apply the CA/Browser Forum Web PKI rules on top of RFC 5280 + RFC 9525 (CN among the SANs, leaf EKU, no EKU on roots, no CA as leaf, …).")
    var webPKI = false

    /// Exit codes of the verifier interface.
    enum Status: Int32 {
        case accepted = 0, rejected = 1, unsupported = 2, unreadable = 3
    }

    func run() async throws {
        throw ExitCode(verify().rawValue)
    }

    func verify() -> Status {
        // Options first: anything that cannot be honoured is exit 2, before any file is read.
        guard let securityProfile = SecurityProfile(name: profile) else {
            return fail(.unsupported, "unsupported --profile \(profile): use low, medium or high")
        }
        var purposes: [ExtendedKeyUsage] = []
        for name in purpose {
            guard let value = ExtendedKeyUsage(name: name) else { return fail(.unsupported, "unsupported --purpose \(name)") }
            purposes.append(value)
        }
        var usage: KeyUsage = []
        for name in keyUsage {
            guard let bit = KeyUsage(name: name) else { return fail(.unsupported, "unsupported --key-usage \(name)") }
            usage.insert(bit)
        }
        var algorithms: Set<String>?
        if !signatureAlgorithm.isEmpty {
            var set = Set<String>()
            for name in signatureAlgorithm {
                guard let oid = Self.signatureAlgorithmOIDs[name.uppercased()] else {
                    return fail(.unsupported, "unsupported --signature-algorithm \(name)")
                }
                set.insert(oid)
            }
            algorithms = set
        }
        var names: [GeneralName] = host.map { .dnsName($0) } + email.map { .email($0) }
        for text in ip {
            guard let address = IPAddress(text) else { return fail(.unsupported, "--ip \(text) is not an IP address") }
            names.append(.ipAddress(address))
        }
        if let maxChainDepth, maxChainDepth < 0 { return fail(.unsupported, "--max-chain-depth must not be negative") }
        guard roots != nil || systemRoots else { return fail(.unsupported, "give --roots FILE or --system-roots") }
        guard (leaf != nil) != (chain != nil) else { return fail(.unsupported, "give exactly one of --leaf and --chain") }

        // Inputs: unreadable files are exit 3; unparsable certificates are a rejection.
        var trust = TrustStore(includesSystemTrust: systemRoots)
        let leafCertificate: Certificate
        var untrusted: [Certificate] = []
        do {
            if let roots {
                let data = try read(roots)
                if !isBlank(data) { trust.add(contentsOf: try lenientChain(data)) }
            }
            if let crls {
                let data = try read(crls)
                if !isBlank(data) {
                    for crl in try CertificateRevocationList.parseAll(bytes: data) { trust.add(crl) }
                } else {
                    // Said, not silently ignored: no revocation is checked against this file.
                    Console.error("tlsctl: warning: --crls \(crls) is empty: it holds no CRL, so no revocation was checked against it\(requireCRL ? " (and --require-crl needs one per issuer)" : "")")
                }
            }
            if let chain {
                let certificates = try Certificate.parseChain(bytes: try read(chain))
                leafCertificate = certificates[0]
                untrusted = Array(certificates.dropFirst())
            } else if let leaf {
                let certificates = try Certificate.parseChain(bytes: try read(leaf))
                guard certificates.count == 1 else { return fail(.rejected, "the leaf file holds \(certificates.count) certificates, not one") }
                leafCertificate = certificates[0]
            } else {
                return fail(.unsupported, "give exactly one of --leaf and --chain")
            }
            if let intermediates {
                let data = try read(intermediates)
                if !isBlank(data) { untrusted += try lenientChain(data) }
            }
        } catch let error as Unreadable {
            return fail(.unreadable, error.message)
        } catch {
            return fail(.rejected, "REJECTED: input cannot be parsed: \(error)")
        }

        let policy = VerificationPolicy(
            purposes: purposes, expectedNames: names, time: time.map { Date(timeIntervalSince1970: TimeInterval($0)) },
            maximumIntermediates: maxChainDepth, securityProfile: securityProfile, requiredKeyUsage: usage,
            allowedSignatureAlgorithms: algorithms, revocation: requireCRL ? .requireCRLs : .checkAvailableCRLs,
            profile: webPKI ? .webPKI : .rfc5280)
        do {
            let verifier = try Verifier(trustStore: trust, policy: policy)
            let verified = try verifier.verify(leafCertificate, intermediates: untrusted)
            print("OK: chain of \(verified.certificates.count) verified")
            for (index, certificate) in verified.certificates.enumerated() {
                print("  [\(index)] \(certificate.subject)")
            }
            return .accepted
        } catch let error as VerificationError {
            print("REJECTED:")
            for problem in error.problems { print("  \(problem)") }
            return .rejected
        } catch {
            return fail(.rejected, "REJECTED: \(error)")
        }
    }

    struct Unreadable: Error { var message: String }

    /// Parses a bundle of roots or intermediates, leaving out (with a note) certificates
    /// that cannot be parsed: a broken unrelated certificate must not reject a good chain;
    /// the path builder simply cannot use it.
    private func lenientChain(_ bytes: [UInt8]) throws -> [Certificate] {
        guard PEMBlock.looksLikePEMText(bytes) else { return try Certificate.parseChain(bytes: bytes) }
        var certificates: [Certificate] = []
        for block in try PEMBlock.parseAll(String(decoding: bytes, as: UTF8.self)) where block.label == "CERTIFICATE" {
            do {
                certificates.append(try Certificate(derEncoded: block.derBytes))
            } catch {
                print("note: a certificate in the bundle is left out: \(error)")
            }
        }
        return certificates
    }

    private func read(_ path: String) throws -> [UInt8] {
        guard let data = Inputs.readFile(path) else {
            throw Unreadable(message: "cannot read \(path)")
        }
        return [UInt8](data)
    }

    private func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
    }

    private func fail(_ status: Status, _ message: String) -> Status {
        print(message)
        return status
    }

    /// x509-limbo's signature algorithm names.
    static let signatureAlgorithmOIDs: [String: String] = [
        "RSA_WITH_MD5": "1.2.840.113549.1.1.4",
        "RSA_WITH_SHA1": "1.2.840.113549.1.1.5",
        "RSA_WITH_SHA224": "1.2.840.113549.1.1.14",
        "RSA_WITH_SHA256": "1.2.840.113549.1.1.11",
        "RSA_WITH_SHA384": "1.2.840.113549.1.1.12",
        "RSA_WITH_SHA512": "1.2.840.113549.1.1.13",
        "ECDSA_WITH_SHA1": "1.2.840.10045.4.1",
        "ECDSA_WITH_SHA224": "1.2.840.10045.4.3.1",
        "ECDSA_WITH_SHA256": "1.2.840.10045.4.3.2",
        "ECDSA_WITH_SHA384": "1.2.840.10045.4.3.3",
        "ECDSA_WITH_SHA512": "1.2.840.10045.4.3.4",
        "ED25519": "1.3.101.112",
        "ED448": "1.3.101.113",
    ]
}
