# shellcheck shell=bash
# Network namespaces as client hosts, shared by scripts/agents.sh (the test
# of `loadgen --agents`) and scripts/million.sh --hosts K. Sourced after
# scripts/lib/procs.sh.
#
# netns_up K makes one namespace for the server and K for client hosts, all
# named after this shell's PID (parallel runs do not clash):
#   server  $NETNS_SERVER, its address $NETNS_SERVER_ADDR (10.77.0.1, on its lo)
#   host i  ${NETNS_HOSTS[i-1]}, address 10.77.i.2/24 on a veth whose peer in
#           the server's namespace is 10.77.i.1/24; its default route goes
#           there, so every host reaches the server at 10.77.0.1.
# Addresses exist only inside the namespaces (nothing is added to the
# machine's own). netns_down deletes them (their veths go with them); call it
# from a trap after stopping what runs inside.
# netns_check says why namespaces cannot be made here (not root, no `ip`,
# the kernel refuses), or nothing.

NETNS_PREFIX="lg$$"
NETNS_SERVER="$NETNS_PREFIX-srv"
NETNS_SERVER_ADDR=10.77.0.1
NETNS_HOSTS=()
NETNS_ADDRS=()
NETNS_MADE=()

netns_check() {
  command -v ip > /dev/null || { echo "no ip command (iproute2)"; return 0; }
  [ "$(id -u)" = 0 ] || { echo "not root: network namespaces need CAP_SYS_ADMIN"; return 0; }
  local probe="$NETNS_PREFIX-probe" err
  if ! err=$(ip netns add "$probe" 2>&1); then
    echo "the kernel refuses network namespaces: $err"
    return 0
  fi
  ip netns del "$probe" 2> /dev/null || true
}

netns_up() {
  local k=$1 i ns host_if srv_if
  [ "$k" -ge 1 ] && [ "$k" -le 250 ] || die "namespace hosts: 1 to 250, not $k"
  ip netns add "$NETNS_SERVER" && NETNS_MADE+=("$NETNS_SERVER")
  ip -n "$NETNS_SERVER" link set lo up
  ip -n "$NETNS_SERVER" addr add "$NETNS_SERVER_ADDR/32" dev lo
  for ((i = 1; i <= k; i++)); do
    ns="$NETNS_PREFIX-h$i"
    # Interface names: at most 15 characters.
    host_if="${NETNS_PREFIX}h$i"
    srv_if="${NETNS_PREFIX}s$i"
    ip netns add "$ns" && NETNS_MADE+=("$ns")
    ip -n "$ns" link set lo up
    ip link add "$host_if" netns "$ns" type veth peer name "$srv_if" netns "$NETNS_SERVER"
    ip -n "$ns" addr add "10.77.$i.2/24" dev "$host_if"
    ip -n "$NETNS_SERVER" addr add "10.77.$i.1/24" dev "$srv_if"
    ip -n "$ns" link set "$host_if" up
    ip -n "$NETNS_SERVER" link set "$srv_if" up
    ip -n "$ns" route add default via "10.77.$i.1"
    NETNS_HOSTS+=("$ns")
    NETNS_ADDRS+=("10.77.$i.2")
  done
}

netns_down() {
  local ns
  for ns in "${NETNS_MADE[@]}"; do
    ip netns del "$ns" 2> /dev/null || true
  done
  NETNS_MADE=()
}

# Waits up to $3 seconds for a line matching $2 in the log $1 of process $4
# (which must stay alive meanwhile).
wait_for_line() {
  local log=$1 pattern=$2 bound=$3 pid=$4 i
  for ((i = 0; i < bound * 10; i++)); do
    grep -q "$pattern" "$log" 2> /dev/null && return 0
    kill -0 "$pid" 2> /dev/null || return 1
    sleep 0.1
  done
  return 1
}
