#!/usr/bin/env bash
# The benchmarks' regression gate: allocation counts per scenario, checked in per toolchain
# under Benchmarks/Thresholds/swift-MAJOR.MINOR/ (ordo-one/benchmark's p90 threshold files).
#
#   ./scripts/bench-thresholds.sh check    # run the scenarios, compare with the checked-in
#                                          # thresholds: exit 0 equal (within tolerance),
#                                          # 2 a regression, 4 only improvements
#   ./scripts/bench-thresholds.sh update   # record them again (a release build, ~5 min)
#
# Extra arguments go to `swift package benchmark` (for example `--filter 'Handshake.*'`).
#
# Only allocation counts are kept in the files: they are deterministic, where time and
# instruction counts depend on the machine and its load. Only our own implementations are
# gated (the engine pair, `/handler`, the file-trust context, verifier and CA scenarios); the raw
# GnuTLS and swift-nio-ssl baselines change with their libraries, not with this package.
# The tolerance (Benchmarks/Benchmarks/TLSBenchmarks: 2% or 10 allocations at p90) is set
# in the benchmark's configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

require_swift
install_debian_packages libgnutls28-dev nettle-dev libsqlite3-dev

operation=${1:-check}
shift || true
toolchain=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\)\.\([0-9]*\).*/swift-\1.\2/p' | head -n 1)
if [ -z "$toolchain" ]; then
    echo "error: could not read the Swift version from 'swift --version'" >&2
    exit 1
fi
thresholds="Thresholds/$toolchain"
cd Benchmarks

case "$operation" in
update)
    rm -rf "$thresholds"
    mkdir -p "$thresholds"
    swift package --disable-sandbox --allow-writing-to-package-directory \
        benchmark thresholds update --path "$thresholds" --no-progress "$@"
    # Keep the deterministic metric of our own implementations only (see above).
    python3 - "$thresholds" <<'EOF'
import json, os, sys
folder = sys.argv[1]
kept = 0
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    # "/" in a benchmark name is "_" in its file name. The system trust store's size (so
    # Context.Build.SystemTrust's allocations) depends on the machine's CA bundle.
    if name.endswith("_raw.p90.json") or name.endswith("_nio-ssl.p90.json") or ".SystemTrust." in name:
        os.remove(path)
        continue
    with open(path) as f:
        values = json.load(f)
    values = {k: v for k, v in values.items() if k == "mallocCountTotal"}
    if not values:
        os.remove(path)
        continue
    with open(path, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")
    kept += 1
print(f"==> {kept} threshold files in {folder}")
EOF
    ;;
check)
    if [ ! -d "$thresholds" ]; then
        echo "error: no thresholds for $toolchain in Benchmarks/$thresholds: record them with '$0 update'" >&2
        exit 1
    fi
    swift package --disable-sandbox benchmark thresholds check --path "$thresholds" --no-progress "$@"
    ;;
*)
    echo "usage: $0 [check|update] [swift package benchmark options]" >&2
    exit 2
    ;;
esac
