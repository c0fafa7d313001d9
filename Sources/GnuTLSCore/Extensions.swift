import CGnuTLS

/// A general name as GnuTLS reports it, without C types.
package enum CoreGeneralName: Sendable, Hashable {
    case dns(String)
    /// 4 or 16 bytes; in name constraints 8 or 32 (address followed by mask).
    case ip([UInt8])
    case email(String)
    case uri(String)
    /// DER of a `Name`.
    case directoryName([UInt8])
    case otherName(oid: String, value: [UInt8])
    case registeredID(String)

    init(type: gnutls_x509_subject_alt_name_t, data: gnutls_datum_t, otherOID: gnutls_datum_t?) {
        let bytes = takeBytes(data)
        switch type {
        case GNUTLS_SAN_DNSNAME: self = .dns(String(decoding: bytes, as: UTF8.self))
        case GNUTLS_SAN_RFC822NAME: self = .email(String(decoding: bytes, as: UTF8.self))
        case GNUTLS_SAN_URI: self = .uri(String(decoding: bytes, as: UTF8.self))
        case GNUTLS_SAN_IPADDRESS: self = .ip(bytes)
        case GNUTLS_SAN_DN: self = .directoryName(bytes)
        case GNUTLS_SAN_REGISTERED_ID: self = .registeredID(String(decoding: bytes, as: UTF8.self))
        default:
            let oid = otherOID.map { String(decoding: takeBytes($0), as: UTF8.self) } ?? ""
            self = .otherName(oid: oid, value: bytes)
        }
    }

    /// The GnuTLS type and the bytes GnuTLS expects for it.
    var gnutlsForm: (gnutls_x509_subject_alt_name_t, [UInt8]) {
        switch self {
        case .dns(let name): return (GNUTLS_SAN_DNSNAME, Array(name.utf8))
        case .email(let name): return (GNUTLS_SAN_RFC822NAME, Array(name.utf8))
        case .uri(let name): return (GNUTLS_SAN_URI, Array(name.utf8))
        case .ip(let bytes): return (GNUTLS_SAN_IPADDRESS, bytes)
        case .directoryName(let der): return (GNUTLS_SAN_DN, der)
        case .registeredID(let oid): return (GNUTLS_SAN_REGISTERED_ID, Array(oid.utf8))
        case .otherName(_, let value): return (GNUTLS_SAN_OTHERNAME, value)
        }
    }
}

/// One extension of a certificate, request or CRL.
package struct CoreExtension: Sendable, Hashable {
    package var oid: String
    package var critical: Bool
    package var value: [UInt8]
}

/// Decoders for the extension values GnuTLS understands (x509-ext.h), used alike for
/// certificates, requests and CRLs. Each throws `.malformedDER` for a value it cannot parse.
package enum ExtensionCodec {
    package static func subjectAlternativeNames(_ der: [UInt8]) throws -> [CoreGeneralName] {
        var sans: gnutls_subject_alt_names_t?
        try check(gnutls_subject_alt_names_init(&sans), "gnutls_subject_alt_names_init")
        defer { gnutls_subject_alt_names_deinit(sans) }
        let rc = withDatum(der) { gnutls_x509_ext_import_subject_alt_names($0, sans, 0) }
        try check(rc, "gnutls_x509_ext_import_subject_alt_names", "subject alternative names extension is malformed", code: .malformedDER)
        var names: [CoreGeneralName] = []
        var index: UInt32 = 0
        while true {
            var type: UInt32 = 0
            var san = gnutls_datum_t(data: nil, size: 0)
            var other = gnutls_datum_t(data: nil, size: 0)
            let rc = gnutls_subject_alt_names_get(sans, index, &type, &san, &other)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_subject_alt_names_get")
            let kind = gnutls_x509_subject_alt_name_t(type)
            names.append(CoreGeneralName(type: kind, data: san, otherOID: kind == GNUTLS_SAN_OTHERNAME ? other : nil))
            index += 1
        }
        return names
    }

    package static func basicConstraints(_ der: [UInt8]) throws -> (isCA: Bool, pathLength: Int?) {
        var ca: UInt32 = 0
        var pathLength: Int32 = -1
        let rc = withDatum(der) { gnutls_x509_ext_import_basic_constraints($0, &ca, &pathLength) }
        try check(rc, "gnutls_x509_ext_import_basic_constraints", "basic constraints extension is malformed", code: .malformedDER)
        return (ca != 0, pathLength >= 0 ? Int(pathLength) : nil)
    }

    package static func keyUsage(_ der: [UInt8]) throws -> UInt32 {
        var usage: UInt32 = 0
        let rc = withDatum(der) { gnutls_x509_ext_import_key_usage($0, &usage) }
        try check(rc, "gnutls_x509_ext_import_key_usage", "key usage extension is malformed", code: .malformedDER)
        return usage
    }

    package static func extendedKeyUsage(_ der: [UInt8]) throws -> [String] {
        var purposes: gnutls_x509_key_purposes_t?
        try check(gnutls_x509_key_purpose_init(&purposes), "gnutls_x509_key_purpose_init")
        defer { gnutls_x509_key_purpose_deinit(purposes) }
        let rc = withDatum(der) { gnutls_x509_ext_import_key_purposes($0, purposes, 0) }
        try check(rc, "gnutls_x509_ext_import_key_purposes", "extended key usage extension is malformed", code: .malformedDER)
        var oids: [String] = []
        var index: UInt32 = 0
        while true {
            var oid = gnutls_datum_t(data: nil, size: 0)
            let rc = gnutls_x509_key_purpose_get(purposes, index, &oid)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_x509_key_purpose_get")
            oids.append(String(decoding: takeBytes(oid), as: UTF8.self))
            index += 1
        }
        return oids
    }

    package static func subjectKeyIdentifier(_ der: [UInt8]) throws -> [UInt8] {
        try exportDatum("gnutls_x509_ext_import_subject_key_id", "subject key identifier extension is malformed") { out in
            withDatum(der) { gnutls_x509_ext_import_subject_key_id($0, out) }
        }
    }

    package static func authorityKeyIdentifier(_ der: [UInt8]) throws -> [UInt8]? {
        var aki: gnutls_x509_aki_t?
        try check(gnutls_x509_aki_init(&aki), "gnutls_x509_aki_init")
        defer { gnutls_x509_aki_deinit(aki) }
        let rc = withDatum(der) { gnutls_x509_ext_import_authority_key_id($0, aki, 0) }
        try check(rc, "gnutls_x509_ext_import_authority_key_id", "authority key identifier extension is malformed", code: .malformedDER)
        var id = gnutls_datum_t(data: nil, size: 0)
        let idRC = gnutls_x509_aki_get_id(aki, &id)
        if idRC == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { return nil }
        try check(idRC, "gnutls_x509_aki_get_id")
        return takeBytes(id)
    }

    package static func crlDistributionPoints(_ der: [UInt8]) throws -> [CoreGeneralName] {
        var points: gnutls_x509_crl_dist_points_t?
        try check(gnutls_x509_crl_dist_points_init(&points), "gnutls_x509_crl_dist_points_init")
        defer { gnutls_x509_crl_dist_points_deinit(points) }
        let rc = withDatum(der) { gnutls_x509_ext_import_crl_dist_points($0, points, 0) }
        try check(rc, "gnutls_x509_ext_import_crl_dist_points", "CRL distribution points extension is malformed", code: .malformedDER)
        var names: [CoreGeneralName] = []
        var index: UInt32 = 0
        while true {
            var type: UInt32 = 0
            var san = gnutls_datum_t(data: nil, size: 0)
            var reasons: UInt32 = 0
            let rc = gnutls_x509_crl_dist_points_get(points, index, &type, &san, &reasons)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_x509_crl_dist_points_get")
            names.append(CoreGeneralName(type: gnutls_x509_subject_alt_name_t(type), data: san, otherOID: nil))
            index += 1
        }
        return names
    }

    /// Authority information access: (access method OID, location).
    package static func authorityInformationAccess(_ der: [UInt8]) throws -> [(method: String, location: CoreGeneralName)] {
        var aia: gnutls_x509_aia_t?
        try check(gnutls_x509_aia_init(&aia), "gnutls_x509_aia_init")
        defer { gnutls_x509_aia_deinit(aia) }
        let rc = withDatum(der) { gnutls_x509_ext_import_aia($0, aia, 0) }
        try check(rc, "gnutls_x509_ext_import_aia", "authority information access extension is malformed", code: .malformedDER)
        var entries: [(String, CoreGeneralName)] = []
        var index: UInt32 = 0
        while true {
            var oid = gnutls_datum_t(data: nil, size: 0)
            var type: UInt32 = 0
            var san = gnutls_datum_t(data: nil, size: 0)
            let rc = gnutls_x509_aia_get(aia, index, &oid, &type, &san)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            try check(rc, "gnutls_x509_aia_get")
            entries.append((String(decoding: takeBytes(oid), as: UTF8.self),
                            CoreGeneralName(type: gnutls_x509_subject_alt_name_t(type), data: san, otherOID: nil)))
            index += 1
        }
        return entries
    }
}

/// Object identifiers of the extensions the library reads and writes.
package enum ExtensionOID {
    package static let subjectKeyIdentifier = "2.5.29.14"
    package static let keyUsage = "2.5.29.15"
    package static let subjectAlternativeName = "2.5.29.17"
    package static let basicConstraints = "2.5.29.19"
    package static let nameConstraints = "2.5.29.30"
    package static let crlDistributionPoints = "2.5.29.31"
    package static let authorityKeyIdentifier = "2.5.29.35"
    package static let extendedKeyUsage = "2.5.29.37"
    package static let authorityInformationAccess = "1.3.6.1.5.5.7.1.1"
}
