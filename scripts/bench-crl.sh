#!/usr/bin/env bash
# CRLs at scale (issue 8, item 8): builds a small harness against this package in release
# mode and prints, for N revoked certificates (default 100000): the time to issue the CRL,
# to parse it, to load it into a trust store and build a Verifier, the first verification
# (signature checked) and a second one (revocation lookup). Timings, not assertions.
#   scripts/bench-crl.sh [N]
set -euo pipefail
N="${1:-100000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/bench-crl.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/Sources/bench-crl"
cat > "$WORK/Package.swift" <<SWIFT
// swift-tools-version:6.1
import PackageDescription
let package = Package(
    name: "bench-crl",
    dependencies: [.package(name: "swift-gnutls", path: "$ROOT")],
    targets: [.executableTarget(name: "bench-crl", dependencies: [.product(name: "GnuTLS", package: "swift-gnutls")])]
)
SWIFT
cat > "$WORK/Sources/bench-crl/main.swift" <<'SWIFT'
import Foundation
import GnuTLS

let count = Int(CommandLine.arguments.dropFirst().first ?? "100000") ?? 100_000
func time<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
    let start = DispatchTime.now().uptimeNanoseconds
    let value = try body()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print(String(format: "%-34@ %8.3f s", label as NSString, seconds))
    return value
}
let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Bench CRL Root"))
let request = try CertificateRequest.create(subject: try DistinguishedName("CN=leaf.example.com"), key: KeyPair.generate(.ecdsaP256),
                                            alternativeNames: [.dnsName("leaf.example.com")])
let leaf = try root.issue(request, profile: .tlsServer)
let date = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 3_600)
let entries = (0..<count).map { index in
    CertificateRevocationList.Entry(serialNumber: SerialNumber(bytes: [0x10] + withUnsafeBytes(of: UInt64(index).bigEndian, Array.init)),
                                    revocationDate: date, reason: index % 3 == 0 ? .keyCompromise : nil)
}
print("CRL with \(count) entries (release build)")
let crl = try time("issue (sign + parse back)") {
    try CertificateRevocationList.create(issuer: root.certificate, key: root.key, number: SerialNumber(bytes: [1]),
                                         nextUpdate: Date().addingTimeInterval(86_400), entries: entries)
}
print("  size: \(crl.derEncoded.count) bytes")
_ = try time("parse") { try CertificateRevocationList(derEncoded: crl.derEncoded) }
let verifier = try time("load into trust store + Verifier") {
    try Verifier(trustStore: TrustStore(certificates: [root.certificate], crls: [crl]))
}
_ = try time("first verification (signature)") { try verifier.verify(leaf) }
_ = try time("second verification (lookup)") { try verifier.verify(leaf) }
_ = time("1000 entry lookups") { (0..<1000).filter { crl.entry(for: entries[$0 * (count / 1000)].serialNumber) != nil }.count }
SWIFT
cd "$WORK"
echo "building the harness (release)…" >&2
swift build -c release 2>&1 | tail -1 >&2
".build/release/bench-crl" "$N"
