#!/usr/bin/env bash
# Sets up the Prometheus text parser the metrics test uses: the
# `prometheus_client` Python package (the Prometheus project's Python client)
# in a virtualenv under target/, from PyPI. Prints the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/py-metrics"
if ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'prometheus_client==0.21.1' >&2
fi
echo "$venv/bin/python"
