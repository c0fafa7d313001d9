import Foundation
import GnuTLS
import NIOSSL
import Testing

// Issue 9: an encrypted private key written by `KeyPair.pemEncoded(passphrase:)` could not
// be read by BoringSSL (swift-nio-ssl: failedToLoadPrivateKey) because the PBKDF2 PRF
// AlgorithmIdentifier lacked the NULL parameters RFC 8018 gives it. swift-nio-ssl is a
// test-only dependency of this target.

@Suite("Keys written by KeyPair load in BoringSSL (swift-nio-ssl NIOSSLPrivateKey)")
struct BoringSSLKeyTests {
    @Test("an encrypted PKCS#8 key loads with its passphrase", arguments: [KeyAlgorithm.ecdsaP256, .ecdsaP384, .ed25519, .rsa2048])
    func encryptedKeyLoads(_ algorithm: KeyAlgorithm) throws {
        let key = try KeyPair.generate(algorithm)
        let pem = try key.pemEncoded(passphrase: "correct horse")
        let loaded = try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem) { (setter: NIOSSLPassphraseSetter<[UInt8]>) in
            setter(Array("correct horse".utf8))
        }
        // (swift-nio-ssl reads encrypted keys from PEM only; its DER path takes no passphrase.)
        _ = loaded
    }

    @Test("a wrong passphrase is an error, not a key")
    func wrongPassphrase() throws {
        let pem = try KeyPair.generate(.ecdsaP256).pemEncoded(passphrase: "correct horse")
        #expect(throws: (any Error).self) {
            try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem) { (setter: NIOSSLPassphraseSetter<[UInt8]>) in
                setter(Array("battery staple".utf8))
            }
        }
    }

    @Test("an unencrypted PKCS#8 key loads")
    func plainKeyLoads() throws {
        let pem = try KeyPair.generate(.ecdsaP256).pemEncoded()
        #expect(throws: Never.self) { try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem) }
    }
}
