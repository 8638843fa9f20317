//! The signed-in user's account (SPEC §14.1): the audit trail (`GET /api/account/audit`,
//! paged by event id), the sessions (list, revoke one, revoke all others), two-factor
//! authentication (enrol, confirm, disable) and API tokens (create, list, revoke). Only a
//! browser session manages sessions, 2FA and tokens (`identity::scope`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{CodeBody, check_second_factor, refuse_after_wrong_codes};
use super::extract::{CurrentUser, audit_user};
use super::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::identity::scope::Scope;
use crate::identity::totp;
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, Shown};
use crate::store::tokens::{self, TokenInfo};
use crate::store::users::{self, SessionInfo};

/// The most events one page holds.
const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_page))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_others))
        .routes(routes!(totp_enroll))
        .routes(routes!(totp_confirm))
        .routes(routes!(totp_disable))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(set_theme))
}

#[derive(Debug, Deserialize, ToSchema)]
struct ThemeBody {
    /// `system`, `light` or `dark`.
    theme: String,
}

/// The dashboard's theme for this user, on every device.
#[utoipa::path(put, path = "/api/account/theme", tag = "account", request_body = ThemeBody,
    responses((status = 204, description = "The theme is saved")))]
async fn set_theme(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ThemeBody>,
) -> Result<StatusCode, ApiError> {
    let theme = body.theme.trim();
    if !["system", "light", "dark"].contains(&theme) {
        return Err(ApiError::invalid("theme", "use system, light or dark"));
    }
    users::set_theme(&state.db, user.id, theme).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Events per page, 1 to 200 (default 50).
    limit: Option<i64>,
    /// The `next` of the previous page.
    before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditPage {
    events: Vec<Shown>,
    /// The `before` of the next page; null on the last.
    next: Option<i64>,
}

/// The user's own audit trail, newest first. Details are JSON (what a user typed is a JSON
/// string there, never raw text).
#[utoipa::path(get, path = "/api/account/audit", tag = "account", params(PageQuery),
    responses((status = 200, description = "A page of the user's audit trail, newest first", body = AuditPage)))]
async fn audit_page(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("give a limit from 1 to {MAX_PAGE}")));
    }
    let events = audit::page_for_user(&state.db, user.id, limit, q.before).await?;
    let next = (events.len() as i64 == limit).then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage { events, next }))
}

#[derive(Debug, Serialize, ToSchema)]
struct SessionView {
    #[serde(flatten)]
    session: SessionInfo,
    /// The session this request came with.
    current: bool,
}

#[utoipa::path(get, path = "/api/account/sessions", tag = "account",
    responses((status = 200, description = "The user's live sessions", body = [SessionView])))]
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
#[utoipa::path(delete, path = "/api/account/sessions/{id}", tag = "account", params(("id" = i64, Path, description = "The session's id")),
    responses((status = 204, description = "The session is revoked")))]
async fn revoke_session(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
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
#[utoipa::path(post, path = "/api/account/sessions/revoke-others", tag = "account",
    responses((status = 204, description = "Every other session is revoked")))]
async fn revoke_others(State(state): State<AppState>, user: CurrentUser) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let keep = user.session_id()?;
    let revoked = users::revoke_other_sessions(&mut *tx, user.id, keep).await?;
    let detail = json!({ "revoked": revoked, "kept": keep });
    audit_user(&mut *tx, &user, AuditAction::SessionRevoked, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
struct Enrolment {
    /// The secret in base32, for typing into an authenticator app.
    secret: String,
    otpauth_uri: String,
    /// The URI as a QR code, an inline SVG document.
    qr_svg: String,
}

/// Starts (or restarts) enrolling an authenticator: a new secret, pending until confirmed.
#[utoipa::path(post, path = "/api/account/totp/enroll", tag = "account",
    responses((status = 200, description = "A pending enrolment", body = Enrolment)))]
async fn totp_enroll(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Enrolment>, ApiError> {
    let secret = totp::new_secret();
    crate::store::totp::begin_enrolment(&state.db, &state.sealer, user.id, &secret).await?;
    let otpauth_uri = totp::otpauth_uri(&secret, &user.email);
    let qr_svg =
        totp::qr_svg(&otpauth_uri).ok_or_else(|| ApiError::Internal("cannot draw the QR code".into()))?;
    Ok(Json(Enrolment { secret: totp::secret_base32(&secret), otpauth_uri, qr_svg }))
}

/// Confirms the pending enrolment with a current code: 2FA is on, and the ten recovery codes
/// are shown (only here).
#[utoipa::path(post, path = "/api/account/totp/confirm", tag = "account", request_body = CodeBody,
    responses((status = 200, description = "2FA is on; the recovery codes, shown once", body = RecoveryCodes)))]
async fn totp_confirm(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    refuse_after_wrong_codes(&state, user.id).await?;
    let secret =
        crate::store::totp::pending_secret(&state.db, &state.sealer, user.id).await?.ok_or_else(|| {
            ApiError::Conflict(
                "there is no enrolment to confirm; start one with POST /api/account/totp/enroll".into(),
            )
        })?;
    let Some(step) = totp::matching_step(&secret, &body.code, totp::now_unix()) else {
        crate::store::totp::count_wrong_code(&state.db, user.id).await?;
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
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Ten single-use codes that stand in for the authenticator; shown only once.
#[derive(Debug, Serialize, ToSchema)]
struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

/// Turns 2FA off, proved with a current code or an unused recovery code.
#[utoipa::path(post, path = "/api/account/totp/disable", tag = "account", request_body = CodeBody,
    responses((status = 204, description = "2FA is off")))]
async fn totp_disable(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<StatusCode, ApiError> {
    let factor = check_second_factor(&state, user.id, &body.code).await?;
    let mut tx = state.db.begin().await?;
    crate::store::totp::disable(&mut tx, user.id).await?;
    let detail = json!({ "proved_with": format!("{factor:?}") });
    audit_user(&mut *tx, &user, AuditAction::TotpDisabled, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    scopes: Vec<String>,
    expires_in_days: Option<i32>,
}

/// The longest a token may live, in days (ten years); `null` never expires.
const MAX_TOKEN_DAYS: i32 = 3650;

/// Makes an API token; its value is in this answer only.
#[utoipa::path(post, path = "/api/account/tokens", tag = "account", request_body = NewToken,
    responses((status = 201, description = "The token; its value is shown only here", body = NewTokenShown)))]
async fn create_token(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<NewTokenShown>), ApiError> {
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
    let shown = NewTokenShown {
        id,
        token,
        name: name.to_string(),
        scopes: scope_names.iter().map(|s| s.to_string()).collect(),
    };
    Ok((StatusCode::CREATED, Json(shown)))
}

/// A new token and its value, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
struct NewTokenShown {
    id: i64,
    /// `wht_…`: send it as `Authorization: Bearer <token>`.
    token: String,
    name: String,
    scopes: Vec<String>,
}

/// The user's tokens, without their values.
#[utoipa::path(get, path = "/api/account/tokens", tag = "account",
    responses((status = 200, description = "The user's tokens, without values", body = [TokenInfo])))]
async fn list_tokens(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(tokens::list(&state.db, user.id).await?))
}

/// Revokes one of the user's tokens at once; another user's token, or none, is 404.
#[utoipa::path(delete, path = "/api/account/tokens/{id}", tag = "account", params(("id" = i64, Path, description = "The token's id")),
    responses((status = 204, description = "The token is revoked")))]
async fn revoke_token(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !tokens::revoke(&mut *tx, user.id, id).await? {
        return Err(ApiError::NotFound("no such token".into()));
    }
    audit_user(&mut *tx, &user, AuditAction::TokenRevoked, "token", id, json!({})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
