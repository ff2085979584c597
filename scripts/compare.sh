#!/usr/bin/env bash
# ringws against uWebSockets, side by side in one run: builds the echo example
# and runs the peer matrix of ../shared/peers/compare.sh (uWebSockets' own echo
# server and load generator, prebuilt there) when that directory exists; says so
# and exits 0 otherwise (the peers are not part of this repository).
#
# usage: scripts/compare.sh [ROUNDS=2] [SCENARIOS...]
#   scenarios: tput-CONNS-BYTES, idle-CONNS (default: the whole matrix)
# env: PEERS_DIR  where the peers live (default ../shared/peers from the project root)
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS_DIR:-../shared/peers}
if [ ! -x "$peers/compare.sh" ]; then
  echo "compare: no peer matrix at $peers (set PEERS_DIR); skipped"
  exit 0
fi
cargo build --release --locked -p ringws --example echo
echo "compare: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
RINGWS_ECHO=target/release/examples/echo exec "$peers/compare.sh" "$@"
