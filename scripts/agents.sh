#!/usr/bin/env bash
# The test of `loadgen --agents` (several client hosts), on this machine: two
# network namespaces as client hosts and one for the server (scripts/lib/netns.sh:
# veth pairs, 10.77.x.y addresses inside the namespaces only, names with this
# shell's PID), the echo example in the server's, `loadgen agent` in each host's,
# and the controller in the server's namespace. Checks:
#   1. echo over both agents: the merged report's connections are the sum of the
#      agents', each agent's share is there, no error, clock offsets reported;
#   2. an agent sent garbage drops that controller and serves the next;
#   3. one agent killed (SIGKILL, by PID) mid-run: reported (which, when), the
#      other's results still in the report, the dead one's streamed seconds
#      before its death there too, marked partial; the exit status non-zero;
#   4. the controller killed (SIGKILL, by PID) mid-run: the agent (with --procs 2)
#      stops its run within a couple of seconds (its log says so, the server's
#      connections drop), then serves a new controller's short run.
# Everything is stopped by PID and the namespaces deleted by a trap. Where
# namespaces cannot be made (not root, a kernel that refuses) it says SKIPPED
# and why, and exits 0.
#
#   bash scripts/agents.sh [--no-build] [--out DIR]     (PROFILE=release for optimized builds)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/procs.sh
. scripts/lib/procs.sh agents
# shellcheck source=scripts/lib/netns.sh
. scripts/lib/netns.sh

build=1
profile=${PROFILE:-debug}
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --out) out=${2:?}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

why=$(netns_check)
if [ -n "$why" ]; then
  echo "agents: SKIPPED: $why"
  exit 0
fi

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$profile
release=()
[ "$profile" = release ] && release=(--release)
if [ "$build" = 1 ]; then
  cargo build "${release[@]}" --locked -p ringws --example echo >&2
  cargo build "${release[@]}" --locked -p ringws-loadgen >&2
fi
loadgen=$(readlink -f "$bin/loadgen")
server_bin=$(readlink -f "$bin/examples/echo")
out=${out:-$target_dir/agents/$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$out"
out=$(readlink -f "$out")

pids=()
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do stop_pid "$pid" 5; done
  netns_down
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "agents: FAIL: $*" >&2; exit 1; }

netns_up 2
port=9001
agent_port=7700
ip netns exec "$NETNS_SERVER" "$server_bin" --host 0.0.0.0 --port "$port" --workers 2 > "$out/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
wait_for_line "$out/server.log" listening 30 "$server_pid" || fail "the server did not listen: $(cat "$out/server.log")"
agent_pids=()
agents=()
for i in 0 1; do
  ip netns exec "${NETNS_HOSTS[i]}" "$loadgen" agent --listen "${NETNS_ADDRS[i]}:$agent_port" > "$out/agent$((i + 1)).log" 2>&1 &
  agent_pids+=($!)
  pids+=($!)
  agents+=("${NETNS_ADDRS[i]}:$agent_port")
done
for i in 0 1; do
  wait_for_line "$out/agent$((i + 1)).log" listening 30 "${agent_pids[i]}" \
    || fail "agent $((i + 1)) did not listen: $(cat "$out/agent$((i + 1)).log")"
done
echo "agents: server pid $server_pid in $NETNS_SERVER at $NETNS_SERVER_ADDR:$port; agents ${agents[*]} (pids ${agent_pids[*]}) in ${NETNS_HOSTS[*]}"
controller() { ip netns exec "$NETNS_SERVER" timeout 120 "$loadgen" "$@"; }
url="ws://$NETNS_SERVER_ADDR:$port/"
agent_list=$(IFS=,; echo "${agents[*]}")

echo "== agents 1: echo, 41 connections over 2 agents of 2 processes each, 3 s"
rc=0
controller echo --url "$url" -c 41 -d 3 --procs 2 --agents "$agent_list" --json "$out/ok.json" --plot "$out/ok.svg" \
  > "$out/ok.log" 2>&1 || rc=$?
cat "$out/ok.log"
[ "$rc" = 0 ] || fail "the controller exited with $rc"
python3 - "$out/ok.json" <<'PY' || fail "the merged report of 1 is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
total, parts = d[0], d[1:]
agents = total["agents"]
assert len(agents) == 2 and len(parts) == 2, (len(agents), len(parts))
assert [a["connections_planned"] for a in agents] == [21, 20], agents
assert all(a["status"] == "ok" for a in agents), agents
assert all(isinstance(a["clock_offset_ms"], float) and a["round_trip_ms"] > 0 for a in agents), agents
assert total["connected"] == 41 == sum(p["connected"] for p in parts), (total["connected"], [p["connected"] for p in parts])
assert [p["connected"] for p in parts] == [21, 20]
assert total["messages"] == sum(p["messages"] for p in parts) > 0
for o in [total] + parts:
    assert sum(o["failures"].values()) == 0 and o["mismatches"] == 0 and o["lost"] == 0 and o["dropped"] == 0, o
assert total["series"] and parts[0]["series"]
# Every second was streamed as it completed, and agrees with the result.
assert [a["streamed_seconds"] for a in agents] == [len(p["series"]) for p in parts], agents
print(f"agents: 1 ok: {total['connected']} = {parts[0]['connected']} + {parts[1]['connected']} connected, "
      f"{total['messages']} echoes, offsets {[a['clock_offset_ms'] for a in agents]} ms")
PY
grep -q "clock offset" "$out/ok.log" || fail "no clock offsets in the report"
! grep -q "differ from its result" "$out/ok.log" || fail "streamed seconds differ from the results"
[ -s "$out/ok.svg" ] || fail "no plot"

echo "== agents 2: garbage to agent 1, which then serves the next controller"
ip netns exec "$NETNS_SERVER" bash -c "printf 'GET / HTTP/1.1\r\n\r\n' > /dev/tcp/${NETNS_ADDRS[0]}/$agent_port" || true
wait_for_line "$out/agent1.log" "dropped: sent a message of" 10 "${agent_pids[0]}" \
  || fail "agent 1 did not drop the garbage: $(cat "$out/agent1.log")"
grep "dropped" "$out/agent1.log"

echo "== agents 3: agent 2 killed 3 s into an 8 s run"
# Not through controller() (a function in the background is a subshell,
# which a kill would leave its loadgen behind): ip execs timeout, which
# passes a SIGTERM on to loadgen.
ip netns exec "$NETNS_SERVER" timeout 120 "$loadgen" echo --url "$url" -c 40 -d 8 --agents "$agent_list" \
  --json "$out/dead.json" > "$out/dead.log" 2>&1 &
controller_pid=$!
pids+=("$controller_pid")
wait_for_line "$out/dead.log" "starting in" 20 "$controller_pid" || fail "the controller did not start: $(cat "$out/dead.log")"
sleep 4
kill -KILL "${agent_pids[1]}"
rc=0
wait "$controller_pid" || rc=$?
cat "$out/dead.log"
[ "$rc" != 0 ] || fail "the controller exited 0 with an agent dead"
grep -q "agent ${agents[1]} failed" "$out/dead.log" || fail "the dead agent is not named"
grep -q "${agents[1]}: clock offset .* FAILED .* PARTIAL" "$out/dead.log" || fail "the dead agent's line is missing or not partial"
grep -q "1 partial" "$out/dead.log" || fail "the total does not say partial"
grep -q "${agents[0]}: clock offset .* connected 20 of 20" "$out/dead.log" || fail "the live agent's results are missing"
python3 - "$out/dead.json" <<'PY' || fail "the report of 3 is wrong"
import json, sys
d = json.load(open(sys.argv[1]))
total, parts = d[0], d[1:]
a = total["agents"]
assert a[0]["status"] == "ok" and a[1]["status"] == "failed", a
assert a[1]["failed_after_s"] is not None and a[1]["error"], a
assert a[0]["partial"] is False and a[1]["partial"] is True, a
assert len(parts) == 2 and parts[0]["connected"] == 20, [p["connected"] for p in parts]
dead = parts[1]
assert dead["agent"]["address"] == a[1]["address"] and dead["agent"]["partial"], dead["agent"]
assert dead["series"] and sum(x["messages"] for x in dead["series"]) > 0 and dead["messages"] > 0, dead["series"]
assert len(dead["series"]) <= a[1]["failed_after_s"] + 2, (len(dead["series"]), a[1])
assert total["connections"] == 40 and total["messages"] == parts[0]["messages"] + dead["messages"]
print(f"agents: 3 ok: agent 2 reported failed {a[1]['failed_after_s']:.1f} s in ({a[1]['error']}); "
      f"agent 1's {parts[0]['connected']} connections and {parts[0]['messages']} echoes kept; "
      f"agent 2's {len(dead['series'])} s before it died kept (partial, {dead['messages']} echoes)")
PY
echo "== agents 4: the controller killed mid-run; agent 1 (--procs 2) stops, then serves the next"
established() {
  ip netns exec "$NETNS_SERVER" ss -Htn state established "( sport = :$port )" | wc -l
}
# Not through controller(): $! must be loadgen's own PID (ip netns exec execs it).
ip netns exec "$NETNS_SERVER" "$loadgen" echo --url "$url" -c 20 -d 30 --procs 2 --agents "${agents[0]}" \
  > "$out/lost.log" 2>&1 &
controller_pid=$!
pids+=("$controller_pid")
wait_for_line "$out/lost.log" "starting in" 20 "$controller_pid" || fail "the controller did not start: $(cat "$out/lost.log")"
sleep 3
open=$(established)
[ "$open" -ge 20 ] || fail "only $open connections at the server before the controller is killed"
kill -KILL "$controller_pid"
killed_at=$(date +%s%N)
wait_for_line "$out/agent1.log" "controller is gone" 5 "${agent_pids[0]}" \
  || fail "agent 1 did not notice its controller's death: $(tail -5 "$out/agent1.log")"
for _ in $(seq 30); do
  open=$(established)
  [ "$open" = 0 ] && break
  sleep 0.1
done
stopped_after=$(( ($(date +%s%N) - killed_at) / 1000000 ))
[ "$open" = 0 ] || fail "$open connections still open at the server 3 s after the controller died"
wait_for_line "$out/agent1.log" "run stopped" 5 "${agent_pids[0]}" || fail "agent 1 did not stop its run"
grep -E "controller is gone|run stopped|dropped: controller gone" "$out/agent1.log" | tail -3
echo "agents: 4: the server's connections dropped to 0 within ${stopped_after} ms of the controller's death"
rc=0
controller echo --url "$url" -c 10 -d 2 --agents "${agents[0]}" > "$out/next.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "agent 1 did not serve the next controller (exit $rc): $(cat "$out/next.log")"
grep -q "${agents[0]}: clock offset .* connected 10 of 10" "$out/next.log" || fail "the next run's results are wrong: $(cat "$out/next.log")"
echo "agents: 4 ok: agent 1 served the next controller: $(grep "${agents[0]}: clock offset" "$out/next.log")"
echo "agents: PASS (files in $out)"
