import Foundation
import GnuTLSCore

/// An OCSP response a server staples that can be replaced while the server runs: give it
/// to ``TLSIdentity/ocspStapleSource`` and GnuTLS asks it on every handshake whose client
/// requests a status (`gnutls_certificate_set_ocsp_status_request_function2`), so a new
/// response reaches the next handshake without rebuilding the ``TLSContext``.
///
/// Only responses that verify for the identity's leaf are stapled (as for
/// ``TLSIdentity/ocspResponse``); a response stops being stapled at its nextUpdate.
/// NIOGnuTLS's `OCSPStapleRefresher` keeps one fresh from the leaf's OCSP responder.
public final class OCSPStapleSource: Hashable, Sendable {
    /// The identity whose leaf the responses are about.
    public let identity: TLSIdentity
    /// Where the leaf's issuer may be found besides the chain.
    public let trustStore: TrustStore?
    package let store = OCSPStapleStore()
    private let state = LockedValue<OCSPResponse?>(nil)

    /// A source for `identity`, stapling `initial` (which must verify) if given.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` when `initial` does not verify.
    public init(identity: TLSIdentity, trustStore: TrustStore? = nil, initial: OCSPResponse? = nil) throws {
        self.identity = identity
        self.trustStore = trustStore
        if let initial { try update(initial) }
    }

    /// Staples `response` from now on, once it verifies for the leaf at `time` (signed by
    /// the issuer or its delegated responder, current, good); otherwise the current
    /// response stays.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` naming why `response` is refused.
    public func update(_ response: OCSPResponse, at time: Date = Date()) throws {
        try OCSPStapling.check(response, for: identity, trust: trustStore, at: time)
        let expiry = response.responses.first?.nextUpdate
        state.withLock { current in
            current = response
            store.set(response.derEncoded, until: expiry)
        }
    }

    /// Stops stapling until the next ``update(_:at:)``.
    public func clear() {
        state.withLock { current in
            current = nil
            store.clear()
        }
    }

    /// The response stapled at `time`: `nil` when none was given or it has expired.
    public func current(at time: Date = Date()) -> OCSPResponse? {
        state.withLock { current in store.current(at: time) == nil ? nil : current }
    }

    /// Two sources are equal when they are the same object.
    public static func == (lhs: OCSPStapleSource, rhs: OCSPStapleSource) -> Bool { lhs === rhs }
    /// Hashes the object's identity, as `==` compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A value behind a lock, for the few mutable fields of otherwise immutable classes.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try lock.withLock { try body(&value) }
    }
}
