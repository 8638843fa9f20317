//! Sign-in: `POST /api/auth/dev-login` (single-machine mode only; 404 otherwise),
//! `POST /api/auth/logout`, `GET /api/me`. Outside single-machine mode no one can sign in
//! yet: OpenID Connect sign-in is issue 12's.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::extract::{CurrentUser, SESSION_COOKIE};
use super::{ApiError, ApiJson};
use crate::config::Config;
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, AuditEvent};
use crate::store::{apps, users};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/dev-login", post(dev_login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
}

#[derive(Debug, Deserialize)]
struct DevLogin {
    email: String,
}

fn valid_email(email: &str) -> bool {
    let email = email.trim();
    (3..=254).contains(&email.len())
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
}

/// The session cookie; `Secure` whenever users reach the platform over HTTPS (T01).
fn session_cookie(config: &Config, token: &str, max_age_secs: i64) -> Result<HeaderValue, ApiError> {
    let https = config.api_server.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .map_err(|_| ApiError::Internal("cannot build the session cookie".into()))
}

async fn dev_login(
    State(state): State<AppState>,
    ConnectInfo(ip): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DevLogin>,
) -> Result<Response, ApiError> {
    if !state.config.single_machine {
        return Err(ApiError::NotFound("no such endpoint; see the API documentation for the paths".into()));
    }
    if !valid_email(&body.email) {
        return Err(ApiError::invalid("email", "give an email address like you@example.com"));
    }
    let user_id = users::upsert_by_email(&state.db, body.email.trim()).await?;
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let mut tx = state.db.begin().await?;
    let token = users::create_session(&mut *tx, user_id, Some(&ip.ip().to_string()), agent).await?;
    let actor = format!("user:{user_id}");
    audit::record(
        &mut *tx,
        AuditEvent {
            user_id: Some(user_id),
            actor: &actor,
            action: AuditAction::AuthLogin,
            target_type: Some("session"),
            target_id: None,
            ip: Some(ip.ip().to_string()),
            detail: json!({ "method": "dev-login" }),
        },
    )
    .await?;
    tx.commit().await?;
    let cookie = session_cookie(&state.config, &token, i64::from(users::SESSION_DAYS) * 86_400)?;
    let mut response =
        (StatusCode::OK, Json(json!({ "user": { "id": user_id, "email": body.email.trim() } })))
            .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn logout(State(state): State<AppState>, user: CurrentUser) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    users::revoke_session(&mut *tx, user.session_id).await?;
    let actor = format!("user:{}", user.id);
    audit::record(
        &mut *tx,
        AuditEvent {
            user_id: Some(user.id),
            actor: &actor,
            action: AuditAction::AuthLogout,
            target_type: Some("session"),
            target_id: Some(user.session_id.to_string()),
            ip: None,
            detail: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state.config, "", 0)?);
    Ok(response)
}

/// The dashboard's global state (SPEC §14.1): the user, their plan and its limits, their apps
/// with status and URL, linked git providers (none until they can be linked) and the platform.
async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<serde_json::Value>, ApiError> {
    let profile = users::profile(&state.db, user.id).await?.ok_or(ApiError::Unauthorized)?;
    let config = &state.config;
    let apps: Vec<serde_json::Value> = apps::summaries_for_user(&state.db, user.id)
        .await?
        .into_iter()
        .map(|a| {
            let host = crate::routing::platform_hostname(&a.slug, a.zone.as_deref(), &config.subdomain_base);
            let port = config.apps_port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("http://{host}{port}/");
            json!({ "id": a.id, "name": a.name, "slug": a.slug, "status": a.status, "url": url })
        })
        .collect();
    let mode = if config.single_machine { "single_machine" } else { "multi_host" };
    Ok(Json(json!({
        "user": profile,
        "plan": state.plans.get(&user.plan).view(),
        "apps": apps,
        "git_providers": [],
        "platform": { "version": env!("CARGO_PKG_VERSION"), "mode": mode },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_one_at_and_no_spaces() {
        assert!(valid_email("a@b"));
        assert!(valid_email("dev@example.com"));
        for bad in ["", "ab", "a@", "@b", "a b@c", "a@b@c", "a\n@b"] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_secure_whenever_the_public_url_is_https() {
        let mut config = Config::default();
        let plain = session_cookie(&config, "t", 60).expect("cookie");
        assert!(!plain.to_str().unwrap_or_default().contains("Secure"), "{plain:?}");
        config.api_server.public_url = Some("https://paas.example.com".into());
        let secure = session_cookie(&config, "t", 60).expect("cookie");
        let text = secure.to_str().unwrap_or_default();
        assert!(text.ends_with("; Secure") && text.contains("HttpOnly; SameSite=Lax"), "{text}");
    }
}
