import ArgumentParser
import GnuTLS

/// `tlsctl key …`: private keys.
struct KeyCommand: AsyncParsableCommand {
    /// The `key` actions; add new ones here.
    static let subcommandList: [any ParsableCommand.Type] = [KeyGenerate.self]

    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Generate private keys.",
        subcommands: subcommandList)
}

/// `tlsctl key generate --algorithm A --out KEY.pem [--passphrase-file F]`
struct KeyGenerate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate a private key and write it as PKCS#8 PEM.",
        discussion: """
            The key file is created with mode 0600. With --passphrase-file it is encrypted \
            PKCS#8 (PBES2, AES-256-CBC, PBKDF2); without, it is a plain PKCS#8 PRIVATE KEY.
            """)

    @Option(help: ArgumentHelp("The key algorithm and size.", valueName: "algorithm"))
    var algorithm: KeyAlgorithm = .ecdsaP256

    @Option(help: ArgumentHelp("Where to write the key (PEM).", valueName: "file"))
    var out: String

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("Encrypt the key with the passphrase on the first line of this file (its trailing newline is not part of it).", valueName: "file"))
    var passphraseFile: String?

    func run() async throws {
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--passphrase-file")
        let key = try KeyPair.generate(algorithm)
        try Outputs.write(try key.pemEncoded(passphrase: passphrase), to: out, secret: true)
        print("Generated \(key.keyDescription) key\(passphrase == nil ? "" : " (encrypted)") in \(out)")
        print("Public key SHA-256: \(Format.colonHex(key.publicKey.sha256Fingerprint))")
    }
}
