#!/usr/bin/env bash
# Command 2: set up and run every test. Installs what is missing, starts a throwaway
# PostgreSQL for the run, runs the whole workspace's tests with cargo-nextest, and stops it;
# then Schemathesis against a running platform (scripts/api-fuzz.sh) and the dashboard's checks
# and end-to-end test (scripts/dashboard.sh check, scripts/e2e.sh). Extra arguments go to
# `cargo nextest run` (for example a test name filter) and skip the runs after it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

pgdir=$(mktemp -d /tmp/wisehosting-test-pg.XXXXXX)
started=$(date +%s)
# Builds that tests cancel or kill leave buildah's working containers (storage only, no
# process) and untagged last layers: remove those this run created.
created_since() {
  python3 -c 'import json, sys
since = int(sys.argv[1])
for c in json.load(sys.stdin) or []:
    if c.get("State", "storage") == "storage" and int(c.get("Created", 0)) >= since:
        print(c["Id"])' "$started"
}
remove_build_leftovers() {
  export CONTAINERS_CONF=deploy/containers.conf
  podman ps -a --external --format json 2>/dev/null | created_since |
    xargs -r podman rm -f -- >/dev/null 2>&1 || true
  podman images --filter dangling=true --format json 2>/dev/null | created_since |
    xargs -r podman rmi -- >/dev/null 2>&1 || true
}
cleanup() { remove_build_leftovers; bash scripts/pg-temp.sh stop "$pgdir"; }
trap cleanup EXIT
WH_TEST_PG_URL=$(bash scripts/pg-temp.sh start "$pgdir")
export WH_TEST_PG_URL
WH_TRAEFIK_BIN=$(bash scripts/traefik.sh)
export WH_TRAEFIK_BIN

cargo nextest run --workspace --no-fail-fast "$@"
# The whole suite (no filter given) also fuzzes the API from its OpenAPI document (T09)
# and checks the dashboard: types, unit tests, its API types against the document, and the
# whole thing end to end in Chromium (screenshots in artifacts/screenshots/).
if [ $# -eq 0 ]; then
  bash scripts/api-fuzz.sh 30
  bash scripts/dashboard.sh check
  bash scripts/e2e.sh
fi
