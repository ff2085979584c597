#!/usr/bin/env bash
# HAProxy in front of ringws, carrying WebSockets to it over HTTP/2 (RFC 8441):
# the echo example (--h2c --metrics, HTTP/2 by prior knowledge) and HAProxy
# (mode http, a backend `server ringws ... proto h2` with `http-reuse always`)
# on free loopback ports. Clients speak WebSocket over HTTP/1.1 to HAProxy;
# HAProxy turns each upgrade into an extended CONNECT on a pooled HTTP/2
# connection to ringws. Installs Debian's haproxy when missing. Prints the URL
# and runs until Ctrl-C, or with --check runs a bounded check and exits with
# its verdict (0 PASS, 1 FAIL); stops everything it started by PID.
#
#   bash scripts/haproxy-h2.sh [N] [--backend epoll|io_uring|both] [--check] [--debug] [--keep-running SECONDS]
#
# --check: N WebSockets (default 200) opened at once through HAProxy, a text
# message echoed on each, each closed with 1000 (scripts/lib/ws-h1-check.py);
# then ringws's /metrics, scraped directly, must show N extended CONNECTs
# (ringws_http2_websockets) on at most ceil(N/100)+2 TCP connections (the
# scrape's own not counted): ringws lets 100 streams share a connection, and
# HAProxy pools its HTTP/2 connections to a server. --check runs both backends
# by default. --debug uses the debug build (what scripts/test.sh has built).
# Every process writes its output to the run's temporary directory, printed at
# start.
set -euo pipefail
cd "$(dirname "$0")/.."

N=200
CHECK=0
KEEP=""
PROFILE=release
BACKEND=""
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    --debug) PROFILE=debug; shift ;;
    --keep-running) KEEP="$2"; shift 2 ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    [0-9]*) N="$1"; shift ;;
    *) echo "haproxy-h2.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "${BACKEND:-}" in
  "") if [ "$CHECK" = 1 ]; then BACKENDS=(epoll io_uring); else BACKENDS=(auto); fi ;;
  both) BACKENDS=(epoll io_uring) ;;
  epoll|io_uring|auto) BACKENDS=("$BACKEND") ;;
  *) echo "haproxy-h2.sh: --backend epoll|io_uring|both" >&2; exit 2 ;;
esac
if [ "$CHECK" = 0 ] && [ ${#BACKENDS[@]} -gt 1 ]; then
  echo "haproxy-h2.sh: one backend at a time without --check" >&2
  exit 2
fi

bash scripts/apt-install.sh haproxy
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
PROFILE_FLAG=()
[ "$PROFILE" = release ] && PROFILE_FLAG=(--release)
echo "== building the echo example ($PROFILE)"
cargo build "${PROFILE_FLAG[@]}" --locked -q -p ringws --example echo
ECHO="$CARGO_TARGET_DIR/$PROFILE/examples/echo"

TMP=$(mktemp -d /tmp/ringws-haproxy-h2.XXXXXX)
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  # Bounded: whatever has not exited after 5 s is killed.
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# A free loopback port, from the kernel.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most $2 seconds) until a TCP port accepts connections.
wait_port() {
  local port="$1" seconds="$2"
  for _ in $(seq $((seconds * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "haproxy-h2.sh: nothing listens on port $port after ${seconds}s (logs in $TMP)" >&2
  return 1
}

# The sum of a counter's samples (all label sets) in a Prometheus text file.
metric() {
  awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { print sum + 0 }' "$2"
}

# Starts the echo example and HAProxy for backend $1 in $TMP/$1; sets
# ECHO_PORT and HAPROXY_PORT.
start() {
  local backend=$1 dir="$TMP/$1"
  mkdir -p "$dir"
  echo "== ringws echo ($backend backend, --h2c --metrics), logs in $dir"
  # The engine's debug log, for a failure's post-mortem (RUST_LOG overrides).
  RUST_LOG="${RUST_LOG:-ringws=debug}" "$ECHO" --port 0 --workers 1 --backend "$backend" --h2c --metrics \
    >"$dir/echo.log" 2>&1 &
  PIDS+=($!)
  ECHO_PORT=""
  for _ in $(seq 600); do
    ECHO_PORT=$(sed -n 's|^echo: listening on ws://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$dir/echo.log")
    [ -n "$ECHO_PORT" ] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$ECHO_PORT" ]; then
    echo "haproxy-h2.sh: the echo example did not start:" >&2
    tail -20 "$dir/echo.log" >&2
    return 1
  fi

  HAPROXY_PORT=$(free_port)
  # The lines that matter: `proto h2` (HTTP/2 by prior knowledge to the
  # server; WebSocket upgrades go as extended CONNECTs) and `http-reuse
  # always` (without it, HAProxy's default `safe` gives the first request of
  # each client connection a server connection of its own: one TCP connection
  # per WebSocket). `timeout tunnel` bounds an idle WebSocket.
  cat >"$dir/haproxy.cfg" <<EOF
global
  log stdout format raw local0 info
  pidfile $dir/haproxy.pid

defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout tunnel 1h

frontend ws
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend ringws

backend ringws
  http-reuse always
  server ringws 127.0.0.1:$ECHO_PORT proto h2
EOF
  echo "== haproxy on 127.0.0.1:$HAPROXY_PORT -> ringws 127.0.0.1:$ECHO_PORT (proto h2)"
  # -db: in the foreground, so the PID is HAProxy's own.
  "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
  PIDS+=($!)
  if ! wait_port "$HAPROXY_PORT" 10; then
    tail -20 "$dir/haproxy.log" >&2
    return 1
  fi
}

# The check for backend $1; prints the figures and the verdict, returns 0/1.
check() {
  local backend=$1 dir="$TMP/$1" ok=1
  echo "== check ($backend): $N WebSockets over HTTP/1.1 to HAProxy, echo, close 1000"
  if ! timeout 90 python3 scripts/lib/ws-h1-check.py --port "$HAPROXY_PORT" -n "$N" --deadline 60; then
    ok=0
  fi
  # Straight to ringws, not through HAProxy: one more TCP connection, HTTP/1.1.
  if ! curl -sS --max-time 5 -o "$dir/metrics.txt" "http://127.0.0.1:$ECHO_PORT/metrics"; then
    echo "haproxy-h2.sh: could not scrape /metrics" >&2
    return 1
  fi
  local accepted h2conns h2ws upgraded tcp bound=$(((N + 99) / 100 + 2))
  accepted=$(metric ringws_accepted_total "$dir/metrics.txt")
  h2conns=$(metric ringws_http2_connections_total "$dir/metrics.txt")
  h2ws=$(metric ringws_http2_websockets_total "$dir/metrics.txt")
  upgraded=$(metric ringws_upgraded_total "$dir/metrics.txt")
  tcp=$((accepted - 1))
  echo "   ringws_accepted $accepted (less the scrape: $tcp), ringws_http2_connections $h2conns," \
    "ringws_http2_websockets $h2ws, ringws_upgraded $upgraded"
  if [ "$h2ws" != "$N" ]; then
    echo "   ringws_http2_websockets is $h2ws, want $N" >&2
    ok=0
  fi
  if [ "$upgraded" != "$N" ]; then
    echo "   ringws_upgraded is $upgraded, want $N" >&2
    ok=0
  fi
  if [ "$tcp" -lt 1 ] || [ "$tcp" -gt "$bound" ]; then
    echo "   $N WebSockets rode $tcp TCP connections from HAProxy, want 1..$bound" >&2
    ok=0
  fi
  if [ "$h2conns" != "$tcp" ]; then
    echo "   $h2conns of HAProxy's $tcp connections spoke HTTP/2, want all" >&2
    ok=0
  fi
  # (option httplog: a line per request, its status after the timers.)
  local requests switched
  requests=$(grep -c '"GET / HTTP/1.1"' "$dir/haproxy.log" || true)
  switched=$(grep -cE ' -?[0-9]+/-?[0-9]+/-?[0-9]+/-?[0-9]+/\+?[0-9]+ 101 ' "$dir/haproxy.log" || true)
  echo "   haproxy logged $requests WebSocket requests, $switched answered 101"
  if [ "$ok" = 1 ]; then
    echo "   $backend: $h2ws WebSockets over $tcp HTTP/2 connection(s) from HAProxy (bound $bound)"
    return 0
  fi
  echo "   logs: $dir" >&2
  return 1
}

if [ "$CHECK" = 0 ]; then
  start "${BACKENDS[0]}"
  echo "haproxy-h2: ws://127.0.0.1:$HAPROXY_PORT/  (ringws 127.0.0.1:$ECHO_PORT over h2c; metrics http://127.0.0.1:$ECHO_PORT/metrics; logs $TMP)"
  if [ -n "$KEEP" ]; then
    sleep "$KEEP"
    exit 0
  fi
  echo "Ctrl-C stops both."
  while true; do
    for pid in "${PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "haproxy-h2.sh: process $pid exited; stopping (logs in $TMP)" >&2
        exit 1
      fi
    done
    sleep 1
  done
fi

echo "== haproxy-h2: $($HAPROXY -v | head -1); logs in $TMP"
verdicts=()
failed=0
for backend in "${BACKENDS[@]}"; do
  if start "$backend" && check "$backend"; then
    verdicts+=("$backend PASS")
  else
    verdicts+=("$backend FAIL")
    failed=1
  fi
  stop_all
done
if [ "$failed" = 0 ]; then
  echo "haproxy-h2: PASS (${verdicts[*]})"
  exit 0
fi
echo "haproxy-h2: FAIL (${verdicts[*]})"
exit 1
