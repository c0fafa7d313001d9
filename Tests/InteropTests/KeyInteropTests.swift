import Foundation
import GnuTLS
import Testing
import TestSupport

@Suite("Interop: encrypted keys both ways")
struct KeyInteropTests {
    @Test("keys we encrypt open with openssl pkey -passin", arguments: KeyAlgorithm.allCases)
    func ourEncryptedKeysOpenInOpenSSL(_ algorithm: KeyAlgorithm) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let key = try KeyPair.generate(algorithm)
        let pemPath = try directory.write(key.pemEncoded(passphrase: "open sesame"), to: "key.pem")
        let derPath = try directory.write(key.derEncoded(passphrase: "open sesame"), to: "key.der")
        for (path, form) in [(pemPath, "PEM"), (derPath, "DER")] {
            let opened = try await Tool.run(["openssl", "pkey", "-inform", form, "-in", path, "-passin", "pass:open sesame", "-pubout"])
            #expect(opened.succeeded, "\(opened)")
            #expect(opened.standardOutput == key.publicKey.pemEncoded, "openssl derived another public key from the \(form) file")
            // Negative control: the wrong passphrase does not open it.
            let refused = try await Tool.run(["openssl", "pkey", "-inform", form, "-in", path, "-passin", "pass:open sesame!", "-noout"])
            #expect(!refused.succeeded, "\(refused)")
        }
        // openssl reads the private key itself the same: re-exported by openssl, it imports as our key.
        let plain = directory.file("plain.pem")
        try await Tool.runChecked(["openssl", "pkey", "-in", pemPath, "-passin", "pass:open sesame", "-out", plain])
        #expect(try KeyPair(contentsOfFile: plain) == key)
        // A non-ASCII passphrase means the same UTF-8 bytes to both.
        let unicodePath = try directory.write(key.pemEncoded(passphrase: "Grüße, 世界"), to: "unicode.pem")
        let unicode = try await Tool.run(["openssl", "pkey", "-in", unicodePath, "-passin", "pass:Grüße, 世界", "-pubout"])
        #expect(unicode.succeeded && unicode.standardOutput == key.publicKey.pemEncoded, "\(unicode)")
        // certtool opens it too.
        let info = try await Tool.run(["certtool", "--key-info", "--infile", pemPath, "--password", "open sesame"], package: "gnutls-bin")
        #expect(info.succeeded, "\(info)")
    }

    @Test("keys encrypted by openssl pkcs8 -topk8 -v2 aes256 open with our API", arguments: ["rsa:3072", "ec:P-256", "ec:P-521", "ed25519"])
    func opensslEncryptedKeysOpen(_ spec: String) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let plain = try await OpenSSL.generateKey(spec, to: directory.file("plain.pem"))
        for form in ["PEM", "DER"] {
            let encrypted = directory.file("enc.\(form)")
            try await Tool.runChecked(["openssl", "pkcs8", "-topk8", "-v2", "aes256", "-in", plain, "-outform", form, "-out", encrypted,
                                 "-passout", "pass:Ünïcødé pass"])
            let key = try KeyPair(contentsOfFile: encrypted, passphrase: "Ünïcødé pass")
            let publicPEM = try await Tool.runChecked(["openssl", "pkey", "-in", plain, "-pubout"]).standardOutput
            #expect(key.publicKey.pemEncoded == publicPEM)
            let wrong = #expect(throws: GnuTLSError.self) { try KeyPair(contentsOfFile: encrypted, passphrase: "Unicode pass") }
            #expect(wrong?.code == .wrongPassphrase, "\(String(describing: wrong))")
            let missing = #expect(throws: GnuTLSError.self) { try KeyPair(contentsOfFile: encrypted) }
            #expect(missing?.code == .passphraseRequired, "\(String(describing: missing))")
            // The opened key signs: a request made with it passes openssl's check.
            let request = try CertificateRequest.create(subject: try DistinguishedName("CN=opened"), key: key)
            let requestPath = try directory.write(request.pemEncoded, to: "req-\(form).pem")
            #expect(try await Tool.run(["openssl", "req", "-in", requestPath, "-verify", "-noout"]).succeeded)
        }
    }
}
