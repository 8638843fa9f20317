//! Typed configuration of the control plane.
//!
//! Sources, later ones winning: built-in defaults, the YAML file at `CONFIG_PATH` (default
//! `/etc/wisehosting/config.yaml`), environment variables `WH__<SECTION>__<KEY>` (for example
//! `WH__API_SERVER__PORT=8081`, `WH__SUBDOMAIN_BASE=apps.example.com`), and for secrets the
//! systemd credentials in `$CREDENTIALS_DIRECTORY/<name>`. Unknown keys and bad values are
//! refused with the key's dotted name and what is expected. Secrets are [`Secret`]s: a config
//! dump shows `[redacted]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wisehosting_crypto::Secret;
use yaml_serde::{Mapping, Value};

pub mod acme;
pub mod git;
mod layers;
mod observe;

pub use observe::{AlertsConfig, OutboundConfig, SmtpConfig, SmtpTls, UsageConfig};

use layers::{collect_keys, from_tree, merge, overlay_credentials, overlay_env, parse_yaml, read_yaml};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/wisehosting/config.yaml";
/// The prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "WH__";
/// The shortest master secret accepted: 32 bytes of key material.
pub const MIN_SECRET_LEN: usize = 32;

/// systemd credential names and the keys they set (SPEC §2).
pub const CREDENTIALS: &[(&str, &[&str])] = &[
    ("api_server_secret", &["api_server", "secret"]),
    ("database_password", &["database", "password"]),
    ("internal_api_token", &["internal_api", "token"]),
    ("metrics_token", &["api_server", "metrics_token"]),
    ("proxy_token", &["proxy", "token"]),
    ("cloudflare_api_token", &["cloudflare", "api_token"]),
    ("worker_join_secret", &["workers", "join_secret"]),
    ("google_oauth_client_secret", &["oidc", "client_secret"]),
    ("smtp_password", &["smtp", "password"]),
    ("github_oauth_client_secret", &["git_providers", "github", "client_secret"]),
    ("gitlab_oauth_client_secret", &["git_providers", "gitlab", "client_secret"]),
    ("bitbucket_oauth_client_secret", &["git_providers", "bitbucket", "client_secret"]),
    ("codeberg_oauth_client_secret", &["git_providers", "codeberg", "client_secret"]),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api_server: ApiServerConfig,
    pub database: DatabaseConfig,
    pub internal_api: InternalApiConfig,
    pub proxy: ProxyConfig,
    pub workers: WorkersConfig,
    /// Apps get `<slug>.<subdomain_base>` unless their worker has a zone.
    pub subdomain_base: String,
    /// The port apps are reached at (the edge router, or a proxy in front of it) in the URLs
    /// the platform shows; unset for the scheme's default. `wisehosting dev` sets its edge
    /// router's, 8080.
    pub apps_port: Option<u16>,
    pub heartbeat_interval_secs: u64,
    /// Lifetime of worker JWTs; workers renew 2 minutes before expiry.
    pub worker_token_ttl_secs: u64,
    /// Worker registrations and token refreshes allowed per client IP per minute.
    pub worker_auth_per_minute: u32,
    /// API requests one signed-in user may make per minute (over it: 429 with `Retry-After`).
    pub user_requests_per_minute: u32,
    /// API requests one client address may make per minute, signed in or not.
    pub ip_requests_per_minute: u32,
    /// Sign-in starts and callbacks one client address may make per minute (at least 30).
    pub sign_in_per_minute: u32,
    /// Sign-in with an OpenID Connect provider (Google by default).
    pub oidc: OidcConfig,
    /// Single-machine mode (`wisehosting dev` sets it): enables `POST /api/auth/dev-login` and
    /// local repositories. Refused unless every listener is on loopback.
    pub single_machine: bool,
    pub domains: DomainsConfig,
    pub cloudflare: CloudflareConfig,
    pub log: LogConfig,
    /// Plans: `free`'s limits overridden, and plans of this installation's own (SPEC §9).
    pub plans: Vec<crate::plans::PlanConfig>,
    pub alerts: AlertsConfig,
    pub usage: UsageConfig,
    /// Requests to URLs users give (webhooks), through the SSRF guard.
    pub outbound: OutboundConfig,
    /// E-mail for alerts; off while `smtp.host` is empty.
    pub smtp: SmtpConfig,
    /// The operators' console, `wisehosting-admin serve` (SPEC §14.4).
    pub admin: AdminConfig,
    /// Git provider accounts users link to pick and clone repositories (SPEC §14.8).
    pub git_providers: git::GitProvidersConfig,
    /// Certificates for verified custom domains (SPEC §14.7).
    pub acme: acme::AcmeConfig,
    /// The platform's own wildcard certificate, from files or by DNS-01.
    pub platform_certificate: acme::PlatformCertificateConfig,
    /// The WireGuard mesh (SPEC §11): what `wisehosting mesh config` renders.
    pub mesh: MeshConfig,
    /// Moving apps off workers that are gone (SPEC §14.5).
    pub scheduler: SchedulerConfig,
    /// Single-machine mode only: the local worker's edge router (`listen`, `metrics_listen`,
    /// `https_listen`), over `wisehosting dev`'s own values (SPEC §14.7). A worker on its own
    /// host reads `edge:` from its own config.
    pub edge: Option<wisehosting_worker::config::EdgeConfig>,
}

/// Rescheduling: how long a worker may be offline before its apps are deployed elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Seconds since a worker's last heartbeat after which its apps are deployed again on
    /// another online worker of their zone (the worker removes its copies when it returns).
    pub reschedule_after_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { reschedule_after_secs: 30 }
    }
}

/// The WireGuard mesh: where workers reach the control plane's end, and its key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// `host:port` workers reach this host's WireGuard at (e.g. `paas.example.com:51821`).
    pub endpoint: String,
    /// The UDP port the control plane's WireGuard listens on.
    pub listen_port: u16,
    /// The control plane's WireGuard private key, made by `wisehosting mesh config` when
    /// missing; it never leaves this host.
    pub private_key_file: PathBuf,
    /// The control plane's WireGuard interface, which `wisehosting mesh up` brings up and
    /// keeps one peer per worker on.
    pub interface: String,
    /// A userspace WireGuard (`wireguard-go`, `boringtun-cli`, `wisehosting-wg-userspace`)
    /// that `wg-quick` starts when the kernel has no WireGuard module.
    pub userspace: Option<PathBuf>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            listen_port: 51821,
            private_key_file: PathBuf::from("/etc/wisehosting/wg-private.key"),
            interface: "wh0".into(),
            userspace: None,
        }
    }
}

/// `wisehosting-admin serve`: where it listens and how it reaches the internal API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Loopback unless a certificate is configured: the console is for operators on this
    /// machine (or through an SSH tunnel).
    pub listen: SocketAddr,
    /// The control plane's internal API.
    pub internal_api_url: String,
    /// PEM certificate chain and key: with both, the console speaks only HTTPS (TLS 1.3) and
    /// may listen beyond loopback.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            internal_api_url: "http://127.0.0.1:9091".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl AdminConfig {
    fn check(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "admin.tls_cert and admin.tls_key go together; set both for HTTPS or neither".into(),
                ));
            }
            (None, None) if !self.listen.ip().to_canonical().is_loopback() => {
                return Err(ConfigError::Invalid(format!(
                    "admin.listen {} is not a loopback address; without admin.tls_cert and admin.tls_key the console listens on loopback only (the default is 127.0.0.1:9443)",
                    self.listen
                )));
            }
            _ => {}
        }
        let url = url::Url::parse(&self.internal_api_url).ok().filter(|u| u.scheme() == "http");
        let loopback = url.as_ref().and_then(|u| u.host()).is_some_and(|h| match h {
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
            url::Host::Domain(d) => d == "localhost",
        });
        if !loopback {
            return Err(ConfigError::Invalid(format!(
                "admin.internal_api_url {:?} is not an http:// URL on loopback; the internal API listens only there (the default is http://127.0.0.1:9091)",
                self.internal_api_url
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// The recursive DNS server custom-domain verification asks (`ip` or `ip:port`); empty for
    /// the first `nameserver` of /etc/resolv.conf.
    pub dns_resolver: String,
    /// How long one DNS question may take before it is asked again (three tries in all).
    pub dns_timeout_ms: u64,
    /// Accept `*.example.com` (one leading wildcard label) as a custom domain.
    pub allow_wildcards: bool,
    /// Domain adds and verifications allowed per user per minute (each may ask DNS or
    /// Cloudflare).
    pub changes_per_minute: u32,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        Self {
            dns_resolver: String::new(),
            dns_timeout_ms: 2000,
            allow_wildcards: false,
            changes_per_minute: 20,
        }
    }
}

impl DomainsConfig {
    /// `dns_resolver` as a socket address (port 53 when none is given); `None` for the system's.
    pub fn resolver_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_dns_server("domains.dns_resolver", &self.dns_resolver)
    }
}

/// A DNS server as `ip` or `ip:port` (port 53 when none is given); empty for none.
fn parse_dns_server(key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| Some(SocketAddr::new(ip, 53)))
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "{key} {text:?} is not an IP address or ip:port; give one like 1.1.1.1 or 127.0.0.1:5353, or leave it empty for /etc/resolv.conf"
            ))
        })
}

/// Sign-in with OpenID Connect (SPEC §14.1). The redirect URI to register with the provider is
/// `<api_server.public_url>/api/auth/google/callback`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider; its discovery document is `<issuer_url>/.well-known/openid-configuration`.
    /// `http://` only to a loopback address (tests).
    pub issuer_url: String,
    /// The OAuth client id; empty turns sign-in with the provider off.
    pub client_id: String,
    /// The OAuth client secret (credential `google_oauth_client_secret`).
    pub client_secret: Secret,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer_url: "https://accounts.google.com".into(),
            client_id: String::new(),
            client_secret: Secret::default(),
        }
    }
}

impl OidcConfig {
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }

    fn check(&self, public_url: Option<&str>) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if !https_or_loopback_http(&self.issuer_url) {
            return Err(ConfigError::Invalid(format!(
                "oidc.issuer_url {:?} must be an https:// URL (http:// only to a loopback address, for tests); Google's is https://accounts.google.com",
                self.issuer_url
            )));
        }
        if public_url.is_none_or(|u| u.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "oidc.client_id is set but api_server.public_url is not; set it to the URL users open (the redirect URI is <public_url>/api/auth/google/callback)".into(),
            ));
        }
        if self.client_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "oidc.client_id is set but its secret is not; put it in the systemd credential google_oauth_client_secret (or oidc.client_secret)".into(),
            ));
        }
        Ok(())
    }
}

/// An `https://` URL, or `http://` to a loopback address (tests' stand-in services).
pub fn https_or_loopback_http(url: &str) -> bool {
    let url = url.trim_end_matches('/');
    let loopback_http = url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    url.strip_prefix("https://").is_some_and(|rest| !rest.is_empty()) || loopback_http
}

/// Cloudflare for SaaS: with both `zone_id` and `api_token` set, each custom domain is also
/// registered as a custom hostname of that zone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudflareConfig {
    pub zone_id: String,
    /// An API token with the zone's SSL and Certificates edit permission (a systemd
    /// credential: `cloudflare_api_token`).
    pub api_token: Secret,
    /// The API's base URL; only tests point it elsewhere (`http://` is accepted for loopback only).
    pub api_url: String,
}

impl Default for CloudflareConfig {
    fn default() -> Self {
        Self {
            zone_id: String::new(),
            api_token: Secret::default(),
            api_url: "https://api.cloudflare.com/client/v4".into(),
        }
    }
}

impl CloudflareConfig {
    pub fn enabled(&self) -> bool {
        !self.zone_id.is_empty() && !self.api_token.is_empty()
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.zone_id.is_empty() != self.api_token.is_empty() {
            return Err(ConfigError::Invalid(
                "cloudflare.zone_id and cloudflare.api_token go together: set both to use Cloudflare for SaaS, or neither".into(),
            ));
        }
        if !self.zone_id.is_empty()
            && (self.zone_id.len() > 64 || !self.zone_id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(ConfigError::Invalid(
                "cloudflare.zone_id must be the zone's id (letters and digits, as shown on the zone's overview page)".into(),
            ));
        }
        let url = self.api_url.trim_end_matches('/');
        if !https_or_loopback_http(url) {
            return Err(ConfigError::Invalid(format!(
                "cloudflare.api_url {url:?} must be an https:// URL (http:// only to a loopback address, for tests)"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// The master secret: every purpose key is derived from it. At least 32 bytes.
    pub secret: Secret,
    /// The URL users reach the dashboard at, for links and OAuth redirects.
    pub public_url: Option<String>,
    pub request_timeout_secs: u64,
    /// A client must send a request's headers within this time or lose the connection.
    pub header_read_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// `GET /metrics` answers only with `Authorization: Bearer <metrics_token>` (compared in
    /// constant time); empty turns it off on the public listener. Credential `metrics_token`.
    pub metrics_token: Secret,
    /// PEM certificate chain and private key: with both, the public listener (API, dashboard,
    /// worker link) speaks only HTTPS, TLS 1.3. SIGHUP loads them again.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user@host:port/db` or with `?host=/socket/dir`. Its password, if any, is
    /// redacted when printed; prefer `database.password` (a systemd credential).
    pub url: Option<DatabaseUrl>,
    pub password: Secret,
    pub max_connections: u32,
    pub min_connections: u32,
    pub max_lifetime_secs: u64,
    pub idle_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InternalApiConfig {
    pub bind: SocketAddr,
    /// Empty disables the internal API.
    pub token: Secret,
}

/// What workers present to join the fleet (SPEC §4.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// The fleet's join secret, checked at `POST /v1/workers/register` (credential
    /// `worker_join_secret`). It is not the master secret: workers run untrusted builds and
    /// must hold nothing that opens sealed data or signs a JWT. Empty: no worker can register.
    pub join_secret: Secret,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Bearer token of the central proxy's config endpoint. Empty disables the endpoint.
    pub token: Secret,
    /// A Traefik certificate resolver named on every router of the proxy config (for
    /// example `letsencrypt`); empty for none.
    pub cert_resolver: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `wisehosting=debug,info`; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_server: ApiServerConfig::default(),
            database: DatabaseConfig::default(),
            internal_api: InternalApiConfig::default(),
            proxy: ProxyConfig::default(),
            workers: WorkersConfig::default(),
            subdomain_base: "localhost".into(),
            heartbeat_interval_secs: 5,
            worker_token_ttl_secs: 900,
            worker_auth_per_minute: 30,
            user_requests_per_minute: 1200,
            ip_requests_per_minute: 3000,
            sign_in_per_minute: 60,
            oidc: OidcConfig::default(),
            single_machine: false,
            domains: DomainsConfig::default(),
            cloudflare: CloudflareConfig::default(),
            log: LogConfig::default(),
            plans: Vec::new(),
            apps_port: None,
            alerts: AlertsConfig::default(),
            usage: UsageConfig::default(),
            outbound: OutboundConfig::default(),
            smtp: SmtpConfig::default(),
            admin: AdminConfig::default(),
            git_providers: git::GitProvidersConfig::default(),
            acme: acme::AcmeConfig::default(),
            platform_certificate: acme::PlatformCertificateConfig::default(),
            edge: None,
            mesh: MeshConfig::default(),
            scheduler: SchedulerConfig::default(),
        }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8081,
            secret: Secret::default(),
            public_url: None,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            body_limit_bytes: 1024 * 1024,
            metrics_token: Secret::default(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            password: Secret::default(),
            max_connections: 25,
            min_connections: 5,
            max_lifetime_secs: 300,
            idle_timeout_secs: 300,
            acquire_timeout_secs: 5,
        }
    }
}

impl Default for InternalApiConfig {
    fn default() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 9091)), token: Secret::default() }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// A database URL whose password never prints.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}{tail}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check the path (CONFIG_PATH) and its permissions")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {message}; fix the syntax at that line")]
    Yaml { path: String, message: String },
    #[error("config {origin}: `{key}` is not a known key; expected one of: {expected}")]
    UnknownKey { origin: String, key: String, expected: String },
    #[error("config {origin}: bad value for `{key}`: {message}")]
    BadValue { origin: String, key: String, message: String },
    #[error("cannot read systemd credential {path}: {source}; check LoadCredential= in the unit")]
    Credential { path: PathBuf, source: std::io::Error },
    #[error("environment variable {var}: `{key}` is not a known key; remove the variable or fix its name")]
    UnknownEnvKey { var: String, key: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// Where the values came from, for error messages.
struct Origin(String);

impl Config {
    /// Loads the config the process should run with: `CONFIG_PATH` if set (it must exist),
    /// else the default path if it exists, else defaults; then env and credentials.
    pub fn load_from_env() -> Result<Config, ConfigError> {
        let path = std::env::var_os("CONFIG_PATH").map(PathBuf::from);
        match path {
            Some(path) => Self::load(Some(&path)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                Self::load(default.exists().then_some(default))
            }
        }
    }

    /// Loads `path` (or nothing), overlays env and credentials, and checks every value.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_layered(Value::Mapping(Mapping::new()), path)
    }

    /// Like [`Config::load`], with `base` (generated values) under the file.
    pub fn load_layered(base: Value, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut tree = base;
        if let Some(path) = path {
            merge(&mut tree, read_yaml(path)?);
        }
        let origin = Origin(match path {
            Some(p) => format!("file {}", p.display()),
            None => "(defaults and environment)".into(),
        });
        let env: Vec<(String, String)> = std::env::vars().collect();
        overlay_env(&mut tree, &env)?;
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            overlay_credentials(&mut tree, Path::new(&dir))?;
        }
        let config = from_tree(tree, &origin)?;
        config.check()?;
        Ok(config)
    }

    /// Parses YAML text alone (no env, no credentials): for tests and `config check` of text.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let tree = parse_yaml(text, origin)?;
        let config = from_tree(tree, &Origin(origin.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks relations between values that types alone cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        crate::plans::Registry::from_config(&self.plans).map_err(ConfigError::Invalid)?;
        let db = &self.database;
        if db.max_connections == 0 {
            return Err(ConfigError::Invalid("database.max_connections must be at least 1".into()));
        }
        if db.min_connections > db.max_connections {
            return Err(ConfigError::Invalid(format!(
                "database.min_connections ({}) is above database.max_connections ({}); lower it",
                db.min_connections, db.max_connections
            )));
        }
        if self.heartbeat_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "heartbeat_interval_secs must be at least 1 (the default is 5)".into(),
            ));
        }
        if self.scheduler.reschedule_after_secs == 0 {
            return Err(ConfigError::Invalid(
                "scheduler.reschedule_after_secs must be at least 1 (the default is 30)".into(),
            ));
        }
        if self.worker_token_ttl_secs < 5 {
            return Err(ConfigError::Invalid(
                "worker_token_ttl_secs must be at least 5 (the default is 900)".into(),
            ));
        }
        if self.api_server.header_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "api_server.header_read_timeout_secs must be at least 1 (the default is 10)".into(),
            ));
        }
        if self.api_server.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "api_server.request_timeout_secs must be at least 1 (the default is 30)".into(),
            ));
        }
        if !self.internal_api.bind.ip().to_canonical().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "internal_api.bind {} is not a loopback address; the internal API must listen on loopback only (the default is 127.0.0.1:9091)",
                self.internal_api.bind
            )));
        }
        let token = &self.internal_api.token;
        if !token.is_empty() && token.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "internal_api.token is shorter than {MIN_SECRET_LEN} bytes; generate one with `openssl rand -hex 32`"
            )));
        }
        // internal_api.bind is loopback by the check above.
        if self.single_machine && !self.api_server.host.to_canonical().is_loopback() {
            return Err(ConfigError::Invalid(
                "single_machine is only allowed when api_server.host and internal_api.bind are loopback addresses; it enables a password-less login".into(),
            ));
        }
        self.domains.resolver_addr()?;
        if self.domains.dns_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "domains.dns_timeout_ms must be at least 1 (the default is 2000)".into(),
            ));
        }
        self.cloudflare.check()?;
        self.admin.check()?;
        observe::check(&self.alerts, &self.usage, &self.outbound, &self.smtp)?;
        self.oidc.check(self.api_server.public_url.as_deref())?;
        self.git_providers.check(self.api_server.public_url.as_deref())?;
        self.acme.check()?;
        self.platform_certificate.check(&self.acme, self.cloudflare.enabled())?;
        if self.edge.is_some() && !self.single_machine {
            return Err(ConfigError::Invalid(
                "edge: is for wisehosting dev's local worker only; set a worker's edge router in that worker's config (edge.listen, edge.https_listen)".into(),
            ));
        }
        if self.api_server.tls_cert.is_some() != self.api_server.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "api_server.tls_cert and api_server.tls_key go together; set both for HTTPS or neither"
                    .into(),
            ));
        }
        if self.sign_in_per_minute < 30 {
            return Err(ConfigError::Invalid(
                "sign_in_per_minute must be at least 30 (the default is 60): people on one network share an address".into(),
            ));
        }
        if self.user_requests_per_minute < 600 || self.ip_requests_per_minute < 600 {
            return Err(ConfigError::Invalid(
                "user_requests_per_minute and ip_requests_per_minute must be at least 600 (the dashboard alone makes many requests); the defaults are 1200 and 3000".into(),
            ));
        }
        let secret = &self.api_server.secret;
        if !secret.is_empty() && secret.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "api_server.secret is shorter than {MIN_SECRET_LEN} bytes; generate one with `openssl rand -hex 32`"
            )));
        }
        let join = &self.workers.join_secret;
        if !join.is_empty() && join.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "workers.join_secret is shorter than {MIN_SECRET_LEN} bytes; generate one with `openssl rand -hex 32`"
            )));
        }
        if !join.is_empty()
            && wisehosting_crypto::constant_time_eq(join.expose().as_bytes(), secret.expose().as_bytes())
        {
            return Err(ConfigError::Invalid(
                "workers.join_secret equals api_server.secret; workers must never hold the master secret, so generate a separate join secret with `openssl rand -hex 32`".into(),
            ));
        }
        Ok(())
    }

    /// What `serve` needs beyond a valid file: a database and a master secret.
    pub fn require_for_serve(&self) -> Result<(), ConfigError> {
        if self.database.url.is_none() {
            return Err(ConfigError::Invalid(
                "database.url is not set; set it in the config file or WH__DATABASE__URL, or run `wisehosting dev` for a private database".into(),
            ));
        }
        if self.api_server.secret.is_empty() {
            return Err(ConfigError::Invalid(
                "api_server.secret is not set; put 32+ random bytes in the systemd credential api_server_secret (or WH__API_SERVER__SECRET)".into(),
            ));
        }
        Ok(())
    }

    /// The resolved config as YAML with every secret redacted.
    pub fn to_redacted_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The dotted names of every key the code knows, from the defaults' own shape.
    pub fn known_keys() -> Vec<String> {
        let mut keys = Vec::new();
        let defaults = yaml_serde::to_value(Config::default()).unwrap_or(Value::Null);
        collect_keys(&defaults, "", &mut keys);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, "test.yaml")
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").expect("empty config");
        assert_eq!(c.api_server.port, 8081);
        assert_eq!(c.database.max_connections, 25);
        assert_eq!(c.database.min_connections, 5);
        assert_eq!(c.database.max_lifetime_secs, 300);
        assert_eq!(c.internal_api.bind.to_string(), "127.0.0.1:9091");
        assert_eq!(c.heartbeat_interval_secs, 5);
        assert_eq!(c.subdomain_base, "localhost");
    }

    #[test]
    fn sign_in_needs_https_or_loopback_a_public_url_and_a_secret() {
        let base = "api_server:\n  public_url: https://paas.example.com\noidc:\n  client_id: abc\n  client_secret: s3cret\n";
        let ok = parse(base).expect("https issuer by default");
        assert!(ok.oidc.enabled());
        assert_eq!(ok.oidc.issuer_url, "https://accounts.google.com");
        for (text, needle) in [
            (format!("{base}  issuer_url: http://idp.example.com\n"), "oidc.issuer_url"),
            ("oidc:\n  client_id: abc\n  client_secret: s\n".to_string(), "api_server.public_url"),
            (
                "api_server:\n  public_url: https://p.example\noidc:\n  client_id: abc\n".to_string(),
                "google_oauth_client_secret",
            ),
            ("sign_in_per_minute: 10\n".to_string(), "sign_in_per_minute"),
        ] {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let loopback = parse(&format!("{base}  issuer_url: http://127.0.0.1:5556\n")).expect("loopback http");
        assert_eq!(loopback.oidc.issuer_url, "http://127.0.0.1:5556");
        assert!(!format!("{:?}", ok).contains("s3cret"), "the client secret never prints");
    }

    #[test]
    fn alerts_usage_outbound_and_smtp_values_are_checked_with_the_key_named() {
        let smtp = "smtp:\n  host: mail.example.com\n  from: WiseHosting <a@example.com>\n";
        for (text, needle) in [
            ("alerts:\n  evaluate_every_secs: 0\n".to_string(), "alerts.evaluate_every_secs"),
            ("usage:\n  sample_interval_secs: 0\n".to_string(), "usage.sample_interval_secs"),
            ("usage:\n  hourly_retention_days: 1\n".to_string(), "usage.hourly_retention_days"),
            ("outbound:\n  dns_resolver: not-an-ip\n".to_string(), "outbound.dns_resolver"),
            ("outbound:\n  webhook_retry_scale: 2\n".to_string(), "outbound.webhook_retry_scale"),
            ("outbound:\n  webhook_disable_after: 1\n".to_string(), "outbound.webhook_disable_after"),
            ("smtp:\n  host: mail.example.com\n  from: nobody\n".to_string(), "smtp.from"),
            (format!("{smtp}  tls: none\n"), "smtp.tls: none is allowed only for a relay on loopback"),
            (format!("{smtp}  username: me\n"), "smtp_password"),
        ] {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let ok = parse(&format!("{smtp}  username: me\n  password: pw-canary\n")).expect("valid smtp");
        assert!(ok.smtp.enabled());
        assert!(!format!("{ok:?}").contains("pw-canary"), "the SMTP password never prints");
        let local =
            parse("smtp:\n  host: 127.0.0.1\n  tls: none\n  from: a@example.com\n").expect("loopback relay");
        assert_eq!(local.smtp.tls, SmtpTls::None);
        assert!(!parse("").expect("defaults").smtp.enabled(), "e-mail is off by default");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_full_path() {
        let err = parse("api_server:\n  prot: 1\n").expect_err("unknown key").to_string();
        assert!(err.contains("`api_server.prot` is not a known key"), "{err}");
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn an_unknown_top_level_key_is_named() {
        let err = parse("subdomain_bse: x\n").expect_err("unknown key").to_string();
        assert!(err.contains("`subdomain_bse` is not a known key"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_what_is_expected() {
        let err = parse("api_server:\n  port: eighty\n").expect_err("bad port").to_string();
        assert!(err.contains("`api_server.port`"), "{err}");
        assert!(err.contains("u16"), "{err}");
    }

    #[test]
    fn malformed_yaml_is_reported_as_such() {
        let err = parse("api_server: [\n").expect_err("bad yaml").to_string();
        assert!(err.contains("not valid YAML"), "{err}");
    }

    #[test]
    fn a_short_master_secret_is_refused() {
        let err = parse("api_server:\n  secret: short\n").expect_err("short").to_string();
        assert!(err.contains("api_server.secret is shorter than 32"), "{err}");
        assert!(!err.contains("short\n"));
    }

    #[test]
    fn env_overrides_set_typed_values_and_unknown_env_keys_are_refused() {
        let mut tree = parse_yaml("api_server:\n  port: 1\n", "t").expect("yaml");
        let env = vec![
            ("WH__API_SERVER__PORT".to_string(), "9000".to_string()),
            ("WH__PROXY__TOKEN".to_string(), "123456".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        overlay_env(&mut tree, &env).expect("overlay");
        let c = from_tree(tree, &Origin("t".into())).expect("config");
        assert_eq!(c.api_server.port, 9000);
        assert_eq!(c.proxy.token.expose(), "123456");

        let mut tree = Value::Mapping(Mapping::new());
        let env = vec![("WH__API_SERVER__PORTT".to_string(), "1".to_string())];
        let err = overlay_env(&mut tree, &env).expect_err("unknown").to_string();
        assert!(err.contains("WH__API_SERVER__PORTT") && err.contains("api_server.portt"), "{err}");
    }

    #[test]
    fn credentials_beat_the_yaml_for_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("proxy_token"), "from-credential\n").expect("write");
        let mut tree = parse_yaml("proxy:\n  token: from-yaml\n", "t").expect("yaml");
        overlay_credentials(&mut tree, dir.path()).expect("overlay");
        let c = from_tree(tree, &Origin("t".into())).expect("config");
        assert_eq!(c.proxy.token.expose(), "from-credential");
    }

    #[test]
    fn an_unreadable_credential_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where a file should be cannot be read as text.
        std::fs::create_dir(dir.path().join("api_server_secret")).expect("mkdir");
        let mut tree = Value::Mapping(Mapping::new());
        let err = overlay_credentials(&mut tree, dir.path()).expect_err("unreadable").to_string();
        assert!(err.contains("api_server_secret"), "{err}");
    }

    #[test]
    fn the_redacted_dump_hides_every_secret_and_the_url_password() {
        let text = "api_server:\n  secret: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-canary\ndatabase:\n  url: postgres://wh:pw-canary@db:5432/wh\n  password: pw2-canary\ninternal_api:\n  token: tok-canary-0123456789abcdef0123456789\nproxy:\n  token: prox-canary\nworkers:\n  join_secret: join-canary-0123456789abcdef0123456789\n";
        let dump = parse(text).expect("config").to_redacted_yaml();
        assert!(!dump.contains("canary"), "{dump}");
        assert!(dump.contains("postgres://wh:[redacted]@db:5432/wh"), "{dump}");
    }

    #[test]
    fn the_example_config_parses_and_names_every_known_key() {
        let text = include_str!("../../../../deploy/config.example.yaml");
        let config = parse(text).expect("example config parses");
        assert!(config.database.url.is_some());
        for key in Config::known_keys() {
            let leaf = key.rsplit('.').next().unwrap_or(&key);
            let mut found = false;
            // Every dotted key must appear as a `leaf:` line under its section.
            let section = key.split('.').next().unwrap_or(&key);
            let mut in_section = !key.contains('.');
            for line in text.lines() {
                let trimmed = line.trim_start();
                if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
                    in_section = !key.contains('.') || line.starts_with(&format!("{section}:"));
                }
                if in_section && (trimmed.starts_with(&format!("{leaf}:"))) {
                    found = true;
                }
            }
            assert!(found, "deploy/config.example.yaml does not set `{key}`");
        }
    }

    #[test]
    fn the_admin_console_listens_on_loopback_unless_it_has_a_certificate_and_reads_a_loopback_internal_api() {
        let err = parse("admin:\n  listen: 0.0.0.0:9443\n").expect_err("public, plain").to_string();
        assert!(err.contains("admin.listen 0.0.0.0:9443 is not a loopback address"), "{err}");
        let c = parse("admin:\n  listen: 0.0.0.0:9443\n  tls_cert: /c.pem\n  tls_key: /k.pem\n")
            .expect("with TLS");
        assert_eq!(c.admin.listen.to_string(), "0.0.0.0:9443");
        let err = parse("admin:\n  tls_cert: /c.pem\n").expect_err("half").to_string();
        assert!(err.contains("go together"), "{err}");
        for url in ["http://10.0.0.5:9091", "https://127.0.0.1:9091", "not a url"] {
            let err = parse(&format!("admin:\n  internal_api_url: \"{url}\"\n")).expect_err(url).to_string();
            assert!(err.contains("admin.internal_api_url"), "{err}");
        }
        assert!(parse("admin:\n  internal_api_url: http://[::1]:9091\n").is_ok());
        assert_eq!(Config::default().admin.listen.to_string(), "127.0.0.1:9443");
    }

    #[test]
    fn the_edge_section_is_for_single_machine_mode_and_the_platform_certificate_is_files_or_dns01() {
        let err = parse("edge:\n  https_listen: null\n").expect_err("not single-machine").to_string();
        assert!(err.contains("edge: is for wisehosting dev"), "{err}");
        let c = parse("single_machine: true\napi_server:\n  host: 127.0.0.1\nedge:\n  https_listen: null\n")
            .expect("single-machine");
        let edge = c.edge.expect("edge");
        assert_eq!((edge.https_listen, edge.listen.port()), (None, 8080));
        let err =
            parse("edge:\n  htps_listen: 127.0.0.1:1\nsingle_machine: true\n").expect_err("typo").to_string();
        assert!(err.contains("htps_listen"), "{err}");

        let err = parse("platform_certificate:\n  cert_file: /c.pem\n").expect_err("half").to_string();
        assert!(err.contains("go together"), "{err}");
        let err = parse("platform_certificate:\n  dns01: true\n").expect_err("no cloudflare").to_string();
        assert!(err.contains("needs acme.directory_url and cloudflare.zone_id"), "{err}");
        let both = "platform_certificate:\n  dns01: true\n  cert_file: /c.pem\n  key_file: /k.pem\n";
        assert!(parse(both).expect_err("both").to_string().contains("not both"));
        assert!(parse("platform_certificate:\n  cert_file: /c.pem\n  key_file: /k.pem\n").is_ok());
    }

    #[test]
    fn the_join_secret_must_be_long_and_differ_from_the_master_secret() {
        let master = "m".repeat(40);
        let err = parse(&format!("api_server:\n  secret: {master}\nworkers:\n  join_secret: {master}\n"))
            .expect_err("same as the master")
            .to_string();
        assert!(err.contains("workers.join_secret equals api_server.secret"), "{err}");
        assert!(!err.contains(&master), "the secret is not printed: {err}");
        let err = parse("workers:\n  join_secret: short\n").expect_err("short").to_string();
        assert!(err.contains("workers.join_secret is shorter than 32"), "{err}");
        let ok =
            parse(&format!("api_server:\n  secret: {master}\nworkers:\n  join_secret: {}\n", "j".repeat(40)));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_internal_api_must_bind_loopback_with_a_long_token() {
        let err = parse("internal_api:\n  bind: 0.0.0.0:9091\n").expect_err("public bind").to_string();
        assert!(err.contains("internal_api.bind 0.0.0.0:9091 is not a loopback address"), "{err}");
        let err =
            parse("internal_api:\n  bind: \"[::ffff:10.0.0.1]:9091\"\n").expect_err("mapped").to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        let err = parse("internal_api:\n  token: short-token\n").expect_err("short").to_string();
        assert!(err.contains("internal_api.token is shorter than 32"), "{err}");
        assert!(
            parse("internal_api:\n  bind: \"[::1]:9091\"\n  token: 0123456789abcdef0123456789abcdef\n")
                .is_ok()
        );
    }

    #[test]
    fn single_machine_mode_is_refused_on_a_public_listener() {
        let err = parse("single_machine: true\n").expect_err("0.0.0.0 is not loopback").to_string();
        assert!(err.contains("single_machine is only allowed"), "{err}");
        assert!(parse("single_machine: true\napi_server:\n  host: 127.0.0.1\n").is_ok());
    }

    #[test]
    fn database_url_redaction_keeps_user_and_host() {
        let url = DatabaseUrl::new("postgres://user:p%40ss@host:5432/db?sslmode=require");
        assert_eq!(url.redacted(), "postgres://user:[redacted]@host:5432/db?sslmode=require");
        let url = DatabaseUrl::new("postgres://user@localhost/db?host=/run/pg");
        assert_eq!(url.redacted(), "postgres://user@localhost/db?host=/run/pg");
    }
}
