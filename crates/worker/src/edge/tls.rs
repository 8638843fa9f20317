//! TLS at the edge router (SPEC §14.7): the certificates the control plane pushes
//! (`edge_certificates`), held in memory only and chosen by SNI — the exact name first, then a
//! one-label wildcard — for connections on `edge.https_listen`. The set is swapped whole, so a
//! change applies to the next handshake and never to a connection already set up.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wisehosting_proto::messages::{EdgeCertificate, EdgeCertificates};

/// What the router holds, by the control plane's id and by name.
#[derive(Default)]
struct Held {
    by_id: HashMap<i64, (Vec<String>, Arc<CertifiedKey>)>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The router's certificates; also its SNI resolver.
#[derive(Default)]
pub struct Certificates {
    held: RwLock<Arc<Held>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").field("held", &self.len()).finish()
    }
}

impl Certificates {
    /// Applies a push: each listed certificate replaces the one with its id, then, when
    /// `retain` is given, the others not in it are dropped. A certificate that does not load (a
    /// broken chain, a key that is not its key) is logged by id and left out; the one it would
    /// have replaced stays.
    pub fn apply(&self, message: &EdgeCertificates) {
        let current = self.snapshot();
        let mut by_id = current.by_id.clone();
        for certificate in &message.certificates {
            match load(certificate) {
                Ok(key) => {
                    let names = certificate
                        .names
                        .iter()
                        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                        .filter(|n| !n.is_empty())
                        .collect();
                    by_id.insert(certificate.id, (names, Arc::new(key)));
                }
                Err(reason) => {
                    tracing::warn!(id = certificate.id, %reason, "ignored a certificate that does not load")
                }
            }
        }
        if let Some(retain) = &message.retain {
            let listed: Vec<i64> = message.certificates.iter().map(|c| c.id).collect();
            by_id.retain(|id, _| retain.contains(id) || listed.contains(id));
        }
        let mut by_name = HashMap::new();
        // Ordered by id, so when two certificates claim one name the same one always wins.
        let mut ids: Vec<&i64> = by_id.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let (names, key) = &by_id[id];
            for name in names {
                by_name.entry(name.clone()).or_insert_with(|| key.clone());
            }
        }
        if let Ok(mut held) = self.held.write() {
            *held = Arc::new(Held { by_id, by_name });
        }
    }

    fn snapshot(&self) -> Arc<Held> {
        self.held.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// How many certificates are held.
    pub fn len(&self) -> usize {
        self.snapshot().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate for `host` (any case, no port).
    pub fn lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        super::table::by_name(&self.snapshot().by_name, host).cloned()
    }
}

impl ResolvesServerCert for Certificates {
    /// No SNI, or a name with no certificate: no certificate, so the handshake fails (the
    /// router has no default certificate to give away another app's names with).
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name()?)
    }
}

/// A pushed certificate as rustls serves it; the reason when it does not load (never the
/// key's text).
fn load(certificate: &EdgeCertificate) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(certificate.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the chain is not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err("the chain has no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.expose().as_bytes())
        .map_err(|_| "the key is not a PEM private key".to_string())?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("the key does not go with the certificate: {e}"))
}

/// The router's TLS settings: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, certificates by
/// SNI from `certificates`.
pub fn server_config(certificates: Arc<Certificates>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
