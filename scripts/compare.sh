#!/usr/bin/env bash
# ringws against uWebSockets, side by side in one run: builds the echo example
# and runs the peer matrix of ../shared/peers/compare.sh (uWebSockets' own echo
# server and load generator, prebuilt there) when that directory exists; says so
# and exits 0 otherwise (the peers are not part of this repository).
#
# usage: scripts/compare.sh [ROUNDS=2] [SCENARIOS...]
#   scenarios: tput-CONNS-BYTES, idle-CONNS (default: the whole matrix)
# After the matrix's table of medians it prints every round: each peer's figure
# and server CPU, and each ringws backend's ratio to uWebSockets measured in
# the same round (minutes apart, not a median against a median), so that a
# ratio can be read against the spread of the rounds; a round without a figure
# says why (load_test's ramp not finished within run.sh's bound, say).
# env: PEERS_DIR  where the peers live (default ../shared/peers from the project root)
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${PEERS_DIR:-../shared/peers}
if [ ! -x "$peers/compare.sh" ]; then
  echo "compare: no peer matrix at $peers (set PEERS_DIR); skipped"
  exit 0
fi
cargo build --release --locked -p ringws --example echo
echo "compare: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
# The raw lines stay (the matrix prints where) for reading later.
mkdir -p target/compare
raw=target/compare/raw-$(date -u +%Y%m%dT%H%M%SZ).txt
OUT=$raw RINGWS_ECHO=target/release/examples/echo "$peers/compare.sh" "$@"
# No rounds run (ROUNDS=0): nothing to list.
[ -s "$raw" ] || exit 0
python3 - "$raw" <<'PY'
import sys, collections
rows = [dict(kv.split('=', 1) for kv in l.split() if '=' in kv) for l in open(sys.argv[1]) if l.strip()]
peers = ('uws', 'ringws-io_uring', 'ringws-epoll')
# Rounds follow each other in the raw lines: the n-th line of a (scenario, peer)
# belongs to round n.
rounds = collections.defaultdict(dict)
seen = collections.Counter()
for r in rows:
    key = (r.get('scenario'), r.get('peer'))
    seen[key] += 1
    rounds[(key[0], seen[key])][key[1]] = r
def figure(r):
    if r is None:
        return None, 'not run'
    idle = r['scenario'].startswith('idle')
    try:
        v = float(r['bytes_per_conn' if idle else 'msgs_per_server_cpu_s'])
    except (KeyError, ValueError):
        why = 'upgraded %s of %s' % (r.get('upgraded', '?'), r.get('conns', '?')) if not idle else 'no figure'
        return None, why
    return v, ('%.0f B' % v if idle else '%.0f @%s' % (v, r.get('server_cpu', '?')))
print('\nround by round (msgs per server-CPU-s @ server CPU; idle: bytes/conn), ratios within the round:')
order = list(dict.fromkeys(r.get('scenario') for r in rows))
for (scenario, n) in sorted(rounds, key=lambda k: (order.index(k[0]), k[1])):
    cells = {p: figure(rounds[(scenario, n)].get(p)) for p in peers}
    base = cells['uws'][0]
    out = []
    for p in peers:
        v, text = cells[p]
        if p != 'uws' and v is not None and base:
            text += ' (x%.2f)' % (v / base)
        out.append('%s %s' % (p, text))
    print('  %-18s round %d: %s' % (scenario, n, ' | '.join(out)))
PY
