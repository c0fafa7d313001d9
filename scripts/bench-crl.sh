#!/usr/bin/env bash
# CRLs at scale (issue 8, item 8): builds a small harness against this package in release
# mode and prints, for each N revoked certificates (default 20000 and 100000): the time to
# issue the CRL (sign and parse back), to parse it (DER, and PEM from a file into a trust
# store), to build a Verifier and a mutual-TLS server context from that trust store, the
# first verification (signature checked), a second one and 1,000 lookups (the dictionary),
# and a revoked leaf refused. Timings, not assertions.
#   scripts/bench-crl.sh [N ...]
set -euo pipefail
if [ "$#" -eq 0 ]; then set -- 20000 100000; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# BENCH_CRL_WORK=dir keeps the harness (and its release build) in dir between runs.
if [ -n "${BENCH_CRL_WORK:-}" ]; then
    WORK="$BENCH_CRL_WORK"
else
    WORK="$(mktemp -d /tmp/bench-crl.XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/Sources/bench-crl"
cat > "$WORK/Package.swift" <<SWIFT
// swift-tools-version:6.1
import PackageDescription
let package = Package(
    name: "bench-crl",
    dependencies: [.package(name: "swift-gnutls", path: "$ROOT")],
    targets: [.executableTarget(name: "bench-crl", dependencies: [.product(name: "GnuTLS", package: "swift-gnutls"), .product(name: "GnuTLSAuthority", package: "swift-gnutls")])]
)
SWIFT
cat > "$WORK/Sources/bench-crl/main.swift" <<'SWIFT'
import Foundation
import GnuTLS
import GnuTLSAuthority

let count = Int(CommandLine.arguments.dropFirst().first ?? "100000") ?? 100_000
func time<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
    let start = DispatchTime.now().uptimeNanoseconds
    let value = try body()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print("  " + label.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%8.3f s", seconds))
    return value
}
let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Bench CRL Root"))
func leaf(_ name: String) throws -> (Certificate, KeyPair) {
    let key = try KeyPair.generate(.ecdsaP256)
    let request = try CertificateRequest.create(subject: try DistinguishedName("CN=\(name)"), key: key, alternativeNames: [.dnsName(name)])
    return (try root.issue(request, profile: .tlsServer), key)
}
let (good, goodKey) = try leaf("leaf.example.com")
let (revoked, _) = try leaf("revoked.example.com")
let date = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 3_600)
var entries = (0..<count).map { index in
    CertificateRevocationList.Entry(serialNumber: SerialNumber(bytes: [0x10] + withUnsafeBytes(of: UInt64(index).bigEndian, Array.init)),
                                    revocationDate: date, reason: index % 3 == 0 ? .keyCompromise : nil)
}
entries[count / 2] = CertificateRevocationList.Entry(serialNumber: revoked.serialNumber, revocationDate: date, reason: .keyCompromise)
print("CRL with \(count) entries (release build)")
let crl = try time("issue (sign + parse back)") {
    try CertificateRevocationList.create(issuer: root.certificate, key: root.key, number: SerialNumber(bytes: [1]),
                                         nextUpdate: Date().addingTimeInterval(86_400), entries: entries)
}
print("  size: \(crl.derEncoded.count) bytes DER")
_ = try time("parse (DER)") { try CertificateRevocationList(derEncoded: crl.derEncoded) }
let path = NSTemporaryDirectory() + "bench-crl-\(getpid()).pem"
try crl.pemEncoded.write(toFile: path, atomically: true, encoding: .utf8)
defer { try? FileManager.default.removeItem(atPath: path) }
let store = try time("load PEM file into a trust store") { () throws -> TrustStore in
    var store = TrustStore(certificates: [root.certificate])
    try store.addCRLs(contentsOfFile: path)
    return store
}
let verifier = try time("build a Verifier from it") { try Verifier(trustStore: store) }
_ = try time("build a mutual-TLS server context from it") {
    try TLSContext(configuration: .makeMutualTLSServerConfiguration(identity: TLSIdentity(chain: [good, root.certificate], key: goodKey),
                                                                    clientTrustStore: store))
}
_ = try time("first verification (signature checked once)") { try verifier.verify(good) }
_ = try time("second verification (lookup)") { try verifier.verify(good) }
let refused = time("revoked leaf refused") { () -> Bool in
    do { try verifier.verify(revoked); return false } catch { return "\(error)".contains("revoked") }
}
print("  revoked leaf refused as revoked: \(refused)")
_ = time("1000 entry lookups") { (0..<1000).filter { crl.entry(for: entries[$0 * (count / 1000)].serialNumber) != nil }.count }
SWIFT
cd "$WORK"
echo "building the harness (release)…" >&2
swift build -c release 2>&1 | tail -1 >&2
for N in "$@"; do ".build/release/bench-crl" "$N"; done
