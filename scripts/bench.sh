#!/usr/bin/env bash
# Backend comparison: the echo example pinned to one core, the load generator on
# the other, for each backend in turn, in one run (the machines are shared and
# noisy: compare ratios from the same run). Reports messages per second and
# messages per server-CPU-second (messages / server CPU time from /proc/PID/stat),
# which is stable where raw rates move with the neighbours.
#
# usage: scripts/bench.sh [SECONDS]   (default 10 per cell)
# env:   BACKENDS="epoll io_uring"  CELLS="100:20 10000:20 100:16384 10000:16384"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
backends=${BACKENDS:-"epoll io_uring"}
cells=${CELLS:-"100:20 10000:20 100:16384 10000:16384"}
server_cpu=0 client_cpu=1
[ "$(nproc)" -ge 2 ] || server_cpu=0 client_cpu=0
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p ringws --example echo -p ringws-loadgen >/dev/null 2>&1 \
  || cargo build --release -p ringws --example echo -p ringws-loadgen
tck=$(getconf CLK_TCK)
out=$(mktemp -d)
trap 'rm -rf "$out"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket,random
while True:
    p = random.randint(10000, 32000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError: pass'; }

printf '%-9s %7s %7s %12s %14s %9s %9s\n' backend conns bytes "msgs/s" "msgs/cpu-s" "p50 ms" "p99 ms"
for cell in $cells; do
  conns=${cell%%:*} size=${cell##*:}
  for backend in $backends; do
    port=$(free_port)
    taskset -c "$server_cpu" target/release/examples/echo --port "$port" --workers 1 --backend "$backend" >"$out/server.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    # Ramp and warm up outside the measured window: the client measures its own
    # window; the server's CPU is sampled around the same window.
    taskset -c "$client_cpu" target/release/loadgen echo --url "ws://127.0.0.1:$port/" -c "$conns" -s "$size" \
      -d "$seconds" -t 1 --json "$out/r.json" >"$out/client.log" 2>&1 &
    client=$!
    # Wait for the ramp (all connected), then sample CPU over the measured window.
    sleep 2
    t0=$(cpu_ticks "$server")
    sleep "$seconds"
    t1=$(cpu_ticks "$server")
    wait "$client" || true
    kill "$server"; wait "$server" 2>/dev/null || true; server=
    python3 - "$out/r.json" "$backend" "$conns" "$size" "$t0" "$t1" "$tck" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))[0]
backend, conns, size = sys.argv[2:5]
t0, t1, tck, secs = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
cpu = (t1 - t0) / tck
rate = r["messages_per_s"]
per_cpu = rate * secs / cpu if cpu > 0 else float("nan")
lat = r["latency_ms"]
print(f"{backend:<9} {conns:>7} {size:>7} {rate:>12.0f} {per_cpu:>14.0f} {lat['p50'] or 0:>9.3f} {lat['p99'] or 0:>9.3f}")
PY
  done
done
