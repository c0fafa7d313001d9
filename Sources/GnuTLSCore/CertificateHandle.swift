import CGnuTLS

/// The fields of a parsed certificate, read through GnuTLS, without C types.
package struct CoreCertificateFields: Sendable {
    package var version: Int
    package var serial: [UInt8]
    package var issuerDN: [UInt8]
    package var subjectDN: [UInt8]
    package var notBefore: Int
    package var notAfter: Int
    package var spki: [UInt8]
    package var publicKeyKind: CoreKeyKind
    package var signatureAlgorithmName: String
    package var signatureAlgorithmOID: String
    package var extensions: [CoreExtension]
}

/// Owns one `gnutls_x509_crt_t`.
package final class CertificateHandle: @unchecked Sendable {
    package let raw: gnutls_x509_crt_t

    package init() throws {
        var crt: gnutls_x509_crt_t?
        let rc = gnutls_x509_crt_init(&crt)
        guard rc >= 0, let crt else { throw GnuTLSError.from(rc, function: "gnutls_x509_crt_init") }
        raw = crt
    }

    deinit { gnutls_x509_crt_deinit(raw) }

    /// Parses one DER certificate.
    package convenience init(der: [UInt8]) throws {
        try self.init()
        let rc = withDatum(der) { gnutls_x509_crt_import(raw, $0, GNUTLS_X509_FMT_DER) }
        try check(rc, "gnutls_x509_crt_import", "bytes are not a DER X.509 certificate", code: .malformedDER)
    }

    package func der() throws -> [UInt8] {
        try exportDatum("gnutls_x509_crt_export2") { gnutls_x509_crt_export2(raw, GNUTLS_X509_FMT_DER, $0) }
    }

    package func fields() throws -> CoreCertificateFields {
        let version = gnutls_x509_crt_get_version(raw)
        try check(version, "gnutls_x509_crt_get_version", "certificate has no readable version", code: .malformedDER)
        let serial = try sizedBuffer("gnutls_x509_crt_get_serial", initial: 32) { gnutls_x509_crt_get_serial(raw, $0, $1) } ?? []
        let subject = try exportDatum("gnutls_x509_crt_get_raw_dn") { gnutls_x509_crt_get_raw_dn(raw, $0) }
        let issuer = try exportDatum("gnutls_x509_crt_get_raw_issuer_dn") { gnutls_x509_crt_get_raw_issuer_dn(raw, $0) }
        let notBefore = gnutls_x509_crt_get_activation_time(raw)
        let notAfter = gnutls_x509_crt_get_expiration_time(raw)
        guard notBefore != -1, notAfter != -1 else {
            throw GnuTLSError(.malformedDER, "certificate validity dates cannot be read")
        }
        let key = try PublicKeyHandle(certificate: raw)
        let sign = gnutls_x509_crt_get_signature_algorithm(raw)
        let oid = try signatureOID(sign: sign) {
            try sizedBuffer("gnutls_x509_crt_get_signature_oid") { gnutls_x509_crt_get_signature_oid(raw, $0, $1) }
        }
        let extensions = try readExtensions(
            info: { index, oid, size, critical in gnutls_x509_crt_get_extension_info(raw, index, oid, size, critical) },
            data: { index, out in gnutls_x509_crt_get_extension_data2(raw, index, out) })
        return CoreCertificateFields(
            version: Int(version), serial: serial, issuerDN: issuer, subjectDN: subject,
            notBefore: notBefore, notAfter: notAfter, spki: try key.spki(), publicKeyKind: key.kind,
            signatureAlgorithmName: signatureName(sign: sign, oid: oid), signatureAlgorithmOID: oid,
            extensions: extensions)
    }
}

extension PublicKeyHandle {
    convenience init(certificate: gnutls_x509_crt_t) throws {
        try self.init()
        let rc = gnutls_pubkey_import_x509(raw, certificate, 0)
        try check(rc, "gnutls_pubkey_import_x509", Self.importFailure(rc, of: "certificate"), code: Self.importCode(rc))
    }

    convenience init(request: gnutls_x509_crq_t) throws {
        try self.init()
        let rc = gnutls_pubkey_import_x509_crq(raw, request, 0)
        try check(rc, "gnutls_pubkey_import_x509_crq", Self.importFailure(rc, of: "certificate request"), code: Self.importCode(rc))
    }

    /// A well-formed key of an algorithm or curve GnuTLS lacks (secp256k1, brainpool) is
    /// `.unsupportedAlgorithm`, not malformed input.
    static func importCode(_ rc: Int32) -> GnuTLSError.Code {
        isUnsupportedKey(rc) ? .unsupportedAlgorithm : .malformedDER
    }

    static func importFailure(_ rc: Int32, of what: String) -> String {
        isUnsupportedKey(rc)
            ? "\(what) public key uses an algorithm or curve that GnuTLS does not support"
            : "\(what) public key cannot be read"
    }
}

/// Whether a key import failed because GnuTLS does not know the algorithm or curve.
package func isUnsupportedKey(_ rc: Int32) -> Bool {
    rc == GNUTLS_E_ECC_UNSUPPORTED_CURVE || rc == GNUTLS_E_UNKNOWN_PK_ALGORITHM || rc == GNUTLS_E_UNIMPLEMENTED_FEATURE
}

func signatureOID(sign: Int32, fallback: () throws -> [UInt8]?) throws -> String {
    if sign > 0, let oid = gnutls_sign_get_oid(gnutls_sign_algorithm_t(UInt32(sign))) {
        return String(cString: oid)
    }
    let bytes = try fallback() ?? []
    return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
}

func signatureName(sign: Int32, oid: String) -> String {
    if sign > 0, let name = gnutls_sign_get_name(gnutls_sign_algorithm_t(UInt32(sign))) {
        return String(cString: name)
    }
    return oid
}

/// Walks the extensions of a certificate, request or CRL with the two GnuTLS getters they
/// all share in shape.
func readExtensions(
    info: (UInt32, UnsafeMutableRawPointer, UnsafeMutablePointer<Int>, UnsafeMutablePointer<UInt32>) -> Int32,
    data: (UInt32, UnsafeMutablePointer<gnutls_datum_t>) -> Int32
) throws -> [CoreExtension] {
    var extensions: [CoreExtension] = []
    var index: UInt32 = 0
    while true {
        var critical: UInt32 = 0
        var oidBuffer = [UInt8](repeating: 0, count: 128)
        var size = oidBuffer.count
        let rc = oidBuffer.withUnsafeMutableBytes { info(index, $0.baseAddress!, &size, &critical) }
        if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
        try check(rc, "gnutls_x509_*_get_extension_info", "extension \(index) cannot be read", code: .malformedDER)
        let oid = String(decoding: oidBuffer.prefix { $0 != 0 }, as: UTF8.self)
        let value = try exportDatum("gnutls_x509_*_get_extension_data2") { data(index, $0) }
        extensions.append(CoreExtension(oid: oid, critical: critical != 0, value: value))
        index += 1
    }
    return extensions
}
