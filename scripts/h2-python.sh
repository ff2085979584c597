#!/usr/bin/env bash
# Sets up the independent HTTP/2 client the WebSockets-over-HTTP/2 test runs
# (tests/h2/ws_streams.py): the `h2` Python package (python-hyper's HTTP/2
# state machine) in a virtualenv under target/, from PyPI. Prints the
# interpreter's path; tests/tests/http2_python.rs takes it from
# RINGWS_H2_PYTHON:
#
#   RINGWS_H2_PYTHON="$(bash scripts/h2-python.sh)" cargo test -p ringws-tests --test http2_python
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/py-h2"
if ! "$venv/bin/python" -c 'import h2' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'h2==4.*' >&2
fi
echo "$venv/bin/python"
