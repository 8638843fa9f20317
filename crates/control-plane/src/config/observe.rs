//! Config of what users see of their running apps: alerts, usage, outbound requests
//! (webhooks) and e-mail (SPEC §9, §14.3).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use wisehosting_crypto::Secret;

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often metric rules are evaluated against the live figures.
    pub evaluate_every_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self { evaluate_every_secs: 15 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// How often each app's usage is sampled (container time counts in these steps).
    pub sample_interval_secs: u64,
    /// Days hourly rows are kept.
    pub hourly_retention_days: u32,
    /// Days daily rows are kept.
    pub daily_retention_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { sample_interval_secs: 60, hourly_retention_days: 35, daily_retention_days: 400 }
    }
}

/// Requests the platform makes to URLs users give it (webhooks), through the SSRF guard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Let user URLs reach loopback, private, link-local and CGNAT addresses: for lab setups
    /// only (the platform's own services become reachable to every user).
    pub allow_private_networks: bool,
    /// The DNS server (`ip:port`) user URLs' names are resolved with; empty for the system's
    /// (/etc/resolv.conf).
    pub dns_resolver: String,
    /// Failed tries in a row after which a webhook endpoint is turned off (with an alert).
    pub webhook_disable_after: u32,
    /// Webhook endpoints one user may have.
    pub max_endpoints_per_user: u32,
    /// Multiplies every webhook retry delay (0.001–1): a lab or a test shrinks the six hours
    /// of retries to seconds; production keeps 1.
    pub webhook_retry_scale: f64,
    /// The platform's own public addresses (its load balancer, its hosts), refused to user
    /// URLs like private ones (even where private networks are allowed). `api_server.host` and
    /// an IP in `api_server.public_url` are added by themselves when public.
    pub deny_addresses: Vec<std::net::IpAddr>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            dns_resolver: String::new(),
            webhook_disable_after: 40,
            max_endpoints_per_user: 10,
            webhook_retry_scale: 1.0,
            deny_addresses: Vec::new(),
        }
    }
}

impl OutboundConfig {
    /// The configured DNS server, if any (port 53 when none is given).
    pub fn resolver_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        super::parse_dns_server("outbound.dns_resolver", &self.dns_resolver)
    }
}

/// How SMTP connections are secured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// None: only to a relay on loopback (a local MTA, tests).
    None,
}

/// E-mail, the second channel for alerts; off while `host` is empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: String,
    /// Credential `smtp_password`.
    pub password: Secret,
    /// The sender, e.g. `WiseHosting <alerts@example.com>`.
    pub from: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: String::new(),
        }
    }
}

impl SmtpConfig {
    pub fn enabled(&self) -> bool {
        !self.host.trim().is_empty()
    }
}

pub(super) fn check(
    alerts: &AlertsConfig,
    usage: &UsageConfig,
    outbound: &OutboundConfig,
    smtp: &SmtpConfig,
) -> Result<(), ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
    if !(1..=3600).contains(&alerts.evaluate_every_secs) {
        return invalid("alerts.evaluate_every_secs must be between 1 and 3600 (the default is 15)");
    }
    if !(1..=3600).contains(&usage.sample_interval_secs) {
        return invalid("usage.sample_interval_secs must be between 1 and 3600 (the default is 60)");
    }
    if usage.hourly_retention_days < 2 || usage.daily_retention_days < 32 {
        return invalid(
            "usage.hourly_retention_days must be at least 2 and usage.daily_retention_days at least 32 (the defaults are 35 and 400)",
        );
    }
    outbound.resolver_addr()?;
    if !(0.001..=1.0).contains(&outbound.webhook_retry_scale) {
        return invalid("outbound.webhook_retry_scale must be between 0.001 and 1 (the default is 1)");
    }
    if outbound.webhook_disable_after < 2 {
        return invalid("outbound.webhook_disable_after must be at least 2 (the default is 40)");
    }
    if smtp.enabled() {
        if smtp.from.trim().is_empty() || smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "smtp.from {:?} is not an address; set it like `WiseHosting <alerts@example.com>`",
                smtp.from
            )));
        }
        let loopback = smtp.host == "localhost"
            || smtp.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback());
        if smtp.tls == SmtpTls::None && !loopback {
            return invalid(
                "smtp.tls: none is allowed only for a relay on loopback (the password would cross the network in the clear); use starttls or tls",
            );
        }
        if smtp.username.is_empty() != smtp.password.is_empty() {
            return invalid("set both smtp.username and its password (credential smtp_password), or neither");
        }
    }
    Ok(())
}
