//! The signed-in user's account (SPEC §14.1): the audit trail, `GET /api/account/audit`,
//! paged by event id.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::CurrentUser;
use crate::state::AppState;
use crate::store::audit::{self, Shown};

/// The most events one page holds.
const MAX_PAGE: i64 = 200;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/account/audit", get(audit_page))
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
