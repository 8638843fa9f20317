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
        "worker {0} has not registered a WireGuard key yet: create it with --wg-public-key (what `wisehosting-worker mesh-key` prints on its host), or start it once (it makes its key and registers it), then run this again"
    )]
    NotJoined(String),
    #[error(
        "mesh.endpoint is not set: give the address workers reach this host's WireGuard at, e.g. paas.example.com:51821"
    )]
    NoEndpoint,
    #[error("{0}")]
    Interface(wisehosting_worker::mesh::MeshError),
    #[error("cannot write the control plane's wg-quick file or turn IPv4 forwarding on: {0}; run it as root")]
    Write(std::io::Error),
    #[error("`wg {args}` failed: {detail}; is mesh.interface ({interface}) this host's WireGuard interface?")]
    Wg { interface: String, args: String, detail: String },
}

/// What a member of the mesh is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Worker,
    /// A central proxy (a Traefik host reaching the workers through the hub).
    Proxy,
}

impl PeerKind {
    /// As stored (`store::mesh::peers`) and as the CLI flag names it (`--worker`, `--proxy`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Worker => "worker",
            PeerKind::Proxy => "proxy",
        }
    }
}

impl TryFrom<String> for PeerKind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "worker" => Ok(PeerKind::Worker),
            "proxy" => Ok(PeerKind::Proxy),
            other => Err(format!("{other:?} is not a kind of mesh peer")),
        }
    }
}

/// One worker or central proxy as the mesh sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Peer {
    #[sqlx(try_from = "String")]
    pub kind: PeerKind,
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
    let _ = writeln!(out, "# worker joins (`wisehosting mesh up` does both).");
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(out, "Address = {HUB_ADDRESS}/24");
    let _ = writeln!(out, "ListenPort = {listen_port}");
    let _ = writeln!(out, "PostUp = wg set %i private-key {}", key_file.display());
    if peers.iter().any(|p| p.kind == PeerKind::Proxy) {
        // The central proxy reaches the workers through this hub.
        let _ = writeln!(out, "PostUp = sysctl -q -w net.ipv4.ip_forward=1");
    }
    for peer in peers {
        let _ = writeln!(out);
        match (&peer.wg_public_key, &peer.wg_ip) {
            (Some(key), Some(ip)) => {
                let _ = writeln!(out, "# {} {}", peer.kind.as_str(), peer.name);
                let _ = writeln!(out, "[Peer]");
                let _ = writeln!(out, "PublicKey = {key}");
                let _ = writeln!(out, "AllowedIPs = {ip}/32");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "# {} {}: not joined yet (no key or address registered)",
                    peer.kind.as_str(),
                    peer.name
                );
            }
        }
    }
    out
}

/// What `wisehosting mesh up` did.
#[derive(Debug, Default, PartialEq)]
pub struct MeshUp {
    /// The interface was brought up now (it was not before).
    pub brought_up: bool,
    pub peers_added: usize,
    pub peers_removed: usize,
    /// Its peers now: one per joined worker and central proxy.
    pub peers: usize,
    /// IPv4 forwarding was off and is on now (a central proxy reaches workers through here).
    pub forwarding_turned_on: bool,
}

/// Brings the control plane's interface `interface` up from its rendered `wg-quick` file,
/// unless this host has it, then makes its peers exactly the joined workers and central
/// proxies (`wg set`), and turns IPv4 forwarding on when there is a proxy: run after one
/// joins (`worker create --wg-public-key`, `mesh proxy add`) or changes its key.
pub async fn up(
    interface: &str,
    userspace: Option<&Path>,
    key_file: &Path,
    listen_port: u16,
    peers: &[Peer],
) -> Result<MeshUp, MeshError> {
    hub_public_key(key_file)?;
    // wg-quick reads the file once; it lives no longer than that. It holds no secret.
    let dir = tempfile::tempdir().map_err(MeshError::Write)?;
    let file = dir.path().join(format!("{interface}.conf"));
    let quick = wisehosting_worker::mesh::WgQuick::new(&file, userspace).map_err(MeshError::Interface)?;
    let mut done = MeshUp::default();
    if !quick.is_up().await.map_err(MeshError::Interface)? {
        std::fs::write(&file, hub_config(key_file, listen_port, peers)).map_err(MeshError::Write)?;
        done.brought_up = quick.up().await.map_err(MeshError::Interface)?;
    }
    let wanted: Vec<(&str, &str)> = peers
        .iter()
        .filter_map(|p| Some((p.wg_public_key.as_deref()?, p.wg_ip.as_deref()?)))
        .filter(|(_, ip)| ip.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .collect();
    let present = wg(interface, &["show", interface, "allowed-ips"]).await?;
    let present: Vec<(String, String)> = present
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next().unwrap_or_default().to_string()))
        })
        .collect();
    for (key, ip) in &wanted {
        let allowed = format!("{ip}/32");
        if present.iter().any(|(k, a)| k == key && *a == allowed) {
            continue;
        }
        WgPublicKey::parse(key).map_err(|e| MeshError::Wg {
            interface: interface.into(),
            args: "set".into(),
            detail: format!("a worker's public key does not read: {e}"),
        })?;
        wg(interface, &["set", interface, "peer", key, "allowed-ips", &allowed]).await?;
        done.peers_added += 1;
    }
    for (key, _) in &present {
        if !wanted.iter().any(|(k, _)| k == key) {
            wg(interface, &["set", interface, "peer", key, "remove"]).await?;
            done.peers_removed += 1;
        }
    }
    done.peers = wanted.len();
    if peers.iter().any(|p| p.kind == PeerKind::Proxy) {
        // A central proxy reaches the workers through this host.
        const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(FORWARDING).map_err(MeshError::Write)?.trim() != "1" {
            std::fs::write(FORWARDING, "1").map_err(MeshError::Write)?;
            done.forwarding_turned_on = true;
        }
    }
    Ok(done)
}

/// Runs `wg` with `args`; its standard output.
async fn wg(interface: &str, args: &[&str]) -> Result<String, MeshError> {
    let out = tokio::process::Command::new("wg")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| {
            MeshError::Interface(wisehosting_worker::mesh::MeshError::Tool { tool: "wg", source })
        })?;
    if !out.status.success() {
        return Err(MeshError::Wg {
            interface: interface.into(),
            args: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A worker's or a central proxy's `wg-quick` file: its address, its own key file, and the hub
/// as its one peer (the whole mesh behind it).
pub fn spoke_config(
    peer: &Peer,
    hub_key: &WgPublicKey,
    endpoint: &str,
    key_file: &Path,
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
        "# {} {}'s end of the WireGuard mesh (`wisehosting mesh config --{} {}`).",
        match peer.kind {
            PeerKind::Proxy => "Central proxy",
            PeerKind::Worker => "Worker",
        },
        peer.name,
        peer.kind.as_str(),
        peer.name
    );
    let _ = writeln!(out, "# Install as /etc/wireguard/wh0.conf on that host and run `wg-quick up wh0`.");
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(out, "Address = {ip}/24");
    let _ = writeln!(out, "PostUp = wg set %i private-key {}", key_file.display());
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
        Peer {
            kind: PeerKind::Worker,
            name: name.into(),
            wg_public_key: key.map(str::to_string),
            wg_ip: ip.map(str::to_string),
        }
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
    fn a_central_proxy_is_a_peer_of_the_hub_which_then_forwards_to_the_workers() {
        let key = WgPrivateKey::generate().public_key().to_string();
        let worker = peer("edge-1", Some(&key), Some("10.50.0.2"));
        let file = Path::new("/etc/wisehosting/wg-private.key");
        assert!(
            !hub_config(file, 51821, std::slice::from_ref(&worker)).contains("ip_forward"),
            "no proxy, no forwarding"
        );
        let proxy = Peer { kind: PeerKind::Proxy, ..peer("central", Some(&key), Some("10.50.0.3")) };
        let hub = hub_config(file, 51821, &[worker, proxy.clone()]);
        assert!(hub.contains("PostUp = sysctl -q -w net.ipv4.ip_forward=1\n"), "{hub}");
        assert!(hub.contains("# proxy central\n[Peer]\n"), "{hub}");
        let spoke =
            spoke_config(&proxy, &WgPrivateKey::generate().public_key(), "paas.example.com:51821", file)
                .expect("config");
        assert!(spoke.starts_with("# Central proxy central's end of the WireGuard mesh (`wisehosting mesh config --proxy central`)."), "{spoke}");
        assert!(spoke.contains("Address = 10.50.0.3/24\n"), "{spoke}");
    }

    #[test]
    fn a_worker_config_needs_an_endpoint_and_a_joined_worker() {
        let hub = WgPrivateKey::generate().public_key();
        let key = WgPrivateKey::generate().public_key().to_string();
        let file = Path::new("/var/lib/wisehosting-worker/wg-private.key");
        let joined = peer("edge-1", Some(&key), Some("10.50.0.2"));
        let text = spoke_config(&joined, &hub, "paas.example.com:51821", file).expect("config");
        assert!(text.contains(&format!("PublicKey = {hub}\nEndpoint = paas.example.com:51821\n")), "{text}");
        assert!(text.contains("Address = 10.50.0.2/24"), "{text}");
        assert!(matches!(spoke_config(&joined, &hub, " ", file), Err(MeshError::NoEndpoint)));
        let err =
            spoke_config(&peer("edge-2", None, None), &hub, "x:1", file).expect_err("not joined").to_string();
        assert!(err.contains("start it once"), "{err}");
    }
}
