//! The OpenID Connect relying party (SPEC §14.1): authorization code with PKCE (S256), `state`
//! and `nonce`, over the `openidconnect` crate and our one `reqwest` stack.
//!
//! The provider's discovery document and keys are fetched on first use and cached for an hour;
//! an ID token signed by a key the cache does not hold (the provider rotated its keys) makes
//! one fetch of the key set, at most once per [`KEYS_REFETCH_FLOOR`], so forged `kid`s cannot
//! turn us into a request amplifier. Redirects are never followed: every URL we call is the
//! configured issuer's own.

use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use wisehosting_crypto::random_token;

use crate::config::Config;

/// How long the discovery document and key set are trusted before they are fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The shortest time between two key-set fetches caused by an unknown `kid`.
pub const KEYS_REFETCH_FLOOR: Duration = Duration::from_secs(10);
/// An ID token whose `iat` is further in the future than this is refused (clock skew allowed).
const IAT_FUTURE_SKEW_SECS: i64 = 60;

/// Why a sign-in failed; [`OidcError::code`] is the `error` of `/login?error=<code>`.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in provider cannot be reached or answered badly: {0}")]
    Provider(String),
    #[error("the provider refused the authorization code (used twice, expired, or not ours): {0}")]
    CodeRejected(String),
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
    #[error("the provider did not send an ID token")]
    NoIdToken,
    #[error("the provider has not verified this email address")]
    EmailUnverified,
}

impl OidcError {
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Provider(_) => "provider_unavailable",
            OidcError::CodeRejected(_) => "code_rejected",
            OidcError::InvalidToken(_) | OidcError::NoIdToken => "invalid_token",
            OidcError::EmailUnverified => "email_unverified",
        }
    }
}

/// A sign-in begun: where to send the browser, and what to keep until the callback.
#[derive(Debug)]
pub struct Started {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
}

/// A client built from discovery: authorization endpoint set, token endpoint maybe.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Cached {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// The configured provider, its cached metadata and keys.
pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    last_key_refetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.issuer.as_str()).finish_non_exhaustive()
    }
}

impl Oidc {
    /// The provider of `config.oidc`, or `None` when sign-in with a provider is off.
    pub fn from_config(config: &Config) -> Result<Option<Oidc>, String> {
        let oidc = &config.oidc;
        if !oidc.enabled() {
            return Ok(None);
        }
        let public_url = config.api_server.public_url.as_deref().unwrap_or_default().trim_end_matches('/');
        let issuer = IssuerUrl::new(oidc.issuer_url.trim_end_matches('/').to_string())
            .map_err(|e| format!("oidc.issuer_url is not a URL: {e}"))?;
        let redirect = RedirectUrl::new(format!("{public_url}/api/auth/google/callback"))
            .map_err(|e| format!("api_server.public_url does not make a redirect URI: {e}"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for sign-in: {e}"))?;
        Ok(Some(Oidc {
            issuer,
            client_id: ClientId::new(oidc.client_id.trim().to_string()),
            client_secret: ClientSecret::new(oidc.client_secret.expose().to_string()),
            redirect,
            http,
            cache: Mutex::new(None),
            last_key_refetch: Mutex::new(None),
        }))
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The discovery document with its keys, from the cache while it is fresh. A stale copy
    /// keeps serving when the provider cannot be reached.
    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref().filter(|c| c.fetched.elapsed() < DISCOVERY_TTL) {
            return Ok(cached.metadata.clone());
        }
        match CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await {
            Ok(metadata) => {
                *cache = Some(Cached { metadata: metadata.clone(), fetched: Instant::now() });
                Ok(metadata)
            }
            Err(e) => {
                let reason = error_chain(&e);
                match cache.as_ref() {
                    Some(stale) => {
                        tracing::warn!(issuer = %self.issuer.as_str(), error = %reason, "sign-in provider discovery failed; using the cached copy");
                        Ok(stale.metadata.clone())
                    }
                    None => Err(OidcError::Provider(format!("discovery failed: {reason}"))),
                }
            }
        }
    }

    /// Fetches the key set again after a token named a key we do not hold. False when the
    /// last such fetch is under [`KEYS_REFETCH_FLOOR`] old (no fetch made).
    async fn refetch_keys(&self) -> Result<bool, OidcError> {
        {
            let mut last = self.last_key_refetch.lock().await;
            if last.is_some_and(|at| at.elapsed() < KEYS_REFETCH_FLOOR) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let metadata = self.metadata().await?;
        let keys = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http).await.map_err(|e| {
            OidcError::Provider(format!("fetching the signing keys failed: {}", error_chain(&e)))
        })?;
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_mut() {
            cached.metadata = cached.metadata.clone().set_jwks(keys);
        }
        Ok(true)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(metadata, self.client_id.clone(), Some(self.client_secret.clone()))
            .set_redirect_uri(self.redirect.clone())
    }

    /// Begins a sign-in: fresh `state`, `nonce` and PKCE verifier, and the provider's URL.
    pub async fn start(&self) -> Result<Started, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata);
        let state = random_token("");
        let nonce = random_token("");
        let verifier = PkceCodeVerifier::new(random_token("") + &random_token(""));
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Started { authorize_url: url.to_string(), state, nonce, pkce_verifier: verifier.secret().clone() })
    }

    /// Ends a sign-in: exchanges the code (with the PKCE verifier) and validates the ID token
    /// against the provider's keys, our client id, the issuer, the time and the nonce.
    pub async fn finish(&self, code: &str, pkce_verifier: &str, nonce: &str) -> Result<Identity, OidcError> {
        let client = self.client(self.metadata().await?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Provider(format!("the provider names no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(_) => {
                    OidcError::CodeRejected(error_chain(&e))
                }
                _ => OidcError::Provider(format!("the token exchange failed: {}", error_chain(&e))),
            })?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?.clone();
        let nonce = Nonce::new(nonce.to_string());
        let verify = |client: &Client| {
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs([
                    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                ])
                .set_issue_time_verifier_fn(|iat| {
                    if iat > chrono::Utc::now() + chrono::Duration::seconds(IAT_FUTURE_SKEW_SECS) {
                        Err(format!("issued in the future ({iat})"))
                    } else {
                        Ok(())
                    }
                });
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_keys().await? => verify(&self.client(self.metadata().await?)),
            other => other,
        }
        .map_err(|e| OidcError::InvalidToken(e.to_string()))?;
        if claims.email_verified() != Some(true) {
            return Err(OidcError::EmailUnverified);
        }
        let email = claims.email().map(|e| e.as_str().to_string()).ok_or_else(|| {
            OidcError::InvalidToken("the ID token has no email; ask for the email scope".into())
        })?;
        let name =
            claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_string()).unwrap_or_default();
        Ok(Identity {
            issuer: self.issuer.as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email,
            name,
        })
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
