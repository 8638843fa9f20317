#!/usr/bin/env bash
# Builds the tiny local base image `localhost/wisehosting/busybox:latest` from Debian's
# busybox-static (no registry is needed: `podman import` of a rootfs). Its `httpd` serves the
# static preset. Usage: bash scripts/base-image.sh [IMAGE]   (does nothing if it exists)
set -euo pipefail
image=${1:-localhost/wisehosting/busybox:latest}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/deploy/containers.conf}
if podman image exists "$image"; then
  exit 0
fi
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  else
    echo "base-image: install busybox-static first: sudo apt-get install busybox-static" >&2
    exit 1
  fi
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | podman import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "base-image: built $image"
