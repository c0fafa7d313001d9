import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import Testing
import TestSupport

@Suite("Keys: generation, import, export, errors")
struct KeyPairTests {
    static let expectedDescriptions: [(KeyAlgorithm, String, Int, String?)] = [
        (.rsa2048, "RSA", 2048, nil), (.rsa3072, "RSA", 3072, nil), (.rsa4096, "RSA", 4096, nil),
        (.ecdsaP256, "ECDSA", 256, "P-256"), (.ecdsaP384, "ECDSA", 384, "P-384"), (.ecdsaP521, "ECDSA", 521, "P-521"),
        (.ed25519, "Ed25519", 256, nil),
    ]

    @Test("every algorithm generates a key of its family and size", arguments: expectedDescriptions)
    func generate(_ algorithm: KeyAlgorithm, family: String, bits: Int, curve: String?) throws {
        let key = try KeyPair.generate(algorithm)
        #expect(key.keyDescription.family.rawValue == family)
        #expect(key.keyDescription.bits == bits)
        #expect(key.keyDescription.curve == curve)
        #expect(key.keyDescription.algorithm == algorithm)
        // A second key of the same algorithm is a different key.
        #expect(try KeyPair.generate(algorithm) != key)
        // The key signs: a request made with it verifies.
        let request = try CertificateRequest.create(subject: try name("CN=\(algorithm)"), key: key)
        #expect(request.isSignatureValid)
        #expect(request.publicKey == key.publicKey)
    }

    @Test("the algorithm names tlsctl uses parse, and unknown ones do not")
    func algorithmNames() {
        #expect(KeyAlgorithm.allCases.count == 7)
        for algorithm in KeyAlgorithm.allCases {
            #expect(KeyAlgorithm(rawValue: algorithm.rawValue) == algorithm)
        }
        #expect(KeyAlgorithm(rawValue: "rsa-1024") == nil)
        #expect(KeyAlgorithm(rawValue: "dsa") == nil)
    }

    @Test("PEM and DER export round-trip, plain and encrypted", arguments: [KeyAlgorithm.ecdsaP384, .rsa2048, .ed25519])
    func exportRoundTrip(_ algorithm: KeyAlgorithm) throws {
        let key = try KeyPair.generate(algorithm)

        let pem = try key.pemEncoded()
        #expect(pem.hasPrefix(PEMText.header("PRIVATE KEY")))
        #expect(try KeyPair(pemEncoded: pem) == key)

        let der = try key.derEncoded()
        #expect(der.first == 0x30)
        #expect(try KeyPair(derEncoded: der) == key)
        #expect(try KeyPair(bytes: Array(pem.utf8)) == key)
        #expect(try KeyPair(bytes: der) == key)

        let encryptedPEM = try key.pemEncoded(passphrase: "correct horse")
        #expect(encryptedPEM.hasPrefix(PEMText.header("ENCRYPTED PRIVATE KEY")))
        #expect(!encryptedPEM.contains(pem.split(separator: "\n")[1]))
        #expect(try KeyPair(pemEncoded: encryptedPEM, passphrase: "correct horse") == key)

        let encryptedDER = try key.derEncoded(passphrase: "correct horse")
        #expect(encryptedDER != der)
        #expect(try KeyPair(derEncoded: encryptedDER, passphrase: "correct horse") == key)

        // CRLF line ends (files from Windows) are the same PEM.
        #expect(try KeyPair(pemEncoded: encryptedPEM.replacingOccurrences(of: "\n", with: "\r\n"), passphrase: "correct horse") == key)

        // A passphrase given for a plain key is not needed and does no harm.
        #expect(try KeyPair(pemEncoded: pem, passphrase: "unused") == key)
    }

    @Test("an empty passphrase is refused on export")
    func emptyPassphrase() throws {
        let key = try KeyPair.generate()
        expectGnuTLSError(.invalidArgument, mentioning: ["empty passphrase"]) { try key.pemEncoded(passphrase: "") }
    }

    @Test("the encrypted export is PBES2 with AES-256, as openssl reads it")
    func encryptionScheme() async throws {
        try await withTemporaryDirectory { directory in
            let key = try KeyPair.generate()
            let path = try directory.write(key.pemEncoded(passphrase: "s3cret"), to: "key.pem")
            let dump = try await Tool.runChecked(["openssl", "asn1parse", "-in", path]).standardOutput
            #expect(dump.contains("PBES2"))
            #expect(dump.contains("PBKDF2"))
            #expect(dump.contains("aes-256-cbc"))
        }
    }

    /// Every format the issue names, made by openssl: PKCS#1 and SEC1 ("traditional"),
    /// PKCS#8, encrypted PKCS#8, each as PEM and DER.
    @Test("keys made by openssl import in every format", arguments: ["rsa:2048", "ec:P-256", "ec:P-384", "ec:P-521", "ed25519"])
    func importOpenSSLFormats(_ spec: String) async throws {
        try await withTemporaryDirectory { directory in
            let pkcs8 = try await OpenSSL.generateKey(spec, to: directory.file("pkcs8.pem"))
            let reference = try KeyPair(contentsOfFile: pkcs8)
            let expectedFamily = spec.hasPrefix("rsa") ? "RSA" : spec.hasPrefix("ec") ? "ECDSA" : "Ed25519"
            #expect(reference.keyDescription.family.rawValue == expectedFamily)

            // The public key openssl derives is ours, byte for byte.
            let publicDER = directory.file("pub.der")
            try await Tool.runChecked(["openssl", "pkey", "-in", pkcs8, "-pubout", "-outform", "DER", "-out", publicDER])
            #expect(reference.publicKey.derEncoded == [UInt8](try Data(contentsOf: URL(fileURLWithPath: publicDER))))

            var variants: [(String, [String], String?)] = [
                ("pkcs8.der", ["openssl", "pkey", "-in", pkcs8, "-outform", "DER"], nil),
                ("enc.pem", ["openssl", "pkcs8", "-topk8", "-v2", "aes256", "-in", pkcs8, "-passout", "pass:pa55 word"], "pa55 word"),
                ("enc.der", ["openssl", "pkcs8", "-topk8", "-v2", "aes256", "-in", pkcs8, "-outform", "DER", "-passout", "pass:pa55 word"], "pa55 word"),
            ]
            if spec != "ed25519" {  // Ed25519 has no traditional form.
                variants += [
                    ("traditional.pem", ["openssl", "pkey", "-in", pkcs8, "-traditional"], nil),
                    ("traditional.der", ["openssl", "pkey", "-in", pkcs8, "-traditional", "-outform", "DER"], nil),
                ]
            }
            for (file, command, passphrase) in variants {
                let path = directory.file(file)
                try await Tool.runChecked(command + ["-out", path])
                if file == "traditional.pem" {
                    let label = spec.hasPrefix("rsa") ? "RSA PRIVATE KEY" : "EC PRIVATE KEY"
                    #expect(try directory.read(file).contains("-----BEGIN \(label)-----"))
                }
                let imported = try KeyPair(contentsOfFile: path, passphrase: passphrase)
                #expect(imported == reference, "\(file) imported as a different key")
                if passphrase != nil {
                    expectGnuTLSError(.passphraseRequired, mentioning: ["encrypted", "passphrase"]) {
                        try KeyPair(contentsOfFile: path)
                    }
                    expectGnuTLSError(.wrongPassphrase, mentioning: ["passphrase", "wrong"]) {
                        try KeyPair(contentsOfFile: path, passphrase: "not it")
                    }
                }
            }
        }
    }

    @Test("a wrong passphrase is always .wrongPassphrase, whatever the decrypted bytes look like")
    func wrongPassphraseIsStable() throws {
        // Each export uses a fresh salt and IV, so each wrong-key decryption yields other
        // garbage; none of it may surface as another error.
        let key = try KeyPair.generate(.ed25519)
        for round in 0..<24 {
            let encrypted = try key.derEncoded(passphrase: "right-\(round)")
            expectGnuTLSError(.wrongPassphrase, mentioning: ["passphrase is wrong"]) {
                try KeyPair(derEncoded: encrypted, passphrase: "wrong-\(round)")
            }
        }
    }

    @Test("missing passphrase for an encrypted key")
    func missingPassphrase() throws {
        let key = try KeyPair.generate()
        let pem = try key.pemEncoded(passphrase: "pw")
        expectGnuTLSError(.passphraseRequired, mentioning: ["encrypted", "passphrase is required"]) { try KeyPair(pemEncoded: pem) }
        expectGnuTLSError(.passphraseRequired, mentioning: ["encrypted"]) { try KeyPair(derEncoded: key.derEncoded(passphrase: "pw")) }
    }

    @Test("malformed and truncated PEM")
    func malformedPEM() throws {
        let pem = try KeyPair.generate().pemEncoded()
        let lines = pem.split(separator: "\n")
        // Truncated: the END line is missing.
        expectGnuTLSError(.malformedPEM, mentioning: ["not closed", "truncated"]) {
            try KeyPair(pemEncoded: lines.dropLast().joined(separator: "\n"))
        }
        // Truncated in the middle of the base64.
        expectGnuTLSError(.malformedPEM, mentioning: ["PRIVATE KEY", "not closed"]) {
            try KeyPair(pemEncoded: String(pem.prefix(pem.count / 2)))
        }
        // No PEM at all.
        expectGnuTLSError(.malformedPEM, mentioning: ["no PEM block"]) { try KeyPair(pemEncoded: "hello, world") }
        expectGnuTLSError(.malformedPEM, mentioning: ["no PEM block"]) { try KeyPair(pemEncoded: "") }
        // Body that is not base64.
        expectGnuTLSError(.malformedPEM, mentioning: ["base64"]) {
            try KeyPair(pemEncoded: PEMText.block("PRIVATE KEY", body: "!!!not base64!!!"))
        }
        // Closed with another label.
        expectGnuTLSError(.malformedPEM, mentioning: ["closed by"]) {
            try KeyPair(pemEncoded: ([String(lines[0])] + lines.dropFirst().dropLast().map(String.init) + ["-----END CERTIFICATE-----"]).joined(separator: "\n"))
        }
        // Legacy OpenSSL encryption headers.
        expectGnuTLSError(.malformedPEM, mentioning: ["RFC 1421", "PKCS#8"]) {
            try KeyPair(pemEncoded: PEMText.block("RSA PRIVATE KEY", body: "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA"))
        }
    }

    @Test("malformed and truncated DER", arguments: [KeyAlgorithm.ecdsaP256, .rsa2048, .ed25519])
    func malformedDER(_ algorithm: KeyAlgorithm) throws {
        let key = try KeyPair.generate(algorithm)
        let der = try key.derEncoded()
        expectGnuTLSError(.malformedDER, mentioning: ["not a private key"]) { try KeyPair(derEncoded: Array(der.dropLast(10))) }
        expectGnuTLSError(.malformedDER, mentioning: ["not a private key"]) { try KeyPair(derEncoded: Array(der.prefix(der.count / 2))) }
        expectGnuTLSError(.malformedDER) { try KeyPair(derEncoded: [0x30, 0x03, 0x02, 0x01, 0x00]) }
        expectGnuTLSError(.malformedDER) { try KeyPair(derEncoded: []) }
        expectGnuTLSError(.malformedDER, mentioning: ["not a private key"]) { try KeyPair(derEncoded: der + [0x00, 0x00]) }
        expectGnuTLSError(.malformedDER) { try KeyPair(derEncoded: [UInt8](repeating: 0x30, count: 64)) }
        // A PEM block whose DER is truncated.
        let truncatedPEM = PEMBlock(label: "PRIVATE KEY", derBytes: Array(der.dropLast(7))).pemString
        expectGnuTLSError(.malformedDER, mentioning: ["PKCS#8"]) { try KeyPair(pemEncoded: truncatedPEM) }
        // A truncated encrypted key with its passphrase.
        let encrypted = try key.derEncoded(passphrase: "pw")
        let error = expectGnuTLSError(.malformedDER) { try KeyPair(derEncoded: Array(encrypted.dropLast(16)), passphrase: "pw") }
        #expect(error?.gnutlsName != nil, "a GnuTLS failure keeps GnuTLS's name for the code")
    }

    @Test("keys GnuTLS cannot use say so: curves it lacks, encryption schemes it cannot decrypt")
    func unsupportedKeys() async throws {
        try await withTemporaryDirectory { directory in
            for curve in ["secp256k1", "brainpoolP256r1"] {
                let pkcs8 = try await OpenSSL.generateKey("ec:\(curve)", to: directory.file("\(curve).pem"))
                let traditional = directory.file("\(curve)-sec1.der")
                try await Tool.runChecked(["openssl", "pkey", "-in", pkcs8, "-traditional", "-outform", "DER", "-out", traditional])
                for path in [pkcs8, traditional] {
                    expectGnuTLSError(.unsupportedAlgorithm, mentioning: ["EC key on curve", "does not support", "P-256"]) {
                        try KeyPair(contentsOfFile: path)
                    }
                }
                let publicKey = directory.file("\(curve)-pub.der")
                try await Tool.runChecked(["openssl", "pkey", "-in", pkcs8, "-pubout", "-outform", "DER", "-out", publicKey])
                expectGnuTLSError(.unsupportedAlgorithm, mentioning: ["does not support"]) {
                    try PublicKey(derEncoded: [UInt8](Data(contentsOf: URL(fileURLWithPath: publicKey))))
                }
            }
            // A supported curve with a damaged key stays .malformedDER.
            var damaged = try KeyPair.generate(.ecdsaP256).derEncoded()
            damaged[damaged.count - 40] ^= 0xFF
            damaged[damaged.count - 41] ^= 0xFF
            expectGnuTLSError(.malformedDER) { try KeyPair(derEncoded: damaged) }

            // scrypt-encrypted PKCS#8: GnuTLS has no scrypt.
            let plain = try await OpenSSL.generateKey("ec:P-256", to: directory.file("plain.pem"))
            let scrypt = directory.file("scrypt.pem")
            try await Tool.runChecked(["openssl", "pkcs8", "-topk8", "-scrypt", "-in", plain, "-out", scrypt, "-passout", "pass:pw"])
            expectGnuTLSError(.passphraseRequired, mentioning: ["encrypted"]) { try KeyPair(contentsOfFile: scrypt) }
            expectGnuTLSError(.unsupportedAlgorithm, mentioning: ["scrypt", "-v2 aes256"]) { try KeyPair(contentsOfFile: scrypt, passphrase: "pw") }
        }
    }

    @Test("a certificate or request where a key is expected")
    func unexpectedObject() throws {
        let authority = try LocalAuthority.createRoot(subject: try name("CN=Key Test Root"))
        let certificate = authority.certificate
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a private key", "certificate"]) {
            try KeyPair(pemEncoded: certificate.pemEncoded)
        }
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a private key", "found a certificate"]) {
            try KeyPair(derEncoded: certificate.derEncoded)
        }
        let (_, request) = try makeRequest("CN=req")
        expectGnuTLSError(.unexpectedObject, mentioning: ["certificate request"]) { try KeyPair(pemEncoded: request.pemEncoded) }
        expectGnuTLSError(.unexpectedObject, mentioning: ["certificate request"]) { try KeyPair(derEncoded: request.derEncoded) }
        // And the other way round.
        let keyPEM = try KeyPair.generate().pemEncoded()
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a certificate"]) { try Certificate(pemEncoded: keyPEM) }
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a certificate request"]) { try CertificateRequest(pemEncoded: keyPEM) }
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a certificate request", "found a certificate"]) {
            try CertificateRequest(derEncoded: certificate.derEncoded)
        }
        expectGnuTLSError(.unexpectedObject, mentioning: ["expected a certificate", "request"]) {
            try Certificate(derEncoded: request.derEncoded)
        }
    }

    @Test("a missing key file is .fileAccess naming the path")
    func missingFile() throws {
        expectGnuTLSError(.fileAccess, mentioning: ["/nonexistent/key.pem", "no such file"]) {
            try KeyPair(contentsOfFile: "/nonexistent/key.pem")
        }
    }

    @Test("SPKI DER/PEM, SHA-256 fingerprint and key identifier agree with openssl",
          arguments: [KeyAlgorithm.ecdsaP256, .ecdsaP521, .rsa2048, .ed25519])
    func publicKeyDerivations(_ algorithm: KeyAlgorithm) async throws {
        try await withTemporaryDirectory { directory in
            let key = try KeyPair.generate(algorithm)
            let keyPath = try directory.write(key.pemEncoded(), to: "key.pem")
            let publicDER = directory.file("pub.der")
            try await Tool.runChecked(["openssl", "pkey", "-in", keyPath, "-pubout", "-outform", "DER", "-out", publicDER])
            #expect(key.publicKey.derEncoded == [UInt8](try Data(contentsOf: URL(fileURLWithPath: publicDER))))
            #expect(hex(key.publicKey.sha256Fingerprint) == (try await OpenSSL.sha256Hex(ofFile: publicDER)))

            // PEM form of the SPKI, as openssl writes it.
            let publicPEM = try await Tool.runChecked(["openssl", "pkey", "-in", keyPath, "-pubout"]).standardOutput
            #expect(key.publicKey.pemEncoded == publicPEM)
            #expect(try PublicKey(pemEncoded: publicPEM) == key.publicKey)
            #expect(try PublicKey(derEncoded: key.publicKey.derEncoded).keyDescription == key.keyDescription)

            // openssl's own subject key identifier (RFC 5280 method 1) for the same key.
            let selfSigned = directory.file("self.pem")
            try await Tool.runChecked(["openssl", "req", "-x509", "-new", "-key", keyPath, "-subj", "/CN=ski", "-days", "1", "-out", selfSigned])
            let ski = try await Tool.runChecked(["openssl", "x509", "-in", selfSigned, "-noout", "-ext", "subjectKeyIdentifier"]).standardOutput
            #expect(key.publicKey.keyIdentifier.count == 20)
            #expect(hex(key.publicKey.keyIdentifier) == OpenSSL.hexAfterHeader(ski))
        }
    }

    @Test("a public key rejects malformed input and keys that are not public keys")
    func publicKeyErrors() throws {
        let key = try KeyPair.generate()
        expectGnuTLSError(.malformedDER, mentioning: ["SubjectPublicKeyInfo"]) {
            try PublicKey(derEncoded: Array(key.publicKey.derEncoded.dropLast(3)))
        }
        expectGnuTLSError(.malformedDER) { try PublicKey(derEncoded: key.publicKey.derEncoded + [0x00, 0x00]) }
        expectGnuTLSError(.unexpectedObject, mentioning: ["PUBLIC KEY", "PRIVATE KEY"]) {
            try PublicKey(pemEncoded: key.pemEncoded())
        }
    }

    @Test("key pairs are equal by public key and usable as dictionary keys")
    func equality() throws {
        let key = try KeyPair.generate()
        let again = try KeyPair(pemEncoded: key.pemEncoded())
        #expect(key == again)
        #expect(Set([key, again]).count == 1)
        #expect(key.description.contains("ECDSA P-256"))
    }
}
