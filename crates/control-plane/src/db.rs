//! The PostgreSQL pool and the embedded, reversible migrations.
//!
//! Migrations live in `migrations/NNNN_name.up.sql` / `.down.sql`, are embedded in the binary and
//! applied at start. A migration that failed part-way (dirty), was edited after it was applied,
//! or is unknown to this binary stops start-up with a message saying how to recover.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::DatabaseConfig;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database.url is not a valid PostgreSQL URL ({url}): {message}; expected postgres://user@host:port/db"
    )]
    BadUrl { url: String, message: String },
    #[error(
        "cannot connect to the database at {url}: {message}; check database.url and that PostgreSQL is running and reachable"
    )]
    Connect { url: String, message: String },
    #[error(
        "migration {version} ({description}) is dirty: it failed part-way. Undo its partial changes by hand, then run `DELETE FROM _sqlx_migrations WHERE version = {version}` and start again"
    )]
    Dirty { version: i64, description: String },
    #[error(
        "migration {version} was changed after it was applied; migrations are never edited once landed: restore the original file and add a new migration instead"
    )]
    Changed { version: i64 },
    #[error(
        "the database has migration {version}, which this binary does not know: it was written by a newer WiseHosting. Run that version, or `wisehosting migrate down` with it first"
    )]
    Unknown { version: i64 },
    #[error("cannot {action} only {applied} applied migration(s); nothing was changed")]
    TooFew { action: String, applied: usize },
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

impl From<MigrateError> for DbError {
    fn from(err: MigrateError) -> Self {
        match err {
            MigrateError::Dirty(version) => DbError::Dirty { version, description: String::new() },
            MigrateError::VersionMismatch(version) => DbError::Changed { version },
            MigrateError::VersionMissing(version) => DbError::Unknown { version },
            other => DbError::Migrate(other.to_string()),
        }
    }
}

/// Connect options with the configured password (if any) and quiet statement logging.
pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    let url = config
        .url
        .as_ref()
        .ok_or_else(|| DbError::BadUrl { url: String::new(), message: "no URL configured".into() })?;
    let mut options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| DbError::BadUrl { url: url.redacted(), message: e.to_string() })?;
    if !config.password.is_empty() {
        options = options.password(config.password.expose());
    }
    Ok(options
        .application_name("wisehosting")
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

/// Opens the pool and checks that the database answers.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = connect_options(config)?;
    let redacted = config.url.as_ref().map(|u| u.redacted()).unwrap_or_default();
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .max_lifetime(Duration::from_secs(config.max_lifetime_secs))
        .idle_timeout(Duration::from_secs(config.idle_timeout_secs))
        .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect { url: redacted, message: describe_sqlx(&e) })?;
    Ok(pool)
}

/// A short human sentence for a connection failure, without the URL (which may hold secrets).
fn describe_sqlx(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::PoolTimedOut => "no answer before the acquire timeout".into(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// One row of `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub state: AppliedState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedState {
    Applied {
        at: String,
    },
    Dirty,
    Pending,
    /// In the database but not in this binary.
    Unknown,
}

struct AppliedRow {
    description: String,
    success: bool,
    checksum: Vec<u8>,
    installed_on: String,
}

async fn applied_rows(pool: &PgPool) -> Result<BTreeMap<i64, AppliedRow>, DbError> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(i64, String, bool, Vec<u8>, String)> = sqlx::query_as(
        "SELECT version, description, success, checksum, to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(version, description, success, checksum, installed_on)| {
            (version, AppliedRow { description, success, checksum, installed_on })
        })
        .collect())
}

/// The up migrations this binary embeds, in order.
fn known() -> impl Iterator<Item = &'static sqlx::migrate::Migration> {
    MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration())
}

/// Every known and applied migration with its state.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationState>, DbError> {
    let applied = applied_rows(pool).await?;
    let mut out: Vec<MigrationState> = known()
        .map(|m| {
            let state = match applied.get(&m.version) {
                Some(row) if !row.success => AppliedState::Dirty,
                Some(row) => AppliedState::Applied { at: row.installed_on.clone() },
                None => AppliedState::Pending,
            };
            MigrationState { version: m.version, description: m.description.to_string(), state }
        })
        .collect();
    for (version, row) in &applied {
        if !known().any(|m| m.version == *version) {
            let state = if row.success { AppliedState::Unknown } else { AppliedState::Dirty };
            out.push(MigrationState { version: *version, description: row.description.clone(), state });
        }
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// Refuses a dirty, edited or unknown migration with a recovery message.
pub async fn check_clean(pool: &PgPool) -> Result<(), DbError> {
    let applied = applied_rows(pool).await?;
    for (version, row) in &applied {
        if !row.success {
            return Err(DbError::Dirty { version: *version, description: row.description.clone() });
        }
        match known().find(|m| m.version == *version) {
            None => return Err(DbError::Unknown { version: *version }),
            Some(m) if m.checksum.as_ref() != row.checksum.as_slice() => {
                return Err(DbError::Changed { version: *version });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Applies every pending migration after checking the applied ones are clean.
pub async fn migrate_up(pool: &PgPool) -> Result<usize, DbError> {
    check_clean(pool).await?;
    let before = applied_rows(pool).await?.len();
    MIGRATOR.run(pool).await?;
    Ok(applied_rows(pool).await?.len() - before)
}

/// Reverts the last `steps` applied migrations, newest first.
pub async fn migrate_down(pool: &PgPool, steps: usize) -> Result<Vec<i64>, DbError> {
    check_clean(pool).await?;
    let applied: Vec<i64> = applied_rows(pool).await?.into_keys().collect();
    if steps > applied.len() {
        return Err(DbError::TooFew {
            action: format!("revert {steps} migration(s) with"),
            applied: applied.len(),
        });
    }
    let keep = applied.len() - steps;
    let target = if keep == 0 { 0 } else { applied[keep - 1] };
    MIGRATOR.undo(pool, target).await?;
    Ok(applied[keep..].iter().rev().copied().collect())
}

/// True when every known migration is applied and nothing is dirty or unknown.
pub async fn is_current(pool: &PgPool) -> Result<bool, DbError> {
    let applied = applied_rows(pool).await?;
    let all_known_applied = known().all(|m| applied.get(&m.version).is_some_and(|r| r.success));
    Ok(all_known_applied && applied.len() == known().count())
}
