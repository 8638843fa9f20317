#!/usr/bin/env bash
# The dashboard (web/dashboard): `build` installs its packages (npm ci, from the npm registry)
# and builds dist/ when a source changed since the last build; `check` also type-checks, runs
# its unit tests (Vitest) and fails when src/api/schema.d.ts no longer matches the control
# plane's OpenAPI document (regenerate it with `bash scripts/dashboard.sh api-types`).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=web/dashboard
action=${1:-build}

need_node() {
  if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
    echo "dashboard: Node.js 20.19 or newer is needed (found: $(node --version 2>/dev/null || echo none)); install it from Debian's packages or nodejs.org's" >&2
    exit 1
  fi
}

install() {
  need_node
  local stamp="$dir/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# A hash of every input of the build, kept in dist/.source-hash.
source_hash() {
  (cd "$dir" && find src scripts index.html package.json package-lock.json vite.config.ts tsconfig.json -type f \
    ! -name '*.test.ts' ! -name '*.test.tsx' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

build() {
  install
  local want
  want=$(source_hash)
  if [ -f "$dir/dist/.source-hash" ] && [ "$(cat "$dir/dist/.source-hash")" = "$want" ]; then
    return
  fi
  echo "dashboard: building web/dashboard"
  (cd "$dir" && npm run --silent build)
  echo "$want" >"$dir/dist/.source-hash"
}

api_types() {
  install
  cargo build --quiet -p wisehosting-control-plane --bin wisehosting
  local bin=${CARGO_TARGET_DIR:-target}/debug/wisehosting
  "$bin" openapi >"$dir/openapi.json"
  (cd "$dir" && npx --no-install openapi-typescript openapi.json -o "$1" >/dev/null)
}

case "$action" in
  build) build ;;
  api-types) api_types src/api/schema.d.ts ;;
  check)
    build
    (cd "$dir" && npx --no-install tsc --noEmit && npx --no-install vitest run)
    fresh=$(mktemp /tmp/wisehosting-schema.XXXXXX.d.ts)
    api_types "$fresh"
    if ! diff -q "$fresh" "$dir/src/api/schema.d.ts" >/dev/null; then
      diff -u "$dir/src/api/schema.d.ts" "$fresh" | head -40
      rm -f "$fresh"
      echo "dashboard: src/api/schema.d.ts is older than the API; run: bash scripts/dashboard.sh api-types" >&2
      exit 1
    fi
    rm -f "$fresh"
    echo "dashboard: types match the OpenAPI document"
    ;;
  *) echo "usage: bash scripts/dashboard.sh build|check|api-types" >&2; exit 2 ;;
esac
