//! The `domains` table: custom hostnames of apps, their verification token, and their
//! Cloudflare for SaaS registration. A hostname belongs to at most one app across all users
//! (a unique index).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgExecutor;

use crate::cloudflare::{CustomHostname, ValidationRecord};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DomainRow {
    pub id: i64,
    pub app_id: i64,
    pub hostname: String,
    pub verification_token: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub cloudflare_id: Option<String>,
    pub cloudflare_status: Option<String>,
    pub cloudflare_ssl_status: Option<String>,
    pub cloudflare_records: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, app_id, hostname, verification_token, verified_at, cloudflare_id, cloudflare_status, cloudflare_ssl_status, cloudflare_records, created_at";

/// The API's view of a domain: what to publish in DNS and where it stands.
#[derive(Debug, Serialize)]
pub struct Domain {
    pub hostname: String,
    pub app_id: i64,
    /// `pending_verification` until the TXT record is seen, then `verified` (routed).
    pub status: &'static str,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub verification: Value,
    pub cloudflare: Option<Value>,
}

impl DomainRow {
    pub fn challenge_name(&self) -> String {
        crate::domain::challenge_name(&self.hostname)
    }

    pub fn view(&self) -> Domain {
        let records: Vec<ValidationRecord> =
            serde_json::from_str(&self.cloudflare_records).unwrap_or_default();
        Domain {
            hostname: self.hostname.clone(),
            app_id: self.app_id,
            status: if self.verified_at.is_some() { "verified" } else { "pending_verification" },
            verified_at: self.verified_at,
            created_at: self.created_at,
            verification: json!({
                "type": "TXT",
                "name": self.challenge_name(),
                "value": self.verification_token,
            }),
            cloudflare: self.cloudflare_id.as_ref().map(|id| {
                json!({
                    "id": id,
                    "status": self.cloudflare_status,
                    "ssl_status": self.cloudflare_ssl_status,
                    "records": records,
                })
            }),
        }
    }
}

/// Inserts the domain unless the hostname is taken (by any app): `None` then.
pub async fn insert(
    db: impl PgExecutor<'_>,
    app_id: i64,
    hostname: &str,
    token: &str,
) -> Result<Option<DomainRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO domains (app_id, hostname, verification_token) VALUES ($1, $2, $3)
         ON CONFLICT (hostname) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(app_id)
    .bind(hostname)
    .bind(token)
    .fetch_optional(db)
    .await
}

pub async fn app_of_hostname(db: impl PgExecutor<'_>, hostname: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT app_id FROM domains WHERE hostname = $1")
        .bind(hostname)
        .fetch_optional(db)
        .await
}

pub async fn count_for_app(db: impl PgExecutor<'_>, app_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM domains WHERE app_id = $1").bind(app_id).fetch_one(db).await
}

pub async fn list_for_app(db: impl PgExecutor<'_>, app_id: i64) -> Result<Vec<DomainRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM domains WHERE app_id = $1 ORDER BY hostname"))
        .bind(app_id)
        .fetch_all(db)
        .await
}

pub async fn get(
    db: impl PgExecutor<'_>,
    app_id: i64,
    hostname: &str,
) -> Result<Option<DomainRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM domains WHERE app_id = $1 AND hostname = $2"))
        .bind(app_id)
        .bind(hostname)
        .fetch_optional(db)
        .await
}

pub async fn mark_verified(db: impl PgExecutor<'_>, id: i64) -> Result<DomainRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE domains SET verified_at = COALESCE(verified_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(db)
    .await
}

/// Stores what Cloudflare says about the domain's custom hostname.
pub async fn set_cloudflare(
    db: impl PgExecutor<'_>,
    id: i64,
    custom: &CustomHostname,
) -> Result<DomainRow, sqlx::Error> {
    let records = serde_json::to_string(&custom.records).unwrap_or_else(|_| "[]".into());
    sqlx::query_as(&format!(
        "UPDATE domains SET cloudflare_id = $2, cloudflare_status = $3, cloudflare_ssl_status = $4,
                cloudflare_records = $5
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&custom.id)
    .bind(&custom.status)
    .bind(&custom.ssl_status)
    .bind(records)
    .fetch_one(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM domains WHERE id = $1").bind(id).execute(db).await.map(|_| ())
}

/// True when `hostname` is, or lies under, some worker's zone (the platform's own names).
pub async fn under_a_zone(db: impl PgExecutor<'_>, hostname: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM workers WHERE zone IS NOT NULL AND zone <> ''
                        AND ($1 = lower(trim(both '.' from zone)) OR $1 LIKE '%.' || lower(trim(both '.' from zone))))",
    )
    .bind(hostname.trim_start_matches("*."))
    .fetch_one(db)
    .await
}
