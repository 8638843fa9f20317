//! The WireGuard mesh's configs (SPEC §11): hub and spoke on 10.50.0.0/24, the control plane
//! at 10.50.0.1 listening on UDP `mesh.listen_port`, each worker one `[Peer]` of it at the
//! address it was given at registration (`workers.wg_ip`). `wisehosting mesh config` renders
//! the `wg-quick` file of the control plane (its key made on this host, in
//! `mesh.private_key_file`) or, with `--worker`, of one worker. No private key is ever printed:
//! each file points at its host's own key file (`PostUp = wg set %i private-key …`).

use std::fmt::Write as _;
use std::path::Path;

use wisehosting_crypto::wireguard::WgPublicKey;

/// The control plane's own mesh address.
pub const HUB_ADDRESS: &str = "10.50.0.1";

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("the control plane's WireGuard key (mesh.private_key_file): {0}")]
    Key(wisehosting_worker::mesh::MeshError),
    #[error("no worker is named {0}; see `wisehosting worker list`")]
    NoWorker(String),
    #[error(
        "worker {0} has not registered a WireGuard key yet: start it once (it makes its key and registers it), then run this again"
    )]
    NotJoined(String),
    #[error(
        "mesh.endpoint is not set: give the address workers reach this host's WireGuard at, e.g. paas.example.com:51821"
    )]
    NoEndpoint,
}

/// One worker as the mesh sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Peer {
    pub name: String,
    pub wg_public_key: Option<String>,
    pub wg_ip: Option<String>,
}

/// The control plane's public key, from its key file (made now, mode 0600, when there is none:
/// kept the same way as a worker's).
pub fn hub_public_key(path: &Path) -> Result<WgPublicKey, MeshError> {
    wisehosting_worker::mesh::key_file(path).map_err(MeshError::Key)
}

/// The control plane's `wg-quick` file: the hub's interface and one peer per worker that has
/// joined (workers without a key or an address are listed as comments, and why).
pub fn hub_config(key_file: &Path, listen_port: u16, peers: &[Peer]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# The control plane's end of the WireGuard mesh (`wisehosting mesh config`).");
    let _ = writeln!(
        out,
        "# Install as /etc/wireguard/wh0.conf and run `wg-quick up wh0`; render it again after a"
    );
    let _ = writeln!(
        out,
        "# worker joins. The central proxy reaches workers through this hub: set net.ipv4.ip_forward=1."
    );
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(out, "Address = {HUB_ADDRESS}/24");
    let _ = writeln!(out, "ListenPort = {listen_port}");
    let _ = writeln!(out, "PostUp = wg set %i private-key {}", key_file.display());
    for peer in peers {
        let _ = writeln!(out);
        match (&peer.wg_public_key, &peer.wg_ip) {
            (Some(key), Some(ip)) => {
                let _ = writeln!(out, "# worker {}", peer.name);
                let _ = writeln!(out, "[Peer]");
                let _ = writeln!(out, "PublicKey = {key}");
                let _ = writeln!(out, "AllowedIPs = {ip}/32");
            }
            _ => {
                let _ =
                    writeln!(out, "# worker {}: not joined yet (no key or address registered)", peer.name);
            }
        }
    }
    out
}

/// One worker's `wg-quick` file: its address, its own key file, and the hub as its one peer
/// (the whole mesh behind it).
pub fn worker_config(
    peer: &Peer,
    hub_key: &WgPublicKey,
    endpoint: &str,
    worker_key_file: &Path,
) -> Result<String, MeshError> {
    if endpoint.trim().is_empty() {
        return Err(MeshError::NoEndpoint);
    }
    let Some(ip) = &peer.wg_ip else { return Err(MeshError::NotJoined(peer.name.clone())) };
    if peer.wg_public_key.is_none() {
        return Err(MeshError::NotJoined(peer.name.clone()));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Worker {}'s end of the WireGuard mesh (`wisehosting mesh config --worker {}`).",
        peer.name, peer.name
    );
    let _ = writeln!(out, "# Install as /etc/wireguard/wh0.conf on that host and run `wg-quick up wh0`.");
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(out, "Address = {ip}/24");
    let _ = writeln!(out, "PostUp = wg set %i private-key {}", worker_key_file.display());
    let _ = writeln!(out);
    let _ = writeln!(out, "# the control plane");
    let _ = writeln!(out, "[Peer]");
    let _ = writeln!(out, "PublicKey = {hub_key}");
    let _ = writeln!(out, "Endpoint = {}", endpoint.trim());
    let _ = writeln!(out, "AllowedIPs = 10.50.0.0/24");
    let _ = writeln!(out, "PersistentKeepalive = 25");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use wisehosting_crypto::wireguard::WgPrivateKey;

    use super::*;

    fn peer(name: &str, key: Option<&str>, ip: Option<&str>) -> Peer {
        Peer { name: name.into(), wg_public_key: key.map(str::to_string), wg_ip: ip.map(str::to_string) }
    }

    #[test]
    fn the_hub_lists_each_joined_worker_as_a_peer_and_no_private_key() {
        let key = WgPrivateKey::generate().public_key().to_string();
        let text = hub_config(
            Path::new("/etc/wisehosting/wg-private.key"),
            51821,
            &[peer("edge-1", Some(&key), Some("10.50.0.2")), peer("edge-2", None, None)],
        );
        assert!(text.contains("Address = 10.50.0.1/24\nListenPort = 51821\n"), "{text}");
        assert!(
            text.contains(&format!(
                "# worker edge-1\n[Peer]\nPublicKey = {key}\nAllowedIPs = 10.50.0.2/32\n"
            )),
            "{text}"
        );
        assert!(text.contains("# worker edge-2: not joined yet"), "{text}");
        assert!(!text.contains("PrivateKey"), "{text}");
    }

    #[test]
    fn a_worker_config_needs_an_endpoint_and_a_joined_worker() {
        let hub = WgPrivateKey::generate().public_key();
        let key = WgPrivateKey::generate().public_key().to_string();
        let file = Path::new("/var/lib/wisehosting-worker/wg-private.key");
        let joined = peer("edge-1", Some(&key), Some("10.50.0.2"));
        let text = worker_config(&joined, &hub, "paas.example.com:51821", file).expect("config");
        assert!(text.contains(&format!("PublicKey = {hub}\nEndpoint = paas.example.com:51821\n")), "{text}");
        assert!(text.contains("Address = 10.50.0.2/24"), "{text}");
        assert!(matches!(worker_config(&joined, &hub, " ", file), Err(MeshError::NoEndpoint)));
        let err = worker_config(&peer("edge-2", None, None), &hub, "x:1", file)
            .expect_err("not joined")
            .to_string();
        assert!(err.contains("start it once"), "{err}");
    }
}
