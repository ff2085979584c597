#!/usr/bin/env bash
# wss:// against ws:// in one run, as README.md "wss:// (TLS)" quotes them: the
# echo example pinned to CPU 0 with one worker, the load generator (one thread)
# on CPU 1, plain and TLS servers from the same build, loopback only, every run
# bounded in time.
#
# usage: scripts/tls-figures.sh [BACKEND=epoll] [WHAT="echo idle hs"] [LABEL]
# env:   ECHO, LOADGEN  the binaries (default target/release/examples/echo and
#                       target/release/loadgen: cargo build --release -p ringws
#                       --example echo -p ringws-loadgen --bin loadgen)
#        RAMP           hold: new connections per second (default: all at once)
#        DUR            echo: seconds per run (default 8)
#        HS             handshakes: connections (default 3000)
# Prints messages per server-CPU-second (the load generator's message count over
# the server's utime + stime from /proc/PID/stat across the run), bytes per idle
# connection at 10,000 (loadgen hold --server-pid), full handshakes per
# server-CPU-second.
set -u
cd "$(dirname "$0")/.."
BACKEND=${1:-epoll}; WHAT=${2:-echo idle hs}; LABEL=${3:-}
ECHO=${ECHO:-target/release/examples/echo}; LOADGEN=${LOADGEN:-target/release/loadgen}
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
PORT=$((19500 + RANDOM % 400))
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
start() {
  if [ "$1" = tls ]; then
    taskset -c 0 "$ECHO" --port $PORT --workers 1 --backend "$BACKEND" \
      --tls-cert "$D/cert.pem" --tls-key "$D/key.pem" >/dev/null 2>&1 &
  else
    taskset -c 0 "$ECHO" --port $PORT --workers 1 --backend "$BACKEND" >/dev/null 2>&1 &
  fi
  SP=$!; sleep 0.4
}
stop() { kill "$SP"; wait "$SP" 2>/dev/null; PORT=$((PORT + 1)); }
url() {
  if [ "$1" = tls ]; then echo "--url wss://127.0.0.1:$PORT/ --ca $D/cert.pem"
  else echo "--url ws://127.0.0.1:$PORT/"; fi
}
echo_run() {
  start "$1"; c0=$(cpu "$SP")
  out=$(taskset -c 1 timeout 60 "$LOADGEN" echo $(url "$1") -c 100 -s "$2" -d "${DUR:-8}" -t 1 2>&1)
  c1=$(cpu "$SP"); stop
  msgs=$(echo "$out" | sed -n 's/^messages \([0-9]*\).*/\1/p')
  awk -v m="$msgs" -v c=$((c1 - c0)) -v l="$LABEL $BACKEND echo $1 100x$2" \
    'BEGIN{printf "%s: messages %d server-cpu %.2f s -> %.0f msgs/cpu-s\n", l, m, c/100, m/(c/100)}'
}
idle_run() {
  start "$1"
  out=$(taskset -c 1 timeout 120 "$LOADGEN" hold $(url "$1") -c 10000 ${RAMP:+--ramp $RAMP} -d 3 -t 1 --server-pid "$SP" 2>&1)
  stop
  echo "$LABEL $BACKEND hold $1 10000: $(echo "$out" | grep 'server RSS')"
}
hs_run() {
  start tls; c0=$(cpu "$SP")
  out=$(taskset -c 1 timeout 60 "$LOADGEN" connect $(url tls) -c "${HS:-3000}" -t 1 2>&1)
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
