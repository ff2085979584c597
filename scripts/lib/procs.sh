# shellcheck shell=bash
# Shared by scripts/million.sh and scripts/soak.sh, sourced after `cd` to the
# project root with the script's name as argument (for messages).
prog=$1

die() { echo "$prog: $*" >&2; exit 2; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_num() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }
positive() { is_uint "$1" && [ "$1" -ge 1 ]; }

# Stops a process we started: TERM, up to $2 seconds (default 10), then KILL.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Resident memory of a process in KiB (0 once it is gone).
rss_kib() { local v; v=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true); echo "${v:-0}"; }
