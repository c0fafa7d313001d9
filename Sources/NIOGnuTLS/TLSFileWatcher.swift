import Foundation
import GnuTLS
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// A certificate chain file (PEM, leaf first) and its private key: a key file, optionally
/// protected by a passphrase, or a key on a PKCS#11 token named by its `pkcs11:` URI, with
/// its PIN in a file. One identity a ``TLSFileWatcher`` reloads.
///
/// A key on a token is opened again by its URI at every reload (with the PIN file read
/// again), so a renewal that changes only the chain file, or a new key put on the token
/// under the same URI, is picked up; the token's module must be loaded already (p11-kit's
/// configuration, or `PKCS11Key.loadModule(_:)`).
public struct TLSIdentityFiles: Hashable, Sendable {
    /// The PEM certificate chain, leaf first.
    public var chainPath: String
    /// The PEM private key file, or the `pkcs11:` URI of a key on a token.
    public var keyPath: String
    /// The key file's passphrase, when it is encrypted.
    public var passphrase: String?
    /// For a key on a token: the file whose first line is the token's user PIN.
    public var pinPath: String?

    /// An identity read from `chainPath` and `keyPath` (a file, or a `pkcs11:` URI whose
    /// token PIN is the first line of `pinPath`).
    public init(chainPath: String, keyPath: String, passphrase: String? = nil, pinPath: String? = nil) {
        self.chainPath = chainPath
        self.keyPath = keyPath
        self.passphrase = passphrase
        self.pinPath = pinPath
    }

    /// Whether the key is on a token (``keyPath`` is a `pkcs11:` URI).
    var keyIsOnToken: Bool { keyPath.hasPrefix("pkcs11:") }

    /// The files to watch: the chain, the key file or the PIN file.
    var watchedPaths: [String] {
        keyIsOnToken ? [chainPath] + (pinPath.map { [$0] } ?? []) : [chainPath, keyPath]
    }

    /// Reads the files (and opens a token key by its URI).
    func load() throws -> TLSIdentity {
        guard keyIsOnToken else {
            return try TLSIdentity(chainContentsOfFile: chainPath, keyContentsOfFile: keyPath, passphrase: passphrase)
        }
        let chain = try Certificate.load(contentsOfFile: chainPath)
        guard !chain.isEmpty else {
            throw GnuTLSError(.invalidArgument, "\(chainPath) holds no certificate: a TLS identity needs its certificate chain (leaf first)")
        }
        let pin = try pinPath.map { try PKCS11PIN.file($0) } ?? .none
        return try TLSIdentity(chain: chain, key: try PKCS11Key(uri: keyPath, pin: pin))
    }
}

/// A `TLSContextProvider` that reloads identities (chain + key), trust anchors and CRLs
/// from files when they change, and on demand (``reload()``, e.g. on SIGHUP). As a
/// swift-service-lifecycle `Service`, ``run()`` polls the files every `pollInterval` until
/// graceful shutdown or cancellation.
///
/// A file counts as changed when its inode, device, size or modification time differ from
/// the last attempt and its contents then differ too (a `touch` alone reloads nothing).
/// Several identities (one per SNI name: GnuTLS picks the one a client's SNI name selects)
/// are reloaded one by one, each from its own files: a poll reads again only the identities
/// whose chain, key or PIN file changed, and a renewal of one identity that cannot be read,
/// whose key does not match its certificate, or that makes no valid context is refused
/// for that identity alone. It keeps its previous certificate and key while the other
/// identities' renewals are served; a refusal event (naming that identity's files as its
/// source) comes before the reload event of the others.
///
/// A refused renewal keeps the previous context in service (for the identity it concerns,
/// or entirely when the trust store or a CRL file is broken); the refusal is logged,
/// passed to `onReload` and yielded to ``events()``. When the files are then fixed, the
/// next poll picks them up. Replace files by renaming complete files into place: a
/// poll that sees a new certificate with the old key refuses that half-done state and
/// loads the pair on the next poll.
///
/// ```swift
/// let watcher = try TLSFileWatcher(
///     configuration: .makeServerConfiguration(identity: initialIdentity),
///     identities: [TLSIdentityFiles(chainPath: "/etc/tls/chain.pem", keyPath: "/etc/tls/key.pem")])
/// let server = try await TLSServer.bind(host: "0.0.0.0", port: 8443, contextProvider: watcher, handler: serveOne)
/// try await ServiceGroup(services: [watcher, server], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
public final class TLSFileWatcher: TLSContextProvider, Service, @unchecked Sendable {
    // @unchecked: `states` is guarded by `lock`; `checking` serialises polls and reloads.
    /// The reloader that holds the current context.
    public let reloader: TLSContextReloader
    /// How often ``run()`` looks at the files.
    public let pollInterval: Duration
    /// Every file watched: chains, key files (or PIN files of token keys), the trust store
    /// file and the CRL files.
    public let paths: [String]
    private let lock = NSLock()
    private let checking = NSLock()
    private var states: [String: FileState] = [:]
    /// The identity files, in the order of the context's identities.
    private let identityFiles: [TLSIdentityFiles]
    /// The configuration the identities and files are applied to.
    private let base: TLSConfiguration
    /// The identities served now, one per entry of `identityFiles` (the last good renewal
    /// of each); the reloader's load closure reads them.
    private let served: ServedIdentities

    /// Loads every file once and builds the first context; it must succeed.
    ///
    /// - Parameters:
    ///   - configuration: everything but the files: role, versions, policies, client
    ///     certificate policy, … Its identities are replaced by `identities`; its trust
    ///     store's anchors by `trustStoreFile`'s (when given) and its CRLs by those of
    ///     `crlFiles` (when given). A stapled OCSP response is not carried over.
    ///   - identities: the chain and key files, one pair per identity (empty for a client
    ///     without a certificate).
    ///   - trustStoreFile: a PEM bundle of trust anchors (the CAs a server's clients or a
    ///     client's servers must chain to).
    ///   - crlFiles: PEM or DER CRL files checked against peer chains.
    ///   - pollInterval: how often ``run()`` looks for changes.
    ///   - logger: reloads (info) and refusals (error) with ``TLSLogKey`` metadata, the
    ///     watched paths as ``TLSLogKey/reloadSource``; silent by default.
    ///   - metrics: reload counts and the served certificates' expiry gauge; `nil`: none.
    ///   - onReload: called after every reload attempt.
    /// - Throws: ``TLSReloadError`` when the files do not make a valid first context.
    public init(
        configuration: TLSConfiguration,
        identities: [TLSIdentityFiles],
        trustStoreFile: String? = nil,
        crlFiles: [String] = [],
        pollInterval: Duration = .seconds(5),
        logger: Logger? = nil, metrics: TLSMetrics? = nil,
        onReload: (@Sendable (TLSReloadEvent) -> Void)? = nil
    ) throws {
        let paths = identities.flatMap(\.watchedPaths) + (trustStoreFile.map { [$0] } ?? []) + crlFiles
        self.pollInterval = pollInterval
        self.paths = paths
        self.identityFiles = identities
        self.base = configuration
        // Read before the first load: a file replaced meanwhile differs at the first poll.
        let initialStates = Self.read(paths)
        let served = ServedIdentities(try identities.map { try Self.identity($0, base: configuration) })
        self.served = served
        self.reloader = try TLSContextReloader(logger: logger, metrics: metrics, source: paths.joined(separator: ","), onReload: onReload) {
            try Self.configuration(configuration, identities: served.identities, trustStoreFile: trustStoreFile, crlFiles: crlFiles)
        }
        self.states = initialStates
    }

    /// The context new connections get now.
    public func currentContext() -> TLSContext { reloader.currentContext() }

    /// Reloads every file now, changed or not (`tlsctl serve` calls it on SIGHUP).
    ///
    /// - Returns: the reload of the context; when every identity's renewal was refused (and
    ///   no trust store or CRL file is watched), the first refusal. Each refused identity
    ///   is also reported by a refusal event of its own, before the reload.
    @discardableResult
    public func reload() -> TLSReloadEvent {
        checking.lock(); defer { checking.unlock() }
        let seen = Self.read(paths)
        let event = reloadIdentities(Array(identityFiles.indices), sharedFilesChanged: true)
        lock.lock(); states = seen; lock.unlock()
        return event
    }

    /// Looks at the files once and reloads when one changed.
    ///
    /// - Returns: the reload attempt, or `nil` when no file changed.
    @discardableResult
    public func checkForChanges() -> TLSReloadEvent? {
        checking.lock(); defer { checking.unlock() }
        lock.lock()
        let previous = states
        lock.unlock()
        // The cheap look first: only files whose stat changed are read again.
        let changedStat = paths.contains { path in previous[path]?.status != FileState.status(of: path) }
        guard changedStat else { return nil }
        let seen = Self.read(paths)
        guard paths.contains(where: { previous[$0] != seen[$0] }) else {
            lock.lock(); states = seen; lock.unlock()
            return nil
        }
        // Recorded as read before the load: a file replaced during the load differs at the
        // next poll and is loaded then.
        let changed = Set(paths.filter { previous[$0] != seen[$0] })
        let changedIdentities = identityFiles.indices.filter { index in
            identityFiles[index].watchedPaths.contains(where: changed.contains)
        }
        let identityPaths = Set(identityFiles.flatMap(\.watchedPaths))
        let event = reloadIdentities(changedIdentities, sharedFilesChanged: !changed.isSubset(of: identityPaths))
        lock.lock(); states = seen; lock.unlock()
        return event
    }

    /// Loads the identities at `indices` one by one (a broken one keeps its previous
    /// identity and is reported on its own), then rebuilds the context when one of them
    /// was renewed, a trust store or CRL file changed, or nothing else can be reloaded.
    private func reloadIdentities(_ indices: [Int], sharedFilesChanged: Bool) -> TLSReloadEvent {
        var refusals: [TLSReloadEvent] = []
        var renewed = false
        for index in indices {
            let files = identityFiles[index]
            do {
                served.replace(index, with: try Self.identity(files, base: base))
                renewed = true
            } catch {
                let reason = error as? TLSReloadError ?? TLSReloadError(.loadFailed, "\(error)")
                refusals.append(reloader.refuse(reason, source: files.watchedPaths.joined(separator: ",")))
            }
        }
        // The trust store and CRL files come after the identities' files in `paths`.
        let sharedFilesToLoad = sharedFilesChanged && paths.count > identityFiles.flatMap(\.watchedPaths).count
        if let refusal = refusals.first, !renewed, !sharedFilesToLoad { return refusal }
        return reloader.reload()
    }

    /// One identity from its files, checked on its own: it loads, its key matches its
    /// leaf, and it makes a valid context with the base configuration.
    static func identity(_ files: TLSIdentityFiles, base: TLSConfiguration) throws -> TLSIdentity {
        let identity: TLSIdentity
        do {
            // An empty chain file is refused by TLSIdentity itself (a typed error).
            identity = try files.load()
        } catch {
            throw TLSReloadError(.loadFailed, "cannot load the identity in \(files.chainPath) and \(files.keyPath): \(error)")
        }
        let leaf = identity.leaf
        guard identity.keyMatchesLeaf else {
            throw TLSReloadError(.keyMismatch, "the private key does not match certificate '\(leaf.subject)' (serial \(leaf.serialNumber)) in \(files.chainPath) and \(files.keyPath)")
        }
        var alone = base
        alone.identities = [identity]
        do {
            _ = try TLSContext(configuration: alone)
        } catch {
            throw TLSReloadError(.contextRejected, "the identity in \(files.chainPath) and \(files.keyPath) makes no valid TLS context: \(error)")
        }
        return identity
    }

    /// A stream of every reload attempt from now on (see ``TLSContextReloader/events()``).
    public func events() -> AsyncStream<TLSReloadEvent> { reloader.events() }

    /// Polls the files every ``pollInterval`` until graceful shutdown or cancellation, then
    /// returns. The polls block on file reads and context builds, off the event loops.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: self.pollInterval)
                    self.checkForChanges()
                }
            }
        } catch is CancellationError {
            return
        }
    }

    /// The configuration with the served identities, and anchors and CRLs read from the files.
    static func configuration(
        _ base: TLSConfiguration, identities: [TLSIdentity], trustStoreFile: String?, crlFiles: [String]
    ) throws -> TLSConfiguration {
        var configuration = base
        configuration.identities = identities
        guard trustStoreFile != nil || !crlFiles.isEmpty else { return configuration }
        let old = base.trustStore ?? TrustStore()
        var anchors = old.certificates
        if let trustStoreFile {
            anchors = try Certificate.load(contentsOfFile: trustStoreFile)
            guard !anchors.isEmpty else { throw TLSReloadError(.loadFailed, "\(trustStoreFile) holds no certificate") }
        }
        var trust = TrustStore(certificates: anchors, crls: crlFiles.isEmpty ? old.crls : [], includesSystemTrust: old.includesSystemTrust)
        for path in crlFiles { try trust.addCRLs(contentsOfFile: path) }
        configuration.trustStore = trust
        return configuration
    }

    static func read(_ paths: [String]) -> [String: FileState] {
        var states: [String: FileState] = [:]
        for path in paths { states[path] = FileState(path) }
        return states
    }
}

/// The identities a ``TLSFileWatcher`` serves, one per identity files entry, shared with its
/// reloader's load closure.
final class ServedIdentities: @unchecked Sendable {
    // @unchecked: `values` is guarded by `lock`.
    private let lock = NSLock()
    private var values: [TLSIdentity]

    init(_ values: [TLSIdentity]) { self.values = values }

    var identities: [TLSIdentity] {
        lock.lock(); defer { lock.unlock() }
        return values
    }

    func replace(_ index: Int, with identity: TLSIdentity) {
        lock.lock(); defer { lock.unlock() }
        values[index] = identity
    }
}

/// What a poll compares: the file's identity and size and time from `stat`, and a hash of
/// its contents (Swift's `Hasher`: change detection within one process, not integrity).
struct FileState: Hashable {
    struct Stat: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modified: Int64
        var modifiedNanoseconds: Int64
    }

    var status: Stat?
    var contents: Int?

    init(_ path: String) {
        status = Self.status(of: path)
        contents = (try? Data(contentsOf: URL(fileURLWithPath: path))).map { data in
            var hasher = Hasher()
            hasher.combine(data)
            return hasher.finalize()
        }
    }

    /// `nil` when the file cannot be stat'ed (missing: a change too).
    /// Follows symbolic links: a link switched to a new target (a Kubernetes secret
    /// volume's `..data`) is a change.
    static func status(of path: String) -> Stat? {
        guard let info = statFollowingLinks(path) else { return nil }
        return Stat(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                    modified: Int64(info.st_mtim.tv_sec), modifiedNanoseconds: Int64(info.st_mtim.tv_nsec))
    }
}

/// `stat(2)`, outside `FileState` (whose members would shadow the C function's name).
private func statFollowingLinks(_ path: String) -> stat? {
    var info = stat()
    return stat(path, &info) == 0 ? info : nil
}
