//! The worker's place in the WireGuard mesh (SPEC §11): its key pair, made here at first start
//! and kept in `<data_dir>/wg-private.key` (mode 0600; the private key never leaves this host —
//! the rendered `wg-quick` config points at the file), the public key sent when it registers,
//! and the mesh address the control plane gives back (`workers.wg_ip`), which apps are then
//! published on when this host has it (the interface is up).

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
