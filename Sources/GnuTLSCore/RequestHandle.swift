import CGnuTLS

/// The fields of a parsed certificate request, read through GnuTLS.
package struct CoreRequestFields: Sendable {
    package var version: Int
    package var spki: [UInt8]
    package var publicKeyKind: CoreKeyKind
    package var signatureAlgorithmName: String
    package var signatureAlgorithmOID: String
    package var extensions: [CoreExtension]
    package var challengePassword: String?
    package var signatureValid: Bool
}

/// Owns one `gnutls_x509_crq_t` (PKCS#10 request).
package final class RequestHandle: @unchecked Sendable {
    package let raw: gnutls_x509_crq_t

    package init() throws {
        var crq: gnutls_x509_crq_t?
        let rc = gnutls_x509_crq_init(&crq)
        guard rc >= 0, let crq else { throw GnuTLSError.from(rc, function: "gnutls_x509_crq_init") }
        raw = crq
    }

    deinit { gnutls_x509_crq_deinit(raw) }

    package convenience init(der: [UInt8]) throws {
        try self.init()
        let rc = withDatum(der) { gnutls_x509_crq_import(raw, $0, GNUTLS_X509_FMT_DER) }
        try check(rc, "gnutls_x509_crq_import", "bytes are not a DER PKCS#10 certificate request", code: .malformedDER)
    }

    package func der() throws -> [UInt8] {
        try exportDatum("gnutls_x509_crq_export2") { gnutls_x509_crq_export2(raw, GNUTLS_X509_FMT_DER, $0) }
    }

    package func fields() throws -> CoreRequestFields {
        let version = gnutls_x509_crq_get_version(raw)
        try check(version, "gnutls_x509_crq_get_version", "certificate request has no readable version", code: .malformedDER)
        let key = try PublicKeyHandle(request: raw)
        let sign = gnutls_x509_crq_get_signature_algorithm(raw)
        let oid = try signatureOID(sign: sign) {
            try sizedBuffer("gnutls_x509_crq_get_signature_oid") { gnutls_x509_crq_get_signature_oid(raw, $0, $1) }
        }
        let extensions = try readExtensions(
            info: { index, oid, size, critical in gnutls_x509_crq_get_extension_info(raw, index, oid, size, critical) },
            data: { index, out in gnutls_x509_crq_get_extension_data2(raw, index, out) })
        let password = try sizedBuffer("gnutls_x509_crq_get_challenge_password") {
            gnutls_x509_crq_get_challenge_password(raw, $0.assumingMemoryBound(to: CChar.self), $1)
        }.map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return CoreRequestFields(
            version: Int(version), spki: try key.spki(), publicKeyKind: key.kind,
            signatureAlgorithmName: signatureName(sign: sign, oid: oid), signatureAlgorithmOID: oid,
            extensions: extensions, challengePassword: password,
            signatureValid: gnutls_x509_crq_verify(raw, 0) >= 0)
    }
}
