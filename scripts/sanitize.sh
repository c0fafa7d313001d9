#!/usr/bin/env bash
# Runs the test suite under a sanitizer, each in its own build folder:
#   ./scripts/sanitize.sh address   # the whole suite under AddressSanitizer + LeakSanitizer
#   ./scripts/sanitize.sh thread    # the TLS engine and handler suites under ThreadSanitizer
# Exit status: swift test's (non-zero on a failing test or a sanitizer report).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-address}" in
address)
    swift build --build-tests --scratch-path .build-asan --sanitize=address
    swift test --skip-build --scratch-path .build-asan --sanitize=address --skip "LoadTests|ConnectionLimitTests"
    swift test --skip-build --scratch-path .build-asan --sanitize=address --filter "LoadTests|ConnectionLimitTests"
    ;;
thread)
    swift build --build-tests --scratch-path .build-tsan --sanitize=thread
    TSAN_OPTIONS="suppressions=$PWD/scripts/sanitizers/tsan.supp ${TSAN_OPTIONS:-}" \
        swift test --skip-build --scratch-path .build-tsan --sanitize=thread \
        --filter "EngineTests|FragmentationTests|RecordAlertTests|ResourceBoundTests|HandlerTests|HookExecutorTests"
    ;;
*)
    echo "usage: $0 [address|thread]" >&2
    exit 64
    ;;
esac
