//! The `deployments` table: a deploy's progress and outcome, and its build log. Every status
//! change goes through here, bound as a [`DeploymentStatus`] and guarded by the states it may
//! start from ([`DeploymentStatus::may_move_to`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::domain::{AppStatus, CommitSha, DeploymentStatus};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Deployment {
    pub id: i64,
    pub app_id: i64,
    pub status: DeploymentStatus,
    pub branch: String,
    #[serde(rename = "commit")]
    pub commit_sha: Option<String>,
    pub image_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The deployment this one rolls back to: it runs that one's image (or its commit, built
    /// again when the worker no longer has the image).
    pub rollback_of: Option<i64>,
}

const COLUMNS: &str = "d.id, d.app_id, d.status, d.branch, d.commit_sha, d.image_id, d.error, d.created_at, d.started_at, d.finished_at, d.rollback_of";

pub async fn insert(
    db: impl PgExecutor<'_>,
    app_id: i64,
    branch: &str,
    commit: Option<&str>,
) -> Result<Deployment, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO deployments AS d (app_id, status, branch, commit_sha) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(app_id)
    .bind(DeploymentStatus::Queued)
    .bind(branch)
    .bind(commit)
    .fetch_one(db)
    .await
}

/// A rollback to `target`: a queued deployment of its branch and commit.
pub async fn insert_rollback(
    db: impl PgExecutor<'_>,
    target: &Deployment,
) -> Result<Deployment, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO deployments AS d (app_id, status, branch, commit_sha, rollback_of)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(target.app_id)
    .bind(DeploymentStatus::Queued)
    .bind(&target.branch)
    .bind(&target.commit_sha)
    .bind(target.id)
    .fetch_one(db)
    .await
}

/// Deployments of the user's apps created in the last 24 hours.
pub async fn count_for_user_last_day(tx: &mut PgConnection, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM deployments d JOIN apps a ON a.id = d.app_id
         WHERE a.user_id = $1 AND d.created_at > now() - interval '1 day'",
    )
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await
}

/// One deployment by id.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Deployment>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM deployments d WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn for_app(db: &PgPool, app_id: i64) -> Result<Vec<Deployment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deployments d WHERE d.app_id = $1 ORDER BY d.id DESC LIMIT 100"
    ))
    .bind(app_id)
    .fetch_all(db)
    .await
}

pub async fn for_user(db: &PgPool, user_id: i64, id: i64) -> Result<Option<Deployment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deployments d JOIN apps a ON a.id = d.app_id WHERE d.id = $1 AND a.user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Moves a deployment to `next` if it is in a state that may move there; true if it moved.
async fn advance(db: impl PgExecutor<'_>, id: i64, next: DeploymentStatus) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query("UPDATE deployments SET status = $2 WHERE id = $1 AND status = ANY($3)")
        .bind(id)
        .bind(next)
        .bind(DeploymentStatus::may_move_to(next))
        .execute(db)
        .await?;
    Ok(moved.rows_affected() > 0)
}

/// The worker accepted the deploys' jobs: the deployments start (queued → cloning).
pub async fn start(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE deployments SET status = $2, started_at = now() WHERE id = ANY($1) AND status = $3")
        .bind(ids)
        .bind(DeploymentStatus::Cloning)
        .bind(DeploymentStatus::Queued)
        .execute(db)
        .await?;
    Ok(())
}

/// A phase the worker reported.
pub async fn enter_phase(
    db: impl PgExecutor<'_>,
    id: i64,
    phase: DeploymentStatus,
) -> Result<(), sqlx::Error> {
    advance(db, id, phase).await.map(drop)
}

/// What a successful deploy runs.
#[derive(Debug, Clone, Copy)]
pub struct Switched<'a> {
    pub image_id: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub host_port: Option<u16>,
    /// The commit the worker built, when the deployment named none.
    pub commit: Option<&'a str>,
}

/// The deploy succeeded: the deployment runs, the one that ran before is superseded, and the
/// app serves the new version.
pub async fn switch_to(
    tx: &mut PgConnection,
    app_id: i64,
    id: i64,
    switched: Switched<'_>,
) -> Result<(), sqlx::Error> {
    let port = switched.host_port.map(i32::from);
    // What the worker reports is checked like what a user gives.
    let commit = switched.commit.and_then(|c| CommitSha::parse(c).ok());
    let commit = commit.as_ref().map(CommitSha::as_str);
    sqlx::query(
        "UPDATE deployments SET status = $2, image_id = $3, container_id = $4, host_port = $5, error = NULL,
                finished_at = now(), commit_sha = COALESCE(commit_sha, $6)
         WHERE id = $1",
    )
    .bind(id)
    .bind(DeploymentStatus::Running)
    .bind(switched.image_id)
    .bind(switched.container_id)
    .bind(port)
    .bind(commit)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE deployments SET status = $3 WHERE app_id = $1 AND id <> $2 AND status = $4")
        .bind(app_id)
        .bind(id)
        .bind(DeploymentStatus::Superseded)
        .bind(DeploymentStatus::Running)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE apps SET status = $3, current_deployment_id = $2, host_port = $4, updated_at = now() WHERE id = $1",
    )
    .bind(app_id)
    .bind(id)
    .bind(AppStatus::Running)
    .bind(port)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The deployment is a standby: its deploy may run before `at`, the app switches to it only
/// then (see [`standbys`]).
pub async fn hold_until(tx: &mut PgConnection, id: i64, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deployments SET switch_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A deploy succeeded: if its deployment is a standby (it has a time to switch at), what runs
/// is kept and the deployment waits in `switching` for its time (or for the app's worker
/// coming back, which drops it). Whether it is a standby, in one statement.
pub async fn hold_if_standby(
    tx: &mut PgConnection,
    id: i64,
    switched: Switched<'_>,
) -> Result<bool, sqlx::Error> {
    let commit = switched.commit.and_then(|c| CommitSha::parse(c).ok());
    sqlx::query_scalar(
        "WITH d AS (SELECT id FROM deployments WHERE id = $1 AND switch_at IS NOT NULL),
              held AS (UPDATE deployments SET status = $2, image_id = $3, container_id = $4, host_port = $5,
                              commit_sha = COALESCE(commit_sha, $6)
                       WHERE id IN (SELECT id FROM d) AND status = ANY($7))
         SELECT EXISTS (SELECT 1 FROM d)",
    )
    .bind(id)
    .bind(DeploymentStatus::Switching)
    .bind(switched.image_id)
    .bind(switched.container_id)
    .bind(switched.host_port.map(i32::from))
    .bind(commit.as_ref().map(CommitSha::as_str))
    .bind(DeploymentStatus::may_move_to(DeploymentStatus::Switching))
    .fetch_one(&mut *tx)
    .await
}

/// A standby whose deploy succeeded, waiting to be switched to (or dropped), locked with its
/// app.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Standby {
    pub id: i64,
    pub app_id: i64,
    /// The worker the standby runs on.
    pub worker_id: i64,
    /// The worker the app is placed on (the one that went away) is online again: the app stays there, the standby is dropped.
    pub app_worker_back: bool,
    /// A newer version of the app ran meanwhile: the standby is dropped.
    pub outdated: bool,
    /// Its time has come.
    pub due: bool,
    image_id: Option<String>,
    container_id: Option<String>,
    host_port: Option<i32>,
}

impl Standby {
    /// What the standby runs, as its deploy reported it.
    pub fn switched(&self) -> Switched<'_> {
        Switched {
            image_id: self.image_id.as_deref(),
            container_id: self.container_id.as_deref(),
            host_port: self.host_port.and_then(|p| u16::try_from(p).ok()),
            commit: None,
        }
    }
}

/// Standbys waiting in `switching` — `only` that one, or every one that is due (`ahead_secs`
/// before its `switch_at`) or whose app's worker came back —, locked with their apps (another
/// pass skips them).
pub async fn standbys(
    tx: &mut PgConnection,
    only: Option<i64>,
    ahead_secs: f64,
) -> Result<Vec<Standby>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.app_id, j.worker_id, COALESCE(w.status = $3, false) AS app_worker_back,
                COALESCE(a.current_deployment_id > d.id, false) AS outdated,
                d.switch_at - make_interval(secs => $5) <= now() AS due, d.image_id, d.container_id, d.host_port
         FROM deployments d JOIN apps a ON a.id = d.app_id
         JOIN jobs j ON j.deployment_id = d.id AND j.status = $4
         LEFT JOIN workers w ON w.id = a.worker_id
         WHERE d.status = $2 AND d.switch_at IS NOT NULL AND j.worker_id IS NOT NULL
           AND ($1::bigint IS NULL OR d.id = $1)
           AND ($1::bigint IS NOT NULL OR d.switch_at - make_interval(secs => $5) <= now() OR w.status = $3)
         ORDER BY d.id FOR UPDATE OF a SKIP LOCKED",
    )
    .bind(only)
    .bind(DeploymentStatus::Switching)
    .bind(crate::domain::WorkerStatus::Online)
    .bind(crate::domain::JobStatus::Succeeded)
    .bind(ahead_secs)
    .fetch_all(&mut *tx)
    .await
}

/// Seconds until the next standby is due (`ahead_secs` before its `switch_at`), if one waits.
pub async fn next_standby_in(db: impl PgExecutor<'_>, ahead_secs: f64) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM min(switch_at) - now())::float8 - $2 FROM deployments
         WHERE switch_at IS NOT NULL AND status = $1",
    )
    .bind(DeploymentStatus::Switching)
    .bind(ahead_secs)
    .fetch_one(db)
    .await
}

/// A restart moved the running version to a new port (and container).
pub async fn moved(
    tx: &mut PgConnection,
    id: i64,
    host_port: u16,
    container_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployments SET host_port = $2, container_id = COALESCE($3, container_id) WHERE id = $1",
    )
    .bind(id)
    .bind(i32::from(host_port))
    .bind(container_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// How a deployment that did not make it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Failed,
    Cancelled,
}

/// Ends a deployment that did not make it, with the reason. A deployment already final is
/// left alone (a restart's job names the running one); an app that never ran becomes
/// `failed`, while a running app keeps serving its current version.
pub async fn end(tx: &mut PgConnection, id: i64, ending: Ending, error: &str) -> Result<(), sqlx::Error> {
    let next = match ending {
        Ending::Failed => DeploymentStatus::Failed,
        Ending::Cancelled => DeploymentStatus::Cancelled,
    };
    let app_id: Option<i64> = sqlx::query_scalar(
        "UPDATE deployments SET status = $2, error = $3, finished_at = now()
         WHERE id = $1 AND status = ANY($4) RETURNING app_id",
    )
    .bind(id)
    .bind(next)
    .bind(error)
    .bind(DeploymentStatus::may_move_to(next))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(app_id) = app_id {
        sqlx::query(
            "UPDATE apps SET status = CASE WHEN current_deployment_id IS NULL THEN $2 ELSE status END, updated_at = now() WHERE id = $1",
        )
        .bind(app_id)
        .bind(AppStatus::Failed)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Supersedes deployments whose queued jobs a newer deploy replaced.
pub async fn supersede(tx: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployments SET status = $2, finished_at = now() WHERE id = ANY($1) AND status = ANY($3)",
    )
    .bind(ids)
    .bind(DeploymentStatus::Superseded)
    .bind(DeploymentStatus::may_move_to(DeploymentStatus::Superseded))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn build_log(db: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT build_log FROM deployments WHERE id = $1").bind(id).fetch_one(db).await
}

/// The largest build log kept per deployment; older lines are dropped from the front.
pub const BUILD_LOG_MAX: i32 = 512 * 1024;

/// Appends lines to the build log of a deployment of `app_id` (lines naming another app's
/// deployment are dropped); true if they were kept.
pub async fn append_build_log(
    db: &PgPool,
    app_id: i64,
    id: i64,
    lines: &[String],
) -> Result<bool, sqlx::Error> {
    let mut text = lines.join("\n");
    text.push('\n');
    let kept = sqlx::query(
        "UPDATE deployments SET build_log = right(build_log || $3, $4) WHERE id = $1 AND app_id = $2",
    )
    .bind(id)
    .bind(app_id)
    .bind(text)
    .bind(BUILD_LOG_MAX)
    .execute(db)
    .await?;
    Ok(kept.rows_affected() > 0)
}

/// A finished deployment not announced yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ended {
    pub id: i64,
    pub app_id: i64,
    pub user_id: i64,
    pub app_name: String,
    pub status: DeploymentStatus,
    /// Set once the deployment switched in: it succeeded, even if superseded since.
    pub image_id: Option<String>,
    pub commit_sha: Option<String>,
    pub error: Option<String>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Takes up to `limit` finished deployments not announced yet and marks them announced, in
/// the caller's transaction (another control plane skips the rows this one holds).
pub async fn take_unannounced(tx: &mut PgConnection, limit: i64) -> Result<Vec<Ended>, sqlx::Error> {
    let ended: Vec<Ended> = sqlx::query_as(
        "SELECT d.id, d.app_id, a.user_id, a.name AS app_name, d.status, d.image_id, d.commit_sha, d.error, d.finished_at
         FROM deployments d JOIN apps a ON a.id = d.app_id
         WHERE NOT d.announced AND d.status = ANY($1)
         ORDER BY d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(DeploymentStatus::FINAL.to_vec())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if ended.is_empty() {
        return Ok(ended);
    }
    let ids: Vec<i64> = ended.iter().map(|e| e.id).collect();
    sqlx::query("UPDATE deployments SET announced = true WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(ended)
}

/// The app's deployments not yet final (queued, building, deploying…).
pub async fn in_flight(db: impl PgExecutor<'_>, app_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM deployments WHERE app_id = $1 AND NOT (status = ANY($2)) ORDER BY id")
        .bind(app_id)
        .bind(DeploymentStatus::FINAL)
        .fetch_all(db)
        .await
}
