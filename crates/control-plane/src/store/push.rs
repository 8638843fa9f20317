//! `push_hooks` (an app's push-webhook id, sealed secret and auto-deploy switch) and
//! `push_deliveries` (every delivery, verified or not, and what came of it).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use wisehosting_crypto::{Aad, Sealer};

use super::StoreError;

fn aad(app_id: &str) -> Aad<'_> {
    Aad { table: "push_hooks", column: "secret_sealed", row: app_id }
}

/// An app's push webhook with its secret opened.
#[derive(Debug, Clone)]
pub struct Hook {
    pub app_id: i64,
    pub uuid: String,
    pub secret: String,
    pub auto_deploy: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    app_id: i64,
    uuid: String,
    secret_sealed: String,
    auto_deploy: bool,
}

fn opened(sealer: &Sealer, row: Row) -> Result<Hook, StoreError> {
    let secret = sealer.open(&row.secret_sealed, aad(&row.app_id.to_string()))?;
    let secret = String::from_utf8_lossy(&secret).into_owned();
    Ok(Hook { app_id: row.app_id, uuid: row.uuid, secret, auto_deploy: row.auto_deploy })
}

/// Gives the app a push webhook (a new id and secret), or a new secret when it has one.
pub async fn create_or_rotate(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    app_id: i64,
) -> Result<(), StoreError> {
    let uuid = hex::encode(wisehosting_crypto::random_bytes::<16>());
    let secret = format!("whp_{}", hex::encode(wisehosting_crypto::random_bytes::<24>()));
    let sealed = sealer.seal(secret.as_bytes(), aad(&app_id.to_string()))?;
    sqlx::query(
        "INSERT INTO push_hooks (app_id, uuid, secret_sealed) VALUES ($1, $2, $3)
         ON CONFLICT (app_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, rotated_at = now()",
    )
    .bind(app_id)
    .bind(uuid)
    .bind(sealed)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn for_app(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    app_id: i64,
) -> Result<Option<Hook>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as("SELECT app_id, uuid, secret_sealed, auto_deploy FROM push_hooks WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(db)
            .await?;
    row.map(|r| opened(sealer, r)).transpose()
}

pub async fn by_uuid(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    uuid: &str,
) -> Result<Option<Hook>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as("SELECT app_id, uuid, secret_sealed, auto_deploy FROM push_hooks WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(db)
            .await?;
    row.map(|r| opened(sealer, r)).transpose()
}

/// Turns auto-deploy on or off; false when the app has no push webhook.
pub async fn set_auto_deploy(db: impl PgExecutor<'_>, app_id: i64, on: bool) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE push_hooks SET auto_deploy = $2 WHERE app_id = $1")
        .bind(app_id)
        .bind(on)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A delivery to log.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub app_id: i64,
    pub provider: &'a str,
    pub delivery_id: Option<&'a str>,
    pub event: &'a str,
    pub verified: bool,
    pub outcome: &'a str,
}

/// Logs a delivery; `None` when it is a verified delivery whose id this app and provider saw
/// already (then logged as a duplicate).
pub async fn record(tx: &mut PgConnection, d: &NewDelivery<'_>) -> Result<Option<i64>, sqlx::Error> {
    let first: Option<i64> = sqlx::query_scalar(
        "INSERT INTO push_deliveries (app_id, provider, delivery_id, event, verified, outcome)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (app_id, provider, delivery_id) WHERE verified AND NOT duplicate AND delivery_id IS NOT NULL
         DO NOTHING RETURNING id",
    )
    .bind(d.app_id)
    .bind(d.provider)
    .bind(d.delivery_id)
    .bind(d.event)
    .bind(d.verified)
    .bind(d.outcome)
    .fetch_optional(&mut *tx)
    .await?;
    if first.is_none() {
        sqlx::query(
            "INSERT INTO push_deliveries (app_id, provider, delivery_id, event, verified, duplicate, outcome)
             VALUES ($1, $2, $3, $4, true, true, 'ignored: duplicate')",
        )
        .bind(d.app_id)
        .bind(d.provider)
        .bind(d.delivery_id)
        .bind(d.event)
        .execute(&mut *tx)
        .await?;
    }
    Ok(first)
}

/// What came of a delivery, once known.
pub async fn set_outcome(
    db: impl PgExecutor<'_>,
    id: i64,
    outcome: &str,
    deployment_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE push_deliveries SET outcome = $2, deployment_id = $3 WHERE id = $1")
        .bind(id)
        .bind(outcome)
        .bind(deployment_id)
        .execute(db)
        .await
        .map(drop)
}

/// One row of the delivery log, as the API shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PushDelivery {
    pub id: i64,
    pub provider: String,
    /// The provider's delivery id, when it sent one.
    pub delivery_id: Option<String>,
    pub event: String,
    pub received_at: DateTime<Utc>,
    /// Whether the signature (or token) matched the app's secret.
    pub verified: bool,
    /// `deployed`, `ignored: <why>` or `refused: <why>`.
    pub outcome: String,
    pub deployment_id: Option<i64>,
}

/// The newest deliveries of an app.
pub async fn deliveries(
    db: impl PgExecutor<'_>,
    app_id: i64,
    limit: i64,
) -> Result<Vec<PushDelivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, provider, delivery_id, event, received_at, verified, outcome, deployment_id
         FROM push_deliveries WHERE app_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(app_id)
    .bind(limit)
    .fetch_all(db)
    .await
}
