#!/usr/bin/env bash
# Kernel settings for a million-connection run on one machine (server and load
# generator together, over loopback). Needs root. Prints every value it changes
# (old -> new) and leaves the others alone; `--dry-run` only prints.
#
# Per process, the fd limit (ulimit -n) is also needed: raise it in the shell that
# starts the server and the load generator (`ulimit -n 1048576`, within the hard
# limit and fs.nr_open). Where the hard limit cannot be raised, use the load
# generator's --procs and the io_uring backend (direct descriptors do not count
# against the fd limit).
set -euo pipefail
dry=0
[ "${1:-}" = --dry-run ] && dry=1

# name, value, why
settings=(
  "net.ipv4.ip_local_port_range|1024 65535|ephemeral ports per (source, destination) pair: ~64k instead of ~28k"
  "net.core.somaxconn|65535|listen backlog ceiling, for connection bursts"
  "net.ipv4.tcp_max_syn_backlog|65535|half-open connections during ramps"
  "net.core.netdev_max_backlog|65535|loopback packets queued per CPU"
  "fs.file-max|4194304|system-wide open files"
  "fs.nr_open|4194304|ceiling for a process's fd limit"
  "net.ipv4.tcp_mem|3145728 4194304 6291456|TCP memory in 4 KiB pages (12/16/24 GiB): a million sockets' buffers"
  "net.ipv4.tcp_rmem|4096 16384 4194304|smaller default receive buffer per socket"
  "net.ipv4.tcp_wmem|4096 16384 4194304|smaller default send buffer per socket"
  "net.ipv4.tcp_tw_reuse|1|reuse TIME_WAIT ports for new outgoing connections"
  "net.ipv4.tcp_fin_timeout|10|release closed connections sooner"
  "net.netfilter.nf_conntrack_max|2097152|connection tracking table (only if the module is loaded)"
)

changed=0
for entry in "${settings[@]}"; do
  IFS='|' read -r name value why <<<"$entry"
  path=/proc/sys/${name//./\/}
  [ -e "$path" ] || { echo "skip    $name (not on this kernel)"; continue; }
  old=$(tr -s '\t ' ' ' <"$path" | sed 's/ *$//')
  if [ "$old" = "$value" ]; then
    echo "keep    $name = $value"
    continue
  fi
  echo "set     $name: $old -> $value   # $why"
  if [ "$dry" = 0 ]; then
    sysctl -q -w "$name=$value" >/dev/null || echo "        (refused: $name)"
  fi
  changed=$((changed + 1))
done
echo "tune: $changed setting(s) $([ "$dry" = 1 ] && echo 'would change' || echo changed); fd limit here: soft $(ulimit -Sn), hard $(ulimit -Hn)"
