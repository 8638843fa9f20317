//! What the internal API shows the admin console across tenants: platform figures now and a
//! day earlier, recent deployments and activity, the deployments time series, workers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{AlertStatus, AppStatus, DeploymentStatus, JobStatus};

/// The dashboard's four figures, now and as they were a day earlier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Figures {
    pub apps_online: i64,
    pub apps_total: i64,
    pub deployments_today: i64,
    pub errors_today: i64,
}

/// The figures now and 24 hours earlier. "Online" a day ago is an app with a deployment
/// that had switched in by then and was not yet replaced by a later one (the platform keeps
/// no status history); errors are failed deployments.
pub async fn figures(db: &PgPool) -> Result<(Figures, Figures), sqlx::Error> {
    let now: Figures = sqlx::query_as(
        "SELECT (SELECT count(*) FROM apps WHERE status = $1) AS apps_online,
                (SELECT count(*) FROM apps) AS apps_total,
                (SELECT count(*) FROM deployments WHERE created_at > now() - interval '1 day') AS deployments_today,
                (SELECT count(*) FROM deployments WHERE status = $2 AND finished_at > now() - interval '1 day') AS errors_today",
    )
    .bind(AppStatus::Running)
    .bind(DeploymentStatus::Failed)
    .fetch_one(db)
    .await?;
    let before: Figures = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT d.app_id) FROM deployments d
                 WHERE d.image_id IS NOT NULL AND d.finished_at <= now() - interval '1 day'
                   AND NOT EXISTS (SELECT 1 FROM deployments n WHERE n.app_id = d.app_id AND n.id > d.id
                                   AND n.image_id IS NOT NULL AND n.finished_at <= now() - interval '1 day')) AS apps_online,
                (SELECT count(*) FROM apps WHERE created_at <= now() - interval '1 day') AS apps_total,
                (SELECT count(*) FROM deployments WHERE created_at > now() - interval '2 days'
                   AND created_at <= now() - interval '1 day') AS deployments_today,
                (SELECT count(*) FROM deployments WHERE status = $1 AND finished_at > now() - interval '2 days'
                   AND finished_at <= now() - interval '1 day') AS errors_today",
    )
    .bind(DeploymentStatus::Failed)
    .fetch_one(db)
    .await?;
    Ok((now, before))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RecentDeployment {
    pub id: i64,
    pub app_id: i64,
    pub app_name: String,
    pub user_email: String,
    pub status: DeploymentStatus,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn recent_deployments(db: &PgPool, limit: i64) -> Result<Vec<RecentDeployment>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.app_id, a.name AS app_name, u.email AS user_email, d.status, d.created_at, d.finished_at
         FROM deployments d JOIN apps a ON a.id = d.app_id JOIN users u ON u.id = a.user_id
         ORDER BY d.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Activity {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The newest rows of the users' audit trail (no details: they may name secrets' owners).
pub async fn activity(db: &PgPool, limit: i64) -> Result<Vec<Activity>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, actor, action, target_type, target_id, created_at FROM audit_events ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Node {
    pub worker_id: i64,
    pub name: String,
    pub zone: Option<String>,
    pub status: String,
    pub apps: i64,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Jobs leased to it now.
    pub jobs: i64,
}

/// Every worker with its apps and leased jobs.
pub async fn nodes(db: &PgPool) -> Result<Vec<Node>, sqlx::Error> {
    sqlx::query_as(
        "SELECT w.id AS worker_id, w.name, w.zone, w.status, w.last_heartbeat_at,
                (SELECT count(*) FROM apps a WHERE a.worker_id = w.id) AS apps,
                (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = ANY($1)) AS jobs
         FROM workers w ORDER BY w.id",
    )
    .bind(JobStatus::LEASED.to_vec())
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OpenAlert {
    pub id: i64,
    pub app_id: Option<i64>,
    pub user_email: String,
    pub kind: String,
    pub status: AlertStatus,
    pub message: String,
    pub fired_at: DateTime<Utc>,
}

/// Open alerts across users, newest first, and how many there are.
pub async fn open_alerts(db: &PgPool, limit: i64) -> Result<(Vec<OpenAlert>, i64), sqlx::Error> {
    let alerts = sqlx::query_as(
        "SELECT al.id, al.app_id, u.email AS user_email, al.kind, al.status, al.message, al.fired_at
         FROM alerts al JOIN users u ON u.id = al.user_id WHERE al.status <> $1
         ORDER BY al.fired_at DESC LIMIT $2",
    )
    .bind(AlertStatus::Resolved)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let count = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE status <> $1")
        .bind(AlertStatus::Resolved)
        .fetch_one(db)
        .await?;
    Ok((alerts, count))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Bucket {
    /// The hour's start (UTC).
    pub bucket: DateTime<Utc>,
    pub success: i64,
    pub failure: i64,
}

/// Deployments that ended in each of the last `hours` hours (oldest first, empty hours too):
/// succeeded (switched in) or failed.
pub async fn deployments_by_hour(db: &PgPool, hours: i32) -> Result<Vec<Bucket>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b AS bucket,
                count(d.id) FILTER (WHERE d.image_id IS NOT NULL AND d.status <> $2) AS success,
                count(d.id) FILTER (WHERE d.status = $2) AS failure
         FROM generate_series(date_trunc('hour', now()) - make_interval(hours => $1 - 1), date_trunc('hour', now()),
                              interval '1 hour') AS b
         LEFT JOIN deployments d ON d.finished_at >= b AND d.finished_at < b + interval '1 hour'
         GROUP BY b ORDER BY b",
    )
    .bind(hours)
    .bind(DeploymentStatus::Failed)
    .fetch_all(db)
    .await
}

/// An app's worker, if the app exists (any tenant's).
pub async fn app_worker(db: &PgPool, app_id: i64) -> Result<Option<Option<i64>>, sqlx::Error> {
    sqlx::query_scalar("SELECT worker_id FROM apps WHERE id = $1").bind(app_id).fetch_optional(db).await
}

/// A user as the console lists them (tenant data).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TenantUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub plan: String,
    pub apps: i64,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Users whose e-mail or name holds `q` (any case), newest first.
pub async fn users(db: &PgPool, q: &str, limit: i64) -> Result<Vec<TenantUser>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.email, u.name, u.plan, u.disabled_at, u.created_at,
                (SELECT count(*) FROM apps a WHERE a.user_id = u.id) AS apps
         FROM users u
         WHERE $1 = '' OR strpos(lower(u.email), lower($1)) > 0 OR strpos(lower(u.name), lower($1)) > 0
         ORDER BY u.id DESC LIMIT $2",
    )
    .bind(q)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// An app across tenants as the console lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TenantApp {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub owner_email: String,
    pub status: AppStatus,
    pub worker_id: Option<i64>,
    pub current_deployment_id: Option<i64>,
    /// Set while the operators have it paused.
    pub paused_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Apps whose name, slug or owner's e-mail holds `q` (any case), newest first.
pub async fn apps(db: &PgPool, q: &str, limit: i64) -> Result<Vec<TenantApp>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, a.name, a.slug, u.email AS owner_email, a.status, a.worker_id,
                a.current_deployment_id, a.paused_at, a.created_at
         FROM apps a JOIN users u ON u.id = a.user_id
         WHERE $1 = '' OR strpos(lower(a.name), lower($1)) > 0 OR strpos(a.slug, lower($1)) > 0
            OR strpos(lower(u.email), lower($1)) > 0
         ORDER BY a.id DESC LIMIT $2",
    )
    .bind(q)
    .bind(limit)
    .fetch_all(db)
    .await
}
