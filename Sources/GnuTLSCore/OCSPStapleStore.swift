import CGnuTLS
import Foundation

/// The OCSP response a server currently staples for one identity, replaced while the
/// context serves handshakes (a refresher fetches a new one at half-life). GnuTLS asks for
/// it on every handshake whose client sent status_request, through ``ocspStapleCallback``
/// registered with `gnutls_certificate_set_ocsp_status_request_function2`.
///
/// Thread-safe: handshakes on any event loop read it while one writer replaces it.
package final class OCSPStapleStore: @unchecked Sendable {
    private let lock = NSLock()
    private var der: [UInt8]?
    private var expiry: Date?

    package init() {}

    /// Staples `der` until `expiry` (its nextUpdate; `nil`: until replaced). The caller
    /// has verified it.
    package func set(_ der: [UInt8], until expiry: Date?) {
        lock.withLock {
            self.der = der
            self.expiry = expiry
        }
    }

    /// Stops stapling.
    package func clear() {
        lock.withLock {
            der = nil
            expiry = nil
        }
    }

    /// The response to staple at `now`: `nil` when none is set or it has expired.
    package func current(at now: Date = Date()) -> [UInt8]? {
        lock.withLock {
            guard let der else { return nil }
            if let expiry, expiry <= now { return nil }
            return der
        }
    }
}
