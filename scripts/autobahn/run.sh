#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (RFC 6455 conformance) against a WebSocket
# echo server that is already listening, then prints per-result counts from the report.
# Usually called by scripts/autobahn.sh, which also builds and starts the server.
#
# usage: scripts/autobahn/run.sh [--allow-non-strict] [--allow-unimplemented] [--summary FILE]
#                                WS_URL [CASES_JSON] [OUTDIR]
#   WS_URL       e.g. ws://127.0.0.1:9001
#   CASES_JSON   JSON list of case patterns (default '["*"]'; "1.*" matches every 1.x.y)
#   OUTDIR       report dir (default target/autobahn-report in the repo): index.html,
#                index.json, per-case .json/.html, fuzzingclient.json (the spec), wstest.log
#   --summary FILE         also write the normalized per-case summary to FILE: one line
#                          "case behavior behaviorClose" per case, in case order (1.1.2 < 1.1.10)
#   --allow-non-strict     NON-STRICT counts as passed (default: failed)
#   --allow-unimplemented  UNIMPLEMENTED counts as passed (default: failed)
# env: AUTOBAHN_EXCLUDE  JSON list of case patterns to skip (default '[]')
#      AUTOBAHN_VENV     venv made by setup.sh (default target/autobahn-venv; set up if needed)
#      AUTOBAHN_AGENT    server name in the report (default ringws)
#      AUTOBAHN_TIMEOUT  seconds for the whole wstest run (default 900)
#
# Verdict per case: passed when its behavior is OK or INFORMATIONAL (plus what the flags
# allow) and its close behavior is OK or INFORMATIONAL; anything else, and every planned
# case without a result (server crash, timeout), is failed. Output: one count line per
# behavior and a close-behavior line, the failed cases, then as last line
# "autobahn: N passed, M failed". Exit 0 when M = 0, 1 when M > 0, 2 on a usage/setup error.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
usage() { sed -n '6,7p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }

ALLOW_NON_STRICT=0 ALLOW_UNIMPLEMENTED=0 SUMMARY=
while [ $# -gt 0 ]; do
  case "$1" in
    --allow-non-strict) ALLOW_NON_STRICT=1 ;;
    --allow-unimplemented) ALLOW_UNIMPLEMENTED=1 ;;
    --summary) [ $# -ge 2 ] || usage; SUMMARY=$2; shift ;;
    -h|--help) usage ;;
    -*) echo "autobahn: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
  shift
done
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
URL=$1
CASES=${2:-'["*"]'}
OUT=${3:-$REPO/target/autobahn-report}
VENV=${AUTOBAHN_VENV:-$REPO/target/autobahn-venv}

bash "$REPO/scripts/autobahn/setup.sh" "$VENV" || { echo "autobahn: wstest setup failed" >&2; exit 2; }
PY="$VENV/bin/python"
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/index.json"                  # never summarize a stale report

# The fuzzingclient spec. failByDrop=false: a server that drops the TCP connection where a
# close handshake is preferred is judged by the close behavior, not failed outright.
"$PY" - "$URL" "$CASES" "${AUTOBAHN_EXCLUDE:-[]}" "$OUT" "${AUTOBAHN_AGENT:-ringws}" <<'SPEC' || exit 2
import json, os, sys
url, cases, exclude, out, agent = sys.argv[1:]
try:
    cases, exclude = json.loads(cases), json.loads(exclude)
except ValueError as e:
    sys.exit('autobahn: cases and AUTOBAHN_EXCLUDE must be JSON lists of strings: %s' % e)
if not all(isinstance(l, list) and all(isinstance(c, str) for c in l) for l in (cases, exclude)):
    sys.exit('autobahn: cases and AUTOBAHN_EXCLUDE must be JSON lists of strings')
spec = {"options": {"failByDrop": False}, "outdir": out,
        "servers": [{"agent": agent, "url": url}],
        "cases": cases, "exclude-cases": exclude, "exclude-agent-cases": {}}
json.dump(spec, open(os.path.join(out, "fuzzingclient.json"), "w"), indent=2)
SPEC

echo "autobahn: fuzzing $URL with cases $CASES (excluded: ${AUTOBAHN_EXCLUDE:-[]}), report in $OUT"
start=$SECONDS
# wstest runs in the background so that a TERM/INT sent to this script stops it at once
# (`timeout` puts wstest in a process group of its own, where terminal signals don't reach)
timeout "${AUTOBAHN_TIMEOUT:-900}" "$VENV/bin/wstest" -m fuzzingclient -s "$OUT/fuzzingclient.json" \
  > "$OUT/wstest.log" 2>&1 &
WSTEST_PID=$!
stop_wstest() { kill -TERM "$WSTEST_PID" 2>/dev/null; wait "$WSTEST_PID" 2>/dev/null; exit "$1"; }
trap 'stop_wstest 130' INT
trap 'stop_wstest 143' TERM
wait "$WSTEST_PID"
rc=$?
trap - INT TERM

"$PY" - "$OUT" "$ALLOW_NON_STRICT" "$ALLOW_UNIMPLEMENTED" "$rc" "$((SECONDS - start))" "$SUMMARY" <<'VERDICT'
import collections, json, os, re, sys
out, allow_ns, allow_un, rc, secs, summary = sys.argv[1:]
rc = int(rc)
log = open(os.path.join(out, 'wstest.log'), errors='replace').read()
try:
    res = {c: r for agent in json.load(open(os.path.join(out, 'index.json'))).values()
           for c, r in agent.items()}
except (OSError, ValueError):
    res = {}
m = re.search(r'will run (\d+) test cases', log)
planned = int(m.group(1)) if m else max(len(res), 1)   # no plan in the log: count as 1 missing
key = lambda c: tuple(int(x) for x in c.split('.'))
cases = sorted(res, key=key)

PASS = {'OK', 'INFORMATIONAL'} | ({'NON-STRICT'} if allow_ns == '1' else set()) \
       | ({'UNIMPLEMENTED'} if allow_un == '1' else set())
PASS_CLOSE = {'OK', 'INFORMATIONAL'}
ORDER = ['OK', 'NON-STRICT', 'INFORMATIONAL', 'UNIMPLEMENTED', 'FAILED']

beh = collections.Counter(r['behavior'] for r in res.values())
for b in ORDER + sorted(set(beh) - set(ORDER)):
    print('%-15s %d' % (b + ':', beh[b]))
close = collections.Counter(r['behaviorClose'] for r in res.values())
print('close:          ' + (', '.join('%s %d' % kv for kv in sorted(close.items())) or 'none'))

failed = [c for c in cases if res[c]['behavior'] not in PASS or res[c]['behaviorClose'] not in PASS_CLOSE]
missing = max(planned - len(res), 0)
if failed:
    shown = ['%s(%s/%s)' % (c, res[c]['behavior'], res[c]['behaviorClose']) for c in failed[:40]]
    print('failed cases: ' + ' '.join(shown) + (' ...' if len(failed) > 40 else ''))
if missing or rc:
    print('wstest exit code %d (124 = timeout); %d planned case(s) without result, counted as failed; see %s'
          % (rc, missing, os.path.join(out, 'wstest.log')))
if summary:
    with open(summary, 'w') as f:
        f.writelines('%s %s %s\n' % (c, res[c]['behavior'], res[c]['behaviorClose']) for c in cases)
print('report: %s (%ss)' % (os.path.join(out, 'index.html'), secs))
print('autobahn: %d passed, %d failed' % (len(res) - len(failed), len(failed) + missing))
sys.exit(1 if failed or missing else 0)
VERDICT
