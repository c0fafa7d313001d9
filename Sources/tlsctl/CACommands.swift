import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

/// `tlsctl ca …`: a certificate authority kept in a directory (`ca.pem`, `ca.key.pem`,
/// `chain.pem`, as `LocalAuthority.save(to:passphrase:)` writes them).
struct CACommand: AsyncParsableCommand {
    /// The `ca` actions, in the order `--help` shows them. Add new ones here
    /// (`revoke`, `crl`, …).
    static let subcommandList: [any ParsableCommand.Type] = [
        CAInit.self,
        CAIntermediate.self,
        CAIssue.self,
        CARevoke.self, CACRL.self,
    ]

    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Run a certificate authority kept in a directory.",
        discussion: """
            A CA directory holds ca.pem (the CA certificate), ca.key.pem (its key, mode 0600, \
            encrypted PKCS#8 when created with --passphrase-file) and chain.pem (the CA \
            certificate followed by its issuers up to the root). --passphrase-file protects the \
            key of a CA being created; --ca-passphrase-file opens the key of the signing CA.
            """,
        subcommands: subcommandList)
}

/// Options naming the signing CA.
struct SigningCAOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The directory of the signing CA.", valueName: "dir"))
    var ca: String

    @Option(name: .customLong("ca-passphrase-file"), help: ArgumentHelp("The passphrase of the signing CA's key, on the first line of this file.", valueName: "file"))
    var caPassphraseFile: String?

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("The token PIN of a CA whose key is on a token (its directory holds ca.key.uri), on the first line of this file.", valueName: "file"))
    var pinFile: String?

    func load() throws -> LocalAuthority {
        try Inputs.authority(at: ca, passphraseFile: caPassphraseFile, pinFile: pinFile)
    }
}

/// The options of a CA being created, shared by `ca init` and `ca intermediate`.
struct NewCAOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The directory to create the CA in; must not hold a CA already.", valueName: "dir"))
    var dir: String

    @Option(help: ArgumentHelp("The CA's subject in RFC 4514 form: 'CN=Example Root CA,O=Example'.", valueName: "dn"))
    var subject: String

    @Option(help: ArgumentHelp("The new key's algorithm.", valueName: "algorithm"))
    var algorithm: KeyAlgorithm = .ecdsaP256

    @Option(help: ArgumentHelp("Days of validity (default: 3650 for a root, 1825 for an intermediate); an intermediate's must end before its issuer's.", valueName: "n"))
    var days: Int?

    @Option(name: .customLong("path-length"), help: ArgumentHelp("How many CA levels may follow this one (0: it issues only end-entity certificates; default: unlimited for a root, as deep as the issuer's chain allows for an intermediate).", valueName: "n"))
    var pathLength: Int?

    @OptionGroup(title: "Name constraints")
    var constraints: NameConstraintOptions

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("Encrypt the new CA's key with the passphrase on the first line of this file.", valueName: "file"))
    var passphraseFile: String?

    func validate() throws {
        if let pathLength, pathLength < 0 { throw ValidationError("--path-length must be 0 or more, not \(pathLength)") }
        if let days, days < 1 { throw ValidationError("--days must be 1 or more, not \(days)") }
    }

    /// Reads and checks everything before anything is generated or written.
    func prepare() throws -> (subject: DistinguishedName, passphrase: String?, nameConstraints: NameConstraints?) {
        let subject = try Inputs.subject(subject)
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--passphrase-file")
        let nameConstraints = try Inputs.nameConstraints(constraints)
        try Outputs.requireNewAuthorityDirectory(dir)
        return (subject, passphrase, nameConstraints)
    }

    /// Saves `authority` to ``dir`` and prints where everything went.
    func save(_ authority: LocalAuthority, passphrase: String?) throws {
        try context("cannot save the CA") { try authority.save(to: dir, passphrase: passphrase) }
        CASummary.print(authority.certificate, directory: dir, encrypted: passphrase != nil)
    }
}

/// Where `ca init` puts the root's key when it is not generated in memory.
struct TokenKeyOptions: ParsableArguments {
    @Option(name: .customLong("key-uri"), help: ArgumentHelp("Keep the root's key on a PKCS#11 token: generate it there at this pkcs11: URI (token=…;object=LABEL), or use the key already there with --existing-key. The directory then holds ca.key.uri instead of ca.key.pem.", valueName: "uri"))
    var keyURI: String?

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("The token's user PIN, on the first line of this file.", valueName: "file"))
    var pinFile: String?

    @Flag(name: .customLong("existing-key"), help: "Use the key already on the token at --key-uri instead of generating one.")
    var existingKey = false

    func validate() throws {
        if keyURI == nil && (pinFile != nil || existingKey) {
            throw ValidationError("--pin-file and --existing-key go with --key-uri")
        }
        if let keyURI, !keyURI.hasPrefix("pkcs11:") {
            throw ValidationError("--key-uri must be a pkcs11: URI (RFC 7512), not '\(keyURI)'")
        }
    }

    /// The root's key: on the token when --key-uri is given, else a new key in memory.
    func key(algorithm: KeyAlgorithm) throws -> any SigningKey {
        guard let keyURI else { return try KeyPair.generate(algorithm) }
        let pin = try Inputs.pin(file: pinFile)
        if existingKey {
            return try context("cannot open token key \(keyURI)", hint: Inputs.tokenHints) { try PKCS11Key(uri: keyURI, pin: pin) }
        }
        return try context("cannot generate an \(algorithm) key at \(keyURI)", hint: Inputs.tokenHints) {
            try PKCS11Key.generate(algorithm, uri: keyURI, pin: pin)
        }
    }
}

/// `tlsctl ca init --dir DIR --subject DN [--algorithm A] [--days N] [--passphrase-file F] [--key-uri URI [--pin-file F] [--existing-key]]`
struct CAInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a self-signed root CA in a new directory.")

    @OptionGroup var options: NewCAOptions
    @OptionGroup(title: "Key on a token") var token: TokenKeyOptions

    func run() async throws {
        let (subject, passphrase, nameConstraints) = try options.prepare()
        let key = try token.key(algorithm: options.algorithm)
        let root = try context("cannot create the root CA", hint: Inputs.tokenHints) {
            try LocalAuthority.createRoot(
                subject: subject, key: key, validityDays: options.days ?? 3650, pathLength: options.pathLength,
                nameConstraints: nameConstraints)
        }
        print("Created root CA \(root.certificate.subject) (\(key.publicKey.keyDescription)\(token.keyURI.map { " on \($0)" } ?? "")) in \(options.dir)")
        try options.save(root, passphrase: passphrase)
    }
}

/// `tlsctl ca intermediate --ca DIR [--ca-passphrase-file F] --dir DIR2 --subject DN [--path-length N] [--permit-dns D]… [--exclude-dns D]… [--passphrase-file F]`
struct CAIntermediate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intermediate",
        abstract: "Create an intermediate CA, with a new key, signed by a CA.",
        discussion: """
            The new CA's chain.pem holds its certificate followed by the signing CA's chain. \
            The signing CA refuses when its chain's path length allows no further CA level, or \
            when the validity would end after its own.
            """)

    @OptionGroup var signer: SigningCAOptions
    @OptionGroup var options: NewCAOptions

    func run() async throws {
        let (subject, passphrase, nameConstraints) = try options.prepare()
        let parent = try signer.load()
        let key = try KeyPair.generate(options.algorithm)
        let intermediate = try parent.createIntermediate(
            subject: subject, key: key, validityDays: options.days ?? 1825, pathLength: options.pathLength,
            nameConstraints: nameConstraints)
        print("Created intermediate CA \(intermediate.certificate.subject) (\(key.keyDescription)) in \(options.dir), signed by \(parent.certificate.subject)")
        try options.save(intermediate, passphrase: passphrase)
    }
}

/// The `--profile` values of `ca issue`.
enum IssueProfile: String, CaseIterable, ExpressibleByArgument {
    case server
    case client
    case serverClient = "server-client"
    case ocspResponder = "ocsp-responder"

    var profile: CertificateProfile {
        switch self {
        case .server: return .tlsServer
        case .client: return .tlsClient
        case .serverClient: return .tlsServerClient
        case .ocspResponder: return .ocspResponder
        }
    }
}

/// `tlsctl ca issue --ca DIR [--ca-passphrase-file F] --csr REQ.pem --profile P --days N --out CERT.pem [--chain-out CHAIN.pem] [--crl-url URL] [--ocsp-url URL]`
struct CAIssue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Issue a certificate from a certificate request.",
        discussion: """
            The subject and alternative names come from the request; key usage, extended key \
            usage and basic constraints come from the profile (the request's own extensions are \
            never copied). The CA refuses (exit status 1, the reason on stderr) when the request \
            is not signed by its key, asks to be a CA, names something outside the chain's name \
            constraints, has a weak key, or when the validity would end after the CA's.
            """)

    @OptionGroup var signer: SigningCAOptions

    @Option(help: ArgumentHelp("The certificate request (PEM or DER).", valueName: "file"))
    var csr: String

    @Option(help: ArgumentHelp("What the certificate is for: server (serverAuth, needs a DNS or IP name), client (clientAuth), server-client (both), or ocsp-responder (OCSPSigning and ocsp-nocheck: a delegated OCSP responder).", valueName: "profile"))
    var profile: IssueProfile

    @Option(help: ArgumentHelp("Days of validity; must end before the CA's certificate does.", valueName: "n"))
    var days: Int

    @Option(help: ArgumentHelp("Where to write the certificate (PEM).", valueName: "file"))
    var out: String

    @Option(name: .customLong("chain-out"), help: ArgumentHelp("Also write the certificate followed by the CA chain without the root (what a TLS server sends).", valueName: "file"))
    var chainOut: String?

    @Option(name: .customLong("crl-url"), help: ArgumentHelp("A CRL distribution point URL to embed. Repeatable.", valueName: "url"))
    var crlURL: [String] = []

    @Option(name: .customLong("ocsp-url"), help: ArgumentHelp("An OCSP responder URL to embed (authority information access). Repeatable.", valueName: "url"))
    var ocspURL: [String] = []

    @Flag(name: .customLong("must-staple"), help: "Add the TLS feature extension (status_request, RFC 7633): clients refuse the certificate without a valid stapled OCSP response.")
    var mustStaple = false

    func run() async throws {
        let request = try Inputs.request(at: csr)
        // Outputs are checked before signing: a retry after an unwritable --out would issue twice.
        try Outputs.requireWritable(out, option: "--out")
        if let chainOut { try Outputs.requireWritable(chainOut, option: "--chain-out") }
        let authority = try signer.load()
        var options = IssuanceOptions(validityDays: days, crlDistributionPoints: crlURL, ocspURLs: ocspURL)
        options.mustStaple = mustStaple
        let chain = try authority.issueWithChain(request, profile: profile.profile, options: options)
        let certificate = chain[0]
        do {
            try Outputs.write(certificate.pemEncoded, to: out)
            if let chainOut {
                try Outputs.write(chain.map(\.pemEncoded).joined(), to: chainOut)
            }
        } catch let error as CLIError {
            throw CLIError("\(error.message); the certificate was issued and recorded in the CA's ledger: serial \(Format.colonHex(certificate.serialNumber.bytes)) (revoke it with `tlsctl ca revoke --ca \(signer.ca) --serial \(certificate.serialNumber.hexString)` before issuing again)")
        }
        print("Issued \(profile.rawValue) certificate for \(certificate.subject) in \(out), signed by \(authority.certificate.subject)")
        print("  Serial:     \(Format.colonHex(certificate.serialNumber.bytes))")
        print("  Valid:      \(Format.date(certificate.notValidBefore)) to \(Format.date(certificate.notValidAfter))")
        if !certificate.subjectAlternativeNames.isEmpty {
            print("  Names:      \(certificate.subjectAlternativeNames.map(\.description).joined(separator: ", "))")
        }
        if let chainOut {
            print("  Chain:      \(chainOut) (\(chain.count) certificate\(chain.count == 1 ? "" : "s"))")
        }
    }
}

/// What `ca init` and `ca intermediate` print about a new CA.
enum CASummary {
    static func print(_ certificate: Certificate, directory: String, encrypted: Bool) {
        let path = { (name: String) in (directory as NSString).appendingPathComponent(name) }
        Swift.print("  Certificate: \(path(LocalAuthority.DirectoryLayout.certificate))")
        Swift.print("  Key:         \(path(LocalAuthority.DirectoryLayout.key))\(encrypted ? " (encrypted)" : " (not encrypted, mode 0600)")")
        Swift.print("  Chain:       \(path(LocalAuthority.DirectoryLayout.chain))")
        Swift.print("  Valid:       \(Format.date(certificate.notValidBefore)) to \(Format.date(certificate.notValidAfter))")
        if let constraints = certificate.basicConstraints { Swift.print("  Basic constraints: \(constraints)") }
        if let names = certificate.nameConstraints, !names.isEmpty { Swift.print("  Name constraints:  \(names)") }
    }
}
