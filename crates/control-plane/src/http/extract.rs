//! Authentication at the edge: [`CurrentUser`] from the `wh_session` cookie, and the CSRF
//! guard for cookie-authenticated state changes.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::state::AppState;
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
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
        if token.len() > 100 {
            return Err(ApiError::Unauthorized);
        }
        let user = users::session_user(&state.db, token).await?.ok_or(ApiError::Unauthorized)?;
        state
            .user_limiter
            .check(user.user_id)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(CurrentUser { id: user.user_id, session_id: user.session_id, email: user.email })
    }
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
