#!/usr/bin/env bash
# A restart under load that drops nothing. The echo example runs on a port;
# `loadgen connect` (connections opening all along) and `loadgen echo` run
# against it; a second echo process starts on the same port (SO_REUSEPORT),
# then the first gets SIGTERM: it closes its listeners (with
# net.ipv4.tcp_migrate_req=1, set here where the kernel has it, what is queued
# on them moves to the new process), answers the upgrades under way, closes its
# WebSockets with 1001 and exits within its grace. The demo fails unless both
# load generators report 0 refused, 0 reset, 0 failed handshakes, 0 lost or
# mismatched echoes and 0 dropped connections (a 1001 close is counted apart).
#
#   bash scripts/restart-demo.sh [--debug]    (--debug: unoptimized builds)
#
# --live: a live restart instead (docs/HANDOVER.md): scripts/restart-live.sh,
# where the new process takes the old one's connections and no client is
# closed (its options follow --live).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--live" ]; then
  shift
  exec bash scripts/restart-live.sh "$@"
fi
profile=release
[ "${1:-}" = "--debug" ] && profile=debug
flag=$([ "$profile" = release ] && echo --release || true)
cargo build $flag -p ringws --example echo >&2
cargo build $flag -p ringws-loadgen >&2
target="${CARGO_TARGET_DIR:-target}/$profile"
echo_bin="$target/examples/echo"
loadgen="$target/loadgen"

migrate=/proc/sys/net/ipv4/tcp_migrate_req
if [ -e "$migrate" ]; then
  if [ "$(cat $migrate)" != 1 ]; then
    echo 1 > "$migrate" 2>/dev/null || sudo -n sysctl -qw net.ipv4.tcp_migrate_req=1 2>/dev/null \
      || echo "warning: cannot set net.ipv4.tcp_migrate_req; queued connections may be reset" >&2
  fi
  echo "net.ipv4.tcp_migrate_req = $(cat $migrate)"
else
  echo "warning: this kernel has no net.ipv4.tcp_migrate_req" >&2
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="ws://127.0.0.1:$port/"

wait_listening() { # LOG
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "server did not start: $(cat "$1")" >&2; exit 1
}

"$echo_bin" --port "$port" --workers 2 --grace-ms 3000 > "$work/old.log" 2>&1 &
old=$!; pids+=("$old")
wait_listening "$work/old.log"
echo "old server pid $old on port $port"

# Connections open at 100/s for 4 s, then are held 2 s; 20 echo loops for 6 s.
"$loadgen" connect --url "$url" -c 400 --ramp 100 -d 2 -t 2 --json "$work/connect.json" > "$work/connect.log" 2>&1 &
lc=$!; pids+=("$lc")
"$loadgen" echo --url "$url" -c 20 -d 6 -t 2 --json "$work/echo.json" > "$work/echo.log" 2>&1 &
le=$!; pids+=("$le")

sleep 2
"$echo_bin" --port "$port" --workers 2 --grace-ms 3000 > "$work/new.log" 2>&1 &
new=$!; pids+=("$new")
wait_listening "$work/new.log"
echo "new server pid $new on the same port; SIGTERM to the old one"
kill -TERM "$old"
wait "$old" || true
echo "old server: $(tail -1 "$work/old.log")"

status=0
wait "$lc" || status=1
wait "$le" || status=1
kill -TERM "$new"; wait "$new" || true
for run in connect echo; do
  echo "== loadgen $run"
  cat "$work/$run.log"
done
python3 - "$work/connect.json" "$work/echo.json" <<'PY' || status=1
import json, sys
bad = 0
for path in sys.argv[1:]:
    for r in json.load(open(path)):
        f = r["failures"]
        line = (f"{r['scenario']}: connected {r['connected']}, refused {f['refused']}, "
                f"reset {f['reset']}, failed handshakes {f['bad_status'] + f['timeout'] + f['other']}, "
                f"lost {r['lost']}, mismatched {r['mismatches']}, dropped {r['dropped']}, "
                f"closed with 1001 {r.get('going_away', 0)} "
                f"(echoes awaited then {r.get('going_away_unanswered', 0)}), messages {r['messages']}")
        print(line)
        bad += sum(f.values()) + r["lost"] + r["mismatches"] + r["dropped"]
print("RESULT:", "nothing dropped" if bad == 0 else f"{bad} failures")
sys.exit(1 if bad else 0)
PY
exit $status
