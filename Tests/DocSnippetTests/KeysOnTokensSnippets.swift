import GnuTLS
import GnuTLSAuthority

/// The code block of `Sources/GnuTLS/GnuTLS.docc/KeysOnTokens.md`, compiled only: it needs
/// a PKCS#11 token and writes under /etc, so it is not a test that runs. (The PKCS#11 key
/// path itself is run against SoftHSM by the GnuTLSTests.)
enum KeysOnTokensSnippets {
    static func rootOnAToken() throws {
        let pin = try PKCS11PIN.file("/etc/ca/token.pin")
        let key = try PKCS11Key.generate(.ecdsaP384, uri: "pkcs11:token=ca;object=root", pin: pin)
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Token Root"), key: key)
        try root.save(to: "/etc/ca/root", passphrase: nil)   // writes ca.key.uri, not a key
        let again = try LocalAuthority.load(from: "/etc/ca/root", passphrase: nil, pin: pin)
        _ = again
    }
}
