//! The `apps` and `env_vars` tables, and an app's repository token.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use wisehosting_crypto::{Aad, Sealer};

use super::StoreError;
use wisehosting_proto::JobKind;

use crate::domain::{AppStatus, JobStatus};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct App {
    pub id: i64,
    #[serde(skip)]
    pub user_id: i64,
    pub slug: String,
    pub name: String,
    pub status: AppStatus,
    pub repo_url: String,
    pub branch: String,
    pub framework: String,
    pub dockerfile_path: Option<String>,
    pub port: i32,
    pub worker_id: Option<i64>,
    pub current_deployment_id: Option<i64>,
    pub host_port: Option<i32>,
    /// Whether a repository token is stored; the token itself is never read back.
    pub has_git_token: bool,
    /// The owner's linked account that clones the repository (`github`, `gitlab`,
    /// `bitbucket`, `codeberg`), instead of a token of the app's own.
    pub git_provider: Option<String>,
    /// The path a new version must answer before traffic moves to it: at `/` anything below
    /// 500, elsewhere 2xx or 3xx.
    pub health_check_path: String,
    /// How long a new version has to answer; `null` for the worker's default (60 s).
    pub health_check_timeout_secs: Option<i32>,
    /// Plain-HTTP requests for a host with a certificate go to HTTPS (308); on by default.
    pub https_redirect: bool,
    /// HTTPS answers carry `Strict-Transport-Security: max-age=31536000`; off by default.
    pub hsts: bool,
    /// Paused by the platform's operators: stopped, and it cannot be started, restarted or
    /// deployed until they unpause it.
    pub paused: bool,
    pub created_at: DateTime<Utc>,
}

const APP_COLUMNS: &str = "id, user_id, slug, name, status, repo_url, branch, framework, dockerfile_path, port, worker_id, current_deployment_id, host_port, (git_token_sealed IS NOT NULL) AS has_git_token, git_provider, health_check_path, health_check_timeout_secs, https_redirect, hsts, (paused_at IS NOT NULL) AS paused, created_at";

pub struct NewApp<'a> {
    pub user_id: i64,
    pub slug: &'a str,
    pub name: &'a str,
    pub repo_url: &'a str,
    pub branch: &'a str,
    pub framework: &'a str,
    pub dockerfile_path: Option<&'a str>,
    pub port: u16,
    pub health_check_path: &'a str,
    pub health_check_timeout_secs: Option<u32>,
    pub git_provider: Option<&'a str>,
}

pub async fn insert(db: impl PgExecutor<'_>, app: &NewApp<'_>) -> Result<App, StoreError> {
    sqlx::query_as(&format!(
        "INSERT INTO apps (user_id, slug, name, status, repo_url, branch, framework, dockerfile_path, port,
                           health_check_path, health_check_timeout_secs, git_provider)
         VALUES ($1, $2, $3, $9, $4, $5, $6, $7, $8, $10, $11, $12) RETURNING {APP_COLUMNS}"
    ))
    .bind(app.user_id)
    .bind(app.slug)
    .bind(app.name)
    .bind(app.repo_url)
    .bind(app.branch)
    .bind(app.framework)
    .bind(app.dockerfile_path)
    .bind(i32::from(app.port))
    .bind(AppStatus::Deploying)
    .bind(app.health_check_path)
    .bind(app.health_check_timeout_secs.map(|s| s as i32))
    .bind(app.git_provider)
    .fetch_one(db)
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            StoreError::Conflict(format!("the name {} is taken; choose another app name", app.slug))
        } else {
            StoreError::Db(e)
        }
    })
}

/// The user's app count, with the user's row locked until the transaction ends, so two
/// deploys at once cannot both pass the plan's limit.
pub async fn count_for_user_locked(tx: &mut sqlx::PgConnection, user_id: i64) -> Result<i64, sqlx::Error> {
    super::users::lock(tx, user_id).await?;
    sqlx::query_scalar("SELECT count(*) FROM apps WHERE user_id = $1").bind(user_id).fetch_one(&mut *tx).await
}

pub async fn list_for_user(db: &PgPool, user_id: i64) -> Result<Vec<App>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE user_id = $1 ORDER BY id"))
        .bind(user_id)
        .fetch_all(db)
        .await
}

/// An app as the dashboard's global state lists it, with its worker's zone (for its URL).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Summary {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub status: AppStatus,
    pub zone: Option<String>,
    /// The newest deployment: its id, status and when it was made.
    pub last_deployment_id: Option<i64>,
    pub last_deployment_status: Option<crate::domain::DeploymentStatus>,
    pub last_deployment_at: Option<DateTime<Utc>>,
}

pub async fn summaries_for_user(db: &PgPool, user_id: i64) -> Result<Vec<Summary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, a.name, a.slug, a.status, w.zone,
                d.id AS last_deployment_id, d.status AS last_deployment_status, d.created_at AS last_deployment_at
         FROM apps a LEFT JOIN workers w ON w.id = a.worker_id
         LEFT JOIN LATERAL (SELECT id, status, created_at FROM deployments WHERE app_id = a.id ORDER BY id DESC LIMIT 1) d ON TRUE
         WHERE a.user_id = $1 ORDER BY a.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The app if it exists and belongs to `user_id`; another user's app looks like none.
pub async fn get_for_user(
    db: impl PgExecutor<'_>,
    user_id: i64,
    id: i64,
) -> Result<Option<App>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// A redeploy of an app that never ran shows it as deploying; a running app keeps its status
/// (it serves the old version until the switch).
pub async fn mark_deploying_if_never_ran(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET status = $2 WHERE id = $1 AND current_deployment_id IS NULL")
        .bind(app_id)
        .bind(AppStatus::Deploying)
        .execute(db)
        .await?;
    Ok(())
}

/// The app is being removed from its worker; it is deleted when the worker confirms.
pub async fn mark_deleting(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    set_status(db, app_id, AppStatus::Deleting).await
}

pub async fn set_status(db: impl PgExecutor<'_>, app_id: i64, status: AppStatus) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET status = $2, updated_at = now() WHERE id = $1")
        .bind(app_id)
        .bind(status)
        .execute(db)
        .await?;
    Ok(())
}

/// A restart moved the app to a new port on its worker.
pub async fn set_host_port(db: impl PgExecutor<'_>, app_id: i64, host_port: u16) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET host_port = $2 WHERE id = $1")
        .bind(app_id)
        .bind(i32::from(host_port))
        .execute(db)
        .await?;
    Ok(())
}

/// The worker the app is placed on, if any.
pub async fn worker_of(db: &PgPool, app_id: i64) -> Result<Option<i64>, sqlx::Error> {
    let owner: Option<Option<i64>> = sqlx::query_scalar("SELECT worker_id FROM apps WHERE id = $1")
        .bind(app_id)
        .fetch_optional(db)
        .await?;
    Ok(owner.flatten())
}

/// An app's owner and name.
pub async fn owner_and_name(
    db: impl PgExecutor<'_>,
    app_id: i64,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT user_id, name FROM apps WHERE id = $1").bind(app_id).fetch_optional(db).await
}

/// Whether `worker_id` may report about the app: it runs it, or holds its open job (a deploy
/// moving it there builds before the app is routed there).
pub async fn reports_for(db: &PgPool, app_id: i64, worker_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM apps WHERE id = $1 AND worker_id = $2)
             OR EXISTS (SELECT 1 FROM jobs WHERE app_id = $1 AND worker_id = $2 AND status = ANY($3))",
    )
    .bind(app_id)
    .bind(worker_id)
    .bind(JobStatus::LEASED)
    .fetch_one(db)
    .await
}

/// An app to deploy again elsewhere, and when its new copy may take over: at `switch_at` for
/// an app of a worker that is gone (the reschedule limit; the copy is a standby until then),
/// at once for one of a worker disabled by an operator.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToMove {
    #[sqlx(flatten)]
    pub app: App,
    pub switch_at: Option<DateTime<Utc>>,
}

/// Apps to deploy again elsewhere (SPEC §14.5): placed on a worker offline for more than
/// `after_secs - lead_secs` (a standby is started `lead_secs` before the limit, switched to at
/// it), or disabled by an operator; with a version that ran, not stopped by their user, no job
/// open, and not yet redeployed since the worker went away (one try per absence: a failed one
/// is the user's to see, not retried in a loop). Locked, up to `limit`.
pub async fn lock_to_reschedule(
    tx: &mut sqlx::PgConnection,
    after_secs: f64,
    lead_secs: f64,
    limit: i64,
) -> Result<Vec<ToMove>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH chosen AS (
             SELECT apps.id,
                    CASE WHEN w.status = $5 THEN w.offline_since + make_interval(secs => $1) END AS switch_at
             FROM apps JOIN workers w ON w.id = apps.worker_id
             WHERE apps.current_deployment_id IS NOT NULL AND apps.status <> $4
               AND ((w.status = $5 AND w.offline_since < now() - make_interval(secs => $1 - $10))
                    OR w.status = $6)
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.app_id = apps.id AND j.status = ANY($3))
               AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.app_id = apps.id
                               AND d.created_at >= COALESCE(w.offline_since, now()))
               AND {}
             ORDER BY apps.id LIMIT $2 FOR UPDATE OF apps SKIP LOCKED)
         SELECT {APP_COLUMNS}, chosen.switch_at FROM apps JOIN chosen USING (id) ORDER BY id",
        not_stopped_by_user(7)
    ))
    .bind(after_secs)
    .bind(limit)
    .bind(JobStatus::OPEN)
    .bind(AppStatus::Deleting)
    .bind(crate::domain::WorkerStatus::Offline)
    .bind(crate::domain::WorkerStatus::Disabled)
    .bind_not_stopped()
    .bind(lead_secs)
    .fetch_all(&mut *tx)
    .await
}

/// The apps placed on a worker.
pub async fn placed_on(db: impl PgExecutor<'_>, worker_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM apps WHERE worker_id = $1 ORDER BY id")
        .bind(worker_id)
        .fetch_all(db)
        .await
}

/// True for an app the user has not stopped since it last started (a SQL condition on `apps`
/// whose three values are placeholders from `$first` on, bound by [`BindNotStopped`]): a
/// container coming back never overrides a user's stop.
fn not_stopped_by_user(first: usize) -> String {
    let (stop, starts, succeeded) = (first, first + 1, first + 2);
    format!(
        "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.app_id = apps.id AND j.kind = ${stop} AND j.status = ${succeeded}
        AND j.finished_at > coalesce((SELECT max(s.finished_at) FROM jobs s WHERE s.app_id = apps.id
            AND s.kind = ANY(${starts}) AND s.status = ${succeeded}), 'epoch'))"
    )
}

fn starting_kinds() -> Vec<&'static str> {
    [JobKind::Start, JobKind::Restart, JobKind::Deploy].map(JobKind::as_str).to_vec()
}

/// What the worker's monitor saw of one of its apps: moves it to `to` if it is in one of
/// `from`, is placed on `worker_id`, has run, and was not stopped by its user. True if it moved.
pub async fn follow_container(
    db: &PgPool,
    worker_id: i64,
    app_id: i64,
    from: &[AppStatus],
    to: AppStatus,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(&format!(
        "UPDATE apps SET status = $3, updated_at = now() WHERE id = $1 AND worker_id = $2 AND status = ANY($4)
           AND current_deployment_id IS NOT NULL AND {}",
        not_stopped_by_user(5)
    ))
    .bind(app_id)
    .bind(worker_id)
    .bind(to)
    .bind(from)
    .bind_not_stopped()
    .execute(db)
    .await?;
    Ok(moved.rows_affected() > 0)
}

/// Re-sync after a reconnect: apps on `worker_id` whose current deployment's container runs
/// there (`running` pairs of app and deployment) are routable again, unless their user
/// stopped them.
pub async fn resync_running(db: &PgPool, worker_id: i64, running: &[(i64, i64)]) -> Result<(), sqlx::Error> {
    let (apps, deployments): (Vec<i64>, Vec<i64>) = running.iter().copied().unzip();
    sqlx::query(&format!(
        "UPDATE apps SET status = $4, updated_at = now() FROM unnest($2::bigint[], $3::bigint[]) AS r(app_id, deployment_id)
         WHERE apps.id = r.app_id AND apps.current_deployment_id = r.deployment_id AND apps.worker_id = $1
           AND apps.status = ANY($5) AND {}",
        not_stopped_by_user(6)
    ))
    .bind(worker_id)
    .bind(&apps)
    .bind(&deployments)
    .bind(AppStatus::Running)
    .bind(AppStatus::BACK_FROM)
    .bind_not_stopped()
    .execute(db)
    .await?;
    Ok(())
}

/// Binds the values of [`not_stopped_by_user`], after the statement's own.
trait BindNotStopped {
    fn bind_not_stopped(self) -> Self;
}

impl<'q> BindNotStopped for sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn bind_not_stopped(self) -> Self {
        self.bind(JobKind::Stop.as_str()).bind(starting_kinds()).bind(JobStatus::Succeeded)
    }
}

impl<'q, O> BindNotStopped for sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    fn bind_not_stopped(self) -> Self {
        self.bind(JobKind::Stop.as_str()).bind(starting_kinds()).bind(JobStatus::Succeeded)
    }
}

/// Per app placed on `worker_id` — or moving there, its job leased to it, or its standby
/// waiting there for the reschedule limit —: the deployment it runs (a standby's own), and
/// whether its containers must all stay (a job is open for it, or it is a standby).
pub async fn desired_on(db: &PgPool, worker_id: i64) -> Result<Vec<(i64, Option<i64>, bool)>, sqlx::Error> {
    sqlx::query_as(
        "WITH standby AS (
             SELECT d.app_id, max(d.id) AS id FROM deployments d JOIN jobs sj ON sj.deployment_id = d.id
             WHERE d.status = $4 AND d.switch_at IS NOT NULL AND sj.worker_id = $1 AND sj.status = $5
             GROUP BY d.app_id),
         mine AS (
             SELECT id FROM apps WHERE worker_id = $1
             UNION SELECT app_id FROM jobs WHERE worker_id = $1 AND status = ANY($3)
             UNION SELECT app_id FROM standby)
         SELECT a.id, COALESCE(s.id, a.current_deployment_id),
                s.id IS NOT NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.app_id = a.id AND j.status = ANY($2))
         FROM apps a JOIN mine ON mine.id = a.id LEFT JOIN standby s ON s.app_id = a.id",
    )
    .bind(worker_id)
    .bind(JobStatus::OPEN)
    .bind(JobStatus::LEASED)
    .bind(crate::domain::DeploymentStatus::Switching)
    .bind(JobStatus::Succeeded)
    .fetch_all(db)
    .await
}

/// Deletes the app's row (its deployments, env, domains and jobs go with it).
pub async fn delete(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM apps WHERE id = $1").bind(app_id).execute(db).await?;
    Ok(())
}

fn env_aad(app_id: &str) -> Aad<'_> {
    Aad { table: "env_vars", column: "value_sealed", row: app_id }
}

/// Replaces an app's whole env map; each value sealed and bound to the app and its name.
pub async fn replace_env(
    db: &mut sqlx::PgConnection,
    sealer: &Sealer,
    app_id: i64,
    env: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM env_vars WHERE app_id = $1").bind(app_id).execute(&mut *db).await?;
    for (name, value) in env {
        let row = format!("{app_id}:{name}");
        let sealed = sealer.seal(value.as_bytes(), env_aad(&row))?;
        sqlx::query("INSERT INTO env_vars (app_id, name, value_sealed) VALUES ($1, $2, $3)")
            .bind(app_id)
            .bind(name)
            .bind(sealed)
            .execute(&mut *db)
            .await?;
    }
    Ok(())
}

pub async fn load_env(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    app_id: i64,
) -> Result<BTreeMap<String, String>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value_sealed FROM env_vars WHERE app_id = $1 ORDER BY name")
            .bind(app_id)
            .fetch_all(db)
            .await?;
    let mut out = BTreeMap::new();
    for (name, sealed) in rows {
        let row = format!("{app_id}:{name}");
        let value = sealer.open(&sealed, env_aad(&row))?;
        out.insert(name, String::from_utf8_lossy(&value).into_owned());
    }
    Ok(out)
}

fn git_token_aad(app_id: &str) -> Aad<'_> {
    Aad { table: "apps", column: "git_token_sealed", row: app_id }
}

/// Stores (sealed, bound to the app) or clears the app's repository token.
pub async fn set_git_token(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    app_id: i64,
    token: Option<&str>,
) -> Result<(), StoreError> {
    let sealed = token.map(|t| sealer.seal(t.as_bytes(), git_token_aad(&app_id.to_string()))).transpose()?;
    sqlx::query("UPDATE apps SET git_token_sealed = $2 WHERE id = $1")
        .bind(app_id)
        .bind(sealed)
        .execute(db)
        .await?;
    Ok(())
}

/// Stops cloning with the owner's linked account (the app's own token, if any, is used).
pub async fn clear_git_provider(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE apps SET git_provider = NULL WHERE id = $1").bind(app_id).execute(db).await?;
    Ok(())
}

/// The app's repository token, opened for a deploy job's (sealed) payload.
pub async fn load_git_token(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    app_id: i64,
) -> Result<Option<String>, StoreError> {
    let sealed: Option<String> = sqlx::query_scalar("SELECT git_token_sealed FROM apps WHERE id = $1")
        .bind(app_id)
        .fetch_optional(db)
        .await?
        .flatten();
    let Some(sealed) = sealed else { return Ok(None) };
    let token = sealer.open(&sealed, git_token_aad(&app_id.to_string()))?;
    Ok(Some(String::from_utf8_lossy(&token).into_owned()))
}

/// Any tenant's app, locked for the rest of the transaction, for the operators.
pub async fn get_locked(db: impl PgExecutor<'_>, id: i64) -> Result<Option<App>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Pauses (with a reason) or unpauses an app; false when it already was so.
pub async fn set_paused(db: impl PgExecutor<'_>, id: i64, pause: Option<&str>) -> Result<bool, sqlx::Error> {
    let done = match pause {
        Some(reason) => {
            sqlx::query(
                "UPDATE apps SET paused_at = now(), paused_reason = $2 WHERE id = $1 AND paused_at IS NULL",
            )
            .bind(id)
            .bind(reason)
            .execute(db)
            .await?
        }
        None => sqlx::query(
            "UPDATE apps SET paused_at = NULL, paused_reason = '' WHERE id = $1 AND paused_at IS NOT NULL",
        )
        .bind(id)
        .execute(db)
        .await?,
    };
    Ok(done.rows_affected() == 1)
}

/// The reason an app is paused by the operators, or `None` when it is not.
pub async fn paused_reason(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT paused_reason FROM apps WHERE id = $1 AND paused_at IS NOT NULL")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Sets how an app is served over HTTPS.
pub async fn set_https(
    db: impl PgExecutor<'_>,
    app_id: i64,
    redirect: bool,
    hsts: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET https_redirect = $2, hsts = $3, updated_at = now() WHERE id = $1")
        .bind(app_id)
        .bind(redirect)
        .bind(hsts)
        .execute(db)
        .await
        .map(drop)
}

/// Sets an app's health check.
pub async fn set_health_check(
    db: impl PgExecutor<'_>,
    app_id: i64,
    path: &str,
    timeout_secs: Option<u32>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET health_check_path = $2, health_check_timeout_secs = $3, updated_at = now() WHERE id = $1")
        .bind(app_id)
        .bind(path)
        .bind(timeout_secs.map(|s| s as i32))
        .execute(db)
        .await
        .map(drop)
}
