#!/usr/bin/env bash
# Backend comparison, in one run (the machines are shared and noisy: compare the
# ratios of one run). For each cell (connections x payload bytes) and backend:
# the echo example pinned to one core, the load generator (closed loop, one
# message in flight per connection) pinned to the other.
#
#   msgs/s        messages the server received per second over the window
#   msgs/cpu-s    the same messages divided by the server's CPU seconds in the
#                 window (/proc/PID/stat): stable where raw rates swing
#   syscalls/msg  strace -c on the server's threads in a separate short pass
#                 (strace slows the server, so it never overlaps the timed window)
#   p50/p99 ms    the load generator's latency over its whole run
#
# usage: scripts/bench.sh [SECONDS]   (default 10 per cell)
# env:   BACKENDS="epoll io_uring"  CELLS="100:20 10000:20 100:16384 10000:16384"
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
backends=${BACKENDS:-"epoll io_uring"}
cells=${CELLS:-"100:20 10000:20 100:16384 10000:16384"}
server_cpu=0 client_cpu=1
[ "$(nproc)" -ge 2 ] || client_cpu=0
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p ringws --example echo -p ringws-loadgen >/dev/null 2>&1 \
  || cargo build --release -p ringws --example echo -p ringws-loadgen
tck=$(getconf CLK_TCK)
out=$(mktemp -d)
server= client=
cleanup() {
  [ -n "$client" ] && kill "$client" 2>/dev/null
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$out"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
messages_in() { grep -o 'messages_in=[0-9]*' "$out/server.log" | tail -1 | cut -d= -f2; }
free_port() {
  python3 -c 'import socket,random
while True:
    p = random.randint(10000, 32000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError: pass'
}

# Starts the server and the load for one cell; sets $server and $client.
start() { # backend conns size duration
  local port
  port=$(free_port)
  taskset -c "$server_cpu" target/release/examples/echo --port "$port" --workers 1 --backend "$1" --stats \
    >"$out/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  taskset -c "$client_cpu" target/release/loadgen echo --url "ws://127.0.0.1:$port/" -c "$2" -s "$3" \
    -d "$4" -t 1 --json "$out/r.json" >"$out/client.log" 2>&1 &
  client=$!
  # The ramp: wait until every connection echoes (the server's count moves).
  sleep 2
}
stop() {
  wait "$client" 2>/dev/null || true
  client=
  kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
  server=
}

printf '%-9s %7s %7s %10s %11s %13s %9s %9s\n' backend conns bytes "msgs/s" "msgs/cpu-s" "syscalls/msg" "p50 ms" "p99 ms"
for cell in $cells; do
  conns=${cell%%:*} size=${cell##*:}
  for backend in $backends; do
    # Timed pass.
    start "$backend" "$conns" "$size" "$((seconds + 1))"
    m0=$(messages_in); t0=$(cpu_ticks "$server")
    sleep "$seconds"
    m1=$(messages_in); t1=$(cpu_ticks "$server")
    stop
    lat=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))[0]["latency_ms"]; print(l["p50"] or 0, l["p99"] or 0)' "$out/r.json")
    # Syscall pass.
    per_msg=nan
    if command -v strace >/dev/null; then
      start "$backend" "$conns" "$size" 4
      s0=$(messages_in)
      # shellcheck disable=SC2046
      timeout -s INT 2 strace -c -f $(ls "/proc/$server/task" | sed 's/^/-p /') -o "$out/strace.txt" 2>/dev/null || true
      sleep 0.5
      s1=$(messages_in)
      calls=$(awk '$NF == "total" {print $4}' "$out/strace.txt")
      stop
      per_msg=$(python3 -c "import sys; m=int(sys.argv[2])-int(sys.argv[1]); print(f'{int(sys.argv[3])/m:.3f}' if m > 0 else 'nan')" "$s0" "$s1" "${calls:-0}")
    fi
    python3 - "$backend" "$conns" "$size" "$m0" "$m1" "$t0" "$t1" "$tck" "$seconds" "$per_msg" $lat <<'PY'
import sys
backend, conns, size = sys.argv[1:4]
m0, m1, t0, t1, tck = (int(x) for x in sys.argv[4:9])
secs, per_msg, p50, p99 = float(sys.argv[9]), sys.argv[10], float(sys.argv[11]), float(sys.argv[12])
msgs, cpu = m1 - m0, (t1 - t0) / tck
print(f"{backend:<9} {conns:>7} {size:>7} {msgs / secs:>10.0f} {msgs / cpu if cpu else float('nan'):>11.0f} {per_msg:>13} {p50:>9.3f} {p99:>9.3f}")
PY
  done
done
