#!/usr/bin/env bash
# Profiles the echo example under load: perf record (cpu-clock sampling with call
# graphs, which works where hardware counters are not exposed) on the server
# while the load generator runs, then a flamegraph SVG (inferno, installed from
# crates.io if missing) and perf's top symbols.
#
# usage: scripts/profile.sh [--backend epoll|io_uring] [--conns N] [--size BYTES]
#                           [--seconds S] [--out FILE.svg] [--peer] [--count]
#                           [--echo BIN]
#   --peer   profile uWebSockets' echo server (../shared/peers/bin/uws_echo, or
#            $PEERS_DIR/bin) the same way instead, driven by the same load
#            generator, so the two profiles read side by side
#   --count  instead of sampling, count the server's kernel work per echoed
#            message over the whole run: syscalls, wake-ups it caused (sched_waking, counted in the waker), context
#            switches (perf stat tracepoints), CPU time (task-clock), and
#            the user-space part of it (the share of perf samples taken in
#            user mode: /proc's utime ticks are too coarse for ~0.3 us a
#            message), one line to compare across servers
#   --echo BIN  profile this build of the echo example (a before/after pair
#            in one sitting) instead of target/release/examples/echo
set -euo pipefail
cd "$(dirname "$0")/.."
backend=io_uring conns=100 size=20 seconds=5 svg=target/profile.svg peer=0 count=0
echo_bin=target/release/examples/echo
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=$2; shift ;;
    --conns) conns=$2; shift ;;
    --size) size=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --out) svg=$2; shift ;;
    --peer) peer=1 ;;
    --count) count=1 ;;
    --echo) echo_bin=$2; shift ;;
    *) echo "usage: $0 [--backend B] [--conns N] [--size BYTES] [--seconds S] [--out FILE.svg] [--peer] [--count] [--echo BIN]" >&2; exit 2 ;;
  esac
  shift
done
command -v perf >/dev/null || { echo "profile: perf is needed (Debian: apt-get install linux-perf)" >&2; exit 2; }
[ "$count" = 1 ] || command -v inferno-flamegraph >/dev/null || cargo install inferno --locked
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
  taskset -c 0 "$echo_bin" --port "$port" --workers 1 --backend "$backend" >/dev/null &
fi
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
if [ "$count" = 1 ]; then
  out=$(mktemp -d)
  perf stat -x, -o "$out/stat" -e task-clock,raw_syscalls:sys_enter,sched:sched_waking,context-switches -p "$server" &
  stat_pid=$!
  # Sampling without call graphs, only to split the task clock into user
  # and kernel time.
  perf record -q -e cpu-clock -F 1999 -p "$server" -o "$out/samples" >/dev/null 2>&1 &
  record_pid=$!
  sleep 0.5
  taskset -c 1 target/release/loadgen echo --url "ws://127.0.0.1:$port/" -c "$conns" -s "$size" -d "$seconds" -t 1 >"$out/load"
  kill -INT "$stat_pid" "$record_pid"; wait "$stat_pid" "$record_pid" 2>/dev/null || true
  msgs=$(sed -n 's/^messages \([0-9]*\).*/\1/p' "$out/load")
  user=$(perf report -i "$out/samples" --stdio --no-children --sort dso 2>/dev/null |
    awk '/^ +[0-9]/ && $2 !~ /^\[kernel/ {sub("%", "", $1); u += $1} END {printf "%.4f", u / 100}')
  awk -F, -v m="$msgs" -v name="$name" -v c="$conns" -v sz="$size" -v user="$user" '
    /task-clock/ {ms = $1} /raw_syscalls/ {sc = $1} /sched_waking/ {wk = $1} /context-switches/ {cs = $1}
    END {
      if (m + 0 == 0) { print "profile: no messages counted"; exit 1 }
      printf "%s, %s x %s B: %d messages; per message: %.3f syscalls, %.3f wake-ups caused, %.3f context switches, %.0f ns CPU, of which %.0f ns user space (%.1f%%)\n",
        name, c, sz, m, sc / m, wk / m, cs / m, ms * 1e6 / m, ms * 1e6 / m * user, user * 100
    }' "$out/stat"
  rm -rf "$out"
  exit 0
fi
taskset -c 1 target/release/loadgen echo --url "ws://127.0.0.1:$port/" -c "$conns" -s "$size" -d "$((seconds + 2))" -t 1 >/dev/null &
load=$!
sleep 1.5
mkdir -p "$(dirname "$svg")"
perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$server" -o target/perf.data -- sleep "$seconds" 2>/dev/null
wait "$load" || true
perf script -i target/perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "$name, $conns x $size B" >"$svg"
perf report -i target/perf.data --stdio --no-children --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | head -25
echo "profile: flamegraph in $svg"
