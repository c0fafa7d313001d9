// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "swift-gnutls",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "GnuTLS", targets: ["GnuTLS"]),
        .library(name: "NIOGnuTLS", targets: ["NIOGnuTLS"]),
        .library(name: "GnuTLSAuthority", targets: ["GnuTLSAuthority"]),
        .library(name: "NIOGnuTLSAuthority", targets: ["NIOGnuTLSAuthority"]),
        .executable(name: "tlsctl", targets: ["tlsctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // The CA ledger's default store (SQLite; needs the system's libsqlite3-dev).
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // Structured logging of handshakes, refusals and expiring certificates (no-op by default).
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // Handshake, verification, connection and byte metrics (no cost without a backend).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Tests only: HTTP/2 behind GnuTLSHandler + ApplicationProtocolNegotiationHandler.
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        // Tests only: conversions to and from swift-certificates' Certificate by DER; name clashes.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        // Tests only: property-based tests (names, general names, serials, keys, certificates).
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        // Tests only: BoringSSL (swift-nio-ssl) must read the keys we write.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Tests only: runs the external peers and tools (openssl, certtool, tlsctl, ...).
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        // Documentation only: `swift package generate-documentation`.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
        // `TLSServer` and the certificate file watcher are `Service`s in a `ServiceGroup`.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // The C library: GnuTLS headers plus `static inline` helpers for what Swift cannot import.
        .systemLibrary(
            name: "CGnuTLS",
            path: "Modules/CGnuTLS",
            pkgConfig: "gnutls",
            providers: [.apt(["libgnutls28-dev", "nettle-dev"])]
        ),
        // The only Swift target that talks to GnuTLS. `package` access except the error type.
        .target(
            name: "GnuTLSCore",
            dependencies: ["CGnuTLS"]
        ),
        // The public API: keys, names, requests, certificates, revocation lists, OCSP
        // checking, trust stores and verification, TLS configuration and context.
        .target(
            name: "GnuTLS",
            dependencies: [
                "GnuTLSCore",
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // The certificate authority on top of `GnuTLS`: issuance and its policy, the ledger
        // (SQLite through GRDB, so a TLS-only user links no database) and OCSP response signing.
        .target(
            name: "GnuTLSAuthority",
            dependencies: [
                "GnuTLS",
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // TLS on SwiftNIO: the engine driven on the event loop, async/await on top.
        .target(
            name: "NIOGnuTLS",
            dependencies: [
                "GnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // The OCSP/CRL fetch client.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // TLSUserEvent, so ApplicationProtocolNegotiationHandler works behind GnuTLSHandler.
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The authority's OCSP responder over HTTP on SwiftNIO: kept out of `GnuTLSAuthority`
        // so a CA that only issues links no event loop, and out of `NIOGnuTLS` so a TLS user
        // links no ledger.
        .target(
            name: "NIOGnuTLSAuthority",
            dependencies: [
                "GnuTLS",
                "GnuTLSAuthority",
                // The log metadata keys (TLSLogKey) the responder's request log shares.
                "NIOGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "tlsctl",
            dependencies: [
                "GnuTLS",
                "GnuTLSAuthority",
                "NIOGnuTLS",
                "NIOGnuTLSAuthority",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Tests only: a `ServiceGroup` running a `TLSServer`, for the SIGTERM shutdown test
        // (a signal must go to a process of its own, not to the test runner).
        .executableTarget(
            name: "TLSServiceFixture",
            dependencies: [
                "GnuTLS", "NIOGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/TLSServiceFixture"
        ),
        // Shared by the test targets: running real peers and tools with timeouts, temp dirs.
        .target(
            name: "TestSupport",
            dependencies: [
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Tests/TestSupport"
        ),
        // Shared by GnuTLSTests and GnuTLSAuthorityTests: typed-error expectations, requests,
        // temporary directories, a CA with a ledger for OCSP.
        .target(
            name: "GnuTLSTestSupport",
            dependencies: ["GnuTLS", "GnuTLSAuthority", "TestSupport"],
            path: "Tests/GnuTLSTestSupport"
        ),
        // The public API: keys, names, requests, certificates, CRLs, verification, OCSP checking.
        .testTarget(
            name: "GnuTLSTests",
            dependencies: [
                "GnuTLS", "GnuTLSAuthority", "GnuTLSTestSupport", "TestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // The authority: ledger, issuance policy and bounds, LocalAuthority, OCSP signing.
        .testTarget(
            name: "GnuTLSAuthorityTests",
            dependencies: ["GnuTLS", "GnuTLSAuthority", "GnuTLSTestSupport", "TestSupport"]
        ),
        // Cross-checks against independent programs: openssl, certtool, pkilint.
        // The TLS engine back to back in memory, and NIOGnuTLS channels on 127.0.0.1.
        .testTarget(
            name: "NIOGnuTLSTests",
            dependencies: [
                "NIOGnuTLS", "GnuTLS", "GnuTLSAuthority", "GnuTLSCore", "TestSupport",
                // The OCSP responder's request log (ObservabilityTests).
                "NIOGnuTLSAuthority",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        // A file importing our modules beside swift-nio-ssl and swift-certificates: the
        // documented resolution of the clashing names compiles; DER conversions both ways.
        .testTarget(
            name: "CompatibilityTests",
            dependencies: [
                "GnuTLS", "GnuTLSAuthority", "NIOGnuTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(
            name: "InteropTests",
            dependencies: [
                "GnuTLS", "GnuTLSAuthority", "NIOGnuTLS", "NIOGnuTLSAuthority", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Every ```swift block of the DocC articles (GnuTLS's GettingStarted, NIOGnuTLS's
        // articles) as code that compiles and runs against a run-time PKI on 127.0.0.1;
        // scripts/check-doc-snippets.sh checks that the articles and these sources agree.
        .testTarget(
            name: "DocSnippetTests",
            dependencies: [
                "GnuTLS", "GnuTLSAuthority", "NIOGnuTLS", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Keys we write, read by another TLS library (BoringSSL through swift-nio-ssl).
        .testTarget(
            name: "KeyInteropTests",
            dependencies: ["GnuTLS", .product(name: "NIOSSL", package: "swift-nio-ssl")]
        ),
        // Runs the built `tlsctl` binary as a user would.
        .testTarget(
            name: "TLSCtlTests",
            dependencies: [
                "tlsctl", "GnuTLS", "GnuTLSAuthority", "TestSupport", "NIOGnuTLS", "TLSServiceFixture",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// The TLS engine's libFuzzer target, declared only when asked for (scripts/fuzz-engine.sh
// sets SWIFT_GNUTLS_FUZZ), so the normal build and test never compile it:
//   SWIFT_GNUTLS_FUZZ=1 swift build --scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address --product EngineFuzzer
if Context.environment["SWIFT_GNUTLS_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "EngineFuzzer",
        dependencies: ["GnuTLS", "GnuTLSCore"],
        path: "Fuzz/EngineFuzzer",
        // libFuzzer provides `main`.
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]
    ))
    package.products.append(.executable(name: "EngineFuzzer", targets: ["EngineFuzzer"]))
}
