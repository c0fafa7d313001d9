import Foundation
import GnuTLSCore

/// Connection-independent TLS state built once from a ``TLSConfiguration``: GnuTLS
/// credentials (identities, trust list, CRLs), the priority cache, the session-ticket key
/// and the chain verifier. Share one context across every connection it serves.
public final class TLSContext: Sendable {
    /// The configuration this context was built from.
    public let configuration: TLSConfiguration
    package let handle: TLSContextHandle
    /// The Swift verifier run on every peer chain (nil when verification is off).
    public let verifier: Verifier?
    /// CRLs with more entries than this are checked by ``verifier`` only, not handed to
    /// GnuTLS's trust list too (whose import is quadratic in the entries).
    package static let gnutlsCRLEntryLimit = 1_000
    /// Client-side resumption data by server name and port.
    package let sessionCache: SessionCache
    /// OCSP checks of peer chains, with the online answers cache they share.
    public let revocationChecker: RevocationChecker
    /// What the configuration means to GnuTLS and to the Swift verifier.
    let mapping: TLSPolicyMapping
    /// The chains the Swift verifier accepted (nil when verification or the cache is off).
    public let verifiedChainCache: VerifiedChainCache?
    /// Identifies the anchors and CRLs in the verified-chain cache's keys.
    let trustDigest: [UInt8]

    /// Validates `configuration` (keys match certificates, chains are in order, a server has
    /// an identity) and builds the GnuTLS objects.
    /// - Throws: ``GnuTLSError`` `.invalidArgument` naming what is wrong.
    public init(configuration: TLSConfiguration) throws {
        self.configuration = configuration
        if configuration.role == .server && configuration.identities.isEmpty {
            throw GnuTLSError(.invalidArgument, "a TLS server configuration needs at least one identity (certificate chain and key)")
        }
        guard configuration.minimumVersion <= configuration.maximumVersion else {
            throw GnuTLSError(.invalidArgument, "minimum TLS version \(configuration.minimumVersion) is above the maximum \(configuration.maximumVersion)")
        }
        for identity in configuration.identities {
            let leaf = identity.leaf
            guard identity.keyMatchesLeaf else {
                throw GnuTLSError(.keyMismatch, "the private key does not match certificate '\(leaf.subject)'")
            }
            for (child, parent) in zip(identity.chain, identity.chain.dropFirst()) where !parent.subject.matches(child.issuer) {
                throw GnuTLSError(.invalidArgument, "the certificate chain is out of order: '\(child.subject)' is issued by '\(child.issuer)', but the next certificate is '\(parent.subject)'")
            }
        }
        let mapping = try TLSPolicyMapping(configuration)
        var settings = CoreTLSSettings(role: configuration.role.core, priority: mapping.priority)
        settings.identities = try configuration.identities.map { identity in
            (chain: identity.chain.map(\.derEncoded), key: try coreKeyHandle(for: identity.key))
        }
        for (index, identity) in configuration.identities.enumerated() {
            if let source = identity.ocspStapleSource {
                guard source.identity.leaf == identity.leaf else {
                    throw GnuTLSError(.invalidArgument, "the OCSP staple source of '\(identity.leaf.subject)' is about another certificate, '\(source.identity.leaf.subject)'")
                }
                settings.ocspStapleStores[index] = source.store
                continue
            }
            guard let response = identity.ocspResponse else { continue }
            try OCSPStapling.check(response, for: identity, trust: configuration.trustStore)
            settings.ocspStaples[index] = response.derEncoded
        }
        let trust = configuration.trustStore ?? TrustStore.system
        let verifier = mapping.verifiesPeer ? try Verifier(trustStore: trust) : nil
        if let verifier {
            // GnuTLS verifies in the handshake against exactly the verifier's anchors (the
            // system's read and parsed once, in the verifier), so the signatures GnuTLS checked
            // there need no second check in Swift (`verifyPeerChain`).
            settings.trustAnchors = verifier.anchors.map(\.derEncoded)
            // Revocation is decided by the Swift verifier (`verifier`), which runs on every
            // handshake, resumed ones included, before any application byte is released, from
            // the CRLs parsed once into dictionaries. GnuTLS's trust list gets only small CRLs
            // as a second opinion: its importer is quadratic in the entries (100,000 would take
            // minutes in every context built).
            settings.crls = configuration.revocation == .disabledInsecure
                ? [] : trust.crls.filter { $0.entries.count <= Self.gnutlsCRLEntryLimit }.map(\.derEncoded)
        }
        settings.clientCertificates = configuration.clientCertificates.core
        settings.alpn = configuration.applicationProtocols
        settings.sessionTickets = configuration.sessionResumption
        settings.profile = mapping.profile
        let verifiedChainCache = verifier == nil ? nil : configuration.chainCache.makeCache()
        let trustDigest = verifiedChainCache == nil ? [] : TLSContext.trustDigest(verifier)
        if let verifiedChainCache {
            // A chain GnuTLS accepted before, under the same trust, CRLs and policy, is not
            // verified by GnuTLS again in the handshake (VerifiedChainCache says what is still checked).
            settings.acceptedChains = AcceptedChainLookup(cache: verifiedChainCache, trustDigest: trustDigest, mapping: mapping)
        }
        self.handle = try TLSContextHandle(settings)
        self.verifier = verifier
        self.mapping = mapping
        self.sessionCache = SessionCache()
        self.revocationChecker = RevocationChecker(mode: configuration.ocspRevocation)
        self.verifiedChainCache = verifiedChainCache
        self.trustDigest = trustDigest
    }

    /// The policy peers are verified with: for a client, the server's purpose and name;
    /// for a server, the client purpose.
    public func verificationPolicy(forHost host: String?) -> VerificationPolicy {
        mapping.verificationPolicy(forHost: host)
    }
}

/// Resumption data a client keeps per server, shared by the connections of one context,
/// each with the verification of the chain its session was authenticated with.
package final class SessionCache: @unchecked Sendable {  // `entries` is only touched under `lock`.
    /// One server's session.
    package struct Entry: Sendable {
        /// GnuTLS's session data (`gnutls_session_get_data2`).
        package var data: [UInt8]
        /// What this context's Swift verifier accepted for the session's server (nil when
        /// the connection had no verified chain).
        package var verification: SessionVerification?
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]

    package func entry(for key: String) -> Entry? {
        lock.lock(); defer { lock.unlock() }
        return entries[key]
    }

    package func data(for key: String) -> [UInt8]? { entry(for: key)?.data }

    package func store(_ data: [UInt8], verification: SessionVerification? = nil, for key: String) {
        lock.lock(); defer { lock.unlock() }
        if entries.count > 1024 { entries.removeAll() }
        entries[key] = Entry(data: data, verification: verification)
    }
}

extension TLSContext {
    /// A new engine for one connection. `host` is the name (or IP literal) a client
    /// connects to; servers pass `nil`.
    package func makeEngine(host: String?) throws -> TLSEngine {
        try makeConnectionEngine(host: host).engine
    }

    /// A new engine for one connection, and for a client the verification of the session it
    /// offers to resume (from ``sessionCache``): pass it to
    /// ``verifyPeerChain(_:parsed:host:verifiedInHandshake:resumedSession:now:)`` when the
    /// engine resumed.
    package func makeConnectionEngine(host: String?) throws -> (engine: TLSEngine, offeredSession: SessionVerification?) {
        let verification = mapping.engineVerification(host: host)
        let offered = resumes ? verification.serverName.flatMap { sessionCache.entry(for: $0) } : nil
        return (try engine(verification, sessionData: offered?.data), offered?.verification)
    }

    /// A new engine for one connection that offers `sessionData` (a client with session
    /// resumption on; ignored otherwise) instead of what the session cache holds.
    package func makeEngine(host: String?, offering sessionData: [UInt8]?) throws -> TLSEngine {
        try engine(mapping.engineVerification(host: host), sessionData: resumes ? sessionData : nil)
    }

    /// Whether connections offer sessions to resume (clients with resumption on).
    private var resumes: Bool { configuration.role == .client && configuration.sessionResumption }

    private func engine(_ verification: TLSPolicyMapping.EngineVerification, sessionData: [UInt8]?) throws -> TLSEngine {
        try TLSEngine(
            context: handle, serverName: verification.serverName, verifyHostname: verification.hostname,
            verifyIP: verification.ip, verifyPeer: verification.verify, purposeOID: verification.purposeOID,
            sessionData: sessionData)
    }
}
