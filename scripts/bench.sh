#!/usr/bin/env bash
# Runs a benchmark with a throwaway PostgreSQL: `bash scripts/bench.sh hub` (worker
# connections) or `bash scripts/bench.sh deploy` (deploy-to-first-200). Prints figures; asserts nothing about speed. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
which=${1:-hub}
pgdir=$(mktemp -d /tmp/wisehosting-bench-pg.XXXXXX)
cleanup() { bash scripts/pg-temp.sh stop "$pgdir"; }
trap cleanup EXIT
WH_TEST_PG_URL=$(bash scripts/pg-temp.sh start "$pgdir")
export WH_TEST_PG_URL
case $which in
  hub) cargo bench -p wisehosting-control-plane --bench hub_connections ;;
  deploy) cargo bench -p wisehosting-control-plane --bench deploy ;;
  *) echo "unknown benchmark $which; choose: hub, deploy" >&2; exit 2 ;;
esac
