#!/usr/bin/env bash
# Runs cargo-fuzz targets for SECONDS each (default 120): those named after
# SECONDS, or every target (the protocol core's, and the TLS record layer's:
# tls_records, tls_differential, whose harness is the engine's `fuzzing`
# feature). Prints libFuzzer's final line for each (execs, cov, ft, corpus).
# Fails if a target does not build or leaves a crash artifact in
# engine/fuzz/artifacts. Works on the stable toolchain: cargo-fuzz's -Z flags
# are allowed by RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/../engine"
seconds="${1:-120}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
  echo "== $target (${seconds}s)"
  cargo fuzz build -O "$target"
  cargo fuzz run -O "$target" -- -max_total_time="$seconds" -max_len=4096 2>&1 | grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|artifact)' || true
  [ -z "$(ls fuzz/artifacts/"$target" 2>/dev/null)" ] || { echo "crash artifacts in fuzz/artifacts/$target"; exit 1; }
done
