#!/usr/bin/env bash
# The full permessage-deflate matrix: Autobahn 12.* and 13.* on both backends in
# both memory modes (about 10-25 minutes per run on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
for backend in epoll io_uring; do
  for mode in shared dedicated; do
    echo "== autobahn 12-13, $backend, $mode"
    AUTOBAHN_TIMEOUT=2400 bash scripts/autobahn.sh --backend "$backend" --deflate "$mode" \
      --cases '["12.*","13.*"]' --outdir "target/autobahn-deflate-$backend-$mode"
  done
done
