import CGnuTLS

/// One revoked certificate as GnuTLS lists it: serial and revocation time.
/// (GnuTLS does not expose entry extensions, so reason codes are read elsewhere.)
package struct CoreCRLEntry: Sendable, Hashable {
    package var serial: [UInt8]
    package var revocationTime: Int
}

/// The fields of a parsed CRL, read through GnuTLS, without C types.
package struct CoreCRLFields: Sendable {
    package var version: Int
    package var issuerDN: [UInt8]
    package var thisUpdate: Int
    /// `nil` when the CRL has no nextUpdate.
    package var nextUpdate: Int?
    /// The CRL number extension's integer bytes (big-endian), when present.
    package var number: [UInt8]?
    /// The key identifier of the authority key identifier extension, when present.
    package var authorityKeyIdentifier: [UInt8]?
    package var signatureAlgorithmName: String
    package var signatureAlgorithmOID: String
    package var extensions: [CoreExtension]
    package var entries: [CoreCRLEntry]
}

/// What `gnutls_x509_crl_verify` says about a CRL and one candidate issuer.
package struct CoreCRLVerification: Sendable, Hashable {
    /// The `gnutls_certificate_status_t` bits.
    package var status: UInt32

    /// The CRL's issuer name matches the certificate's subject and the signature verifies
    /// with its key (no SIGNER_NOT_FOUND, no SIGNATURE_FAILURE).
    package var signatureValid: Bool {
        status & (UInt32(GNUTLS_CERT_SIGNER_NOT_FOUND.rawValue) | UInt32(GNUTLS_CERT_SIGNATURE_FAILURE.rawValue)) == 0
    }
    /// The issuer is not a CA, or its key usage does not allow CRL signing.
    package var signerNotAllowed: Bool {
        status & (UInt32(GNUTLS_CERT_SIGNER_NOT_CA.rawValue) | UInt32(GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE.rawValue)) != 0
    }
    /// The CRL is signed with an algorithm GnuTLS considers insecure (SHA-1, MD5).
    package var insecureAlgorithm: Bool { status & UInt32(GNUTLS_CERT_INSECURE_ALGORITHM.rawValue) != 0 }
    /// nextUpdate is in the past.
    package var superseded: Bool { status & UInt32(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED.rawValue) != 0 }
    /// thisUpdate is in the future.
    package var issuedInFuture: Bool { status & UInt32(GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE.rawValue) != 0 }
}

/// Owns one `gnutls_x509_crl_t`.
package final class CRLHandle: @unchecked Sendable {
    package let raw: gnutls_x509_crl_t

    package init() throws {
        var crl: gnutls_x509_crl_t?
        let rc = gnutls_x509_crl_init(&crl)
        guard rc >= 0, let crl else { throw GnuTLSError.from(rc, function: "gnutls_x509_crl_init") }
        raw = crl
    }

    deinit { gnutls_x509_crl_deinit(raw) }

    /// Parses one DER CRL (`CertificateList`).
    package convenience init(der: [UInt8]) throws {
        try self.init()
        let rc = withDatum(der) { gnutls_x509_crl_import(raw, $0, GNUTLS_X509_FMT_DER) }
        try check(rc, "gnutls_x509_crl_import", "bytes are not a DER X.509 CRL", code: .malformedDER)
    }

    package func der() throws -> [UInt8] {
        try exportDatum("gnutls_x509_crl_export2") { gnutls_x509_crl_export2(raw, GNUTLS_X509_FMT_DER, $0) }
    }

    package func fields() throws -> CoreCRLFields {
        let version = gnutls_x509_crl_get_version(raw)
        try check(version, "gnutls_x509_crl_get_version", "CRL has no readable version", code: .malformedDER)
        let issuer = try exportDatum("gnutls_x509_crl_get_raw_issuer_dn", "CRL issuer cannot be read") {
            gnutls_x509_crl_get_raw_issuer_dn(raw, $0)
        }
        let thisUpdate = gnutls_x509_crl_get_this_update(raw)
        guard thisUpdate != -1 else { throw GnuTLSError(.malformedDER, "CRL thisUpdate cannot be read") }
        let nextUpdate = gnutls_x509_crl_get_next_update(raw)
        var critical: UInt32 = 0
        let number = try sizedBuffer("gnutls_x509_crl_get_number", initial: 32) {
            gnutls_x509_crl_get_number(raw, $0, $1, &critical)
        }
        let aki = try sizedBuffer("gnutls_x509_crl_get_authority_key_id", initial: 64) {
            gnutls_x509_crl_get_authority_key_id(raw, $0, $1, &critical)
        }
        let sign = gnutls_x509_crl_get_signature_algorithm(raw)
        let oid = try signatureOID(sign: sign) {
            try sizedBuffer("gnutls_x509_crl_get_signature_oid") { gnutls_x509_crl_get_signature_oid(raw, $0.assumingMemoryBound(to: CChar.self), $1) }
        }
        let extensions = try readExtensions(
            info: { index, oid, size, critical in gnutls_x509_crl_get_extension_info(raw, index, oid, size, critical) },
            data: { index, out in gnutls_x509_crl_get_extension_data2(raw, index, out) })
        return CoreCRLFields(
            version: Int(version), issuerDN: issuer, thisUpdate: thisUpdate,
            nextUpdate: nextUpdate == -1 ? nil : nextUpdate, number: number, authorityKeyIdentifier: aki,
            signatureAlgorithmName: signatureName(sign: sign, oid: oid), signatureAlgorithmOID: oid,
            extensions: extensions, entries: try entries())
    }

    /// The revoked serials and times, in CRL order.
    private func entries() throws -> [CoreCRLEntry] {
        var iterator: gnutls_x509_crl_iter_t?
        defer { if iterator != nil { gnutls_x509_crl_iter_deinit(iterator) } }
        var entries: [CoreCRLEntry] = []
        var buffer = [UInt8](repeating: 0, count: 128)
        while true {
            var size = buffer.count
            var time: time_t = 0
            let rc = buffer.withUnsafeMutableBufferPointer {
                gnutls_x509_crl_iter_crt_serial(raw, &iterator, $0.baseAddress, &size, &time)
            }
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_x509_crl_iter_crt_serial", "CRL entry \(entries.count) cannot be read", code: .malformedDER)
            entries.append(CoreCRLEntry(serial: Array(buffer.prefix(size)), revocationTime: time))
        }
        return entries
    }

    /// Checks the CRL against one candidate issuer with `gnutls_x509_crl_verify`.
    package func verify(issuer: CertificateHandle) throws -> CoreCRLVerification {
        var status: UInt32 = 0
        var issuers: [gnutls_x509_crt_t?] = [issuer.raw]
        let rc = issuers.withUnsafeMutableBufferPointer {
            gnutls_x509_crl_verify(raw, $0.baseAddress, 1, 0, &status)
        }
        try check(rc, "gnutls_x509_crl_verify", "checking the CRL signature")
        return CoreCRLVerification(status: status)
    }
}

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
        let signature = try withDatum(data) { input in
            try exportDatum("gnutls_privkey_sign_data2", "signing \(data.count) bytes") { out in
                withAbstractKey { gnutls_privkey_sign_data2($0, algorithm, 0, input, out) }
            }
        }
        return CoreX509Signature(algorithmOID: oid, parametersAreNull: nullParameters, signature: signature)
    }
}
