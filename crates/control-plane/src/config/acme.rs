//! `acme`: certificates for verified custom domains from an ACME CA (SPEC §14.7).

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
