#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, pkilint from PyPI), builds the
# package with its tests, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

require_swift
# Build: libgnutls28-dev, nettle-dev, libsqlite3-dev. Independent peers the tests run:
# gnutls-bin (certtool, gnutls-cli, gnutls-serv), openssl, curl. pkilint needs pip.
install_debian_packages libgnutls28-dev nettle-dev gnutls-bin openssl curl libsqlite3-dev python3-pip
install_pip_package pkilint lint_pkix_cert
install_pip_package sslyze sslyze
# The raw TLS record peer of TLSRecordAlertInteropTests encrypts a KeyUpdate itself.
install_debian_packages python3-cryptography
install_debian_packages sqlite3
# PKCS#11 token tests: SoftHSM2 (softhsm2-util, its module, registered with p11-kit) and
# p11-kit; p11tool comes with gnutls-bin. libp11-kit-dev: pkcs11.h for the PKCS#11 shim the
# tests compile (with the toolchain's clang) to count C_Login and report a locked PIN.
install_debian_packages softhsm2 p11-kit libp11-kit-dev

# Every ```swift block of the DocC articles must be in Tests/DocSnippetTests (which runs them).
./scripts/check-doc-snippets.sh
echo "==> Building with tests"
swift build "${swift_flags[@]}" --build-tests
# Zero compiler warnings in our own sources. Read from the compiler's per-file diagnostics
# files, so a warning in a file this (incremental) build did not recompile still counts.
python3 scripts/check-warnings.py "$(swift build "${swift_flags[@]}" --show-bin-path)" .
echo "==> Testing"
# The load suites (500 concurrent mutual-TLS handshakes; 600 idle and slowloris sockets)
# saturate both cores by design; run beside the rest, they can hold other tests'
# handshakes past their 10 s timeout on a small machine. They run on their own, after.
load_suites="LoadTests|ConnectionLimitTests"
swift test "${swift_flags[@]}" --skip "$load_suites"
echo "==> Testing: the load suites, on their own"
swift test "${swift_flags[@]}" --skip-build --filter "$load_suites"

# The Benchmarks package (its own SwiftPM package): built, not run.
echo "==> Building the Benchmarks package"
(cd Benchmarks && swift build "${swift_flags[@]}")
python3 scripts/check-warnings.py "$(cd Benchmarks && swift build "${swift_flags[@]}" --show-bin-path)" .
