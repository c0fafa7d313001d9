import CRawGnuTLS
import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority

/// Two raw GnuTLS sessions in C, set up as our engine sets up its own.
final class RawRunner: ScenarioRunner {
    private let pair: OpaquePointer
    private let scenario: Scenario
    private let payload: [UInt8]
    // The C side keeps pointers into these for the pair's lifetime.
    private let strings: [UnsafeMutablePointer<CChar>]

    init(_ scenario: Scenario, pki: BenchmarkPKI) throws {
        self.scenario = scenario
        let priority = scenario.priority ?? TLSConfiguration.defaultPriority(minimum: scenario.version, maximum: scenario.version)
        let texts = [
            pki.root.certificate.pemEncoded,
            pki.serverIdentity.chain.map(\.pemEncoded).joined(), try pki.serverKey.pemEncoded(),
            pki.clientIdentity.chain.map(\.pemEncoded).joined(), try pki.clientKey.pemEncoded(),
            priority, pki.hostname,
        ]
        let strings = texts.map { strdup($0)! }
        self.strings = strings
        var config = rawtls_config(
            ca_pem: strings[0], server_chain_pem: strings[1], server_key_pem: strings[2],
            client_chain_pem: strings[3], client_key_pem: strings[4], priority: strings[5], hostname: strings[6],
            tickets: 1, mutual: scenario.mutual ? 1 : 0)
        var error = [CChar](repeating: 0, count: 256)
        guard let pair = rawtls_create(&config, &error, error.count) else {
            strings.forEach { free($0) }
            throw ScenarioError("raw GnuTLS setup failed: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        self.pair = pair
        if case .transfer(let total, _) = scenario.kind { payload = [UInt8](repeating: 0x5A, count: total) } else { payload = [] }
        if scenario.isResumed || !payload.isEmpty {
            try check(rawtls_handshake(pair, 0))
        }
    }

    deinit {
        rawtls_destroy(pair)
        strings.forEach { free($0) }
    }

    private func check(_ rc: Int32) throws {
        if rc < 0 { throw ScenarioError("raw GnuTLS: \(String(cString: rawtls_strerror(rc)))") }
    }

    func run() throws {
        switch scenario.kind {
        case .handshake(let resumed):
            try check(rawtls_handshake(pair, resumed ? 1 : 0))
            if resumed && rawtls_resumed(pair) == 0 { throw ScenarioError("raw GnuTLS did not resume") }
        case .transfer(let total, let chunk):
            let read = payload.withUnsafeBufferPointer { rawtls_transfer(pair, $0.baseAddress, $0.count, chunk) }
            if read != total { throw ScenarioError("raw GnuTLS transfer: \(read) of \(total)") }
        }
    }
}
