#!/usr/bin/env bash
# Command 2: set up and run every test. Installs what is missing, starts a throwaway
# PostgreSQL for the run, runs the whole workspace's tests with cargo-nextest, and stops it.
# Extra arguments go to `cargo nextest run` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

pgdir=$(mktemp -d /tmp/wisehosting-test-pg.XXXXXX)
cleanup() { bash scripts/pg-temp.sh stop "$pgdir"; }
trap cleanup EXIT
WH_TEST_PG_URL=$(bash scripts/pg-temp.sh start "$pgdir")
export WH_TEST_PG_URL
WH_TRAEFIK_BIN=$(bash scripts/traefik.sh)
export WH_TRAEFIK_BIN

cargo nextest run --workspace --no-fail-fast "$@"
