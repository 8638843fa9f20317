//! Server TLS for the platform's listeners (SPEC §14.7): the public API and worker link
//! (`api_server.tls_cert`/`tls_key`) and the admin console (`admin.tls_cert`/`tls_key`). TLS 1.3
//! only, with rustls and ring (the tree's one provider); ALPN `http/1.1`. [`Reloadable`] keeps
//! the files' paths and swaps in a fresh configuration when asked (on SIGHUP): connections
//! already open keep theirs, the next handshake uses the new certificate, and a pair that does
//! not load leaves the running one in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path} ({key}): {reason}")]
    Cert { key: &'static str, path: String, reason: String },
    #[error("cannot read the private key {path} ({key}): {reason}")]
    Key { key: &'static str, path: String, reason: String },
    #[error("{0} do not make a usable pair: {1}")]
    Config(&'static str, String),
}

/// The config keys a pair of files came from, for errors: (`api_server.tls_cert`, `…tls_key`).
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub cert: &'static str,
    pub key: &'static str,
    pub both: &'static str,
}

pub const API_KEYS: Keys =
    Keys { cert: "api_server.tls_cert", key: "api_server.tls_key", both: "api_server.tls_cert and tls_key" };
pub const ADMIN_KEYS: Keys =
    Keys { cert: "admin.tls_cert", key: "admin.tls_key", both: "admin.tls_cert and admin.tls_key" };

/// A TLS 1.3 server configuration from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path, keys: Keys) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_file_iter(cert).and_then(|iter| iter.collect::<Result<Vec<_>, _>>()).map_err(
            |e| TlsError::Cert { key: keys.cert, path: cert.display().to_string(), reason: e.to_string() },
        )?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            key: keys.cert,
            path: cert.display().to_string(),
            reason: "no certificate in it".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        key: keys.key,
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(keys.both, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .map_err(|e| TlsError::Config(keys.both, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration that can be loaded again from its files.
pub struct Reloadable {
    cert: PathBuf,
    key: PathBuf,
    keys: Keys,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Reloadable {
    pub fn load(cert: &Path, key: &Path, keys: Keys) -> Result<Reloadable, TlsError> {
        let current = RwLock::new(server_config(cert, key, keys)?);
        Ok(Reloadable { cert: cert.to_path_buf(), key: key.to_path_buf(), keys, current })
    }

    /// Loads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.cert, &self.key, self.keys)?;
        if let Ok(mut current) = self.current.write() {
            *current = fresh;
        }
        Ok(())
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        tokio_rustls::TlsAcceptor::from(config)
    }
}

/// Reloads `tls` on every SIGHUP until `shutdown`.
pub fn reload_on_sighup(tls: Arc<Reloadable>, shutdown: tokio_util::sync::CancellationToken) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the TLS certificate is reloaded only by a restart");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangups.recv() => if got.is_none() { return },
            }
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the new TLS certificate was not loaded; the previous one stays in use")
                }
            }
        }
    });
}
