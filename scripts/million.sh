#!/usr/bin/env bash
# One command for a million connections (or N) on this machine, server and load
# generator together over loopback: applies scripts/tune.sh, works out the
# server's workers and the load generator's processes from the fd limit, starts
# the echo example (chat for --mode broadcast) on io_uring and `loadgen`, and
# prints ONE summary. Everything it starts is stopped by PID; every wait is
# bounded; a trap cleans up on failure or Ctrl-C.
#
#   bash scripts/million.sh [N] [options]          (N default 1000000)
#
# Modes (--mode, env MODE):
#   hold       (default) N connections held, each pinged every --ping-interval
#              (default 60 s) for --duration (default 40 s) after the ramp.
#   broadcast  the live million: chat example, every connection subscribed and
#              one probe per second (--rate) published to all for --duration
#              (default 60 s): N deliveries per second; fan-out latency
#              p50/p99/max and the exactly-once check (0 lost).
#   echo       every connection sends one message every --every seconds
#              (default 10; open loop, latency from the intended send time) and
#              gets its echo, checked byte for byte, for --duration (default 60 s).
#
# Options (each also an env variable, in capitals: RAMP=4000 ...):
#   --ramp R             new connections per second (default 8000)
#   --duration S         seconds after the ramp (see the modes)
#   --ping-interval S    hold: seconds between pings per connection (default 60)
#   --keepalive S        the server's keep-alive: it pings a connection silent
#                        for S seconds (0: never). Default: hold, twice
#                        --ping-interval, so that only the load generator pings
#                        a held connection and the server pings one whose
#                        client went quiet (at the server's own default of
#                        30 s, a connection pinged by its client every 60 s is
#                        also pinged by the server between: two round trips a
#                        minute); echo, the server's default (30); broadcast
#                        (the chat example) always its default.
#   --rate R             broadcast: publishes per second (default 1)
#   --every S            echo: seconds between one connection's messages (default 10)
#   --size B             echo and broadcast payload bytes (default 32 and 64)
#   --connect-timeout S  seconds for connect + upgrade (default 30)
#   --sources A-B        loopback source range (default 127.0.4.1-127.0.4.250)
#   --per-worker N       connections per server worker (default: fd hard limit - 500;
#                        each io_uring ring's direct-descriptor table is bounded by it)
#   --per-proc N         connections per load-generator process (default: fd limit - 500)
#   --workers N          server workers (default: from N and --per-worker, at least 2)
#   --procs N            load-generator processes (default: from N and --per-proc)
#   --backend B          server backend: io_uring (default) or epoll (one fd per
#                        connection in the server process: at most the fd limit)
#   --tune yes|dry|no    apply scripts/tune.sh (default yes), only print it, or skip
#   --out DIR            where logs, JSON, the plot and samples go (default
#                        target/million/<mode>-<N>-<time>)
#   --no-build           use the release binaries as they are
#   --loadgen PATH       this load-generator binary instead of the one built (a
#                        saved copy, to compare before and after in one sitting)
#   --hosts K            K client hosts: network namespaces (scripts/lib/netns.sh),
#                        each with its own address and a `loadgen agent`; the server
#                        in a namespace of its own, the load generator as their
#                        controller (--agents); --procs is then per host and no
#                        --sources are used (each host has one address: at most
#                        ~28,000 connections a host, ~64,000 with --tune yes). Needs root.
#   --rx threads|inline  --hosts: where each namespace's arriving packets are
#                        processed (default threads: a kernel thread per veth end,
#                        counted to the side it receives for, as on machines of
#                        their own; inline: by whichever process sent them, so
#                        a client's connect() runs the server's side of the TCP
#                        handshake on the client's CPU, as over loopback)
#   --ehash own|shared   own (default): each network namespace its own TCP
#                        established hash sized to its sockets; without --hosts,
#                        the server and the load generator run in one namespace
#                        of their own over its loopback, with a hash of 2N
#                        buckets (both ends of every connection are there).
#                        shared: the machine's one table (sized at boot, see
#                        dmesg "TCP established hash"; 262,144 buckets on a
#                        2-core box make chains of 8 at a million connections,
#                        walked for every packet), and loopback runs on the
#                        machine's own loopback. Namespaces need root; without
#                        them a loopback run says so and uses the machine's.
#   --debug              unoptimized builds (a quick check of the script, not a measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
. scripts/lib/procs.sh million
# shellcheck source=scripts/lib/netns.sh
. scripts/lib/netns.sh


n=${N:-1000000}
mode=${MODE:-hold}
ramp=${RAMP:-8000}
duration=${DURATION:-}
ping_interval=${PING_INTERVAL:-60}
keepalive=${KEEPALIVE:-}
rate=${RATE:-1}
every=${EVERY:-10}
size=${SIZE:-}
connect_timeout=${CONNECT_TIMEOUT:-30}
sources=${SOURCES:-127.0.4.1-127.0.4.250}
per_worker=${PER_WORKER:-}
per_proc=${PER_PROC:-}
workers=${WORKERS:-}
procs=${PROCS:-}
backend=${BACKEND:-io_uring}
tune=${TUNE:-yes}
out=${OUT:-}
build=${BUILD:-1}
profile=${PROFILE:-release}
loadgen_override=${LOADGEN:-}
hosts=${HOSTS:-0}
rx=${RX:-threads}
ehash=${EHASH:-own}

while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=${2:?}; shift ;;
    --ramp) ramp=${2:?}; shift ;;
    --duration|-d) duration=${2:?}; shift ;;
    --ping-interval) ping_interval=${2:?}; shift ;;
    --keepalive) keepalive=${2:?}; shift ;;
    --rate) rate=${2:?}; shift ;;
    --every) every=${2:?}; shift ;;
    --size) size=${2:?}; shift ;;
    --connect-timeout) connect_timeout=${2:?}; shift ;;
    --sources) sources=${2:?}; shift ;;
    --per-worker) per_worker=${2:?}; shift ;;
    --per-proc) per_proc=${2:?}; shift ;;
    --workers) workers=${2:?}; shift ;;
    --procs) procs=${2:?}; shift ;;
    --backend) backend=${2:?}; shift ;;
    --tune) tune=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --no-build) build=0 ;;
    --loadgen) loadgen_override=${2:?}; shift ;;
    --debug) profile=debug ;;
    --hosts) hosts=${2:?}; shift ;;
    --rx) rx=${2:?}; shift ;;
    --ehash) ehash=${2:?}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) n=$1 ;;
  esac
  shift
done

case "$mode" in
  hold) duration=${duration:-40} ;;
  broadcast) duration=${duration:-60}; size=${size:-64} ;;
  echo) duration=${duration:-60}; size=${size:-32} ;;
  *) die "--mode is hold, broadcast or echo, not '$mode'" ;;
esac
case "$backend" in io_uring|epoll) ;; *) die "--backend is io_uring or epoll, not '$backend'" ;; esac
case "$tune" in yes|dry|no) ;; *) die "--tune is yes, dry or no, not '$tune'" ;; esac
case "$rx" in threads|inline) ;; *) die "--rx is threads or inline, not '$rx'" ;; esac
case "$ehash" in own|shared) ;; *) die "--ehash is own or shared, not '$ehash'" ;; esac
case "$profile" in release|debug) ;; *) die "PROFILE is release or debug, not '$profile'" ;; esac
positive "$n" || die "N must be a whole number of connections, not '$n'"
is_uint "$hosts" || die "--hosts must be a whole number, not '$hosts'"
if [ "$hosts" -gt 0 ]; then
  why=$(netns_check)
  [ -z "$why" ] || die "--hosts needs network namespaces: $why"
elif [ "$ehash" = own ]; then
  why=$(netns_check)
  if [ -n "$why" ]; then
    echo "million: over the machine's loopback and its TCP hash (--ehash shared): no network namespace here: $why" >&2
    ehash=shared
  fi
fi
for v in ramp duration ping_interval rate every connect_timeout; do
  is_num "${!v}" || die "--${v//_/-} must be a number, not '${!v}'"
done
if [ "$mode" = hold ]; then
  keepalive=${keepalive:-$(awk -v p="$ping_interval" 'BEGIN {print 2 * p}')}
fi
[ "$mode" != broadcast ] || [ -z "$keepalive" ] || die "--keepalive: the chat server of --mode broadcast keeps its default (30 s)"
keepalive=${keepalive:-30}
is_num "$keepalive" || die "--keepalive must be a number, not '$keepalive'"
[ "$ramp" != 0 ] || die "--ramp must be more than 0"
[[ "$sources" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+-127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || die "--sources must be a loopback range like 127.0.4.1-127.0.4.250"

# The fd limit: raised to the hard limit if it is not already.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_soft=$(ulimit -Sn)
fd_hard=$(ulimit -Hn)
[ "$fd_soft" = unlimited ] && fd_soft=1048576
[ "$fd_hard" = unlimited ] && fd_hard=1048576
per_worker=${per_worker:-$((fd_hard - 500))}
per_proc=${per_proc:-$((fd_soft - 500))}
for v in per_worker per_proc; do
  positive "${!v}" || die "--${v//_/-} must be a positive whole number"
done
[ "$per_proc" -lt "$fd_soft" ] || die "--per-proc $per_proc does not fit the fd limit $fd_soft"
cores=$(nproc)
if [ -z "$workers" ]; then
  if [ "$backend" = io_uring ]; then
    # Each ring's direct-descriptor table is bounded by the hard fd limit.
    workers=$(((n + per_worker - 1) / per_worker))
  else
    workers=$cores
  fi
  [ "$workers" -ge "$cores" ] || workers=$cores
fi
if [ "$backend" = epoll ] && [ $((n + 200)) -gt "$fd_soft" ]; then
  die "epoll: the server holds one fd per connection and the fd limit is $fd_soft; use --backend io_uring"
fi
# With --hosts, each host's share: its processes are the agent's.
per_host=$n
[ "$hosts" -gt 0 ] && per_host=$(((n + hosts - 1) / hosts))
procs=${procs:-$(((per_host + per_proc - 1) / per_proc))}
for v in workers procs; do
  positive "${!v}" || die "--$v must be a positive whole number"
done
[ $(((per_host + procs - 1) / procs)) -lt "$fd_soft" ] \
  || die "$procs load-generator processes cannot hold $per_host connections under the fd limit $fd_soft"

# Ports: each source address has the ephemeral range to itself.
read -r port_lo port_hi < /proc/sys/net/ipv4/ip_local_port_range
first=${sources%-*}; last=${sources#*-}
ip_num() { local IFS=.; read -r a b c d <<<"$1"; echo $(((a << 24) + (b << 16) + (c << 8) + d)); }
n_sources=$(($(ip_num "$last") - $(ip_num "$first") + 1))
if [ "$hosts" -gt 0 ]; then
  # One address per host, against one server address: each host has its
  # namespace's port range: 1024-65535 when tuned, else the default 32768-60999.
  host_ports=28232
  [ "$tune" = yes ] && host_ports=64512
  [ $((per_host + per_host / 10)) -le "$host_ports" ] \
    || die "--hosts $hosts: $per_host connections per host, more than one address's $host_ports ports; use more hosts"
else
  [ "$n_sources" -ge "$procs" ] || die "--sources has $n_sources addresses for $procs processes: give at least one each"
  ports=$((n_sources * (port_hi - port_lo + 1)))
  [ "$ports" -ge $((n + n / 10)) ] || die "--sources $sources gives $ports ports for $n connections (port range $port_lo-$port_hi); widen it"
fi

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$profile
release=()
[ "$profile" = release ] && release=(--release)
if [ "$build" = 1 ]; then
  cargo build "${release[@]}" -p ringws --example echo --example chat >&2
  cargo build "${release[@]}" -p ringws-loadgen >&2
fi
server_bin=$bin/examples/echo
[ "$mode" = broadcast ] && server_bin=$bin/examples/chat
loadgen=${loadgen_override:-$bin/loadgen}
{ [ -x "$server_bin" ] && [ -x "$loadgen" ]; } || die "no $profile binaries in $bin (drop --no-build)"

out=${out:-$target_dir/million/$mode-$n-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

# Kernel settings.
if [ "$tune" = yes ]; then
  bash scripts/tune.sh | tee "$out/tune.log" | grep -v '^keep' || true
elif [ "$tune" = dry ]; then
  bash scripts/tune.sh --dry-run > "$out/tune.log" || true
  echo "million: tune.sh not applied (--tune dry); it would: $(tail -1 "$out/tune.log")"
fi
read -r port_lo port_hi < /proc/sys/net/ipv4/ip_local_port_range

server_pid=
loadgen_pid=
sampler_pid=
# --hosts: the agents (each a load-generator process in its host's namespace).
agent_pids=()
# The load generator's --procs children (of the agents too, with --hosts),
# recorded while it runs.
children() {
  ps -e -o pid= -o ppid= 2>/dev/null \
    | awk -v parents="$loadgen_pid ${agent_pids[*]}" \
      'BEGIN {n = split(parents, p, " "); for (i = 1; i <= n; i++) want[p[i]] = 1} want[$2] {print $1}' || true
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -n "$sampler_pid" ] && stop_pid "$sampler_pid" 2
  local kids
  kids=$(children)
  [ -n "$loadgen_pid" ] && stop_pid "$loadgen_pid" 5
  for pid in "${agent_pids[@]}"; do stop_pid "$pid" 5; done
  for pid in $kids $(cat "$out/loadgen-children" 2>/dev/null || true); do
    # Only our own processes: still the load generator binary.
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" = "$(readlink -f "$loadgen")" ] && stop_pid "$pid" 5
  done
  stop_pid "$server_pid" 20
  netns_down
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Where the server runs: on loopback, here or (--ehash own) in a namespace of
# its own shared with the load generator, or (--hosts) in its namespace, on
# every address of it.
in_server=()
server_host=127.0.0.1
server_addr=127.0.0.1
# A power of two at least $1 (the kernel's bounds for a namespace's TCP hash: 128 to 16M).
pow2() { local b=128; while [ "$b" -lt "$1" ] && [ "$b" -lt 16777216 ]; do b=$((b * 2)); done; echo "$b"; }
[ "$tune" = yes ] && NETNS_TUNE=1
if [ "$hosts" -eq 0 ] && [ "$ehash" = own ]; then
  NETNS_EHASH_SERVER=$(pow2 $((2 * n)))
  netns_loopback "$NETNS_EHASH_SERVER"
  in_server=(ip netns exec "$NETNS_LOOPBACK")
  read -r port_lo port_hi < <("${in_server[@]}" cat /proc/sys/net/ipv4/ip_local_port_range)
  port=9001
elif [ "$hosts" -gt 0 ]; then
  [ "$rx" = threads ] && NETNS_RX_THREADS=1
  if [ "$ehash" = own ]; then
    NETNS_EHASH_SERVER=$(pow2 "$n")
    NETNS_EHASH_HOST=$(pow2 "$per_host")
  fi
  netns_up "$hosts"
  in_server=(ip netns exec "$NETNS_SERVER")
  server_host=0.0.0.0
  server_addr=$NETNS_SERVER_ADDR
  port=9001
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi
case "$mode" in
  broadcast) "${in_server[@]}" "$server_bin" --host "$server_host" --port "$port" --workers "$workers" --no-announce > "$out/server.log" 2>&1 & ;;
  *) "${in_server[@]}" "$server_bin" --host "$server_host" --port "$port" --workers "$workers" --backend "$backend" \
       --ping-interval "$keepalive" > "$out/server.log" 2>&1 & ;;
esac
server_pid=$!
for ((i = 0; i < 300; i++)); do
  grep -q listening "$out/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "server exited: $(cat "$out/server.log")"
  sleep 0.1
done
grep -q listening "$out/server.log" || die "server did not listen within 30 s: $(cat "$out/server.log")"
server_line=$(grep listening "$out/server.log" | head -1)
agent_list=
if [ "$hosts" -gt 0 ]; then
  for ((i = 0; i < hosts; i++)); do
    ip netns exec "${NETNS_HOSTS[i]}" "$loadgen" agent --listen "${NETNS_ADDRS[i]}:7700" > "$out/agent$((i + 1)).log" 2>&1 &
    agent_pids+=($!)
    agent_list+="${agent_list:+,}${NETNS_ADDRS[i]}:7700"
  done
  for ((i = 0; i < hosts; i++)); do
    wait_for_line "$out/agent$((i + 1)).log" listening 30 "${agent_pids[i]}" \
      || die "agent $((i + 1)) did not listen: $(cat "$out/agent$((i + 1)).log")"
  done
fi

# Resident KiB of a process; 0 once it is gone (or a zombie, without VmRSS).
# TCP sockets in use and TCP memory pages: of the server's namespace and, with
# --hosts, every host's (the memory is the kernel's, for all).
sockstat() {
  local p files=()
  for p in "$server_pid" "${agent_pids[@]}"; do files+=("/proc/$p/net/sockstat"); done
  cat "${files[@]}" 2>/dev/null \
    | awk '/^TCP:/ {n += $3; m = $NF} END {print n + 0, m + 0}'
}
mem_used_kib() { awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print t - a}' /proc/meminfo; }
# Kernel slab memory in KiB (every cache: socket, inode, file and TCP objects
# among them); 0 where /proc/slabinfo is not readable.
slab_kib() { awk 'NR > 2 {s += $3 * $4} END {printf "%d\n", s / 1024}' /proc/slabinfo 2>/dev/null || echo 0; }
sleep 1
read -r tcp0 tcpmem0 < <(sockstat)
used0=$(mem_used_kib)
slab0=$(slab_kib)
cp /proc/slabinfo "$out/slabinfo.before" 2>/dev/null || true
server_rss0=$(rss_kib "$server_pid")

url="ws://$server_addr:$port/"
common=(-c "$n" --procs "$procs" --ramp "$ramp" -d "$duration" --connect-timeout "$connect_timeout"
  --server-pid "$server_pid" --json "$out/loadgen.json" --plot "$out/loadgen.svg")
if [ "$hosts" -gt 0 ]; then
  common+=(--agents "$agent_list")
else
  common+=(--sources "$sources")
fi
case "$mode" in
  hold) args=(hold --url "$url" "${common[@]}" --ping-interval "$ping_interval") ;;
  broadcast) args=(broadcast --url "$url" "${common[@]}" --rate "$rate" --size "$size") ;;
  echo)
    total_rate=$(python3 -c "print($n / $every)")
    args=(echo --url "$url" "${common[@]}" --rate "$total_rate" --size "$size") ;;
esac
ramp_s=$(python3 -c "print(int($n / $ramp) + 1)")
# The load generator stops by itself (ramp + duration + connect timeout + 30 s
# at most); this bound is past that.
bound=$((ramp_s + ${duration%.*} + ${connect_timeout%.*} + 120))
echo "million: $n connections, mode $mode; server $(basename "$server_bin") pid $server_pid (keep-alive pings after ${keepalive} s of silence): ${server_line#*: }"
if [ "$hosts" -gt 0 ]; then
  echo "million: $hosts client hosts (network namespaces ${NETNS_HOSTS[*]}, agents $agent_list, pids ${agent_pids[*]}); server in $NETNS_SERVER at $server_addr"
  echo "million: receive $rx$([ "$rx" = threads ] && echo " (server's namespace: threads ${NETNS_RX_SERVER_PIDS[*]}; hosts': ${NETNS_RX_HOST_PIDS[*]})"); TCP hash $ehash$([ "$ehash" = own ] && echo " ($NETNS_EHASH_SERVER buckets in the server's namespace, $NETNS_EHASH_HOST in each host's)")"
  echo "million: fd limit $fd_soft (hard $fd_hard): $workers workers (<= $per_worker each), $procs load-generator processes per host (<= $(((per_host + procs - 1) / procs)) each)"
else
  echo "million: fd limit $fd_soft (hard $fd_hard): $workers workers (<= $per_worker each), $procs load-generator processes (<= $(((n + procs - 1) / procs)) each), sources $sources ($n_sources x $((port_hi - port_lo + 1)) ports)"
  if [ "$ehash" = own ]; then
    echo "million: loopback in network namespace $NETNS_LOOPBACK, its own TCP hash of $NETNS_EHASH_SERVER buckets"
  else
    echo "million: the machine's loopback and TCP hash (--ehash shared)"
  fi
fi
echo "million: $loadgen ${args[*]}"
echo "million: ramp about ${ramp_s} s at $ramp/s, then ${duration} s; at most $bound s; output in $out"
# CPU seconds of this shell's waited-for children (the load generator and,
# through it, its own children, once reaped), from `times` in this shell
# itself (a command substitution would be a subshell with its own).
children_cpu() { awk 'NR == 2 {gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4}' "$1"; }
hz=$(getconf CLK_TCK)
# Resident KiB, CPU ticks and anonymous resident KiB summed over the PIDs
# given, in one awk (the sampler's own cost stays small with many processes;
# a PID gone meanwhile counts 0).
group_stats() {
  awk -v pids="$*" 'BEGIN {
    n = split(pids, p, " ")
    for (i = 1; i <= n; i++) {
      f = "/proc/" p[i] "/stat"
      if ((getline l < f) > 0) { sub(/.*\) /, "", l); split(l, x, " "); t += x[12] + x[13] }
      close(f)
      f = "/proc/" p[i] "/status"
      while ((getline l < f) > 0) {
        if (l ~ /^VmRSS:/) { split(l, y, " "); r += y[2] }
        else if (l ~ /^RssAnon:/) { split(l, y, " "); a += y[2] }
      }
      close(f)
    }
    print r + 0, t + 0, a + 0
  }'
}
# CPU ticks (user + system) of the processes (or kernel threads) named, so far.
sum_ticks() { local _r t _a; read -r _r t _a < <(group_stats "$@"); echo "$t"; }
# The machine's busy ticks, every CPU (user, nice, system, irq, softirq, steal).
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
server_rx0=$(sum_ticks "${NETNS_RX_SERVER_PIDS[@]}")
hosts_rx0=$(sum_ticks "${NETNS_RX_HOST_PIDS[@]}")
server_cpu0=$(sum_ticks "$server_pid")
times > "$out/times.before"
children_cpu0=$(children_cpu "$out/times.before")
run_start=$(date +%s.%N)
busy0=$(machine_busy)
"${in_server[@]}" "$loadgen" "${args[@]}" > "$out/loadgen.log" 2>&1 &
loadgen_pid=$!

# Samples every second while the load generator runs; the one with the most
# TCP sockets is the held state.
(
  echo "t tcp_inuse tcp_mem_pages mem_used_kib server_rss_kib loadgen_rss_kib slab_kib server_cpu_ticks loadgen_cpu_ticks loadgen_anon_kib server_rx_ticks hosts_rx_ticks machine_busy_ticks"
  start=$(date +%s)
  most=0
  while kill -0 "$loadgen_pid" 2>/dev/null; do
    kids=$(children)
    [ -n "$kids" ] && echo "$kids" > "$out/loadgen-children"
    read -r lg lg_cpu lg_anon < <(group_stats "$loadgen_pid" $kids "${agent_pids[@]}")
    read -r srss scpu _ < <(group_stats "$server_pid")
    read -r _ srx _ < <(group_stats "${NETNS_RX_SERVER_PIDS[@]}")
    read -r _ hrx _ < <(group_stats "${NETNS_RX_HOST_PIDS[@]}")
    read -r tcp mem < <(sockstat)
    # The slab caches at the most sockets: what a connection costs the kernel.
    if [ "$tcp" -gt "$most" ]; then
      most=$tcp
      cp /proc/slabinfo "$out/slabinfo.held" 2>/dev/null || true
    fi
    echo "$(($(date +%s) - start)) $tcp $mem $(mem_used_kib) $srss $lg $(slab_kib) $scpu $lg_cpu $lg_anon $srx $hrx $(machine_busy)"
    sleep 1
  done
) > "$out/samples.txt" &
sampler_pid=$!

status=0
for ((i = 0; i < bound; i++)); do
  kill -0 "$loadgen_pid" 2>/dev/null || break
  kill -0 "$server_pid" 2>/dev/null || { echo "million: the server died" >&2; status=1; break; }
  sleep 1
done
if kill -0 "$loadgen_pid" 2>/dev/null; then
  echo "million: the load generator is still running after $bound s; stopping it" >&2
  status=1
else
  wait "$loadgen_pid" || status=$?
fi
loadgen_rc=$status
run_secs=$(python3 -c "print($(date +%s.%N) - $run_start)")
busy=$(python3 -c "print(($(machine_busy) - $busy0) / $hz)")
server_cpu=$(python3 -c "print(($(sum_ticks "$server_pid") - $server_cpu0) / $hz)")
server_rx=$(python3 -c "print(($(sum_ticks "${NETNS_RX_SERVER_PIDS[@]}") - $server_rx0) / $hz)")
hosts_rx=$(python3 -c "print(($(sum_ticks "${NETNS_RX_HOST_PIDS[@]}") - $hosts_rx0) / $hz)")
# The agents' CPU counts once they are reaped (their own children's with it).
for pid in "${agent_pids[@]}"; do
  stop_pid "$pid" 5
  wait "$pid" 2>/dev/null || true
done
agent_pids=()
times > "$out/times.after"
loadgen_cpu=$(python3 -c "print($(children_cpu "$out/times.after") - $children_cpu0)")
stop_pid "$sampler_pid" 3
sampler_pid=

python3 - "$out" "$n" "$mode" "$tcp0" "$tcpmem0" "$used0" "$server_rss0" "$loadgen_rc" "$workers" "$procs" "$slab0" "$duration" \
  "$run_secs" "$server_cpu" "$loadgen_cpu" "$cores" "$hz" "$hosts" "$server_rx" "$hosts_rx" "$rx" "$busy" <<'PY'
import json, sys
out, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tcp0, tcpmem0, used0, server_rss0, rc, workers, procs, slab0 = map(int, sys.argv[4:12])
duration = float(sys.argv[12])
run_secs, server_cpu, loadgen_cpu = map(float, sys.argv[13:16])
cores = int(sys.argv[16])
hz = int(sys.argv[17])
hosts = int(sys.argv[18])
server_rx, hosts_rx = float(sys.argv[19]), float(sys.argv[20])
# Receive threads: each side's packets processed apart from its process.
rx_threads = hosts and sys.argv[21] == "threads"
busy = float(sys.argv[22])
try:
    r = json.load(open(f"{out}/loadgen.json"))[0]
except Exception as e:
    print(f"million: no result from the load generator ({e}); see {out}/loadgen.log")
    print(open(f"{out}/loadgen.log").read()[-3000:])
    sys.exit(1)
rows = []
for line in open(f"{out}/samples.txt").read().split("\n")[1:]:
    f = line.split()
    if len(f) >= 13:
        rows.append(list(map(int, f[:13])))
# The held state: the last sample in the middle of the hold (every connection
# open, the ramp's bursts over, the closing not begun).
mid = r["ramp_s"] + duration / 2
before_mid = [x for x in rows if x[0] <= mid]
held = before_mid[-1] if before_mid else (rows[-1] if rows else None)
conn = r["connected"]
fails = sum(r["failures"].values())
def ms(v): return "-" if v is None else f"{v:.2f} ms"
def mib(b): return f"{b / 1048576:.1f} MiB"
lines = [f"connected        {conn:,} of {n:,}  (failures {fails:,}: " +
         ", ".join(f"{k} {v}" for k, v in r["failures"].items() if v) + ")" if fails else
         f"connected        {conn:,} of {n:,}  (failures 0)"]
lines.append(f"ramp             {r['ramp_s']:.1f} s ({(r['connections_per_s'] or 0):,.0f} connections/s)")
lines.append(f"handshake        connect+upgrade p50 {ms(r['handshake_ms']['p50'])}, p99 {ms(r['handshake_ms']['p99'])}")
ok = conn == n and fails == 0 and r["dropped"] == 0
if mode == "hold":
    lines.append(f"live at the end  {r['live_at_end']:,}")
    lines.append(f"pings            {r['pings']:,} sent, {r['pongs']:,} pongs, {r['missed_pongs']:,} missed")
    pong = r.get("pong_ms") or {}
    lines.append(f"ping to pong     p50 {ms(pong.get('p50'))}, p99 {ms(pong.get('p99'))}, max {ms(pong.get('max'))}")
    ok = ok and r["missed_pongs"] == 0
elif mode == "broadcast":
    f = r["fanout"] or {}
    lat = f.get("latency_ms_local") or {}
    lines.append(f"fan-out          {r['published']:,} published in the window, {r['messages']:,} delivered "
                 f"({f.get('deliveries_per_s_local', 0):,.0f}/s); latency p50 {ms(lat.get('p50'))}, "
                 f"p99 {ms(lat.get('p99'))}, max {ms(lat.get('max'))}")
    lines.append(f"exactly once     missing {f.get('missing')}, duplicate or out of order {f.get('out_of_order')}, "
                 f"silent {f.get('silent')} -> {'OK' if f.get('exactly_once') else 'NOT exactly once'}")
    ok = ok and bool(f.get("exactly_once"))
else:
    lat = r["latency_ms"]
    lines.append(f"echo             {r['messages']:,} echoes ({r['messages_per_s']:,.0f}/s), latency p50 {ms(lat['p50'])}, "
                 f"p99 {ms(lat['p99'])}, max {ms(lat['max'])}; lost {r['lost']}, mismatched {r['mismatches']}")
    ok = ok and r["lost"] == 0 and r["mismatches"] == 0
lines.append(f"dropped          {r['dropped']:,} connections lost after opening")
series = r.get("series") or []
worst = max(((s["latency_ms"]["p99"] or s["handshake_ms"]["p99"] or 0, s["t"]) for s in series), default=None)
if worst:
    lines.append(f"worst second     p99 {worst[0]:.2f} ms at {worst[1]} s; seconds with errors "
                 f"{sum(1 for s in series if s['errors'])} of {len(series)}")
rss = r.get("server_rss")
if rss and conn:
    lines.append(f"server memory    RSS {mib(rss['before'])} before, {mib(rss['held'])} held: "
                 f"{rss['bytes_per_connection']:,.0f} bytes per connection (user space)")
if held and conn:
    t, tcp, mem, used, srss, lrss, slab, _, _, lanon = held[:10]
    # Both ends of every connection are sockets of this machine.
    k = max(mem - tcpmem0, 0) * 4096
    lines.append(f"kernel TCP mem   {k / conn:,.0f} bytes per connection, {k / (2 * conn):,.0f} per socket "
                 f"(sockstat mem {mem:,} pages x 4096 at {t} s, {tcpmem0} before; TCP inuse {tcp:,})")
    if slab:
        s = (slab - slab0) * 1024
        lines.append(f"kernel slab      {s / conn:,.0f} bytes per connection ({mib(s)} more in /proc/slabinfo)")
    # The caches that grew most, from the snapshot at the most sockets.
    def caches(path):
        try:
            rows_ = [l.split() for l in open(path).read().splitlines()[2:]]
            return {f[0]: int(f[2]) * int(f[3]) for f in rows_ if len(f) > 3}
        except (OSError, ValueError):
            return {}
    c0, c1 = caches(f"{out}/slabinfo.before"), caches(f"{out}/slabinfo.held")
    grown = sorted(((c1[k] - c0.get(k, 0), k) for k in c1), reverse=True)[:8]
    tcp_most = max((x[1] for x in rows), default=0)
    if grown and tcp_most:
        lines.append(f"slab at the most sockets ({tcp_most:,}), bytes per connection: " +
                     ", ".join(f"{k} {g / conn:,.0f}" for g, k in grown if g > 0))
    lines.append(f"machine memory   {mib(used * 1024)} in use (MemTotal - MemAvailable), "
                 f"{mib((used - used0) * 1024)} against before the run (other jobs included)")
    # With --hosts: the controller, and each agent with its children.
    lg_procs = hosts * (procs + (procs > 1)) + 1 if hosts else procs + 1
    lines.append(f"load generator   {mib(lrss * 1024)} RSS over {lg_procs if hosts else procs} processes: "
                 f"{lrss * 1024 / conn:,.0f} bytes per connection; anonymous (heap, no shared "
                 f"binary pages) {lanon / 1024:.1f} MiB: {lanon * 1024 / conn:,.0f} bytes per connection, "
                 f"the {lg_procs} processes' fixed part included")
lines.append(f"CPU              server {server_cpu:.1f} s, load generator {loadgen_cpu:.1f} s over {run_secs:.1f} s "
             f"of run ({cores} cores: {cores * run_secs:.0f} s available)")
if rx_threads:
    lines.append(f"receive threads  server's namespace {server_rx:.1f} s, client hosts' {hosts_rx:.1f} s "
                 f"(packets processed for each side, counted to it below)")
    if conn and (server_rx == 0 or hosts_rx == 0):
        # The figures below would put one side's receiving on the other's account.
        lines.append("receive threads  counted nothing for a side: its packets were not received in its threads")
        ok = False
# The machine's busy time over the same span (/proc/stat), against what the
# lines above account for.
mine = server_cpu + loadgen_cpu + (server_rx + hosts_rx if rx_threads else 0)
lines.append(f"machine CPU      {busy:.1f} s busy of {cores * run_secs:.0f} s; {max(busy - mine, 0):.1f} s outside "
             f"the processes{' and receive threads' if rx_threads else ''} (softirq on idle CPUs, kernel threads, "
             f"this script's sampling, other jobs)")
# Per phase, from the per-second CPU samples (both sides' ticks): the ramp
# (start to the last connection open) over the connections opened, and the
# hold (from 2 s after the ramp to 1 s before its end) over the connection-minutes held.
def at(t):
    before = [x for x in rows if x[0] <= t]
    return before[-1] if before else None
ramp_end = at(r["ramp_s"] + 1)
hold_a, hold_b = at(r["ramp_s"] + 2), at(r["ramp_s"] + duration - 1)
def sides(a, b, per):
    """Each side's CPU between samples a and b, in us per unit: its process(es)
    and, with receive threads, the packets processed for it."""
    s, l = (b[7] - a[7]) / hz * 1e6 / per, (b[8] - a[8]) / hz * 1e6 / per
    if l < 0:
        # A load-generator process ended between the samples (its CPU left the sum).
        return None
    if not rx_threads:
        return f"server {s:,.1f} us, load generator {l:,.1f} us"
    sr, lr = (b[10] - a[10]) / hz * 1e6 / per, (b[11] - a[11]) / hz * 1e6 / per
    return (f"server {s + sr:,.1f} us ({s:,.1f} process + {sr:,.1f} receive), "
            f"load generator {l + lr:,.1f} us ({l:,.1f} processes + {lr:,.1f} receive)")
if rows and ramp_end and conn:
    opened = sides(rows[0], ramp_end, conn)
    lines.append(f"CPU per opened   {opened} per connection (connect + upgrade; {ramp_end[0]} s of ramp)"
                 if opened else "CPU per opened   not measured: a load-generator process ended in the ramp")
if hold_a and hold_b and hold_b[0] - hold_a[0] >= 5 and conn:
    held_ = sides(hold_a, hold_b, conn * (hold_b[0] - hold_a[0]) / 60)
    lines.append(f"CPU per held     {held_} per connection-minute ({hold_b[0] - hold_a[0]} s of hold, "
                 f"{hold_a[0]}-{hold_b[0]} s)"
                 if held_ else "CPU per held     not measured: a load-generator process ended in the hold")
if mode == "broadcast" and r["messages"]:
    lines.append(f"                 per delivery: server {server_cpu * 1e6 / max(r['messages'], 1):.2f} us, "
                 f"load generator {loadgen_cpu * 1e6 / max(r['messages'], 1):.2f} us (whole run over the window's deliveries)")
lg = r.get("load_generator")
if lg:
    lines.append(f"bottleneck       load generator {'YES: ' + lg['bottleneck'] if lg['bottleneck'] else 'no'} "
                 f"(busiest thread {100 * lg['busiest_thread_cpu']:.0f}% of a core; {lg['late_sends']:,} of "
                 f"{lg['scheduled_sends']:,} scheduled sends > 100 ms late, latest {lg['max_lag_ms']:.1f} ms)")
for a in r.get("agents") or []:
    how = "ok" if a["status"] == "ok" else f"FAILED {a['failed_after_s']:.1f} s in: {a['error']}"
    lines.append(f"client host      {a['address']}: {a['connections_planned']:,} connections asked, clock offset "
                 f"{a['clock_offset_ms']:+.3f} ms (round trip {a['round_trip_ms']:.3f} ms): {how}")
    ok = ok and a["status"] == "ok"
if rc != 0:
    lines.append(f"load generator exit status {rc}: {open(f'{out}/loadgen.log').read().strip().splitlines()[-1:]}")
    ok = False
if hosts:
    print(f"== million: {mode}, {n:,} connections, {workers} server workers, {hosts} client hosts "
          f"(network namespaces, an agent each), {procs} load-generator processes per host")
else:
    print(f"== million: {mode}, {n:,} connections, {workers} server workers, {procs} load-generator processes")
for l in lines:
    print("  " + l)
print(f"  files            {out}/ (loadgen.json with per-second samples, loadgen.svg, samples.txt, logs)")
print("RESULT:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
