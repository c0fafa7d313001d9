import CGnuTLS

/// One attribute of a distinguished name, as the builder writes it: the OID and the
/// complete DER of its value (tag, length, contents).
package struct CoreNameAttribute: Sendable {
    package var oid: String
    package var valueDER: [UInt8]
    package init(oid: String, valueDER: [UInt8]) {
        self.oid = oid
        self.valueDER = valueDER
    }
}

/// What goes into a new certificate. The authority in the `GnuTLS` target decides the
/// contents; this only writes them through GnuTLS and signs.
package struct CoreCertificateSpec: Sendable {
    package var serial: [UInt8]
    package var notBefore: Int
    package var notAfter: Int
    package var subject: [CoreNameAttribute]
    package var subjectPublicKeyInfo: [UInt8]
    package var alternativeNames: [CoreGeneralName] = []
    package var isCA: Bool
    package var pathLength: Int?
    package var keyUsage: UInt32
    package var extendedKeyUsage: [String] = []
    package var subjectKeyIdentifier: [UInt8]
    package var authorityKeyIdentifier: [UInt8]?
    package var crlDistributionPoints: [String] = []
    package var ocspURLs: [String] = []
    package var caIssuerURLs: [String] = []
    package var permittedNames: [CoreGeneralName] = []
    package var excludedNames: [CoreGeneralName] = []
    /// Further extensions written as given: (OID, critical, DER of the value).
    package var extraExtensions: [(oid: String, critical: Bool, value: [UInt8])] = []

    package init(
        serial: [UInt8], notBefore: Int, notAfter: Int, subject: [CoreNameAttribute],
        subjectPublicKeyInfo: [UInt8], isCA: Bool, pathLength: Int?, keyUsage: UInt32,
        subjectKeyIdentifier: [UInt8], authorityKeyIdentifier: [UInt8]?
    ) {
        self.serial = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.subject = subject
        self.subjectPublicKeyInfo = subjectPublicKeyInfo
        self.isCA = isCA
        self.pathLength = pathLength
        self.keyUsage = keyUsage
        self.subjectKeyIdentifier = subjectKeyIdentifier
        self.authorityKeyIdentifier = authorityKeyIdentifier
    }
}

/// Key usage bits as GnuTLS numbers them (`GNUTLS_KEY_*`).
package enum CoreKeyUsage {
    package static let digitalSignature = UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE)
    package static let nonRepudiation = UInt32(GNUTLS_KEY_NON_REPUDIATION)
    package static let keyEncipherment = UInt32(GNUTLS_KEY_KEY_ENCIPHERMENT)
    package static let dataEncipherment = UInt32(GNUTLS_KEY_DATA_ENCIPHERMENT)
    package static let keyAgreement = UInt32(GNUTLS_KEY_KEY_AGREEMENT)
    package static let keyCertSign = UInt32(GNUTLS_KEY_KEY_CERT_SIGN)
    package static let crlSign = UInt32(GNUTLS_KEY_CRL_SIGN)
    package static let encipherOnly = UInt32(GNUTLS_KEY_ENCIPHER_ONLY)
    package static let decipherOnly = UInt32(GNUTLS_KEY_DECIPHER_ONLY)
}

extension CertificateHandle {
    /// Builds and signs a certificate. `issuer` is the issuing CA's DER certificate, or `nil`
    /// for a self-signed certificate (signed by `key`, which must then match the subject key).
    package static func issue(_ spec: CoreCertificateSpec, issuer: [UInt8]?, key: PrivateKeyHandle) throws -> [UInt8] {
        let crt = try CertificateHandle()
        let raw = crt.raw
        try check(gnutls_x509_crt_set_version(raw, 3), "gnutls_x509_crt_set_version")
        try check(spec.serial.withUnsafeBytes { gnutls_x509_crt_set_serial(raw, $0.baseAddress, $0.count) },
                  "gnutls_x509_crt_set_serial")
        try check(gnutls_x509_crt_set_activation_time(raw, spec.notBefore), "gnutls_x509_crt_set_activation_time")
        try check(gnutls_x509_crt_set_expiration_time(raw, spec.notAfter), "gnutls_x509_crt_set_expiration_time")
        for attribute in spec.subject {
            try check(attribute.valueDER.withUnsafeBytes {
                gnutls_x509_crt_set_dn_by_oid(raw, attribute.oid, 1, $0.baseAddress, UInt32($0.count))
            }, "gnutls_x509_crt_set_dn_by_oid", "setting subject attribute \(attribute.oid)", code: .invalidArgument)
        }
        let publicKey = try PublicKeyHandle(spki: spec.subjectPublicKeyInfo)
        try check(gnutls_x509_crt_set_pubkey(raw, publicKey.raw), "gnutls_x509_crt_set_pubkey")
        if !spec.alternativeNames.isEmpty {
            let value = try subjectAlternativeNamesExtension(spec.alternativeNames)
            try check(value.withUnsafeBytes {
                gnutls_x509_crt_set_extension_by_oid(raw, "2.5.29.17", $0.baseAddress, $0.count, 0)
            }, "gnutls_x509_crt_set_extension_by_oid", "setting the subject alternative names", code: .invalidArgument)
        }
        try check(gnutls_x509_crt_set_basic_constraints(raw, spec.isCA ? 1 : 0, Int32(spec.pathLength ?? -1)),
                  "gnutls_x509_crt_set_basic_constraints")
        try check(gnutls_x509_crt_set_key_usage(raw, spec.keyUsage), "gnutls_x509_crt_set_key_usage")
        for oid in spec.extendedKeyUsage {
            try check(gnutls_x509_crt_set_key_purpose_oid(raw, oid, 0), "gnutls_x509_crt_set_key_purpose_oid")
        }
        try check(spec.subjectKeyIdentifier.withUnsafeBytes {
            gnutls_x509_crt_set_subject_key_id(raw, $0.baseAddress, $0.count)
        }, "gnutls_x509_crt_set_subject_key_id")
        if let aki = spec.authorityKeyIdentifier {
            try check(aki.withUnsafeBytes { gnutls_x509_crt_set_authority_key_id(raw, $0.baseAddress, $0.count) },
                      "gnutls_x509_crt_set_authority_key_id")
        }
        for url in spec.crlDistributionPoints {
            try check(Array(url.utf8).withUnsafeBytes {
                gnutls_x509_crt_set_crl_dist_points2(raw, GNUTLS_SAN_URI, $0.baseAddress, UInt32($0.count), 0)
            }, "gnutls_x509_crt_set_crl_dist_points2", "adding CRL distribution point \(url)", code: .invalidArgument)
        }
        for (method, urls) in [(GNUTLS_IA_OCSP_URI, spec.ocspURLs), (GNUTLS_IA_CAISSUERS_URI, spec.caIssuerURLs)] {
            for url in urls {
                try check(withDatum(url) { gnutls_x509_crt_set_authority_info_access(raw, Int32(method.rawValue), UnsafeMutablePointer(mutating: $0)) },
                          "gnutls_x509_crt_set_authority_info_access", "adding authority information access \(url)",
                          code: .invalidArgument)
            }
        }
        if !spec.permittedNames.isEmpty || !spec.excludedNames.isEmpty {
            var constraints: gnutls_x509_name_constraints_t?
            try check(gnutls_x509_name_constraints_init(&constraints), "gnutls_x509_name_constraints_init")
            defer { gnutls_x509_name_constraints_deinit(constraints) }
            for (names, permitted) in [(spec.permittedNames, true), (spec.excludedNames, false)] {
                for name in names {
                    let (type, bytes) = name.gnutlsForm
                    let rc = withDatum(bytes) {
                        permitted
                            ? gnutls_x509_name_constraints_add_permitted(constraints, type, $0)
                            : gnutls_x509_name_constraints_add_excluded(constraints, type, $0)
                    }
                    try check(rc, "gnutls_x509_name_constraints_add_*", "adding name constraint \(name)", code: .invalidArgument)
                }
            }
            try check(gnutls_x509_crt_set_name_constraints(raw, constraints, 1), "gnutls_x509_crt_set_name_constraints")
        }
        for ext in spec.extraExtensions {
            try check(ext.value.withUnsafeBytes {
                gnutls_x509_crt_set_extension_by_oid(raw, ext.oid, $0.baseAddress, $0.count, ext.critical ? 1 : 0)
            }, "gnutls_x509_crt_set_extension_by_oid", "adding extension \(ext.oid)", code: .invalidArgument)
        }

        let digest = key.signingDigest
        let rc: Int32
        if let issuer {
            let issuerHandle = try CertificateHandle(der: issuer)
            rc = key.withAbstractKey { gnutls_x509_crt_privkey_sign(raw, issuerHandle.raw, $0, digest, 0) }
        } else {
            rc = key.withAbstractKey { gnutls_x509_crt_privkey_sign(raw, raw, $0, digest, 0) }
        }
        try key.checkSigning(rc, "gnutls_x509_crt_privkey_sign", "signing the certificate")
        return try crt.der()
    }
}

/// What goes into a new certificate request.
package struct CoreRequestSpec: Sendable {
    package var subject: [CoreNameAttribute]
    package var alternativeNames: [CoreGeneralName]
    package var keyUsage: UInt32?
    package var extendedKeyUsage: [String]
    package var challengePassword: String?
    package init(subject: [CoreNameAttribute], alternativeNames: [CoreGeneralName], keyUsage: UInt32?,
                 extendedKeyUsage: [String], challengePassword: String?) {
        self.subject = subject
        self.alternativeNames = alternativeNames
        self.keyUsage = keyUsage
        self.extendedKeyUsage = extendedKeyUsage
        self.challengePassword = challengePassword
    }
}

extension RequestHandle {
    /// Builds a PKCS#10 request for `key`'s public key and signs it with `key`.
    package static func create(_ spec: CoreRequestSpec, key: PrivateKeyHandle) throws -> [UInt8] {
        let crq = try RequestHandle()
        let raw = crq.raw
        try check(gnutls_x509_crq_set_version(raw, 1), "gnutls_x509_crq_set_version")
        for attribute in spec.subject {
            try check(attribute.valueDER.withUnsafeBytes {
                gnutls_x509_crq_set_dn_by_oid(raw, attribute.oid, 1, $0.baseAddress, UInt32($0.count))
            }, "gnutls_x509_crq_set_dn_by_oid", "setting subject attribute \(attribute.oid)", code: .invalidArgument)
        }
        let publicKey = try key.publicKey()
        try check(gnutls_x509_crq_set_pubkey(raw, publicKey.raw), "gnutls_x509_crq_set_pubkey")
        if !spec.alternativeNames.isEmpty {
            let value = try subjectAlternativeNamesExtension(spec.alternativeNames)
            try check(value.withUnsafeBytes {
                gnutls_x509_crq_set_extension_by_oid(raw, "2.5.29.17", $0.baseAddress, $0.count, 0)
            }, "gnutls_x509_crq_set_extension_by_oid", "setting the subject alternative names", code: .invalidArgument)
        }
        if let usage = spec.keyUsage {
            try check(gnutls_x509_crq_set_key_usage(raw, usage), "gnutls_x509_crq_set_key_usage")
        }
        for oid in spec.extendedKeyUsage {
            try check(gnutls_x509_crq_set_key_purpose_oid(raw, oid, 0), "gnutls_x509_crq_set_key_purpose_oid")
        }
        if let password = spec.challengePassword {
            try check(gnutls_x509_crq_set_challenge_password(raw, password), "gnutls_x509_crq_set_challenge_password")
        }
        let rc = key.withAbstractKey { gnutls_x509_crq_privkey_sign(raw, $0, key.signingDigest, 0) }
        try key.checkSigning(rc, "gnutls_x509_crq_privkey_sign", "signing the certificate request")
        return try crq.der()
    }
}

/// The DER value of a subjectAltName extension holding `names`, encoded once.
///
/// `gnutls_x509_crt_set_subject_alt_name(…, GNUTLS_FSAN_APPEND)` decodes and re-encodes the
/// whole extension for every name appended, which is quadratic in the number of names
/// (1,000 names took 6 s); the names are collected in one `gnutls_subject_alt_names_t` and
/// exported once instead.
func subjectAlternativeNamesExtension(_ names: [CoreGeneralName]) throws -> [UInt8] {
    var list: gnutls_subject_alt_names_t?
    try check(gnutls_subject_alt_names_init(&list), "gnutls_subject_alt_names_init")
    defer { gnutls_subject_alt_names_deinit(list) }
    for name in names {
        let (type, bytes) = name.gnutlsForm
        var otherNameOID: String?
        if case .otherName(let oid, _) = name { otherNameOID = oid }
        let rc = withDatum(bytes) { datum in
            if let otherNameOID {
                return otherNameOID.withCString { gnutls_subject_alt_names_set(list, type.rawValue, datum, $0) }
            }
            return gnutls_subject_alt_names_set(list, type.rawValue, datum, nil)
        }
        try check(rc, "gnutls_subject_alt_names_set", "adding subject alternative name \(name)", code: .invalidArgument)
    }
    return try exportDatum("gnutls_x509_ext_export_subject_alt_names", "encoding the subject alternative names") {
        gnutls_x509_ext_export_subject_alt_names(list, $0)
    }
}
