#!/usr/bin/env bash
# A ringws cluster on this machine: redis-server, N chat nodes (the chat
# example with --redis) and nginx in front of them as the load balancer
# (least_conn, WebSocket upgrade proxying). Installs redis-server and nginx
# from the Debian packages when they are missing. Prints the URL, runs until
# Ctrl-C (or, with --check, runs a bounded cross-node broadcast through nginx
# and exits with its verdict), and stops everything it started by PID.
#
#   bash scripts/cluster.sh [N] [--workers W] [--check] [--debug] [--keep-running SECONDS]
#
# N chat nodes (default 2), each with W workers (default 1); --debug uses the
# debug build (what scripts/test.sh has built already) instead of release.
# Every process writes its output to the run's temporary directory, printed
# at start.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=2
WORKERS=1
CHECK=0
KEEP=""
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    --debug) PROFILE=debug; shift ;;
    --keep-running) KEEP="$2"; shift 2 ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    [0-9]*) NODES="$1"; shift ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash scripts/apt-install.sh redis-server nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
PROFILE_FLAG=()
[ "$PROFILE" = release ] && PROFILE_FLAG=(--release)
echo "== building the chat example ($PROFILE)"
cargo build "${PROFILE_FLAG[@]}" --locked -q -p ringws --example chat
if [ "$CHECK" = 1 ]; then
  cargo build "${PROFILE_FLAG[@]}" --locked -q -p ringws-loadgen
fi
CHAT="$CARGO_TARGET_DIR/$PROFILE/examples/chat"
LOADGEN="$CARGO_TARGET_DIR/$PROFILE/loadgen"

TMP=$(mktemp -d /tmp/ringws-cluster.XXXXXX)
PIDS=()
cleanup() {
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
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, from the kernel.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}
read -r -a PORTS <<<"$(free_ports $((NODES + 2)))"
REDIS_PORT=${PORTS[0]}
NGINX_PORT=${PORTS[1]}
NODE_PORTS=("${PORTS[@]:2}")

# Waits (at most $2 seconds) until a TCP port accepts connections.
wait_port() {
  local port="$1" seconds="$2"
  for _ in $(seq $((seconds * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "cluster.sh: nothing listens on port $port after ${seconds}s (logs in $TMP)" >&2
  return 1
}

echo "== redis-server on 127.0.0.1:$REDIS_PORT (dir $TMP)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
  >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
echo "$!" >"$TMP/redis.pid"
wait_port "$REDIS_PORT" 10

UPSTREAMS=""
for i in $(seq 0 $((NODES - 1))); do
  port=${NODE_PORTS[$i]}
  echo "== chat node $i on 127.0.0.1:$port"
  # --stats: the bridge's counters once a second in the node's log.
  "$CHAT" --port "$port" --workers "$WORKERS" --redis "redis://127.0.0.1:$REDIS_PORT/" --stats 1 \
    >"$TMP/node-$i.log" 2>&1 &
  PIDS+=($!)
  UPSTREAMS+="    server 127.0.0.1:$port;"$'\n'
done
for port in "${NODE_PORTS[@]}"; do
  wait_port "$port" 30
done

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream ringws {
    least_conn;
$UPSTREAMS  }
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    ''      close;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://ringws;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF
echo "== nginx on 127.0.0.1:$NGINX_PORT (least_conn over $NODES node(s))"
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)
wait_port "$NGINX_PORT" 10

URL="ws://127.0.0.1:$NGINX_PORT/"
echo "cluster: $URL  (chat: ${URL}?nick=NAME; nodes ${NODE_PORTS[*]}; redis $REDIS_PORT; logs $TMP)"

if [ "$CHECK" = 1 ]; then
  # Through nginx the subscribers land on every node (least_conn); the
  # publisher is one of them. Exactly once is checked by the load generator.
  echo "== check: loadgen broadcast through nginx"
  timeout 60 "$LOADGEN" broadcast --url "$URL" -c 40 --rate 50 -d 2 -t 1
  # The publisher sits on one node; every other node must have delivered
  # messages that came through Redis (so nginx spread the subscribers).
  sleep 1.5
  crossed=0
  for i in $(seq 0 $((NODES - 1))); do
    last=$(grep BridgeStats "$TMP/node-$i.log" | tail -1)
    echo "   node $i: $last"
    received=$(sed -n 's/.*received: \([0-9]*\).*/\1/p' <<<"$last")
    [ "${received:-0}" -gt 0 ] && crossed=$((crossed + 1))
  done
  if [ "$crossed" -lt $((NODES - 1)) ]; then
    echo "cluster.sh: only $crossed of $NODES nodes got messages from another node" >&2
    exit 1
  fi
  echo "   $crossed node(s) delivered messages from another node: OK"
  exit 0
fi
if [ -n "$KEEP" ]; then
  sleep "$KEEP"
  exit 0
fi
echo "Ctrl-C stops the cluster."
while true; do
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: process $pid exited; stopping (logs in $TMP)" >&2
      exit 1
    fi
  done
  sleep 1
done
