//! The `domains` table: custom hostnames of apps, their verification token, and their
//! Cloudflare for SaaS registration. While unverified, a hostname may be claimed by several
//! apps (one claim per app); a verified hostname belongs to one app (a unique partial index),
//! and verifying drops the other claims. A claim left unverified for [`PENDING_DAYS`] days
//! expires: the queries here no longer see it, and [`prune_expired`] deletes it.

use chrono::{DateTime, Utc};
use serde::Serialize;

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
    pub certificate_status: Option<String>,
    pub certificate_not_after: Option<DateTime<Utc>>,
    pub certificate_error: Option<String>,
}

/// Days an unverified claim lives.
pub const PENDING_DAYS: i32 = 7;

/// The condition of a row that still counts: verified, or claimed less than
/// [`PENDING_DAYS`] days ago.
fn live() -> String {
    format!("(verified_at IS NOT NULL OR created_at > now() - make_interval(days => {PENDING_DAYS}))")
}

const COLUMNS: &str = "id, app_id, hostname, verification_token, verified_at, cloudflare_id, cloudflare_status, cloudflare_ssl_status, cloudflare_records, created_at,
    (SELECT c.status FROM domain_certificates c WHERE c.domain_id = domains.id) AS certificate_status,
    (SELECT c.not_after FROM domain_certificates c WHERE c.domain_id = domains.id) AS certificate_not_after,
    (SELECT c.error FROM domain_certificates c WHERE c.domain_id = domains.id) AS certificate_error";

/// The API's view of a domain: what to publish in DNS and where it stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Domain {
    pub hostname: String,
    pub app_id: i64,
    /// `pending_verification` until the TXT record is seen, then `verified` (routed).
    pub status: DomainStatus,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When a pending claim lapses unless verified first.
    pub expires_at: Option<DateTime<Utc>>,
    pub verification: Verification,
    /// The Cloudflare custom hostname, when Cloudflare for SaaS is configured and the domain
    /// was registered there.
    pub cloudflare: Option<CloudflareHostname>,
    /// Its certificate from the ACME CA (SPEC §14.7), once a verified domain has been ordered
    /// one; null before.
    pub certificate: Option<crate::store::certificates::CertificateView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    PendingVerification,
    Verified,
}

/// The DNS record that proves the user holds the hostname.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Always `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloudflareHostname {
    pub id: String,
    pub status: Option<String>,
    pub ssl_status: Option<String>,
    /// Records Cloudflare wants published before it serves the hostname.
    pub records: Vec<ValidationRecord>,
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
            status: if self.verified_at.is_some() {
                DomainStatus::Verified
            } else {
                DomainStatus::PendingVerification
            },
            verified_at: self.verified_at,
            created_at: self.created_at,
            expires_at: self
                .verified_at
                .is_none()
                .then(|| self.created_at + chrono::Duration::days(i64::from(PENDING_DAYS))),
            verification: Verification {
                kind: "TXT".into(),
                name: self.challenge_name(),
                value: self.verification_token.clone(),
            },
            cloudflare: self.cloudflare_id.as_ref().map(|id| CloudflareHostname {
                id: id.clone(),
                status: self.cloudflare_status.clone(),
                ssl_status: self.cloudflare_ssl_status.clone(),
                records,
            }),
            certificate: self.certificate_status.as_ref().map(|status| {
                crate::store::certificates::CertificateView {
                    status: status.clone(),
                    not_after: self.certificate_not_after,
                    error: self.certificate_error.clone(),
                }
            }),
        }
    }
}

/// What holds a hostname, seen from one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nothing (or only other apps' pending claims).
    Free,
    /// This app already claims it (verified or not).
    ThisApp,
    /// Another app has verified it.
    OtherApp,
}

/// Who holds `hostname` as seen from `app_id`; expired claims do not count.
pub async fn holder(db: impl PgExecutor<'_>, app_id: i64, hostname: &str) -> Result<Holder, sqlx::Error> {
    let (mine, verified_elsewhere): (bool, bool) = sqlx::query_as(&format!(
        "SELECT COALESCE(bool_or(app_id = $1), false),
                COALESCE(bool_or(app_id <> $1 AND verified_at IS NOT NULL), false)
         FROM domains WHERE hostname = $2 AND {live}",
        live = live()
    ))
    .bind(app_id)
    .bind(hostname)
    .fetch_one(db)
    .await?;
    Ok(if mine {
        Holder::ThisApp
    } else if verified_elsewhere {
        Holder::OtherApp
    } else {
        Holder::Free
    })
}

/// Inserts this app's claim on `hostname`, pending; `None` when the app claims it already (or
/// another app verified it in between). This app's own expired claim is replaced.
pub async fn insert(
    db: &mut sqlx::PgConnection,
    app_id: i64,
    hostname: &str,
    token: &str,
) -> Result<Option<DomainRow>, sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM domains WHERE app_id = $1 AND hostname = $2 AND NOT {live}",
        live = live()
    ))
    .bind(app_id)
    .bind(hostname)
    .execute(&mut *db)
    .await?;
    sqlx::query_as(&format!(
        "INSERT INTO domains (app_id, hostname, verification_token) VALUES ($1, $2, $3)
         ON CONFLICT (app_id, hostname) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(app_id)
    .bind(hostname)
    .bind(token)
    .fetch_optional(&mut *db)
    .await
}

pub async fn count_for_app(db: impl PgExecutor<'_>, app_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT count(*) FROM domains WHERE app_id = $1 AND {live}", live = live()))
        .bind(app_id)
        .fetch_one(db)
        .await
}

pub async fn list_for_app(db: impl PgExecutor<'_>, app_id: i64) -> Result<Vec<DomainRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM domains WHERE app_id = $1 AND {live} ORDER BY hostname",
        live = live()
    ))
    .bind(app_id)
    .fetch_all(db)
    .await
}

pub async fn get(
    db: impl PgExecutor<'_>,
    app_id: i64,
    hostname: &str,
) -> Result<Option<DomainRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM domains WHERE app_id = $1 AND hostname = $2 AND {live}",
        live = live()
    ))
    .bind(app_id)
    .bind(hostname)
    .fetch_optional(db)
    .await
}

/// Marks the claim verified and drops the other apps' claims on its hostname; `None` when
/// another app verified it first (the unique index decides). Returns the row and the ids of
/// the apps whose claims were dropped.
pub async fn mark_verified(
    db: &mut sqlx::PgConnection,
    id: i64,
) -> Result<Option<(DomainRow, Vec<i64>)>, sqlx::Error> {
    // Every claim on the hostname locked first, in one order: two verifications at once
    // queue here instead of deadlocking (each holding its own row while the other deletes it).
    sqlx::query(
        "SELECT id FROM domains WHERE hostname = (SELECT hostname FROM domains WHERE id = $1)
         ORDER BY id FOR UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    let row: Option<DomainRow> = sqlx::query_as(&format!(
        "UPDATE domains SET verified_at = COALESCE(verified_at, now())
         WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM domains o WHERE o.hostname = domains.hostname
                                       AND o.id <> domains.id AND o.verified_at IS NOT NULL)
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *db)
    .await
    .or_else(|e| match &e {
        // Two verifications at once: the loser's update meets the unique index.
        sqlx::Error::Database(d) if d.is_unique_violation() => Ok(None),
        _ => Err(e),
    })?;
    let Some(row) = row else { return Ok(None) };
    let dropped: Vec<i64> =
        sqlx::query_scalar("DELETE FROM domains WHERE hostname = $1 AND id <> $2 RETURNING app_id")
            .bind(&row.hostname)
            .bind(row.id)
            .fetch_all(&mut *db)
            .await?;
    Ok(Some((row, dropped)))
}

/// Deletes the claims left unverified for [`PENDING_DAYS`] days; how many.
pub async fn prune_expired(db: impl PgExecutor<'_>) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query(&format!("DELETE FROM domains WHERE NOT {live}", live = live())).execute(db).await?;
    Ok(done.rows_affected())
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
