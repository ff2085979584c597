#!/usr/bin/env bash
# Profiles the echo example under load: perf record (cpu-clock sampling with call
# graphs, which works where hardware counters are not exposed) on the server
# while the load generator runs, then a flamegraph SVG (inferno, installed from
# crates.io if missing) and perf's top symbols.
#
# usage: scripts/profile.sh [--backend epoll|io_uring] [--conns N] [--size BYTES]
#                           [--seconds S] [--out FILE.svg] [--peer]
#   --peer  profile uWebSockets' echo server (../shared/peers/bin/uws_echo, or
#           $PEERS_DIR/bin) the same way instead, driven by the same load
#           generator, so the two profiles read side by side
set -euo pipefail
cd "$(dirname "$0")/.."
backend=io_uring conns=100 size=20 seconds=5 svg=target/profile.svg peer=0
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift ;;
    --conns) conns=$2; shift ;;
    --size) size=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --out) svg=$2; shift ;;
    --peer) peer=1 ;;
    *) echo "usage: $0 [--backend B] [--conns N] [--size BYTES] [--seconds S] [--out FILE.svg] [--peer]" >&2; exit 2 ;;
  esac
  shift
done
command -v perf >/dev/null || { echo "profile: perf is needed (Debian: apt-get install linux-perf)" >&2; exit 2; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Frame pointers are not needed: perf unwinds with DWARF info (line tables are kept
# in release builds by the workspace profile).
cargo build --release -p ringws --example echo -p ringws-loadgen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$peer" = 1 ]; then
  uws=${PEERS_DIR:-../shared/peers}/bin/uws_echo
  [ -x "$uws" ] || { echo "profile: no uWebSockets echo at $uws (set PEERS_DIR)" >&2; exit 2; }
  # uWebSockets' example listens on a fixed port, 9001.
  port=9001
  name="uWebSockets echo"
  taskset -c 0 "$uws" >/dev/null &
else
  name="ringws echo, $backend"
  taskset -c 0 target/release/examples/echo --port "$port" --workers 1 --backend "$backend" >/dev/null &
fi
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 target/release/loadgen echo --url "ws://127.0.0.1:$port/" -c "$conns" -s "$size" -d "$((seconds + 2))" -t 1 >/dev/null &
load=$!
sleep 1.5
mkdir -p "$(dirname "$svg")"
perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$server" -o target/perf.data -- sleep "$seconds" 2>/dev/null
wait "$load" || true
perf script -i target/perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "$name, $conns x $size B" >"$svg"
perf report -i target/perf.data --stdio --no-children --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | head -25
echo "profile: flamegraph in $svg"
