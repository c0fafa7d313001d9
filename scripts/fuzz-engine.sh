#!/usr/bin/env bash
# Fuzzes the TLS engine with libFuzzer and AddressSanitizer for a bounded time.
#   scripts/fuzz-engine.sh [SECONDS] [extra libFuzzer flags…]     (default: 300 seconds)
# The fuzzer target exists only when SWIFT_GNUTLS_FUZZ is set, so the normal build never
# compiles it; it builds in its own scratch directory (.build-fuzz). The corpus grows in
# .fuzz/engine-corpus (kept out of git); crashes, leaks and timeouts are written to
# .fuzz/artifacts and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
shift || true
export SWIFT_GNUTLS_FUZZ=1
# -sanitize=fuzzer links libFuzzer; coverage for its guidance is asked for explicitly (the
# Swift code only: GnuTLS itself is the system library, not instrumented).
flags=(--scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp)
swift build "${flags[@]}" --product EngineFuzzer
mkdir -p .fuzz/engine-corpus .fuzz/artifacts
binary="$(swift build "${flags[@]}" --show-bin-path)/EngineFuzzer"
echo "==> fuzzing the engine for ${seconds} s"
"$binary" .fuzz/engine-corpus -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=20000 \
    -artifact_prefix=.fuzz/artifacts/ -print_final_stats=1 "$@"
