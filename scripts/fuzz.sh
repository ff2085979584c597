#!/usr/bin/env bash
# Runs every cargo-fuzz target of the protocol core for SECONDS each (default 120).
# Works on the stable toolchain: cargo-fuzz's -Z flags are allowed by RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/../engine"
seconds="${1:-120}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "== $target (${seconds}s)"
  cargo fuzz run -O "$target" -- -max_total_time="$seconds" -max_len=4096 2>&1 | grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|artifact)' || true
  [ -z "$(ls fuzz/artifacts/"$target" 2>/dev/null)" ] || { echo "crash artifacts in fuzz/artifacts/$target"; exit 1; }
done
