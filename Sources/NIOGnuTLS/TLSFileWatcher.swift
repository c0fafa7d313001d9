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
/// Every identity is read from its own files; identities for several SNI names are reloaded
/// together into one context, where GnuTLS picks the one a client's SNI name selects.
///
/// A renewal that cannot be read, whose key does not match its certificate, or that makes
/// no valid context is refused and the previous context stays in service; the refusal is
/// logged, passed to `onReload` and yielded to ``events()``. When the files are then fixed,
/// the next poll picks them up. Replace files by renaming complete files into place: a
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
        // Read before the first load: a file replaced meanwhile differs at the first poll.
        let initialStates = Self.read(paths)
        self.reloader = try TLSContextReloader(logger: logger, metrics: metrics, source: paths.joined(separator: ","), onReload: onReload) {
            try Self.configuration(configuration, identities: identities, trustStoreFile: trustStoreFile, crlFiles: crlFiles)
        }
        self.states = initialStates
    }

    /// The context new connections get now.
    public func currentContext() -> TLSContext { reloader.currentContext() }

    /// Reloads every file now, changed or not (`tlsctl serve` calls it on SIGHUP).
    @discardableResult
    public func reload() -> TLSReloadEvent {
        checking.lock(); defer { checking.unlock() }
        let seen = Self.read(paths)
        let event = reloader.reload()
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
        let event = reloader.reload()
        lock.lock(); states = seen; lock.unlock()
        return event
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

    /// The configuration with identities, anchors and CRLs read from the files.
    static func configuration(
        _ base: TLSConfiguration, identities: [TLSIdentityFiles], trustStoreFile: String?, crlFiles: [String]
    ) throws -> TLSConfiguration {
        var configuration = base
        // An empty chain file is refused by TLSIdentity itself (a typed error, loadFailed here).
        configuration.identities = try identities.map { try $0.load() }
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
