//! [`FakeGitProvider`]: a stand-in for GitHub, GitLab, Bitbucket or Codeberg (Gitea) on
//! loopback, speaking each one's own OAuth endpoints and REST shapes so the control plane's
//! production client talks to it unchanged (SPEC §14.8): an authorize page that consents at
//! once (as a person clicking "Authorize"), a token endpoint that checks the client's
//! credentials (in the body, or as basic auth for Bitbucket), the code (once) and the redirect
//! URI, refresh tokens used once each, revocation where the provider has it, and the user,
//! repository (paginated: GitHub/GitLab/Gitea by `Link`, Bitbucket by `next`), branch and hook
//! endpoints, each checking the bearer token.
//!
//! The web site is the server's root (`base_url`), the API is `<root>/api` (`api_url`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wisehosting_proto::job::GitProvider;

/// The most items a listing page holds here, whatever the client asks, so a handful of
/// repositories spans several pages.
pub const PAGE_SIZE: usize = 10;

/// A repository the stand-in's account has.
#[derive(Debug, Clone)]
pub struct FakeRepo {
    pub full_name: String,
    pub clone_url: String,
    pub private: bool,
    pub default_branch: String,
}

struct Token {
    expires: Option<Instant>,
    revoked: bool,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, String>,
    tokens: HashMap<String, Token>,
    refresh_tokens: HashMap<String, bool>,
    token_lifetime: Option<Duration>,
    repos: Vec<FakeRepo>,
    branches: Vec<String>,
    hooks: Vec<(String, Value)>,
    revocations: Vec<String>,
    token_requests: usize,
    refreshes: usize,
    next_token: Option<String>,
}

pub struct FakeGitProvider {
    pub provider: GitProvider,
    /// `http://127.0.0.1:<port>`: the web site (`base_url`).
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub login: String,
    inner: Arc<Mutex<Inner>>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct Shared {
    provider: GitProvider,
    client_id: String,
    client_secret: String,
    login: String,
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGitProvider {
    /// A stand-in for `provider` whose account `login` has `repos` (none to begin with).
    pub async fn start(provider: GitProvider, login: &str) -> FakeGitProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let tag = hex::encode(wisehosting_crypto::random_bytes::<4>());
        let inner = Arc::new(Mutex::new(Inner { branches: vec!["main".into()], ..Inner::default() }));
        let shared = Shared {
            provider,
            client_id: format!("{provider}-client-{tag}"),
            client_secret: format!("{provider}-secret-{tag}"),
            login: login.to_string(),
            url: url.clone(),
            inner: inner.clone(),
        };
        let shutdown = CancellationToken::new();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
        FakeGitProvider {
            provider,
            url,
            client_id: shared.client_id,
            client_secret: shared.client_secret,
            login: login.to_string(),
            inner,
            shutdown,
        }
    }

    /// `base_url` and `api_url` for the control plane's config.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    /// Points the control plane's config for this provider at the stand-in.
    pub fn configure(&self, config: &mut wisehosting_control_plane::Config) {
        let p = match self.provider {
            GitProvider::Github => &mut config.git_providers.github,
            GitProvider::Gitlab => &mut config.git_providers.gitlab,
            GitProvider::Bitbucket => &mut config.git_providers.bitbucket,
            GitProvider::Codeberg => &mut config.git_providers.codeberg,
        };
        p.client_id = self.client_id.clone();
        p.client_secret = wisehosting_crypto::Secret::new(self.client_secret.clone());
        p.base_url = self.url.clone();
        p.api_url = self.api_url();
    }

    pub fn add_repo(&self, repo: FakeRepo) {
        self.inner.lock().expect("lock").repos.push(repo);
    }

    pub fn set_branches<S: AsRef<str>>(&self, branches: &[S]) {
        self.inner.lock().expect("lock").branches = branches.iter().map(|b| b.as_ref().to_string()).collect();
    }

    /// Access tokens issued from now on expire after `lifetime` (and come with a refresh token).
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        self.inner.lock().expect("lock").token_lifetime = lifetime;
    }

    /// The next access token issued is `token` (a test's git server checks it).
    pub fn set_next_token(&self, token: &str) {
        self.inner.lock().expect("lock").next_token = Some(token.to_string());
    }

    /// Every access token issued so far stops working now (as it does when it expires).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in self.inner.lock().expect("lock").tokens.values_mut() {
            token.expires = Some(now);
        }
    }

    /// Every token (access and refresh) is revoked, as when the user removes the app at the
    /// provider.
    pub fn revoke_everything(&self) {
        let mut inner = self.inner.lock().expect("lock");
        for token in inner.tokens.values_mut() {
            token.revoked = true;
        }
        for used in inner.refresh_tokens.values_mut() {
            *used = true;
        }
    }

    /// The access tokens that work now.
    pub fn live_tokens(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("lock");
        let now = Instant::now();
        inner
            .tokens
            .iter()
            .filter(|(_, t)| !t.revoked && t.expires.is_none_or(|e| e > now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Tokens revoked through the provider's revocation endpoint.
    pub fn revocations(&self) -> Vec<String> {
        self.inner.lock().expect("lock").revocations.clone()
    }

    /// Hooks registered: (repository path as requested, body).
    pub fn hooks(&self) -> Vec<(String, Value)> {
        self.inner.lock().expect("lock").hooks.clone()
    }

    /// Refresh-token grants served.
    pub fn refreshes(&self) -> usize {
        self.inner.lock().expect("lock").refreshes
    }
}

impl Drop for FakeGitProvider {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn handle(State(s): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = query_map(parts.uri.query());
    let (authorize, token) = match s.provider {
        GitProvider::Github | GitProvider::Codeberg => {
            ("/login/oauth/authorize", "/login/oauth/access_token")
        }
        GitProvider::Gitlab => ("/oauth/authorize", "/oauth/token"),
        GitProvider::Bitbucket => ("/site/oauth2/authorize", "/site/oauth2/access_token"),
    };
    match (&parts.method, path.as_str()) {
        (&Method::GET, p) if p == authorize => authorize_page(&s, &query),
        (&Method::POST, p) if p == token => token_endpoint(&s, &parts.headers, &body),
        (&Method::POST, "/oauth/revoke") if s.provider == GitProvider::Gitlab => {
            let form = query_map(std::str::from_utf8(&body).ok());
            gitlab_revoke(&s, &form)
        }
        _ => match path.strip_prefix("/api") {
            Some(api) => api_endpoint(&s, &parts.method, api, &query, &parts.headers, &body),
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
    }
}

/// Consents at once: back to the redirect URI with a new code and the state.
fn authorize_page(s: &Shared, query: &HashMap<String, String>) -> Response {
    if query.get("client_id") != Some(&s.client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let Some(redirect) = query.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri").into_response();
    };
    let code = hex::encode(wisehosting_crypto::random_bytes::<10>());
    s.inner.lock().expect("lock").codes.insert(code.clone(), redirect.clone());
    let mut location = url::Url::parse(redirect).expect("redirect_uri is a URL");
    location.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = query.get("state") {
        location.query_pairs_mut().append_pair("state", state);
    }
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

fn oauth_error(error: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": error, "error_description": error}))
}

/// The client's credentials, then an authorization code (once, same redirect URI) or a
/// refresh token (once: each grant rotates it).
fn token_endpoint(s: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    let form = query_map(std::str::from_utf8(body).ok());
    let (id, secret) = match s.provider {
        GitProvider::Bitbucket => {
            let basic = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (id, secret) = basic.split_once(':').unwrap_or_default();
            (id.to_string(), secret.to_string())
        }
        _ => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != s.client_id || secret != s.client_secret {
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let mut inner = s.inner.lock().expect("lock");
    inner.token_requests += 1;
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            match inner.codes.remove(&code) {
                Some(redirect) if form.get("redirect_uri") == Some(&redirect) => {}
                Some(_) => return oauth_error("invalid_grant"),
                None => return oauth_error("bad_verification_code"),
            }
        }
        Some("refresh_token") => {
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            match inner.refresh_tokens.get_mut(&refresh) {
                Some(used) if !*used => *used = true,
                _ => return oauth_error("invalid_grant"),
            }
            inner.refreshes += 1;
        }
        _ => return oauth_error("unsupported_grant_type"),
    }
    let access = inner.next_token.take().unwrap_or_else(|| {
        format!("{}_{}", s.provider, hex::encode(wisehosting_crypto::random_bytes::<12>()))
    });
    let lifetime = inner.token_lifetime;
    inner
        .tokens
        .insert(access.clone(), Token { expires: lifetime.map(|l| Instant::now() + l), revoked: false });
    let mut answer = json!({"access_token": access, "token_type": "bearer", "scope": "repo"});
    if let Some(lifetime) = lifetime {
        let refresh = format!("r_{}", hex::encode(wisehosting_crypto::random_bytes::<12>()));
        inner.refresh_tokens.insert(refresh.clone(), false);
        answer["refresh_token"] = json!(refresh);
        answer["expires_in"] = json!(lifetime.as_secs());
    }
    json_response(StatusCode::OK, answer)
}

fn gitlab_revoke(s: &Shared, form: &HashMap<String, String>) -> Response {
    if form.get("client_id") != Some(&s.client_id) || form.get("client_secret") != Some(&s.client_secret) {
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    revoke(s, form.get("token").map(String::as_str).unwrap_or_default());
    json_response(StatusCode::OK, json!({}))
}

fn revoke(s: &Shared, token: &str) {
    let mut inner = s.inner.lock().expect("lock");
    if let Some(t) = inner.tokens.get_mut(token) {
        t.revoked = true;
    }
    inner.revocations.push(token.to_string());
}

/// Whether the request's bearer token works.
fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let inner = s.inner.lock().expect("lock");
    inner.tokens.get(token).is_some_and(|t| !t.revoked && t.expires.is_none_or(|e| e > Instant::now()))
}

fn api_endpoint(
    s: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    // GitHub's grant revocation authenticates the OAuth app, not a user token.
    if let Some(client) = path.strip_prefix("/applications/").and_then(|p| p.strip_suffix("/grant")) {
        if s.provider != GitProvider::Github || method != Method::DELETE {
            return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
        }
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.client_id, s.client_secret))
        );
        let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if client != s.client_id || basic != Some(expected.as_str()) {
            return json_response(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
        }
        let body: Value = serde_json::from_slice(body).unwrap_or_default();
        revoke(s, body["access_token"].as_str().unwrap_or_default());
        return StatusCode::NO_CONTENT.into_response();
    }
    if !authorized(s, headers) {
        return json_response(StatusCode::UNAUTHORIZED, json!({"message": "Bad credentials"}));
    }
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let repos = s.inner.lock().expect("lock").repos.clone();
    match (method.clone(), s.provider, path) {
        (Method::GET, GitProvider::Github | GitProvider::Codeberg, "/user") => {
            json_response(StatusCode::OK, json!({"login": s.login, "id": 1}))
        }
        (Method::GET, GitProvider::Gitlab | GitProvider::Bitbucket, "/user") => {
            json_response(StatusCode::OK, json!({"username": s.login, "id": 1}))
        }
        (Method::GET, GitProvider::Github | GitProvider::Codeberg, "/user/repos") => {
            let items: Vec<Value> = repos
                .iter()
                .map(|r| {
                    json!({"full_name": r.full_name, "clone_url": r.clone_url, "private": r.private,
                                "default_branch": r.default_branch})
                })
                .collect();
            paged(s, path, query, page, &items)
        }
        (Method::GET, GitProvider::Gitlab, "/projects") => {
            let items: Vec<Value> = repos
                .iter()
                .map(|r| {
                    json!({"path_with_namespace": r.full_name, "http_url_to_repo": r.clone_url,
                                "visibility": if r.private { "private" } else { "public" },
                                "default_branch": r.default_branch})
                })
                .collect();
            paged(s, path, query, page, &items)
        }
        (Method::GET, GitProvider::Bitbucket, "/repositories") => {
            let items: Vec<Value> = repos
                .iter()
                .map(|r| {
                    let (owner, _) = r.full_name.split_once('/').unwrap_or_default();
                    let href = r.clone_url.replacen("https://", &format!("https://{owner}@"), 1);
                    json!({"full_name": r.full_name, "is_private": r.private,
                           "mainbranch": {"name": r.default_branch},
                           "links": {"clone": [{"name": "ssh", "href": "git@example:x.git"},
                                               {"name": "https", "href": href}]}})
                })
                .collect();
            paged(s, path, query, page, &items)
        }
        (method, provider, rest) => repo_endpoint(s, &method, provider, rest, query, page, body),
    }
}

/// The repository a path names, if the account has it.
fn known_repo(s: &Shared, full_name: &str) -> bool {
    s.inner.lock().expect("lock").repos.iter().any(|r| r.full_name == full_name)
}

fn repo_endpoint(
    s: &Shared,
    method: &Method,
    provider: GitProvider,
    path: &str,
    query: &HashMap<String, String>,
    page: usize,
    body: &Bytes,
) -> Response {
    let not_found = || json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    let (full_name, rest) = match provider {
        GitProvider::Github | GitProvider::Codeberg => {
            let Some(rest) = path.strip_prefix("/repos/") else { return not_found() };
            let mut parts = rest.splitn(3, '/');
            let (Some(owner), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
                return not_found();
            };
            (format!("{owner}/{name}"), rest.to_string())
        }
        GitProvider::Gitlab => {
            let Some(rest) = path.strip_prefix("/projects/") else { return not_found() };
            let Some((id, rest)) = rest.split_once('/') else { return not_found() };
            (id.replace("%2F", "/"), rest.to_string())
        }
        GitProvider::Bitbucket => {
            let Some(rest) = path.strip_prefix("/repositories/") else { return not_found() };
            let mut parts = rest.splitn(3, '/');
            let (Some(owner), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
                return not_found();
            };
            (format!("{owner}/{name}"), rest.to_string())
        }
    };
    if !known_repo(s, &full_name) {
        return not_found();
    }
    let branches_path = match provider {
        GitProvider::Github | GitProvider::Codeberg => "branches",
        GitProvider::Gitlab => "repository/branches",
        GitProvider::Bitbucket => "refs/branches",
    };
    if *method == Method::GET && rest == branches_path {
        let branches = s.inner.lock().expect("lock").branches.clone();
        let items: Vec<Value> = branches.iter().map(|b| json!({"name": b})).collect();
        return paged(s, path, query, page, &items);
    }
    if *method == Method::POST && rest == "hooks" {
        let hook: Value = serde_json::from_slice(body).unwrap_or_default();
        s.inner.lock().expect("lock").hooks.push((full_name, hook));
        return json_response(StatusCode::CREATED, json!({"id": 1}));
    }
    not_found()
}

/// One page of `items`, linked to the next as the provider does.
fn paged(s: &Shared, path: &str, query: &HashMap<String, String>, page: usize, items: &[Value]) -> Response {
    let start = (page - 1) * PAGE_SIZE;
    let slice: Vec<Value> = items.iter().skip(start).take(PAGE_SIZE).cloned().collect();
    let more = start + PAGE_SIZE < items.len();
    let mut next_query: Vec<(String, String)> =
        query.iter().filter(|(k, _)| k.as_str() != "page").map(|(k, v)| (k.clone(), v.clone())).collect();
    next_query.push(("page".into(), (page + 1).to_string()));
    next_query.sort();
    let next = format!(
        "{}/api{path}?{}",
        s.url,
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(next_query).finish()
    );
    if s.provider == GitProvider::Bitbucket {
        let mut body = json!({"values": slice, "pagelen": PAGE_SIZE, "page": page});
        if more {
            body["next"] = json!(next);
        }
        return json_response(StatusCode::OK, body);
    }
    let mut response = json_response(StatusCode::OK, Value::Array(slice));
    if more {
        let link = format!("<{next}>; rel=\"next\", <{}/api{path}?page=1>; rel=\"first\"", s.url);
        if let Ok(value) = link.parse() {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}
