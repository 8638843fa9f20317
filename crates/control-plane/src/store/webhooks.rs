//! Webhook endpoints (secrets sealed) and their delivery queue; notification e-mails.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use utoipa::ToSchema;
use wisehosting_crypto::{Aad, Sealer};

use super::StoreError;

/// An endpoint as its owner sees it (never its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Failed tries in a row; at `outbound.webhook_disable_after` the endpoint is turned off.
    pub consecutive_failures: i32,
    /// Why it was turned off, when it was.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str = "id, url, events, enabled, consecutive_failures, disabled_reason, created_at";

/// A delivery as its endpoint's owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub event: String,
    /// `pending` (queued or between tries), `delivered`, `failed` (every try failed).
    pub status: String,
    pub attempts: i32,
    /// The HTTP status of the last try, if one answered.
    pub response_status: Option<i32>,
    /// Why the last try failed, if it did.
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str =
    "id, event, status, attempts, response_status, last_error, next_attempt_at, created_at, delivered_at";

/// What a sender needs of an endpoint it leased.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeasedEndpoint {
    pub id: i64,
    pub user_id: i64,
    pub url: String,
    pub secret_sealed: Option<String>,
}

/// A due delivery with what its body is made of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: i64,
    pub event: String,
    pub data: serde_json::Value,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

fn secret_aad(id: &str) -> Aad<'_> {
    Aad { table: "webhook_endpoints", column: "secret_sealed", row: id }
}

/// Creates an endpoint with its secret sealed to its row.
pub async fn create_endpoint(
    tx: &mut PgConnection,
    sealer: &Sealer,
    user_id: i64,
    url: &str,
    events: &[String],
    secret: &str,
) -> Result<Endpoint, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_endpoints (user_id, url, events) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(url)
    .bind(events)
    .fetch_one(&mut *tx)
    .await?;
    let sealed = sealer.seal(secret.as_bytes(), secret_aad(&id.to_string()))?;
    let endpoint = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET secret_sealed = $2 WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(sealed)
    .fetch_one(&mut *tx)
    .await?;
    Ok(endpoint)
}

/// Opens a leased endpoint's secret.
pub fn open_secret(sealer: &Sealer, endpoint: &LeasedEndpoint) -> Result<String, String> {
    let sealed = endpoint.secret_sealed.as_deref().ok_or("the endpoint has no secret")?;
    let bytes = sealer
        .open(sealed, secret_aad(&endpoint.id.to_string()))
        .map_err(|e| format!("the endpoint's secret cannot be opened ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "the endpoint's secret is not text".to_string())
}

pub async fn count_for_user(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await
}

pub async fn list_endpoints(db: &PgPool, user_id: i64) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE user_id = $1 ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub async fn get_endpoint(
    db: impl PgExecutor<'_>,
    user_id: i64,
    id: i64,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

pub async fn delete_endpoint(db: impl PgExecutor<'_>, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Turns an endpoint back on (its failure count starts over).
pub async fn enable_endpoint(
    db: impl PgExecutor<'_>,
    user_id: i64,
    id: i64,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET enabled = true, consecutive_failures = 0, disabled_reason = NULL
         WHERE id = $1 AND user_id = $2 RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Queues one delivery of `event` to each of the user's enabled endpoints that asked for it;
/// how many were queued.
pub async fn enqueue(
    db: impl PgExecutor<'_>,
    user_id: i64,
    event: &str,
    data: &serde_json::Value,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event, data)
         SELECT id, $2, $3 FROM webhook_endpoints WHERE user_id = $1 AND enabled AND $2 = ANY(events)",
    )
    .bind(user_id)
    .bind(event)
    .bind(data)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Leases up to `limit` enabled endpoints that have a due delivery and no sender, for
/// `lease_secs`: one sender per endpoint at a time, across control planes.
pub async fn lease_endpoints(
    db: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> Result<Vec<LeasedEndpoint>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE webhook_endpoints e SET busy_until = now() + make_interval(secs => $2)
         WHERE e.id IN (
             SELECT e2.id FROM webhook_endpoints e2
             WHERE e2.enabled AND (e2.busy_until IS NULL OR e2.busy_until < now())
               AND EXISTS (SELECT 1 FROM webhook_deliveries d
                           WHERE d.endpoint_id = e2.id AND d.status = 'pending' AND d.next_attempt_at <= now())
             ORDER BY e2.busy_until NULLS FIRST LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING e.id, e.user_id, e.url, e.secret_sealed",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

/// Gives a leased endpoint back.
pub async fn release_endpoint(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET busy_until = NULL WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(drop)
}

/// An endpoint's due deliveries, oldest first.
pub async fn due_deliveries(
    db: &PgPool,
    endpoint_id: i64,
    limit: i64,
) -> Result<Vec<DueDelivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event, data, attempts, created_at FROM webhook_deliveries
         WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at <= now()
         ORDER BY id LIMIT $2",
    )
    .bind(endpoint_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How one try went.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub delivered: bool,
    pub response_status: Option<u16>,
    pub error: Option<&'a str>,
    /// When to try again; `None` after the last try (the delivery failed).
    pub retry_at: Option<DateTime<Utc>>,
}

/// Records a try of a delivery and the endpoint's failure count; true when this try made
/// the endpoint reach `disable_after` failures in a row (it is turned off, with the reason).
pub async fn record_attempt(
    db: &PgPool,
    endpoint_id: i64,
    delivery_id: i64,
    attempt: &Attempt<'_>,
    disable_after: i32,
) -> Result<bool, sqlx::Error> {
    let status = match (attempt.delivered, attempt.retry_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, response_status = $3, last_error = $4,
             next_attempt_at = COALESCE($5, next_attempt_at),
             delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END
         WHERE id = $1",
    )
    .bind(delivery_id)
    .bind(status)
    .bind(attempt.response_status.map(i32::from))
    .bind(attempt.error)
    .bind(attempt.retry_at)
    .execute(&mut *tx)
    .await?;
    let disabled: bool = if attempt.delivered {
        sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1 AND consecutive_failures <> 0")
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
        false
    } else {
        sqlx::query_scalar(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
                 enabled = CASE WHEN consecutive_failures + 1 >= $2 THEN false ELSE enabled END,
                 disabled_reason = CASE WHEN consecutive_failures + 1 >= $2 AND enabled
                     THEN format('turned off after %s failed tries in a row; the last: %s', consecutive_failures + 1, $3)
                     ELSE disabled_reason END
             WHERE id = $1 RETURNING (consecutive_failures = $2)",
        )
        .bind(endpoint_id)
        .bind(disable_after)
        .bind(attempt.error.unwrap_or("no answer"))
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false)
    };
    tx.commit().await?;
    Ok(disabled)
}

pub async fn list_deliveries(
    db: &PgPool,
    endpoint_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(endpoint_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Queues a delivery again, due now (its body keeps its id); `None` if it is not the
/// endpoint's.
pub async fn redeliver(
    db: impl PgExecutor<'_>,
    endpoint_id: i64,
    delivery_id: i64,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now()
         WHERE id = $1 AND endpoint_id = $2 RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind(delivery_id)
    .bind(endpoint_id)
    .fetch_optional(db)
    .await
}

// ---- E-mail ----

/// Queues an e-mail to a user.
pub async fn enqueue_email(
    db: impl PgExecutor<'_>,
    user_id: i64,
    subject: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notification_emails (user_id, subject, body) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(subject)
        .bind(body)
        .execute(db)
        .await
        .map(drop)
}

/// A due e-mail with its recipient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueEmail {
    pub id: i64,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub attempts: i32,
}

/// Leases due e-mails for `lease_secs`.
pub async fn lease_emails(db: &PgPool, limit: i64, lease_secs: f64) -> Result<Vec<DueEmail>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE notification_emails m SET leased_until = now() + make_interval(secs => $2)
         FROM users u
         WHERE u.id = m.user_id AND m.id IN (
             SELECT id FROM notification_emails
             WHERE status = 'pending' AND next_attempt_at <= now() AND (leased_until IS NULL OR leased_until < now())
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING m.id, u.email AS to, m.subject, m.body, m.attempts",
    )
    .bind(limit)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

/// Records a try of an e-mail: sent, or failed with a retry time (`None`: given up).
pub async fn record_email(
    db: impl PgExecutor<'_>,
    id: i64,
    sent: bool,
    error: Option<&str>,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let status = match (sent, retry_at) {
        (true, _) => "sent",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    sqlx::query(
        "UPDATE notification_emails SET status = $2, attempts = attempts + 1, last_error = $3,
             next_attempt_at = COALESCE($4, next_attempt_at), leased_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(retry_at)
    .execute(db)
    .await
    .map(drop)
}
