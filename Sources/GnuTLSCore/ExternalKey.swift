import CGnuTLS
import Glibc
import Synchronization

/// A signature scheme a key can be asked for, independent of where the key lives.
///
/// ECDSA and RSA sign a digest of the message made with ``digest``; Ed25519 signs the
/// message itself. ECDSA signatures are DER `Ecdsa-Sig-Value`s, as X.509 and TLS carry them.
package enum CoreSignatureAlgorithm: String, Sendable, Hashable, CaseIterable {
    case ecdsaSHA256, ecdsaSHA384, ecdsaSHA512
    case rsaPKCS1SHA256, rsaPKCS1SHA384, rsaPKCS1SHA512
    case rsaPSSSHA256, rsaPSSSHA384, rsaPSSSHA512
    case ed25519

    /// The digest the message is hashed with first; `nil` for Ed25519 (no prehash).
    var digest: gnutls_digest_algorithm_t? {
        switch self {
        case .ecdsaSHA256, .rsaPKCS1SHA256, .rsaPSSSHA256: return GNUTLS_DIG_SHA256
        case .ecdsaSHA384, .rsaPKCS1SHA384, .rsaPSSSHA384: return GNUTLS_DIG_SHA384
        case .ecdsaSHA512, .rsaPKCS1SHA512, .rsaPSSSHA512: return GNUTLS_DIG_SHA512
        case .ed25519: return nil
        }
    }

    /// The size of the digest in bytes; 0 for Ed25519.
    package var digestLength: Int { digest.map { Int(gnutls_hash_get_len($0)) } ?? 0 }

    /// The public-key family that makes this signature.
    package var keyFamily: String {
        switch self {
        case .ecdsaSHA256, .ecdsaSHA384, .ecdsaSHA512: return "ECDSA"
        case .rsaPKCS1SHA256, .rsaPKCS1SHA384, .rsaPKCS1SHA512, .rsaPSSSHA256, .rsaPSSSHA384, .rsaPSSSHA512: return "RSA"
        case .ed25519: return "Ed25519"
        }
    }

    /// The GnuTLS algorithm a software or token key is asked to sign with.
    var gnutls: gnutls_sign_algorithm_t {
        switch self {
        case .ecdsaSHA256: return GNUTLS_SIGN_ECDSA_SHA256
        case .ecdsaSHA384: return GNUTLS_SIGN_ECDSA_SHA384
        case .ecdsaSHA512: return GNUTLS_SIGN_ECDSA_SHA512
        case .rsaPKCS1SHA256: return GNUTLS_SIGN_RSA_SHA256
        case .rsaPKCS1SHA384: return GNUTLS_SIGN_RSA_SHA384
        case .rsaPKCS1SHA512: return GNUTLS_SIGN_RSA_SHA512
        case .rsaPSSSHA256: return GNUTLS_SIGN_RSA_PSS_RSAE_SHA256
        case .rsaPSSSHA384: return GNUTLS_SIGN_RSA_PSS_RSAE_SHA384
        case .rsaPSSSHA512: return GNUTLS_SIGN_RSA_PSS_RSAE_SHA512
        case .ed25519: return GNUTLS_SIGN_EDDSA_ED25519
        }
    }

    /// The scheme a GnuTLS signature algorithm stands for (TLS 1.3's curve-bound ECDSA
    /// code points and both RSA-PSS key types included); `nil` for anything else (SHA-1,
    /// `GNUTLS_SIGN_RSA_RAW`, which is resolved from the DigestInfo instead).
    init?(gnutls algorithm: gnutls_sign_algorithm_t) {
        switch algorithm {
        case GNUTLS_SIGN_ECDSA_SHA256, GNUTLS_SIGN_ECDSA_SECP256R1_SHA256: self = .ecdsaSHA256
        case GNUTLS_SIGN_ECDSA_SHA384, GNUTLS_SIGN_ECDSA_SECP384R1_SHA384: self = .ecdsaSHA384
        case GNUTLS_SIGN_ECDSA_SHA512, GNUTLS_SIGN_ECDSA_SECP521R1_SHA512: self = .ecdsaSHA512
        case GNUTLS_SIGN_RSA_SHA256: self = .rsaPKCS1SHA256
        case GNUTLS_SIGN_RSA_SHA384: self = .rsaPKCS1SHA384
        case GNUTLS_SIGN_RSA_SHA512: self = .rsaPKCS1SHA512
        case GNUTLS_SIGN_RSA_PSS_RSAE_SHA256, GNUTLS_SIGN_RSA_PSS_SHA256: self = .rsaPSSSHA256
        case GNUTLS_SIGN_RSA_PSS_RSAE_SHA384, GNUTLS_SIGN_RSA_PSS_SHA384: self = .rsaPSSSHA384
        case GNUTLS_SIGN_RSA_PSS_RSAE_SHA512, GNUTLS_SIGN_RSA_PSS_SHA512: self = .rsaPSSSHA512
        case GNUTLS_SIGN_EDDSA_ED25519: self = .ed25519
        default: return nil
        }
    }

    /// The `DigestInfo` prefix (RFC 8017 section 9.2, note 1) that precedes a digest when
    /// GnuTLS asks for a raw RSA PKCS#1 v1.5 signature (`GNUTLS_SIGN_RSA_RAW`).
    static let digestInfoPrefixes: [(CoreSignatureAlgorithm, [UInt8])] = [
        (.rsaPKCS1SHA256, [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]),
        (.rsaPKCS1SHA384, [0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30]),
        (.rsaPKCS1SHA512, [0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40]),
    ]

    /// Splits a `DigestInfo` into its scheme and digest; `nil` for any other digest (MD5+SHA-1
    /// of TLS 1.0, SHA-1), which this library never asks a key for.
    static func fromDigestInfo(_ bytes: [UInt8]) -> (CoreSignatureAlgorithm, [UInt8])? {
        for (algorithm, prefix) in digestInfoPrefixes
        where bytes.count == prefix.count + algorithm.digestLength && bytes.starts(with: prefix) {
            return (algorithm, Array(bytes.dropFirst(prefix.count)))
        }
        return nil
    }
}

/// The Swift side of a key GnuTLS reaches through `gnutls_privkey_import_ext4`: its public
/// key, the schemes it can sign with, and the signing closure.
///
/// GnuTLS calls the closure synchronously on the thread that asked for a signature (a
/// certificate being signed, a TLS handshake on its event loop). A thrown error is kept for
/// that thread and rethrown by the Swift code that made the GnuTLS call (``takeError()``).
package final class CoreExternalSigner: @unchecked Sendable {  // immutable but for `errors`, guarded by its mutex
    package typealias Sign = @Sendable (_ algorithm: CoreSignatureAlgorithm, _ input: [UInt8]) throws -> [UInt8]

    let publicKey: PublicKeyHandle
    let pk: gnutls_pk_algorithm_t
    let bits: UInt32
    let algorithms: Set<CoreSignatureAlgorithm>
    private let sign: Sign
    /// Errors thrown by `sign`, by the thread GnuTLS called it on.
    private let errors = Mutex<[UInt: any Error]>([:])

    /// - Parameters:
    ///   - spki: the key's DER `SubjectPublicKeyInfo`.
    ///   - algorithms: the schemes `sign` accepts.
    package init(spki: [UInt8], algorithms: Set<CoreSignatureAlgorithm>, sign: @escaping Sign) throws {
        publicKey = try PublicKeyHandle(spki: spki)
        var bits: UInt32 = 0
        let pk = gnutls_pubkey_get_pk_algorithm(publicKey.raw, &bits)
        guard pk >= 0 else { throw GnuTLSError.from(pk, function: "gnutls_pubkey_get_pk_algorithm") }
        self.pk = gnutls_pk_algorithm_t(UInt32(pk))
        self.bits = bits
        self.algorithms = algorithms
        self.sign = sign
    }

    private static var currentThread: UInt { UInt(pthread_self()) }

    /// The error the signer threw on this thread during the last GnuTLS call, if any; cleared.
    package func takeError() -> (any Error)? {
        errors.withLock { $0.removeValue(forKey: Self.currentThread) }
    }

    private func remember(_ error: any Error) {
        errors.withLock { $0[Self.currentThread] = error }
    }

    /// Called by the sign trampolines: resolves the scheme, calls the Swift signer, and copies
    /// the signature into `signature` (allocated with `gnutls_malloc`: GnuTLS frees it).
    func signFromGnuTLS(algorithm: gnutls_sign_algorithm_t, input: [UInt8], prehashed: Bool,
                        into signature: UnsafeMutablePointer<gnutls_datum_t>?) -> Int32 {
        // An error left by an earlier call on this thread that nobody took (a failed TLS
        // handshake: the engine reports GnuTLS's code) must not be blamed on this one.
        _ = takeError()
        var scheme = CoreSignatureAlgorithm(gnutls: algorithm)
        var input = input
        if scheme == nil, algorithm == GNUTLS_SIGN_RSA_RAW, let (resolved, digest) = CoreSignatureAlgorithm.fromDigestInfo(input) {
            scheme = resolved
            input = digest
        }
        guard let scheme, algorithms.contains(scheme) else {
            let name = gnutls_sign_get_name(algorithm).map { String(cString: $0) } ?? "algorithm \(algorithm.rawValue)"
            remember(GnuTLSError(.mechanismNotSupported, "the signing key was asked for a \(name) signature, which it does not offer"))
            return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM
        }
        guard prehashed == (scheme.digest != nil), !prehashed || input.count == scheme.digestLength else {
            remember(GnuTLSError(.library, "GnuTLS asked for a \(scheme.rawValue) signature over \(input.count) bytes, which is not a digest of that scheme"))
            return GNUTLS_E_PK_SIGN_FAILED
        }
        let bytes: [UInt8]
        do {
            bytes = try sign(scheme, input)
        } catch {
            remember(error)
            return GNUTLS_E_PK_SIGN_FAILED
        }
        guard !bytes.isEmpty, let signature, let buffer = cgnutls_malloc(bytes.count) else {
            remember(GnuTLSError(.signerFailed, "the signing key returned an empty signature"))
            return GNUTLS_E_PK_SIGN_FAILED
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        signature.pointee = gnutls_datum_t(data: buffer.assumingMemoryBound(to: UInt8.self), size: UInt32(bytes.count))
        return 0
    }

    /// Signs without going through GnuTLS (a caller asking the key itself for a signature).
    func signDirectly(algorithm: CoreSignatureAlgorithm, input: [UInt8]) throws -> [UInt8] {
        guard algorithms.contains(algorithm) else {
            throw GnuTLSError(.mechanismNotSupported, "the signing key does not offer \(algorithm.rawValue) signatures")
        }
        return try sign(algorithm, input)
    }

    /// Called by the info trampoline (`gnutls_privkey_info_func`).
    func info(flags: UInt32) -> Int32 {
        if flags & UInt32(GNUTLS_PRIVKEY_INFO_PK_ALGO) != 0 { return Int32(pk.rawValue) }
        if flags & UInt32(GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS) != 0 { return Int32(bits) }
        if flags & UInt32(GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO) != 0 {
            let asked = gnutls_sign_algorithm_t(cgnutls_flags_to_sign_algo(flags))
            guard let scheme = CoreSignatureAlgorithm(gnutls: asked) else { return 0 }
            return algorithms.contains(scheme) ? 1 : 0
        }
        // GNUTLS_PRIVKEY_INFO_SIGN_ALGO: no preference; GnuTLS picks from the key type.
        return 0
    }
}

extension PrivateKeyHandle {
    /// A key whose signatures `signer` makes, imported with `gnutls_privkey_import_ext4`.
    /// The handle keeps `signer` alive; GnuTLS gets it as unretained user data and no deinit
    /// function (this object owns it, not GnuTLS).
    package static func external(_ signer: CoreExternalSigner) throws -> PrivateKeyHandle {
        try PrivateKeyHandle(external: signer)
    }

    /// Imports `signer` into a fresh `gnutls_privkey_t` (for this handle, or for TLS
    /// credentials, which take ownership of the key they are given).
    static func importExternal(_ signer: CoreExternalSigner) throws -> gnutls_privkey_t {
        var key: gnutls_privkey_t?
        try check(gnutls_privkey_init(&key), "gnutls_privkey_init")
        guard let key else { throw GnuTLSError(.library, "gnutls_privkey_init returned no key") }
        let rc = gnutls_privkey_import_ext4(
            key, Unmanaged.passUnretained(signer).toOpaque(), externalSignData, externalSignHash, nil, nil,
            externalInfo, 0)
        guard rc >= 0 else {
            gnutls_privkey_deinit(key)
            throw GnuTLSError.from(rc, function: "gnutls_privkey_import_ext4", context: "importing an external signing key")
        }
        return key
    }
}
