//! Authentication at the edge: [`CurrentUser`] from the `wh_session` cookie or an API token
//! (`Authorization: Bearer wht_…`, its scopes checked against the matched route by
//! [`scope::required`] — the one place scopes are enforced), [`OwnedApp`] (the user's app
//! named by the path), the audit row of a user's action ([`audit_user`]), and the CSRF guard
//! for cookie-authenticated state changes.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use axum::extract::{MatchedPath, Path};
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use crate::identity::scope::{self, Needs, Scope};
use crate::state::AppState;
use crate::store::apps::{self, App};
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::{tokens, users};

pub const SESSION_COOKIE: &str = "wh_session";

/// The longest token of ours (session, sign-in, 2FA, API): anything longer is nobody's.
const MAX_TOKEN_LEN: usize = 100;

/// The value of one of our token cookies in the request, if present and not over
/// [`MAX_TOKEN_LEN`] (a longer one is treated as absent, never looked up).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|line| {
            line.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        })
        .filter(|value| value.len() <= MAX_TOKEN_LEN)
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The browser's `wh_session` cookie (the session's id).
    Session(i64),
    /// An API token (its id) and its scopes.
    Token { id: i64, scopes: Vec<Scope> },
}

/// The signed-in user. Rejects with 401 when there is no live session or token, with 403
/// `insufficient_scope` when a token's scopes do not cover the route, and with 429 when the
/// user is over `user_requests_per_minute`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    /// The name of the user's plan; [`crate::plans::Registry::get`] gives its limits.
    pub plan: String,
    pub credential: Credential,
    /// The address the request came from, for the audit trail.
    pub ip: Option<String>,
}

impl CurrentUser {
    /// The browser session of this request; only session-only routes ask, and tokens never
    /// reach them ([`scope::required`]).
    pub fn session_id(&self) -> Result<i64, ApiError> {
        match self.credential {
            Credential::Session(id) => Ok(id),
            Credential::Token { .. } => Err(ApiError::InsufficientScope(SESSION_ONLY_MESSAGE.into())),
        }
    }
}

const SESSION_ONLY_MESSAGE: &str = "API tokens cannot manage tokens, sessions or two-factor authentication; do this signed in to the dashboard";

/// The bearer token of the request, if it sent `Authorization`; `Err` when the header is
/// there but is not `Bearer wht_…`.
fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(tokens::TOKEN_PREFIX) && t.len() <= MAX_TOKEN_LEN);
    Some(token.ok_or(ApiError::Unauthorized))
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        let ip = peer.map(|c| c.0.ip().to_canonical().to_string());
        let user = match bearer(parts) {
            Some(token) => {
                let row = tokens::token_user(&state.db, token?).await?.ok_or(ApiError::Unauthorized)?;
                let scopes: Vec<Scope> = row.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
                let route = parts.extensions.get::<MatchedPath>().map_or(parts.uri.path(), |m| m.as_str());
                let needs = scope::required(&parts.method, route);
                if !scope::allows(&scopes, needs) {
                    return Err(ApiError::InsufficientScope(match needs {
                        Needs::Session => SESSION_ONLY_MESSAGE.into(),
                        Needs::Scope(wanted) => format!(
                            "this token's scopes ({}) do not allow this; it needs `{}`: make a token with that scope",
                            row.scopes.join(", "),
                            wanted.as_str()
                        ),
                    }));
                }
                if row.stale_used {
                    tokens::touch(&state.db, row.token_id).await?;
                }
                let credential = Credential::Token { id: row.token_id, scopes };
                CurrentUser { id: row.user_id, email: row.email, plan: row.plan, credential, ip }
            }
            None => {
                let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
                let row = users::session_user(&state.db, token).await?.ok_or(ApiError::Unauthorized)?;
                if row.stale_seen {
                    users::touch_session(&state.db, row.session_id).await?;
                }
                let credential = Credential::Session(row.session_id);
                CurrentUser { id: row.user_id, email: row.email, plan: row.plan, credential, ip }
            }
        };
        state.user_limiter.check(user.id)?;
        Ok(user)
    }
}

/// True while the credential may still be used (for long-lived streams that re-check).
pub async fn still_live(db: &sqlx::PgPool, credential: &Credential) -> Result<bool, sqlx::Error> {
    match credential {
        Credential::Session(id) => users::session_live(db, *id).await,
        Credential::Token { id, .. } => tokens::token_live(db, *id).await,
    }
}

/// The signed-in user's app named by the path's `{id}`. Another user's app, no app, and an
/// id that is not a number all answer the same 404 (T08): nothing tells them apart.
#[derive(Debug, Clone)]
pub struct OwnedApp {
    pub user: CurrentUser,
    pub app: App,
}

#[derive(Deserialize)]
struct AppPath {
    id: i64,
}

impl FromRequestParts<AppState> for OwnedApp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let no_such_app = || ApiError::NotFound("no such app".into());
        let Path(AppPath { id }) =
            Path::<AppPath>::from_request_parts(parts, state).await.map_err(|_| no_such_app())?;
        let app = apps::get_for_user(&state.db, user.id, id).await?.ok_or_else(no_such_app)?;
        Ok(OwnedApp { user, app })
    }
}

/// One audit row for an action of the signed-in user on one target (`kind`, `id`).
pub async fn audit_user(
    db: impl sqlx::PgExecutor<'_>,
    user: &CurrentUser,
    action: AuditAction,
    kind: &str,
    id: i64,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let actor = format!("user:{}", user.id);
    let event = AuditEvent {
        user_id: Some(user.id),
        actor: &actor,
        action,
        target_type: Some(kind),
        target_id: Some(id.to_string()),
        ip: user.ip.clone(),
        detail,
    };
    audit::record(db, event).await
}

/// Refuses cross-site state changes (SECURITY-TESTS T06): a `Sec-Fetch-Site` other than
/// same-origin or none, or an `Origin` whose host is not the request's `Host`. Requests with
/// `Authorization` carry no ambient credential (a browser never adds the header cross-site
/// without a CORS preflight we do not answer), so they pass.
pub async fn csrf_guard(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::AUTHORIZATION);
    if !safe {
        let headers = req.headers();
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if site.is_some_and(|s| s != "same-origin" && s != "none") {
            return ApiError::Forbidden("cross-site requests may not change state".into()).into_response();
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            if origin_host != host {
                return ApiError::Forbidden("the request's Origin is not this site".into()).into_response();
            }
        }
    }
    next.run(req).await
}
