#!/usr/bin/env bash
# A live restart under load (docs/HANDOVER.md), run by
# `scripts/restart-demo.sh --live`: an echo server and a chat server (the
# broadcast's room) run with --handover; `loadgen echo` (closed loop and open
# loop), `loadgen hold` with pings and `loadgen broadcast` run against them;
# then a second echo and a second chat start with the same control sockets
# and nonce file, take the listening sockets and every open connection, and
# the old processes exit. The demo fails unless every load generator reports
# 0 closes, 0 lost, mismatched (duplicated, reordered) or dropped messages and
# 0 missed pongs; it prints the hand-over's time and size (from the old
# echo's log) and the worst message delay of each run (its maximum latency,
# which the hand-over's pause falls in).
#
#   bash scripts/restart-demo.sh --live [--debug] [--backend epoll|io_uring]
#        [--tls] [--deflate [--dedicated]] [--hold N] [--secs S] [--warmup S]
#        [--ping S] [--workers W] [--procs P] [--ramp R]
#
# --deflate: permessage-deflate in the shared mode (no context takeover);
# with --dedicated, in the dedicated mode with context takeover both ways
# (each connection's two 32 KiB windows travel with it).
# --hold N: connections of `loadgen hold` (default 1000; the hand-over time
# is for these plus the others, ~500); raise the fd limit first for large N
# (ulimit -n), and give them time to connect: --warmup S (default 2) is how
# long after the load starts the new processes start, --secs S (default 6)
# how long the loads run; --ping S (default 0.5) is the hold's ping interval
# (loadgen counts a pong missed when the next ping is due first). On
# io_uring a worker takes over at most half of its fixed-file table (the
# hard RLIMIT_NOFILE): raise it above twice the connections per worker, or
# give each echo server more workers: --workers W (default 2). --procs P
# spreads the hold's connections over P load-generator processes (each under
# the fd limit), --ramp R opens them at R per second (default 0: at once).
# 100,000 held connections on a box whose fd limit is 20,000 per process:
#   --backend io_uring --hold 100000 --workers 12 --procs 6 --ramp 20000
#   --warmup 12 --secs 20 --ping 5
# The worst delay is printed twice: over the seconds the hand-over spans (the
# pause clients saw) and over the rest of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release backend=epoll tls=0 deflate=0 dedicated=0 hold=1000 secs=6 warmup=2 ping=0.5
workers=2 procs=1 ramp=0
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --backend) backend=$2; shift ;;
    --tls) tls=1 ;;
    --deflate) deflate=1 ;;
    --dedicated) dedicated=1 ;;
    --hold) hold=$2; shift ;;
    --secs) secs=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --ping) ping=$2; shift ;;
    --workers) workers=$2; shift ;;
    --procs) procs=$2; shift ;;
    --ramp) ramp=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
flag=$([ "$profile" = release ] && echo --release || true)
cargo build $flag -p ringws --example echo --example chat >&2
cargo build $flag -p ringws-loadgen >&2
target="${CARGO_TARGET_DIR:-target}/$profile"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom > "$work/nonce"
chmod 600 "$work/nonce"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo_port=$(free_port) chat_port=$(free_port)
scheme=ws tls_args=() lg_tls=()
if [ "$tls" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  scheme=wss tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem") lg_tls=(--ca "$work/cert.pem")
fi
deflate_args=() lg_deflate=()
deflate_mode=$([ "$dedicated" = 1 ] && echo dedicated || echo shared)
[ "$deflate" = 1 ] && deflate_args=(--deflate "$deflate_mode") lg_deflate=(--deflate)
echo_url="$scheme://127.0.0.1:$echo_port/"
chat_url="$scheme://127.0.0.1:$chat_port/?nick=lg"
echo_sock="@ringws-live-echo-$$" chat_sock="@ringws-live-chat-$$"

start_echo() { # LOG
  RUST_LOG=ringws=info "$target/examples/echo" --port "$echo_port" --workers "$workers" --backend "$backend" \
    --handover "$echo_sock" --nonce "$work/nonce" --handover-deadline-ms 10000 \
    "${tls_args[@]}" "${deflate_args[@]}" > "$1" 2>&1 &
  pids+=("$!")
}
start_chat() { # LOG
  RUST_LOG=ringws=info RINGWS_BACKEND="$backend" "$target/examples/chat" --port "$chat_port" --workers 2 --no-announce \
    --handover "$chat_sock" "$work/nonce" "${tls_args[@]}" > "$1" 2>&1 &
  pids+=("$!")
}
wait_listening() { # LOG
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "server did not start: $(cat "$1")" >&2; exit 1
}

start_echo "$work/old-echo.log"; old_echo=${pids[-1]}
start_chat "$work/old-chat.log"; old_chat=${pids[-1]}
wait_listening "$work/old-echo.log"; wait_listening "$work/old-chat.log"
echo "old echo pid $old_echo ($echo_url, $backend), old chat pid $old_chat"

lg() { # NAME ARGS...
  local name=$1; shift
  "$target/loadgen" "$@" "${lg_tls[@]}" -d "$secs" -t 1 --json "$work/$name.json" > "$work/$name.log" 2>&1 &
  pids+=("$!"); lgs+=("$!")
}
lgs=()
now() { date +%s.%N; }
launched=$(now)
lg echo-closed echo --url "$echo_url" -c 200 "${lg_deflate[@]}"
lg echo-open echo --url "$echo_url" -c 100 -r 2000 "${lg_deflate[@]}"
# Past one source address's ephemeral ports, the hold comes from a loopback range.
hold_sources=()
[ "$hold" -gt 20000 ] && hold_sources=(--sources 127.0.5.1-127.0.5.100)
lg hold hold --url "$echo_url" -c "$hold" --ramp "$ramp" --procs "$procs" --ping-interval "$ping" "${hold_sources[@]}"
lg broadcast broadcast --url "$chat_url" -c 100 -r 50
# Every connection open and busy, then the restart.
sleep "$warmup"
handover_began=$(now)
start_echo "$work/new-echo.log"; new_echo=${pids[-1]}
start_chat "$work/new-chat.log"; new_chat=${pids[-1]}
wait_listening "$work/new-echo.log"; wait_listening "$work/new-chat.log"
echo "new echo pid $new_echo, new chat pid $new_chat: taking over"
wait "$old_echo" || true
wait "$old_chat" || true
handover_ended=$(now)
echo "old echo: $(grep -h 'hand-over done' "$work/old-echo.log" | sed 's/.*ringws: //')"
echo "old chat: $(grep -h 'hand-over done' "$work/old-chat.log" | sed 's/.*ringws: //')"

status=0
for pid in "${lgs[@]}"; do wait "$pid" || status=1; done
kill -TERM "$new_echo" "$new_chat" 2>/dev/null || true
for run in echo-closed echo-open hold broadcast; do
  echo "== loadgen $run"
  cat "$work/$run.log"
done
python3 - "$launched" "$handover_began" "$handover_ended" "$work"/echo-closed.json "$work"/echo-open.json "$work"/hold.json "$work"/broadcast.json <<'PY' || status=1
import json, math, sys
launched, began, ended = map(float, sys.argv[1:4])
# The seconds of each run's series (since its start, about `launched`) that
# the hand-over spans, from the new processes' start to the old ones' exit;
# a delayed reply is counted in the second it arrives, so one more.
first, last = math.floor(began - launched), math.ceil(ended - launched) + 1
print(f"hand-over from {began - launched:.2f} s to {ended - launched:.2f} s of the run")
def worst(samples):
    ms = [s["latency_ms"]["max"] for s in samples if s["latency_ms"]["max"] is not None]
    return max(ms) if ms else None
bad = 0
for path in sys.argv[4:]:
    for r in json.load(open(path)):
        f = r["failures"]
        closes = r["dropped"] + r.get("going_away", 0)
        fanout = r.get("fanout") or {}
        series = r.get("series") or []
        during = worst([s for s in series if first <= s["t"] <= last])
        elsewhere = worst([s for s in series if not first <= s["t"] <= last])
        line = (f"{r['scenario']}: connected {r['connected']}, closed {closes}, "
                f"failed connects {sum(f.values())}, lost {r['lost']}, mismatched {r['mismatches']}, "
                f"missed pongs {r['missed_pongs']}, messages {r['messages']}, pings {r['pings']}, "
                f"worst delay during the hand-over {during} ms (elsewhere {elsewhere} ms)")
        if fanout:
            line += (f", broadcast missing {fanout.get('missing')}, duplicated or out of order "
                     f"{fanout.get('out_of_order')}, silent subscribers {fanout.get('silent')}")
            bad += fanout.get("missing", 0) + fanout.get("out_of_order", 0) + fanout.get("silent", 0)
        print(line)
        bad += sum(f.values()) + r["lost"] + r["mismatches"] + closes + r["missed_pongs"]
print("RESULT:", "no client noticed the restart" if bad == 0 else f"{bad} failures")
sys.exit(1 if bad else 0)
PY
if [ "$status" != 0 ]; then
  for log in old-echo new-echo old-chat new-chat; do
    echo "== $log.log (warnings)"
    grep -v INFO "$work/$log.log" | tail -20
  done
fi
exit $status
