import CGnuTLS
import Glibc

/// Everything a TLS context is built from, without C types. Built by `TLSContext` in the
/// `GnuTLS` target from a `TLSConfiguration`.
package struct CoreTLSSettings: Sendable {
    package enum Role: Sendable { case client, server }
    package enum ClientCertificates: Sendable { case none, optional, required }

    package var role: Role
    /// Certificate chains (DER, leaf first) with their private keys.
    package var identities: [(chain: [[UInt8]], key: PrivateKeyHandle)] = []
    /// The anchors GnuTLS verifies peers against in the handshake: the Swift verifier's, the
    /// system's included (read once, by the verifier).
    package var trustAnchors: [[UInt8]] = []
    package var crls: [[UInt8]] = []
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
    /// Peer chains GnuTLS accepted in earlier handshakes (the GnuTLS layer's verified-chain
    /// cache): with one, engines verify peers through their own callback, which skips
    /// GnuTLS's verification of a chain this answers for (``TLSEngine``).
    package var acceptedChains: (any AcceptedPeerChains)?

    package init(role: Role, priority: String) {
        self.role = role
        self.priority = priority
    }
}

/// Answers, during a handshake, whether GnuTLS's verification of the chain a peer presented
/// would repeat an earlier one: GnuTLS accepted exactly these certificates (DER, leaf first)
/// in an earlier full handshake with the same trust list, CRLs, verification flags and
/// verification data (name, purpose), and nothing that answer depends on has changed since
/// (no certificate, anchor or CRL it relied on has expired; nothing depends on a stapled
/// OCSP response). Called on the connection's thread; implementations are thread-safe.
package protocol AcceptedPeerChains: AnyObject, Sendable {
    /// - Parameters:
    ///   - presented: the peer's certificates as it sent them, DER, leaf first.
    ///   - serverName: the name a client connects to (`nil` on servers).
    func acceptedEarlier(_ presented: [[UInt8]], serverName: String?) -> Bool
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
        // The GnuTLS layer compares each key's public key with its leaf before it gets here;
        // GnuTLS's own check would make a test signature with every token or external key.
        gnutls_certificate_set_flags(credentials, UInt32(GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH.rawValue))
        for identity in settings.identities {
            try addIdentity(chain: identity.chain, key: identity.key)
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
        if !settings.trustAnchors.isEmpty || !settings.crls.isEmpty {
            let list = try TrustListHandle()
            try list.addAnchors(settings.trustAnchors)
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

    /// Hands one certificate chain and its key to the credentials with
    /// `gnutls_certificate_set_key`. The manual: "pcert_list and key will become part of the
    /// credentials structure and must not be deallocated"; it copies the array itself. So
    /// the certificates are imported into `gnutls_pcert_st`s and the key is a copy made for
    /// the credentials (``PrivateKeyHandle/makeOwnedCopy()``): a software key copied, a token
    /// key opened again by URI, an external key wrapped again around its signer, which
    /// `keys` keeps alive. No key is ever written out as PEM or DER.
    private func addIdentity(chain: [[UInt8]], key: PrivateKeyHandle) throws {
        let certificates = UnsafeMutablePointer<gnutls_pcert_st>.allocate(capacity: max(chain.count, 1))
        defer { certificates.deallocate() }
        var imported = 0
        var handedOver = false
        defer { if !handedOver { for index in 0..<imported { gnutls_pcert_deinit(certificates + index) } } }
        for der in chain {
            let rc = withDatum(der) { gnutls_pcert_import_x509_raw(certificates + imported, $0, GNUTLS_X509_FMT_DER, 0) }
            try check(rc, "gnutls_pcert_import_x509_raw", "loading certificate \(imported) of an identity's chain", code: .malformedDER)
            imported += 1
        }
        let owned = try key.makeOwnedCopy()
        let rc = gnutls_certificate_set_key(credentials, nil, 0, certificates, Int32(imported), owned)
        guard rc >= 0 else {
            gnutls_privkey_deinit(owned)
            throw GnuTLSError.from(rc, function: "gnutls_certificate_set_key", context: "loading a certificate chain and its key into the TLS credentials")
        }
        handedOver = true
    }
}
