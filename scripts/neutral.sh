#!/usr/bin/env bash
# The load generator against an independent server: Python's `websockets` echo
# server (from PyPI, in target/neutral-venv). Runs connect, echo (closed and open
# loop, text and binary), hold and broadcast-free checks with small counts and
# fails unless every connection opened and every echo came back byte for byte.
# Proves loadgen speaks plain RFC 6455, with no ringws-only shortcuts.
#
# usage: scripts/neutral.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NEUTRAL_VENV:-target/neutral-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'websockets>=13,<16'
fi
cargo build --release -q -p ringws-loadgen
work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/echo.py" <<'PY'
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=None, compression=None):
        print("listening", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main(int(sys.argv[1])))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/python" "$work/echo.py" "$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
url="ws://127.0.0.1:$port/"
version=$("$venv/bin/python" -c 'import websockets; print(websockets.__version__)')
echo "neutral: python websockets $version on $url"

check() { # name json
  python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))[0]
failures = sum(r["failures"].values())
bad = failures + r["mismatches"] + r["lost"] + r["dropped"] + r["missed_pongs"]
print(f"neutral: {name:<28} connected {r['connected']:>4}/{r['connections']:<4} messages {r['messages']:>7} "
      f"p50 {r['latency_ms']['p50'] or 0:.3f} ms  errors {bad}")
sys.exit(1 if bad or r["connected"] != r["connections"] else 0)
PY
}
lg=${CARGO_TARGET_DIR:-target}/release/loadgen
# One check: the load generator's run, then its report. A run that fails (or
# a load generator that is not there) fails the script: under `set -e` a
# command on the left of `&&` would not.
run() {
  local name=$1 json=$2
  shift 2
  if ! "$lg" "$@" --json "$json" >/dev/null; then
    echo "neutral: $name: the load generator failed"
    exit 1
  fi
  check "$name" "$json"
}
run "connect 200" "$work/c.json" connect --url "$url" -c 200 -d 0.5
run "echo binary 50 x 2 in flight" "$work/e.json" echo --url "$url" -c 50 -k 2 -s 1 --size-max 20000 -d 2
run "echo text 20" "$work/t.json" echo --url "$url" -c 20 --text -s 100 -d 2
run "echo open loop 400/s" "$work/o.json" echo --url "$url" -c 20 --rate 400 -d 2
run "hold 100, ping 2/s" "$work/h.json" hold --url "$url" -c 100 -d 2 --ping-interval 0.5
echo "neutral: all 5 checks against an independent server are clean"
