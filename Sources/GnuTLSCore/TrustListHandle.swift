import CGnuTLS

/// Verification profiles (GnuTLS's `gnutls_certificate_verification_profiles_t`).
package enum CoreProfile: Sendable {
    case low, medium, high

    var gnutls: gnutls_certificate_verification_profiles_t {
        switch self {
        case .low: return GNUTLS_PROFILE_LOW
        case .medium: return GNUTLS_PROFILE_MEDIUM
        case .high: return GNUTLS_PROFILE_HIGH
        }
    }
}

/// Signature checks on raw bytes, for the Swift path validator.
package enum CoreSignature {
    /// The result of checking one signature.
    package enum Outcome: Sendable, Equatable {
        case valid
        case invalid
        /// The algorithm OID is unknown to GnuTLS, or does not fit the key.
        case unsupported(String)
    }

    /// Verifies `signature` over `data` with the key in `spki`, for the algorithm `oid`.
    /// SHA-1 is accepted here; the caller applies the algorithm policy.
    package static func verify(spki: [UInt8], algorithmOID oid: String, data: [UInt8], signature: [UInt8]) -> Outcome {
        let sign = gnutls_oid_to_sign(oid)
        guard sign != GNUTLS_SIGN_UNKNOWN else { return .unsupported("signature algorithm \(oid) is not supported") }
        guard let key = try? PublicKeyHandle(spki: spki) else { return .unsupported("issuer public key cannot be parsed") }
        let flags = UInt32(GNUTLS_VERIFY_ALLOW_SIGN_WITH_SHA1.rawValue)
        let rc = withDatum(data) { dataDatum in
            withDatum(signature) { signatureDatum in
                gnutls_pubkey_verify_data2(key.raw, sign, flags, dataDatum, signatureDatum)
            }
        }
        if rc >= 0 { return .valid }
        if rc == GNUTLS_E_PK_SIG_VERIFY_FAILED { return .invalid }
        if rc == GNUTLS_E_CONSTRAINT_ERROR || rc == GNUTLS_E_INCOMPATIBLE_SIG_WITH_KEY || rc == GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM {
            return .unsupported("signature algorithm \(oid) does not fit the issuer key (\(GnuTLSError.name(of: rc)))")
        }
        return .invalid
    }

    /// GnuTLS's name for a signature algorithm OID (`ECDSA-SHA256`, `RSA-SHA256`, …), or the
    /// OID itself when GnuTLS does not know it.
    package static func name(algorithmOID oid: String) -> String {
        signatureName(sign: Int32(bitPattern: gnutls_oid_to_sign(oid).rawValue), oid: oid)
    }

    /// Whether GnuTLS considers the signature algorithm secure for certificates.
    package static func isSecure(algorithmOID oid: String) -> Bool {
        let sign = gnutls_oid_to_sign(oid)
        return sign != GNUTLS_SIGN_UNKNOWN && gnutls_sign_is_secure2(sign, UInt32(GNUTLS_SIGN_FLAG_SECURE_FOR_CERTS)) != 0
    }
}

/// Owns one `gnutls_x509_trust_list_t`, filled once and then only read: GnuTLS's own
/// verification (used as a second opinion on every path the Swift validator accepts, and
/// by TLS credentials).
package final class TrustListHandle: @unchecked Sendable {
    package let raw: gnutls_x509_trust_list_t

    package init() throws {
        var list: gnutls_x509_trust_list_t?
        let rc = gnutls_x509_trust_list_init(&list, 0)
        guard rc >= 0, let list else { throw GnuTLSError.from(rc, function: "gnutls_x509_trust_list_init") }
        raw = list
    }

    /// False once the list was handed to GnuTLS credentials, which then free it.
    private var owned = true

    deinit {
        // `all = 1`: the list owns the certificates and CRLs added to it.
        if owned { gnutls_x509_trust_list_deinit(raw, 1) }
    }

    /// Hands the list over to a new owner (GnuTLS credentials); this object no longer frees it.
    package func release() -> gnutls_x509_trust_list_t {
        owned = false
        return raw
    }

    /// Adds trust anchors. Ownership of each parsed certificate passes to the list
    /// (gnutls_x509_trust_list_add_cas: "the list takes ownership of the certificates").
    package func addAnchors(_ ders: [[UInt8]]) throws {
        for der in ders {
            var crt: gnutls_x509_crt_t?
            try check(gnutls_x509_crt_init(&crt), "gnutls_x509_crt_init")
            let rc = withDatum(der) { gnutls_x509_crt_import(crt, $0, GNUTLS_X509_FMT_DER) }
            guard rc >= 0 else {
                gnutls_x509_crt_deinit(crt)
                throw GnuTLSError.from(rc, function: "gnutls_x509_crt_import", context: "trust anchor is not a DER certificate", code: .malformedDER)
            }
            var list = [crt]
            let added = gnutls_x509_trust_list_add_cas(raw, &list, 1, 0)
            if added != 1 { gnutls_x509_crt_deinit(crt) }
            try check(added, "gnutls_x509_trust_list_add_cas")
        }
    }

    /// Adds the system's trust (p11-kit / ca-certificates on Debian). Returns how many were added.
    @discardableResult
    package func addSystemTrust() throws -> Int {
        let rc = gnutls_x509_trust_list_add_system_trust(raw, 0, 0)
        try check(rc, "gnutls_x509_trust_list_add_system_trust", "loading the system's trusted CAs")
        return Int(rc)
    }

    /// The DER of every trust anchor in the list.
    package func anchors() throws -> [[UInt8]] {
        var iterator: gnutls_x509_trust_list_iter_t?
        defer { if iterator != nil { gnutls_x509_trust_list_iter_deinit(iterator) } }
        var result: [[UInt8]] = []
        while true {
            var crt: gnutls_x509_crt_t?
            let rc = gnutls_x509_trust_list_iter_get_ca(raw, &iterator, &crt)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_x509_trust_list_iter_get_ca")
            // The returned certificate is a copy owned by the caller.
            defer { gnutls_x509_crt_deinit(crt) }
            result.append(try exportDatum("gnutls_x509_crt_export2") { gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, $0) })
        }
        return result
    }

    /// Whether `status` says only that a signer's constraints (path length, name
    /// constraints) failed: checks the Swift validator performs itself per RFC 5280.
    package static func isOnlyConstraintFailure(_ status: UInt32) -> Bool {
        let constraintBits = GNUTLS_CERT_INVALID.rawValue | GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE.rawValue
        return status != 0 && status & ~constraintBits == 0
    }

    /// GnuTLS's verdict on an ordered chain (leaf first, without the anchor), with time
    /// checks disabled (the caller checks times against its own clock). Returns the status
    /// bits and GnuTLS's text for them; 0 means trusted.
    /// `allowSHA1` lets SHA-1 certificate signatures pass (`GNUTLS_VERIFY_ALLOW_SIGN_WITH_SHA1`),
    /// which GnuTLS 3.7 refuses at every profile otherwise.
    package func verify(chain: [[UInt8]], purposeOID: String?, profile: CoreProfile, allowSHA1: Bool = false) throws -> (status: UInt32, text: String) {
        var handles: [CertificateHandle] = []
        for der in chain { handles.append(try CertificateHandle(der: der)) }
        var raws: [gnutls_x509_crt_t?] = handles.map { $0.raw }
        var status: UInt32 = 0
        let flags = UInt32(GNUTLS_VERIFY_DISABLE_TIME_CHECKS.rawValue | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS.rawValue
                           | GNUTLS_VERIFY_DO_NOT_ALLOW_UNSORTED_CHAIN.rawValue | GNUTLS_VERIFY_DISABLE_CRL_CHECKS.rawValue)
            | cgnutls_profile_to_vflags(profile.gnutls)
            | (allowSHA1 ? UInt32(GNUTLS_VERIFY_ALLOW_SIGN_WITH_SHA1.rawValue) : 0)
        let rc: Int32
        if let purposeOID {
            rc = purposeOID.withCString { oid in
                var data = gnutls_typed_vdata_st(type: GNUTLS_DT_KEY_PURPOSE_OID, data: UnsafeMutablePointer(mutating: UnsafeRawPointer(oid).assumingMemoryBound(to: UInt8.self)), size: 0)
                return gnutls_x509_trust_list_verify_crt2(raw, &raws, UInt32(raws.count), &data, 1, flags, &status, nil)
            }
        } else {
            rc = gnutls_x509_trust_list_verify_crt2(raw, &raws, UInt32(raws.count), nil, 0, flags, &status, nil)
        }
        withExtendedLifetime(handles) {}
        try check(rc, "gnutls_x509_trust_list_verify_crt2")
        var text = gnutls_datum_t(data: nil, size: 0)
        if status != 0, gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0 {
            defer { cgnutls_free(text.data) }
            return (status, String(decoding: takeBytes(text), as: UTF8.self))
        }
        return (status, "")
    }
}

extension TrustListHandle {
    /// Adds CRLs, which the list verifies against its anchors (GNUTLS_TL_VERIFY_CRL) and then
    /// owns.
    package func addCRLs(_ ders: [[UInt8]]) throws {
        for der in ders {
            var crl: gnutls_x509_crl_t?
            try check(gnutls_x509_crl_init(&crl), "gnutls_x509_crl_init")
            let rc = withDatum(der) { gnutls_x509_crl_import(crl, $0, GNUTLS_X509_FMT_DER) }
            guard rc >= 0 else {
                gnutls_x509_crl_deinit(crl)
                throw GnuTLSError.from(rc, function: "gnutls_x509_crl_import", context: "CRL is not DER", code: .malformedDER)
            }
            var list = [crl]
            // With GNUTLS_TL_VERIFY_CRL the list adds only the CRLs that verify against its
            // anchors and returns how many it added; those it owns. A CRL it rejects is
            // freed by GnuTLS only under GNUTLS_TL_NO_DUPLICATES (lib/x509/verify-high.c,
            // gnutls_x509_trust_list_add_crls), so without that flag it is still ours.
            let added = gnutls_x509_trust_list_add_crls(raw, &list, 1, UInt32(GNUTLS_TL_VERIFY_CRL), 0)
            if added != 1 { gnutls_x509_crl_deinit(crl) }
        }
    }
}
