#!/usr/bin/env bash
# Provisions a Debian 12 host as a WiseHosting worker: podman, runc and wireguard-tools, the
# project's containers.conf, the agent's binary, config, credentials and systemd unit, and —
# once the control plane has rendered it — the host's mesh interface.
#
#   sudo scripts/provision-worker.sh --name edge-2 --zone eu \
#        --control-plane https://paas.example.com \
#        --api-key-file ./edge-2.key --shared-secret-file ./join.secret \
#        --binary ./target/release/wisehosting-worker
#
# Secrets are read from files (never from the command line, where `ps` would show them) and
# stored as systemd credentials in /etc/credstore/wisehosting (0600, root). The first start
# registers the worker over --control-plane; it makes its WireGuard key pair and the control
# plane gives it its mesh address. Then, on the control plane's host:
#
#   wisehosting mesh config --worker edge-2 > edge-2.conf      # copy it to this host, then:
#   sudo scripts/provision-worker.sh --name edge-2 --mesh-config ./edge-2.conf
#
# which installs /etc/wireguard/wh0.conf, brings the interface up with wg-quick (enabled at
# boot) and points the agent at the control plane over the mesh (http://10.50.0.1:<port>).
#
# Options for staging and tests: --root DIR installs under DIR; --skip-packages, --no-start.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="" name="" zone="" cp_url="" api_key_file="" secret_file="" binary="" mesh_config=""
mesh_port="8081" skip_packages=0 start=1

die() { echo "provision-worker: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?}"; shift 2 ;;
    --name) name="${2:?}"; shift 2 ;;
    --zone) zone="${2:?}"; shift 2 ;;
    --control-plane) cp_url="${2:?}"; shift 2 ;;
    --api-key-file) api_key_file="${2:?}"; shift 2 ;;
    --shared-secret-file) secret_file="${2:?}"; shift 2 ;;
    --binary) binary="${2:?}"; shift 2 ;;
    --mesh-config) mesh_config="${2:?}"; shift 2 ;;
    --mesh-port) mesh_port="${2:?}"; shift 2 ;;
    --skip-packages) skip_packages=1; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown option $1; see --help" ;;
  esac
done

[[ "$name" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "--name must be the worker's name (a-z, 0-9, -), as given to \`wisehosting worker create\`"
[ -z "$zone" ] || [[ "$zone" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "--zone must be one DNS label (a-z, 0-9, -)"
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, a unit and credentials), or stage with --root DIR"

etc="$root/etc/wisehosting"
credstore="$root/etc/credstore/wisehosting"
config="$etc/worker.yaml"

systemctl_() {
  if [ "$start" -eq 1 ] && [ -z "$root" ]; then systemctl "$@"; else echo "provision-worker: (not run) systemctl $*"; fi
}

if [ -n "$mesh_config" ]; then
  # Second step: the mesh interface, then the agent talks to the control plane over it.
  [ -f "$mesh_config" ] || die "--mesh-config $mesh_config does not exist; render it on the control plane with \`wisehosting mesh config --worker $name\`"
  [ -f "$config" ] || die "$config is missing: provision the worker first (without --mesh-config)"
  grep -q '^\[Interface\]' "$mesh_config" || die "$mesh_config is not a wg-quick file"
  install -d -m 0700 "$root/etc/wireguard"
  install -m 0600 "$mesh_config" "$root/etc/wireguard/wh0.conf"
  systemctl_ enable --now wg-quick@wh0
  sed -i "s#^control_plane_url: .*#control_plane_url: http://10.50.0.1:${mesh_port}#" "$config"
  systemctl_ restart wisehosting-worker
  echo "provision-worker: $name now reaches the control plane over the mesh (wh0, 10.50.0.1:${mesh_port})"
  exit 0
fi

[ -n "$cp_url" ] || die "--control-plane URL is required (the control plane's public https:// URL for the first registration)"
[[ "$cp_url" =~ ^https?:// ]] || die "--control-plane must be an http:// or https:// URL"
[ -f "$api_key_file" ] || die "--api-key-file must name the file holding the key \`wisehosting worker create\` printed"
[ -f "$secret_file" ] || die "--shared-secret-file must name the file holding the control plane's workers.join_secret"
[ -n "$binary" ] && [ -x "$binary" ] || die "--binary must name the wisehosting-worker executable to install"

if [ "$skip_packages" -eq 0 ]; then
  apt-get update -qq
  apt-get install -y -qq podman runc wireguard-tools iptables
fi

install -d -m 0755 "$root/usr/local/bin" "$etc" "$root/etc/systemd/system"
install -d -m 0700 "$credstore" "$root/var/lib/wisehosting-worker"
install -m 0755 "$binary" "$root/usr/local/bin/wisehosting-worker"
install -m 0644 "$here/deploy/containers.conf" "$etc/containers.conf"
install -m 0644 "$here/deploy/wisehosting-worker.service" "$root/etc/systemd/system/wisehosting-worker.service"
# Secrets: credentials only (the YAML keeps its empty placeholders).
install -m 0600 "$api_key_file" "$credstore/worker_api_key"
install -m 0600 "$secret_file" "$credstore/worker_shared_secret"

zone_yaml="null"
[ -z "$zone" ] || zone_yaml="$zone"
cat > "$config.tmp" <<EOF
# Written by scripts/provision-worker.sh; every key is in deploy/worker.example.yaml.
control_plane_url: $cp_url
name: $name
zone: $zone_yaml
podman:
  containers_conf: /etc/wisehosting/containers.conf
data_dir: /var/lib/wisehosting-worker
EOF
chmod 0644 "$config.tmp"
mv "$config.tmp" "$config"

systemctl_ daemon-reload
systemctl_ enable --now wisehosting-worker
echo "provision-worker: $name installed; it registers with $cp_url and makes its WireGuard key."
echo "provision-worker: next, on the control plane: wisehosting mesh config --worker $name > $name.conf"
echo "provision-worker: then here: $0 --name $name --mesh-config ./$name.conf"
