//! `acme`: certificates for verified custom domains from an ACME CA (SPEC §14.7); and
//! `platform_certificate`: the platform's own wildcard for `<slug>.<subdomain_base>`, from files
//! or from the CA by DNS-01 through Cloudflare.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    /// The CA's directory; empty turns ACME off.
    pub directory_url: String,
    /// The account's contact address (the CA writes about expiring certificates there).
    pub email: String,
    /// An extra root the CA's own API is trusted with (tests: pebble's).
    pub ca_file: Option<PathBuf>,
    /// A certificate is renewed this many days before it expires.
    pub renew_before_days: u32,
    /// The first wait after a failed order; each failure doubles it, up to a day.
    pub retry_base_secs: u64,
    /// How often due certificates are looked for.
    pub check_interval_secs: u64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            directory_url: LETS_ENCRYPT.into(),
            email: String::new(),
            ca_file: None,
            renew_before_days: 30,
            retry_base_secs: 300,
            check_interval_secs: 60,
        }
    }
}

impl AcmeConfig {
    pub fn enabled(&self) -> bool {
        !self.directory_url.trim().is_empty()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if url::Url::parse(&self.directory_url).is_err() || !self.directory_url.starts_with("https://") {
            return Err(ConfigError::Invalid(format!(
                "acme.directory_url {:?} must be an https:// URL (Let's Encrypt's is {LETS_ENCRYPT}), or empty to turn ACME off",
                self.directory_url
            )));
        }
        if !(1..=60).contains(&self.renew_before_days) {
            return Err(ConfigError::Invalid(
                "acme.renew_before_days must be 1 to 60 (the default is 30)".into(),
            ));
        }
        if self.retry_base_secs == 0 || !(1..=3600).contains(&self.check_interval_secs) {
            return Err(ConfigError::Invalid(
                "acme.retry_base_secs must be at least 1 and acme.check_interval_secs 1 to 3600 (the defaults are 300 and 60)".into(),
            ));
        }
        Ok(())
    }
}

/// The certificate every worker's edge router serves for the platform's own hostnames
/// (`<slug>.<subdomain_base>`): from files, or ordered for `*.<subdomain_base>` from the ACME
/// CA with DNS-01 answers published through Cloudflare's DNS API (`cloudflare.zone_id` is the
/// zone of `subdomain_base`; the token needs DNS edit permission). Neither by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformCertificateConfig {
    /// PEM chain (leaf first) and key, read at start; the names are the leaf's.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Order `*.<subdomain_base>` by DNS-01 through Cloudflare.
    pub dns01: bool,
}

impl PlatformCertificateConfig {
    pub(super) fn check(&self, acme: &AcmeConfig, cloudflare_enabled: bool) -> Result<(), ConfigError> {
        let files = match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            _ => {
                return Err(ConfigError::Invalid(
                    "platform_certificate.cert_file and platform_certificate.key_file go together; set both or neither".into(),
                ));
            }
        };
        if self.dns01 && files {
            return Err(ConfigError::Invalid(
                "platform_certificate: choose files (cert_file, key_file) or dns01, not both".into(),
            ));
        }
        if self.dns01 && !(acme.enabled() && cloudflare_enabled) {
            return Err(ConfigError::Invalid(
                "platform_certificate.dns01 needs acme.directory_url and cloudflare.zone_id with cloudflare.api_token (a token that may edit the zone's DNS)".into(),
            ));
        }
        Ok(())
    }
}
