import CGnuTLS

/// Public-key algorithms the core can generate or parse.
package enum CoreKeyKind: Sendable, Hashable {
    case rsa(bits: Int)
    case ecdsa(curveBits: Int)  // 256, 384, 521
    case ed25519
    case other(name: String, bits: Int)
}

/// Owns one private key: the `gnutls_x509_privkey_t` it was generated or imported as, and
/// the abstract `gnutls_privkey_t` view GnuTLS signs with.
///
/// Immutable after `init`; GnuTLS software-key operations keep no per-call state in the
/// handle, so the object may be shared across threads.
package final class PrivateKeyHandle: @unchecked Sendable {
    private let x509: gnutls_x509_privkey_t
    private let abstract: gnutls_privkey_t

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
    }

    deinit {
        gnutls_privkey_deinit(abstract)
        gnutls_x509_privkey_deinit(x509)
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
        try exportDatum("gnutls_x509_privkey_export2_pkcs8", "exporting a private key as PKCS#8") { out in
            if let passphrase {
                return gnutls_x509_privkey_export2_pkcs8(
                    x509, GNUTLS_X509_FMT_DER, passphrase, UInt32(GNUTLS_PKCS_PBES2_AES_256.rawValue), out)
            }
            return gnutls_x509_privkey_export2_pkcs8(x509, GNUTLS_X509_FMT_DER, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue), out)
        }
    }

    /// The algorithm and size of this key.
    package var kind: CoreKeyKind {
        var bits: UInt32 = 0
        let pk = gnutls_privkey_get_pk_algorithm(abstract, &bits)
        return CoreKeyKind.from(pk: pk, bits: Int(bits))
    }

    /// The public half.
    package func publicKey() throws -> PublicKeyHandle {
        try PublicKeyHandle(privateKey: abstract)
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

extension CoreKeyKind {
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
