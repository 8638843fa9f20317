//! A stand-in OpenID Connect provider on loopback that the control plane's production client
//! talks to unchanged: discovery, JWKS, an authorization endpoint that consents at once (as a
//! person would click "Allow"), and a token endpoint that checks the code (once), the PKCE
//! verifier, the redirect URI and the client's credentials, then signs an RS256 ID token.
//!
//! Tests set who signs in ([`FakeOidc::set_user`]), forge the next token ([`Forgery`]) and
//! rotate keys ([`FakeOidc::rotate_keys`]). A [`Browser`] follows the redirects by hand,
//! keeping cookies per origin-less jar as a browser would for one site.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::Mac;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// How the next ID token is forged (T03). Each applies to one token, then resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    None,
    WrongAudience,
    WrongIssuer,
    Expired,
    AlgNone,
    /// HS256 with the provider's public key (its JWK text) as the HMAC key.
    Hs256WithPublicKey,
    /// Signed by a key the JWKS never lists.
    UnknownKid,
    NoNonce,
    WrongNonce,
    EmailUnverified,
}

/// Who the provider says signs in.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub sub: String,
    pub email: String,
    pub name: String,
}

struct Key {
    kid: String,
    private: RsaPrivateKey,
}

impl Key {
    fn generate() -> Key {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
        Key { kid: hex::encode(rand::random::<[u8; 6]>()), private }
    }

    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }
}

struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    user: FakeUser,
    used: bool,
}

/// An ES256 key (P-256), for providers that sign with ECDSA.
struct EcKey {
    kid: String,
    private: p256::ecdsa::SigningKey,
}

impl EcKey {
    fn generate() -> EcKey {
        let private = loop {
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        EcKey { kid: format!("ec-{}", hex::encode(rand::random::<[u8; 6]>())), private }
    }

    fn jwk(&self) -> Value {
        let point = self.private.verifying_key().to_sec1_point(false);
        let point = point.as_bytes();
        json!({
            "kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }
}

struct Inner {
    keys: Vec<Key>,
    /// When set, tokens are signed ES256 with it (and the JWKS lists it too).
    ec_key: Option<EcKey>,
    user: FakeUser,
    forgery: Forgery,
    grants: HashMap<String, Grant>,
    discovery_fetches: usize,
    jwks_fetches: usize,
    last_authorize: HashMap<String, String>,
}

#[derive(Clone)]
struct Shared {
    issuer: String,
    client_id: String,
    client_secret: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeOidc {
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    shared: Shared,
    stop: CancellationToken,
}

impl FakeOidc {
    pub async fn start() -> FakeOidc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client_id = format!("wisehosting-test-{}.apps.example", hex::encode(rand::random::<[u8; 4]>()));
        let client_secret = format!("secret-{}", hex::encode(rand::random::<[u8; 16]>()));
        let shared = Shared {
            issuer: format!("http://{addr}"),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            inner: Arc::new(Mutex::new(Inner {
                keys: vec![Key::generate()],
                ec_key: None,
                user: FakeUser { sub: "1000001".into(), email: "ada@example.com".into(), name: "Ada".into() },
                forgery: Forgery::None,
                grants: HashMap::new(),
                discovery_fetches: 0,
                jwks_fetches: 0,
                last_authorize: HashMap::new(),
            })),
        };
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(until).await;
        });
        FakeOidc { addr, client_id, client_secret, shared, stop }
    }

    /// What to put in `oidc.issuer_url`.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    pub fn set_user(&self, sub: &str, email: &str, name: &str) {
        self.lock().user = FakeUser { sub: sub.into(), email: email.into(), name: name.into() };
    }

    /// Forges the next ID token this way.
    pub fn forge_next(&self, forgery: Forgery) {
        self.lock().forgery = forgery;
    }

    /// A new signing key; the JWKS lists only it from now on (the old one is retired).
    pub fn rotate_keys(&self) {
        let key = Key::generate();
        self.lock().keys = vec![key];
    }

    /// Signs from now on with a new ES256 key (listed in the JWKS beside the RSA one).
    pub fn sign_with_es256(&self) {
        self.lock().ec_key = Some(EcKey::generate());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.lock().jwks_fetches
    }

    pub fn discovery_fetches(&self) -> usize {
        self.lock().discovery_fetches
    }

    /// The query of the last authorization request the provider received.
    pub fn last_authorize(&self) -> HashMap<String, String> {
        self.lock().last_authorize.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("fake provider state")
    }
}

impl Drop for FakeOidc {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": format!("stand-in provider: {error}") })))
        .into_response()
}

async fn discovery(State(s): State<Shared>) -> Json<Value> {
    s.inner.lock().expect("state").discovery_fetches += 1;
    let issuer = &s.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "name"],
    }))
}

async fn jwks(State(s): State<Shared>) -> Json<Value> {
    let mut inner = s.inner.lock().expect("state");
    inner.jwks_fetches += 1;
    let mut keys: Vec<Value> = inner.keys.iter().map(Key::jwk).collect();
    keys.extend(inner.ec_key.as_ref().map(EcKey::jwk));
    Json(json!({ "keys": keys }))
}

/// Consents at once: 302 back to the redirect URI with a fresh code and the state.
async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = s.inner.lock().expect("state");
    inner.last_authorize = q.clone();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id") != s.client_id {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let code = hex::encode(rand::random::<[u8; 16]>());
    let grant = Grant {
        redirect_uri: get("redirect_uri"),
        nonce: q.get("nonce").cloned(),
        challenge: get("code_challenge"),
        user: inner.user.clone(),
        used: false,
    };
    inner.grants.insert(code.clone(), grant);
    let Ok(mut location) = reqwest::Url::parse(&get("redirect_uri")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state"));
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

/// The client's id and secret, from HTTP Basic or the form.
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> (String, String) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| text.split_once(':').map(|(id, secret)| (id.to_string(), secret.to_string())));
    basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    })
}

async fn token(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (id, secret) = client_credentials(&headers, &form);
    if id != s.client_id || secret != s.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let mut inner = s.inner.lock().expect("state");
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(grant) = inner.grants.get_mut(&code) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if grant.used {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    grant.used = true;
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let (user, nonce) = (grant.user.clone(), grant.nonce.clone());
    let forgery = std::mem::replace(&mut inner.forgery, Forgery::None);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let mut claims = json!({
        "iss": s.issuer, "aud": s.client_id, "sub": user.sub, "email": user.email,
        "email_verified": true, "name": user.name, "iat": now, "exp": now + 3600,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    match forgery {
        Forgery::WrongAudience => claims["aud"] = json!("someone-else.apps.example"),
        Forgery::WrongIssuer => claims["iss"] = json!("https://accounts.evil.example"),
        Forgery::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        Forgery::NoNonce => {
            claims.as_object_mut().expect("object").remove("nonce");
        }
        Forgery::WrongNonce => claims["nonce"] = json!("not-the-nonce-we-were-given"),
        Forgery::EmailUnverified => claims["email_verified"] = json!(false),
        _ => {}
    }
    let key = inner.keys.last().expect("a signing key");
    let id_token = match forgery {
        Forgery::AlgNone => jwt(&json!({ "alg": "none", "typ": "JWT" }), &claims, |_| Vec::new()),
        Forgery::Hs256WithPublicKey => {
            let secret = key.jwk().to_string();
            jwt(&json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid }), &claims, |input| {
                let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
                mac.update(input);
                mac.finalize().into_bytes().to_vec()
            })
        }
        Forgery::UnknownKid => {
            let stranger = Key::generate();
            rs256(&stranger, &claims)
        }
        _ => match &inner.ec_key {
            Some(ec) => {
                use p256::ecdsa::signature::Signer as _;
                let header = json!({ "alg": "ES256", "typ": "JWT", "kid": ec.kid });
                jwt(&header, &claims, |input| {
                    let signature: p256::ecdsa::Signature = ec.private.sign(input);
                    signature.to_bytes().to_vec()
                })
            }
            None => rs256(key, &claims),
        },
    };
    Json(json!({
        "access_token": hex::encode(rand::random::<[u8; 16]>()),
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    }))
    .into_response()
}

fn rs256(key: &Key, claims: &Value) -> String {
    let signer = SigningKey::<Sha256>::new(key.private.clone());
    jwt(&json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid }), claims, |input| signer.sign(input).to_vec())
}

fn jwt(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A browser for one site and its provider: follows nothing by itself, keeps cookies (by
/// name; `Max-Age=0` deletes), and sends them back to every URL under `site`.
pub struct Browser {
    client: reqwest::Client,
    site: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(site: &str) -> Browser {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Browser { client, site: site.trim_end_matches('/').to_string(), cookies: HashMap::new() }
    }

    fn cookie_line(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap_or_default();
            let Some((name, rest)) = text.split_once('=') else { continue };
            let value = rest.split(';').next().unwrap_or_default().to_string();
            if text.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value);
            }
        }
    }

    /// The full URL of `location` (a path is the site's).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') { format!("{}{location}", self.site) } else { location.to_string() }
    }

    /// One request; cookies go only to the site, never to another origin.
    pub async fn send(
        &mut self,
        method: reqwest::Method,
        url: &str,
        json: Option<&Value>,
    ) -> reqwest::Response {
        let url = self.absolute(url);
        let mut request = self.client.request(method, &url);
        if url.starts_with(&self.site) && !self.cookies.is_empty() {
            request = request.header(header::COOKIE, self.cookie_line());
        }
        if let Some(body) = json {
            request = request.json(body);
        }
        let response = request.send().await.expect("browser request");
        if url.starts_with(&self.site) {
            self.keep_cookies(&response);
        }
        response
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, url, None).await
    }

    /// Where a redirect answer points.
    pub fn location(response: &reqwest::Response) -> String {
        response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    /// Clicks "Sign in with Google": the control plane's login, the provider's consent, and
    /// the callback. Returns where the callback sent the browser (`/`, `/login/2fa` or
    /// `/login?error=<code>`).
    pub async fn sign_in(&mut self) -> String {
        let start = self.get("/api/auth/google/login").await;
        assert_eq!(start.status(), 302, "the login redirects to the provider");
        let consent = self.get(&Browser::location(&start)).await;
        assert_eq!(consent.status(), 302, "the provider redirects back");
        let callback = Browser::location(&consent);
        self.finish(&callback).await
    }

    /// Follows the provider's redirect to the callback URL; returns where it sent the browser.
    pub async fn finish(&mut self, callback: &str) -> String {
        let done = self.get(callback).await;
        assert_eq!(done.status(), 302, "the callback redirects");
        Browser::location(&done)
    }

    pub fn has_session(&self) -> bool {
        self.cookies.contains_key("wh_session")
    }
}
