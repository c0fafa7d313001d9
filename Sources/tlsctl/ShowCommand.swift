import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

/// `tlsctl show FILE`: a key, request, certificate or chain in a readable form.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print a key, certificate request, certificate or chain in a readable form.",
        discussion: """
            FILE may be PEM (one or more blocks: a chain, or a key next to its certificate) or \
            DER; it may also be a CRL. For a certificate: subject, issuer, serial, validity, key, signature algorithm, \
            alternative names, basic constraints, key usage, extended key usage, key \
            identifiers, CRL distribution points, authority information access, name \
            constraints and SHA-256 fingerprint. For a key: its algorithm, whether it is \
            encrypted, and its public key's fingerprint (an encrypted key needs \
            --passphrase-file).
            """)

    @Argument(help: ArgumentHelp("The file to show.", valueName: "file"))
    var file: String

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("The passphrase of an encrypted private key, on the first line of this file.", valueName: "file"))
    var passphraseFile: String?

    func run() async throws {
        guard let data = Inputs.readFile(file) else {
            throw CLIError("cannot read \(file): \(FileManager.default.fileExists(atPath: file) ? "permission denied or not a file" : "no such file")")
        }
        let bytes = [UInt8](data)
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--passphrase-file")
        var printer = ObjectPrinter(file: file, passphrase: passphrase)
        if bytes.first == 0x30 {
            try printer.showDER(bytes)
        } else {
            let blocks = try context("cannot read \(file)") { try PEMBlock.parseAll(String(decoding: bytes, as: UTF8.self)) }
            try printer.showPEM(blocks)
        }
    }
}

/// Prints the objects of one file.
struct ObjectPrinter {
    var file: String
    var passphrase: String?

    /// Which kinds of PEM blocks `show` knows. Add new kinds (CRLs, OCSP responses) here.
    enum Kind {
        case certificate, request, privateKey, publicKey, crl, other(String)

        init(label: String) {
            switch label {
            case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE": self = .certificate
            case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST": self = .request
            case "PUBLIC KEY": self = .publicKey
            case "X509 CRL": self = .crl
            case _ where label.hasSuffix("PRIVATE KEY"): self = .privateKey
            default: self = .other(label)
            }
        }
    }

    mutating func showPEM(_ blocks: [PEMBlock]) throws {
        let certificates = try blocks.filter { if case .certificate = Kind(label: $0.label) { return true }; return false }
            .map { block in try context("cannot parse a certificate in \(file)") { try Certificate(derEncoded: block.derBytes) } }
        var shownCertificates = false
        var first = true
        for block in blocks {
            let kind = Kind(label: block.label)
            if case .certificate = kind {
                // Certificates are shown together, as a chain, where the first one is.
                guard !shownCertificates else { continue }
                shownCertificates = true
                if !first { print("") }
                showCertificates(certificates)
            } else {
                if !first { print("") }
                try show(kind, block: block)
            }
            first = false
        }
    }

    mutating func showDER(_ bytes: [UInt8]) throws {
        if let certificate = try? Certificate(derEncoded: bytes) {
            showCertificates([certificate])
        } else if let request = try? CertificateRequest(derEncoded: bytes) {
            showRequest(request)
        } else if let publicKey = try? PublicKey(derEncoded: bytes) {
            showPublicKey(publicKey)
        } else if let crl = try? CertificateRevocationList(derEncoded: bytes) {
            showCRL(crl)
        } else {
            try showPrivateKey(der: bytes, label: nil)
        }
    }

    func show(_ kind: Kind, block: PEMBlock) throws {
        switch kind {
        case .certificate:
            showCertificates([try Certificate(derEncoded: block.derBytes)])
        case .request:
            showRequest(try context("cannot parse the certificate request in \(file)") { try CertificateRequest(derEncoded: block.derBytes) })
        case .privateKey:
            try showPrivateKey(der: block.derBytes, label: block.label)
        case .publicKey:
            showPublicKey(try context("cannot parse the public key in \(file)") { try PublicKey(derEncoded: block.derBytes) })
        case .crl:
            showCRL(try context("cannot parse the CRL in \(file)") { try CertificateRevocationList(derEncoded: block.derBytes) })
        case .other(let label):
            print("\(label)")
            print("  (tlsctl show does not read this kind of PEM block yet: \(block.derBytes.count) bytes)")
        }
    }

    // MARK: Certificates

    func showCertificates(_ certificates: [Certificate]) {
        for (index, certificate) in certificates.enumerated() {
            if index > 0 { print("") }
            print(certificates.count == 1 ? "Certificate" : "Certificate \(index + 1) of \(certificates.count)")
            showCertificate(certificate)
        }
        if certificates.count > 1 {
            print("")
            print("Chain links")
            for (child, parent) in zip(certificates, certificates.dropFirst()) {
                let nameLink = child.issuer == parent.subject
                let keyLink = child.authorityKeyIdentifier.map { $0 == parent.subjectKeyIdentifier } ?? true
                print("  \(child.subject) <- \(parent.subject): issuer name \(nameLink ? "matches" : "DOES NOT match"), key identifier \(keyLink ? "matches" : "DOES NOT match")")
            }
        }
    }

    func showCertificate(_ certificate: Certificate) {
        var rows = Rows()
        rows.add("Subject", certificate.subject.isEmpty ? "(empty)" : certificate.subject.description)
        rows.add("Issuer", certificate.issuer.description + (certificate.isSelfIssued ? " (self-issued)" : ""))
        rows.add("Version", "\(certificate.version)")
        rows.add("Serial", Format.colonHex(certificate.serialNumber.bytes))
        rows.add("Not before", Format.date(certificate.notValidBefore))
        rows.add("Not after", Format.date(certificate.notValidAfter) + validityNote(certificate))
        rows.add("Public key", certificate.publicKey.keyDescription.description)
        rows.add("Public key SHA-256", Format.colonHex(certificate.publicKey.sha256Fingerprint))
        rows.add("Signature algorithm", certificate.signatureAlgorithm.name)
        if !certificate.subjectAlternativeNames.isEmpty {
            rows.add("Alternative names" + critical(certificate, "2.5.29.17"), certificate.subjectAlternativeNames.map(\.description).joined(separator: ", "))
        }
        if let constraints = certificate.basicConstraints {
            rows.add("Basic constraints" + critical(certificate, "2.5.29.19"), constraints.description)
        }
        if let usage = certificate.keyUsage {
            rows.add("Key usage" + critical(certificate, "2.5.29.15"), usage.description)
        }
        if let purposes = certificate.extendedKeyUsage {
            rows.add("Extended key usage" + critical(certificate, "2.5.29.37"), purposes.map(\.description).joined(separator: ", "))
        }
        if let identifier = certificate.subjectKeyIdentifier {
            rows.add("Subject key ID", Format.colonHex(identifier))
        }
        if let identifier = certificate.authorityKeyIdentifier {
            rows.add("Authority key ID", Format.colonHex(identifier))
        }
        if !certificate.crlDistributionPoints.isEmpty {
            rows.add("CRL distribution points", certificate.crlDistributionPoints.map(\.description).joined(separator: ", "))
        }
        if !certificate.ocspURLs.isEmpty {
            rows.add("OCSP", certificate.ocspURLs.joined(separator: ", "))
        }
        if !certificate.caIssuerURLs.isEmpty {
            rows.add("CA issuers", certificate.caIssuerURLs.joined(separator: ", "))
        }
        if let constraints = certificate.nameConstraints, !constraints.isEmpty {
            rows.add("Name constraints" + critical(certificate, "2.5.29.30"), constraints.description)
        }
        rows.add("SHA-256 fingerprint", Format.colonHex(certificate.sha256Fingerprint))
        rows.print()
    }

    func critical(_ certificate: Certificate, _ oid: String) -> String {
        certificate.extension(oid: oid)?.critical == true ? " (critical)" : ""
    }

    func validityNote(_ certificate: Certificate) -> String {
        let now = Date()
        if now < certificate.notValidBefore { return " (not yet valid)" }
        if now > certificate.notValidAfter { return " (EXPIRED)" }
        let days = Int(certificate.notValidAfter.timeIntervalSince(now) / 86_400)
        return " (\(days) day\(days == 1 ? "" : "s") left)"
    }

    // MARK: Revocation lists

    func showCRL(_ crl: CertificateRevocationList) {
        print("Certificate revocation list")
        var rows = Rows()
        rows.add("Issuer", crl.issuer.description)
        rows.add("Version", "\(crl.version)")
        if let number = crl.crlNumber { rows.add("CRL number", Format.colonHex(number)) }
        rows.add("This update", Format.date(crl.thisUpdate))
        if let nextUpdate = crl.nextUpdate {
            rows.add("Next update", Format.date(nextUpdate) + (crl.isStale() ? " (STALE)" : ""))
        }
        rows.add("Signature algorithm", crl.signatureAlgorithm.name)
        if let identifier = crl.authorityKeyIdentifier { rows.add("Authority key ID", Format.colonHex(identifier)) }
        rows.add("Revoked", crl.entries.isEmpty ? "none" : "\(crl.entries.count) certificate\(crl.entries.count == 1 ? "" : "s")")
        for entry in crl.entries {
            rows.add("Serial", Format.colonHex(entry.serialNumber.bytes) + " revoked \(Format.date(entry.revocationDate))"
                     + (entry.reason.map { " (\($0))" } ?? ""))
        }
        rows.print()
    }

    // MARK: Requests

    func showRequest(_ request: CertificateRequest) {
        print("Certificate request")
        var rows = Rows()
        rows.add("Subject", request.subject.isEmpty ? "(empty)" : request.subject.description)
        rows.add("Public key", request.publicKey.keyDescription.description)
        rows.add("Public key SHA-256", Format.colonHex(request.publicKey.sha256Fingerprint))
        rows.add("Signature algorithm", request.signatureAlgorithm.name)
        rows.add("Signature", request.isSignatureValid ? "valid (signed by the key it carries)" : "INVALID: not signed by the key it carries")
        if !request.subjectAlternativeNames.isEmpty {
            rows.add("Alternative names", request.subjectAlternativeNames.map(\.description).joined(separator: ", "))
        }
        if let constraints = request.basicConstraints { rows.add("Basic constraints", constraints.description) }
        if let usage = request.keyUsage { rows.add("Key usage", usage.description) }
        if let purposes = request.extendedKeyUsage {
            rows.add("Extended key usage", purposes.map(\.description).joined(separator: ", "))
        }
        if request.challengePassword != nil { rows.add("Challenge password", "(present)") }
        rows.print()
    }

    // MARK: Keys

    func showPrivateKey(der: [UInt8], label: String?) throws {
        var encrypted = label == "ENCRYPTED PRIVATE KEY"
        var key: KeyPair?
        if label == nil {
            // DER says whether it is encrypted only by trying.
            do {
                key = try KeyPair(derEncoded: der)
            } catch let error as GnuTLSError where error.code == .passphraseRequired {
                encrypted = true
            } catch let error as GnuTLSError {
                throw CLIError("cannot read \(file) as a certificate, request, public key or private key: \(error.description)")
            }
        }
        if key == nil && (!encrypted || passphrase != nil) {
            key = try context("cannot read the private key in \(file)", hint: [.wrongPassphrase: "check --passphrase-file"]) {
                try KeyPair(derEncoded: der, passphrase: encrypted ? passphrase : nil)
            }
        }
        print("Private key")
        var rows = Rows()
        rows.add("Format", format(label: label, encrypted: encrypted))
        rows.add("Encrypted", encrypted ? "yes" : "no")
        guard let key else {
            rows.print()
            throw CLIError("the private key in \(file) is encrypted: give its passphrase with --passphrase-file FILE to show its algorithm and public key")
        }
        rows.add("Algorithm", key.keyDescription.description)
        rows.add("Public key SHA-256", Format.colonHex(key.publicKey.sha256Fingerprint))
        rows.add("Key identifier", Format.colonHex(key.publicKey.keyIdentifier))
        rows.print()
    }

    func format(label: String?, encrypted: Bool) -> String {
        switch label {
        case "RSA PRIVATE KEY": return "PKCS#1 (PEM)"
        case "EC PRIVATE KEY": return "SEC1 (PEM)"
        case "ENCRYPTED PRIVATE KEY": return "encrypted PKCS#8 (PEM)"
        case "PRIVATE KEY": return "PKCS#8 (PEM)"
        case nil: return encrypted ? "encrypted PKCS#8 (DER)" : "DER"
        case let other?: return "\(other) (PEM)"
        }
    }

    func showPublicKey(_ key: PublicKey) {
        print("Public key")
        var rows = Rows()
        rows.add("Algorithm", key.keyDescription.description)
        rows.add("Public key SHA-256", Format.colonHex(key.sha256Fingerprint))
        rows.add("Key identifier", Format.colonHex(key.keyIdentifier))
        rows.print()
    }
}

/// Aligned `name: value` rows.
struct Rows {
    private var rows: [(String, String)] = []
    mutating func add(_ name: String, _ value: String) { rows.append((name, value)) }
    func print() {
        let width = rows.map(\.0.count).max() ?? 0
        for (name, value) in rows {
            Swift.print("  \(name):" + String(repeating: " ", count: width - name.count + 1) + value)
        }
    }
}
