#!/usr/bin/env bash
# Builds the local base images of the language presets from Debian packages (no registry is
# reachable here): a Debian rootfs per image made by mmdebstrap, then `podman import`.
#   localhost/wisehosting/node:bookworm     nodejs, npm
#   localhost/wisehosting/python:bookworm   python3, venv
#   localhost/wisehosting/go:bookworm       golang-go
#   localhost/wisehosting/rust:bookworm     cargo, rustc
#   localhost/wisehosting/debian:bookworm   the Go and Rust presets' runtime
# Workers point deploy.node_image (…) at them; production workers use the official images.
# The images are for this machine: they trust the certificate authorities it trusts (its
# /etc/ssl/certs/ca-certificates.crt, which holds a TLS-inspecting proxy's CA where there is
# one) and tell node, pip and the rest to use that bundle.
# Usage: bash scripts/preset-images.sh   (an image built by this recipe is kept; builds run
# side by side)
set -euo pipefail
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/deploy/containers.conf}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

declare -A packages=(
  [node]="nodejs,npm,ca-certificates"
  [python]="python3,python3-venv,ca-certificates"
  [go]="golang-go,ca-certificates"
  [rust]="cargo,rustc,ca-certificates"
  [debian]="ca-certificates"
)

bundle=/etc/ssl/certs/ca-certificates.crt
# The recipe: this script and the bundle; an image made by another is made again.
recipe=$(cat "$0" "$bundle" 2>/dev/null | sha256sum | cut -c1-16)
missing=()
for name in node python go rust debian; do
  image="localhost/wisehosting/$name:bookworm"
  made=$(podman image inspect --format '{{index .Labels "io.wisehosting.recipe"}}' "$image" 2>/dev/null || true)
  [ "$made" = "$recipe" ] || missing+=("$name")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v mmdebstrap >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  else
    echo "preset-images: install mmdebstrap first: sudo apt-get install mmdebstrap" >&2
    exit 1
  fi
fi

have_bundle=""
[ -f "$bundle" ] && have_bundle=1
work=$(mktemp -d /var/tmp/wisehosting-presets.XXXXXX)
trap 'rm -rf "$work"' EXIT

build() {
  local name=$1 tar="$work/$1.tar"
  mmdebstrap --quiet --variant=essential --include="${packages[$name]}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    ${have_bundle:+--customize-hook="copy-in $bundle /etc/ssl/certs"} \
    bookworm "$tar" "deb $mirror bookworm main" "deb $security bookworm-security main" \
    > "$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; return 1; }
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/root' \
    --change "ENV SSL_CERT_FILE=$bundle" --change "ENV NODE_EXTRA_CA_CERTS=$bundle" \
    --change "ENV PIP_CERT=$bundle" --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
    --change "LABEL io.wisehosting.recipe=$recipe" \
    --change 'CMD ["/bin/sh"]' "$tar" "localhost/wisehosting/$name:bookworm" >/dev/null
  rm -f "$tar"
  echo "preset-images: built localhost/wisehosting/$name:bookworm"
}

pids=()
for name in "${missing[@]}"; do
  build "$name" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
