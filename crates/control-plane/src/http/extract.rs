//! Authentication at the edge: [`CurrentUser`] from the `wh_session` cookie, [`OwnedApp`]
//! (the user's app named by the path), the audit row of a user's action ([`audit_user`]),
//! and the CSRF guard for cookie-authenticated state changes.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use axum::extract::Path;
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use crate::state::AppState;
use crate::store::apps::{self, App};
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::users;

pub const SESSION_COOKIE: &str = "wh_session";

/// The value of a cookie in the request, if present.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    })
}

/// The signed-in user. Rejects with 401 when there is no live session, and with 429 when the
/// user is over `user_requests_per_minute`.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub session_id: i64,
    pub email: String,
    /// The name of the user's plan; [`crate::plans::Registry::get`] gives its limits.
    pub plan: String,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
        if token.len() > 100 {
            return Err(ApiError::Unauthorized);
        }
        let user = users::session_user(&state.db, token).await?.ok_or(ApiError::Unauthorized)?;
        if user.stale_seen {
            users::touch_session(&state.db, user.session_id).await?;
        }
        state
            .user_limiter
            .check(user.user_id)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(CurrentUser { id: user.user_id, session_id: user.session_id, email: user.email, plan: user.plan })
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
        ip: None,
        detail,
    };
    audit::record(db, event).await
}

/// Refuses cross-site state changes (SECURITY-TESTS T06): a `Sec-Fetch-Site` other than
/// same-origin or none, or an `Origin` whose host is not the request's `Host`.
pub async fn csrf_guard(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
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
