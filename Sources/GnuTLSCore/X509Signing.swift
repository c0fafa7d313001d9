import CGnuTLS

/// A signature made for an X.509 structure (certificate, CRL, OCSP response), and the
/// `AlgorithmIdentifier` the structure must name.
package struct CoreX509Signature: Sendable, Hashable {
    /// The signature algorithm OID (ecdsa-with-SHA256, sha256WithRSAEncryption, id-Ed25519, …).
    package var algorithmOID: String
    /// Whether the `AlgorithmIdentifier` carries NULL parameters (RSA PKCS#1 v1.5, RFC 4055
    /// section 5); ECDSA (RFC 5758) and Ed25519 (RFC 8410) have none.
    package var parametersAreNull: Bool
    /// The signature value: DER `Ecdsa-Sig-Value` for ECDSA, the raw value for RSA and Ed25519.
    package var signature: [UInt8]
}

extension PrivateKeyHandle {
    /// The signature algorithm this key signs X.509 structures with, matching
    /// the curve: RSA-SHA256, ECDSA with SHA-256/384/512 for P-256/384/521, Ed25519.
    private var x509SignAlgorithm: (gnutls_sign_algorithm_t, nullParameters: Bool)? {
        switch kind {
        case .rsa: return (GNUTLS_SIGN_RSA_SHA256, true)
        // GnuTLS reports P-521 private keys as 528 bits (whole octets), so compare by range.
        case .ecdsa(let bits) where bits <= 256: return (GNUTLS_SIGN_ECDSA_SHA256, false)
        case .ecdsa(let bits) where bits <= 384: return (GNUTLS_SIGN_ECDSA_SHA384, false)
        case .ecdsa: return (GNUTLS_SIGN_ECDSA_SHA512, false)
        case .ed25519: return (GNUTLS_SIGN_EDDSA_ED25519, false)
        default: return nil
        }
    }

    /// The `AlgorithmIdentifier` (OID, and whether its parameters are NULL) of the
    /// signatures ``signX509(_:)`` makes with this key. A to-be-signed structure names it
    /// inside the signed bytes, so it is asked for before signing.
    package func x509SignatureAlgorithm() throws -> (oid: String, parametersAreNull: Bool) {
        guard let (algorithm, nullParameters) = x509SignAlgorithm, let oid = gnutls_sign_get_oid(algorithm) else {
            throw GnuTLSError(.unsupportedAlgorithm, "cannot sign X.509 structures with a \(kind) key")
        }
        return (String(cString: oid), nullParameters)
    }

    /// Signs `data` (the DER of a to-be-signed structure) with `gnutls_privkey_sign_data2`
    /// and says which `AlgorithmIdentifier` to put beside the signature.
    package func signX509(_ data: [UInt8]) throws -> CoreX509Signature {
        let (oid, nullParameters) = try x509SignatureAlgorithm()
        guard let (algorithm, _) = x509SignAlgorithm else {
            throw GnuTLSError(.unsupportedAlgorithm, "cannot sign X.509 structures with a \(kind) key")
        }
        var datum = gnutls_datum_t(data: nil, size: 0)
        let rc = withDatum(data) { input in
            withAbstractKey { gnutls_privkey_sign_data2($0, algorithm, 0, input, &datum) }
        }
        defer { if datum.data != nil { cgnutls_free(datum.data) } }
        try checkSigning(rc, "gnutls_privkey_sign_data2", "signing \(data.count) bytes")
        let signature = takeBytes(datum)
        return CoreX509Signature(algorithmOID: oid, parametersAreNull: nullParameters, signature: signature)
    }
}
