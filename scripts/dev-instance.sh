# Sourced by scripts that need a throwaway `wisehosting dev` (api-fuzz.sh, e2e.sh, bench.sh):
#   start_dev BIN WORKDIR   starts it on a free port (DEV_PORT if set) with its data in
#                           WORKDIR/data (extra environment, such as CONFIG_PATH, is passed
#                           through), waits for the
#                           banner and sets DEV_PID and DEV_URL (the dashboard, no trailing /).
#   stop_dev                stops it (Ctrl-C: the control plane, then its PostgreSQL).
start_dev() {
  local bin=$1 work=$2
  RUST_LOG=${RUST_LOG:-warn} "$bin" dev --data-dir "$work/data" --port "${DEV_PORT:-0}" >"$work/dev.log" 2>&1 &
  DEV_PID=$!
  DEV_URL=""
  for _ in $(seq 1 240); do
    DEV_URL=$(grep -oE 'Dashboard: +http://127\.0\.0\.1:[0-9]+' "$work/dev.log" | grep -oE 'http://[^ ]+' || true)
    [ -n "$DEV_URL" ] && return 0
    if ! kill -0 "$DEV_PID" 2>/dev/null; then
      cat "$work/dev.log"
      echo "wisehosting dev did not start; its output is above" >&2
      return 1
    fi
    sleep 0.5
  done
  cat "$work/dev.log"
  echo "wisehosting dev printed no dashboard address within 2 minutes" >&2
  return 1
}

stop_dev() {
  [ -n "${DEV_PID:-}" ] || return 0
  kill -INT "$DEV_PID" 2>/dev/null || true
  wait "$DEV_PID" 2>/dev/null || true
}
