#!/usr/bin/env bash
# Short fuzzing runs of the envelope decoder/verifier and the JWT verifier (cargo-fuzz,
# libFuzzer). Usage: bash scripts/fuzz.sh [SECONDS per target, default 60].
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Findings land in fuzz/artifacts/<target>/; turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in envelope_decode_verify worker_jwt; do
  echo "== fuzzing $target for ${secs}s"
  cargo fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="$secs" -max_len=4096
done
