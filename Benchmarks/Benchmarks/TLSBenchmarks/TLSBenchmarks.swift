import Benchmark
import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
@_spi(Benchmarks) import TLSScenarios

// The ordo-one/benchmark scenarios: each handshake and transfer scenario by our engine pair
// (the plain name), and by GnuTLSHandler, raw GnuTLS and swift-nio-ssl (`/handler`, `/raw`,
// `/nio-ssl`), then the context, verifier and CA scenarios. Thresholds checked in under
// Thresholds/<toolchain>/ hold allocation counts (deterministic); time is too noisy on
// shared machines to gate on. BenchReport prints the interleaved side-by-side ratios.

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.throughput, .wallClock, .cpuTotal, .instructions, .mallocCountTotal]
    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        warmupIterations: 3,
        maxDuration: .seconds(2),
        maxIterations: 10_000,
        // The checked-in thresholds (scripts/bench-thresholds.sh) are compared at p90.
        thresholds: [.mallocCountTotal: .init(relative: [.p90: 2], absolute: [.p90: 10])]
    )

    for scenario in Scenario.all {
        for implementation in Implementation.allCases {
            let name = implementation == .ours ? scenario.name : "\(scenario.name)/\(implementation.rawValue)"
            let runner: (any ScenarioRunner)?
            do {
                runner = try makeRunner(implementation, scenario)
            } catch {
                FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
                continue
            }
            guard let runner else { continue }
            do {
                // A combination the implementation cannot do (swift-nio-ssl and TLS 1.2 with
                // these ciphers, or Ed25519) is left out, as BenchReport shows it as n/a: a
                // benchmark that throws would end the whole run (and `thresholds update`).
                try runner.run()
            } catch {
                // Every benchmark process registers them all: say it once, for our own only.
                if implementation != .nioSSL {
                    FileHandle.standardError.write(Data("\(name): left out: \(error)\n".utf8))
                }
                continue
            }
            _ = Benchmark(name) { benchmark in
                for _ in benchmark.scaledIterations { try runner.run() }
            }
        }
    }

    // Context.Build: a client context from a PEM trust file, and from the system's trust.
    let trustFile = FileManager.default.temporaryDirectory.appendingPathComponent("swift-gnutls-bench-\(getpid())-root.pem").path
    if let pki = try? PKICache.shared.pki(.ecdsaP256) {
        _ = FileManager.default.createFile(atPath: trustFile, contents: Data(pki.root.certificate.pemEncoded.utf8))
        _ = Benchmark("Context.Build.FileTrust") { benchmark in
            for _ in benchmark.scaledIterations {
                let configuration = TLSConfiguration.makeClientConfiguration(trustStore: try TrustStore(contentsOfFile: trustFile))
                blackHole(try TLSContext(configuration: configuration))
            }
        }
        _ = Benchmark("Context.Build.SystemTrust", configuration: .init(maxDuration: .seconds(3), maxIterations: 200)) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(try TLSContext(configuration: .makeClientConfiguration()))
            }
        }

        // Verify.Chain3: the Swift verifier alone on leaf <- issuing CA <- root.
        _ = Benchmark("Verify.Chain3") { benchmark in
            let verifier = try Verifier(trustStore: pki.trustStore)
            let chain = pki.serverIdentity.chain
            for _ in benchmark.scaledIterations {
                blackHole(try verifier.verify(chain[0], intermediates: Array(chain.dropFirst()), policy: .server(host: pki.hostname)))
            }
        }

        // CA.Issue: a server certificate from a CSR by the issuing CA.
        _ = Benchmark("CA.Issue") { benchmark in
            let key = try KeyPair.generate(.ecdsaP256)
            let request = try CertificateRequest.create(subject: try DistinguishedName("CN=issued.example.com"), key: key,
                                                        alternativeNames: [.dnsName("issued.example.com")])
            for _ in benchmark.scaledIterations {
                blackHole(try pki.issuing.issue(request, profile: .tlsServer))
            }
        }
    }
}
