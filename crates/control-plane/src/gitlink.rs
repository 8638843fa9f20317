//! Linked git provider accounts (SPEC §14.8): the OAuth authorization code flow with each
//! provider (the `oauth2` crate, over our one `reqwest`), token refresh and revocation, and the
//! few REST calls the platform makes with a linked token — who the account is, its
//! repositories and branches (every page), and a push webhook registered on a repository.
//!
//! Every URL called is the configured provider's own (`base_url` for OAuth, `api_url` for
//! REST): redirects are never followed, and a pagination link pointing elsewhere is refused,
//! so a token is never sent to another host. Tokens travel only in `Authorization` headers.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, USER_AGENT};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use wisehosting_crypto::Sealer;
use wisehosting_proto::job::GitProvider;

use crate::config::Config;
use crate::config::git::ProviderConfig;
use crate::store::gitlinks::{self, Tokens};

/// A token this close to its expiry is refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The most pages of repositories or branches read (100 a page).
const MAX_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "{0} accounts cannot be linked on this installation; an operator sets git_providers.{0}.client_id and its secret"
    )]
    NotConfigured(GitProvider),
    #[error("no {0} account is linked; link one on the account page first")]
    NotLinked(GitProvider),
    /// The provider refused the token: revoked by the user, expired without a way to refresh.
    #[error("{0} refused the linked account's token (revoked, or expired); link the {0} account again")]
    Rejected(GitProvider),
    #[error("{provider} refused: {message}")]
    Refused { provider: GitProvider, message: String },
    #[error("{provider} cannot be reached or answered badly: {message}; try again later")]
    Unavailable { provider: GitProvider, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl LinkError {
    /// No usable link: the provider is not configured here, or the user has not linked it.
    pub fn is_missing_link(&self) -> bool {
        matches!(self, LinkError::NotLinked(_) | LinkError::NotConfigured(_))
    }
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(e.into())
    }
}

/// A repository the linked account can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Repo {
    /// `owner/name`.
    pub full_name: String,
    /// The `https://` URL to clone.
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
}

type OAuthClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// One provider's OAuth app and API.
pub struct ProviderClient {
    pub provider: GitProvider,
    oauth: OAuthClient,
    client_id: String,
    client_secret: wisehosting_crypto::Secret,
    base_url: String,
    api_url: String,
    http: reqwest::Client,
}

/// The configured providers.
#[derive(Clone, Default)]
pub struct GitLinks {
    providers: std::sync::Arc<HashMap<GitProvider, ProviderClient>>,
}

impl GitLinks {
    pub fn from_config(config: &Config) -> Result<GitLinks, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for git providers: {e}"))?;
        let public_url = config.api_server.public_url.as_deref().unwrap_or_default().trim_end_matches('/');
        let mut providers = HashMap::new();
        for provider in GitProvider::ALL {
            let cfg = config.git_providers.get(provider);
            if cfg.enabled() {
                let urls = (config.git_providers.base_url(provider), config.git_providers.api_url(provider));
                let client = ProviderClient::new(provider, cfg, urls, public_url, http.clone())?;
                providers.insert(provider, client);
            }
        }
        Ok(GitLinks { providers: std::sync::Arc::new(providers) })
    }

    pub fn get(&self, provider: GitProvider) -> Result<&ProviderClient, LinkError> {
        self.providers.get(&provider).ok_or(LinkError::NotConfigured(provider))
    }

    /// The providers users can link here.
    pub fn configured(&self) -> Vec<GitProvider> {
        GitProvider::ALL.into_iter().filter(|p| self.providers.contains_key(p)).collect()
    }

    /// The user's access token at `provider`, refreshed first when it expires within
    /// [`REFRESH_MARGIN`] (under the row's lock, so two deploys do not both spend a refresh
    /// token the provider rotates).
    pub async fn token(
        &self,
        db: &PgPool,
        sealer: &Sealer,
        user_id: i64,
        provider: GitProvider,
    ) -> Result<String, LinkError> {
        let client = self.get(provider)?;
        let margin = chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default();
        let due = |link: &gitlinks::Link| link.tokens.expires_at.is_some_and(|at| at <= Utc::now() + margin);
        // Most uses find the token fresh: a plain read, no lock.
        let link = gitlinks::get(db, sealer, user_id, provider, false)
            .await?
            .ok_or(LinkError::NotLinked(provider))?;
        if !due(&link) {
            return Ok(link.tokens.access);
        }
        // Due: read again under the row lock (another request may have refreshed it meanwhile).
        let mut tx = db.begin().await?;
        let link = gitlinks::get(&mut *tx, sealer, user_id, provider, true)
            .await?
            .ok_or(LinkError::NotLinked(provider))?;
        if !due(&link) {
            return Ok(link.tokens.access);
        }
        let Some(refresh) = &link.tokens.refresh else {
            return Err(LinkError::Rejected(provider));
        };
        let mut fresh = client.refresh(refresh).await?;
        // A provider that does not rotate refresh tokens keeps the one it gave.
        fresh.refresh = fresh.refresh.or_else(|| link.tokens.refresh.clone());
        gitlinks::update_tokens(&mut *tx, sealer, user_id, provider, &fresh).await?;
        tx.commit().await?;
        tracing::info!(user_id, %provider, "refreshed a linked git account's token");
        Ok(fresh.access)
    }
}

impl ProviderClient {
    fn new(
        provider: GitProvider,
        cfg: &ProviderConfig,
        (base, api): (&str, &str),
        public_url: &str,
        http: reqwest::Client,
    ) -> Result<ProviderClient, String> {
        let (authorize, token) = match provider {
            GitProvider::Github | GitProvider::Codeberg => {
                (format!("{base}/login/oauth/authorize"), format!("{base}/login/oauth/access_token"))
            }
            GitProvider::Gitlab => (format!("{base}/oauth/authorize"), format!("{base}/oauth/token")),
            GitProvider::Bitbucket => {
                (format!("{base}/site/oauth2/authorize"), format!("{base}/site/oauth2/access_token"))
            }
        };
        let bad = |e: &dyn std::fmt::Display| format!("git_providers.{provider}: {e}");
        let oauth = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(cfg.client_secret.expose().to_string()))
            .set_auth_uri(AuthUrl::new(authorize).map_err(|e| bad(&e))?)
            .set_token_uri(TokenUrl::new(token).map_err(|e| bad(&e))?)
            .set_redirect_uri(
                RedirectUrl::new(format!("{public_url}/api/git/{provider}/callback")).map_err(|e| bad(&e))?,
            )
            // Bitbucket takes the client's credentials only as basic auth; the others in the body.
            .set_auth_type(match provider {
                GitProvider::Bitbucket => AuthType::BasicAuth,
                _ => AuthType::RequestBody,
            });
        Ok(ProviderClient {
            provider,
            oauth,
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            base_url: base.to_string(),
            api_url: api.to_string(),
            http,
        })
    }

    /// The provider's authorize URL for a link carrying `state`.
    pub fn authorize_url(&self, state: &str) -> String {
        let state = state.to_string();
        let mut request = self.oauth.authorize_url(move || CsrfToken::new(state));
        for scope in scopes(self.provider) {
            request = request.add_scope(Scope::new((*scope).into()));
        }
        request.url().0.to_string()
    }

    /// Tokens for the authorization code the callback got.
    pub async fn exchange(&self, code: &str) -> Result<Tokens, LinkError> {
        let answer = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e))?;
        Ok(tokens(&answer))
    }

    /// New tokens for a refresh token.
    pub async fn refresh(&self, refresh: &str) -> Result<Tokens, LinkError> {
        let refresh = RefreshToken::new(refresh.to_string());
        let answer = self.oauth.exchange_refresh_token(&refresh).request_async(&self.http).await.map_err(
            |e| match e {
                // The refresh token itself is no good: the link must be made again.
                RequestTokenError::ServerResponse(_) => LinkError::Rejected(self.provider),
                other => self.token_error(other),
            },
        )?;
        Ok(tokens(&answer))
    }

    fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
        &self,
        e: RequestTokenError<RE, T>,
    ) -> LinkError {
        match e {
            RequestTokenError::ServerResponse(r) => LinkError::Refused {
                provider: self.provider,
                message: format!("the authorization code was not accepted ({r}); link the account again"),
            },
            RequestTokenError::Request(e) => {
                LinkError::Unavailable { provider: self.provider, message: error_chain(&e) }
            }
            RequestTokenError::Parse(e, _) => LinkError::Unavailable {
                provider: self.provider,
                message: format!("its token answer is not what OAuth specifies: {e}"),
            },
            RequestTokenError::Other(e) => LinkError::Unavailable { provider: self.provider, message: e },
        }
    }

    /// Revokes the token where the provider offers it (GitHub, GitLab); false where it does
    /// not (Bitbucket, Codeberg: the user revokes the app in the provider's settings).
    pub async fn revoke(&self, tokens: &Tokens) -> Result<bool, LinkError> {
        let request = match self.provider {
            GitProvider::Github => self
                .http
                .delete(format!("{}/applications/{}/grant", self.api_url, self.client_id))
                .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                .header(ACCEPT, "application/vnd.github+json")
                .header(USER_AGENT, "wisehosting")
                .json(&serde_json::json!({ "access_token": tokens.access })),
            GitProvider::Gitlab => self.http.post(format!("{}/oauth/revoke", self.base_url)).form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                ("token", tokens.access.as_str()),
            ]),
            GitProvider::Bitbucket | GitProvider::Codeberg => return Ok(false),
        };
        let response = request.send().await.map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        // 404/401: the grant is gone already, which is what was asked.
        if status.is_success() || status.as_u16() == 404 || status.as_u16() == 401 {
            return Ok(true);
        }
        Err(LinkError::Unavailable {
            provider: self.provider,
            message: format!("revoking the token answered {status}"),
        })
    }

    fn unavailable(&self, e: &reqwest::Error) -> LinkError {
        LinkError::Unavailable { provider: self.provider, message: error_chain(e) }
    }

    fn api_get(&self, url: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "wisehosting")
    }

    /// A JSON answer from the API, 401/403 turned into [`LinkError::Rejected`].
    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(HeaderMap, Value), LinkError> {
        let response = request.send().await.map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        if status.as_u16() == 401 {
            return Err(LinkError::Rejected(self.provider));
        }
        if !status.is_success() {
            return Err(LinkError::Refused {
                provider: self.provider,
                message: format!("its API answered {status}"),
            });
        }
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.map_err(|e| self.unavailable(&e))?;
        Ok((headers, body))
    }

    /// The account's name.
    pub async fn login(&self, token: &str) -> Result<String, LinkError> {
        let (_, user) = self.json(self.api_get(&format!("{}/user", self.api_url), token)).await?;
        let field = match self.provider {
            GitProvider::Github | GitProvider::Codeberg => "login",
            GitProvider::Gitlab | GitProvider::Bitbucket => "username",
        };
        user.get(field)
            .or_else(|| user.get("nickname"))
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty() && l.len() <= 200)
            .map(str::to_string)
            .ok_or_else(|| LinkError::Unavailable {
                provider: self.provider,
                message: format!("its user answer has no `{field}`"),
            })
    }

    /// Every page of a listing: the first URL, then the `Link: rel="next"` (or Bitbucket's
    /// `next` field) while it stays on the API's own origin.
    async fn pages(&self, first: String, token: &str) -> Result<Vec<Value>, LinkError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            if !url.starts_with(&format!("{}/", self.api_url)) {
                return Err(LinkError::Unavailable {
                    provider: self.provider,
                    message: "a page link leaves its API; the token is not sent there".into(),
                });
            }
            let (headers, body) = self.json(self.api_get(&url, token)).await?;
            match body {
                Value::Array(page) => items.extend(page),
                Value::Object(mut page) => {
                    if let Some(Value::Array(values)) = page.remove("values") {
                        items.extend(values);
                    }
                    next = page.get("next").and_then(Value::as_str).map(str::to_string);
                }
                _ => {}
            }
            if next.is_none() {
                next = headers.get(LINK).and_then(|v| v.to_str().ok()).and_then(next_link);
            }
        }
        Ok(items)
    }

    /// The repositories the account can reach, every page.
    pub async fn repos(&self, token: &str) -> Result<Vec<Repo>, LinkError> {
        let api = &self.api_url;
        let first = match self.provider {
            GitProvider::Github => format!("{api}/user/repos?per_page=100&sort=pushed"),
            GitProvider::Gitlab => format!("{api}/projects?membership=true&simple=true&per_page=100"),
            GitProvider::Bitbucket => format!("{api}/repositories?role=member&pagelen=100"),
            GitProvider::Codeberg => format!("{api}/user/repos?limit=50"),
        };
        let items = self.pages(first, token).await?;
        Ok(items.iter().filter_map(|item| repo_of(self.provider, item)).collect())
    }

    /// A repository's API URL: `full_name` is `owner/name` (GitLab: `group/…/name`), each
    /// segment checked by the caller.
    fn repo_api(&self, full_name: &str) -> String {
        let api = &self.api_url;
        match self.provider {
            GitProvider::Github | GitProvider::Codeberg => format!("{api}/repos/{full_name}"),
            GitProvider::Gitlab => format!("{api}/projects/{}", full_name.replace('/', "%2F")),
            GitProvider::Bitbucket => format!("{api}/repositories/{full_name}"),
        }
    }

    /// The branches of `full_name`, every page.
    pub async fn branches(&self, token: &str, full_name: &str) -> Result<Vec<String>, LinkError> {
        let repo = self.repo_api(full_name);
        let first = match self.provider {
            GitProvider::Github => format!("{repo}/branches?per_page=100"),
            GitProvider::Gitlab => format!("{repo}/repository/branches?per_page=100"),
            GitProvider::Bitbucket => format!("{repo}/refs/branches?pagelen=100"),
            GitProvider::Codeberg => format!("{repo}/branches?limit=50"),
        };
        let items = self.pages(first, token).await?;
        Ok(items.iter().filter_map(|b| b.get("name")?.as_str().map(str::to_string)).collect())
    }

    /// Registers a push webhook on `full_name` that delivers to `url`, signed with `secret`.
    pub async fn register_hook(
        &self,
        token: &str,
        full_name: &str,
        url: &str,
        secret: &str,
    ) -> Result<(), LinkError> {
        let endpoint = format!("{}/hooks", self.repo_api(full_name));
        let body = match self.provider {
            GitProvider::Github => serde_json::json!({"name": "web", "active": true, "events": ["push"],
                    "config": {"url": url, "content_type": "json", "secret": secret}}),
            GitProvider::Gitlab => serde_json::json!({"url": url, "push_events": true, "token": secret,
                    "enable_ssl_verification": true}),
            GitProvider::Bitbucket => serde_json::json!({"description": "WiseHosting", "url": url,
                    "active": true, "events": ["repo:push"], "secret": secret}),
            GitProvider::Codeberg => serde_json::json!({"type": "gitea", "active": true, "events": ["push"],
                    "config": {"url": url, "content_type": "json", "secret": secret}}),
        };
        let request = self
            .http
            .post(endpoint)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "wisehosting")
            .json(&body);
        self.json(request).await.map(|_| ())
    }
}

/// The scopes each provider needs: repositories (private ones included), the account's name,
/// and webhooks. Bitbucket takes its scopes from the consumer's settings.
fn scopes(provider: GitProvider) -> &'static [&'static str] {
    match provider {
        GitProvider::Github => &["repo", "read:user", "admin:repo_hook"],
        GitProvider::Gitlab => &["api"],
        GitProvider::Bitbucket => &[],
        GitProvider::Codeberg => &["read:user", "write:repository"],
    }
}

fn tokens(answer: &oauth2::basic::BasicTokenResponse) -> Tokens {
    Tokens {
        access: answer.access_token().secret().clone(),
        refresh: answer.refresh_token().map(|r| r.secret().clone()),
        expires_at: answer
            .expires_in()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d),
    }
}

/// A reqwest error with its causes, without the URL (which may hold a query).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// One repository of a provider's listing.
fn repo_of(provider: GitProvider, item: &Value) -> Option<Repo> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let repo = match provider {
        GitProvider::Github | GitProvider::Codeberg => Repo {
            full_name: text(item.get("full_name"))?,
            clone_url: text(item.get("clone_url"))?,
            private: item.get("private")?.as_bool()?,
            default_branch: text(item.get("default_branch")).unwrap_or_else(|| "main".into()),
        },
        GitProvider::Gitlab => Repo {
            full_name: text(item.get("path_with_namespace"))?,
            clone_url: text(item.get("http_url_to_repo"))?,
            private: text(item.get("visibility")).is_none_or(|v| v != "public"),
            default_branch: text(item.get("default_branch")).unwrap_or_else(|| "main".into()),
        },
        GitProvider::Bitbucket => {
            let clone = item
                .pointer("/links/clone")?
                .as_array()?
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("https"))?;
            let href = text(clone.get("href"))?;
            Repo {
                full_name: text(item.get("full_name"))?,
                clone_url: without_userinfo(&href),
                private: item.get("is_private")?.as_bool()?,
                default_branch: text(item.pointer("/mainbranch/name")).unwrap_or_else(|| "main".into()),
            }
        }
    };
    Some(repo)
}

/// `https://user@host/path` without `user@` (Bitbucket puts the account's name there).
fn without_userinfo(url: &str) -> String {
    match url.strip_prefix("https://").and_then(|rest| rest.split_once('@')) {
        Some((user, rest)) if !user.contains('/') => format!("https://{rest}"),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others_and_absent_on_the_last_page() {
        let header = r#"<https://api.github.com/user/repos?page=3>; rel="last", <https://api.github.com/user/repos?page=2>; rel="next""#;
        assert_eq!(next_link(header).as_deref(), Some("https://api.github.com/user/repos?page=2"));
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    }

    #[test]
    fn each_providers_listing_reads_into_one_shape() {
        let bitbucket = serde_json::json!({"full_name": "ann/site", "is_private": true,
            "mainbranch": {"name": "trunk"},
            "links": {"clone": [{"name": "ssh", "href": "git@bitbucket.org:ann/site.git"},
                                {"name": "https", "href": "https://ann@bitbucket.org/ann/site.git"}]}});
        assert_eq!(
            repo_of(GitProvider::Bitbucket, &bitbucket),
            Some(Repo {
                full_name: "ann/site".into(),
                clone_url: "https://bitbucket.org/ann/site.git".into(),
                private: true,
                default_branch: "trunk".into()
            })
        );
        let gitlab = serde_json::json!({"path_with_namespace": "g/p", "http_url_to_repo": "https://gitlab.com/g/p.git",
            "visibility": "internal", "default_branch": null});
        let repo = repo_of(GitProvider::Gitlab, &gitlab).expect("gitlab repo");
        assert!(repo.private, "internal is not public");
        assert_eq!(repo.default_branch, "main");
        assert_eq!(repo_of(GitProvider::Github, &serde_json::json!({"full_name": "a/b"})), None);
    }
}
