#!/usr/bin/env bash
# Runs the benchmarks: the ordo-one/benchmark scenarios (throughput, wall clock, CPU,
# instructions where the kernel allows perf counters, allocations), then the side-by-side
# report (ours, GnuTLSHandler, raw GnuTLS in C, swift-nio-ssl, and their ratios).
# Arguments go to the report: ./scripts/bench.sh --filter Handshake.TLS13 --repetitions 9
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

require_swift
# The C baseline links libgnutls; ordo-one/benchmark 1.38 needs no jemalloc (its
# malloc-interposer counts allocations).
install_debian_packages libgnutls28-dev nettle-dev libsqlite3-dev

cd Benchmarks
echo "==> swift package benchmark"
swift package --disable-sandbox benchmark
echo "==> Side-by-side report"
swift run -c release BenchReport "$@"
