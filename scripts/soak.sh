#!/usr/bin/env bash
# A soak: the echo example (io_uring, with --metrics) holds N connections for D
# seconds from several independent `loadgen` client processes over loopback,
# while
#   - every client closes CHURN% of its connections every second (a closing
#     handshake each) and opens as many anew (loadgen --churn);
#   - half the clients are `loadgen hold` (each connection pinged every
#     PING_INTERVAL s, missed pongs counted) and half `loadgen echo` (open loop,
#     one message per connection every ECHO_EVERY s, random sizes in
#     SIZE_MIN..SIZE_MAX, every echo checked byte for byte);
#   - every KILL_EVERY s, KILL client processes are killed with SIGKILL and
#     started again (the server sees their connections vanish without a close).
# At the end it checks, and prints PASS or FAIL with the figures (exit 1 on FAIL):
#   - the server's RSS at the end of the soak within RSS_TOLERANCE% (5) of its
#     RSS after the ramp;
#   - no fd or descriptor leak: the server's /proc/PID/fd count and its own
#     connections gauge (ringws_connections, from /metrics) back to their
#     values before the load once every client is gone;
#   - 0 lost, 0 mismatched echoes, 0 missed pongs, 0 failed connects and 0
#     connections dropped by the server, over every client that ran to its end.
#
#   bash scripts/soak.sh [options]         e.g. --connections 20000 --duration 90
#
# Options (each also an env variable in capitals, e.g. CONNECTIONS=20000):
#   --connections N     connections held (default 200000)
#   --duration S        seconds of soak after the ramp (default 600)
#   --ramp R            new connections per second, all clients (default 4000)
#   --churn PCT         percent of connections closed and reopened per second (default 1)
#   --kill K            client processes killed per round (default 2)
#   --kill-every S      seconds between kill rounds (default 60)
#   --clients C         client processes (default: 1 per 15000 connections, at least 4)
#   --ping-interval S   hold clients: seconds between pings (default 10)
#   --echo-every S      echo clients: seconds between one connection's messages (default 5)
#   --size-min B, --size-max B   echo message sizes (default 16, 4096)
#   --rss-tolerance PCT (default 5)
#   --settle S          seconds after the ramp before the RSS "after the ramp" is
#                       taken: every connection has pinged or echoed by then
#                       (default twice the longer of --ping-interval and --echo-every)
#   --workers W         server workers (default: N x 1.1 / 19500 rounded up, at least 2)
#   --sources A-B       loopback source range shared out to the clients
#                       (default 127.0.5.1-127.0.5.250)
#   --tune yes|dry|no   apply scripts/tune.sh (default yes), only print it, or skip
#   --seed N            which clients are killed (default 1)
#   --server-args "..." more flags for the echo server (e.g. "--uring-buffer-count 16")
#   --out DIR           logs, JSON and samples (default target/soak/<time>)
#   --no-build          use the release binaries as they are
#   --debug             unoptimized builds (a quick check of the script, not a measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
. scripts/lib/procs.sh soak


connections=${CONNECTIONS:-200000}
duration=${DURATION:-600}
ramp=${RAMP:-4000}
churn=${CHURN:-1}
kill_n=${KILL:-2}
kill_every=${KILL_EVERY:-60}
clients=${CLIENTS:-}
ping_interval=${PING_INTERVAL:-10}
echo_every=${ECHO_EVERY:-5}
size_min=${SIZE_MIN:-16}
size_max=${SIZE_MAX:-4096}
rss_tolerance=${RSS_TOLERANCE:-5}
settle=${SETTLE:-}
server_args=${SERVER_ARGS:-}
workers=${WORKERS:-}
sources=${SOURCES:-127.0.5.1-127.0.5.250}
tune=${TUNE:-yes}
seed=${SEED:-1}
out=${OUT:-}
build=${BUILD:-1}
profile=${PROFILE:-release}

while [ $# -gt 0 ]; do
  case "$1" in
    --connections|-c) connections=${2:?}; shift ;;
    --duration|-d) duration=${2:?}; shift ;;
    --ramp) ramp=${2:?}; shift ;;
    --churn) churn=${2:?}; shift ;;
    --kill) kill_n=${2:?}; shift ;;
    --kill-every) kill_every=${2:?}; shift ;;
    --clients) clients=${2:?}; shift ;;
    --ping-interval) ping_interval=${2:?}; shift ;;
    --echo-every) echo_every=${2:?}; shift ;;
    --size-min) size_min=${2:?}; shift ;;
    --size-max) size_max=${2:?}; shift ;;
    --rss-tolerance) rss_tolerance=${2:?}; shift ;;
    --settle) settle=${2:?}; shift ;;
    --server-args) server_args=${2:?}; shift ;;
    --workers) workers=${2:?}; shift ;;
    --sources) sources=${2:?}; shift ;;
    --tune) tune=${2:?}; shift ;;
    --seed) seed=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --no-build) build=0 ;;
    --debug) profile=debug ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

for v in connections duration ramp kill_every size_min size_max seed; do
  positive "${!v}" || die "--${v//_/-} must be a positive whole number, not '${!v}'"
done
[[ "$kill_n" =~ ^[0-9]+$ ]] || die "--kill must be a whole number, not '$kill_n'"
for v in churn ping_interval echo_every rss_tolerance; do
  is_num "${!v}" || die "--${v//_/-} must be a number, not '${!v}'"
done
[ "$size_max" -ge "$size_min" ] || die "--size-max must be at least --size-min"
settle=${settle:-$(python3 -c "import math; print(math.ceil(2 * max($ping_interval, $echo_every)))")}
[[ "$settle" =~ ^[0-9]+$ ]] || die "--settle must be a whole number of seconds, not '$settle'"
[ "$settle" -lt "$duration" ] || die "--settle ($settle s) must be shorter than --duration ($duration s)"
case "$tune" in yes|dry|no) ;; *) die "--tune is yes, dry or no, not '$tune'" ;; esac
case "$profile" in release|debug) ;; *) die "PROFILE is release or debug, not '$profile'" ;; esac
[[ "$sources" =~ ^127\.([0-9]+)\.([0-9]+)\.([0-9]+)-127\.([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] \
  || die "--sources must be a loopback range like 127.0.5.1-127.0.5.250"
[ "${BASH_REMATCH[1]}.${BASH_REMATCH[2]}" = "${BASH_REMATCH[4]}.${BASH_REMATCH[5]}" ] \
  || die "--sources must stay within one /24 (127.A.B.x-127.A.B.y)"
src_prefix=127.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
src_lo=${BASH_REMATCH[3]}
src_hi=${BASH_REMATCH[6]}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -Sn)
[ "$fd_limit" = unlimited ] && fd_limit=1048576
clients=${clients:-$(((connections + 14999) / 15000))}
[ "$clients" -ge 4 ] || clients=4
positive "$clients" || die "--clients must be a positive whole number"
per_client=$(((connections + clients - 1) / clients))
[ $((per_client + per_client / 5 + 200)) -lt "$fd_limit" ] \
  || die "$per_client connections per client do not fit the fd limit $fd_limit: give more --clients"
[ $((src_hi - src_lo + 1)) -ge "$clients" ] || die "--sources has fewer addresses than the $clients clients"
if [ -z "$workers" ]; then
  per_ring=$(($(ulimit -Hn) - 500))
  workers=$(((connections + connections / 10 + per_ring - 1) / per_ring))
  [ "$workers" -ge 2 ] || workers=2
fi
positive "$workers" || die "--workers must be a positive whole number"

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$profile
release=()
[ "$profile" = release ] && release=(--release)
if [ "$build" = 1 ]; then
  cargo build "${release[@]}" -p ringws --example echo >&2
  cargo build "${release[@]}" -p ringws-loadgen >&2
fi
server_bin=$bin/examples/echo
loadgen=$bin/loadgen
{ [ -x "$server_bin" ] && [ -x "$loadgen" ]; } || die "no $profile binaries in $bin (drop --no-build)"
out=${out:-$target_dir/soak/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

if [ "$tune" = yes ]; then
  bash scripts/tune.sh > "$out/tune.log" || true
  echo "soak: $(tail -1 "$out/tune.log")"
elif [ "$tune" = dry ]; then
  bash scripts/tune.sh --dry-run > "$out/tune.log" || true
  echo "soak: tune.sh not applied (--tune dry); it would: $(tail -1 "$out/tune.log")"
fi

server_pid=
declare -a client_pid client_gen client_alive
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${client_pid[@]}"; do stop_pid "$pid" 3; done
  stop_pid "$server_pid" 20
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
read -r -a extra <<<"$server_args"
"$server_bin" --port "$port" --workers "$workers" --backend io_uring --metrics "${extra[@]}" > "$out/server.log" 2>&1 &
server_pid=$!
for ((i = 0; i < 300; i++)); do
  grep -q listening "$out/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "server exited: $(cat "$out/server.log")"
  sleep 0.1
done
grep -q listening "$out/server.log" || die "server did not listen within 30 s"

# Resident KiB of a process; 0 once it is gone (or a zombie, without VmRSS).
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
gauge() { # the server's own count of its connections, or -1 if /metrics does not answer
  curl -s --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null \
    | awk '/^ringws_connections[{ ]/ {s += $NF; n++} END {print (n ? s : -1)}'
}
sleep 1
fd0=$(fds "$server_pid")
gauge0=$(gauge)
rss0=$(rss_kib "$server_pid")
echo "soak: $(grep listening "$out/server.log" | head -1)"
echo "soak: $connections connections over $clients clients ($per_client each; hold and echo alternate), ramp $ramp/s, then $duration s; churn $churn%/s; $kill_n clients killed every $kill_every s"
echo "soak: before the load: server RSS $((rss0 / 1024)) MiB, $fd0 fds, gauge $gauge0; output in $out"

url="ws://127.0.0.1:$port/"
ramp_each=$(python3 -c "print($ramp / $clients)")
ramp_secs=$(python3 -c "import math; print(math.ceil($per_client / ($ramp / $clients)))")
start=$(date +%s)
end=$((start + ramp_secs + duration))
# Starts client I (generation G) to hold until $end.
start_client() {
  local i=$1 g=$2 now d src args
  now=$(date +%s)
  d=$((end - now - ramp_secs))
  [ "$d" -ge 5 ] || return 1
  src=$src_prefix.$((src_lo + i * (src_hi - src_lo + 1) / clients))-$src_prefix.$((src_lo + (i + 1) * (src_hi - src_lo + 1) / clients - 1))
  args=(--url "$url" -c "$per_client" --ramp "$ramp_each" -d "$d" -t 1 --churn "$churn"
    --connect-timeout 30 --sources "$src" --json "$out/client-$i.$g.json")
  if [ $((i % 2)) = 0 ]; then
    args=(hold "${args[@]}" --ping-interval "$ping_interval")
  else
    args=(echo "${args[@]}" --rate "$(python3 -c "print($per_client / $echo_every)")"
      -s "$size_min" --size-max "$size_max")
  fi
  echo "$(date -u +%T) client $i.$g: loadgen ${args[*]}" >> "$out/clients.log"
  "$loadgen" "${args[@]}" > "$out/client-$i.$g.log" 2>&1 &
  client_pid[i]=$!
  client_gen[i]=$g
  client_alive[i]=1
}
for ((i = 0; i < clients; i++)); do start_client "$i" 0; done

# Samples every 5 s: time, server RSS (KiB), fds, gauge.
sample() { echo "$(($(date +%s) - start)) $(rss_kib "$server_pid") $(fds "$server_pid") $(gauge)" >> "$out/samples.txt"; }
echo "t rss_kib fds gauge" > "$out/samples.txt"

# The ramp: until the gauge holds (nearly) every connection, bounded.
slack=$((connections * ${churn%.*} / 50 + 10))
ramped=0
for ((i = 0; i < ramp_secs + 60; i++)); do
  g=$(gauge)
  if [ "$g" -ge $((clients * per_client - slack)) ]; then ramped=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || die "the server died during the ramp"
  sleep 1
done
[ "$ramped" = 1 ] || die "the ramp did not complete: gauge $(gauge) of $((clients * per_client))"
# Kill rounds count from the end of the ramp.
next_kill=$(($(date +%s) + kill_every))
echo "soak: ramp done at $(($(date +%s) - start)) s (gauge $(gauge)); settling $settle s before the RSS after the ramp"
for ((w = 0; w < settle; w += 5)); do sample; sleep 5; done
rss_ramp=$(rss_kib "$server_pid")
fd_ramp=$(fds "$server_pid")
gauge_ramp=$(gauge)
echo "soak: after the ramp, at $(($(date +%s) - start)) s: server RSS $((rss_ramp / 1024)) MiB, $fd_ramp fds, gauge $gauge_ramp"

RANDOM=$seed
killed=0
rss_end=
while [ "$(date +%s)" -lt $((end - 3)) ]; do
  kill -0 "$server_pid" 2>/dev/null || die "the server died during the soak"
  now=$(date +%s)
  # A kill round only while the restarted clients can ramp again well before
  # the end (the end's RSS is measured with every client holding).
  if [ "$now" -ge "$next_kill" ] && [ "$kill_n" -gt 0 ] && [ $((now + ramp_secs + 15)) -lt "$end" ]; then
    next_kill=$((now + kill_every))
    # KILL different clients, of those running.
    alive=()
    for ((i = 0; i < clients; i++)); do
      if [ "${client_alive[i]}" = 1 ] && kill -0 "${client_pid[i]}" 2>/dev/null; then alive+=("$i"); fi
    done
    for ((k = 0; k < kill_n && ${#alive[@]} > 0; k++)); do
      j=$((RANDOM % ${#alive[@]}))
      i=${alive[j]}
      alive=("${alive[@]:0:j}" "${alive[@]:j+1}")
      pid=${client_pid[i]}
      # Out of the job table first: no "Killed" notice from the shell.
      disown "$pid" 2>/dev/null || true
      kill -KILL "$pid"
      for ((w = 0; w < 50; w++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      killed=$((killed + 1))
      client_alive[i]=0
      echo "$i.${client_gen[i]} killed" >> "$out/killed.txt"
      g=$((client_gen[i] + 1))
      if start_client "$i" "$g"; then
        echo "soak: $(($(date +%s) - start)) s: client $i killed (SIGKILL), started again as $i.$g"
      else
        echo "soak: $(($(date +%s) - start)) s: client $i killed (SIGKILL); too near the end to start again"
      fi
    done
  fi
  sample
  left=$((end - 3 - $(date +%s)))
  [ "$left" -le 0 ] || sleep $((left < 5 ? left : 5))
done
# The end of the soak, every client still holding: the RSS to compare.
rss_end=$(rss_kib "$server_pid")
gauge_end=$(gauge)
sample

# Every client stops by itself (its deadline); bounded here.
client_failed=()
for ((i = 0; i < clients; i++)); do
  [ "${client_alive[i]}" = 1 ] || continue
  pid=${client_pid[i]}
  for ((w = 0; w < 1200; w++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    stop_pid "$pid" 3
    client_failed+=("$i.${client_gen[i]} did not stop")
  elif ! wait "$pid"; then
    client_failed+=("$i.${client_gen[i]} exited with an error: $(tail -1 "$out/client-$i.${client_gen[i]}.log")")
  fi
done
# The server lets go of every connection (bounded).
gauge_after=-1
for ((w = 0; w < 60; w++)); do
  gauge_after=$(gauge)
  [ "$gauge_after" = "$gauge0" ] && break
  sleep 1
done
sleep 1
fd_after=$(fds "$server_pid")
rss_after=$(rss_kib "$server_pid")

python3 - "$out" "$clients" "$rss_ramp" "$rss_end" "$rss_tolerance" "$fd0" "$fd_after" "$gauge0" \
  "$gauge_after" "$gauge_ramp" "$gauge_end" "$killed" "$rss_after" "$duration" "${client_failed[@]}" <<'PY'
import glob, json, os, sys
out, clients = sys.argv[1], int(sys.argv[2])
rss_ramp, rss_end, tol, fd0, fd_after, g0, g_after, g_ramp, g_end, killed, rss_after = (
    float(x) for x in sys.argv[3:14])
duration = sys.argv[14]
client_failed = sys.argv[15:]
killed_runs = set(open(f"{out}/killed.txt").read().split("\n")) if os.path.exists(f"{out}/killed.txt") else set()
killed_runs = {k.split()[0] for k in killed_runs if k}
tot = dict(connected=0, failures=0, lost=0, mismatches=0, dropped=0, missed_pongs=0, churned=0,
           messages=0, pongs=0, going_away=0)
runs = missing = 0
for path in sorted(glob.glob(f"{out}/client-*.json")):
    r = json.load(open(path))[0]
    runs += 1
    tot["failures"] += sum(r["failures"].values())
    for k in ("connected", "lost", "mismatches", "dropped", "missed_pongs", "churned", "messages", "pongs", "going_away"):
        tot[k] += r[k]
for path in glob.glob(f"{out}/client-*.log"):
    run = os.path.basename(path)[len("client-"):-len(".log")]
    if run not in killed_runs and not os.path.exists(f"{out}/client-{run}.json"):
        missing += 1
rss_change = 100.0 * (rss_end - rss_ramp) / max(rss_ramp, 1)
checks = [
    (f"server RSS {rss_ramp / 1024:.1f} MiB after the ramp, {rss_end / 1024:.1f} MiB at the end: "
     f"{rss_change:+.2f}% (limit {tol:g}%)", abs(rss_change) <= tol),
    (f"server fds {fd0:.0f} before the load, {fd_after:.0f} after", fd0 == fd_after),
    (f"server connections gauge (the /metrics scrape is one) {g0:.0f} before, {g_ramp:.0f} after the ramp, "
     f"{g_end:.0f} at the end, {g_after:.0f} after", g_after == g0 and g0 >= 0),
    (f"lost {tot['lost']}, mismatched {tot['mismatches']} of {tot['messages']:,} echoes",
     tot["lost"] == 0 and tot["mismatches"] == 0),
    (f"missed pongs {tot['missed_pongs']} ({tot['pongs']:,} pongs)", tot["missed_pongs"] == 0),
    (f"failed connects {tot['failures']}, connections dropped by the server {tot['dropped']}, "
     f"closed with 1001 {tot['going_away']}", tot["failures"] == 0 and tot["dropped"] == 0 and tot["going_away"] == 0),
    (f"client runs: {runs} finished with a result, {int(killed)} killed with SIGKILL, "
     f"{missing} without a result" + ("; " + "; ".join(client_failed) if client_failed else ""),
     missing == 0 and not client_failed and runs > 0),
]
print(f"== soak: {clients} clients, {duration} s after the ramp; {tot['connected']:,} connections opened by the "
      f"client runs that finished ({tot['churned']:,} of them churned); server RSS {rss_after / 1024:.1f} MiB once they were gone")
ok = True
for text, good in checks:
    ok &= good
    print(f"  {'ok  ' if good else 'FAIL'}  {text}")
print("RESULT:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
