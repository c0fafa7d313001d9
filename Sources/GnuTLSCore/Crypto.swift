import CGnuTLS

/// Digests and random bytes from GnuTLS's crypto backend (nettle).
package enum CoreCrypto {
    /// SHA-256 of `bytes`.
    package static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        digest(GNUTLS_DIG_SHA256, bytes)
    }

    /// SHA-1 of `bytes` (key identifiers only: RFC 5280 section 4.2.1.2, method 1).
    package static func sha1(_ bytes: [UInt8]) -> [UInt8] {
        digest(GNUTLS_DIG_SHA1, bytes)
    }

    private static func digest(_ algorithm: gnutls_digest_algorithm_t, _ bytes: [UInt8]) -> [UInt8] {
        let length = Int(gnutls_hash_get_len(algorithm))
        var out = [UInt8](repeating: 0, count: length)
        let rc = bytes.withUnsafeBytes { input in
            out.withUnsafeMutableBytes { gnutls_hash_fast(algorithm, input.baseAddress, input.count, $0.baseAddress) }
        }
        // gnutls_hash_fast only fails for an unknown algorithm; SHA-1/256 are always built in.
        precondition(rc == 0, "gnutls_hash_fast failed for a built-in digest: \(rc)")
        return out
    }

    /// `count` bytes from GnuTLS's nonce-level random generator (serial numbers).
    package static func random(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let rc = out.withUnsafeMutableBytes { gnutls_rnd(GNUTLS_RND_NONCE, $0.baseAddress, count) }
        try check(rc, "gnutls_rnd", "generating \(count) random bytes")
        return out
    }
}
