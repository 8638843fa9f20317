//! Operations endpoints: `/health` (alive), `/ready` (database reachable and migrations
//! current) and `/metrics` (Prometheus text, with `api_server.metrics_token` only).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiError;
use crate::db;
use crate::metrics::Gauges;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/metrics", get(metrics))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    crate::store::ping(&state.db).await?;
    let current = db::is_current(&state.db)
        .await
        .map_err(|e| ApiError::NotReady(format!("cannot read the migration state: {e}")))?;
    if !current {
        return Err(ApiError::NotReady(
            "database migrations are not current; run `wisehosting migrate up`".into(),
        ));
    }
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus text, for a scraper holding `api_server.metrics_token` only: the figures say how
/// busy the platform is and which frames it refuses, nothing a stranger should read.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let expected = state.config.api_server.metrics_token.expose().as_bytes();
    if expected.is_empty() {
        return Err(ApiError::NotFound(
            "metrics are off on this listener; set api_server.metrics_token (credential metrics_token) and scrape with it as a bearer token".into(),
        ));
    }
    let presented = super::workers::bearer(&headers).map(str::as_bytes).unwrap_or_default();
    if !wisehosting_crypto::constant_time_eq(presented, expected) {
        return Err(ApiError::Unauthorized);
    }
    let body = state.metrics.render(Gauges {
        pool_size: state.db.size(),
        pool_idle: state.db.num_idle(),
        hub_connections: state.hub.connection_count(),
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
