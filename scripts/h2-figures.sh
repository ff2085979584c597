#!/usr/bin/env bash
# WebSockets over HTTP/2 (RFC 8441) against HTTP/1.1, in one run, as
# docs/HTTP2.md ("Figures") quotes them. The echo example (one worker, HTTP/2
# by prior knowledge on its plain port, --h2c) pinned to CPU 0, the load
# generator (one thread) on CPU 1, loopback only, every run bounded in time.
#
# usage: scripts/h2-figures.sh [ROUNDS=3] [WHAT="echo idle open"] [BACKENDS="io_uring epoll"]
# env:   ECHO, LOADGEN  the binaries (default target/release/examples/echo and
#                       target/release/loadgen: cargo build --release -p ringws
#                       --example echo -p ringws-loadgen --bin loadgen)
#        DUR            echo: seconds per run (default 8)
#        CAP            echo: the server's CPU quota in CPUs (default 0.15; 0 for
#                       none). With one connection carrying 100 streams the
#                       server does far less per message than the client, so
#                       uncapped it idles between the client's writes; held to
#                       0.15 CPU it has work waiting in every cell (saturated:
#                       its CPU share near the quota, printed per cell).
#        IDLE           idle: WebSockets held (default 10000)
#        OPENS          open: HTTP/1.1 connections opened (default 10000)
#        OPENS_H2       open: HTTP/2 streams opened, 100 per connection
#                       (default 50000)
#
# echo: msgs per server-CPU-second, 100 WebSockets echoing 20 B and 16 KiB
#   messages (one in flight each), three ways: HTTP/1.1 (100 connections),
#   HTTP/2 with 100 streams on one connection, HTTP/2 with 100 connections of
#   one stream; each round runs every cell once, and a ratio is the median of
#   the ratios within rounds.
# idle: IDLE WebSockets held idle: HTTP/1.1 (IDLE sockets) against HTTP/2 with
#   100 streams per connection (IDLE/100 sockets): the server's resident bytes
#   per WebSocket (loadgen hold --server-pid) and the kernel's slab growth per
#   WebSocket (/proc/slabinfo, the whole machine: both ends of every loopback
#   socket, the load generator's included).
# open: WebSockets opened per server-CPU-second: extended CONNECT streams on
#   100-stream connections against HTTP/1.1 connections (TCP accept + upgrade).
set -u
cd "$(dirname "$0")/.." || exit 2
ROUNDS=${1:-3}; WHAT=${2:-echo idle open}; BACKENDS=${3:-io_uring epoll}
ECHO=${ECHO:-target/release/examples/echo}; LOADGEN=${LOADGEN:-target/release/loadgen}
DUR=${DUR:-8}; CAP=${CAP:-0.15}; IDLE=${IDLE:-10000}; OPENS=${OPENS:-10000}; OPENS_H2=${OPENS_H2:-50000}
for bin in "$ECHO" "$LOADGEN"; do
  [ -x "$bin" ] || { echo "h2-figures: $bin missing (cargo build --release -p ringws --example echo -p ringws-loadgen)" >&2; exit 2; }
done
ulimit -n 20000 || exit 2
D=$(mktemp -d)
PORT=$((19700 + RANDOM % 200))
SP=

# The server's threads into a cgroup (v1 "cpu" or v2) with a quota of $CAP CPUs.
CG=
if [ "$CAP" != 0 ]; then
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
    CG=/sys/fs/cgroup/cpu/ringws-h2-figures
    mkdir -p "$CG"
    echo 10000 >"$CG/cpu.cfs_period_us"
    awk -v c="$CAP" 'BEGIN{printf "%d\n", c * 10000}' >"$CG/cpu.cfs_quota_us"
  elif [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    CG=/sys/fs/cgroup/ringws-h2-figures
    mkdir -p "$CG"
    awk -v c="$CAP" 'BEGIN{printf "%d 10000\n", c * 10000}' >"$CG/cpu.max"
  else
    echo "h2-figures: no writable cgroup cpu controller: CAP=0 (the server may not be saturated)" >&2
    CAP=0
  fi
fi
cleanup() {
  [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
  rm -rf "$D"
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
}
trap cleanup EXIT

start() { # BACKEND
  taskset -c 0 "$ECHO" --port "$PORT" --workers 1 --backend "$1" --h2c >/dev/null 2>&1 &
  SP=$!
  local i
  for i in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "h2-figures: the echo example did not listen on $PORT" >&2; exit 1
}
stop() { kill "$SP"; wait "$SP" 2>/dev/null; SP=; PORT=$((PORT + 1)); }
cap() {
  [ -n "$CG" ] || return 0
  local task
  for task in /proc/"$SP"/task/*; do
    if [ -f "$CG/tasks" ]; then echo "${task##*/}" >"$CG/tasks"; else echo "${task##*/}" >"$CG/cgroup.threads"; fi
  done
}
# The server's CPU time in nanoseconds (every thread's, from schedstat: finer
# than /proc/PID/stat's 10 ms ticks, which a run of stream opens fits in a few of).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }
slab_kib() { awk 'NR > 2 {s += $3 * $4} END {printf "%d\n", s / 1024}' /proc/slabinfo 2>/dev/null || echo 0; }
# The load generator's flags for a transport: h1, h2x1 (100 streams on one
# connection per 100 WebSockets), h2x100 (one stream per connection).
mode_flags() {
  case $1 in
    h1) MODE=() ;;
    h2) MODE=(--http2 --streams-per-conn 100) ;;
    h2x1) MODE=(--http2 --streams-per-conn 1) ;;
  esac
}

RESULTS=$D/results
: >"$RESULTS"
# One line per measurement: KIND BACKEND ROUND CELL VALUE [more]

echo_run() { # BACKEND ROUND MODE SIZE
  mode_flags "$3"
  start "$1"; cap
  local c0 t0 c1 t1 out
  c0=$(cpu_ns "$SP"); t0=$(date +%s.%N)
  out=$(taskset -c 1 timeout 90 "$LOADGEN" echo --url "ws://127.0.0.1:$PORT/" "${MODE[@]}" \
    -c 100 -s "$4" -d "$DUR" -t 1 --json "$D/echo.json" 2>&1)
  c1=$(cpu_ns "$SP"); t1=$(date +%s.%N); stop
  python3 - "$D/echo.json" "$1" "$2" "$3" "$4" "$c0" "$c1" "$t0" "$t1" "$CAP" >>"$RESULTS" <<'EOF' || echo "$out" >&2
import json, sys
path, backend, rnd, mode, size = sys.argv[1:6]
c0, c1, t0, t1, cap = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9]), sys.argv[10]
r = json.load(open(path))[0]
errors = r["mismatches"] + r["lost"] + r["dropped"] + sum(r["failures"].values())
cpu = (c1 - c0) / 1e9
print(f"echo {backend} {rnd} {mode}-{size} {r['messages'] / cpu:.0f} {cpu / (t1 - t0):.2f} "
      f"{r['tcp_connections']} {r['messages']} {errors} {cap}")
EOF
}

idle_run() { # BACKEND MODE
  mode_flags "$2"
  start "$1"
  local s0 out
  s0=$(slab_kib)
  # Slab is read mid-hold (the load generator samples the server's RSS itself).
  (sleep 7; slab_kib >"$D/slab") &
  local sampler=$!
  out=$(taskset -c 1 timeout 120 "$LOADGEN" hold --url "ws://127.0.0.1:$PORT/" "${MODE[@]}" \
    -c "$IDLE" -d 10 -t 1 --ping-interval 60 --server-pid "$SP" --json "$D/hold.json" 2>&1)
  wait "$sampler"; stop
  python3 - "$D/hold.json" "$1" "$2" "$s0" "$(cat "$D/slab")" >>"$RESULTS" <<'EOF' || echo "$out" >&2
import json, sys
path, backend, mode = sys.argv[1:4]
s0, s1 = int(sys.argv[4]), int(sys.argv[5])
r = json.load(open(path))[0]
rss = (r.get("server_rss") or {}).get("bytes_per_connection", float("nan"))
n = r["live_at_end"]
print(f"idle {backend} 1 {mode} {rss:.0f} {(s1 - s0) * 1024 / max(n, 1):.0f} {r['tcp_connections']} {n}")
EOF
}

open_run() { # BACKEND ROUND MODE
  mode_flags "$3"
  start "$1"
  local c0 c1 out
  c0=$(cpu_ns "$SP")
  local n=$OPENS
  [ "$3" = h2 ] && n=$OPENS_H2
  out=$(taskset -c 1 timeout 120 "$LOADGEN" connect --url "ws://127.0.0.1:$PORT/" "${MODE[@]}" \
    -c "$n" -t 1 --json "$D/open.json" 2>&1)
  c1=$(cpu_ns "$SP"); stop
  python3 - "$D/open.json" "$1" "$2" "$3" "$c0" "$c1" >>"$RESULTS" <<'EOF' || echo "$out" >&2
import json, sys
path, backend, rnd, mode = sys.argv[1:5]
cpu = (int(sys.argv[6]) - int(sys.argv[5])) / 1e9
r = json.load(open(path))[0]
print(f"open {backend} {rnd} {mode} {r['connected'] / cpu:.0f} {r['connections_per_s']:.0f} "
      f"{r['tcp_connections']} {r['connected']} {sum(r['failures'].values())}")
EOF
}

for round in $(seq "$ROUNDS"); do
  for backend in $BACKENDS; do
    for what in $WHAT; do
      case $what in
        echo) for size in 20 16384; do for mode in h1 h2 h2x1; do echo_run "$backend" "$round" "$mode" "$size"; done; done ;;
        open) for mode in h1 h2; do open_run "$backend" "$round" "$mode"; done ;;
        idle) [ "$round" = 1 ] && for mode in h1 h2; do idle_run "$backend" "$mode"; done ;;
      esac
    done
  done
  echo "h2-figures: round $round of $ROUNDS done" >&2
done

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; CAP=$CAP DUR=$DUR"
echo "raw:"; sed 's/^/  /' "$RESULTS"
python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(xs): return statistics.median(xs) if xs else float("nan")
echo = collections.defaultdict(dict)   # (backend, round) -> cell -> (rate, cpu, tcp, msgs, errors)
opens = collections.defaultdict(dict)
idle = {}
for r in rows:
    if r[0] == "echo":
        echo[(r[1], r[2])][r[3]] = (float(r[4]), float(r[5]), int(r[6]), int(r[7]), int(r[8]))
    elif r[0] == "open":
        opens[(r[1], r[2])][r[3]] = (float(r[4]), float(r[5]), int(r[6]), int(r[7]), int(r[8]))
    elif r[0] == "idle":
        idle[(r[1], r[3])] = (float(r[4]), float(r[5]), int(r[6]), int(r[7]))
backends = sorted({k[0] for k in list(echo) + list(opens)} | {k[0] for k in idle})
if echo:
    print("\necho: msgs per server-CPU-second, medians over rounds; ratios: medians of within-round ratios to HTTP/1.1")
    print(f"  {'backend':9} {'cell':12} {'HTTP/1.1':>10} {'h2 100/conn':>12} {'ratio':>6} {'h2 1/conn':>10} {'ratio':>6}  server CPU share (h1, h2, h2x1); errors")
    for b in backends:
        for size in ("20", "16384"):
            rounds = [v for (bb, _), v in sorted(echo.items()) if bb == b]
            get = lambda m, i=0: [rd[f"{m}-{size}"][i] for rd in rounds if f"{m}-{size}" in rd]
            ratio = lambda m: [rd[f"{m}-{size}"][0] / rd[f"h1-{size}"][0] for rd in rounds
                               if f"{m}-{size}" in rd and f"h1-{size}" in rd]
            errs = sum(get("h1", 4) + get("h2", 4) + get("h2x1", 4))
            print(f"  {b:9} 100x{size:<8} {med(get('h1')):>10,.0f} {med(get('h2')):>12,.0f} {med(ratio('h2')):>6.2f}"
                  f" {med(get('h2x1')):>10,.0f} {med(ratio('h2x1')):>6.2f}  "
                  f"{med(get('h1', 1)):.2f}, {med(get('h2', 1)):.2f}, {med(get('h2x1', 1)):.2f}; {errs}")
if idle:
    print("\nidle: per WebSocket held (server user space from its RSS; kernel slab growth, whole machine)")
    for b in backends:
        for m, label in (("h1", "HTTP/1.1"), ("h2", "HTTP/2 100 streams/conn")):
            if (b, m) in idle:
                rss, slab, tcp, n = idle[(b, m)]
                print(f"  {b:9} {label:24} {n:>6} WebSockets over {tcp:>6} TCP connections: "
                      f"server {rss:>6,.0f} B user space, kernel slab {slab:>6,.0f} B")
if opens:
    print("\nopen: WebSockets opened per server-CPU-second (and per second), medians over rounds")
    for b in backends:
        rounds = [v for (bb, _), v in sorted(opens.items()) if bb == b]
        for m, label in (("h1", "HTTP/1.1 connections"), ("h2", "HTTP/2 streams (100/conn)")):
            xs = [rd[m] for rd in rounds if m in rd]
            if xs:
                print(f"  {b:9} {label:26} {med([x[0] for x in xs]):>9,.0f} per CPU-s  {med([x[1] for x in xs]):>9,.0f} /s"
                      f"  over {xs[0][2]} TCP connections; failures {sum(x[4] for x in xs)}")
        ratio = [rd["h2"][0] / rd["h1"][0] for rd in rounds if "h1" in rd and "h2" in rd]
        if ratio:
            print(f"  {b:9} streams / connections per CPU-s: x{med(ratio):.2f}")
EOF
