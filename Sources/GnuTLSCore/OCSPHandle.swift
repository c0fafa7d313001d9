import CGnuTLS

/// What `gnutls_ocsp_resp_verify_direct` says about an OCSP response and one candidate signer.
package struct CoreOCSPSignatureCheck: Sendable, Hashable {
    /// The `gnutls_ocsp_verify_reason_t` bits (0: the signature verifies).
    package var status: UInt32

    /// The signature verifies with the candidate's public key.
    package var signatureValid: Bool { status == 0 }
    /// The signature uses an algorithm GnuTLS considers insecure (SHA-1, MD5).
    package var insecureAlgorithm: Bool { status & UInt32(GNUTLS_OCSP_VERIFY_INSECURE_ALGORITHM.rawValue) != 0 }
}

/// Owns one `gnutls_ocsp_resp_t`. GnuTLS can parse and verify OCSP responses but not
/// create them; responses are built with swift-asn1 in the `GnuTLS` target and only their
/// signatures are checked here.
package final class OCSPResponseHandle: @unchecked Sendable {
    package let raw: gnutls_ocsp_resp_t

    package init() throws {
        var resp: gnutls_ocsp_resp_t?
        let rc = gnutls_ocsp_resp_init(&resp)
        guard rc >= 0, let resp else { throw GnuTLSError.from(rc, function: "gnutls_ocsp_resp_init") }
        raw = resp
    }

    deinit { gnutls_ocsp_resp_deinit(raw) }

    /// Parses one DER `OCSPResponse`.
    package convenience init(der: [UInt8]) throws {
        try self.init()
        let rc = withDatum(der) { gnutls_ocsp_resp_import(raw, $0) }
        try check(rc, "gnutls_ocsp_resp_import", "bytes are not a DER OCSP response", code: .malformedDER)
    }

    /// Checks the BasicOCSPResponse signature against `signer`'s public key only (no
    /// chain, no purpose: the caller decides whether `signer` may sign for the issuer).
    package func verifySignature(signer: CertificateHandle) throws -> CoreOCSPSignatureCheck {
        var status: UInt32 = 0
        let rc = gnutls_ocsp_resp_verify_direct(raw, signer.raw, &status, 0)
        try check(rc, "gnutls_ocsp_resp_verify_direct", "checking the OCSP response signature", code: .malformedDER)
        return CoreOCSPSignatureCheck(status: status)
    }
}

extension CertificateHandle {
    /// Whether this certificate's issuer name is `issuer`'s subject and its signature
    /// verifies with `issuer`'s key (`gnutls_x509_crt_verify` against that one certificate,
    /// dates not checked, the issuer need not be a CA: used for delegated OCSP responders,
    /// whose issuer is the CA).
    package func isSigned(by issuer: CertificateHandle) -> Bool {
        var status: UInt32 = 0
        var list: [gnutls_x509_crt_t?] = [issuer.raw]
        let flags = GNUTLS_VERIFY_DISABLE_TIME_CHECKS.rawValue | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS.rawValue
        let rc = list.withUnsafeMutableBufferPointer {
            gnutls_x509_crt_verify(raw, $0.baseAddress, 1, flags, &status)
        }
        return rc >= 0 && status == 0
    }
}
