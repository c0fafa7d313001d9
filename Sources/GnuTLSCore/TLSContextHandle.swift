import CGnuTLS
import Glibc

/// Everything a TLS context is built from, without C types. Built by `TLSContext` in the
/// `GnuTLS` target from a `TLSConfiguration`.
package struct CoreTLSSettings: Sendable {
    package enum Role: Sendable { case client, server }
    package enum ClientCertificates: Sendable { case none, optional, required }

    package var role: Role
    /// Certificate chains (PEM, leaf first) with their private keys.
    package var identities: [(chainPEM: String, key: PrivateKeyHandle)] = []
    package var trustAnchors: [[UInt8]] = []
    package var crls: [[UInt8]] = []
    package var systemTrust = false
    package var clientCertificates: ClientCertificates = .none
    package var priority: String
    package var alpn: [String] = []
    package var profile: CoreProfile = .medium
    package var sessionTickets = true
    /// DER OCSP responses to staple, by identity index (already verified by the caller).
    package var ocspStaples: [Int: [UInt8]] = [:]
    /// Staples that change while the context serves, by identity index: asked for on every
    /// handshake (an index here takes the place of one in ``ocspStaples``).
    package var ocspStapleStores: [Int: OCSPStapleStore] = [:]

    package init(role: Role, priority: String) {
        self.role = role
        self.priority = priority
    }
}

/// Owns the long-lived GnuTLS objects every connection of a context shares: certificate
/// credentials (identities, trust list, CRLs), the priority cache, and the session-ticket
/// key. Built once; immutable afterwards, so sessions on any thread may use it.
package final class TLSContextHandle: @unchecked Sendable {
    let credentials: gnutls_certificate_credentials_t
    let priority: gnutls_priority_t
    /// The server's session-ticket encryption key (TLS 1.2 tickets, TLS 1.3 resumption).
    private var ticketKey = gnutls_datum_t(data: nil, size: 0)
    package let settings: CoreTLSSettings
    /// Identities keep their keys alive for the credentials' lifetime.
    private let keys: [PrivateKeyHandle]

    package init(_ settings: CoreTLSSettings) throws {
        self.settings = settings
        self.keys = settings.identities.map(\.key)
        var credentials: gnutls_certificate_credentials_t?
        try check(gnutls_certificate_allocate_credentials(&credentials), "gnutls_certificate_allocate_credentials")
        guard let credentials else {
            throw GnuTLSError(.library, "gnutls_certificate_allocate_credentials returned no credentials")
        }
        self.credentials = credentials
        var priority: gnutls_priority_t?
        var errorPosition: UnsafePointer<CChar>?
        let rc = gnutls_priority_init(&priority, settings.priority, &errorPosition)
        guard rc >= 0, let priority else {
            gnutls_certificate_free_credentials(credentials)
            let at = errorPosition.map { String(cString: $0) } ?? ""
            throw GnuTLSError.from(rc, function: "gnutls_priority_init", context: "priority string is invalid near '\(at)'", code: .invalidArgument)
        }
        self.priority = priority
        do {
            try configure()
        } catch {
            // deinit runs for a fully initialized object; nothing else to release here.
            throw error
        }
    }

    private func configure() throws {
        for identity in settings.identities {
            let keyPEM = try identity.key.exportPKCS8(passphrase: nil)
            let keyText = "-----BEGIN PRIVATE KEY-----\n" + base64Lines(keyPEM) + "-----END PRIVATE KEY-----\n"
            let rc = withDatum(identity.chainPEM) { chain in
                withDatum(keyText) { key in
                    gnutls_certificate_set_x509_key_mem2(credentials, chain, key, GNUTLS_X509_FMT_PEM, nil, 0)
                }
            }
            try check(rc, "gnutls_certificate_set_x509_key_mem2", "loading a certificate chain and its key into the TLS credentials")
        }
        for (index, staple) in settings.ocspStaples.sorted(by: { $0.key < $1.key }) {
            // Identities are numbered in the order they were added; GnuTLS checks that the
            // response is about that identity's leaf (GNUTLS_E_OCSP_MISMATCH_WITH_CERTS).
            let rc = withDatum(staple) { gnutls_certificate_set_ocsp_status_request_mem(credentials, $0, UInt32(index), GNUTLS_X509_FMT_DER) }
            try check(rc, "gnutls_certificate_set_ocsp_status_request_mem", "stapling the OCSP response of identity \(index)", code: .invalidArgument)
        }
        for (index, store) in settings.ocspStapleStores.sorted(by: { $0.key < $1.key }) {
            // The store stays alive as long as `settings`, which this handle keeps: GnuTLS
            // keeps only the pointer (unretained) for the credentials' lifetime.
            let rc = gnutls_certificate_set_ocsp_status_request_function2(
                credentials, UInt32(index), ocspStapleCallback, Unmanaged.passUnretained(store).toOpaque())
            try check(rc, "gnutls_certificate_set_ocsp_status_request_function2", "stapling the OCSP responses of identity \(index)", code: .invalidArgument)
        }
        if !settings.trustAnchors.isEmpty || !settings.crls.isEmpty || settings.systemTrust {
            let list = try TrustListHandle()
            try list.addAnchors(settings.trustAnchors)
            if settings.systemTrust { try list.addSystemTrust() }
            try list.addCRLs(settings.crls)
            // gnutls_certificate_set_trust_list: "the list becomes part of the credentials
            // structure and must not be deallocated" — ownership moves to the credentials.
            gnutls_certificate_set_trust_list(credentials, list.release(), 0)
        }
        gnutls_certificate_set_verify_flags(credentials, cgnutls_profile_to_vflags(settings.profile.gnutls))
        if settings.role == .server && settings.sessionTickets {
            try check(gnutls_session_ticket_key_generate(&ticketKey), "gnutls_session_ticket_key_generate")
        }
    }

    deinit {
        gnutls_certificate_free_credentials(credentials)
        gnutls_priority_deinit(priority)
        if ticketKey.data != nil {
            // The ticket key is secret: wipe before freeing.
            memset(ticketKey.data, 0, Int(ticketKey.size))
            cgnutls_free(ticketKey.data)
        }
    }

    var hasTicketKey: Bool { ticketKey.data != nil }

    func enableTickets(on session: gnutls_session_t) throws {
        try withUnsafePointer(to: &ticketKey) { key in
            try check(gnutls_session_ticket_enable_server(session, key), "gnutls_session_ticket_enable_server")
        }
    }

    private func base64Lines(_ bytes: [UInt8]) -> String {
        var datum = gnutls_datum_t(data: nil, size: 0)
        let rc = withDatum(bytes) { gnutls_base64_encode2($0, &datum) }
        defer { cgnutls_free(datum.data) }
        guard rc >= 0 else { return "" }
        let text = String(decoding: takeBytes(datum), as: UTF8.self)
        var out = ""
        var line = ""
        for character in text {
            line.append(character)
            if line.count == 64 { out += line + "\n"; line = "" }
        }
        if !line.isEmpty { out += line + "\n" }
        return out
    }
}
