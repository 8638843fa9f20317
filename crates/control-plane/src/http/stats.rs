//! An app's live figures and their last hour (SPEC §14.3), from the hub's [`StatsBook`]:
//! only what the app's own worker reported counts.
//!
//! [`StatsBook`]: crate::observe::stats::StatsBook

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use super::apps::AppId;
use super::extract::OwnedApp;
use crate::observe::stats::{HISTORY_STEP, Point};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live_stats)).routes(routes!(stats_history))
}

/// An app's latest figures. `live` is false when the newest report is older than 45 s (or
/// there is none: then every figure is 0 and `sampled_at` is null).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct LiveStats {
    pub live: bool,
    /// CPU use over the app's containers, in % of one core.
    pub cpu_pct: f64,
    pub mem_bytes: u64,
    /// The memory limit of one container; 0 when unknown.
    pub mem_limit_bytes: u64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    /// Times the worker started the current deployment's containers again after an exit.
    pub restarts: u32,
    /// HTTP requests per second through the edge router.
    pub requests_per_s: f64,
    pub sampled_at: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/api/apps/{id}/stats", tag = "stats", params(AppId),
    responses((status = 200, description = "The app's latest figures", body = LiveStats)))]
async fn live_stats(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<LiveStats>, ApiError> {
    Ok(Json(live_stats_of(&state, app.id, app.worker_id)))
}

/// An app's latest figures as its worker (`worker`, where it is placed) reported them.
pub fn live_stats_of(state: &AppState, app_id: i64, worker: Option<i64>) -> LiveStats {
    match worker.and_then(|w| state.hub.stats().latest(app_id, w)) {
        Some(l) => LiveStats {
            live: l.is_live(),
            cpu_pct: l.stat.cpu_pct,
            mem_bytes: l.stat.memory_bytes,
            mem_limit_bytes: l.stat.mem_limit_bytes,
            net_rx_bps: l.net_rx_bps,
            net_tx_bps: l.net_tx_bps,
            restarts: l.stat.restarts,
            requests_per_s: l.requests_per_s,
            sampled_at: Some(l.sampled_at),
        },
        None => LiveStats::default(),
    }
}

/// The last hour of an app's figures, one point per `step_secs` at most, oldest first; kept
/// in memory, so it starts empty after a control-plane restart.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsHistory {
    pub step_secs: u64,
    pub points: Vec<Point>,
}

#[utoipa::path(get, path = "/api/apps/{id}/stats/history", tag = "stats", params(AppId),
    responses((status = 200, description = "The app's last hour", body = StatsHistory)))]
async fn stats_history(
    State(state): State<AppState>,
    OwnedApp { app, .. }: OwnedApp,
) -> Result<Json<StatsHistory>, ApiError> {
    let points = app.worker_id.map(|w| state.hub.stats().history(app.id, w)).unwrap_or_default();
    Ok(Json(StatsHistory { step_secs: HISTORY_STEP.as_secs(), points }))
}
