import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority

/// One benchmark scenario, named in the rustls `ci-bench` style.
public struct Scenario: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// One connection's handshake; `resumed` offers the session of an earlier one.
        case handshake(resumed: Bool)
        /// `total` bytes from client to server in writes of `chunk` bytes, on one connection.
        case transfer(total: Int, chunk: Int)
    }

    public var name: String
    public var algorithm: KeyAlgorithm
    public var version: TLSVersion
    public var mutual: Bool
    public var kind: Kind
    /// A priority string replacing the default (the transfer scenario pins its cipher).
    public var priority: String?
    /// Whether our contexts keep the verified-chain cache (the library default); off in the
    /// plain scenarios, so they compare the same verification work.
    public var chainCache: Bool

    public init(name: String, algorithm: KeyAlgorithm, version: TLSVersion, mutual: Bool = false, kind: Kind, priority: String? = nil,
                chainCache: Bool = false) {
        self.name = name
        self.chainCache = chainCache
        self.algorithm = algorithm
        self.version = version
        self.mutual = mutual
        self.kind = kind
        self.priority = priority
    }

    public var isResumed: Bool { kind == .handshake(resumed: true) }

    /// The unit one repetition counts: handshakes, or bytes.
    public var unitsPerRun: Double {
        switch kind {
        case .handshake: return 1
        case .transfer(let total, _): return Double(total)
        }
    }

    /// Every scenario the issue names that has baselines.
    public static let all: [Scenario] = [
        Scenario(name: "Handshake.TLS13.ECDSA-P256.Full", algorithm: .ecdsaP256, version: .tls13, kind: .handshake(resumed: false)),
        Scenario(name: "Handshake.TLS13.ECDSA-P256.Resumed", algorithm: .ecdsaP256, version: .tls13, kind: .handshake(resumed: true)),
        Scenario(name: "Handshake.TLS13.ECDSA-P256.MutualTLS", algorithm: .ecdsaP256, version: .tls13, mutual: true, kind: .handshake(resumed: false)),
        Scenario(name: "Handshake.TLS13.Ed25519.Full", algorithm: .ed25519, version: .tls13, kind: .handshake(resumed: false)),
        Scenario(name: "Handshake.TLS13.RSA-2048.Full", algorithm: .rsa2048, version: .tls13, kind: .handshake(resumed: false)),
        Scenario(name: "Handshake.TLS12.ECDSA-P256.Full", algorithm: .ecdsaP256, version: .tls12, kind: .handshake(resumed: false)),
        Scenario(name: "Handshake.TLS12.ECDSA-P256.Resumed", algorithm: .ecdsaP256, version: .tls12, kind: .handshake(resumed: true)),
        Scenario(name: "Handshake.TLS13.ECDSA-P256.Full.ChainCache", algorithm: .ecdsaP256, version: .tls13, kind: .handshake(resumed: false),
                 chainCache: true),
        Scenario(name: "Handshake.TLS13.ECDSA-P256.Resumed.ChainCache", algorithm: .ecdsaP256, version: .tls13, kind: .handshake(resumed: true),
                 chainCache: true),
        Scenario(name: "Handshake.TLS12.ECDSA-P256.Resumed.ChainCache", algorithm: .ecdsaP256, version: .tls12, kind: .handshake(resumed: true),
                 chainCache: true),
        Scenario(name: "Transfer.TLS13.AES-128-GCM.16KiB", algorithm: .ecdsaP256, version: .tls13, kind: .transfer(total: 1 << 20, chunk: 16 * 1024),
                 priority: "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:-MAC-ALL:+AEAD:-GROUP-ALL:+GROUP-X25519:%PROFILE_MEDIUM"),
    ]
}

/// Who does the work.
public enum Implementation: String, Sendable, CaseIterable {
    /// Our sans-IO engine pair with the Swift verifier pass, as `GnuTLSHandler` runs them.
    case ours = "ours"
    /// `GnuTLSHandler` back to back on EmbeddedChannels.
    case handler = "handler"
    /// Two raw GnuTLS sessions in C.
    case raw = "raw"
    /// `NIOSSLHandler` back to back on EmbeddedChannels.
    case nioSSL = "nio-ssl"
}

/// Runs one unit of a scenario (one connection's handshake, or one transfer) per call.
public protocol ScenarioRunner: AnyObject {
    func run() throws
}

/// The throwaway PKIs, one per key algorithm, generated once per process.
public final class PKICache: @unchecked Sendable {
    public static let shared = PKICache()
    private let lock = NSLock()
    private var byAlgorithm: [KeyAlgorithm: BenchmarkPKI] = [:]

    @_spi(Benchmarks) public func pki(_ algorithm: KeyAlgorithm) throws -> BenchmarkPKI {
        lock.lock(); defer { lock.unlock() }
        if let pki = byAlgorithm[algorithm] { return pki }
        let pki = try BenchmarkPKI(algorithm: algorithm)
        byAlgorithm[algorithm] = pki
        return pki
    }
}

/// The runner for `scenario` done by `implementation`, or `nil` where that implementation
/// cannot do it (swift-nio-ssl has no client-side session resumption API).
public func makeRunner(_ implementation: Implementation, _ scenario: Scenario) throws -> (any ScenarioRunner)? {
    let pki = try PKICache.shared.pki(scenario.algorithm)
    switch implementation {
    case .ours: return try OursRunner(scenario, pki: pki)
    case .handler: return try HandlerRunner(scenario, pki: pki)
    case .raw: return try RawRunner(scenario, pki: pki)
    case .nioSSL: return scenario.isResumed ? nil : try NIOSSLRunner(scenario, pki: pki)
    }
}

public struct ScenarioError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension BenchmarkPKI {
    /// `clientTickets: false` for a client that keeps sessions on its own (GnuTLSHandler
    /// stores them in the context): its full-handshake scenarios would otherwise resume.
    func contexts(for scenario: Scenario, clientTickets: Bool = true) throws -> (client: TLSContext, server: TLSContext) {
        var client = clientConfiguration(version: scenario.version, tickets: clientTickets, mutual: scenario.mutual)
        var server = serverConfiguration(version: scenario.version, mutual: scenario.mutual)
        client.priorityString = scenario.priority
        server.priorityString = scenario.priority
        client.chainCache = scenario.chainCache ? .enabled : .disabled
        server.chainCache = scenario.chainCache ? .enabled : .disabled
        return (try TLSContext(configuration: client), try TLSContext(configuration: server))
    }
}

/// Our engine pair.
final class OursRunner: ScenarioRunner {
    let client: TLSContext
    let server: TLSContext
    let scenario: Scenario
    var connected: InMemoryTLSPair?
    let payload: [UInt8]

    init(_ scenario: Scenario, pki: BenchmarkPKI) throws {
        self.scenario = scenario
        (client, server) = try pki.contexts(for: scenario)
        if case .transfer(let total, _) = scenario.kind { payload = [UInt8](repeating: 0x5A, count: total) } else { payload = [] }
        if scenario.isResumed || payload.count > 0 {
            // A resumed scenario resumes as a connection through GnuTLSHandler does: from the
            // client context's session cache, which this first handshake fills.
            let pair = try InMemoryTLSPair(client: client, server: server, sessionCache: scenario.isResumed)
            try pair.handshake()
            connected = pair
            if scenario.isResumed && pair.resumptionData == nil { throw ScenarioError("no session to resume") }
        }
    }

    func run() throws {
        switch scenario.kind {
        case .handshake(let resumed):
            let pair = resumed
                ? try InMemoryTLSPair(client: client, server: server, sessionCache: true)
                : try InMemoryTLSPair(client: client, server: server)
            try pair.handshake()
            if resumed && !pair.isResumed { throw ScenarioError("the session was not resumed") }
        case .transfer(let total, let chunk):
            guard let connected else { return }
            let read = try payload.withUnsafeBytes { try connected.transfer($0, recordSize: chunk) }
            if read != total { throw ScenarioError("the server read \(read) of \(total) bytes") }
        }
    }
}
