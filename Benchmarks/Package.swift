// swift-tools-version:6.1
import PackageDescription

// The benchmarks live in their own package so the benchmark framework and the
// swift-nio-ssl baseline never enter the dependency graph of the package's users.
//
//   cd Benchmarks && swift package benchmark            # ordo-one/benchmark scenarios
//   cd Benchmarks && swift run -c release BenchReport   # side-by-side ratios
let package = Package(
    name: "swift-gnutls-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "swift-gnutls", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // Raw GnuTLS in C: the baseline with none of our layers.
        .target(
            name: "CRawGnuTLS",
            linkerSettings: [.linkedLibrary("gnutls")]
        ),
        // The scenarios, each driven by our engine pair, GnuTLSHandler, raw GnuTLS and swift-nio-ssl.
        .target(
            name: "TLSScenarios",
            dependencies: [
                "CRawGnuTLS",
                .product(name: "GnuTLS", package: "swift-gnutls"),
                .product(name: "GnuTLSAuthority", package: "swift-gnutls"),
                .product(name: "NIOGnuTLS", package: "swift-gnutls"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The side-by-side report: implementations interleaved repetition by repetition.
        .executableTarget(
            name: "BenchReport",
            dependencies: ["TLSScenarios"]
        ),
        .executableTarget(
            name: "TLSBenchmarks",
            dependencies: [
                "TLSScenarios",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "GnuTLS", package: "swift-gnutls"),
                .product(name: "GnuTLSAuthority", package: "swift-gnutls"),
            ],
            path: "Benchmarks/TLSBenchmarks",
            // The framework's closures predate strict concurrency checking.
            swiftSettings: [.swiftLanguageMode(.v5)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
