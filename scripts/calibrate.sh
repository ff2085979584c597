#!/usr/bin/env bash
# Calibration: is the load generator the bottleneck, and does it agree with an
# independent tool? Against the same echo server (pinned to core 0, clients on
# core 1), runs a closed-loop echo (one 20-byte message in flight per
# connection) with loadgen, then with a small Node.js client on the `ws` package
# (from npm, in target/calibrate), and prints for each: messages per second and
# the server's CPU use over the window (100% = the server is the bottleneck).
#
# usage: scripts/calibrate.sh [CONNECTIONS] [SECONDS]   (default 100, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-100} seconds=${2:-10}
dir=target/calibrate
mkdir -p "$dir"
[ -d "$dir/node_modules/ws" ] || npm install --prefix "$dir" --silent --no-audit --no-fund ws@8 >/dev/null
cargo build --release -q -p ringws --example echo -p ringws-loadgen
cat >"$dir/echo-client.js" <<'JS'
// Closed-loop echo client: each connection keeps one message in flight.
const WebSocket = require(process.argv[5] + '/node_modules/ws');
const [url, conns, seconds] = [process.argv[2], +process.argv[3], +process.argv[4]];
const payload = Buffer.alloc(20, 'x');
let open = 0, count = 0, measuring = false;
for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('open', () => { if (++open === conns) start(); });
  ws.on('message', () => { if (measuring) count++; ws.send(payload); });
  ws.on('error', (e) => { console.error(e.message); process.exit(1); });
  ws.once('open', () => {}); ws.on('open', () => ws.send(payload));
}
function start() {
  measuring = true;
  setTimeout(() => { console.log(JSON.stringify({ messages_per_s: count / seconds })); process.exit(0); }, seconds * 1000);
}
JS
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 target/release/examples/echo --port "$port" --workers 1 >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
measure() { # name output-file command...
  local name=$1 output=$2; shift 2
  "$@" >"$dir/stdout.txt" 2>"$dir/err.txt" &
  local client=$!
  sleep 2
  local t0 t1
  t0=$(cpu); sleep "$((seconds - 3))"; t1=$(cpu)
  wait "$client"
  python3 - "$name" "$output" "$t0" "$t1" "$tck" "$((seconds - 3))" <<'PY'
import json, sys
name, path, t0, t1, tck, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
text = open(path).read().strip()
data = json.loads(text)
r = data[0] if isinstance(data, list) else data
print(f"{name:<28} {r['messages_per_s']:>10.0f} msgs/s   server CPU {100 * (t1 - t0) / tck / window:5.1f}%")
PY
}
echo "calibrate: $conns connections, 20-byte closed-loop echo, ${seconds}s each"
measure "loadgen, 1 in flight" "$dir/loadgen.json" taskset -c 1 target/release/loadgen echo \
  --url "ws://127.0.0.1:$port/" -c "$conns" -s 20 -d "$((seconds - 1))" -t 1 --json "$dir/loadgen.json"
measure "node ws, 1 in flight" "$dir/stdout.txt" taskset -c 1 node "$dir/echo-client.js" \
  "ws://127.0.0.1:$port/" "$conns" "$((seconds - 1))" "$(pwd)/$dir"
# Max throughput: enough in flight that the server, not the client, is the limit.
measure "loadgen, 16 in flight" "$dir/loadgen.json" taskset -c 1 target/release/loadgen echo \
  --url "ws://127.0.0.1:$port/" -c "$conns" -k 16 -s 20 -d "$((seconds - 1))" -t 1 --json "$dir/loadgen.json"
