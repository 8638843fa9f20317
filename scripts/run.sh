#!/usr/bin/env bash
# Command 1: set up and run the whole platform on this machine (single-machine mode).
# Arguments go to `wisehosting dev` (for example --port 8081 --data-dir .wisehosting).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bin wisehosting --bin wisehosting-admin --bin wh
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/debug/wisehosting" dev "$@"
