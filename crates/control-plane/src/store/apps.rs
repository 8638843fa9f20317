//! The `apps`, `deployments` and `env_vars` tables.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use wisehosting_crypto::{Aad, Sealer};

use super::StoreError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct App {
    pub id: i64,
    #[serde(skip)]
    pub user_id: i64,
    pub slug: String,
    pub name: String,
    pub status: String,
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
    pub created_at: DateTime<Utc>,
}

const APP_COLUMNS: &str = "id, user_id, slug, name, status, repo_url, branch, framework, dockerfile_path, port, worker_id, current_deployment_id, host_port, (git_token_sealed IS NOT NULL) AS has_git_token, created_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Deployment {
    pub id: i64,
    pub app_id: i64,
    pub status: String,
    pub branch: String,
    #[serde(rename = "commit")]
    pub commit_sha: Option<String>,
    pub image_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const DEPLOYMENT_COLUMNS: &str = "d.id, d.app_id, d.status, d.branch, d.commit_sha, d.image_id, d.error, d.created_at, d.started_at, d.finished_at";

/// Deployment states that will not change again.
pub const FINAL_DEPLOYMENT_STATES: [&str; 4] = ["running", "superseded", "failed", "cancelled"];

pub struct NewApp<'a> {
    pub user_id: i64,
    pub slug: &'a str,
    pub name: &'a str,
    pub repo_url: &'a str,
    pub branch: &'a str,
    pub framework: &'a str,
    pub dockerfile_path: Option<&'a str>,
    pub port: u16,
}

pub async fn insert(db: impl PgExecutor<'_>, app: &NewApp<'_>) -> Result<App, StoreError> {
    sqlx::query_as(&format!(
        "INSERT INTO apps (user_id, slug, name, status, repo_url, branch, framework, dockerfile_path, port)
         VALUES ($1, $2, $3, 'deploying', $4, $5, $6, $7, $8) RETURNING {APP_COLUMNS}"
    ))
    .bind(app.user_id)
    .bind(app.slug)
    .bind(app.name)
    .bind(app.repo_url)
    .bind(app.branch)
    .bind(app.framework)
    .bind(app.dockerfile_path)
    .bind(i32::from(app.port))
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

/// Ends a deployment that did not make it (`failed` or `cancelled`, with the reason). A
/// deployment already final is left alone (a restart's job names the running one); an app that
/// never ran becomes `failed`, while a running app keeps serving its current version.
pub async fn end_deployment(
    tx: &mut sqlx::PgConnection,
    deployment_id: i64,
    status: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    let app_id: Option<i64> = sqlx::query_scalar(
        "UPDATE deployments SET status = $2, error = $3, finished_at = now()
         WHERE id = $1 AND status NOT IN ('running', 'superseded', 'failed', 'cancelled') RETURNING app_id",
    )
    .bind(deployment_id)
    .bind(status)
    .bind(error)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(app_id) = app_id {
        sqlx::query(
            "UPDATE apps SET status = CASE WHEN current_deployment_id IS NULL THEN 'failed' ELSE status END, updated_at = now() WHERE id = $1",
        )
        .bind(app_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The user's app count, with the user's row locked until the transaction ends, so two
/// deploys at once cannot both pass the plan's limit.
pub async fn count_for_user_locked(tx: &mut sqlx::PgConnection, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(user_id).execute(&mut *tx).await?;
    sqlx::query_scalar("SELECT count(*) FROM apps WHERE user_id = $1").bind(user_id).fetch_one(&mut *tx).await
}

pub async fn list_for_user(db: &PgPool, user_id: i64) -> Result<Vec<App>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE user_id = $1 ORDER BY id"))
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
    sqlx::query("UPDATE apps SET status = 'deploying' WHERE id = $1 AND current_deployment_id IS NULL")
        .bind(app_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The app is being removed from its worker; it is deleted when the worker confirms.
pub async fn mark_deleting(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE apps SET status = 'deleting' WHERE id = $1").bind(app_id).execute(db).await?;
    Ok(())
}

/// Deletes the app's row (its deployments, env, domains and jobs go with it).
pub async fn delete(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM apps WHERE id = $1").bind(app_id).execute(db).await?;
    Ok(())
}

pub async fn insert_deployment(
    db: impl PgExecutor<'_>,
    app_id: i64,
    branch: &str,
    commit: Option<&str>,
) -> Result<Deployment, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO deployments AS d (app_id, branch, commit_sha) VALUES ($1, $2, $3) RETURNING {DEPLOYMENT_COLUMNS}"
    ))
    .bind(app_id)
    .bind(branch)
    .bind(commit)
    .fetch_one(db)
    .await
}

pub async fn deployments_for_app(db: &PgPool, app_id: i64) -> Result<Vec<Deployment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d WHERE d.app_id = $1 ORDER BY d.id DESC LIMIT 100"
    ))
    .bind(app_id)
    .fetch_all(db)
    .await
}

pub async fn deployment_for_user(
    db: &PgPool,
    user_id: i64,
    id: i64,
) -> Result<Option<Deployment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN apps a ON a.id = d.app_id WHERE d.id = $1 AND a.user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

pub async fn build_log(db: &PgPool, deployment_id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT build_log FROM deployments WHERE id = $1")
        .bind(deployment_id)
        .fetch_one(db)
        .await
}

/// The largest build log kept per deployment; older lines are dropped from the front.
pub const BUILD_LOG_MAX: i32 = 512 * 1024;

pub async fn append_build_log(db: &PgPool, deployment_id: i64, lines: &[String]) -> Result<(), sqlx::Error> {
    let mut text = lines.join("\n");
    text.push('\n');
    sqlx::query("UPDATE deployments SET build_log = right(build_log || $2, $3) WHERE id = $1")
        .bind(deployment_id)
        .bind(text)
        .bind(BUILD_LOG_MAX)
        .execute(db)
        .await?;
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
