//! Usage: the last counters seen per source, hourly rows and daily rollups.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

/// The last cumulative counters seen of one source of an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Counter {
    pub app_id: i64,
    pub source: String,
    pub cpu_nanos: i64,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub requests: i64,
}

/// What one sample adds to an app's hour and day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub mem_gb_hours: f64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
    pub container_seconds: f64,
    pub requests: i64,
}

/// The apps placed on a worker, with the worker, for one sample.
pub async fn placed_apps(db: &PgPool) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, worker_id FROM apps WHERE worker_id IS NOT NULL ORDER BY id")
        .fetch_all(db)
        .await
}

/// Takes the sample of interval `slot` (the interval's number since the epoch) for these
/// workers' apps; the workers whose sample this was (the others' was taken already, by
/// another control plane or before a restart).
pub async fn take_slots(tx: &mut PgConnection, slot: i64, workers: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO usage_slots (slot, worker_id) SELECT $1, w FROM unnest($2::bigint[]) AS w
         ON CONFLICT DO NOTHING RETURNING worker_id",
    )
    .bind(slot)
    .bind(workers)
    .fetch_all(&mut *tx)
    .await
}

/// The counters of these apps.
pub async fn counters(tx: &mut PgConnection, app_ids: &[i64]) -> Result<Vec<Counter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT app_id, source, cpu_nanos, rx_bytes, tx_bytes, requests FROM usage_counters
         WHERE app_id = ANY($1) FOR UPDATE",
    )
    .bind(app_ids)
    .fetch_all(&mut *tx)
    .await
}

/// Writes counters (new or moved on), in one statement.
pub async fn save_counters(tx: &mut PgConnection, counters: &[Counter]) -> Result<(), sqlx::Error> {
    if counters.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Counter) -> i64| counters.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO usage_counters (app_id, source, cpu_nanos, rx_bytes, tx_bytes, requests, seen_at)
         SELECT a, s, c, r, t, q, now() FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
              AS u(a, s, c, r, t, q)
         ON CONFLICT (app_id, source) DO UPDATE SET cpu_nanos = EXCLUDED.cpu_nanos, rx_bytes = EXCLUDED.rx_bytes,
             tx_bytes = EXCLUDED.tx_bytes, requests = EXCLUDED.requests, seen_at = now()",
    )
    .bind(col(|c| c.app_id))
    .bind(counters.iter().map(|c| c.source.clone()).collect::<Vec<String>>())
    .bind(col(|c| c.cpu_nanos))
    .bind(col(|c| c.rx_bytes))
    .bind(col(|c| c.tx_bytes))
    .bind(col(|c| c.requests))
    .execute(&mut *tx)
    .await
    .map(drop)
}

/// Adds each app's figures to its row of the hour and of the day of `at` (UTC).
pub async fn add(
    tx: &mut PgConnection,
    at: DateTime<Utc>,
    figures: &[(i64, Figures)],
) -> Result<(), sqlx::Error> {
    if figures.is_empty() {
        return Ok(());
    }
    let apps: Vec<i64> = figures.iter().map(|(a, _)| *a).collect();
    let f64s = |f: fn(&Figures) -> f64| figures.iter().map(|(_, x)| f(x)).collect::<Vec<f64>>();
    let i64s = |f: fn(&Figures) -> i64| figures.iter().map(|(_, x)| f(x)).collect::<Vec<i64>>();
    for (table, key, value) in [
        ("usage_hourly", "hour", "date_trunc('hour', $1::timestamptz)"),
        ("usage_daily", "day", "($1::timestamptz AT TIME ZONE 'UTC')::date"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (app_id, {key}, cpu_seconds, mem_gb_hours, net_rx_bytes, net_tx_bytes, container_seconds, requests)
             SELECT a, {value}, c, m, r, t, s, q
             FROM unnest($2::bigint[], $3::float8[], $4::float8[], $5::bigint[], $6::bigint[], $7::float8[], $8::bigint[])
                  AS u(a, c, m, r, t, s, q)
             WHERE EXISTS (SELECT 1 FROM apps WHERE id = a)
             ON CONFLICT (app_id, {key}) DO UPDATE SET
                 cpu_seconds = {table}.cpu_seconds + EXCLUDED.cpu_seconds,
                 mem_gb_hours = {table}.mem_gb_hours + EXCLUDED.mem_gb_hours,
                 net_rx_bytes = {table}.net_rx_bytes + EXCLUDED.net_rx_bytes,
                 net_tx_bytes = {table}.net_tx_bytes + EXCLUDED.net_tx_bytes,
                 container_seconds = {table}.container_seconds + EXCLUDED.container_seconds,
                 requests = {table}.requests + EXCLUDED.requests"
        ))
        .bind(at)
        .bind(&apps)
        .bind(f64s(|x| x.cpu_seconds))
        .bind(f64s(|x| x.mem_gb_hours))
        .bind(i64s(|x| x.net_rx_bytes))
        .bind(i64s(|x| x.net_tx_bytes))
        .bind(f64s(|x| x.container_seconds))
        .bind(i64s(|x| x.requests))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Deletes hourly rows, daily rows and counters past their retention; how many rows.
pub async fn prune(db: &PgPool, hourly_days: u32, daily_days: u32) -> Result<u64, sqlx::Error> {
    let hourly = sqlx::query("DELETE FROM usage_hourly WHERE hour < now() - make_interval(days => $1)")
        .bind(i32::try_from(hourly_days).unwrap_or(i32::MAX))
        .execute(db)
        .await?
        .rows_affected();
    let daily = sqlx::query("DELETE FROM usage_daily WHERE day < (now() AT TIME ZONE 'UTC')::date - $1")
        .bind(i32::try_from(daily_days).unwrap_or(i32::MAX))
        .execute(db)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM usage_slots WHERE taken_at < now() - interval '2 days'").execute(db).await?;
    // A source silent for a day is a container gone or a worker restarted.
    let counters = sqlx::query("DELETE FROM usage_counters WHERE seen_at < now() - interval '1 day'")
        .execute(db)
        .await?
        .rows_affected();
    Ok(hourly + daily + counters)
}

/// Usage over a span (a day, a month), unrounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Totals {
    pub cpu_seconds: f64,
    pub mem_gb_hours: f64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
    pub container_hours: f64,
    pub requests: i64,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.cpu_seconds += other.cpu_seconds;
        self.mem_gb_hours += other.mem_gb_hours;
        self.net_rx_bytes += other.net_rx_bytes;
        self.net_tx_bytes += other.net_tx_bytes;
        self.container_hours += other.container_hours;
        self.requests += other.requests;
    }
}

/// One day of one app.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Day {
    /// The UTC date, `YYYY-MM-DD`.
    pub date: NaiveDate,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub totals: Totals,
}

/// The user's apps' days in `[from, to]`: (app id, app name, day).
pub async fn days_for_user(
    db: &PgPool,
    user_id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(i64, String, Day)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        app_id: i64,
        name: String,
        #[sqlx(flatten)]
        day: Day,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id AS app_id, a.name, d.day AS date, d.cpu_seconds, d.mem_gb_hours, d.net_rx_bytes, d.net_tx_bytes,
                d.container_seconds / 3600.0 AS container_hours, d.requests
         FROM apps a JOIN usage_daily d ON d.app_id = a.id
         WHERE a.user_id = $1 AND d.day BETWEEN $2 AND $3
         ORDER BY a.id, d.day",
    )
    .bind(user_id)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.app_id, r.name, r.day)).collect())
}

/// The user's apps, for listing those without usage too.
pub async fn apps_of(db: &PgPool, user_id: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM apps WHERE user_id = $1 ORDER BY id")
        .bind(user_id)
        .fetch_all(db)
        .await
}
