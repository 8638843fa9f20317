//! The internal API for the admin console (SPEC §10): loopback only, every request carrying
//! `Authorization: Bearer <internal_api.token>`, compared in constant time. It answers
//! `/internal-api/health`; the console's endpoints of SPEC §10 are issue 15's.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use wisehosting_crypto::constant_time_eq;

use super::{ApiError, with_edge};
use crate::state::AppState;

pub fn internal_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/internal-api/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    with_edge(routes.fallback(super::not_found), state)
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let expected = state.config.internal_api.token.expose().as_bytes();
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(presented, expected) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}
