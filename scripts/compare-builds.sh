#!/usr/bin/env bash
# Two builds of ringws against each other and against uWebSockets, in one run:
# the peer matrix of ../shared/peers (run.sh) with the echo example of BEFORE
# and of AFTER side by side, round by round, the order of the peers rotating
# each round so that the machine's drift hits all alike. Prints per scenario
# the median figure of each peer, and each backend's AFTER/BEFORE ratio and
# each build's ratio to uWebSockets as the median of the ratios measured
# within each round (the figure to read on a shared, noisy machine).
#
# usage: scripts/compare-builds.sh BEFORE_ECHO AFTER_ECHO [ROUNDS=2] [SCENARIOS...]
#   BEFORE_ECHO, AFTER_ECHO: echo example binaries (cargo build --release -p
#   ringws --example echo, in two checkouts)
#   scenarios: tput-CONNS-BYTES, wss-CONNS-BYTES, idle-CONNS (default: the
#   matrix of compare.sh)
# env: PEERS_DIR (default ../shared/peers from the project root); OUT (raw
# lines; default target/compare/builds-DATE.txt)
set -uo pipefail
cd "$(dirname "$0")/.."
BEFORE=$(readlink -f "${1:?BEFORE_ECHO}")
AFTER=$(readlink -f "${2:?AFTER_ECHO}")
shift 2
ROUNDS=${1:-2}
shift || true
PEERS_DIR=${PEERS_DIR:-../shared/peers}
if [ ! -x "$PEERS_DIR/run.sh" ]; then
  echo "compare-builds: no peer matrix at $PEERS_DIR (set PEERS_DIR); skipped"
  exit 0
fi
for bin in "$BEFORE" "$AFTER"; do
  [ -x "$bin" ] || { echo "compare-builds: $bin is not an executable" >&2; exit 2; }
done
SCEN=("$@")
[ ${#SCEN[@]} -gt 0 ] || SCEN=(tput-100-20 tput-10000-20 tput-100-16384 tput-10000-16384 wss-100-20 wss-100-16384 idle-10000)
PEERS=(uws before-io_uring after-io_uring before-epoll after-epoll floor)
mkdir -p target/compare
OUT=${OUT:-target/compare/builds-$(date -u +%Y%m%dT%H%M%SZ).txt}
: > "$OUT"
for r in $(seq "$ROUNDS"); do
  for s in "${SCEN[@]}"; do
    for i in "${!PEERS[@]}"; do
      p=${PEERS[$(((i + r) % ${#PEERS[@]}))]}
      [ "$p" = floor ] && [[ $s == idle-* || $s == wss-* ]] && continue
      case $p in
        before-*) build=before echo=$BEFORE peer=ringws-${p#before-} ;;
        after-*) build=after echo=$AFTER peer=ringws-${p#after-} ;;
        *) build=peer echo=$AFTER peer=$p ;;
      esac
      RINGWS_ECHO=$echo "$PEERS_DIR/run.sh" "$peer" "$s" |
        sed "s/^/round=$r build=$build /" | tee -a "$OUT" >&2
    done
  done
done
python3 - "$OUT" "${SCEN[@]}" <<'PY'
import collections, statistics as st, sys
rows = [dict(kv.split('=', 1) for kv in line.split() if '=' in kv)
        for line in open(sys.argv[1]) if line.strip()]
val = collections.defaultdict(list)        # (scenario, who) -> figures
rounds = collections.defaultdict(dict)     # (scenario, round) -> who -> figure
for r in rows:
    key = 'bytes_per_conn' if r['scenario'].startswith('idle') else 'msgs_per_server_cpu_s'
    try:
        v = float(r[key])
    except (KeyError, ValueError):
        continue
    who = r['peer'] if r['build'] == 'peer' else r['build'] + '-' + r['peer'].removeprefix('ringws-')
    val[(r['scenario'], who)].append(v)
    rounds[(r['scenario'], r['round'])][who] = v

def med(s, who):
    return '%.0f' % st.median(val[(s, who)]) if val.get((s, who)) else 'n/a'

def ratio(s, a, b):
    rs = [d[a] / d[b] for (sc, _), d in rounds.items() if sc == s and a in d and b in d and d[b]]
    return 'x%.2f' % st.median(rs) if rs else 'n/a'

for backend in ('io_uring', 'epoll'):
    b, a = 'before-' + backend, 'after-' + backend
    print(f'ringws {backend}: before and after, with uWebSockets and the floor')
    print('%-17s %8s %8s %8s %8s %12s %12s %12s' % (
        'scenario', 'floor', 'uws', 'before', 'after', 'after/before', 'before/uws', 'after/uws'))
    for s in sys.argv[2:]:
        print('%-17s %8s %8s %8s %8s %12s %12s %12s' % (
            s, med(s, 'floor'), med(s, 'uws'), med(s, b), med(s, a),
            ratio(s, a, b), ratio(s, b, 'uws'), ratio(s, a, 'uws')))
    print()
print('msgs per server-CPU-second (idle: bytes per connection, lower is better); medians;')
print('ratios: the median of the ratios measured within each round')
PY
echo "raw lines: $OUT" >&2
