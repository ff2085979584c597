#!/usr/bin/env bash
# RFC 6455 conformance: runs the Autobahn|Testsuite fuzzing client against ringws's echo example.
#
# usage: scripts/autobahn.sh [--backend epoll|io_uring|auto] [--tls] [--cases JSON] [--outdir DIR]
#                            [--compare | --update-expected] [--expected FILE]
#   --backend B         backend of the echo example (default auto)
#   --tls               run over wss://: the echo example serves a self-signed certificate
#                       made for this run (openssl), and the fuzzing client connects with TLS
#   --deflate MODE      permessage-deflate of the echo example: off (default), shared,
#                       dedicated[:BITS]; with it, 12.* and 13.* are no longer excluded
#   --cases JSON        JSON list of case patterns (default: every case of sections 1-10,
#                       '["1.*","2.*",...,"10.*"]'); 12.* and 13.* (permessage-deflate) are
#                       excluded unless AUTOBAHN_EXCLUDE says otherwise (e.g. '[]')
#   --outdir DIR        report dir (default target/autobahn-report): index.html, index.json,
#                       summary.txt (per-case "case behavior behaviorClose"), server.log, wstest.log
#   --compare           also fail when summary.txt differs from the expected file (for the
#                       selected cases only, when --cases is given)
#   --update-expected   write summary.txt to the expected file (needs the default cases)
#   --expected FILE     the expected file (default tests/autobahn/expected-1-10.txt)
# env: AUTOBAHN_SERVER_CMD  run this server instead of the echo example (no build): a shell
#                           command with {port} (and optionally {backend}) substituted, e.g.
#                           AUTOBAHN_SERVER_CMD='node /tmp/echo.js {port}'; it must listen on 127.0.0.1
#      AUTOBAHN_EXCLUDE     JSON list of excluded case patterns (default '["12.*","13.*"]')
#      AUTOBAHN_TIMEOUT     seconds for the whole fuzzing run (default 900)
#      AUTOBAHN_VENV        wstest venv (default target/autobahn-venv, made by scripts/autobahn/setup.sh)
#
# The server is started on 127.0.0.1 on a free random port below 32768 and killed on exit.
# Prints one count per behavior (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED, ...)
# and per close behavior, then "autobahn: N passed, M failed". Exits 1 when a case's behavior
# is anything but OK or INFORMATIONAL (NON-STRICT fails too), or its close behavior is anything
# but OK or INFORMATIONAL, or a planned case has no result, or (--compare) the summary differs.
# Exits 2 on a usage, build, wstest-setup or server-start error.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEFAULT_CASES='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*"]'
usage() { sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }

BACKEND=auto CASES=$DEFAULT_CASES OUTDIR=$REPO/target/autobahn-report DEFLATE=off
EXPECTED=$REPO/tests/autobahn/expected-1-10.txt COMPARE=0 UPDATE=0 TLS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --backend|--cases|--outdir|--expected|--deflate) [ $# -ge 2 ] || usage ;;&
    --deflate) DEFLATE=$2; shift ;;
    --backend) BACKEND=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --outdir) OUTDIR=$2; shift ;;
    --expected) EXPECTED=$2; shift ;;
    --compare) COMPARE=1 ;;
    --tls) TLS=1 ;;
    --update-expected) UPDATE=1 ;;
    -h|--help) usage ;;
    *) echo "autobahn: unknown argument $1" >&2; usage ;;
  esac
  shift
done
case "$BACKEND" in epoll|io_uring|auto) ;; *) echo "autobahn: --backend must be epoll, io_uring or auto" >&2; exit 2 ;; esac
[ "$COMPARE$UPDATE" != 11 ] || { echo "autobahn: use either --compare or --update-expected" >&2; exit 2; }
# Without permessage-deflate the server declines it, so 12.* and 13.* cannot pass.
if [ "$DEFLATE" = off ]; then
  export AUTOBAHN_EXCLUDE=${AUTOBAHN_EXCLUDE:-'["12.*","13.*"]'}
else
  export AUTOBAHN_EXCLUDE=${AUTOBAHN_EXCLUDE:-'[]'}
fi
# validate the case list now (not after a release build); --update-expected needs the default set
python3 - "$CASES" "$DEFAULT_CASES" "$UPDATE" <<'CHECK' || exit 2
import json, sys
try:
    cases = json.loads(sys.argv[1])
    assert isinstance(cases, list) and all(isinstance(c, str) for c in cases)
except (ValueError, AssertionError):
    sys.exit('autobahn: --cases must be a JSON list of strings, e.g. \'["1.*","2.*"]\'')
if sys.argv[3] == '1' and cases != json.loads(sys.argv[2]):
    sys.exit('autobahn: --update-expected records the default case set; drop --cases')
CHECK
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || exit 2
case "$EXPECTED" in /*) ;; *) EXPECTED=$PWD/$EXPECTED ;; esac
SERVER_LOG=$OUTDIR/server.log SUMMARY=$OUTDIR/summary.txt
rm -f "$SUMMARY"

# --- the server -----------------------------------------------------------------------------
if [ -n "${AUTOBAHN_SERVER_CMD:-}" ]; then
  echo "autobahn: server from AUTOBAHN_SERVER_CMD: $AUTOBAHN_SERVER_CMD"
else
  echo "autobahn: building the echo example (release)"
  (cd "$REPO" && cargo build --release -p ringws --example echo) || { echo "autobahn: build failed" >&2; exit 2; }
  ECHO_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/echo
  case "$ECHO_BIN" in /*) ;; *) ECHO_BIN=$REPO/$ECHO_BIN ;; esac
fi

# --tls: a certificate for this run only (nothing that expires is committed)
TLS_ARGS=() SCHEME=ws
if [ "$TLS" = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$OUTDIR/key.pem" -out "$OUTDIR/cert.pem" 2> "$OUTDIR/openssl.log" \
    || { echo "autobahn: openssl could not make a certificate, see $OUTDIR/openssl.log" >&2; exit 2; }
  TLS_ARGS=(--tls-cert "$OUTDIR/cert.pem" --tls-key "$OUTDIR/key.pem") SCHEME=wss
fi

SERVER_PID=
stop_server() {    # the server runs in its own process group (setsid): end that group only
  [ -n "$SERVER_PID" ] || return 0
  local target=$SERVER_PID
  [ "$(ps -o pgid= -p "$SERVER_PID" 2>/dev/null | tr -d ' ')" = "$SERVER_PID" ] && target=-$SERVER_PID
  kill -TERM -- "$target" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "$target" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}
RUN_PID=
# shellcheck disable=SC2317  # (invoked by the traps below)
on_signal() {      # stop the fuzzing run first (run.sh stops wstest), then exit: the EXIT trap stops the server
  [ -z "$RUN_PID" ] || { kill -TERM "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; }
  exit "$1"
}
trap stop_server EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

free_port() {      # a random port in 10000-32767 (below the ephemeral range) that binds on loopback
  python3 - <<'PORT'
import random, socket
for _ in range(200):
    port = random.randint(10000, 32767)
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            continue
    print(port)
    break
else:
    raise SystemExit('autobahn: no free port found')
PORT
}

# start, then wait (at most 30 s) until the port accepts TCP connections; a port taken between
# the check and the server's bind makes the server exit, so a fresh port is tried (3 attempts)
PORT=
for attempt in 1 2 3; do
  p=$(free_port) || exit 2
  if [ -n "${AUTOBAHN_SERVER_CMD:-}" ]; then
    cmd=${AUTOBAHN_SERVER_CMD//\{port\}/$p}; cmd=${cmd//\{backend\}/$BACKEND}
    setsid bash -c "$cmd" > "$SERVER_LOG" 2>&1 < /dev/null &
  else
    setsid "$ECHO_BIN" --host 127.0.0.1 --port "$p" --workers 1 --backend "$BACKEND" --deflate "$DEFLATE" \
      "${TLS_ARGS[@]}" > "$SERVER_LOG" 2>&1 < /dev/null &
  fi
  SERVER_PID=$!
  deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ] && kill -0 "$SERVER_PID" 2>/dev/null; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then PORT=$p; break; fi
    sleep 0.1
  done
  [ -z "$PORT" ] || break
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "autobahn: server did not accept connections on 127.0.0.1:$p within 30 s" >&2
  else
    echo "autobahn: server exited before listening on 127.0.0.1:$p (attempt $attempt)" >&2
  fi
  tail -n 20 "$SERVER_LOG" >&2
  stop_server
done
[ -n "$PORT" ] || { echo "autobahn: could not start the server, see $SERVER_LOG" >&2; exit 2; }
echo "autobahn: server pid $SERVER_PID listening on $SCHEME://127.0.0.1:$PORT (backend $BACKEND, log $SERVER_LOG)"

# --- the fuzzing run and the verdict ---------------------------------------------------------
# in the background, so that a signal interrupts `wait` and reaches on_signal at once
bash "$REPO/scripts/autobahn/run.sh" --summary "$SUMMARY" "$SCHEME://127.0.0.1:$PORT" "$CASES" "$OUTDIR" &
RUN_PID=$!
wait "$RUN_PID"
rc=$?
RUN_PID=
kill -0 "$SERVER_PID" 2>/dev/null || { echo "autobahn: the server died during the run, see $SERVER_LOG"; rc=1; }
stop_server
[ -f "$SUMMARY" ] || { echo "autobahn: no results (see $OUTDIR/wstest.log)"; exit 1; }

if [ "$COMPARE" = 1 ]; then
  if [ ! -f "$EXPECTED" ]; then
    echo "autobahn: compare: $EXPECTED does not exist (make it with --update-expected)"
    rc=1
  else
    # the expected lines of the selected cases, matched as wstest matches patterns:
    # with '*', a regex ('.' literal, '*' any) anchored at the start; without, the exact id
    python3 - "$EXPECTED" "$CASES" "$AUTOBAHN_EXCLUDE" > "$OUTDIR/expected-selected.txt" <<'SELECT' || exit 2
import json, re, sys
path, cases, exclude = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def matcher(patterns):
    rx = [re.compile(p.replace('.', r'\.').replace('*', '.*')) for p in patterns if '*' in p]
    exact = {p for p in patterns if '*' not in p}
    return lambda c: c in exact or any(r.match(c) for r in rx)
wanted, unwanted = matcher(cases), matcher(exclude)
for line in open(path):
    case = line.split(' ', 1)[0]
    if line.strip() and wanted(case) and not unwanted(case):
        sys.stdout.write(line)
SELECT
    if diff -u --label "expected ($EXPECTED)" --label "actual ($SUMMARY)" \
         "$OUTDIR/expected-selected.txt" "$SUMMARY" > "$OUTDIR/compare.diff"; then
      echo "autobahn: compare: all $(wc -l < "$SUMMARY") case results match $EXPECTED"
    else
      echo "autobahn: compare: results differ from $EXPECTED ('-' expected, '+' actual):"
      head -n 80 "$OUTDIR/compare.diff"
      rc=1
    fi
  fi
fi
if [ "$UPDATE" = 1 ]; then
  mkdir -p "$(dirname "$EXPECTED")" && cp "$SUMMARY" "$EXPECTED" || exit 2
  echo "autobahn: wrote $(wc -l < "$EXPECTED") case results to $EXPECTED"
fi
exit "$rc"
