//! TXT lookups for custom-domain verification, through `hickory-resolver`: the configured
//! recursive server (`domains.dns_resolver`) or the system's (`/etc/resolv.conf`), UDP with
//! TCP when an answer is truncated, three tries, no cache (a record the user just published
//! is read fresh), no hosts file. A name that does not exist, or has no TXT record, is an
//! empty answer, not an error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS server {server} did not answer in time")]
    Timeout { server: String },
    #[error("the DNS server {server} could not answer ({reason}); try again later")]
    Failed { server: String, reason: String },
    #[error("{0:?} cannot be looked up: {1}")]
    BadName(String, &'static str),
}

#[derive(Clone)]
pub struct TxtResolver {
    resolver: Arc<TokioResolver>,
    /// Which server, for messages.
    server: String,
}

impl std::fmt::Debug for TxtResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxtResolver").field("server", &self.server).finish()
    }
}

/// The one resolver builder (shared with the worker's repository check).
pub use wisehosting_worker::deploy::resolver;

impl TxtResolver {
    /// Asks `server`, or with none the system's servers.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<TxtResolver, String> {
        let resolver = resolver(server, |options| {
            options.timeout = timeout;
            options.attempts = 3;
        })?;
        let server = server.map_or_else(|| "of /etc/resolv.conf".to_string(), |s| s.to_string());
        Ok(TxtResolver { resolver: Arc::new(resolver), server })
    }

    /// Every TXT record of `name` (each record's strings joined); empty when the name does not
    /// exist or has none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let bare = name.trim_end_matches('.');
        if bare.is_empty() || bare.len() > 253 || bare.split('.').any(|l| l.is_empty() || l.len() > 63) {
            return Err(DnsError::BadName(name.to_string(), "not a domain name"));
        }
        // Fully qualified: no search domains are appended.
        match self.resolver.txt_lookup(format!("{bare}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(NetError::Timeout) => Err(DnsError::Timeout { server: self.server.clone() }),
            Err(e) => Err(DnsError::Failed { server: self.server.clone(), reason: e.to_string() }),
        }
    }
}
