#!/usr/bin/env bash
# wss:// in a real browser: headless Chromium (Debian's `chromium`, installed
# here when missing, with libnss3-tools for certutil) against the echo example,
# on each backend, over HTTP/1.1 and over HTTP/2.
#
# usage: scripts/browser.sh [--backend epoll|io_uring] [--http1|--http2] [--release]
#   --backend B   one backend only (default: epoll, then io_uring)
#   --http1       the HTTP/1.1 run only; --http2 the HTTP/2 run only (default: both)
#   --release     the release build of the echo example (default: debug)
# env: BROWSER_TIMEOUT  seconds one run's page may take to report (default 120)
#
# For the run, a throwaway test CA and a leaf for 127.0.0.1 and localhost signed
# by it (openssl, under target/browser/). The CA is imported into a fresh NSS
# db that Chromium reads as its trust store (HOME points into target/browser/),
# so the browser verifies the chain as it would a real one: no flag that skips
# or pins the verification. Per backend and run: the echo example (with
# --metrics) on a port the kernel picks (--port 0, read back from its
# "listening on" line), the report server (scripts/browser/serve.py, also on a
# kernel-picked port), and Chromium with a fresh profile, opening the page
# (scripts/browser/page.html), which echoes 1 MiB of text (1- to 4-byte UTF-8)
# and 1 MiB of pseudo-random binary over wss://, closes with 4321
# "browser done", and reports what it saw by POST to serve.py.
#   http1: serve.py serves the page over http; it opens wss://127.0.0.1:PORT/
#     on a connection of its own, which speaks HTTP/1.1 (Upgrade, 101).
#   http2: the echo example serves the page itself (--page) over https, so
#     Chromium negotiates h2 by ALPN and receives SETTINGS_ENABLE_CONNECT_PROTOCOL;
#     the page opens wss:// + location.host (its own origin), and Chromium
#     carries the WebSocket on that HTTP/2 connection (extended CONNECT,
#     RFC 8441).
# Chromium runs with its profile's network prediction off (no speculative
# preconnects, see run_one), and writes a net log (netlog.json) that the checks
# read as Chromium's side of the story.
# Passes when both echoes are byte-identical, and the close event says 4321,
# "browser done" (the engine mirrors the peer's close) and wasClean; the server
# is still running, on the backend asked for; and its /metrics, scraped once
# after the report (curl --http1.1 with the CA: a connection of its own, counted
# in ringws_accepted, hence the "- 1" below), say:
#   http1: ringws_upgraded 1, ringws_http2_websockets 0, ringws_http2_connections 0,
#     ringws_accepted - 1 = 1 (the WebSocket's connection, and no other);
#     the net log: one TCP connection to the server, ALPN http/1.1, no HTTP/2;
#   http2: ringws_upgraded 1 and ringws_http2_websockets 1 (the one WebSocket
#     there was rode an HTTP/2 stream: none upgraded over HTTP/1.1), and
#     ringws_accepted - 1 = ringws_http2_connections = 1 (Chromium made one TCP
#     connection, the page's, and the WebSocket opened none of its own); the
#     page says it arrived over h2 from that origin; and the net log agrees:
#     one TCP connection to the server (ALPN h2), one HTTP/2 session, on which
#     went both GET / and the extended CONNECT (:protocol websocket).
# On a failure: the page's report, the metrics, the server's, Chromium's and
# the report server's log tails. Every process started is stopped by PID (its
# process group) on exit; every wait is bounded.
# Exits 0 when every run passed, 1 when one failed, 2 on a setup error.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '6,10p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }

BACKENDS=(epoll io_uring) MODES=(http1 http2) PROFILE=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) [ $# -ge 2 ] || usage; BACKENDS=("$2"); shift ;;
    --http1) MODES=(http1) ;;
    --http2) MODES=(http2) ;;
    --release) PROFILE=release ;;
    -h|--help) usage ;;
    *) echo "browser: unknown argument $1" >&2; usage ;;
  esac
  shift
done
for b in "${BACKENDS[@]}"; do
  case "$b" in epoll|io_uring) ;; *) echo "browser: --backend must be epoll or io_uring" >&2; exit 2 ;; esac
done
TIMEOUT=${BROWSER_TIMEOUT:-120}
CODE=4321 REASON="browser done"
OUT=$REPO/target/browser
started=$SECONDS

# --- processes: each in its own process group (setsid), stopped by that group --
PIDS=()
stop_group() {     # TERM the group led by $1, wait at most 5 s, then KILL it
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_group "$pid"; done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- setup: packages, the build, the CA, the NSS db ----------------------------
command -v chromium >/dev/null && command -v certutil >/dev/null \
  || bash "$REPO/scripts/apt-install.sh" chromium libnss3-tools \
  || { echo "browser: could not install chromium and libnss3-tools" >&2; exit 2; }
echo "browser: $(chromium --version 2>/dev/null)"

echo "browser: building the echo example ($PROFILE)"
release_flag=()
[ "$PROFILE" = release ] && release_flag=(--release)
(cd "$REPO" && cargo build "${release_flag[@]}" -p ringws --example echo) \
  || { echo "browser: build failed" >&2; exit 2; }
ECHO_BIN=${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE/examples/echo
case "$ECHO_BIN" in /*) ;; *) ECHO_BIN=$REPO/$ECHO_BIN ;; esac

rm -rf "$OUT"
mkdir -p "$OUT/ca" "$OUT/home/.pki/nssdb" || exit 2
# Two days of validity: nothing here outlives the run. The leaf carries what
# Chromium requires of a server certificate (SAN, serverAuth); the CA is
# marked one (basicConstraints, keyCertSign) so the chain verifies.
(
  cd "$OUT/ca" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=ringws browser test CA" -keyout ca.key -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=127.0.0.1 -keyout leaf.key -out leaf.csr &&
  printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost > leaf.ext &&
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile leaf.ext -out leaf.pem
) > "$OUT/ca/openssl.log" 2>&1 \
  || { echo "browser: openssl could not make the CA and leaf, see $OUT/ca/openssl.log" >&2; exit 2; }
# Chromium on Linux reads its user trust store from $HOME/.pki/nssdb.
NSSDB=sql:$OUT/home/.pki/nssdb
{ certutil -N -d "$NSSDB" --empty-password &&
  certutil -A -d "$NSSDB" -n "ringws browser test CA" -t C,, -i "$OUT/ca/ca.pem"; } \
  > "$OUT/ca/certutil.log" 2>&1 \
  || { echo "browser: certutil could not make the NSS db, see $OUT/ca/certutil.log" >&2; exit 2; }

# --- one backend -----------------------------------------------------------------
fail() {           # the verdict and every log tail, then exit 1 (the EXIT trap stops the processes)
  local dir=$1; shift
  echo "browser: FAIL ($BACKEND, $MODE): $*"
  [ -f "$dir/result.json" ] && { echo "--- the page's report"; cat "$dir/result.json"; echo; }
  [ -f "$dir/metrics.txt" ] && { echo "--- the server's counters"; grep -E '^ringws_(accepted|upgraded|http2_[a-z_]+)_total' "$dir/metrics.txt"; }
  local log
  for log in server.log chromium.log http.log; do
    # (Chromium's complaints about the absent D-Bus are no part of it)
    [ -f "$dir/$log" ] && { echo "--- $log (last 20 lines)"; grep -v 'ERROR:dbus/' "$dir/$log" | tail -n 20; }
  done
  exit 1
}

# waits (at most $1 s) for the command in $3... to succeed while the process $2 runs
poll() {
  local deadline=$((SECONDS + $1)) pid=$2; shift 2
  while [ $SECONDS -lt $deadline ]; do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || { "$@"; return; }   # it exited: one last look
    sleep 0.1
  done
  return 1
}

run_one() {
  local dir=$OUT/$BACKEND/$MODE t0=$SECONDS
  mkdir -p "$dir"
  local page_flag=()
  [ "$MODE" = http2 ] && page_flag=(--page "$REPO/scripts/browser/page.html")
  setsid "$ECHO_BIN" --host 127.0.0.1 --port 0 --workers 1 --backend "$BACKEND" --metrics \
    "${page_flag[@]}" --tls-cert "$OUT/ca/leaf.pem" --tls-key "$OUT/ca/leaf.key" \
    > "$dir/server.log" 2>&1 < /dev/null &
  local server_pid=$!
  PIDS+=("$server_pid")
  # "echo: listening on wss://127.0.0.1:PORT with 1 workers (BACKEND backend)"
  poll 30 "$server_pid" grep -q '^echo: listening on ' "$dir/server.log" \
    || fail "$dir" "the echo server did not report listening within 30 s"
  local line port
  line=$(grep -m1 '^echo: listening on ' "$dir/server.log")
  port=$(sed -n 's|^echo: listening on wss://127\.0\.0\.1:\([0-9]*\) .*|\1|p' <<<"$line")
  [ -n "$port" ] || fail "$dir" "unexpected listening line: $line"
  # an explicit backend does not fall back; this says so if that ever changes
  [[ "$line" == *"($BACKEND backend)" ]] || fail "$dir" "asked for $BACKEND, the server says: $line"

  setsid python3 "$REPO/scripts/browser/serve.py" "$REPO/scripts/browser/page.html" \
    "$dir/http.port" "$dir/result.json" > "$dir/http.log" 2>&1 < /dev/null &
  local http_pid=$!
  PIDS+=("$http_pid")
  poll 10 "$http_pid" test -s "$dir/http.port" || fail "$dir" "the report server did not start within 10 s"
  local http_port query url
  http_port=$(cat "$dir/http.port")
  query="code=$CODE&reason=${REASON// /%20}&timeout_ms=$((TIMEOUT > 20 ? (TIMEOUT - 10) * 1000 : TIMEOUT * 500))"
  if [ "$MODE" = http2 ]; then
    # the page from the echo server; the WebSocket to its origin (no ?ws=)
    url="https://127.0.0.1:$port/?$query&report=http://127.0.0.1:$http_port/result"
  else
    url="http://127.0.0.1:$http_port/?ws=wss://127.0.0.1:$port/&$query"
  fi
  echo "browser: $BACKEND, $MODE: echo on wss://127.0.0.1:$port/, page $url"

  # The background-networking flags keep Chromium from reaching out to Google's
  # services (refused on a closed network, and noise in its log otherwise).
  # The profile's "Preload pages" preference is off (network_prediction_options
  # 2, never): else Chromium preconnects to the page's origin as it navigates
  # (one socket for the URL, then two for the origin, by its loading
  # predictor), TCP connections that carry no request and would spoil the
  # exact count below; it has nothing to do with how the WebSocket is carried.
  # The net log records each socket, its ALPN, each HTTP/2 session and the
  # request headers sent on it (IncludeSensitive: no payload bytes).
  mkdir -p "$dir/profile/Default"
  printf '%s\n' '{"net": {"network_prediction_options": 2}}' > "$dir/profile/Default/Preferences"
  HOME=$OUT/home setsid chromium --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --log-net-log="$dir/netlog.json" --net-log-capture-mode=IncludeSensitive \
    --user-data-dir="$dir/profile" "$url" > "$dir/chromium.log" 2>&1 < /dev/null &
  local chromium_pid=$!
  PIDS+=("$chromium_pid")
  poll "$TIMEOUT" "$chromium_pid" test -s "$dir/result.json" \
    || fail "$dir" "no report from the page within $TIMEOUT s$(kill -0 "$chromium_pid" 2>/dev/null || echo ' (Chromium exited)')"
  kill -0 "$server_pid" 2>/dev/null || fail "$dir" "the echo server died during the run"
  # One scrape, over HTTP/1.1 on a connection of its own (counted in
  # ringws_accepted: the checks take it off), while Chromium still runs.
  curl -sS --http1.1 --max-time 10 --cacert "$OUT/ca/ca.pem" -o "$dir/metrics.txt" \
    "https://127.0.0.1:$port/metrics" 2> "$dir/curl.log" \
    || fail "$dir" "could not scrape https://127.0.0.1:$port/metrics: $(cat "$dir/curl.log")"
  # (TERM to each group: Chromium leaves its net log unterminated, which the
  # check below reads all the same.)
  stop_all
  ! grep -q 'panicked' "$dir/server.log" || fail "$dir" "the echo server panicked"

  python3 - "$dir" "$MODE" "$port" "$CODE" "$REASON" <<'CHECK' || fail "$dir" "expectations not met (above)"
import json, re, sys
dir, mode, port, code, reason = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
size = 1 << 20
report = json.load(open(f"{dir}/result.json"))
expected = {
    "error": None,
    "stage": "done",
    "text": {"type": "text", "sent_bytes": size, "echoed_bytes": size, "equal": True, "first_difference": -1},
    "binary": {"type": "binary", "sent_bytes": size, "echoed_bytes": size, "equal": True, "first_difference": -1},
    "close": {"code": code, "reason": reason, "wasClean": True},
}
if mode == "http2":
    expected["origin"] = f"https://127.0.0.1:{port}"
    expected["url"] = f"wss://127.0.0.1:{port}/"
    expected["pageProtocol"] = "h2"
bad = 0
for key, want in expected.items():
    got = report.get(key)
    if isinstance(want, dict) and isinstance(got, dict):
        got = {k: got.get(k) for k in want}
    if got != want:
        bad += 1
        print(f"browser:   {key}: expected {json.dumps(want)}, got {json.dumps(got)}")
ms = {k: (report.get(k) or {}).get("ms") for k in ("text", "binary")}
print(f"browser:   {report.get('userAgent')}")
if not bad:
    print(f"browser:   text 1 MiB echoed byte-identical ({ms['text']} ms), binary 1 MiB ({ms['binary']} ms), "
          f"close {code} {reason!r} wasClean; page from {report.get('origin')} over {report.get('pageProtocol')}")

# The counters: every sample of NAME_total summed (labels aside).
counters = {}
for line in open(f"{dir}/metrics.txt"):
    m = re.match(r"^(ringws_[a-z0-9_]+)_total(?:\{[^}]*\})? (\S+)$", line.strip())
    if m:
        counters[m[1]] = counters.get(m[1], 0) + float(m[2])
names = ["accepted", "upgraded", "http2_connections", "http2_streams", "http2_websockets"]
got = {n: int(counters.get("ringws_" + n, -1)) for n in names}
print("browser:   counters: " + ", ".join(f"{n} {v}" for n, v in got.items()) + " (accepted includes the scrape)")
chromium = got["accepted"] - 1  # the scrape's own connection
if mode == "http2":
    want = {"upgraded": 1, "http2_websockets": 1, "chromium connections": 1, "http2_connections": 1}
else:
    want = {"upgraded": 1, "http2_websockets": 0, "chromium connections": 1, "http2_connections": 0}
have = dict(got, **{"chromium connections": chromium})
for n, v in want.items():
    if have[n] != v:
        bad += 1
        print(f"browser:   {n}: expected {v}, got {have[n]}")
if mode == "http2" and chromium != got["http2_connections"]:
    bad += 1
    print(f"browser:   Chromium's connections ({chromium}) != those that spoke HTTP/2 ({got['http2_connections']})")
if mode == "http2" and got["http2_streams"] < 2:
    bad += 1
    print(f"browser:   http2_streams: expected at least 2 (GET / and the CONNECT), got {got['http2_streams']}")

# The net log, as Chromium saw it: its TCP connections to the echo server,
# its HTTP/2 sessions with it, and on which one each request went.
try:
    text = open(f"{dir}/netlog.json", errors="replace").read()
    try:
        netlog = json.loads(text)
    except ValueError:
        # Stopped before it closed the log: the events written so far, one a
        # line (a partial last line dropped).
        lines = text.rstrip().rstrip(",").split("\n")
        for end in (len(lines), len(lines) - 1):
            try:
                netlog = json.loads("\n".join(lines[:end]).rstrip().rstrip(",") + "]}")
                break
            except ValueError:
                netlog = None
    names = {v: k for k, v in netlog["constants"]["logEventTypes"].items()}
    events = netlog["events"]
except (OSError, ValueError, KeyError, TypeError) as e:
    events, names = [], {}
    print(f"browser:   net log unreadable: {e}")
server = f"127.0.0.1:{port}"
sockets, alpn, sessions, connects, gets = set(), [], set(), [], []
for e in events:
    name, params, source = names.get(e.get("type")), e.get("params") or {}, e.get("source", {}).get("id")
    if name == "TCP_CONNECT" and e.get("phase") == 1 and server in params.get("address_list", []):
        sockets.add(source)
    elif name == "SSL_CONNECT" and e.get("phase") == 2 and source in sockets:
        alpn.append(params.get("next_proto"))
    elif name == "HTTP2_SESSION" and e.get("phase") == 1 and params.get("host") == server:
        sessions.add(source)
    elif name == "HTTP2_SESSION_SEND_HEADERS" and source in sessions:
        headers = params.get("headers", [])
        if ":method: CONNECT" in headers and ":protocol: websocket" in headers:
            connects.append(source)
        elif ":method: GET" in headers and any(h.startswith(":path: /?") for h in headers):
            gets.append(source)
tcp = len(sockets)
where = ""
if mode == "http2":
    where = ", " + ("on the page's session" if connects and gets and set(connects) == {gets[0]} else "not on the page's session")
print(f"browser:   net log: {len(events)} events; TCP connections to {server}: {tcp} (ALPN {', '.join(map(str, alpn)) or 'none'}), "
      f"HTTP/2 sessions: {len(sessions)}, extended CONNECTs: {len(connects)}{where}")
if tcp != chromium:
    bad += 1
    print(f"browser:   the net log's TCP connections ({tcp}) != the server's count ({chromium})")
if alpn != ["h2" if mode == "http2" else "http/1.1"] * tcp:
    bad += 1
    print(f"browser:   ALPN: expected {'h2' if mode == 'http2' else 'http/1.1'} on each connection")
if mode == "http2":
    if len(sessions) != 1 or len(connects) != 1 or len(gets) != 1 or connects != gets:
        bad += 1
        print("browser:   expected one HTTP/2 session carrying both GET / and the extended CONNECT")
elif sessions or connects:
    bad += 1
    print("browser:   an HTTP/2 session or an extended CONNECT in the HTTP/1.1 run")
sys.exit(1 if bad else 0)
CHECK
  echo "browser: $BACKEND, $MODE: pass ($((SECONDS - t0)) s)"
}

for BACKEND in "${BACKENDS[@]}"; do
  for MODE in "${MODES[@]}"; do
    run_one
  done
done
echo "browser: ${BACKENDS[*]} x ${MODES[*]}: all passed ($((SECONDS - started)) s)"
