#!/usr/bin/env bash
# Short fuzzing runs of the envelope decoder/verifier, the JWT verifier and the edge router's
# request-head, response-head and chunked-body readers (cargo-fuzz, libFuzzer).
# Usage: bash scripts/fuzz.sh [SECONDS per target, default 60]; WH_FUZZ_TARGETS picks targets.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Findings land in fuzz/artifacts/<target>/; turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
# Sanitizer builds in a target dir of their own: sharing the tests' would rebuild both ways.
target_dir=${WH_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR-fuzz}}
target_dir=${target_dir:-fuzz/target}
for target in ${WH_FUZZ_TARGETS:-envelope_decode_verify worker_jwt edge_request_head edge_response_head edge_chunked}; do
  echo "== fuzzing $target for ${secs}s"
  log=$(mktemp /tmp/wisehosting-fuzz.XXXXXX)
  if ! cargo fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "$target" -- \
      -max_total_time="$secs" -max_len=4096 >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz: $target failed: a build error above, or a finding whose input is in fuzz/artifacts/$target/" >&2
    rm -f "$log"
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
  rm -f "$log"
done
