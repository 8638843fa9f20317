//! The SSRF-guarded client: the one way the control plane sends requests to URLs users give
//! it (webhooks today).
//!
//! A URL must be `http` or `https`, with no user info. Its host is canonicalized by the URL
//! parser (`127.1`, `2130706433`, `0x7f000001` are all 127.0.0.1; IPv6 brackets; IDNA), and
//! every address it is or resolves to must be public ([`is_public_ip`]: not loopback,
//! private, link-local — cloud metadata —, CGNAT, multicast, reserved, documentation, NAT64 or
//! 6to4 wrapping of those, IPv4-mapped IPv6 checked as IPv4; the mesh is private). Names are
//! resolved here, by `hickory-resolver` (A and AAAA, no hosts file, no cache), and the
//! client connects to the addresses that were checked: reqwest asks [`GuardedResolver`],
//! which resolves and checks in one step, so no second resolution happens between check and
//! connect (DNS rebinding). IP literals never reach a resolver, so [`Guard::check`] checks
//! them before any request. No redirects are followed, no proxy is read from the
//! environment, responses are read up to [`MAX_RESPONSE_BYTES`], and every request has a
//! timeout. `outbound.allow_private_networks` lifts the address rule (lab setups), never the
//! scheme rule, and never for unspecified or multicast addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

pub use wisehosting_worker::deploy::is_public_ip;

/// The most of a response body read (the rest is dropped).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL is refused or a request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("{0}")]
    NotAllowed(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}")]
    Request(String),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

impl OutboundError {
    /// True when the URL itself is refused (422 `url_not_allowed` at creation).
    pub fn is_not_allowed(&self) -> bool {
        matches!(self, OutboundError::NotAllowed(_))
    }
}

/// What the address rule allows.
#[derive(Debug, Clone)]
struct Policy {
    allow_private: bool,
    /// The platform's own addresses: refused even when public (or private ones allowed).
    denied: Arc<[IpAddr]>,
}

impl Policy {
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return false;
        }
        if self.denied.iter().any(|d| d.to_canonical() == ip) {
            return false;
        }
        self.allow_private || is_public_ip(ip)
    }
}

/// Resolves names for reqwest and checks every address before it is used.
#[derive(Clone)]
pub struct GuardedResolver {
    resolver: Arc<TokioResolver>,
    policy: Policy,
}

impl GuardedResolver {
    async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, OutboundError> {
        let name = host.trim_end_matches('.');
        let local =
            name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost");
        if local && !self.policy.allow_private {
            return Err(OutboundError::NotAllowed(format!("{host} is a local name")));
        }
        let found = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| OutboundError::Resolve { host: host.to_string(), reason: e.to_string() })?;
        let addrs: Vec<IpAddr> = found.iter().collect();
        if addrs.is_empty() {
            return Err(OutboundError::Resolve { host: host.to_string(), reason: "no address".into() });
        }
        // Every answer must pass: a name with one public and one private address is refused
        // (the client could pick either).
        if let Some(bad) = addrs.iter().find(|ip| !self.policy.allows(**ip)) {
            return Err(OutboundError::NotAllowed(format!(
                "{host} resolves to {bad}, which is not a public address"
            )));
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_checked(name.as_str()).await?;
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A response: its status and the start of its body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The guarded client; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    resolver: GuardedResolver,
    client: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("allow_private", &self.resolver.policy.allow_private).finish()
    }
}

impl Guard {
    /// A guard resolving with `dns_server` (or the system's configuration) under the rule
    /// `allow_private` sets; requests time out after `timeout`.
    pub fn new(
        dns_server: Option<SocketAddr>,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<Guard, String> {
        Self::with_denied(dns_server, allow_private, Vec::new(), timeout)
    }

    /// Like [`Guard::new`], refusing `denied` too: the platform's own addresses.
    pub fn with_denied(
        dns_server: Option<SocketAddr>,
        allow_private: bool,
        denied: Vec<IpAddr>,
        timeout: Duration,
    ) -> Result<Guard, String> {
        let resolver = crate::dns::resolver(dns_server, |options| {
            options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            options.timeout = Duration::from_secs(3);
            options.attempts = 2;
        })?;
        let policy = Policy { allow_private, denied: denied.into() };
        let resolver = GuardedResolver { resolver: Arc::new(resolver), policy };
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver.clone()))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("WiseHosting-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Guard { resolver, client, timeout })
    }

    /// Checks a URL: the scheme, no user info, and the host — an IP literal against the rule,
    /// a name resolved and every address checked. The parsed URL when it passes.
    pub async fn check(&self, raw: &str) -> Result<Url, OutboundError> {
        let url = self.parse_literal_checked(raw)?;
        if let Some(Host::Domain(name)) = url.host() {
            self.resolver.resolve_checked(name).await?;
        }
        Ok(url)
    }

    /// `raw` read by [`parse`], with a host that is an IP literal checked here (the resolver
    /// never sees literals); a name is left to the resolver.
    fn parse_literal_checked(&self, raw: &str) -> Result<Url, OutboundError> {
        let url = parse(raw)?;
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(Host::Domain(_)) | None => {}
        }
        Ok(url)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), OutboundError> {
        if self.resolver.policy.allows(ip) {
            Ok(())
        } else {
            Err(OutboundError::NotAllowed(format!("{ip} is not a public address, or is the platform's own")))
        }
    }

    /// POSTs `body` with `headers` to `raw`, checked as [`Guard::check`] does at send time
    /// (a name is resolved and checked again by the client's resolver, which is the lookup
    /// the connection uses). A redirect is an answer like any other (3xx), never followed.
    pub async fn post(
        &self,
        raw: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<Answer, OutboundError> {
        let url = self.parse_literal_checked(raw)?;
        let mut request = self.client.post(url).header("content-type", "application/json").body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send().await.map_err(|e| describe(&e, self.timeout))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())])
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer { status, body })
    }
}

/// The URL rule without addresses: `http(s)`, a host, no user info, not too long.
pub fn parse(raw: &str) -> Result<Url, OutboundError> {
    let refuse = |m: &str| Err(OutboundError::NotAllowed(m.to_string()));
    if raw.len() > MAX_URL_LEN {
        return refuse("the URL is longer than 2048 characters");
    }
    let Ok(url) = Url::parse(raw.trim()) else {
        return refuse("the URL does not parse; give one like https://example.com/hooks");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::NotAllowed(format!(
            "the scheme {}: is not allowed; use https:// (or http://)",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse(
            "the URL has user info (user@host); put credentials in the path or a query, not before the host",
        );
    }
    if url.host().is_none() {
        return refuse("the URL has no host");
    }
    Ok(url)
}

/// The cause of a failed request, without the URL's query (it may hold a token).
fn describe(e: &reqwest::Error, timeout: Duration) -> OutboundError {
    use std::error::Error as _;
    // The innermost cause says the most; a refusal of our resolver is passed on as it is.
    let mut detail = None;
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(refused) = inner.downcast_ref::<OutboundError>() {
            return refused.clone();
        }
        detail = Some(inner.to_string());
        source = inner.source();
    }
    if e.is_timeout() {
        return OutboundError::Timeout(timeout);
    }
    let what = if e.is_connect() { "cannot connect" } else { "the request failed" };
    OutboundError::Request(detail.map_or_else(|| what.to_string(), |d| format!("{what}: {d}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow_private: bool) -> Guard {
        // A resolver that is never asked in these tests (literals only).
        Guard::new(Some(SocketAddr::from(([127, 0, 0, 1], 9))), allow_private, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn every_spelling_of_a_private_literal_is_refused_before_connecting() {
        let g = guard(false);
        for url in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://10.50.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let refused = g.check(url).await;
            assert!(matches!(refused, Err(OutboundError::NotAllowed(_))), "{url}: {refused:?}");
            let refused = g.post(url, &[], String::new()).await;
            assert!(matches!(refused, Err(OutboundError::NotAllowed(_))), "{url} at send time: {refused:?}");
        }
    }

    #[tokio::test]
    async fn other_schemes_and_user_info_are_refused_whatever_the_rule() {
        let g = guard(true);
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
            "javascript:alert(1)",
            "http://user@127.0.0.1/",
            "http://user:pw@example.com/",
            "not a url",
            "http://",
            "http://:80/",
        ] {
            assert!(matches!(g.check(url).await, Err(OutboundError::NotAllowed(_))), "{url}");
        }
        let long = g.check(&format!("https://example.com/{}", "a".repeat(3000))).await;
        assert!(
            matches!(long, Err(OutboundError::NotAllowed(ref m)) if m.contains("longer than 2048")),
            "{long:?}"
        );
    }

    #[tokio::test]
    async fn the_platforms_own_addresses_are_refused_even_when_public_or_private_ones_are_allowed() {
        for allow_private in [false, true] {
            let g = Guard::with_denied(
                Some(SocketAddr::from(([127, 0, 0, 1], 9))),
                allow_private,
                vec!["93.184.216.34".parse().unwrap_or_else(|e| panic!("{e}"))],
                Duration::from_secs(1),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(g.check("https://93.184.216.34/hook").await.is_err(), "{allow_private}");
            assert!(g.check("https://[::ffff:93.184.216.34]/hook").await.is_err(), "{allow_private}");
            assert!(g.check("https://93.184.216.35/hook").await.is_ok(), "{allow_private}");
        }
    }

    #[tokio::test]
    async fn public_literals_pass_and_the_lab_rule_lets_private_ones_through_but_not_unspecified() {
        assert!(guard(false).check("https://93.184.216.34/hook").await.is_ok());
        assert!(guard(false).check("https://[2606:4700::1111]/hook").await.is_ok());
        let lab = guard(true);
        assert!(lab.check("http://127.0.0.1:9/").await.is_ok());
        assert!(lab.check("http://0.0.0.0/").await.is_err());
        assert!(lab.check("http://[ff02::1]/").await.is_err());
    }
}
