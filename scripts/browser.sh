#!/usr/bin/env bash
# wss:// in a real browser: headless Chromium (Debian's `chromium`, installed
# here when missing, with libnss3-tools for certutil) against the echo example,
# on each backend.
#
# usage: scripts/browser.sh [--backend epoll|io_uring] [--release]
#   --backend B   one backend only (default: epoll, then io_uring)
#   --release     the release build of the echo example (default: debug)
# env: BROWSER_TIMEOUT  seconds one backend's page may take to report (default 120)
#
# For the run, a throwaway test CA and a leaf for 127.0.0.1 and localhost signed
# by it (openssl, under target/browser/). The CA is imported into a fresh NSS
# db that Chromium reads as its trust store (HOME points into target/browser/),
# so the browser verifies the chain as it would a real one: no flag that skips
# or pins the verification. Per backend: the echo example on a port the kernel
# picks (--port 0, read back from its "listening on" line), the page's HTTP
# server (scripts/browser/serve.py, also on a kernel-picked port), and Chromium
# with a fresh profile, opening the page; the page (scripts/browser/page.html)
# opens wss://127.0.0.1:PORT/, echoes 1 MiB of text (1- to 4-byte UTF-8) and
# 1 MiB of pseudo-random binary, closes with 4321 "browser done", and reports
# what it saw by POST. Passes when both echoes are byte-identical, and the
# close event says 4321, "browser done" (the engine mirrors the peer's close)
# and wasClean; and the server is still running, on the backend asked for.
# On a failure: the page's report, the server's, Chromium's and the HTTP
# server's log tails. Every process started is stopped by PID (its process
# group) on exit; every wait is bounded.
# Exits 0 when every backend passed, 1 when one failed, 2 on a setup error.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '6,9p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }

BACKENDS=(epoll io_uring) PROFILE=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) [ $# -ge 2 ] || usage; BACKENDS=("$2"); shift ;;
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
  echo "browser: FAIL ($BACKEND): $*"
  [ -f "$dir/result.json" ] && { echo "--- the page's report"; cat "$dir/result.json"; echo; }
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

run_backend() {
  local dir=$OUT/$BACKEND t0=$SECONDS
  mkdir -p "$dir"
  setsid "$ECHO_BIN" --host 127.0.0.1 --port 0 --workers 1 --backend "$BACKEND" \
    --tls-cert "$OUT/ca/leaf.pem" --tls-key "$OUT/ca/leaf.key" > "$dir/server.log" 2>&1 < /dev/null &
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
  poll 10 "$http_pid" test -s "$dir/http.port" || fail "$dir" "the page's HTTP server did not start within 10 s"
  local url
  url="http://127.0.0.1:$(cat "$dir/http.port")/?ws=wss://127.0.0.1:$port/&code=$CODE&reason=${REASON// /%20}&timeout_ms=$((TIMEOUT > 20 ? (TIMEOUT - 10) * 1000 : TIMEOUT * 500))"
  echo "browser: $BACKEND: echo on wss://127.0.0.1:$port/, page $url"

  # The background-networking flags keep Chromium from reaching out to Google's
  # services (refused on a closed network, and noise in its log otherwise).
  HOME=$OUT/home setsid chromium --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$dir/profile" "$url" > "$dir/chromium.log" 2>&1 < /dev/null &
  local chromium_pid=$!
  PIDS+=("$chromium_pid")
  poll "$TIMEOUT" "$chromium_pid" test -s "$dir/result.json" \
    || fail "$dir" "no report from the page within $TIMEOUT s$(kill -0 "$chromium_pid" 2>/dev/null || echo ' (Chromium exited)')"
  kill -0 "$server_pid" 2>/dev/null || fail "$dir" "the echo server died during the run"
  stop_all
  ! grep -q 'panicked' "$dir/server.log" || fail "$dir" "the echo server panicked"

  python3 - "$dir/result.json" "$CODE" "$REASON" <<'CHECK' || fail "$dir" "the page saw something other than expected (above)"
import json, sys
report = json.load(open(sys.argv[1]))
code, reason, size = int(sys.argv[2]), sys.argv[3], 1 << 20
expected = {
    "error": None,
    "stage": "done",
    "text": {"type": "text", "sent_bytes": size, "echoed_bytes": size, "equal": True, "first_difference": -1},
    "binary": {"type": "binary", "sent_bytes": size, "echoed_bytes": size, "equal": True, "first_difference": -1},
    "close": {"code": code, "reason": reason, "wasClean": True},
}
bad = 0
for key, want in expected.items():
    got = report.get(key)
    if isinstance(want, dict) and isinstance(got, dict):
        got = {k: got.get(k) for k in want}
    if got != want:
        bad += 1
        print(f"browser:   {key}: expected {json.dumps(want)}, got {json.dumps(got)}")
ms = {k: report.get(k, {}).get("ms") for k in ("text", "binary")}
print(f"browser:   {report.get('userAgent')}")
if bad:
    sys.exit(1)
print(f"browser:   text 1 MiB echoed byte-identical ({ms['text']} ms), binary 1 MiB ({ms['binary']} ms), "
      f"close {code} {reason!r} wasClean")
CHECK
  echo "browser: $BACKEND: pass ($((SECONDS - t0)) s)"
}

for BACKEND in "${BACKENDS[@]}"; do
  run_backend
done
echo "browser: ${BACKENDS[*]}: all passed ($((SECONDS - started)) s)"
