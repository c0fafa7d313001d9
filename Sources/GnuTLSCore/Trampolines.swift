import CGnuTLS
import Glibc

/// The Swift-owned byte queues a session reads from and writes to. GnuTLS never touches a
/// socket: the push/pull trampolines below only move bytes between these buffers and
/// GnuTLS, and never block, await or call user code.
final class EngineIO {
    var session: gnutls_session_t?
    /// Ciphertext received from the peer, not yet consumed by GnuTLS.
    var inbound: [UInt8] = []
    var inboundOffset = 0
    /// Ciphertext the caller lends while `TLSEngine.withReceived` runs: read in place after
    /// `inbound`, and copied into `inbound` only if GnuTLS leaves some of it unread.
    var lent = UnsafeRawBufferPointer(start: nil, count: 0)
    var lentOffset = 0
    /// Ciphertext GnuTLS produced, not yet taken by the transport.
    var outbound: [UInt8] = []
    /// While `TLSEngine.withOutput` runs, what GnuTLS pushes goes here (the transport's own
    /// buffer) instead of `outbound`: a byte copy, never anything else.
    var sink: ((UnsafeRawBufferPointer) -> Void)?
    /// The transport reached end of file: the pull side reports 0 once `inbound` is drained.
    var endOfInput = false

    var queuedAvailable: Int { inbound.count - inboundOffset }
    var inboundAvailable: Int { queuedAvailable + lent.count - lentOffset }

    /// Ends a loan: the lent bytes GnuTLS has not read are copied into `inbound`.
    func keepLent() {
        if lentOffset < lent.count {
            inbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: lent[lentOffset...]))
        }
        lent = UnsafeRawBufferPointer(start: nil, count: 0)
        lentOffset = 0
    }

    /// Hands `bytes` GnuTLS produced to the sink, or queues them.
    func push(_ bytes: UnsafeRawBufferPointer) {
        if let sink {
            sink(bytes)
        } else {
            outbound.append(contentsOf: bytes)
        }
    }

    /// The most capacity a drained queue keeps: queues start empty and grow with what the
    /// peer and GnuTLS actually send, and give larger bursts back once drained.
    static let retainedCapacity = 4096
}

/// gnutls_push_func: appends to the outbound queue (or the transport's sink); never fails.
let enginePush: gnutls_push_func = { pointer, data, size in
    let io = Unmanaged<EngineIO>.fromOpaque(pointer!).takeUnretainedValue()
    if let data, size > 0 {
        io.push(UnsafeRawBufferPointer(start: data, count: size))
    }
    return size
}

/// gnutls_vec_push_func: appends every vector in one call (GnuTLS writes a record as
/// header + payload).
let engineVecPush: gnutls_vec_push_func = { pointer, vectors, count in
    let io = Unmanaged<EngineIO>.fromOpaque(pointer!).takeUnretainedValue()
    var total = 0
    for index in 0..<Int(count) {
        let vector = vectors![index]
        if let base = vector.iov_base, vector.iov_len > 0 {
            io.push(UnsafeRawBufferPointer(start: base, count: vector.iov_len))
            total += vector.iov_len
        }
    }
    return total
}

/// gnutls_pull_func: copies from the inbound queue, then from the lent bytes; EAGAIN when
/// both are empty (the session is GNUTLS_NONBLOCK), 0 at end of input.
let enginePull: gnutls_pull_func = { pointer, data, size in
    let io = Unmanaged<EngineIO>.fromOpaque(pointer!).takeUnretainedValue()
    guard let data else { return 0 }
    var copied = 0
    let queued = io.queuedAvailable
    if queued > 0 {
        copied = min(size, queued)
        io.inbound.withUnsafeBytes { source in
            data.copyMemory(from: source.baseAddress! + io.inboundOffset, byteCount: copied)
        }
        io.inboundOffset += copied
        if io.inboundOffset == io.inbound.count {
            io.inbound.removeAll(keepingCapacity: io.inbound.capacity <= EngineIO.retainedCapacity)
            io.inboundOffset = 0
        }
    }
    let lent = io.lent.count - io.lentOffset
    if copied < size && lent > 0 {
        let count = min(size - copied, lent)
        (data + copied).copyMemory(from: io.lent.baseAddress! + io.lentOffset, byteCount: count)
        io.lentOffset += count
        copied += count
    }
    if copied == 0 {
        if io.endOfInput { return 0 }
        gnutls_transport_set_errno(io.session, EAGAIN)
        return -1
    }
    return copied
}

/// gnutls_pull_timeout_func: data (or end of input) is either there or not; never waits.
let enginePullTimeout: gnutls_pull_timeout_func = { pointer, _ in
    let io = Unmanaged<EngineIO>.fromOpaque(pointer!).takeUnretainedValue()
    if io.inboundAvailable > 0 || io.endOfInput { return 1 }
    gnutls_transport_set_errno(io.session, EAGAIN)
    return -1
}

/// gnutls_certificate_verify_function (gnutls_session_set_verify_function): the session's
/// pointer (gnutls_session_set_ptr) is its engine, which outlives the session. The engine
/// asks the context's verified-chain cache (a dictionary lookup under a lock, no user code)
/// and otherwise has GnuTLS verify. Returns 0 to go on, or the negative error GnuTLS ends
/// the handshake with.
func engineVerifyPeer(_ session: gnutls_session_t?) -> Int32 {
    guard let session, let pointer = gnutls_session_get_ptr(session) else { return GNUTLS_E_INTERNAL_ERROR }
    return Unmanaged<TLSEngine>.fromOpaque(pointer).takeUnretainedValue().verifyPeerInHandshake()
}

// MARK: Keys outside GnuTLS (gnutls_privkey_import_ext4)

/// gnutls_privkey_sign_hash_func: hands the digest GnuTLS computed to the Swift signer and
/// copies its signature into a datum GnuTLS owns. A thrown error is kept on the signer (for
/// the calling thread) and GnuTLS gets `GNUTLS_E_PK_SIGN_FAILED`.
let externalSignHash: gnutls_privkey_sign_hash_func = { _, algorithm, userdata, _, hash, signature in
    let signer = Unmanaged<CoreExternalSigner>.fromOpaque(userdata!).takeUnretainedValue()
    return signer.signFromGnuTLS(algorithm: algorithm, input: hash.map { takeBytes($0.pointee) } ?? [], prehashed: true, into: signature)
}

/// gnutls_privkey_sign_data_func: the same for algorithms that sign the message itself (Ed25519).
let externalSignData: gnutls_privkey_sign_data_func = { _, algorithm, userdata, _, data, signature in
    let signer = Unmanaged<CoreExternalSigner>.fromOpaque(userdata!).takeUnretainedValue()
    return signer.signFromGnuTLS(algorithm: algorithm, input: data.map { takeBytes($0.pointee) } ?? [], prehashed: false, into: signature)
}

/// gnutls_privkey_info_func: the key's public-key algorithm, size, and which signature
/// algorithms it can make (GnuTLS asks before it negotiates one).
let externalInfo: gnutls_privkey_info_func = { _, flags, userdata in
    let signer = Unmanaged<CoreExternalSigner>.fromOpaque(userdata!).takeUnretainedValue()
    return signer.info(flags: flags)
}

/// gnutls_pin_callback_t: copies the PIN of a ``CorePINSource`` into GnuTLS's buffer, once
/// per operation: a second attempt (the token refused the PIN) is refused here, so a wrong
/// PIN reaches the token at most once and never locks it by silent retries.
let pinCallback: gnutls_pin_callback_t = { userdata, attempt, tokenURL, tokenLabel, flags, pin, pinMax in
    let source = Unmanaged<CorePINSource>.fromOpaque(userdata!).takeUnretainedValue()
    let token = tokenLabel.map { String(cString: $0) } ?? tokenURL.map { String(cString: $0) } ?? "token"
    return source.supply(attempt: Int(attempt), token: token, flags: flags, into: pin, capacity: pinMax)
}

/// The global PIN function: answers from the source set for the calling thread, if any.
let globalPINCallback: gnutls_pin_callback_t = { _, attempt, tokenURL, tokenLabel, flags, pin, pinMax in
    guard let source = PKCS11.globalSource() else { return GNUTLS_E_PKCS11_PIN_ERROR }
    let token = tokenLabel.map { String(cString: $0) } ?? tokenURL.map { String(cString: $0) } ?? "token"
    return source.supply(attempt: Int(attempt), token: token, flags: flags, into: pin, capacity: pinMax)
}

/// gnutls_status_request_ocsp_func: copies the store's current response into memory from
/// gnutls_malloc, which GnuTLS frees after sending it (gnutls_certificate_set_ocsp_status_request_function:
/// "The response must be a value allocated using gnutls_malloc(), and will be
/// deinitialized by the caller"). No current response: GNUTLS_E_NO_CERTIFICATE_STATUS,
/// and the handshake goes on without a staple.
let ocspStapleCallback: gnutls_status_request_ocsp_func = { _, pointer, response in
    guard let pointer, let response else { return GNUTLS_E_NO_CERTIFICATE_STATUS }
    let store = Unmanaged<OCSPStapleStore>.fromOpaque(pointer).takeUnretainedValue()
    guard let der = store.current(), !der.isEmpty, let memory = cgnutls_malloc(der.count) else {
        return GNUTLS_E_NO_CERTIFICATE_STATUS
    }
    der.withUnsafeBytes { bytes in
        if let base = bytes.baseAddress { memory.copyMemory(from: base, byteCount: bytes.count) }
    }
    response.pointee = gnutls_datum_t(data: memory.assumingMemoryBound(to: UInt8.self), size: UInt32(der.count))
    return 0
}
