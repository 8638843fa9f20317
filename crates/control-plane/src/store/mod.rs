//! sqlx functions, one file per aggregate. Functions take a pool or a transaction.

pub mod admin;
pub mod alerts;
pub mod apps;
pub mod audit;
pub mod certificates;
pub mod console;
pub mod deployments;
pub mod domains;
pub mod gitlinks;
pub mod jobs;
pub mod key_usage;
pub mod mesh;
pub mod push;
pub mod routes;
pub mod signin;
pub mod tokens;
pub mod totp;
pub mod usage;
pub mod users;
pub mod webhooks;
pub mod workers;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("cannot seal a value: {0}")]
    Seal(#[from] wisehosting_crypto::SealError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// A periodic job that control planes of a pair take turns at: each pass holds its
/// transaction-scoped advisory lock, and a control plane that cannot take it skips the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Moving apps off workers that are gone.
    Reschedule = 0x7768_0001,
    /// Failing jobs stuck past the rescue horizon.
    Rescue = 0x7768_0002,
    /// Ordering certificates from the ACME CA (a round, held by its session).
    Acme = 0x7768_0003,
}

/// Takes `job`'s turn for the rest of the transaction; false if another control plane holds it.
pub async fn take_turn(tx: &mut sqlx::PgConnection, job: Periodic) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(job as i64).fetch_one(&mut *tx).await
}

/// Takes `job`'s turn on this session until [`end_session_turn`] (or the session ends, as when
/// the control plane dies): for work longer than a transaction should stay open. False if
/// another control plane holds it.
pub async fn take_session_turn(conn: &mut sqlx::PgConnection, job: Periodic) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(job as i64).fetch_one(&mut *conn).await
}

pub async fn end_session_turn(conn: &mut sqlx::PgConnection, job: Periodic) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(job as i64).execute(&mut *conn).await.map(drop)
}

/// Tells every control plane that something of `worker_id` changed on `channel` (the one
/// holding its link acts on it); at commit when `db` is a transaction.
pub async fn notify_worker(
    db: impl sqlx::PgExecutor<'_>,
    channel: &str,
    worker_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(worker_id.to_string())
        .execute(db)
        .await
        .map(drop)
}

/// One round trip to the database.
pub async fn ping(db: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(db).await.map(drop)
}

/// Creates the `wisehosting` database on a cluster (single-machine mode's private one) unless
/// it exists.
pub async fn create_platform_database(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'wisehosting')")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        sqlx::query("CREATE DATABASE wisehosting").execute(&mut *conn).await?;
    }
    Ok(())
}

/// True when the error is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
