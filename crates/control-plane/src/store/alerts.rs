//! Alert rules (with the evaluator's state) and alerts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;

use crate::domain::{AlertKind, AlertStatus};

/// A rule as users see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Rule {
    pub id: i64,
    pub app_id: i64,
    pub kind: AlertKind,
    /// cpu and memory in %, network in bytes/s, restarts per hour; null for event kinds.
    pub threshold: Option<f64>,
    pub sustain_minutes: i32,
    /// Whether the condition holds now (metric kinds: it was over the threshold long enough).
    pub firing: bool,
    pub created_at: DateTime<Utc>,
}

const RULE_COLUMNS: &str = "id, app_id, kind, threshold, sustain_minutes, firing, created_at";

/// A metric rule with what the evaluator needs: the app's owner and worker, and the state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetricRule {
    pub id: i64,
    pub app_id: i64,
    pub user_id: i64,
    pub worker_id: Option<i64>,
    pub kind: AlertKind,
    pub threshold: f64,
    pub sustain_minutes: i32,
    pub over_since: Option<DateTime<Utc>>,
    pub under_since: Option<DateTime<Utc>>,
    pub firing: bool,
}

/// The evaluator's state of one rule after a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleState {
    pub id: i64,
    pub over_since: Option<DateTime<Utc>>,
    pub under_since: Option<DateTime<Utc>>,
    pub firing: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Alert {
    pub id: i64,
    pub app_id: Option<i64>,
    #[serde(skip)]
    pub user_id: i64,
    pub kind: AlertKind,
    pub status: AlertStatus,
    pub message: String,
    pub fired_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const ALERT_COLUMNS: &str =
    "id, app_id, user_id, kind, status, message, fired_at, acknowledged_at, resolved_at";

/// The rules every new app gets.
pub async fn insert_default_rules(db: impl PgExecutor<'_>, app_id: i64) -> Result<(), sqlx::Error> {
    let kinds: Vec<AlertKind> = AlertKind::DEFAULT_RULES.to_vec();
    sqlx::query(
        "INSERT INTO alert_rules (app_id, kind, sustain_minutes) SELECT $1, k, 0 FROM unnest($2::text[]) AS k
         ON CONFLICT (app_id, kind) DO NOTHING",
    )
    .bind(app_id)
    .bind(kinds)
    .execute(db)
    .await
    .map(drop)
}

pub async fn rules_for_app(db: &PgPool, app_id: i64) -> Result<Vec<Rule>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE app_id = $1 ORDER BY id"))
        .bind(app_id)
        .fetch_all(db)
        .await
}

/// Adds a rule, or replaces the app's rule of that kind (its evaluation starts over).
pub async fn upsert_rule(
    db: impl PgExecutor<'_>,
    app_id: i64,
    kind: AlertKind,
    threshold: Option<f64>,
    sustain_minutes: i32,
) -> Result<Rule, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO alert_rules (app_id, kind, threshold, sustain_minutes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app_id, kind) DO UPDATE SET threshold = $3, sustain_minutes = $4,
             over_since = NULL, under_since = NULL, firing = false, created_at = now()
         RETURNING {RULE_COLUMNS}"
    ))
    .bind(app_id)
    .bind(kind)
    .bind(threshold)
    .bind(sustain_minutes)
    .fetch_one(db)
    .await
}

pub async fn delete_rule(db: impl PgExecutor<'_>, app_id: i64, rule_id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM alert_rules WHERE id = $1 AND app_id = $2")
        .bind(rule_id)
        .bind(app_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The app's owner and name when it has a rule of this kind (event kinds fire only then).
pub async fn ruled_owner(
    db: impl PgExecutor<'_>,
    app_id: i64,
    kind: AlertKind,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.user_id, a.name FROM apps a JOIN alert_rules r ON r.app_id = a.id AND r.kind = $2 WHERE a.id = $1",
    )
    .bind(app_id)
    .bind(kind)
    .fetch_optional(db)
    .await
}

/// Every metric rule, for one evaluation round. Read as one row of arrays, one per column:
/// decoding a few long arrays costs a fraction of decoding as many rows (the round's CPU is
/// mostly this; `bash scripts/bench.sh observe`).
pub async fn metric_rules(db: &PgPool) -> Result<Vec<MetricRule>, sqlx::Error> {
    type Columns = (
        Vec<i64>,
        Vec<i64>,
        Vec<i64>,
        Vec<Option<i64>>,
        Vec<String>,
        Vec<f64>,
        Vec<i32>,
        Vec<Option<DateTime<Utc>>>,
        Vec<Option<DateTime<Utc>>>,
        Vec<bool>,
    );
    let (ids, apps, users, workers, kinds, thresholds, sustains, overs, unders, firing): Columns =
        sqlx::query_as(
            "SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(r.app_id), '{}'),
                coalesce(array_agg(a.user_id), '{}'), coalesce(array_agg(a.worker_id), '{}'),
                coalesce(array_agg(r.kind), '{}'), coalesce(array_agg(r.threshold), '{}'),
                coalesce(array_agg(r.sustain_minutes), '{}'), coalesce(array_agg(r.over_since), '{}'),
                coalesce(array_agg(r.under_since), '{}'), coalesce(array_agg(r.firing), '{}')
         FROM alert_rules r JOIN apps a ON a.id = r.app_id
         WHERE r.threshold IS NOT NULL",
        )
        .fetch_one(db)
        .await?;
    let mut rules = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        // A kind the database holds is one of ours (its CHECK lists the same names).
        let Some(kind) = kinds.get(i).and_then(|k| AlertKind::parse(k)) else { continue };
        rules.push(MetricRule {
            id: ids[i],
            app_id: apps[i],
            user_id: users[i],
            worker_id: workers[i],
            kind,
            threshold: thresholds[i],
            sustain_minutes: sustains[i],
            over_since: overs[i],
            under_since: unders[i],
            firing: firing[i],
        });
    }
    Ok(rules)
}

/// Writes the states a round changed, in one statement.
pub async fn save_states(db: impl PgExecutor<'_>, states: &[RuleState]) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = states.iter().map(|s| s.id).collect();
    let over: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.over_since).collect();
    let under: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.under_since).collect();
    let firing: Vec<bool> = states.iter().map(|s| s.firing).collect();
    sqlx::query(
        "UPDATE alert_rules r SET over_since = s.o, under_since = s.u, firing = s.f
         FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bool[]) AS s(id, o, u, f)
         WHERE r.id = s.id",
    )
    .bind(ids)
    .bind(over)
    .bind(under)
    .bind(firing)
    .execute(db)
    .await
    .map(drop)
}

/// An alert to raise: whose, about which app (none: about the account), what, when.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub user_id: i64,
    pub app_id: Option<i64>,
    pub kind: AlertKind,
    pub message: &'a str,
    pub at: DateTime<Utc>,
}

/// Raises an alert unless one of this (user, app, kind) is open; the new alert, if any.
pub async fn fire(db: impl PgExecutor<'_>, new: &NewAlert<'_>) -> Result<Option<Alert>, sqlx::Error> {
    let NewAlert { user_id, app_id, kind, message, at } = *new;
    sqlx::query_as(&format!(
        "INSERT INTO alerts (user_id, app_id, kind, message, fired_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, COALESCE(app_id, 0), kind) WHERE status <> 'resolved' DO NOTHING
         RETURNING {ALERT_COLUMNS}"
    ))
    .bind(user_id)
    .bind(app_id)
    .bind(kind)
    .bind(message)
    .bind(at)
    .fetch_optional(db)
    .await
}

/// Resolves the open alert of an app's kind, if any (its condition cleared).
pub async fn resolve_open(
    db: impl PgExecutor<'_>,
    app_id: i64,
    kind: AlertKind,
    at: DateTime<Utc>,
) -> Result<Option<Alert>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE alerts SET status = $3, resolved_at = $4
         WHERE app_id = $1 AND kind = $2 AND status <> $3 RETURNING {ALERT_COLUMNS}"
    ))
    .bind(app_id)
    .bind(kind)
    .bind(AlertStatus::Resolved)
    .bind(at)
    .fetch_optional(db)
    .await
}

/// The user's alerts, newest first, of one status or all.
pub async fn list_for_user(
    db: &PgPool,
    user_id: i64,
    status: Option<AlertStatus>,
    limit: i64,
) -> Result<Vec<Alert>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY fired_at DESC, id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(status)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What became of a user's move of an alert.
#[derive(Debug)]
pub enum Move {
    /// Moved, or already there (the moves are idempotent).
    Done(Alert),
    /// Not the user's alert, or none.
    NotFound,
    /// In a state the move does not start from (a resolved alert is not acknowledged).
    From(AlertStatus),
}

/// A user's move of their alert: acknowledge (from firing) or resolve (from firing or
/// acknowledged).
pub async fn set_status(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    alert_id: i64,
    to: AlertStatus,
) -> Result<Move, sqlx::Error> {
    let current: Option<Alert> = sqlx::query_as(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND user_id = $2 FOR UPDATE"
    ))
    .bind(alert_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else { return Ok(Move::NotFound) };
    if current.status == to {
        return Ok(Move::Done(current));
    }
    let allowed = match to {
        AlertStatus::Acknowledged => current.status == AlertStatus::Firing,
        AlertStatus::Resolved => current.status != AlertStatus::Resolved,
        AlertStatus::Firing => false,
    };
    if !allowed {
        return Ok(Move::From(current.status));
    }
    let moved = sqlx::query_as(&format!(
        "UPDATE alerts SET status = $2,
             acknowledged_at = CASE WHEN $2 = 'acknowledged' THEN now() ELSE acknowledged_at END,
             resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE resolved_at END
         WHERE id = $1 RETURNING {ALERT_COLUMNS}"
    ))
    .bind(alert_id)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Move::Done(moved))
}
