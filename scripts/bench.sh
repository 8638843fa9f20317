#!/usr/bin/env bash
# Runs a benchmark with a throwaway PostgreSQL: `bash scripts/bench.sh hub` (worker
# connections), `bash scripts/bench.sh deploy` (deploy-to-first-200) or `bash scripts/bench.sh
# routing` (the edge router against nginx and Traefik, route propagation). Prints figures;
# asserts nothing about speed. Release build.
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
  routing)
    if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
      [ "$(id -u)" -eq 0 ] || { echo "bench: nginx and wrk are needed; install them with: sudo apt-get install nginx-light wrk" >&2; exit 1; }
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk
      # The package starts a system nginx on :80 that the benchmark does not use.
      systemctl stop nginx 2>/dev/null || pkill -f "nginx: master process /usr/sbin/nginx" || true
    fi
    WH_TRAEFIK_BIN=$(bash scripts/traefik.sh) cargo bench -p wisehosting-control-plane --bench routing ;;
  *) echo "unknown benchmark $which; choose: hub, deploy, routing" >&2; exit 2 ;;
esac
