#!/usr/bin/env bash
# wss:// against ws:// in one run, as docs/TLS.md ("Figures") quotes them: the
# echo example pinned to CPU 0 with one worker, the load generator (one thread)
# on CPU 1, plain and TLS servers from the same build, loopback only, every run
# bounded in time.
#
# usage: scripts/tls-figures.sh [BACKEND=epoll|io_uring|uws] [WHAT="echo idle hs"] [LABEL]
#   uws: uWebSockets' echo instead (../shared/peers/bin/uws_echo, and
#        uws_echo_ssl built with OpenSSL for TLS; $PEERS_DIR/bin), measured
#        the same way: same certificate kind, same quota, same load generator
# env:   ECHO, LOADGEN  the binaries (default target/release/examples/echo and
#                       target/release/loadgen: cargo build --release -p ringws
#                       --example echo -p ringws-loadgen --bin loadgen)
#        RAMP           hold: new connections per second (default: all at once)
#        DUR            echo: seconds per run (default 8)
#        HS             handshakes: connections (default 3000)
#        CAP            echo: the server's CPU quota, in CPUs (default 0.5; 0 for
#                       none). On two cores the load generator does as much TLS
#                       work per message as the server, so uncapped it sets the
#                       pace (the server idles at ~0.75 CPU and pays for waking
#                       up); held to half a CPU by a cgroup CPU quota the server
#                       always has work waiting, i.e. it is saturated, and the
#                       client keeps up with it.
# Prints messages per server-CPU-second (the load generator's message count over
# the server's utime + stime from /proc/PID/stat across the run, with its CPU
# share of the wall time and the user/system split per message), bytes per idle
# connection at 10,000 (loadgen hold --server-pid), full handshakes per
# server-CPU-second.
set -u
cd "$(dirname "$0")/.." || exit 2
BACKEND=${1:-epoll}; WHAT=${2:-echo idle hs}; LABEL=${3:-}
ECHO=${ECHO:-target/release/examples/echo}; LOADGEN=${LOADGEN:-target/release/loadgen}
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
PORT=$((19500 + RANDOM % 400))
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
PEERS_BIN=${PEERS_DIR:-../shared/peers}/bin
if [ "$BACKEND" = uws ]; then
  # uWebSockets' examples listen on a fixed port.
  PORT=9001
  for b in uws_echo uws_echo_ssl; do
    [ -x "$PEERS_BIN/$b" ] || { echo "tls-figures: no $PEERS_BIN/$b (set PEERS_DIR)" >&2; exit 2; }
  done
fi
start() {
  if [ "$BACKEND" = uws ]; then
    for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . || break; sleep 0.1; done
    if [ "$1" = tls ]; then
      UWS_KEY="$D/key.pem" UWS_CERT="$D/cert.pem" taskset -c 0 "$PEERS_BIN/uws_echo_ssl" >/dev/null 2>&1 &
    else
      taskset -c 0 "$PEERS_BIN/uws_echo" >/dev/null 2>&1 &
    fi
  elif [ "$1" = tls ]; then
    taskset -c 0 "$ECHO" --port $PORT --workers 1 --backend "$BACKEND" \
      --tls-cert "$D/cert.pem" --tls-key "$D/key.pem" >/dev/null 2>&1 &
  else
    taskset -c 0 "$ECHO" --port $PORT --workers 1 --backend "$BACKEND" >/dev/null 2>&1 &
  fi
  SP=$!; url "$1"; sleep 0.4
}
stop() { kill "$SP"; wait "$SP" 2>/dev/null; [ "$BACKEND" = uws ] || PORT=$((PORT + 1)); }
# The load generator's target flags for a plain or TLS server, into URL.
url() {
  if [ "$1" = tls ]; then URL=(--url "wss://127.0.0.1:$PORT/" --ca "$D/cert.pem")
  else URL=(--url "ws://127.0.0.1:$PORT/"); fi
}
# The server's threads into a cgroup (v1 "cpu" or v2) with a quota of $CAP CPUs.
CAP=${CAP:-0.5}
CG=
if [ "$CAP" != 0 ]; then
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
    CG=/sys/fs/cgroup/cpu/ringws-tls-figures
    mkdir -p "$CG"
    echo 10000 >"$CG/cpu.cfs_period_us"
    awk -v c="$CAP" 'BEGIN{printf "%d\n", c * 10000}' >"$CG/cpu.cfs_quota_us"
  elif [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    CG=/sys/fs/cgroup/ringws-tls-figures
    mkdir -p "$CG"
    awk -v c="$CAP" 'BEGIN{printf "%d 10000\n", c * 10000}' >"$CG/cpu.max"
  else
    echo "tls-figures: no writable cgroup cpu controller: CAP=0 (the server may not be saturated)" >&2
  fi
  [ -n "$CG" ] && trap 'rm -rf "$D"; rmdir "$CG" 2>/dev/null' EXIT
fi
cap() {
  [ -n "$CG" ] || return 0
  local task
  for task in /proc/"$SP"/task/*; do
    if [ -f "$CG/tasks" ]; then echo "${task##*/}" >"$CG/tasks"; else echo "${task##*/}" >"$CG/cgroup.threads"; fi
  done
}
echo_run() {
  start "$1"; cap
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$SP/stat"); t0=$(date +%s.%N)
  out=$(taskset -c 1 timeout 60 "$LOADGEN" echo "${URL[@]}" -c 100 -s "$2" -d "${DUR:-8}" -t 1 2>&1)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$SP/stat"); t1=$(date +%s.%N); stop
  msgs=$(echo "$out" | sed -n 's/^messages \([0-9]*\).*/\1/p')
  awk -v m="$msgs" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v w0="$t0" -v w1="$t1" -v cap="$CAP" \
    -v l="$LABEL $BACKEND echo $1 100x$2" 'BEGIN{c = (u + s) / 100
      printf "%s: messages %d server-cpu %.2f s (%.2f of the wall, quota %s) -> %.0f msgs/cpu-s; per message %.2f us user, %.2f us system\n",
        l, m, c, c / (w1 - w0), cap, m / c, u * 1e4 / m, s * 1e4 / m}'
}
idle_run() {
  start "$1"
  out=$(taskset -c 1 timeout 120 "$LOADGEN" hold "${URL[@]}" -c 10000 ${RAMP:+--ramp $RAMP} -d 3 -t 1 --server-pid "$SP" 2>&1)
  stop
  echo "$LABEL $BACKEND hold $1 10000: $(echo "$out" | grep 'server RSS')"
}
hs_run() {
  start tls; c0=$(cpu "$SP")
  out=$(taskset -c 1 timeout 60 "$LOADGEN" connect "${URL[@]}" -c "${HS:-3000}" -t 1 2>&1)
  c1=$(cpu "$SP"); stop
  n=$(echo "$out" | sed -n 's/^connected \([0-9]*\) .*/\1/p')
  awk -v m="$n" -v c=$((c1 - c0)) -v l="$LABEL $BACKEND handshakes" \
    'BEGIN{printf "%s: %d full handshakes, server-cpu %.2f s -> %.0f handshakes/cpu-s\n", l, m, c/100, m/(c/100)}'
}
for what in $WHAT; do
  case $what in
    echo) for s in 20 16384; do echo_run plain "$s"; echo_run tls "$s"; done ;;
    idle) idle_run plain; idle_run tls ;;
    hs) hs_run ;;
  esac
done
