#!/usr/bin/env bash
# The main job: installs what the build needs (Debian packages), builds the package, and
# runs `tlsctl demo`: a root CA, an intermediate CA, a server and a client certificate,
# each step printed, then the chains checked and verified with the library.
# Arguments are passed to `tlsctl demo` (for example `--dir pki` to keep the files).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

require_swift
# GnuTLS and nettle headers to build against; libsqlite3-dev for the CA ledger (GRDB);
# the command-line peers and python3-pip are what the tests use, installed here too so one
# machine serves both.
install_debian_packages libgnutls28-dev nettle-dev libsqlite3-dev gnutls-bin openssl curl python3-pip

echo "==> Building"
swift build "${swift_flags[@]}" --product tlsctl
echo "==> Running: tlsctl demo $*"
swift run "${swift_flags[@]}" tlsctl demo "$@"
