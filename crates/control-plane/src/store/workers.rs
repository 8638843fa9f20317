//! The `workers` table.

use sqlx::PgPool;
use wisehosting_crypto::{Aad, Sealer, random_token, sha256_hex};
use wisehosting_proto::mac_key_from_api_key;

use super::mesh::{free_mesh_address, lock_addresses};
use super::{StoreError, is_unique_violation};
use crate::domain::{AppStatus, WorkerName, WorkerStatus, Zone};

/// A worker just created. The raw key is shown once and never stored.
#[derive(Debug)]
pub struct CreatedWorker {
    pub id: i64,
    pub raw_api_key: String,
}

/// Where a worker's sealed MAC key lives, for the sealing AAD.
pub fn mac_key_aad(id: &str) -> Aad<'_> {
    Aad { table: "workers", column: "mac_key_sealed", row: id }
}

/// Creates a worker with a fresh raw API key; stores the key's sha256 hex and the sealed
/// envelope MAC key derived from it.
pub async fn create(
    pool: &PgPool,
    sealer: &Sealer,
    name: &WorkerName,
    zone: Option<&Zone>,
) -> Result<CreatedWorker, StoreError> {
    create_with_key(pool, sealer, name, zone, random_token("whk_")).await
}

/// Creates the worker `name`, or gives an existing one this key (single-machine mode keeps
/// its local worker's key in the data dir and re-keys the row when the two disagree).
pub async fn ensure_with_key(
    pool: &PgPool,
    sealer: &Sealer,
    name: &WorkerName,
    raw_api_key: String,
) -> Result<i64, StoreError> {
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM workers WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?;
    let Some(id) = existing else {
        return Ok(create_with_key(pool, sealer, name, None, raw_api_key).await?.id);
    };
    let sealed = sealer.seal(&mac_key_from_api_key(&raw_api_key), mac_key_aad(&id.to_string()))?;
    sqlx::query("UPDATE workers SET api_key_hash = $2, mac_key_sealed = $3 WHERE id = $1")
        .bind(id)
        .bind(sha256_hex(raw_api_key.as_bytes()))
        .bind(sealed)
        .execute(pool)
        .await?;
    Ok(id)
}

async fn create_with_key(
    pool: &PgPool,
    sealer: &Sealer,
    name: &WorkerName,
    zone: Option<&Zone>,
    raw_api_key: String,
) -> Result<CreatedWorker, StoreError> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO workers (name, zone, api_key_hash, mac_key_sealed) VALUES ($1, $2, $3, '') RETURNING id",
    )
    .bind(name.as_str())
    .bind(zone.map(Zone::as_str))
    .bind(sha256_hex(raw_api_key.as_bytes()))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("a worker named {name} already exists; pick another name"))
        } else {
            StoreError::Db(e)
        }
    })?;
    let row = id.to_string();
    let sealed = sealer.seal(&mac_key_from_api_key(&raw_api_key), mac_key_aad(&row))?;
    sqlx::query("UPDATE workers SET mac_key_sealed = $1 WHERE id = $2")
        .bind(sealed)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(CreatedWorker { id, raw_api_key })
}

/// What the worker API needs of a worker row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerAuth {
    pub id: i64,
    pub name: String,
    pub status: WorkerStatus,
    pub mac_key_sealed: String,
    /// Its mesh address, once it has one.
    pub wg_ip: Option<String>,
}

impl WorkerAuth {
    pub fn is_disabled(&self) -> bool {
        self.status == WorkerStatus::Disabled
    }

    /// The envelope MAC key, opened from its sealed column.
    pub fn mac_key(&self, sealer: &Sealer) -> Result<[u8; 32], StoreError> {
        let row = self.id.to_string();
        let bytes = sealer.open(&self.mac_key_sealed, mac_key_aad(&row))?;
        bytes.try_into().map_err(|_| StoreError::Conflict("the sealed MAC key has the wrong length".into()))
    }
}

/// Looks a worker up by the sha256 hex of its raw API key.
pub async fn find_by_key(pool: &PgPool, raw_api_key: &str) -> Result<Option<WorkerAuth>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, status, mac_key_sealed, host(wg_ip) AS wg_ip FROM workers WHERE api_key_hash = $1",
    )
    .bind(sha256_hex(raw_api_key.as_bytes()))
    .fetch_optional(pool)
    .await
}

pub async fn find(pool: &PgPool, id: i64) -> Result<Option<WorkerAuth>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, status, mac_key_sealed, host(wg_ip) AS wg_ip FROM workers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// What a worker says of itself at registration.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub version: &'a str,
    pub cpus: i32,
    pub memory_mb: i64,
    /// Checked: WireGuard's base64 of 32 bytes.
    pub wg_public_key: Option<&'a str>,
    /// Single-machine mode: every worker is on this machine, its mesh address loopback.
    pub single_machine: bool,
}

/// Gives the worker `name` the WireGuard public key `key` (checked) before it first starts,
/// and its mesh address now — the one it has, else the lowest free one — so its host joins
/// the mesh first and registers over it (SPEC §11). `Ok(None)`: no such worker; an address
/// of `None` means the mesh is full.
pub async fn join_mesh(pool: &PgPool, name: &str, key: &str) -> Result<Option<Option<String>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_addresses(&mut tx).await?;
    let ip: Option<Option<String>> = sqlx::query_scalar(concat!(
        "UPDATE workers SET wg_public_key = $2,
             wg_ip = CASE WHEN wg_ip IS NOT NULL AND NOT wg_ip << '127.0.0.0/8'::inet THEN wg_ip ELSE ",
        free_mesh_address!(),
        " END
         WHERE name = $1
         RETURNING host(wg_ip)"
    ))
    .bind(name)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ip)
}

/// Records a registration and gives the worker its mesh address (SPEC §11): the one it has
/// (stable across registrations and key changes), else — once it sends a public key — the
/// lowest free one of 10.50.0.2–10.50.0.254 (10.50.0.1 is the control plane); in
/// single-machine mode 127.0.0.1. `None` when it has no key yet, or the mesh is full.
/// Allocation is serialised by a transaction-scoped advisory lock, and a unique index backs it.
pub async fn record_registration(
    conn: &mut sqlx::PgConnection,
    id: i64,
    reg: &Registration<'_>,
) -> Result<Option<String>, sqlx::Error> {
    lock_addresses(&mut *conn).await?;
    sqlx::query_scalar(concat!(
        "UPDATE workers SET version = $2, capacity_cpus = $3, capacity_memory_mb = $4,
             wg_public_key = COALESCE($5, wg_public_key), registered_at = now(),
             wg_ip = CASE
                 WHEN $6 THEN '127.0.0.1'::inet
                 WHEN wg_ip IS NOT NULL AND NOT wg_ip << '127.0.0.0/8'::inet THEN wg_ip
                 WHEN COALESCE($5, wg_public_key) IS NULL THEN NULL
                 ELSE ",
        free_mesh_address!(),
        "
             END
         WHERE id = $1
         RETURNING host(wg_ip)"
    ))
    .bind(id)
    .bind(reg.version)
    .bind(reg.cpus)
    .bind(reg.memory_mb)
    .bind(reg.wg_public_key)
    .bind(reg.single_machine)
    .fetch_one(&mut *conn)
    .await
}

/// The worker said hello to the control plane `holder` (this process's id): it is online
/// and held there (so another control plane of a pair never marks it offline).
pub async fn mark_online(pool: &PgPool, id: i64, version: &str, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE workers SET status = $3, version = COALESCE(NULLIF($2, ''), version), last_heartbeat_at = now(),
             connected_to = $5, offline_since = NULL
         WHERE id = $1 AND status <> $4",
    )
    .bind(id)
    .bind(version)
    .bind(WorkerStatus::Online)
    .bind(WorkerStatus::Disabled)
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a worker that `holder` held offline since `silent_since`, and its running apps
/// stopped (un-routable), in one statement; a worker another control plane holds now is left
/// alone. True if it went offline.
pub async fn mark_offline(
    pool: &PgPool,
    id: i64,
    holder: &str,
    silent_since: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let gone: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH gone AS (UPDATE workers SET status = $2, offline_since = $5
             WHERE id = $1 AND status = $3 AND connected_to IS NOT DISTINCT FROM $4 RETURNING id)
         {}",
        stop_apps_of_gone(6, 7)
    ))
    .bind(id)
    .bind(WorkerStatus::Offline)
    .bind(WorkerStatus::Online)
    .bind(holder)
    .bind(silent_since)
    .bind(AppStatus::Stopped)
    .bind(AppStatus::Running)
    .fetch_all(pool)
    .await?;
    Ok(!gone.is_empty())
}

/// After `gone` (workers that just went offline), their running apps are stopped; selects the
/// workers' ids. `$stopped` and `$running` are the placeholders of the two states.
fn stop_apps_of_gone(stopped: usize, running: usize) -> String {
    format!(
        ", stopped AS (UPDATE apps SET status = ${stopped}, updated_at = now() FROM gone
               WHERE apps.worker_id = gone.id AND apps.status = ${running})
         SELECT id FROM gone"
    )
}

/// Marks offline the online workers whose last heartbeat is older than `silent_secs`, whoever
/// held them (a control plane that died holds its workers no more; the one alive flushes the
/// heartbeats of its own every few seconds); returns them.
pub async fn mark_orphans_offline(pool: &PgPool, silent_secs: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "WITH gone AS (UPDATE workers SET status = $2, offline_since = COALESCE(last_heartbeat_at, now())
             WHERE status = $3 AND (last_heartbeat_at IS NULL OR last_heartbeat_at < now() - make_interval(secs => $1))
             RETURNING id)
         {}",
        stop_apps_of_gone(4, 5)
    ))
    .bind(silent_secs as f64)
    .bind(WorkerStatus::Offline)
    .bind(WorkerStatus::Online)
    .bind(AppStatus::Stopped)
    .bind(AppStatus::Running)
    .fetch_all(pool)
    .await
}

/// A worker as `wisehosting worker list` shows it (SPEC §14.5).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Listed {
    pub id: i64,
    pub name: String,
    pub status: WorkerStatus,
    pub zone: Option<String>,
    pub wg_ip: Option<String>,
}

pub async fn list(db: impl sqlx::PgExecutor<'_>) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, status, zone, host(wg_ip) AS wg_ip FROM workers ORDER BY id")
        .fetch_all(db)
        .await
}

pub async fn name_of(db: impl sqlx::PgExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM workers WHERE id = $1").bind(id).fetch_optional(db).await
}

/// A heartbeat to persist: when it came and the load it carried.
#[derive(Debug, Clone, Copy)]
pub struct Beat {
    pub worker_id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub cpu_pct: f64,
    pub mem_used_mb: i64,
    pub mem_total_mb: i64,
}

/// Persists the latest heartbeats (time and load, which placement reads from either control
/// plane of a pair) in one statement.
pub async fn flush_heartbeats(pool: &PgPool, beats: &[Beat]) -> Result<(), sqlx::Error> {
    if beats.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = beats.iter().map(|b| b.worker_id).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = beats.iter().map(|b| b.at).collect();
    let cpu: Vec<f64> = beats.iter().map(|b| b.cpu_pct).collect();
    let used: Vec<i64> = beats.iter().map(|b| b.mem_used_mb).collect();
    let total: Vec<i64> = beats.iter().map(|b| b.mem_total_mb).collect();
    sqlx::query(
        "UPDATE workers w SET last_heartbeat_at = u.at, cpu_pct = u.cpu, mem_used_mb = u.used, mem_total_mb = u.total
         FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::bigint[], $5::bigint[]) AS u(id, at, cpu, used, total)
         WHERE w.id = u.id",
    )
    .bind(ids)
    .bind(times)
    .bind(cpu)
    .bind(used)
    .bind(total)
    .execute(pool)
    .await?;
    Ok(())
}

/// An online worker as placement sees it: its zone, capacity, last load, and the apps placed
/// on it with their owners' plans (what they reserve comes from the plan registry).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CandidateRow {
    pub id: i64,
    pub zone: Option<String>,
    pub capacity_cpus: Option<i32>,
    pub capacity_memory_mb: Option<i64>,
    pub cpu_pct: Option<f64>,
    pub mem_used_mb: Option<i64>,
    pub mem_total_mb: Option<i64>,
    /// The plan of the owner of each app placed there that may be running.
    pub plans: Vec<String>,
}

pub async fn candidates(db: impl sqlx::PgExecutor<'_>) -> Result<Vec<CandidateRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT w.id, w.zone, w.capacity_cpus, w.capacity_memory_mb, w.cpu_pct, w.mem_used_mb, w.mem_total_mb,
                COALESCE(array_agg(u.plan) FILTER (WHERE a.id IS NOT NULL), '{}') AS plans
         FROM workers w
         LEFT JOIN apps a ON a.worker_id = w.id AND a.status = ANY($2)
         LEFT JOIN users u ON u.id = a.user_id
         WHERE w.status = $1
         GROUP BY w.id ORDER BY w.id",
    )
    .bind(WorkerStatus::Online)
    .bind(AppStatus::RESERVING)
    .fetch_all(db)
    .await
}

/// Sets an operator's choice: `Disabled` (no new apps; those it has move) or back to
/// `Offline` (it is online again at its next hello). False if no worker has that name.
pub async fn set_enabled(db: &PgPool, name: &str, enabled: bool) -> Result<bool, sqlx::Error> {
    let done = if enabled {
        sqlx::query("UPDATE workers SET status = $2, offline_since = now() WHERE name = $1 AND status = $3")
            .bind(name)
            .bind(WorkerStatus::Offline)
            .bind(WorkerStatus::Disabled)
            .execute(db)
            .await?
    } else {
        sqlx::query(
            "UPDATE workers SET status = $2, offline_since = COALESCE(offline_since, now()), connected_to = NULL
             WHERE name = $1",
        )
        .bind(name)
        .bind(WorkerStatus::Disabled)
        .execute(db)
        .await?
    };
    if done.rows_affected() > 0 {
        return Ok(true);
    }
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT id FROM workers WHERE name = $1").bind(name).fetch_optional(db).await?;
    Ok(exists.is_some())
}

/// Why a worker cannot be deleted.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteRefusal {
    NoSuchWorker,
    /// These apps (by name) are placed there and may run.
    AppsRunning(Vec<String>),
}

/// Deletes a worker that runs no app (its stopped apps lose their placement).
pub async fn delete(db: &PgPool, name: &str) -> Result<Result<i64, DeleteRefusal>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(id): Option<i64> = sqlx::query_scalar("SELECT id FROM workers WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(Err(DeleteRefusal::NoSuchWorker));
    };
    let running: Vec<String> =
        sqlx::query_scalar("SELECT name FROM apps WHERE worker_id = $1 AND status = ANY($2) ORDER BY name")
            .bind(id)
            .bind(AppStatus::RESERVING)
            .fetch_all(&mut *tx)
            .await?;
    if !running.is_empty() {
        return Ok(Err(DeleteRefusal::AppsRunning(running)));
    }
    sqlx::query("DELETE FROM workers WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Ok(id))
}
