import ArgumentParser
import GnuTLS

/// `tlsctl key …`: private keys.
struct KeyCommand: AsyncParsableCommand {
    /// The `key` actions; add new ones here.
    static let subcommandList: [any ParsableCommand.Type] = [KeyGenerate.self, KeyList.self]

    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Generate private keys (in files or on PKCS#11 tokens) and list a token's keys.",
        subcommands: subcommandList)
}

/// `tlsctl key generate --algorithm A --out KEY.pem [--passphrase-file F]`, or
/// `tlsctl key generate --algorithm A --key-uri 'pkcs11:token=…;object=…' --pin-file F`
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
    var out: String?

    @Option(name: .customLong("key-uri"), help: ArgumentHelp("Generate the key on a PKCS#11 token instead, at this pkcs11: URI (token=…;object=LABEL); it never leaves the token.", valueName: "uri"))
    var keyURI: String?

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("The token's user PIN (with --key-uri), on the first line of this file.", valueName: "file"))
    var pinFile: String?

    func validate() throws {
        guard (out == nil) != (keyURI == nil) else {
            throw ValidationError("give exactly one of --out (a key file) and --key-uri (a key on a token)")
        }
        if keyURI != nil && passphraseFile != nil {
            throw ValidationError("--passphrase-file protects a key file; a token key is protected by the token's PIN (--pin-file)")
        }
        if keyURI == nil && pinFile != nil { throw ValidationError("--pin-file goes with --key-uri") }
    }

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("Encrypt the key with the passphrase on the first line of this file (its trailing newline is not part of it).", valueName: "file"))
    var passphraseFile: String?

    func run() async throws {
        if let keyURI {
            let pin = try Inputs.pin(file: pinFile)
            let key = try context("cannot generate an \(algorithm) key at \(keyURI)", hint: Inputs.tokenHints) {
                try PKCS11Key.generate(algorithm, uri: keyURI, pin: pin)
            }
            print("Generated \(key.keyDescription) key on the token at \(keyURI)")
            print("Public key SHA-256: \(Format.colonHex(key.publicKey.sha256Fingerprint))")
            return
        }
        guard let out else { return }
        let passphrase = try Passphrase.read(ifGiven: passphraseFile, option: "--passphrase-file")
        let key = try KeyPair.generate(algorithm)
        try Outputs.write(try key.pemEncoded(passphrase: passphrase), to: out, secret: true)
        print("Generated \(key.keyDescription) key\(passphrase == nil ? "" : " (encrypted)") in \(out)")
        print("Public key SHA-256: \(Format.colonHex(key.publicKey.sha256Fingerprint))")
    }
}

/// `tlsctl key list --module M [--uri 'pkcs11:token=…'] [--pin-file F]`
struct KeyList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the private keys on PKCS#11 tokens.",
        discussion: """
            Prints one line per key: its pkcs11: URI, then its algorithm and size. Private keys \
            are private objects: give the PIN with --pin-file, or most tokens list none.
            """)

    @Option(help: ArgumentHelp("The PKCS#11 module (shared library) to load, e.g. /usr/lib/softhsm/libsofthsm2.so; p11-kit's configured modules otherwise.", valueName: "path"))
    var module: String?

    @Option(help: ArgumentHelp("Only the tokens (and keys) this pkcs11: URI matches.", valueName: "uri"))
    var uri: String = "pkcs11:"

    @Option(name: .customLong("pin-file"), help: ArgumentHelp("The token's user PIN, on the first line of this file.", valueName: "file"))
    var pinFile: String?

    func run() async throws {
        let pin = try Inputs.pin(file: pinFile)
        let keys = try context("cannot list the keys on \(uri)", hint: Inputs.tokenHints) {
            try PKCS11Key.listKeys(uri: uri, pin: pin, module: module)
        }
        for key in keys { print(key.description) }
        if keys.isEmpty { print("no private keys found\(pinFile == nil ? " (give the PIN with --pin-file to see private objects)" : "")") }
    }
}
