/// Where connections get their ``TLSContext``: a server and a client consult their provider
/// once for every new connection, so a provider that changes its answer rotates
/// certificates, trust anchors and CRLs without a restart. A connection keeps the context
/// it started with until it closes.
///
/// A plain ``TLSContext`` is a provider that always answers itself (a fixed context). The
/// `NIOGnuTLS` module adds `TLSContextReloader` (reloads on demand from a closure) and
/// `TLSFileWatcher` (reloads when files change, as a swift-service-lifecycle `Service`).
///
/// Several server identities (selected by the client's SNI name) live in one context:
/// GnuTLS picks among the identities of the context a connection got. A provider renews
/// them through the same path, one by one: `TLSFileWatcher` reloads each identity from its
/// own files, and a refused renewal of one name keeps that name's previous identity while
/// the other names' renewals are served.
public protocol TLSContextProvider: Sendable {
    /// The context for a connection that starts now. Called on an event loop for every new
    /// connection: return a context built earlier, never build one here.
    ///
    /// - Throws: when no context can be given; the connection is closed with this error.
    func currentContext() throws -> TLSContext
}

extension TLSContext: TLSContextProvider {
    /// This context: a fixed context never changes.
    public func currentContext() -> TLSContext { self }
}
