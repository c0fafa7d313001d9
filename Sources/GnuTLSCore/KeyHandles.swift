import CGnuTLS

/// Public-key algorithms the core can generate or parse.
package enum CoreKeyKind: Sendable, Hashable {
    case rsa(bits: Int)
    case ecdsa(curveBits: Int)  // 256, 384, 521
    case ed25519
    case other(name: String, bits: Int)
}

/// Owns one private key as the abstract `gnutls_privkey_t` GnuTLS signs with, and what that
/// key is made from: a `gnutls_x509_privkey_t` (a software key, generated or imported), a
/// `pkcs11:` URI with its PIN source (a key on a token), or a ``CoreExternalSigner`` (any
/// other signer, through `gnutls_privkey_import_ext4`).
///
/// Immutable after `init`; GnuTLS software-key operations keep no per-call state in the
/// handle, PKCS#11 keys are locked by GnuTLS (3.5.11 and later), and external signers are
/// `Sendable`, so the object may be shared across threads.
package final class PrivateKeyHandle: @unchecked Sendable {
    private let x509: gnutls_x509_privkey_t?
    private let abstract: gnutls_privkey_t
    /// The signer an external key calls back into (kept alive with the key).
    let externalSigner: CoreExternalSigner?
    /// Where a token key's PIN comes from (kept alive with the key: GnuTLS holds it unretained).
    package let pinSource: CorePINSource?
    /// The `pkcs11:` URI of a token key.
    package let url: String?
    /// The public key of a token or external key, read once (a token would be asked on
    /// every use otherwise).
    private let knownPublicKey: PublicKeyHandle?

    private init(taking x509: gnutls_x509_privkey_t) throws {
        var abstract: gnutls_privkey_t?
        var rc = gnutls_privkey_init(&abstract)
        guard rc >= 0, let abstract else {
            gnutls_x509_privkey_deinit(x509)
            throw GnuTLSError.from(rc, function: "gnutls_privkey_init")
        }
        // Without GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE the abstract key borrows `x509`; this
        // object owns both and releases the borrower first (deinit).
        rc = gnutls_privkey_import_x509(abstract, x509, 0)
        guard rc >= 0 else {
            gnutls_privkey_deinit(abstract)
            gnutls_x509_privkey_deinit(x509)
            throw GnuTLSError.from(rc, function: "gnutls_privkey_import_x509")
        }
        self.x509 = x509
        self.abstract = abstract
        self.externalSigner = nil
        self.pinSource = nil
        self.url = nil
        self.knownPublicKey = nil
    }

    init(external signer: CoreExternalSigner) throws {
        abstract = try Self.importExternal(signer)
        x509 = nil
        externalSigner = signer
        pinSource = nil
        url = nil
        knownPublicKey = signer.publicKey
    }

    /// Takes ownership of `abstract`, a token key imported from `url` with `pin` as its PIN function.
    init(taking abstract: gnutls_privkey_t, url: String, pin: CorePINSource) {
        self.abstract = abstract
        self.x509 = nil
        self.externalSigner = nil
        self.pinSource = pin
        self.url = url
        self.knownPublicKey = try? PublicKeyHandle(privateKey: abstract)
    }

    deinit {
        gnutls_privkey_deinit(abstract)
        if let x509 { gnutls_x509_privkey_deinit(x509) }
    }

    /// A new `gnutls_privkey_t` for the same key, for a caller that takes ownership of it
    /// (`gnutls_certificate_set_key`: "the key will become part of the credentials structure
    /// and must not be deallocated"). A software key is copied
    /// (`GNUTLS_PRIVKEY_IMPORT_COPY`), a token key imported again by URI with the same PIN
    /// source, an external key imported again around the same signer, which this handle
    /// keeps alive: the receiver must keep this handle as long as it uses the copy.
    package func makeOwnedCopy() throws -> gnutls_privkey_t {
        if let externalSigner { return try Self.importExternal(externalSigner) }
        if let url, let pinSource { return try PKCS11.importURL(url, pin: pinSource) }
        var key: gnutls_privkey_t?
        try check(gnutls_privkey_init(&key), "gnutls_privkey_init")
        guard let key, let x509 else { throw GnuTLSError(.library, "gnutls_privkey_init returned no key") }
        let rc = gnutls_privkey_import_x509(key, x509, UInt32(GNUTLS_PRIVKEY_IMPORT_COPY.rawValue))
        guard rc >= 0 else {
            gnutls_privkey_deinit(key)
            throw GnuTLSError.from(rc, function: "gnutls_privkey_import_x509", context: "copying a private key for TLS credentials")
        }
        return key
    }

    /// After a GnuTLS call that signed with this key: rethrows what an external signer threw,
    /// maps token failures (wrong PIN, locked PIN, unsupported mechanism) to typed errors,
    /// and otherwise throws as ``check(_:_:_:code:)`` would.
    package func checkSigning(_ rc: Int32, _ function: StaticString, _ context: @autoclosure () -> String) throws {
        let signerError = externalSigner?.takeError()
        guard rc < 0 else { return }
        if let signerError { throw signerError }
        if url != nil { throw PKCS11.error(rc, function: function, context: context(), pin: pinSource) }
        throw GnuTLSError.from(rc, function: function, context: context())
    }

    /// Signs `input` with `algorithm`: the digest for hash-then-sign schemes
    /// (`gnutls_privkey_sign_hash2`), the message for Ed25519 (`gnutls_privkey_sign_data2`).
    package func sign(_ input: [UInt8], algorithm: CoreSignatureAlgorithm) throws -> [UInt8] {
        if let externalSigner {
            // Straight to the signer: GnuTLS would only hand the same bytes back to it.
            return try externalSigner.signDirectly(algorithm: algorithm, input: input)
        }
        guard algorithm.keyFamily == KeyFamilyName.of(kind) else {
            throw GnuTLSError(.mechanismNotSupported, "a \(kind) key cannot make \(algorithm.rawValue) signatures")
        }
        if algorithm.digest != nil, input.count != algorithm.digestLength {
            throw GnuTLSError(.invalidArgument, "a \(algorithm.rawValue) signature is made over a \(algorithm.digestLength)-byte digest, not \(input.count) bytes")
        }
        var signature = gnutls_datum_t(data: nil, size: 0)
        let rc = withDatum(input) { datum in
            withAbstractKey { key in
                algorithm.digest == nil
                    ? gnutls_privkey_sign_data2(key, algorithm.gnutls, 0, datum, &signature)
                    : gnutls_privkey_sign_hash2(key, algorithm.gnutls, 0, datum, &signature)
            }
        }
        defer { if signature.data != nil { cgnutls_free(signature.data) } }
        try checkSigning(rc, algorithm.digest == nil ? "gnutls_privkey_sign_data2" : "gnutls_privkey_sign_hash2",
                         "signing with a \(kind) key (\(algorithm.rawValue))")
        return takeBytes(signature)
    }

    private static func makeX509() throws -> gnutls_x509_privkey_t {
        var key: gnutls_x509_privkey_t?
        let rc = gnutls_x509_privkey_init(&key)
        guard rc >= 0, let key else { throw GnuTLSError.from(rc, function: "gnutls_x509_privkey_init") }
        return key
    }

    /// Generates a new key.
    package static func generate(_ kind: CoreKeyKind) throws -> PrivateKeyHandle {
        let key = try makeX509()
        let rc: Int32
        switch kind {
        case .rsa(let bits):
            rc = gnutls_x509_privkey_generate2(key, GNUTLS_PK_RSA, UInt32(bits), 0, nil, 0)
        case .ecdsa(let curveBits):
            let curve: gnutls_ecc_curve_t
            switch curveBits {
            case 256: curve = GNUTLS_ECC_CURVE_SECP256R1
            case 384: curve = GNUTLS_ECC_CURVE_SECP384R1
            case 521: curve = GNUTLS_ECC_CURVE_SECP521R1
            default:
                gnutls_x509_privkey_deinit(key)
                throw GnuTLSError(.unsupportedAlgorithm, "ECDSA curve of \(curveBits) bits is not supported: use P-256, P-384 or P-521")
            }
            rc = gnutls_x509_privkey_generate2(key, GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(curve), 0, nil, 0)
        case .ed25519:
            rc = gnutls_x509_privkey_generate2(
                key, GNUTLS_PK_EDDSA_ED25519, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_ED25519), 0, nil, 0)
        case .other(let name, _):
            gnutls_x509_privkey_deinit(key)
            throw GnuTLSError(.unsupportedAlgorithm, "cannot generate a key of type \(name)")
        }
        guard rc >= 0 else {
            gnutls_x509_privkey_deinit(key)
            throw GnuTLSError.from(rc, function: "gnutls_x509_privkey_generate2", context: "generating a \(kind) key")
        }
        return try PrivateKeyHandle(taking: key)
    }

    /// Whether `der` is an encrypted PKCS#8 structure (`EncryptedPrivateKeyInfo`).
    package static func isEncryptedPKCS8(der: [UInt8]) -> Bool {
        withDatum(der) { datum in
            var schema: UInt32 = 0
            let rc = gnutls_pkcs8_info(datum, GNUTLS_X509_FMT_DER, &schema, nil, nil, nil, nil, nil)
            return rc >= 0 && schema != 0
        }
    }

    /// Imports a DER private key: PKCS#1 (RSA), SEC1 (EC), PKCS#8, or encrypted PKCS#8.
    package static func importDER(_ der: [UInt8], passphrase: String?) throws -> PrivateKeyHandle {
        let encrypted = isEncryptedPKCS8(der: der)
        if encrypted && passphrase == nil {
            throw GnuTLSError(.passphraseRequired, "private key is encrypted: a passphrase is required")
        }
        let key = try makeX509()
        let rc = withDatum(der) { datum in
            if encrypted, let passphrase {
                return gnutls_x509_privkey_import2(key, datum, GNUTLS_X509_FMT_DER, passphrase, 0)
            }
            return gnutls_x509_privkey_import2(key, datum, GNUTLS_X509_FMT_DER, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue))
        }
        guard rc >= 0 else {
            gnutls_x509_privkey_deinit(key)
            if encrypted && (rc == GNUTLS_E_DECRYPTION_FAILED || rc == GNUTLS_E_ASN1_DER_ERROR) {
                throw GnuTLSError(
                    .wrongPassphrase, "private key could not be decrypted: the passphrase is wrong",
                    function: "gnutls_x509_privkey_import2", gnutlsCode: rc, gnutlsName: GnuTLSError.name(of: rc))
            }
            throw GnuTLSError.from(rc, function: "gnutls_x509_privkey_import2",
                context: "bytes are not a private key in PKCS#1, SEC1 or PKCS#8 DER", code: .malformedDER)
        }
        // Validate the key material (an RSA key whose numbers do not agree, an EC point off
        // the curve) before anyone signs with it.
        let fixRC = gnutls_x509_privkey_verify_params(key)
        guard fixRC >= 0 else {
            gnutls_x509_privkey_deinit(key)
            throw GnuTLSError.from(fixRC, function: "gnutls_x509_privkey_verify_params",
                context: "private key parameters are inconsistent", code: .malformedDER)
        }
        return try PrivateKeyHandle(taking: key)
    }

    /// PKCS#8 DER; encrypted with PBES2/AES-256 when `passphrase` is given.
    package func exportPKCS8(passphrase: String?) throws -> [UInt8] {
        guard let x509 else {
            throw GnuTLSError(.invalidArgument, "a key on a token or behind a signer cannot be exported: only its public key can")
        }
        return try exportDatum("gnutls_x509_privkey_export2_pkcs8", "exporting a private key as PKCS#8") { out in
            if let passphrase {
                return gnutls_x509_privkey_export2_pkcs8(
                    x509, GNUTLS_X509_FMT_DER, passphrase, UInt32(GNUTLS_PKCS_PBES2_AES_256.rawValue), out)
            }
            return gnutls_x509_privkey_export2_pkcs8(x509, GNUTLS_X509_FMT_DER, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue), out)
        }
    }

    /// The algorithm and size of this key.
    package var kind: CoreKeyKind {
        if let knownPublicKey { return knownPublicKey.kind }
        var bits: UInt32 = 0
        let pk = gnutls_privkey_get_pk_algorithm(abstract, &bits)
        return CoreKeyKind.from(pk: pk, bits: Int(bits))
    }

    /// The public half.
    package func publicKey() throws -> PublicKeyHandle {
        if let knownPublicKey { return knownPublicKey }
        return try PublicKeyHandle(privateKey: abstract)
    }

    /// Runs `body` with the abstract key GnuTLS signs with.
    package func withAbstractKey<R>(_ body: (gnutls_privkey_t) throws -> R) rethrows -> R {
        try body(abstract)
    }

    /// The digest this key signs certificates with: SHA-256 for RSA and P-256, SHA-384 for
    /// P-384, SHA-512 for P-521, none (intrinsic) for Ed25519.
    package var signingDigest: gnutls_digest_algorithm_t {
        switch kind {
        case .ecdsa(384): return GNUTLS_DIG_SHA384
        case .ecdsa(521): return GNUTLS_DIG_SHA512
        case .ed25519: return GNUTLS_DIG_UNKNOWN
        default: return GNUTLS_DIG_SHA256
        }
    }
}

/// The family names ``CoreSignatureAlgorithm/keyFamily`` uses.
enum KeyFamilyName {
    static func of(_ kind: CoreKeyKind) -> String {
        switch kind {
        case .rsa: return "RSA"
        case .ecdsa: return "ECDSA"
        case .ed25519: return "Ed25519"
        case .other(let name, _): return name
        }
    }
}

extension CoreKeyKind {
    /// The schemes a key of this kind can sign with: for RSA, PSS and PKCS#1 v1.5 with
    /// SHA-256/384/512; for ECDSA, the curve's own digest first, then the others (TLS 1.2
    /// allows any); for Ed25519, Ed25519.
    package var signatureAlgorithms: [CoreSignatureAlgorithm] {
        switch self {
        case .rsa: return [.rsaPSSSHA256, .rsaPSSSHA384, .rsaPSSSHA512, .rsaPKCS1SHA256, .rsaPKCS1SHA384, .rsaPKCS1SHA512]
        case .ecdsa(384): return [.ecdsaSHA384, .ecdsaSHA256, .ecdsaSHA512]
        case .ecdsa(521): return [.ecdsaSHA512, .ecdsaSHA256, .ecdsaSHA384]
        case .ecdsa: return [.ecdsaSHA256, .ecdsaSHA384, .ecdsaSHA512]
        case .ed25519: return [.ed25519]
        case .other: return []
        }
    }

    static func from(pk: Int32, bits: Int) -> CoreKeyKind {
        switch gnutls_pk_algorithm_t(UInt32(bitPattern: pk)) {
        case GNUTLS_PK_RSA: return .rsa(bits: bits)
        // GnuTLS reports a P-521 private key as 528 bits (66 bytes): name the curve.
        case GNUTLS_PK_ECDSA: return .ecdsa(curveBits: bits > 384 ? 521 : bits)
        case GNUTLS_PK_EDDSA_ED25519: return .ed25519
        default:
            let name = gnutls_pk_algorithm_get_name(gnutls_pk_algorithm_t(UInt32(bitPattern: pk)))
                .map { String(cString: $0) } ?? "unknown"
            return .other(name: name, bits: bits)
        }
    }
}

/// Owns one `gnutls_pubkey_t`.
package final class PublicKeyHandle: @unchecked Sendable {
    package let raw: gnutls_pubkey_t

    init() throws {
        var key: gnutls_pubkey_t?
        let rc = gnutls_pubkey_init(&key)
        guard rc >= 0, let key else { throw GnuTLSError.from(rc, function: "gnutls_pubkey_init") }
        raw = key
    }

    deinit { gnutls_pubkey_deinit(raw) }

    convenience init(privateKey: gnutls_privkey_t) throws {
        try self.init()
        try check(gnutls_pubkey_import_privkey(raw, privateKey, 0, 0), "gnutls_pubkey_import_privkey")
    }

    /// Imports a DER `SubjectPublicKeyInfo`.
    package convenience init(spki: [UInt8]) throws {
        try self.init()
        let rc = withDatum(spki) { gnutls_pubkey_import(raw, $0, GNUTLS_X509_FMT_DER) }
        try check(rc, "gnutls_pubkey_import",
                  isUnsupportedKey(rc) ? "public key uses an algorithm or curve that GnuTLS does not support" : "bytes are not a DER SubjectPublicKeyInfo",
                  code: isUnsupportedKey(rc) ? .unsupportedAlgorithm : .malformedDER)
    }

    /// The DER `SubjectPublicKeyInfo`.
    package func spki() throws -> [UInt8] {
        try exportDatum("gnutls_pubkey_export2") { gnutls_pubkey_export2(raw, GNUTLS_X509_FMT_DER, $0) }
    }

    /// Algorithm and size, with the curve for EC keys.
    package var kind: CoreKeyKind {
        var bits: UInt32 = 0
        let pk = gnutls_pubkey_get_pk_algorithm(raw, &bits)
        if gnutls_pk_algorithm_t(UInt32(bitPattern: pk)) == GNUTLS_PK_ECDSA {
            var curve = GNUTLS_ECC_CURVE_INVALID
            var x = gnutls_datum_t(data: nil, size: 0)
            var y = gnutls_datum_t(data: nil, size: 0)
            if gnutls_pubkey_export_ecc_raw2(raw, &curve, &x, &y, 0) >= 0 {
                cgnutls_free(x.data)
                cgnutls_free(y.data)
                switch curve {
                case GNUTLS_ECC_CURVE_SECP256R1: return .ecdsa(curveBits: 256)
                case GNUTLS_ECC_CURVE_SECP384R1: return .ecdsa(curveBits: 384)
                case GNUTLS_ECC_CURVE_SECP521R1: return .ecdsa(curveBits: 521)
                default: return .other(name: "ECDSA-\(String(cString: gnutls_ecc_curve_get_name(curve)))", bits: Int(bits))
                }
            }
        }
        return CoreKeyKind.from(pk: pk, bits: Int(bits))
    }
}
