//! The signed-in user's account (SPEC §14.1): the audit trail (`GET /api/account/audit`,
//! paged by event id), the sessions (list, revoke one, revoke all others), two-factor
//! authentication (enrol, confirm, disable) and API tokens (create, list, revoke). Only a
//! browser session manages sessions, 2FA and tokens (`identity::scope`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{check_second_factor, count_wrong_code, refuse_after_wrong_codes};
use super::extract::{CurrentUser, audit_user};
use super::{ApiError, ApiJson};
use crate::identity::scope::Scope;
use crate::identity::totp;
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, Shown};
use crate::store::tokens::{self, TokenInfo};
use crate::store::users::{self, SessionInfo};

/// The most events one page holds.
const MAX_PAGE: i64 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/account/audit", get(audit_page))
        .route("/api/account/sessions", get(sessions))
        .route("/api/account/sessions/{id}", delete(revoke_session))
        .route("/api/account/sessions/revoke-others", post(revoke_others))
        .route("/api/account/totp/enroll", post(totp_enroll))
        .route("/api/account/totp/confirm", post(totp_confirm))
        .route("/api/account/totp/disable", post(totp_disable))
        .route("/api/account/tokens", get(list_tokens).post(create_token))
        .route("/api/account/tokens/{id}", delete(revoke_token))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

#[derive(Debug, Serialize)]
struct AuditPage {
    events: Vec<Shown>,
    /// The `before` of the next page; null on the last.
    next: Option<i64>,
}

/// The user's own audit trail, newest first. Details are JSON (what a user typed is a JSON
/// string there, never raw text).
async fn audit_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("give a limit from 1 to {MAX_PAGE}")));
    }
    let events = audit::page_for_user(&state.db, user.id, limit, q.before).await?;
    let next = (events.len() as i64 == limit).then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage { events, next }))
}

#[derive(Debug, Serialize)]
struct SessionView {
    #[serde(flatten)]
    session: SessionInfo,
    /// The session this request came with.
    current: bool,
}

async fn sessions(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let live = users::live_sessions(&state.db, user.id).await?;
    let current = user.session_id()?;
    Ok(Json(live.into_iter().map(|s| SessionView { current: s.id == current, session: s }).collect()))
}

/// Revokes one of the user's sessions (the current one too: that is a sign-out elsewhere's
/// equal); another user's session, or none, is 404.
async fn revoke_session(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !users::revoke_own_session(&mut *tx, user.id, id).await? {
        return Err(ApiError::NotFound("no such session".into()));
    }
    audit_user(&mut *tx, &user, AuditAction::SessionRevoked, "session", id, json!({})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out everywhere else: every live session of the user but this one.
async fn revoke_others(State(state): State<AppState>, user: CurrentUser) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let keep = user.session_id()?;
    let revoked = users::revoke_other_sessions(&mut *tx, user.id, keep).await?;
    let detail = json!({ "revoked": revoked, "kept": keep });
    audit_user(&mut *tx, &user, AuditAction::SessionRevoked, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct Enrolment {
    /// The secret in base32, for typing into an authenticator app.
    secret: String,
    otpauth_uri: String,
    /// The URI as a QR code, an inline SVG document.
    qr_svg: String,
}

/// Starts (or restarts) enrolling an authenticator: a new secret, pending until confirmed.
async fn totp_enroll(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Enrolment>, ApiError> {
    user.session_id()?;
    let secret = totp::new_secret();
    crate::store::totp::begin_enrolment(&state.db, &state.sealer, user.id, &secret).await?;
    let otpauth_uri = totp::otpauth_uri(&secret, &user.email);
    let qr_svg =
        totp::qr_svg(&otpauth_uri).ok_or_else(|| ApiError::Internal("cannot draw the QR code".into()))?;
    Ok(Json(Enrolment { secret: totp::secret_base32(&secret), otpauth_uri, qr_svg }))
}

#[derive(Debug, Deserialize)]
struct CodeBody {
    code: String,
}

/// Confirms the pending enrolment with a current code: 2FA is on, and the ten recovery codes
/// are shown (only here).
async fn totp_confirm(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    user.session_id()?;
    refuse_after_wrong_codes(&state, user.id)?;
    let secret =
        crate::store::totp::pending_secret(&state.db, &state.sealer, user.id).await?.ok_or_else(|| {
            ApiError::Conflict(
                "there is no enrolment to confirm; start one with POST /api/account/totp/enroll".into(),
            )
        })?;
    let Some(step) = totp::matching_step(&secret, &body.code, totp::now_unix()) else {
        count_wrong_code(&state, user.id);
        return Err(ApiError::InvalidTotp);
    };
    let codes = totp::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|c| wisehosting_crypto::sha256_hex(c.as_bytes())).collect();
    let mut tx = state.db.begin().await?;
    if !crate::store::totp::confirm(&mut tx, user.id, step, &hashes).await? {
        return Err(ApiError::Conflict("two-factor authentication is already on".into()));
    }
    audit_user(&mut *tx, &user, AuditAction::TotpEnabled, "user", user.id, json!({})).await?;
    tx.commit().await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

/// Turns 2FA off, proved with a current code or an unused recovery code.
async fn totp_disable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<StatusCode, ApiError> {
    user.session_id()?;
    let factor = check_second_factor(&state, user.id, &body.code).await?;
    let mut tx = state.db.begin().await?;
    crate::store::totp::disable(&mut tx, user.id).await?;
    let detail = json!({ "proved_with": format!("{factor:?}") });
    audit_user(&mut *tx, &user, AuditAction::TotpDisabled, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    scopes: Vec<String>,
    expires_in_days: Option<i32>,
}

/// The longest a token may live, in days (ten years); `null` never expires.
const MAX_TOKEN_DAYS: i32 = 3650;

/// Makes an API token; its value is in this answer only.
async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    user.session_id()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "give the token a name of 1 to 100 characters, such as \"ci deploys\"",
        ));
    }
    let mut scopes = Vec::new();
    for text in &body.scopes {
        let scope = Scope::parse(text).ok_or_else(|| {
            ApiError::invalid("scopes", format!("{text:?} is not a scope; use read, deploy or write"))
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "give at least one scope: read, deploy or write"));
    }
    if let Some(days) = body.expires_in_days
        && !(1..=MAX_TOKEN_DAYS).contains(&days)
    {
        return Err(ApiError::invalid(
            "expires_in_days",
            format!(
                "give a number of days from 1 to {MAX_TOKEN_DAYS}, or null for a token that does not expire"
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    users::lock(&mut tx, user.id).await?;
    if tokens::count_live(&mut *tx, user.id).await? >= tokens::MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "you have {} live tokens, the most allowed; revoke one you no longer use",
            tokens::MAX_PER_USER
        )));
    }
    let (id, token) = tokens::create(&mut *tx, user.id, name, &scopes, body.expires_in_days).await?;
    let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let detail = json!({ "name": name, "scopes": scope_names, "expires_in_days": body.expires_in_days });
    audit_user(&mut *tx, &user, AuditAction::TokenCreated, "token", id, detail).await?;
    tx.commit().await?;
    let body = json!({ "id": id, "token": token, "name": name, "scopes": scope_names });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The user's tokens, without their values.
async fn list_tokens(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    user.session_id()?;
    Ok(Json(tokens::list(&state.db, user.id).await?))
}

/// Revokes one of the user's tokens at once; another user's token, or none, is 404.
async fn revoke_token(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    user.session_id()?;
    let mut tx = state.db.begin().await?;
    if !tokens::revoke(&mut *tx, user.id, id).await? {
        return Err(ApiError::NotFound("no such token".into()));
    }
    audit_user(&mut *tx, &user, AuditAction::TokenRevoked, "token", id, json!({})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
