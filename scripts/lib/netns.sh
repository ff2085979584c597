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
#
# Set before netns_up, for runs that measure (scripts/million.sh --hosts):
#   NETNS_TUNE=1         each namespace gets the per-namespace settings a
#                        million-connection run needs (scripts/tune.sh's: the
#                        listen backlogs in the server's, the whole port range
#                        and TIME_WAIT reuse in each host's, socket buffers in
#                        all); a new namespace starts from the kernel defaults.
#   NETNS_EHASH_SERVER=B, NETNS_EHASH_HOST=B
#                        each namespace its own TCP established hash of B
#                        buckets (net.ipv4.tcp_child_ehash_entries, rounded up
#                        to a power of two by the kernel, 128 to 16M) instead of
#                        the machine's one table, sized at boot for all sockets.
#                        (netns_loopback takes its size as an argument.)
#   NETNS_RX_THREADS=1   every veth end receives in a kernel thread of its own
#                        (threaded NAPI, with GRO on and TSO off: a veth hands
#                        no TSO-built TCP packet to NAPI; ethtool, installed
#                        if missing, sets them): what arrives
#                        for the server's namespace is processed in
#                        NETNS_RX_SERVER_PIDS' threads, for the hosts in
#                        NETNS_RX_HOST_PIDS', rather than by whichever process
#                        sent it (on one machine the sender's system call would
#                        otherwise run the receiver's TCP work, the server's
#                        side of every handshake on the client's account).

NETNS_PREFIX="lg$$"
NETNS_SERVER="$NETNS_PREFIX-srv"
NETNS_SERVER_ADDR=10.77.0.1
NETNS_HOSTS=()
NETNS_ADDRS=()
NETNS_MADE=()
NETNS_RX_SERVER_PIDS=()
NETNS_RX_HOST_PIDS=()
NETNS_LOOPBACK=
# What NETNS_TUNE sets: scripts/tune.sh's per-namespace settings, the
# listen backlogs where the server listens, the whole port range and
# TIME_WAIT reuse where clients connect from, socket buffers in both.
NETNS_LISTEN_SYSCTLS=(net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535)
NETNS_CONNECT_SYSCTLS=("net.ipv4.ip_local_port_range=1024 65535" net.ipv4.tcp_tw_reuse=1)
NETNS_BUFFER_SYSCTLS=("net.ipv4.tcp_rmem=4096 16384 4194304" "net.ipv4.tcp_wmem=4096 16384 4194304"
  net.ipv4.tcp_fin_timeout=10)

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

# Kernel threads that receive for interfaces (threaded NAPI), by PID, in
# the order comm(1) wants (lexical: PIDs of different lengths mix).
napi_pids() { ps -e -o pid= -o comm= | awk '$2 ~ /^napi\// {print $1}' | sort; }

# Makes interface $2 of namespace $1 receive in its own kernel thread; prints
# the thread's PID.
netns_rx_thread() {
  local ns=$1 dev=$2 before
  before=$(napi_pids)
  ip netns exec "$ns" ethtool -K "$dev" gro on tso off > /dev/null
  ip netns exec "$ns" sh -c "echo 1 > /sys/class/net/$dev/threaded"
  comm -13 <(echo "$before") <(napi_pids)
}

# Adds namespace $1 with its own TCP hash of $2 buckets (0: the machine's).
netns_add() {
  local ns=$1 buckets=$2 key=/proc/sys/net/ipv4/tcp_child_ehash_entries old
  if [ "$buckets" -gt 0 ] && [ -w "$key" ]; then
    local rc=0
    old=$(cat "$key")
    echo "$buckets" > "$key"
    ip netns add "$ns" || rc=$?
    # Restored even when the add failed: later namespaces are not ours.
    echo "$old" > "$key"
    [ "$rc" = 0 ] || return "$rc"
    NETNS_MADE+=("$ns")
  else
    ip netns add "$ns" && NETNS_MADE+=("$ns")
  fi
}

# Sets sysctl NAME=VALUE inside namespace $1 (a setting this kernel lacks
# there is skipped).
netns_sysctl() {
  local ns=$1
  shift
  ip netns exec "$ns" sysctl -q -w "$@" > /dev/null 2>&1 || true
}

netns_up() {
  local k=$1 i ns host_if srv_if
  [ "$k" -ge 1 ] && [ "$k" -le 250 ] || die "namespace hosts: 1 to 250, not $k"
  if [ "${NETNS_RX_THREADS:-0}" = 1 ]; then
    command -v ethtool > /dev/null || bash scripts/apt-install.sh ethtool
  fi
  netns_add "$NETNS_SERVER" "${NETNS_EHASH_SERVER:-0}"
  if [ "${NETNS_TUNE:-0}" = 1 ]; then
    netns_sysctl "$NETNS_SERVER" "${NETNS_LISTEN_SYSCTLS[@]}" "${NETNS_BUFFER_SYSCTLS[@]}"
  fi
  ip -n "$NETNS_SERVER" link set lo up
  ip -n "$NETNS_SERVER" addr add "$NETNS_SERVER_ADDR/32" dev lo
  for ((i = 1; i <= k; i++)); do
    ns="$NETNS_PREFIX-h$i"
    # Interface names: at most 15 characters.
    host_if="${NETNS_PREFIX}h$i"
    srv_if="${NETNS_PREFIX}s$i"
    netns_add "$ns" "${NETNS_EHASH_HOST:-0}"
    if [ "${NETNS_TUNE:-0}" = 1 ]; then
      netns_sysctl "$ns" "${NETNS_CONNECT_SYSCTLS[@]}" "${NETNS_BUFFER_SYSCTLS[@]}"
    fi
    ip -n "$ns" link set lo up
    ip link add "$host_if" netns "$ns" type veth peer name "$srv_if" netns "$NETNS_SERVER"
    ip -n "$ns" addr add "10.77.$i.2/24" dev "$host_if"
    ip -n "$NETNS_SERVER" addr add "10.77.$i.1/24" dev "$srv_if"
    ip -n "$ns" link set "$host_if" up
    ip -n "$NETNS_SERVER" link set "$srv_if" up
    ip -n "$ns" route add default via "10.77.$i.1"
    if [ "${NETNS_RX_THREADS:-0}" = 1 ]; then
      NETNS_RX_SERVER_PIDS+=($(netns_rx_thread "$NETNS_SERVER" "$srv_if"))
      NETNS_RX_HOST_PIDS+=($(netns_rx_thread "$ns" "$host_if"))
    fi
    NETNS_HOSTS+=("$ns")
    NETNS_ADDRS+=("10.77.$i.2")
  done
}

# netns_loopback B makes one namespace, $NETNS_LOOPBACK, for a run whose
# server and clients both stay on one loopback, with a TCP established hash of
# B buckets (0: the machine's); NETNS_TUNE=1 gives it both the server's and
# the hosts' settings. Every socket of the run is looked up in that hash for
# every packet: the machine's table is sized at boot for all of it, and a
# million connections over loopback are two million sockets in it.
netns_loopback() {
  NETNS_LOOPBACK="$NETNS_PREFIX-lo"
  netns_add "$NETNS_LOOPBACK" "$1"
  if [ "${NETNS_TUNE:-0}" = 1 ]; then
    netns_sysctl "$NETNS_LOOPBACK" "${NETNS_LISTEN_SYSCTLS[@]}" "${NETNS_CONNECT_SYSCTLS[@]}" \
      "${NETNS_BUFFER_SYSCTLS[@]}"
  fi
  ip -n "$NETNS_LOOPBACK" link set lo up
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
