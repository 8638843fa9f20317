//! `acme_accounts` (the installation's ACME account per directory, sealed),
//! `domain_certificates` (where each verified custom domain's certificate stands: pending,
//! issued with its chain and sealed key, or failed with the CA's reason and the next try) and
//! `platform_certificate` (the platform's own, alike, from files or the CA).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use wisehosting_crypto::{Aad, Sealer};

use super::StoreError;

/// The account's credentials (instant-acme's JSON), opened.
pub async fn account(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    directory_url: &str,
) -> Result<Option<String>, StoreError> {
    let sealed: Option<String> =
        sqlx::query_scalar("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
            .bind(directory_url)
            .fetch_optional(db)
            .await?;
    let Some(sealed) = sealed else { return Ok(None) };
    let aad = Aad { table: "acme_accounts", column: "credentials_sealed", row: directory_url };
    Ok(Some(String::from_utf8_lossy(&sealer.open(&sealed, aad)?).into_owned()))
}

pub async fn save_account(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    directory_url: &str,
    credentials: &str,
) -> Result<(), StoreError> {
    let aad = Aad { table: "acme_accounts", column: "credentials_sealed", row: directory_url };
    let sealed = sealer.seal(credentials.as_bytes(), aad)?;
    sqlx::query(
        "INSERT INTO acme_accounts (directory_url, credentials_sealed) VALUES ($1, $2)
         ON CONFLICT (directory_url) DO UPDATE SET credentials_sealed = EXCLUDED.credentials_sealed",
    )
    .bind(directory_url)
    .bind(sealed)
    .execute(db)
    .await?;
    Ok(())
}

/// A verified domain whose certificate is due: none yet, failed and due again, or past the
/// time its renewal was set for when it was issued.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub domain_id: i64,
    pub hostname: String,
    pub app_id: i64,
    /// The worker serving the app, whose edge router answers the challenge.
    pub worker_id: Option<i64>,
    pub failures: Option<i32>,
}

pub async fn due(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Due>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT d.id AS domain_id, d.hostname, d.app_id, a.worker_id, c.failures
         FROM domains d
         JOIN apps a ON a.id = d.app_id
         LEFT JOIN domain_certificates c ON c.domain_id = d.id
         WHERE d.verified_at IS NOT NULL
           AND (c.domain_id IS NULL OR c.next_attempt_at <= now())
         ORDER BY c.next_attempt_at NULLS FIRST, d.id
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// An order begins: pending, unless a certificate is in place (a renewal keeps `issued`).
pub async fn begin(db: impl PgExecutor<'_>, domain_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO domain_certificates (domain_id, status) VALUES ($1, 'pending')
         ON CONFLICT (domain_id) DO UPDATE SET
             status = CASE WHEN domain_certificates.status = 'issued' THEN 'issued' ELSE 'pending' END,
             updated_at = now()",
    )
    .bind(domain_id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn issued(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    domain_id: i64,
    chain_pem: &str,
    key_pem: &str,
    not_after: DateTime<Utc>,
    renew_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = domain_id.to_string();
    let key = sealer
        .seal(key_pem.as_bytes(), Aad { table: "domain_certificates", column: "key_sealed", row: &row })?;
    sqlx::query(
        "UPDATE domain_certificates SET status = 'issued', not_after = $2, error = NULL, chain_pem = $3,
             key_sealed = $4, failures = 0, next_attempt_at = $5, updated_at = now()
         WHERE domain_id = $1",
    )
    .bind(domain_id)
    .bind(not_after)
    .bind(chain_pem)
    .bind(key)
    .bind(renew_at)
    .execute(db)
    .await?;
    Ok(())
}

/// An order failed: the reason, one more failure, and when to try again. A certificate in
/// place stays issued (and served) while its renewal keeps failing.
pub async fn failed(
    db: impl PgExecutor<'_>,
    domain_id: i64,
    error: &str,
    retry_in_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE domain_certificates SET
             status = CASE WHEN status = 'issued' AND not_after > now() THEN 'issued' ELSE 'failed' END,
             error = $2, failures = failures + 1,
             next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
         WHERE domain_id = $1",
    )
    .bind(domain_id)
    .bind(error)
    .bind(retry_in_secs as f64)
    .execute(db)
    .await?;
    Ok(())
}

/// A domain's certificate as the API shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CertificateView {
    /// `pending`, `issued` or `failed`.
    pub status: String,
    pub not_after: Option<DateTime<Utc>>,
    /// The CA's reason for the last failure.
    pub error: Option<String>,
}

/// The chain of a domain's certificate (for checks; the key stays sealed).
pub async fn chain(db: impl PgExecutor<'_>, domain_id: i64) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT chain_pem FROM domain_certificates WHERE domain_id = $1")
        .bind(domain_id)
        .fetch_optional(db)
        .await?
        .flatten())
}

/// The certificates a worker's edge router serves, by domain id, each with a version (its
/// expiry, which a renewal changes; read on every route change, so nothing is hashed): issued and unexpired, for verified domains of
/// apps placed on the worker; and the platform's own as id [`PLATFORM`].
pub async fn served_by(db: impl PgExecutor<'_>, worker_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT c.domain_id, c.not_after::text
         FROM domain_certificates c
         JOIN domains d ON d.id = c.domain_id
         JOIN apps a ON a.id = d.app_id
         WHERE a.worker_id = $1 AND d.verified_at IS NOT NULL
           AND c.chain_pem IS NOT NULL AND c.key_sealed IS NOT NULL AND c.not_after > now()
         UNION ALL
         SELECT 0, not_after::text FROM platform_certificate
         WHERE chain_pem IS NOT NULL AND key_sealed IS NOT NULL AND not_after > now()
         ORDER BY 1",
    )
    .bind(worker_id)
    .fetch_all(db)
    .await?)
}

/// The id the platform's own certificate is pushed under (domain ids start at 1).
pub const PLATFORM: i64 = 0;

/// A certificate to serve, its key opened.
#[derive(Debug)]
pub struct Served {
    /// The domain's, or [`PLATFORM`].
    pub domain_id: i64,
    pub names: Vec<String>,
    pub chain_pem: String,
    pub key_pem: wisehosting_crypto::Secret,
}

/// The certificates of these domains, keys opened (for the push to the worker serving them).
pub async fn served(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    domain_ids: &[i64],
) -> Result<Vec<Served>, StoreError> {
    let rows: Vec<(i64, Vec<String>, String, String)> = sqlx::query_as(
        "SELECT c.domain_id, ARRAY[d.hostname], c.chain_pem, c.key_sealed
         FROM domain_certificates c JOIN domains d ON d.id = c.domain_id
         WHERE c.domain_id = ANY($1) AND c.chain_pem IS NOT NULL AND c.key_sealed IS NOT NULL
         UNION ALL
         SELECT 0, names, chain_pem, key_sealed FROM platform_certificate
         WHERE 0 = ANY($1) AND chain_pem IS NOT NULL AND key_sealed IS NOT NULL
         ORDER BY 1",
    )
    .bind(domain_ids)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(domain_id, names, chain_pem, sealed)| {
            let row = domain_id.to_string();
            let aad = if domain_id == PLATFORM {
                PLATFORM_KEY
            } else {
                Aad { table: "domain_certificates", column: "key_sealed", row: &row }
            };
            let key = sealer.open(&sealed, aad)?;
            let key_pem = wisehosting_crypto::Secret::new(String::from_utf8_lossy(&key).into_owned());
            Ok(Served { domain_id, names, chain_pem, key_pem })
        })
        .collect()
}

const PLATFORM_KEY: Aad<'static> =
    Aad { table: "platform_certificate", column: "key_sealed", row: "platform" };

/// The platform's certificate as it comes in: from the CA or from files.
#[derive(Debug)]
pub struct PlatformIssued<'a> {
    pub source: &'a str,
    pub names: &'a [String],
    pub chain_pem: &'a str,
    pub key_pem: &'a str,
    pub not_after: DateTime<Utc>,
    /// When to order again (files: never, far in the future).
    pub renew_at: DateTime<Utc>,
}

/// Stores the platform's certificate, replacing the one in place.
pub async fn platform_issued(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    issued: &PlatformIssued<'_>,
) -> Result<(), StoreError> {
    let key = sealer.seal(issued.key_pem.as_bytes(), PLATFORM_KEY)?;
    sqlx::query(
        "INSERT INTO platform_certificate (source, status, names, not_after, chain_pem, key_sealed, next_attempt_at)
         VALUES ($1, 'issued', $2, $3, $4, $5, $6)
         ON CONFLICT (singleton) DO UPDATE SET source = EXCLUDED.source, status = 'issued', names = EXCLUDED.names,
             not_after = EXCLUDED.not_after, error = NULL, chain_pem = EXCLUDED.chain_pem,
             key_sealed = EXCLUDED.key_sealed, failures = 0, next_attempt_at = EXCLUDED.next_attempt_at,
             updated_at = now()",
    )
    .bind(issued.source)
    .bind(issued.names)
    .bind(issued.not_after)
    .bind(issued.chain_pem)
    .bind(key)
    .bind(issued.renew_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the platform's certificate is due from the CA (none, one from files, or its time
/// has come): how many orders for it failed in a row.
pub async fn platform_due(db: impl PgExecutor<'_>) -> Result<Option<i32>, StoreError> {
    let row: Option<(i32, bool)> = sqlx::query_as(
        "SELECT failures, source <> 'acme' OR next_attempt_at <= now() FROM platform_certificate
         UNION ALL SELECT 0, true WHERE NOT EXISTS (SELECT 1 FROM platform_certificate)",
    )
    .fetch_optional(db)
    .await?;
    Ok(row.filter(|(_, due)| *due).map(|(failures, _)| failures))
}

/// An order for the platform's certificate failed: as [`failed`] for a domain.
pub async fn platform_failed(
    db: impl PgExecutor<'_>,
    error: &str,
    retry_in_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO platform_certificate (source, status, error, failures, next_attempt_at)
         VALUES ('acme', 'failed', $1, 1, now() + make_interval(secs => $2))
         ON CONFLICT (singleton) DO UPDATE SET
             status = CASE WHEN platform_certificate.status = 'issued' AND platform_certificate.not_after > now()
                           THEN 'issued' ELSE 'failed' END,
             error = $1, failures = platform_certificate.failures + 1,
             next_attempt_at = now() + make_interval(secs => $2), updated_at = now()",
    )
    .bind(error)
    .bind(retry_in_secs as f64)
    .execute(db)
    .await?;
    Ok(())
}

/// Stops serving the platform's certificate (neither files nor DNS-01 configured any more).
pub async fn platform_clear(db: impl PgExecutor<'_>) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM platform_certificate").execute(db).await?;
    Ok(())
}

/// The platform's certificate as operators see it: its names and where it stands.
pub async fn platform_view(
    db: impl PgExecutor<'_>,
) -> Result<Option<(Vec<String>, CertificateView)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        names: Vec<String>,
        #[sqlx(flatten)]
        view: CertificateView,
    }
    let row: Option<Row> = sqlx::query_as("SELECT names, status, not_after, error FROM platform_certificate")
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| (r.names, r.view)))
}

/// The channel naming a worker whose pending HTTP-01 answers changed; its holder pushes them.
pub const CHALLENGES_CHANNEL: &str = "wh_challenges";

/// Adds `worker`'s pending HTTP-01 answer and drops the `remove` tokens, then tells the
/// control plane holding the worker (`NOTIFY`, at commit).
pub async fn set_challenges(
    db: &sqlx::PgPool,
    worker_id: i64,
    add: Option<(&str, &str)>,
    remove: &[String],
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM acme_challenges WHERE token = ANY($1)").bind(remove).execute(&mut *tx).await?;
    if let Some((token, key_authorization)) = add {
        sqlx::query(
            "INSERT INTO acme_challenges (token, worker_id, key_authorization) VALUES ($1, $2, $3)
             ON CONFLICT (token) DO UPDATE SET worker_id = EXCLUDED.worker_id, key_authorization = EXCLUDED.key_authorization",
        )
        .bind(token)
        .bind(worker_id)
        .bind(key_authorization)
        .execute(&mut *tx)
        .await?;
    }
    super::notify_worker(&mut *tx, CHALLENGES_CHANNEL, worker_id).await?;
    tx.commit().await?;
    Ok(())
}

/// `worker`'s pending HTTP-01 answers: (token, key authorization), oldest first.
pub async fn challenges_for(
    db: impl PgExecutor<'_>,
    worker_id: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT token, key_authorization FROM acme_challenges WHERE worker_id = $1 ORDER BY created_at, token",
    )
    .bind(worker_id)
    .fetch_all(db)
    .await?)
}
