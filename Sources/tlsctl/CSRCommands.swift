import ArgumentParser
import GnuTLS

/// `tlsctl csr …`: certificate requests.
struct CSRCommand: AsyncParsableCommand {
    /// The `csr` actions; add new ones here.
    static let subcommandList: [any ParsableCommand.Type] = [CSRCreate.self]

    static let configuration = CommandConfiguration(
        commandName: "csr",
        abstract: "Create certificate requests (PKCS#10).",
        subcommands: subcommandList)
}

/// `tlsctl csr create --key KEY.pem [--passphrase-file F | --pin-file F [--module M]] --subject DN [--dns N]… [--ip A]… [--email E]… [--uri U]… --out REQ.pem`
struct CSRCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a certificate request signed by a private key.",
        discussion: """
            The request carries the subject, the key's public half and the alternative names; \
            it is signed by the key (proof of possession). The authority decides key usage, \
            extended key usage and validity when it issues the certificate.
            """)

    @Option(help: ArgumentHelp("The private key to sign the request with: a file (PEM or DER), or a pkcs11: URI of a key on a token.", valueName: "file-or-uri"))
    var key: String

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("The token PIN when --key is a pkcs11: URI, on the first line of this file.", valueName: "file"))
    var pinFile: String?

    @Option(help: ArgumentHelp("The PKCS#11 module (shared library) of the --key token, e.g. /usr/lib/softhsm/libsofthsm2.so; p11-kit's configured modules otherwise.", valueName: "path"))
    var module: String?

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("The passphrase of an encrypted key, on the first line of this file.", valueName: "file"))
    var passphraseFile: String?

    @Option(help: ArgumentHelp("The subject in RFC 4514 form: 'CN=api.example.com,O=Example,C=US'.", valueName: "dn"))
    var subject: String

    @Option(help: ArgumentHelp("A DNS name to request. Repeatable.", valueName: "name"))
    var dns: [String] = []

    @Option(help: ArgumentHelp("An IPv4 or IPv6 address to request. Repeatable.", valueName: "address"))
    var ip: [String] = []

    @Option(help: ArgumentHelp("An email address to request. Repeatable.", valueName: "address"))
    var email: [String] = []

    @Option(help: ArgumentHelp("A URI to request (a SPIFFE ID, say). Repeatable.", valueName: "uri"))
    var uri: [String] = []

    @Option(help: ArgumentHelp("Where to write the request (PEM).", valueName: "file"))
    var out: String

    func run() async throws {
        let subject = try Inputs.subject(subject)
        var names: [GeneralName] = dns.map { .dnsName($0) }
        for address in ip {
            guard let parsed = IPAddress(address) else {
                throw CLIError("--ip '\(address)' is not an IPv4 or IPv6 address")
            }
            names.append(.ipAddress(parsed))
        }
        names += email.map { .email($0) } + uri.map { .uri($0) }
        let key = try Inputs.signingKey(key, passphraseFile: passphraseFile, pinFile: pinFile, module: module, passphraseOption: "--passphrase-file")
        let request = try context("cannot create the certificate request") {
            try CertificateRequest.create(subject: subject, key: key, alternativeNames: names)
        }
        try Outputs.write(request.pemEncoded, to: out)
        print("Created certificate request for \(request.subject) (\(request.publicKey.keyDescription)) in \(out)")
        if !names.isEmpty {
            print("Alternative names: \(request.subjectAlternativeNames.map(\.description).joined(separator: ", "))")
        }
    }
}
