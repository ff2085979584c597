#!/usr/bin/env bash
# The cross-node figures of docs/PERFORMANCE.md ("Several nodes"): redis-server and two
# chat nodes (release, --redis) on free loopback ports, then
#   1. loadgen broadcast: SUBS subscribers spread over both nodes, one
#      publisher on node 0 at RATE/s for SECONDS: deliveries per second and
#      fan-out latency on the publisher's node and across nodes, the exactly-
#      once check, redis-server's CPU per published message;
#   2. the same with one Redis outage of OUTAGE seconds in the middle (killed,
#      then restarted on its port): messages missed by subscribers, the longest
#      gap between two deliveries (outage + time to resume), and the nodes'
#      bridge counters (dropped, failed, reconnects) from their logs.
# Everything started is stopped by PID on exit. Needs `ulimit -n` >= SUBS + 100
# per process.
#
#   SUBS=10000 RATE=100 SECS=10 OUTAGE=2 RAMP=5000 THREADS=1 WORKERS=1 \
#     bash scripts/cluster-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SUBS=${SUBS:-10000}
RATE=${RATE:-100}
SECS=${SECS:-10}
OUTAGE=${OUTAGE:-2}
WORKERS=${WORKERS:-1}
THREADS=${THREADS:-1}
RAMP=${RAMP:-5000}

bash scripts/apt-install.sh redis-server
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -q -p ringws --example chat
cargo build --release --locked -q -p ringws-loadgen
CHAT="$CARGO_TARGET_DIR/release/examples/chat"
LOADGEN="$CARGO_TARGET_DIR/release/loadgen"

TMP=$(mktemp -d /tmp/ringws-cluster-bench.XXXXXX)
PIDS=()
REDIS_PID=""
cleanup() {
  for pid in "${PIDS[@]}" $REDIS_PID; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}" $REDIS_PID; do kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r -a PORTS <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
REDIS_PORT=${PORTS[0]}

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1 (logs in $TMP)" >&2
  return 1
}

start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    >>"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
}

start_redis
for i in 0 1; do
  "$CHAT" --port "${PORTS[$((i + 1))]}" --workers "$WORKERS" \
    --redis "redis://127.0.0.1:$REDIS_PORT/" --stats 1 --no-announce >"$TMP/node-$i.log" 2>&1 &
  PIDS+=($!)
done
wait_port "${PORTS[1]}"
wait_port "${PORTS[2]}"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), ulimit -n $(ulimit -n)"
URLS=(--url "ws://127.0.0.1:${PORTS[1]}/" --url "ws://127.0.0.1:${PORTS[2]}/")

echo "== 1. $SUBS subscribers over 2 nodes, $RATE publishes/s for $SECS s"
"$LOADGEN" broadcast "${URLS[@]}" -c "$SUBS" --rate "$RATE" -d "$SECS" -t "$THREADS" \
  --ramp "$RAMP" --cpu-pid "$REDIS_PID" --json "$TMP/steady.json"

echo "== 2. the same with a Redis outage of $OUTAGE s"
"$LOADGEN" broadcast "${URLS[@]}" -c "$SUBS" --rate "$RATE" -d "$SECS" -t "$THREADS" \
  --ramp "$RAMP" --allow-loss --json "$TMP/outage.json" &
LOADGEN_PID=$!
PIDS+=("$LOADGEN_PID")
# Past the ramp (SUBS / RAMP seconds), in the middle of the measured window.
sleep "$(python3 -c "print($SUBS / $RAMP + $SECS / 2)")"
echo "   killing redis-server (pid $REDIS_PID) at $(date +%T.%N | cut -c1-12)"
kill -9 "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
sleep "$OUTAGE"
echo "   restarting redis-server at $(date +%T.%N | cut -c1-12)"
start_redis
wait "$LOADGEN_PID" || true
sleep 1.5
for i in 0 1; do
  echo "   node $i bridge: $(grep 'BridgeStats' "$TMP/node-$i.log" | tail -1)"
done
echo "logs and JSON in $TMP"
