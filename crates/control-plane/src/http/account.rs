//! The signed-in user's account (SPEC §14.1): the audit trail (`GET /api/account/audit`,
//! paged by event id) and the sessions (list, revoke one, revoke all others).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiError;
use super::extract::{CurrentUser, audit_user};
use crate::state::AppState;
use crate::store::audit::{self, AuditAction, Shown};
use crate::store::users::{self, SessionInfo};

/// The most events one page holds.
const MAX_PAGE: i64 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/account/audit", get(audit_page))
        .route("/api/account/sessions", get(sessions))
        .route("/api/account/sessions/{id}", delete(revoke_session))
        .route("/api/account/sessions/revoke-others", post(revoke_others))
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
    let current = user.session_id;
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
    let revoked = users::revoke_other_sessions(&mut *tx, user.id, user.session_id).await?;
    let detail = json!({ "revoked": revoked, "kept": user.session_id });
    audit_user(&mut *tx, &user, AuditAction::SessionRevoked, "user", user.id, detail).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
