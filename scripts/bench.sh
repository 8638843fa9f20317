#!/usr/bin/env bash
# Runs a benchmark with a throwaway PostgreSQL: `bash scripts/bench.sh hub` (worker
# connections), `bash scripts/bench.sh deploy` (deploy-to-first-200) or `bash scripts/bench.sh
# routing` (the edge router against nginx and Traefik, route propagation) or `bash
# scripts/bench.sh edge-tls` (the edge router over TLS against nginx, RSS with 1,000
# certificates) or `bash scripts/bench.sh dashboard` (entry script size, first paint, idle memory) or `bash
# scripts/bench.sh observe` (alert evaluation, webhook dispatch) or `bash scripts/bench.sh
# build-cache` (the node preset's second builds) or `bash scripts/bench.sh queue` (the job
# queue's claim + complete throughput and pickup latency). Prints figures;
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
  observe) cargo bench -p wisehosting-control-plane --bench observe ;;
  build-cache) cargo bench -p wisehosting-control-plane --bench build_cache ;;
  queue) cargo bench -p wisehosting-control-plane --bench queue ;;
  routing|edge-tls)
    if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
      [ "$(id -u)" -eq 0 ] || { echo "bench: nginx and wrk are needed; install them with: sudo apt-get install nginx-light wrk" >&2; exit 1; }
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk
      # The package starts a system nginx on :80 that the benchmark does not use.
      systemctl stop nginx 2>/dev/null || pkill -f "nginx: master process /usr/sbin/nginx" || true
    fi
    if [ "$which" = edge-tls ]; then
      WH_BENCH_TLS=1 cargo bench -p wisehosting-control-plane --bench routing
    else
      WH_TRAEFIK_BIN=$(bash scripts/traefik.sh) cargo bench -p wisehosting-control-plane --bench routing
    fi ;;
  dashboard)
    # A release build (the dashboard embedded), `wisehosting dev` on a throwaway data dir: the
    # entry script's size and first contentful paint (Chromium), then the process's resident
    # memory after 10 s idle.
    bash scripts/dashboard.sh build
    cargo build --release --quiet -p wisehosting-control-plane --bin wisehosting
    bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/wisehosting
    work=$(mktemp -d /tmp/wisehosting-bench-dash.XXXXXX)
    chmod 755 "$work"
    # shellcheck source=scripts/dev-instance.sh
    . scripts/dev-instance.sh
    trap 'stop_dev; rm -rf "$work"; cleanup' EXIT
    start_dev "$bin" "$work"
    url=$DEV_URL
    venv=${WH_E2E_VENV:-/var/tmp/wisehosting-e2e}
    [ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install --quiet playwright==1.58.0; }
    WH_E2E_URL="$url" "$venv/bin/python" web/dashboard/e2e/bench.py
    sleep 10
    echo "wisehosting dev (control plane, embedded worker and edge router; PostgreSQL apart) idle: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$DEV_PID/status) resident (budget 50 MB for the control plane)"
    ;;
  *) echo "unknown benchmark $which; choose: hub, deploy, routing, edge-tls, dashboard, observe, build-cache, queue" >&2; exit 2 ;;
esac
