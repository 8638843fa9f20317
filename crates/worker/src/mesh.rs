//! The worker's place in the WireGuard mesh (SPEC §11): its key pair, made here at first start
//! and kept in `<data_dir>/wg-private.key` (mode 0600; the private key never leaves this host —
//! the rendered `wg-quick` config points at the file), the public key sent when it registers,
//! and the mesh address the control plane gives back (`workers.wg_ip`), which apps are then
//! published on when this host has it (the interface is up). [`WgQuick`] brings an interface
//! up from its `wg-quick` file — the kernel's WireGuard where there is one, a userspace one
//! otherwise — for the agent (`mesh.config_file`) and the control plane (`wisehosting mesh up`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use wisehosting_crypto::wireguard::{WgPrivateKey, WgPublicKey};

/// The file of the worker's private key, in its data dir.
pub const KEY_FILE: &str = "wg-private.key";

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot read or make the WireGuard key {path}: {source}; check that this user may write there")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the WireGuard key {path} does not read: {reason}; remove it and a new one is made at the next start (then render the mesh configs again)"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "the wg-quick file {path} {reason}; name it after its interface, e.g. /etc/wisehosting/wh0.conf for wh0 (1-15 letters, digits or _=+.-, then .conf)"
    )]
    InterfaceFile { path: PathBuf, reason: &'static str },
    #[error("cannot run {tool}: {source}; install wireguard-tools and iproute2")]
    Tool { tool: &'static str, source: std::io::Error },
    #[error(
        "`wg-quick up {path}` failed: {detail}; where the kernel has no WireGuard module set mesh.userspace to a userspace implementation (wireguard-go, boringtun-cli, wisehosting-wg-userspace)"
    )]
    Up { path: PathBuf, detail: String },
}

/// The worker's public key, from its key file (made now when there is none).
pub fn public_key(data_dir: &Path) -> Result<WgPublicKey, MeshError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| MeshError::Io { path: data_dir.to_path_buf(), source })?;
    key_file(&data_dir.join(KEY_FILE))
}

/// The public key of the private key in `path`, which is made now (mode 0600, never
/// overwriting anything) when there is none. The control plane's key file is kept the same way.
pub fn key_file(path: &Path) -> Result<WgPublicKey, MeshError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = path.to_path_buf();
    let io = |source| MeshError::Io { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => WgPrivateKey::from_base64(&text)
            .map(|key| key.public_key())
            .map_err(|e| MeshError::Malformed { path: path.clone(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = WgPrivateKey::generate();
            let mut file = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            file.write_all(format!("{}\n", key.to_base64()).as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), public_key = %key.public_key(), "made a WireGuard key");
            Ok(key.public_key())
        }
        Err(e) => Err(io(e)),
    }
}

/// A WireGuard interface as its `wg-quick` file describes it; the file's name is the
/// interface's (`wh0.conf` → `wh0`).
#[derive(Debug, Clone)]
pub struct WgQuick {
    file: PathBuf,
    name: String,
    userspace: Option<PathBuf>,
}

impl WgQuick {
    /// The interface of `file`, brought up with `userspace` as `wg-quick`'s userspace
    /// implementation (which it starts only when the kernel has no WireGuard).
    pub fn new(file: &Path, userspace: Option<&Path>) -> Result<WgQuick, MeshError> {
        let bad = |reason| MeshError::InterfaceFile { path: file.to_path_buf(), reason };
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".conf"))
            .ok_or_else(|| bad("is not named <interface>.conf"))?;
        let valid = (1..=15).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'+' | b'.' | b'-'));
        if !valid {
            return Err(bad("does not name a valid interface"));
        }
        if !file.is_absolute() {
            return Err(bad("is not an absolute path"));
        }
        Ok(WgQuick {
            file: file.to_path_buf(),
            name: name.to_string(),
            userspace: userspace.map(Path::to_path_buf),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this host (this network namespace) has the interface.
    pub async fn is_up(&self) -> Result<bool, MeshError> {
        let out = tokio::process::Command::new("ip")
            .args(["link", "show", "dev", &self.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map_err(|source| MeshError::Tool { tool: "ip", source })?;
        Ok(out.success())
    }

    /// Brings the interface up with `wg-quick up`, unless this host has it already; `true`
    /// when it was brought up now.
    pub async fn up(&self) -> Result<bool, MeshError> {
        if self.is_up().await? {
            return Ok(false);
        }
        let mut command = tokio::process::Command::new("wg-quick");
        command.arg("up").arg(&self.file).stdin(std::process::Stdio::null()).kill_on_drop(true);
        if let Some(userspace) = &self.userspace {
            command.env("WG_QUICK_USERSPACE_IMPLEMENTATION", userspace);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
            .await
            .map_err(|_| MeshError::Up {
                path: self.file.clone(),
                detail: "it did not finish within 60 s".into(),
            })?
            .map_err(|source| MeshError::Tool { tool: "wg-quick", source })?;
        if !out.status.success() {
            // wg-quick echoes each command it runs; the last lines say what failed. The file
            // holds no secret (the private key is loaded from its own file).
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let detail = lines[lines.len().saturating_sub(3)..].join(" / ");
            return Err(MeshError::Up { path: self.file.clone(), detail });
        }
        tracing::info!(interface = %self.name, "brought the WireGuard mesh interface up");
        Ok(true)
    }
}

/// The mesh address the control plane gave this worker, as far as this host has it.
#[derive(Debug, Default)]
pub struct MeshAddress(RwLock<Option<IpAddr>>);

impl MeshAddress {
    pub fn set(&self, ip: Option<IpAddr>) {
        if let Ok(mut held) = self.0.write() {
            *held = ip;
        }
    }

    /// The address to publish apps on besides loopback: the control plane's, when an
    /// interface of this host holds it (a socket binds to it).
    pub fn published(&self) -> Option<IpAddr> {
        let ip = self.0.read().ok().and_then(|held| *held)?;
        std::net::TcpListener::bind((ip, 0)).is_ok().then_some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_to_the_worker_and_read_back_the_same() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let first = public_key(dir.path()).expect("made");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(public_key(dir.path()).expect("read"), first, "the same key at the next start");
        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let err = public_key(dir.path()).expect_err("malformed").to_string();
        assert!(err.contains("remove it"), "{err}");
    }

    #[test]
    fn the_interface_is_named_by_its_wg_quick_file() {
        let quick = WgQuick::new(Path::new("/etc/wisehosting/wh0.conf"), None).expect("valid");
        assert_eq!(quick.name(), "wh0");
        for (file, reason) in [
            ("/etc/wisehosting/wh0", "is not named"),
            ("/etc/wisehosting/a-name-that-is-far-too-long.conf", "does not name a valid"),
            ("/etc/wisehosting/wh 0.conf", "does not name a valid"),
            ("wh0.conf", "is not an absolute path"),
        ] {
            let err = WgQuick::new(Path::new(file), None).expect_err(file).to_string();
            assert!(err.contains(reason) && err.contains("name it after its interface"), "{file}: {err}");
        }
    }

    #[tokio::test]
    async fn an_interface_this_host_has_is_left_as_it_is() {
        // Loopback is up on every host: `up` finds it and runs no wg-quick.
        let quick = WgQuick::new(Path::new("/nonexistent/lo.conf"), None).expect("valid");
        assert!(quick.is_up().await.expect("ip"));
        assert!(!quick.up().await.expect("already up"), "nothing was brought up");
        let absent = WgQuick::new(Path::new("/nonexistent/whabsent0.conf"), None).expect("valid");
        assert!(!absent.is_up().await.expect("ip"));
        let err = absent.up().await.expect_err("no such file").to_string();
        assert!(
            err.contains("wg-quick up /nonexistent/whabsent0.conf") && err.contains("mesh.userspace"),
            "{err}"
        );
    }

    #[test]
    fn apps_are_published_on_the_mesh_address_only_when_this_host_has_it() {
        let mesh = MeshAddress::default();
        assert_eq!(mesh.published(), None);
        mesh.set(Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(mesh.published(), Some(IpAddr::from([127, 0, 0, 1])));
        // TEST-NET-1: no interface of this host has it.
        mesh.set(Some(IpAddr::from([192, 0, 2, 7])));
        assert_eq!(mesh.published(), None);
    }
}
