#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints, docs, every test of
# the workspace on every backend, then Autobahn|Testsuite sections 1-10 on every
# backend (strict: only OK and INFORMATIONAL pass, and the per-case results must
# equal tests/autobahn/expected-1-10.txt). Exits non-zero on the first failure.
#
# SKIP_AUTOBAHN=1 skips the conformance run (it needs Python 3 and PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "== cargo test"
# Integration tests open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo test --workspace --locked

if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
  for backend in epoll io_uring; do
    echo "== autobahn 1-10, backend $backend"
    bash scripts/autobahn.sh --backend "$backend" --compare --outdir "target/autobahn-$backend"
  done
fi
