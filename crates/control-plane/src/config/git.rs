//! `git_providers`: the OAuth apps through which users link GitHub, GitLab, Bitbucket and
//! Codeberg (or any Gitea/Forgejo) accounts (SPEC §14.8).

use serde::{Deserialize, Serialize};
use wisehosting_crypto::Secret;
use wisehosting_proto::job::GitProvider;

use super::{ConfigError, https_or_loopback_http};

/// One provider's OAuth app. The callback to register with it is
/// `<api_server.public_url>/api/git/<provider>/callback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// The OAuth app's client id; empty turns linking this provider off.
    pub client_id: String,
    /// Its secret (credential `<provider>_oauth_client_secret`).
    pub client_secret: Secret,
    /// The provider's web site (authorize and token endpoints): GitHub Enterprise, a
    /// self-hosted GitLab or Gitea, or a test's stand-in. Empty: the public site
    /// (`https://github.com`, `https://gitlab.com`, `https://bitbucket.org`, `https://codeberg.org`).
    pub base_url: String,
    /// Its REST API. Empty: the public site's (`https://api.github.com`,
    /// `https://gitlab.com/api/v4`, `https://api.bitbucket.org/2.0`, `https://codeberg.org/api/v1`).
    pub api_url: String,
}

/// The public site and API of each provider.
fn public(provider: GitProvider) -> (&'static str, &'static str) {
    match provider {
        GitProvider::Github => ("https://github.com", "https://api.github.com"),
        GitProvider::Gitlab => ("https://gitlab.com", "https://gitlab.com/api/v4"),
        GitProvider::Bitbucket => ("https://bitbucket.org", "https://api.bitbucket.org/2.0"),
        GitProvider::Codeberg => ("https://codeberg.org", "https://codeberg.org/api/v1"),
    }
}

impl ProviderConfig {
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GitProvidersConfig {
    pub github: ProviderConfig,
    pub gitlab: ProviderConfig,
    pub bitbucket: ProviderConfig,
    pub codeberg: ProviderConfig,
}

impl GitProvidersConfig {
    pub fn get(&self, provider: GitProvider) -> &ProviderConfig {
        match provider {
            GitProvider::Github => &self.github,
            GitProvider::Gitlab => &self.gitlab,
            GitProvider::Bitbucket => &self.bitbucket,
            GitProvider::Codeberg => &self.codeberg,
        }
    }

    /// The provider's web site, configured or public.
    pub fn base_url(&self, provider: GitProvider) -> &str {
        let url = self.get(provider).base_url.trim_end_matches('/');
        if url.is_empty() { public(provider).0 } else { url }
    }

    /// The provider's API, configured or public.
    pub fn api_url(&self, provider: GitProvider) -> &str {
        let url = self.get(provider).api_url.trim_end_matches('/');
        if url.is_empty() { public(provider).1 } else { url }
    }

    pub(super) fn check(&self, public_url: Option<&str>) -> Result<(), ConfigError> {
        for provider in GitProvider::ALL {
            let p = self.get(provider);
            if !p.enabled() {
                continue;
            }
            for (key, url) in [("base_url", self.base_url(provider)), ("api_url", self.api_url(provider))] {
                if url::Url::parse(url).is_err() || !https_or_loopback_http(url) {
                    return Err(ConfigError::Invalid(format!(
                        "git_providers.{provider}.{key} {url:?} must be an https:// URL (http:// only to a loopback address, for tests)"
                    )));
                }
            }
            if p.client_secret.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "git_providers.{provider}.client_id is set but its secret is not; put it in the systemd credential {provider}_oauth_client_secret (or git_providers.{provider}.client_secret)"
                )));
            }
            if public_url.is_none_or(|u| u.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "git_providers.{provider}.client_id is set but api_server.public_url is not; set it to the URL users open (the callback is <public_url>/api/git/{provider}/callback)"
                )));
            }
        }
        Ok(())
    }
}
