#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints (also of the
# engine with its `fuzzing` feature, the TLS fuzz targets' harness), docs, import
# cycles between the engine's modules (scripts/module-cycles.py); Autobahn
# |Testsuite sections 1-10 on both backends, over ws:// and wss:// (strict: only OK and INFORMATIONAL
# pass, and the per-case results must equal tests/autobahn/expected-1-10.txt),
# and 12-13 (permessage-deflate) in full on io_uring and in part on epoll;
# the load generator against an independent server (Python websockets); then
# every test of the workspace, whose integration tests each run on both backends
# (the Redis bridge's against real redis-servers and a 3-shard Redis Cluster,
# installed here from the Debian packages when missing); then wss:// in headless
# Chromium on both backends (scripts/browser.sh: 1 MiB of text and of binary
# echoed, a close with a code and a reason, the certificate from a test CA;
# Debian's chromium installed when missing); the fuzz targets (the TLS
# harness's tests; every target of engine/fuzz compiles; fuzzing proper is
# scripts/fuzz.sh, run by hand);
# scripts/million.sh (each mode, and over namespace client hosts) and
# scripts/soak.sh run small on debug builds; `loadgen --agents` over network
# namespaces (scripts/agents.sh: 2 client hosts, the merged report, an agent
# killed mid-run; skipped with the reason where namespaces cannot be made); live restarts
# (scripts/restart-demo.sh --live: connections handed over to a new process
# under load, both backends, ws and wss with permessage-deflate's context
# takeover; the
# integration test tests/tests/handover.rs runs with the workspace's tests);
# then a 2-node cluster behind nginx
# (scripts/cluster.sh --check); then HAProxy in front carrying 200 WebSockets
# to ringws over HTTP/2, RFC 8441, on both backends (scripts/haproxy-h2.sh
# --check: Debian's haproxy installed when missing). Before the tests: the metrics
# test's Prometheus parser (Python prometheus_client, from PyPI, in a venv under
# target/), nginx with its stream module for the PROXY protocol test and the
# cluster, and net.ipv4.tcp_migrate_req=1 for the restart test (per network
# namespace; the test is skipped with the reason where it cannot be set).
# Every integration test runs over both transports (plain, TLS); the HTTP/2
# ones (tests/tests/http2*.rs) by prior knowledge and by ALPN h2, one of them
# against an independent client (Python's h2: 1,000 WebSocket streams on one
# connection).
# Exits non-zero on the first failure.
#
# SKIP_PYTHON=1 skips the two steps that need Python 3 and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p ringws --all-targets --features fuzzing --locked -- -D warnings

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "== module cycles (the checker's self-test, then engine/src)"
# Python 3's standard library only; any cycle fails.
python3 scripts/module-cycles.py --self-test
python3 scripts/module-cycles.py

# Integration tests and the scale checks open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${SKIP_PYTHON:-0}" != 1 ]; then
  for backend in epoll io_uring; do
    echo "== autobahn 1-10, backend $backend"
    bash scripts/autobahn.sh --backend "$backend" --compare --outdir "target/autobahn-$backend"
  done
  # The same cases over wss://, with the same expected results.
  for backend in epoll io_uring; do
    echo "== autobahn 1-10 over wss://, backend $backend"
    bash scripts/autobahn.sh --backend "$backend" --tls --compare --outdir "target/autobahn-tls-$backend"
  done
  # permessage-deflate: every case of 12 and 13 on io_uring (dedicated mode),
  # a representative subset on epoll (shared mode); scripts/autobahn-deflate.sh
  # runs the full matrix on both.
  echo "== autobahn 12-13 (permessage-deflate), io_uring, dedicated"
  AUTOBAHN_TIMEOUT=2400 bash scripts/autobahn.sh --backend io_uring --deflate dedicated \
    --cases '["12.*","13.*"]' --outdir target/autobahn-deflate-io_uring
  echo "== autobahn 12.1, 13.1 (permessage-deflate), epoll, shared"
  bash scripts/autobahn.sh --backend epoll --deflate shared \
    --cases '["12.1.*","13.1.*"]' --outdir target/autobahn-deflate-epoll
  echo "== loadgen against an independent server"
  bash scripts/neutral.sh
fi

echo "== test dependencies: redis-server, redis-tools, nginx, Prometheus parser, Python h2, tcp_migrate_req"
# The Redis bridge's tests start their own redis-servers (and a Redis Cluster,
# made with redis-cli from redis-tools); cluster.sh and the PROXY protocol test
# need nginx (the latter with its stream module).
bash scripts/apt-install.sh redis-server redis-tools nginx libnginx-mod-stream
RINGWS_METRICS_PYTHON="$(bash scripts/metrics-parser.sh)"
export RINGWS_METRICS_PYTHON
# The independent HTTP/2 client (Python's h2, from PyPI) of tests/tests/http2_python.rs.
RINGWS_H2_PYTHON="$(bash scripts/h2-python.sh)"
export RINGWS_H2_PYTHON
if [ "$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo 1)" = 0 ]; then
  echo 1 > /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null \
    || sudo -n sysctl -qw net.ipv4.tcp_migrate_req=1 2>/dev/null || true
fi

echo "== cargo test"
cargo test --workspace --locked

echo "== wss:// in headless Chromium, both backends"
bash scripts/browser.sh

echo "== fuzz targets: the TLS harness's own tests; every target compiles"
# Fuzzing itself is scripts/fuzz.sh (cargo-fuzz, sanitizers, minutes per
# target): here only what keeps the targets honest and building.
cargo test -p ringws --features fuzzing --lib --locked fuzzing
cargo check --manifest-path engine/fuzz/Cargo.toml --locked --bins

echo "== million.sh and soak.sh, small and unoptimized (the scripts work; no figures)"
bash scripts/million.sh 2000 --debug --tune no --ramp 1000 -d 3 --ping-interval 1 --out target/million/ci-hold
bash scripts/million.sh 1000 --debug --tune no --ramp 1000 -d 3 --mode broadcast --out target/million/ci-broadcast
# (The others run in a namespace of their own with its own TCP hash; this one
# on the machine's loopback.)
bash scripts/million.sh 1000 --debug --tune no --ramp 1000 -d 3 --mode echo --every 1 --ehash shared --out target/million/ci-echo
# Client hosts as namespaces, each side's packets received in its own threads.
bash scripts/million.sh 2000 --debug --tune no --ramp 1000 -d 3 --ping-interval 1 --hosts 2 --out target/million/ci-hosts
# (RSS bound loosened: at 2,000 connections a few receive buffers faulting in
# are a large share of the server's RSS; the real bound is the full soak's.)
bash scripts/soak.sh --connections 2000 --duration 40 --kill-every 10 --kill 1 --rss-tolerance 50 \
  --debug --tune no --out target/soak/ci

echo "== loadgen --agents: client hosts as network namespaces, an agent killed mid-run"
bash scripts/agents.sh

echo "== live restarts, small and unoptimized: connections handed to a new process under load, both backends, ws and wss+deflate"
for backend in epoll io_uring; do
  bash scripts/restart-demo.sh --live --debug --backend "$backend" --hold 200 --secs 4 --ping 2
  bash scripts/restart-demo.sh --live --debug --backend "$backend" --hold 200 --secs 4 --ping 2 --tls --deflate --dedicated
done

echo "== cluster: redis-server, 2 chat nodes, nginx; a broadcast checked through it"
bash scripts/cluster.sh 2 --check --debug
echo "== HAProxy in front, WebSockets carried to ringws over HTTP/2 (RFC 8441), both backends"
bash scripts/haproxy-h2.sh --check --debug
