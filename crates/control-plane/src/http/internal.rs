//! The internal API for the admin console (SPEC §10, §14.4): loopback only (the config refuses
//! another `internal_api.bind`), every request carrying `Authorization: Bearer
//! <internal_api.token>`, compared in constant time; off while the token is empty.
//!
//! A different surface from the user API on purpose: its own listener, its own token, no
//! sessions and no tenant scoping — it reads across tenants for operators, so it is never
//! exposed beyond the machine; the admin console (`wisehosting-admin`) is its only client and
//! applies its own identity and roles in front of it.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wisehosting_crypto::constant_time_eq;

use super::stats::{LiveStats, live_stats_of};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, with_edge};
use crate::hub::HubError;
use crate::jobs::spec::{self as job_spec, AppJob};
use crate::logbus::LogLine;
use crate::state::AppState;
use crate::store::{admin, apps, console, deployments, jobs, users};

/// How long a podman query may take on the worker and the link.
const QUERY_DEADLINE: Duration = Duration::from_secs(15);

pub fn internal_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/internal-api/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/internal-api/dashboard-stats", get(dashboard_stats))
        .route("/internal-api/dashboard-extras", get(dashboard_extras))
        .route("/internal-api/dashboard-deployments-timeseries", get(deployments_timeseries))
        .route("/internal-api/workers/live", get(workers_live))
        .route("/internal-api/apps/{id}/live-stats", get(app_live_stats))
        .route("/internal-api/apps/{id}/logs/tail", get(app_logs_tail))
        .route("/internal-api/apps/recent-logs", get(recent_logs))
        .route("/internal-api/workers/{id}/podman/{cmd}", get(podman))
        .route("/internal-api/users", get(users))
        .route("/internal-api/apps", get(apps))
        .route("/internal-api/plans", get(plans))
        .route("/internal-api/users/{id}/plan", post(set_plan))
        .route("/internal-api/apps/{id}/pause", post(pause))
        .route("/internal-api/apps/{id}/unpause", post(unpause))
        .route("/internal-api/apps/{id}/unlock", post(unlock))
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

/// The change from `prev` to `cur` in %; 0 when there was nothing before (SPEC §10).
pub fn pct_delta(cur: i64, prev: i64) -> f64 {
    if prev <= 0 { 0.0 } else { (cur - prev) as f64 * 100.0 / prev as f64 }
}

#[derive(Debug, Serialize)]
struct Deltas {
    apps_online: f64,
    apps_total: f64,
    deployments_today: f64,
    errors_today: f64,
}

#[derive(Debug, Serialize)]
struct DashboardStats {
    apps_online: i64,
    apps_total: i64,
    /// Deployments started in the last 24 hours.
    deployments_today: i64,
    /// Deployments that failed in the last 24 hours.
    errors_today: i64,
    /// Each figure against the 24 hours before, in %.
    deltas: Deltas,
}

async fn dashboard_stats(State(state): State<AppState>) -> Result<Json<DashboardStats>, ApiError> {
    let (now, before) = console::figures(&state.db).await?;
    Ok(Json(DashboardStats {
        apps_online: now.apps_online,
        apps_total: now.apps_total,
        deployments_today: now.deployments_today,
        errors_today: now.errors_today,
        deltas: Deltas {
            apps_online: pct_delta(now.apps_online, before.apps_online),
            apps_total: pct_delta(now.apps_total, before.apps_total),
            deployments_today: pct_delta(now.deployments_today, before.deployments_today),
            errors_today: pct_delta(now.errors_today, before.errors_today),
        },
    }))
}

#[derive(Debug, Serialize)]
struct SystemStatus {
    version: &'static str,
    database: &'static str,
    hub_connections: usize,
    workers_online: usize,
    workers_total: usize,
    /// The platform's own certificate (`platform_certificate`), when it has one.
    platform_certificate: Option<PlatformCertificate>,
}

#[derive(Debug, Serialize)]
struct PlatformCertificate {
    names: Vec<String>,
    #[serde(flatten)]
    state: crate::store::certificates::CertificateView,
}

#[derive(Debug, Serialize)]
struct DashboardExtras {
    recent_deployments: Vec<console::RecentDeployment>,
    activity: Vec<console::Activity>,
    nodes: Vec<console::Node>,
    alerts: Vec<console::OpenAlert>,
    active_alerts: i64,
    system: SystemStatus,
}

async fn dashboard_extras(State(state): State<AppState>) -> Result<Json<DashboardExtras>, ApiError> {
    let nodes = console::nodes(&state.db).await?;
    let (alerts, active_alerts) = console::open_alerts(&state.db, 10).await?;
    let system = SystemStatus {
        version: env!("CARGO_PKG_VERSION"),
        database: "ok",
        hub_connections: state.hub.connection_count(),
        workers_online: nodes.iter().filter(|n| state.hub.is_online(n.worker_id)).count(),
        workers_total: nodes.len(),
        platform_certificate: crate::store::certificates::platform_view(&state.db)
            .await?
            .map(|(names, state)| PlatformCertificate { names, state }),
    };
    Ok(Json(DashboardExtras {
        recent_deployments: console::recent_deployments(&state.db, 10).await?,
        activity: console::activity(&state.db, 20).await?,
        nodes,
        alerts,
        active_alerts,
        system,
    }))
}

#[derive(Debug, Deserialize)]
struct SeriesQuery {
    /// How many hours back (default 24, at most 168).
    hours: Option<i32>,
}

async fn deployments_timeseries(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<Vec<console::Bucket>>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=168).contains(&hours) {
        return Err(ApiError::invalid("hours", "give between 1 and 168 (a week)"));
    }
    Ok(Json(console::deployments_by_hour(&state.db, hours).await?))
}

#[derive(Debug, Serialize)]
struct WorkerLive {
    worker_id: i64,
    name: String,
    connected: bool,
    online: bool,
    last_heartbeat_at: Option<DateTime<Utc>>,
    seconds_since_last_frame: Option<u64>,
    /// Jobs leased to it now.
    busy: bool,
}

async fn workers_live(State(state): State<AppState>) -> Result<Json<Vec<WorkerLive>>, ApiError> {
    let links = state.hub.link_statuses();
    let nodes = console::nodes(&state.db).await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| {
                let link = links.iter().find(|l| l.worker_id == n.worker_id);
                WorkerLive {
                    worker_id: n.worker_id,
                    name: n.name,
                    connected: link.is_some_and(|l| l.connected),
                    online: link.is_some_and(|l| l.online),
                    last_heartbeat_at: n.last_heartbeat_at,
                    seconds_since_last_frame: link.map(|l| l.seconds_since_last_frame),
                    busy: n.jobs > 0,
                }
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct IdPath {
    id: i64,
}

async fn app_live_stats(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<LiveStats>, ApiError> {
    let worker = console::app_worker(&state.db, p.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    Ok(Json(live_stats_of(&state, p.id, worker)))
}

#[derive(Debug, Deserialize)]
struct TailQuery {
    /// How many of the newest lines (default 100, at most the 1,000 kept per app).
    tail: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Lines {
    lines: Vec<LogLine>,
}

async fn app_logs_tail(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Json<Lines>, ApiError> {
    console::app_worker(&state.db, p.id).await?.ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    Ok(Json(Lines { lines: state.logbus.tail(p.id, q.tail.unwrap_or(100).min(crate::logbus::RING)) }))
}

#[derive(Debug, Deserialize)]
struct RecentQuery {
    /// How many lines across apps (default 100, at most 1,000).
    limit: Option<usize>,
}

async fn recent_logs(State(state): State<AppState>, ApiQuery(q): ApiQuery<RecentQuery>) -> Json<Lines> {
    Json(Lines { lines: state.logbus.recent(q.limit.unwrap_or(100).min(1000)) })
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    /// Part of an e-mail, name or slug, any case; empty for all.
    #[serde(default)]
    q: String,
    /// How many (default 100, at most 500).
    limit: Option<i64>,
}

impl SearchQuery {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 500)
    }
}

/// Users across tenants, for the console's users page.
async fn users(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<console::TenantUser>>, ApiError> {
    Ok(Json(console::users(&state.db, &q.q, q.limit()).await?))
}

/// Apps across tenants, for the console's apps page.
async fn apps(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<console::TenantApp>>, ApiError> {
    Ok(Json(console::apps(&state.db, &q.q, q.limit()).await?))
}

/// Who in the admin console acts, for the admin audit row written with the change.
#[derive(Debug, Deserialize)]
struct Operator {
    admin_id: i64,
    /// `admin:<username>`.
    actor: String,
    ip: Option<String>,
    /// Why, for the audit trail (and, for a pause, shown to the app's owner).
    #[serde(default)]
    reason: String,
}

impl Operator {
    fn reason(&self) -> String {
        self.reason.chars().filter(|c| !c.is_control()).take(200).collect()
    }

    async fn audit(
        &self,
        db: impl sqlx::PgExecutor<'_>,
        action: &str,
        target: (&str, i64),
        detail: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let id = target.1.to_string();
        admin::audit(
            db,
            Some(self.admin_id),
            &self.actor,
            action,
            (target.0, &id),
            detail,
            self.ip.as_deref(),
        )
        .await
    }
}

/// The plans' names, for the console's plan picker.
async fn plans(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.plans.all().iter().map(|plan| plan.name.clone()).collect())
}

#[derive(Debug, Deserialize)]
struct PlanChange {
    plan: String,
    #[serde(flatten)]
    by: Operator,
}

/// Sets a user's plan (the console's billing role).
async fn set_plan(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(change): ApiJson<PlanChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.plans.all().iter().any(|plan| plan.name == change.plan) {
        let names: Vec<&str> = state.plans.all().iter().map(|plan| plan.name.as_str()).collect();
        return Err(ApiError::invalid("plan", format!("no such plan; use one of {}", names.join(", "))));
    }
    let mut tx = state.db.begin().await?;
    if !users::set_plan(&mut *tx, p.id, &change.plan).await? {
        return Err(ApiError::NotFound("no such user".into()));
    }
    change
        .by
        .audit(
            &mut *tx,
            "user.plan_set",
            ("user", p.id),
            json!({ "plan": change.plan, "reason": change.by.reason() }),
        )
        .await?;
    tx.commit().await?;
    Ok(Json(json!({ "user_id": p.id, "plan": change.plan })))
}

/// Pauses an app: stopped, and its owner cannot start, restart or redeploy it.
async fn pause(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(by): ApiJson<Operator>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, p.id, &by, true).await
}

/// Unpauses an app and starts its current version again.
async fn unpause(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(by): ApiJson<Operator>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, p.id, &by, false).await
}

/// Pauses (and stops) or unpauses (and starts) an app, with the audit row, in one transaction.
async fn set_paused(
    state: &AppState,
    id: i64,
    by: &Operator,
    pause: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = by.reason();
    let mut tx = state.db.begin().await?;
    let app =
        apps::get_locked(&mut *tx, id).await?.ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    if !apps::set_paused(&mut *tx, app.id, pause.then_some(reason.as_str())).await? {
        let already = if pause { "the app is paused already" } else { "the app is not paused" };
        return Err(ApiError::Conflict(already.into()));
    }
    let (kind, action) = if pause { (AppJob::Stop, "app.paused") } else { (AppJob::Start, "app.unpaused") };
    let job = match app.current_deployment_id {
        Some(current) => {
            let spec = job_spec::for_app(kind, &app)?;
            Some(jobs::enqueue(&mut tx, &state.sealer, app.id, Some(current), &spec).await?)
        }
        None => None,
    };
    by.audit(&mut *tx, action, ("app", app.id), json!({ "reason": reason, "job": job })).await?;
    tx.commit().await?;
    Ok(Json(json!({ "app_id": app.id, "paused": pause, "job": job })))
}

/// Unlocks a stuck deploy: every unfinished deployment of the app is cancelled (its job too,
/// and the worker told), so the owner can deploy again.
async fn unlock(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(by): ApiJson<Operator>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut tx = state.db.begin().await?;
    let app =
        apps::get_locked(&mut *tx, p.id).await?.ok_or_else(|| ApiError::NotFound("no such app".into()))?;
    let stuck = deployments::in_flight(&mut *tx, app.id).await?;
    if stuck.is_empty() {
        return Err(ApiError::Conflict("no deploy of this app is in progress; nothing to unlock".into()));
    }
    let mut leases = Vec::new();
    for id in &stuck {
        leases.push(super::apps::cancel(&mut tx, *id, "cancelled by the platform's operators").await?);
    }
    by.audit(&mut *tx, "app.unlocked", ("app", app.id), json!({ "cancelled": stuck, "reason": by.reason() }))
        .await?;
    tx.commit().await?;
    for lease in leases {
        super::apps::tell_cancelled(&state, lease);
    }
    Ok(Json(json!({ "app_id": app.id, "cancelled": stuck })))
}

#[derive(Debug, Deserialize)]
struct PodmanPath {
    id: i64,
    cmd: String,
}

#[derive(Debug, Serialize)]
struct PodmanAnswer {
    command: String,
    output: String,
    err: String,
}

/// One of the five read-only podman queries on a worker, through the hub: 400 for any other
/// command, 503 at once when the worker is not connected.
async fn podman(State(state): State<AppState>, ApiPath(p): ApiPath<PodmanPath>) -> Response {
    match state.hub.worker_query(p.id, &p.cmd, QUERY_DEADLINE).await {
        Ok(reply) => {
            Json(PodmanAnswer { command: p.cmd, output: reply.output, err: reply.err.unwrap_or_default() })
                .into_response()
        }
        Err(HubError::UnknownCommand) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "code": "unknown_command",
                "message": format!("{} is not one of the podman queries; use one of {}", p.cmd.chars().take(40).collect::<String>(), wisehosting_proto::AdminCommand::list()),
            })),
        )
            .into_response(),
        Err(HubError::Offline) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"code": "worker_offline", "message": "the worker is not connected; try again when it is online"})),
        )
            .into_response(),
        Err(HubError::Timeout) => (
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"code": "worker_timeout", "message": "the worker did not answer in time; try again"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::pct_delta;

    #[test]
    fn pct_delta_is_zero_without_a_before_and_signed_otherwise() {
        assert_eq!(pct_delta(5, 0), 0.0);
        assert_eq!(pct_delta(5, -1), 0.0);
        assert_eq!(pct_delta(15, 10), 50.0);
        assert_eq!(pct_delta(5, 10), -50.0);
        assert_eq!(pct_delta(0, 4), -100.0);
    }
}
