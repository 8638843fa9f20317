//! The rows routing is built from (SPEC §7): which app, its hostnames' parts, and where it
//! answers. The routing module turns them into the pushed route tables and Traefik's JSON.

use sqlx::PgPool;

use crate::domain::AppStatus;

/// One deployed app as routing sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RouteRow {
    pub app_id: i64,
    pub slug: String,
    pub status: AppStatus,
    pub host_port: Option<i32>,
    pub worker_id: i64,
    pub zone: Option<String>,
    pub wg_ip: Option<String>,
    /// Verified custom domains, sorted.
    pub domains: Vec<String>,
    pub https_redirect: bool,
    pub hsts: bool,
}

/// Every app with a running or stopped version (ever deployed), on `worker` or on all.
pub async fn list(db: &PgPool, worker: Option<i64>) -> Result<Vec<RouteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id AS app_id, a.slug, a.status, a.host_port, w.id AS worker_id, w.zone, a.https_redirect, a.hsts,
                host(w.wg_ip) AS wg_ip,
                COALESCE((SELECT array_agg(d.hostname ORDER BY d.hostname) FROM domains d
                          WHERE d.app_id = a.id AND d.verified_at IS NOT NULL), '{}') AS domains
         FROM apps a JOIN workers w ON w.id = a.worker_id
         WHERE a.current_deployment_id IS NOT NULL AND a.status <> $2
           AND ($1::bigint IS NULL OR a.worker_id = $1)
         ORDER BY a.id",
    )
    .bind(worker)
    .bind(AppStatus::Deleting)
    .fetch_all(db)
    .await
}

/// The channel naming a worker whose routes or certificates changed on a control plane that
/// does not hold its link; the one that does pushes them (control planes in pairs).
pub const ROUTES_CHANNEL: &str = "wh_routes";

pub async fn notify_changed(db: &sqlx::PgPool, worker_id: i64) -> Result<(), sqlx::Error> {
    super::notify_worker(db, ROUTES_CHANNEL, worker_id).await
}
