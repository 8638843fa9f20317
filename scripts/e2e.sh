#!/usr/bin/env bash
# The dashboard and the admin console end to end in real Chromium (Debian's, never a downloaded one) with Playwright
# (PyPI, pinned) against a real `wisehosting dev`: sign in, create an app from a local
# repository, watch it build and run, open it, change env and redeploy, add a domain, revoke a
# session, delete the app; then `wisehosting-admin serve` in front of it (an account made with
# create-account, sign-in, every console page, a podman query on the local worker). Screenshots of every main page (desktop and phone) go to
# artifacts/screenshots/ (CI keeps that folder). Any console error fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.58.0
venv=${WH_E2E_VENV:-/var/tmp/wisehosting-e2e}
if ! "$venv/bin/python" -c "import playwright, importlib.metadata as m; assert m.version('playwright') == '$version'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "playwright==$version"
fi
[ -x /usr/bin/chromium ] || { echo "e2e: /usr/bin/chromium is missing; bash scripts/setup.sh installs it" >&2; exit 1; }
bash scripts/dashboard.sh build
cargo build --quiet -p wisehosting-control-plane --bin wisehosting
cargo build --quiet -p wisehosting-admin --bin wisehosting-admin
cargo build --quiet -p wisehosting-testkit --bin wisehosting-fake-oidc --bin wisehosting-fake-git
fake_oidc_bin=${CARGO_TARGET_DIR:-target}/debug/wisehosting-fake-oidc
fake_git_bin=${CARGO_TARGET_DIR:-target}/debug/wisehosting-fake-git
bin=${CARGO_TARGET_DIR:-target}/debug/wisehosting
admin_bin=${CARGO_TARGET_DIR:-target}/debug/wisehosting-admin

work=$(mktemp -d /tmp/wisehosting-e2e.XXXXXX)
chmod 755 "$work"
shots=artifacts/screenshots
rm -rf "$shots" && mkdir -p "$shots"
repo="$work/repo"
mkdir "$repo"
git -C "$repo" init -q -b main
printf 'FROM localhost/wisehosting/busybox:latest\nRUN mkdir -p /www && echo "hello from e2e" > /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n' >"$repo/Containerfile"
git -C "$repo" add -A
git -C "$repo" -c user.email=e2e@example.com -c user.name=e2e commit -q -m "a page"

# shellcheck source=scripts/dev-instance.sh
. scripts/dev-instance.sh
# Whatever the test left (it failed midway), removed through the API so no container or image
# outlives the run.
remove_apps() {
  [ -n "${DEV_URL:-}" ] || return 0
  python3 - "$DEV_URL" <<'PY' || true
import json, sys, time, urllib.request
base = sys.argv[1].rstrip("/")
req = urllib.request.Request(base + "/api/auth/dev-login", data=b'{"email":"e2e@example.com"}', headers={"content-type": "application/json"})
cookie = urllib.request.urlopen(req).headers["set-cookie"].split(";")[0]
def call(method, path):
    r = urllib.request.Request(base + path, method=method, headers={"cookie": cookie})
    with urllib.request.urlopen(r) as answer:
        return json.loads(answer.read() or b"null")
for app in call("GET", "/api/apps"):
    call("DELETE", f"/api/apps/{app['id']}")
deadline = time.time() + 90
while call("GET", "/api/apps") and time.time() < deadline:
    time.sleep(0.5)
PY
}
admin_pid=""
idp_pid=""
git_pid=""
cleanup() {
  [ -z "$admin_pid" ] || { kill -INT "$admin_pid" 2>/dev/null || true; wait "$admin_pid" 2>/dev/null || true; }
  [ -z "$idp_pid" ] || { kill -INT "$idp_pid" 2>/dev/null || true; wait "$idp_pid" 2>/dev/null || true; }
  [ -z "$git_pid" ] || { kill -INT "$git_pid" 2>/dev/null || true; wait "$git_pid" 2>/dev/null || true; }
  remove_apps
  stop_dev
  rm -rf "$work"
}
trap cleanup EXIT
# "Sign in with Google" against a local stand-in provider the production client talks to
# unchanged; the redirect URI needs the dashboard's address before it starts.
"$fake_oidc_bin" >"$work/idp.out" 2>"$work/idp.log" &
idp_pid=$!
for _ in $(seq 1 50); do grep -q '^client_secret=' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
idp_value() { sed -n "s/^$1=//p" "$work/idp.out"; }
[ -n "$(idp_value issuer)" ] || { cat "$work/idp.log"; echo "the stand-in OpenID provider did not start" >&2; exit 1; }
# "Link GitHub" against a stand-in GitHub listing the e2e repository.
WH_FAKE_GIT_REPO="$repo" "$fake_git_bin" >"$work/git.out" 2>"$work/git.log" &
git_pid=$!
for _ in $(seq 1 50); do grep -q '^client_secret=' "$work/git.out" 2>/dev/null && break; sleep 0.1; done
git_value() { sed -n "s/^$1=//p" "$work/git.out"; }
[ -n "$(git_value base_url)" ] || { cat "$work/git.log"; echo "the stand-in GitHub did not start" >&2; exit 1; }
DEV_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DEV_PORT
umask 077
cat >"$work/config.yaml" <<YAML
api_server:
  public_url: http://127.0.0.1:$DEV_PORT
oidc:
  issuer_url: $(idp_value issuer)
  client_id: $(idp_value client_id)
  client_secret: $(idp_value client_secret)
git_providers:
  github:
    client_id: $(git_value client_id)
    client_secret: $(git_value client_secret)
    base_url: $(git_value base_url)
    api_url: $(git_value api_url)
YAML
umask 022
CONFIG_PATH="$work/config.yaml" start_dev "$bin" "$work"
url=$DEV_URL
echo "== dashboard e2e against $url"
WH_E2E_URL="$url" WH_E2E_REPO="$repo" WH_E2E_SHOTS="$shots" "$venv/bin/python" web/dashboard/e2e/dashboard_e2e.py || {
  tail -n 40 "$work/dev.log"
  exit 1
}

echo "== admin console e2e"
admin_config="$work/data/admin.yaml"
[ -f "$admin_config" ] || { echo "wisehosting dev wrote no $admin_config" >&2; exit 1; }
admin_password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
printf '%s' "$admin_password" | CONFIG_PATH="$admin_config" RUST_LOG=warn "$admin_bin" create-account --username e2e-admin --role super_admin
CONFIG_PATH="$admin_config" WH__ADMIN__LISTEN=127.0.0.1:0 RUST_LOG=warn "$admin_bin" serve >"$work/admin.log" 2>&1 &
admin_pid=$!
admin_url=""
for _ in $(seq 1 60); do
  admin_url=$(grep -oE 'Admin console: +http://127\.0\.0\.1:[0-9]+/admin/' "$work/admin.log" | grep -oE 'http://[^ ]+' || true)
  [ -n "$admin_url" ] && break
  kill -0 "$admin_pid" 2>/dev/null || { cat "$work/admin.log"; echo "wisehosting-admin serve did not start" >&2; exit 1; }
  sleep 0.5
done
[ -n "$admin_url" ] || { cat "$work/admin.log"; echo "wisehosting-admin printed no address" >&2; exit 1; }
WH_ADMIN_URL="$admin_url" WH_ADMIN_USER=e2e-admin WH_ADMIN_PASSWORD="$admin_password" WH_E2E_SHOTS="$shots" \
  WH_E2E_URL="$url" WH_E2E_REPO="$repo" \
  "$venv/bin/python" web/admin/e2e/admin_e2e.py || {
  tail -n 40 "$work/admin.log"
  exit 1
}
