import CGnuTLS

/// Why a TLS operation failed, as GnuTLS reported it.
package struct CoreTLSFailure: Error, Sendable {
    package enum Kind: Sendable, Equatable {
        /// The peer sent a fatal alert (its GnuTLS name, e.g. "Bad certificate").
        case alertReceived(String)
        /// GnuTLS's certificate verification failed during the handshake.
        case certificateVerification(status: UInt32, text: String)
        /// The server required a certificate and the client sent none.
        case peerCertificateRequired
        /// The transport closed without close_notify.
        case prematureEOF
        /// Anything else: garbage from the peer, an unsupported version, a library error.
        case protocolError
    }
    package var kind: Kind
    package var code: Int32
    package var name: String
    package var text: String
    /// The function that failed.
    package var function: String
}

/// A sans-IO TLS session: ciphertext in through ``receive(_:)``, ciphertext out through
/// ``takeOutbound()``, plaintext through ``read(_:)`` / ``write(_:)``. Every session is
/// GNUTLS_NONBLOCK; "needs more input" is a state, never an error.
///
/// Not thread-safe: one engine belongs to one connection, used from one thread (the NIO
/// event loop, or a test). It keeps its context (credentials, priorities) alive, because
/// the GnuTLS session points into them.
package final class TLSEngine {
    package enum Status: Equatable {
        case complete
        case wantInput
    }

    package enum ReadOutcome: Equatable {
        /// `count` plaintext bytes were handed to the reader.
        case data(Int)
        /// Nothing decrypted yet; more ciphertext is needed.
        case wantInput
        /// The peer sent close_notify.
        case closed
        /// The peer asked to renegotiate (TLS 1.2); the engine refused with a
        /// no_renegotiation alert (in ``takeOutbound()``) and the connection goes on.
        case renegotiationRefused
    }

    package let context: TLSContextHandle
    let session: gnutls_session_t
    private let io: EngineIO
    package private(set) var handshakeComplete = false
    /// The typed data given to gnutls_session_set_verify_cert2 and the strings it points to.
    /// GnuTLS keeps the pointer without copying ("once set must remain valid for the lifetime
    /// of the session"), so they are freed in `deinit`, after gnutls_deinit.
    private var verificationStorage: [UnsafeMutableRawPointer] = []
    /// Whether GnuTLS verifies the peer's chain in the handshake (gnutls_session_set_verify_cert2,
    /// or ``verifyPeerInHandshake()`` when the context has ``CoreTLSSettings/acceptedChains``).
    private let verifiesPeerInHandshake: Bool
    /// The name the peer's chain is verified for (clients), as the accepted-chains lookup keys it.
    private let serverName: String?
    /// The typed data ``verifyPeerInHandshake()`` hands to gnutls_certificate_verify_peers
    /// (kept in ``verificationStorage``), and how many elements it has.
    private var verificationData: UnsafeMutablePointer<gnutls_typed_vdata_st>?
    private var verificationElements: UInt32 = 0
    /// The status of the verification ``verifyPeerInHandshake()`` ran (what
    /// gnutls_session_get_verify_cert_status answers when GnuTLS's own callback runs).
    private var verificationStatus: UInt32 = 0
    /// The peer's certificates as read in the handshake's verification (the session's
    /// authentication info does not change afterwards: renegotiation is refused).
    private var presentedInHandshake: [[UInt8]]?
    /// Whether this handshake skipped GnuTLS's verification of the peer's chain because
    /// ``CoreTLSSettings/acceptedChains`` answered that GnuTLS accepted exactly that chain
    /// before. The peer's handshake signature (CertificateVerify, ServerKeyExchange) is still
    /// checked by GnuTLS with the leaf's key; only the chain's verification is skipped.
    package private(set) var peerChainAcceptedEarlier = false

    /// - Parameters:
    ///   - serverName: for clients, the SNI name (omitted for IP literals) and the name
    ///     GnuTLS verifies the certificate against when `verifyPeer` is set.
    ///   - verifyPeer: run GnuTLS's verification in the handshake (trust list, host name or
    ///     IP, purpose); failures send the right alert.
    ///   - purposeOID: the extended key usage the peer's certificate must allow.
    ///   - sessionData: a session to resume (client).
    package init(
        context: TLSContextHandle, serverName: String?, verifyHostname: String?, verifyIP: [UInt8]?,
        verifyPeer: Bool, purposeOID: String?, sessionData: [UInt8]? = nil
    ) throws {
        self.context = context
        self.io = EngineIO()
        self.verifiesPeerInHandshake = verifyPeer
        self.serverName = serverName
        let isServer = context.settings.role == .server
        var flags = UInt32(GNUTLS_NONBLOCK) | (isServer ? UInt32(GNUTLS_SERVER) : UInt32(GNUTLS_CLIENT))
        if !context.settings.sessionTickets { flags |= UInt32(GNUTLS_NO_TICKETS) }
        var session: gnutls_session_t?
        try check(gnutls_init(&session, flags), "gnutls_init")
        self.session = session!
        io.session = session
        do {
            try configure(isServer: isServer, serverName: serverName, verifyHostname: verifyHostname, verifyIP: verifyIP,
                          verifyPeer: verifyPeer, purposeOID: purposeOID, sessionData: sessionData)
        } catch {
            // Every stored property is set: `deinit` runs and calls gnutls_deinit.
            throw error
        }
    }

    private func configure(isServer: Bool, serverName: String?, verifyHostname: String?, verifyIP: [UInt8]?,
                           verifyPeer: Bool, purposeOID: String?, sessionData: [UInt8]?) throws {
        try check(gnutls_priority_set(session, context.priority), "gnutls_priority_set")
        try check(gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(context.credentials)), "gnutls_credentials_set")
        gnutls_transport_set_ptr(session, Unmanaged.passUnretained(io).toOpaque())
        gnutls_transport_set_push_function(session, enginePush)
        gnutls_transport_set_vec_push_function(session, engineVecPush)
        gnutls_transport_set_pull_function(session, enginePull)
        gnutls_transport_set_pull_timeout_function(session, enginePullTimeout)
        // Timeouts are the transport's business (the NIO handler schedules one).
        gnutls_handshake_set_timeout(session, 0)

        if isServer {
            switch context.settings.clientCertificates {
            case .none: gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE)
            case .optional: gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST)
            case .required: gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE)
            }
            if context.hasTicketKey { try context.enableTickets(on: session) }
        } else if let serverName, verifyIP == nil {
            try check(gnutls_server_name_set(session, GNUTLS_NAME_DNS, serverName, serverName.utf8.count), "gnutls_server_name_set")
        }

        if !context.settings.alpn.isEmpty {
            var storage = context.settings.alpn.map { Array($0.utf8) }
            var datums: [gnutls_datum_t] = []
            for index in storage.indices {
                storage[index].withUnsafeMutableBufferPointer { buffer in
                    datums.append(gnutls_datum_t(data: buffer.baseAddress, size: UInt32(buffer.count)))
                }
            }
            // GnuTLS copies the protocol names (gnutls_alpn_set_protocols).
            let rc = withExtendedLifetime(storage) {
                gnutls_alpn_set_protocols(session, &datums, UInt32(datums.count), UInt32(GNUTLS_ALPN_SERVER_PRECEDENCE.rawValue))
            }
            try check(rc, "gnutls_alpn_set_protocols")
        }

        if verifyPeer {
            try setVerification(hostname: verifyHostname, ip: verifyIP, purposeOID: purposeOID)
        }
        if let sessionData, !sessionData.isEmpty {
            // A stale or foreign session is simply not resumed.
            _ = sessionData.withUnsafeBytes { gnutls_session_set_data(session, $0.baseAddress, $0.count) }
        }
    }

    /// gnutls_session_set_verify_cert2 with the host (or IP) and purpose. GnuTLS does not
    /// copy the data: it lives in ``verificationStorage`` until the session is gone.
    private func setVerification(hostname: String?, ip: [UInt8]?, purposeOID: String?) throws {
        func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8> {
            let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count + 1)
            pointer.initialize(from: bytes, count: bytes.count)
            pointer[bytes.count] = 0
            verificationStorage.append(UnsafeMutableRawPointer(pointer))
            return pointer
        }
        var data: [gnutls_typed_vdata_st] = []
        if let ip {
            data.append(gnutls_typed_vdata_st(type: GNUTLS_DT_IP_ADDRESS, data: copy(ip), size: UInt32(ip.count)))
        } else if let hostname {
            data.append(gnutls_typed_vdata_st(type: GNUTLS_DT_DNS_HOSTNAME, data: copy(Array(hostname.utf8)), size: 0))
        }
        if let purposeOID {
            data.append(gnutls_typed_vdata_st(type: GNUTLS_DT_KEY_PURPOSE_OID, data: copy(Array(purposeOID.utf8)), size: 0))
        }
        let array = UnsafeMutablePointer<gnutls_typed_vdata_st>.allocate(capacity: max(data.count, 1))
        array.initialize(from: data, count: data.count)
        verificationStorage.append(UnsafeMutableRawPointer(array))
        guard context.settings.acceptedChains != nil else {
            gnutls_session_set_verify_cert2(session, array, UInt32(data.count), 0)
            return
        }
        // The same verification through our own callback, which may skip it for a chain
        // GnuTLS accepted before. gnutls_session_set_verify_function takes the place of the
        // callback gnutls_session_set_verify_cert2 installs (3.7.9 lib/auto-verify.c,
        // auto_verify_cb); GnuTLS runs either at the same point of the handshake.
        verificationData = array
        verificationElements = UInt32(data.count)
        gnutls_session_set_ptr(session, Unmanaged.passUnretained(self).toOpaque())
        gnutls_session_set_verify_function(session, engineVerifyPeer)
    }

    /// The verification callback (``engineVerifyPeer``), run by GnuTLS in a full handshake
    /// once the peer's Certificate message is processed: in TLS 1.3 after its
    /// CertificateVerify was checked, in TLS 1.2 before the ServerKeyExchange or client
    /// CertificateVerify, whose signatures GnuTLS checks afterwards with the leaf's key
    /// either way (3.7.9 lib/handshake.c, lib/handshake-tls13.c: `_gnutls_run_verify_callback`).
    ///
    /// What GnuTLS's own callback does (3.7.9 lib/auto-verify.c, auto_verify_cb):
    /// gnutls_certificate_verify_peers with the host (or IP) and purpose; a call that fails
    /// is GNUTLS_E_CERTIFICATE_ERROR, a status with any bit set
    /// GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR (both answered with a bad_certificate alert,
    /// see ``handshake()``), unless the context's accepted chains answer that GnuTLS
    /// accepted exactly this chain before with the same inputs. A stapled OCSP response
    /// is an input the cache does not key on: with one, GnuTLS always verifies.
    func verifyPeerInHandshake() -> Int32 {
        let presented = peerCertificates
        presentedInHandshake = presented
        if let accepted = context.settings.acceptedChains, !presented.isEmpty, !peerStapledOCSP(count: presented.count),
           accepted.acceptedEarlier(presented, serverName: serverName) {
            peerChainAcceptedEarlier = true
            return 0
        }
        var status: UInt32 = 0
        guard gnutls_certificate_verify_peers(session, verificationData, verificationElements, &status) >= 0 else {
            return GNUTLS_E_CERTIFICATE_ERROR
        }
        verificationStatus = status
        return status == 0 ? 0 : GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR
    }

    /// Whether the peer stapled an OCSP response for any of its `count` certificates.
    private func peerStapledOCSP(count: Int) -> Bool {
        var datum = gnutls_datum_t(data: nil, size: 0)
        for index in 0..<count where gnutls_ocsp_status_request_get2(session, UInt32(index), &datum) >= 0 {
            return true
        }
        return false
    }

    deinit {
        gnutls_deinit(session)
        verificationStorage.forEach { $0.deallocate() }
    }

    // MARK: Bytes in and out

    /// Queues ciphertext from the peer.
    package func receive(_ bytes: UnsafeRawBufferPointer) {
        io.inbound.append(contentsOf: bytes)
    }

    /// Queues ciphertext from the peer.
    package func receive(_ bytes: [UInt8]) {
        io.inbound.append(contentsOf: bytes)
    }

    /// Lends ciphertext from the peer to the engine while `body` runs (which handshakes or
    /// reads): GnuTLS reads it in place, after what ``receive(_:)`` queued, with no copy
    /// into the engine's queue. What GnuTLS has not read when `body` returns is copied
    /// into the queue, so `bytes` need only live for this call. Nested calls keep the order
    /// in which the bytes were lent.
    package func withReceived<Result>(_ bytes: UnsafeRawBufferPointer, _ body: () -> Result) -> Result {
        // A loan already running (a re-entrant call) is older: it is queued first.
        io.keepLent()
        io.lent = bytes
        io.lentOffset = 0
        defer { io.keepLent() }
        return body()
    }

    /// Hands the ciphertext the engine produces while `body` runs straight to `sink`
    /// (the transport's buffer), after any already queued, instead of queuing it: no copy
    /// through the engine's outbound queue. Inside another `withOutput`, the outer sink
    /// keeps receiving everything, so bytes never change order.
    package func withOutput<Result>(to sink: (UnsafeRawBufferPointer) -> Void, _ body: () -> Result) -> Result {
        guard io.sink == nil else { return body() }
        drainOutbound(sink)
        return withoutActuallyEscaping(sink) { sink in
            io.sink = sink
            defer { io.sink = nil }
            return body()
        }
    }

    /// The transport reached end of file.
    package func receiveEndOfInput() {
        io.endOfInput = true
    }

    /// Ciphertext received and not yet consumed by GnuTLS.
    package var pendingInboundBytes: Int { io.inboundAvailable }

    /// Whether ciphertext is waiting to be sent.
    package var hasOutbound: Bool { !io.outbound.isEmpty }

    /// Whether received ciphertext is waiting for GnuTLS to consume it.
    package var hasInboundBytes: Bool { io.inboundAvailable > 0 }

    /// Takes the ciphertext waiting to be sent.
    package func takeOutbound() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &io.outbound)
        return taken
    }

    /// Hands the ciphertext waiting to be sent to `body`, then discards it.
    package func drainOutbound(_ body: (UnsafeRawBufferPointer) -> Void) {
        guard !io.outbound.isEmpty else { return }
        io.outbound.withUnsafeBytes(body)
        // An idle connection keeps no more than a small buffer (issue 7: no 16 KiB per
        // connection reserved up front or kept after a burst).
        io.outbound.removeAll(keepingCapacity: io.outbound.capacity <= EngineIO.retainedCapacity)
    }

    /// Bytes the engine's own queues hold allocated (inbound and outbound ciphertext); the
    /// engine keeps no plaintext buffer (records are read zero-copy from GnuTLS).
    package var reservedBufferBytes: Int { io.inbound.capacity + io.outbound.capacity }

    // MARK: TLS

    /// Advances the handshake with the input queued so far.
    package func handshake() throws(CoreTLSFailure) -> Status {
        if handshakeComplete { return .complete }
        while true {
            let unread = io.inboundAvailable
            let rc = gnutls_handshake(session)
            if rc == GNUTLS_E_SUCCESS {
                handshakeComplete = true
                return .complete
            }
            if rc == GNUTLS_E_AGAIN {
                // GnuTLS reads one record per call and answers EAGAIN while a handshake
                // message is incomplete, even when its next records already wait in the
                // inbound queue (a message split over records that arrived together, a
                // certificate flight over 16 KiB): go on while it makes progress, until the
                // pull side runs dry. Each round consumes bytes, so the loop is bounded.
                if io.inboundAvailable > 0 && io.inboundAvailable < unread { continue }
                return .wantInput
            }
            if rc == GNUTLS_E_INTERRUPTED { continue }
            if gnutls_error_is_fatal(rc) == 0 {
                // A warning alert during the handshake: keep going.
                continue
            }
            if rc == GNUTLS_E_NO_CERTIFICATE_FOUND && context.settings.role == .server && gnutls_protocol_get_version(session) != GNUTLS_TLS1_3 {
                // A required client certificate is missing. TLS 1.3 has certificate_required
                // for this; in TLS 1.2 it is handshake_failure (RFC 5246, 7.4.6), where
                // gnutls_alert_send_appropriate would send decode_error.
                _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_HANDSHAKE_FAILURE)
            } else {
                // Tell the peer why (unexpected message, decode error, …) before giving up.
                sendAlert(for: rc)
            }
            throw failure(rc, function: "gnutls_handshake")
        }
    }

    /// Decrypts the next record, handing plaintext to `body`.
    package func read(_ body: (UnsafeRawBufferPointer) -> Void) throws(CoreTLSFailure) -> ReadOutcome {
        while true {
            let unread = io.inboundAvailable
            // Zero-copy: GnuTLS hands over the decrypted record itself, so no 16 KiB
            // plaintext buffer is kept per connection.
            var packet: gnutls_packet_t?
            let rc = gnutls_record_recv_packet(session, &packet)
            if rc > 0, let packet {
                var datum = gnutls_datum_t(data: nil, size: 0)
                gnutls_packet_get(packet, &datum, nil)
                body(UnsafeRawBufferPointer(start: datum.data, count: Int(datum.size)))
                gnutls_packet_deinit(packet)
                return .data(Int(datum.size))
            }
            if let packet { gnutls_packet_deinit(packet) }
            if rc == 0 { return .closed }
            let code = Int32(rc)
            if code == GNUTLS_E_AGAIN {
                // GnuTLS also answers EAGAIN right after it handled a post-handshake message
                // (a TLS 1.3 NewSessionTicket, a KeyUpdate) while more records wait in the
                // inbound queue: go on while it makes progress, until the pull side runs dry.
                if io.inboundAvailable > 0 && io.inboundAvailable < unread { continue }
                return .wantInput
            }
            if code == GNUTLS_E_INTERRUPTED { continue }
            if code == GNUTLS_E_REHANDSHAKE {
                // Renegotiation is refused: tell the peer, and go on with the session.
                _ = gnutls_alert_send(session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION)
                // GnuTLS keeps the ClientHello in its record buffer for a gnutls_handshake()
                // that will not come; the next receive would fail on it with
                // GNUTLS_E_UNEXPECTED_PACKET. One receive now drops it (that error, once).
                // The copying gnutls_record_recv, not gnutls_record_recv_packet: on a record
                // of another type, 3.7.9's _gnutls_record_buffer_get_packet (lib/buffers.c)
                // dequeues the record and never frees it (a 16.8 KB buffer leaked per
                // refused renegotiation), where _gnutls_record_buffer_get removes and frees it.
                if gnutls_record_check_pending(session) > 0 {
                    var scratch: UInt8 = 0
                    _ = gnutls_record_recv(session, &scratch, 1)
                }
                return .renegotiationRefused
            }
            if code == GNUTLS_E_WARNING_ALERT_RECEIVED {
                if gnutls_alert_get(session) == GNUTLS_A_CLOSE_NOTIFY { return .closed }
                continue
            }
            // A fatal record error (bad_record_mac, record_overflow, decode_error,
            // unexpected_message): tell the peer before giving up (RFC 8446 §5.1, §5.2).
            sendAlert(for: code)
            throw failure(code, function: "gnutls_record_recv")
        }
    }

    /// Queues the alert that answers GnuTLS error `code`, unless the peer already ended the
    /// connection (its own fatal alert, or the transport's end).
    private func sendAlert(for code: Int32) {
        guard gnutls_error_is_fatal(code) != 0, code != GNUTLS_E_FATAL_ALERT_RECEIVED, code != GNUTLS_E_PREMATURE_TERMINATION,
              !io.endOfInput else { return }
        _ = gnutls_alert_send_appropriate(session, code)
    }

    /// Whether GnuTLS holds decrypted bytes not yet read.
    package var hasPendingPlaintext: Bool { gnutls_record_check_pending(session) > 0 }

    /// Encrypts `bytes` into the outbound queue.
    package func write(_ bytes: UnsafeRawBufferPointer) throws(CoreTLSFailure) {
        var offset = 0
        while offset < bytes.count {
            let rc = gnutls_record_send(session, bytes.baseAddress! + offset, bytes.count - offset)
            if rc > 0 { offset += rc; continue }
            let code = Int32(rc)
            if code == GNUTLS_E_AGAIN || code == GNUTLS_E_INTERRUPTED {
                // The push side never blocks, so GnuTLS only asks to be called again.
                continue
            }
            throw failure(code, function: "gnutls_record_send")
        }
    }

    /// Queues close_notify (the write side is closed; the peer may still send).
    package func shutdown() {
        var attempts = 0
        while attempts < 4 {
            let rc = gnutls_bye(session, GNUTLS_SHUT_WR)
            if rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED { return }
            attempts += 1
        }
    }

    /// Queues a fatal alert.
    package func sendFatalAlert(badCertificate: Bool) {
        _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, badCertificate ? GNUTLS_A_BAD_CERTIFICATE : GNUTLS_A_HANDSHAKE_FAILURE)
    }

    private func failure(_ rc: Int32, function: String) -> CoreTLSFailure {
        let name = GnuTLSError.name(of: rc)
        let text = gnutls_strerror(rc).map { String(cString: $0) } ?? "unknown error"
        let kind: CoreTLSFailure.Kind
        switch rc {
        case GNUTLS_E_FATAL_ALERT_RECEIVED where gnutls_alert_get(session) == GNUTLS_A_CERTIFICATE_REQUIRED:
            // TLS 1.3 servers say so with an alert when a required client certificate is missing.
            kind = .peerCertificateRequired
        case GNUTLS_E_FATAL_ALERT_RECEIVED where gnutls_alert_get(session) == GNUTLS_A_HANDSHAKE_FAILURE && context.settings.role == .client
            && gnutls_certificate_client_get_request_status(session) != 0 && gnutls_certificate_get_ours(session) == nil:
            // TLS 1.2 has no certificate_required alert: a server that asked for a certificate,
            // got none and then failed the handshake is saying it requires one.
            kind = .peerCertificateRequired
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
            kind = .alertReceived(gnutls_alert_get_name(gnutls_alert_get(session)).map { String(cString: $0) } ?? "unknown alert")
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR, GNUTLS_E_CERTIFICATE_ERROR:
            let status = verificationData == nil ? gnutls_session_get_verify_cert_status(session) : verificationStatus
            var datum = gnutls_datum_t(data: nil, size: 0)
            var description = ""
            if status != 0, gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &datum, 0) >= 0 {
                description = String(decoding: takeBytes(datum), as: UTF8.self)
                cgnutls_free(datum.data)
            }
            kind = .certificateVerification(status: status, text: description)
        case GNUTLS_E_NO_CERTIFICATE_FOUND, GNUTLS_E_CERTIFICATE_REQUIRED:
            kind = .peerCertificateRequired
        case GNUTLS_E_PREMATURE_TERMINATION:
            kind = .prematureEOF
        case GNUTLS_E_UNEXPECTED_PACKET_LENGTH where io.endOfInput:
            // A record cut short by the end of the transport.
            kind = .prematureEOF
        default:
            kind = .protocolError
        }
        return CoreTLSFailure(kind: kind, code: rc, name: name, text: text, function: function)
    }

    // MARK: What was negotiated

    /// `TLS1.3`, `TLS1.2`.
    package var protocolVersion: String {
        gnutls_protocol_get_name(gnutls_protocol_get_version(session)).map { String(cString: $0) } ?? "unknown"
    }

    /// The cipher suite's IANA name (`TLS_AES_256_GCM_SHA384`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`).
    package var cipherSuite: String {
        gnutls_ciphersuite_get(session).map { String(cString: $0) } ?? "unknown"
    }

    /// The ALPN protocol both sides agreed on.
    package var alpnProtocol: String? {
        var datum = gnutls_datum_t(data: nil, size: 0)
        guard gnutls_alpn_get_selected_protocol(session, &datum) >= 0 else { return nil }
        return String(decoding: takeBytes(datum), as: UTF8.self)
    }

    /// The SNI name the client sent (server side), whatever its length: a name over 255
    /// bytes (longer than any DNS name) is returned whole, for the caller to judge.
    package var requestedServerName: String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        var size = buffer.count
        var type: UInt32 = 0
        var rc = gnutls_server_name_get(session, &buffer, &size, &type, 0)
        if rc == GNUTLS_E_SHORT_MEMORY_BUFFER {
            // `size` now holds the length GnuTLS needs (bounded by the ClientHello's size).
            buffer = [UInt8](repeating: 0, count: size + 1)
            size = buffer.count
            rc = gnutls_server_name_get(session, &buffer, &size, &type, 0)
        }
        guard rc >= 0, type == GNUTLS_NAME_DNS.rawValue else { return nil }
        return String(decoding: buffer.prefix(size).prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Whether the session was resumed from a ticket or cached session.
    package var isResumed: Bool { gnutls_session_is_resumed(session) != 0 }

    /// Whether GnuTLS verified the chain in ``peerCertificates`` during this handshake, with
    /// the context's trust list, and accepted it: verification was requested
    /// (gnutls_session_set_verify_cert2 fails the handshake on any status bit), the
    /// handshake completed, and it was a full one. A resumed session restores the peer's
    /// certificates from the ticket without verifying them again; a chain GnuTLS accepted in
    /// an earlier handshake (``peerChainAcceptedEarlier``) was not verified in this one.
    package var peerChainVerifiedInHandshake: Bool {
        verifiesPeerInHandshake && handshakeComplete && !isResumed && !peerChainAcceptedEarlier
    }

    /// The OCSP response the server stapled (clients), DER; `nil` when none was sent.
    /// The datum belongs to the session (`gnutls_ocsp_status_request_get`): copied, not freed.
    package var stapledOCSPResponse: [UInt8]? {
        var datum = gnutls_datum_t(data: nil, size: 0)
        guard gnutls_ocsp_status_request_get(session, &datum) >= 0 else { return nil }
        let bytes = takeBytes(datum)
        return bytes.isEmpty ? nil : bytes
    }

    /// The certificates the peer sent, leaf first, as DER.
    package var peerCertificates: [[UInt8]] {
        if let presentedInHandshake { return presentedInHandshake }
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count) else { return [] }
        return (0..<Int(count)).map { takeBytes(list[$0]) }
    }

    /// Data that resumes this session later (client), once the server sent what resumption
    /// needs: a TLS 1.3 ticket arrives after the handshake, so this is `nil` until then.
    package var resumptionData: [UInt8]? {
        guard handshakeComplete else { return nil }
        if gnutls_protocol_get_version(session) == GNUTLS_TLS1_3,
           gnutls_session_get_flags(session) & UInt32(GNUTLS_SFLAGS_SESSION_TICKET.rawValue) == 0 {
            return nil
        }
        return try? exportDatum("gnutls_session_get_data2") { gnutls_session_get_data2(session, $0) }
    }
}

