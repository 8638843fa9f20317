//! The admin subsystem's identity: accounts, role grants and their audit trail — tables of
//! their own, never joined with users'.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::{StoreError, is_unique_violation};
use crate::domain::AdminRole;

/// Creates an account; a taken username is a conflict that names it.
pub async fn create_account(
    db: impl PgExecutor<'_>,
    username: &str,
    password_hash: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar("INSERT INTO admin_accounts (username, password_hash) VALUES ($1, $2) RETURNING id")
        .bind(username)
        .bind(password_hash)
        .fetch_one(db)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("an admin account named {username} exists already"))
            } else {
                StoreError::Db(e)
            }
        })
}

/// An account's id by its username.
pub async fn account_id(db: impl PgExecutor<'_>, username: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM admin_accounts WHERE username = $1")
        .bind(username)
        .fetch_optional(db)
        .await
}

/// Grants a role, or replaces the live grant of that role (its expiry and reason).
pub async fn grant(
    tx: &mut PgConnection,
    admin_id: i64,
    role: AdminRole,
    granted_by: &str,
    reason: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_role_grants SET revoked_at = now() WHERE admin_id = $1 AND role = $2 AND revoked_at IS NULL")
        .bind(admin_id)
        .bind(role)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO admin_role_grants (admin_id, role, granted_by, reason, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(admin_id)
    .bind(role)
    .bind(granted_by)
    .bind(reason)
    .bind(expires_at)
    .execute(&mut *tx)
    .await
    .map(drop)
}

/// Revokes the live grant of a role; false when there was none.
pub async fn revoke(db: impl PgExecutor<'_>, admin_id: i64, role: AdminRole) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE admin_role_grants SET revoked_at = now() WHERE admin_id = $1 AND role = $2 AND revoked_at IS NULL",
    )
    .bind(admin_id)
    .bind(role)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The roles an account holds at `at`: live grants not expired by then.
pub async fn roles_at(
    db: impl PgExecutor<'_>,
    admin_id: i64,
    at: DateTime<Utc>,
) -> Result<Vec<AdminRole>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT role FROM admin_role_grants
         WHERE admin_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) ORDER BY role",
    )
    .bind(admin_id)
    .bind(at)
    .fetch_all(db)
    .await
}

/// One row of the admin audit trail, in the caller's transaction.
pub async fn audit(
    db: impl PgExecutor<'_>,
    admin_id: Option<i64>,
    actor: &str,
    action: &str,
    target: (&str, &str),
    detail: serde_json::Value,
    ip: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit_events (admin_id, actor, action, target_type, target_id, detail, ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(admin_id)
    .bind(actor)
    .bind(action)
    .bind(target.0)
    .bind(target.1)
    .bind(detail)
    .bind(ip)
    .execute(db)
    .await
    .map(drop)
}

/// What a sign-in needs of an account.
#[derive(Debug, sqlx::FromRow)]
pub struct LoginAccount {
    pub id: i64,
    pub password_hash: String,
    pub active: bool,
    /// The second factor's secret, sealed; `None` without one.
    pub totp_sealed: Option<String>,
}

pub async fn login_account(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<LoginAccount>, sqlx::Error> {
    sqlx::query_as("SELECT id, password_hash, active, totp_sealed FROM admin_accounts WHERE username = $1")
        .bind(username)
        .fetch_optional(db)
        .await
}

/// Notes a sign-in: a success sets the last login and clears the failures, a failure counts.
pub async fn record_login(db: impl PgExecutor<'_>, admin_id: i64, ok: bool) -> Result<(), sqlx::Error> {
    let sql = if ok {
        "UPDATE admin_accounts SET last_login_at = now(), failed_logins = 0 WHERE id = $1"
    } else {
        "UPDATE admin_accounts SET failed_logins = failed_logins + 1, last_failed_at = now() WHERE id = $1"
    };
    sqlx::query(sql).bind(admin_id).execute(db).await.map(drop)
}

/// A new session, by its token's SHA-256.
pub async fn create_session(
    db: impl PgExecutor<'_>,
    admin_id: i64,
    token_sha256: &str,
    client: (Option<&str>, Option<&str>),
    expires_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO admin_sessions (admin_id, token_sha256, ip, user_agent, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(admin_id)
    .bind(token_sha256)
    .bind(client.0)
    .bind(client.1)
    .bind(expires_at)
    .fetch_one(db)
    .await
}

/// A live session's account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionAccount {
    pub session_id: i64,
    pub admin_id: i64,
    pub username: String,
}

/// The account of a live session — not revoked, before its absolute expiry, seen within
/// `idle_secs`, of an active account — marked as seen now; `None` otherwise.
pub async fn touch_session(
    db: impl PgExecutor<'_>,
    token_sha256: &str,
    idle_secs: i64,
) -> Result<Option<SessionAccount>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE admin_sessions s SET last_seen_at = now()
         FROM admin_accounts a
         WHERE s.token_sha256 = $1 AND a.id = s.admin_id AND a.active AND s.revoked_at IS NULL
           AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2)
         RETURNING s.id AS session_id, a.id AS admin_id, a.username",
    )
    .bind(token_sha256)
    .bind(idle_secs as f64)
    .fetch_optional(db)
    .await
}

pub async fn revoke_session(db: impl PgExecutor<'_>, session_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE admin_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(session_id)
        .execute(db)
        .await
        .map(drop)
}

/// One live grant as the console lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub role: AdminRole,
    pub granted_by: String,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An account with its live grants (expired ones included, marked by their `expires_at`).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub failed_logins: i32,
    pub created_at: DateTime<Utc>,
    #[sqlx(json)]
    pub grants: Vec<Grant>,
}

pub async fn accounts(db: impl PgExecutor<'_>) -> Result<Vec<Account>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, a.username, a.active, a.last_login_at, a.failed_logins, a.created_at,
                COALESCE((SELECT json_agg(json_build_object('role', g.role, 'granted_by', g.granted_by,
                            'reason', g.reason, 'expires_at', g.expires_at, 'created_at', g.created_at)
                          ORDER BY g.role)
                          FROM admin_role_grants g WHERE g.admin_id = a.id AND g.revoked_at IS NULL), '[]') AS grants
         FROM admin_accounts a ORDER BY a.username",
    )
    .fetch_all(db)
    .await
}

/// One row of the admin audit trail as the console shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// The newest rows, older than `before` (an id) when given.
pub async fn audit_page(
    db: impl PgExecutor<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, actor, action, target_type, target_id, ip, detail, created_at FROM admin_audit_events
         WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How many accounts hold `role` live now (not expired, not revoked, active), with those
/// grants locked until the transaction ends so two revocations cannot both pass.
pub async fn live_holders_locked(tx: &mut PgConnection, role: AdminRole) -> Result<i64, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT g.id FROM admin_role_grants g JOIN admin_accounts a ON a.id = g.admin_id
         WHERE g.role = $1 AND g.revoked_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > now()) AND a.active
         FOR UPDATE OF g",
    )
    .bind(role)
    .fetch_all(&mut *tx)
    .await?;
    Ok(ids.len() as i64)
}

fn totp_aad(admin_id: &str) -> wisehosting_crypto::Aad<'_> {
    wisehosting_crypto::Aad { table: "admin_accounts", column: "totp_sealed", row: admin_id }
}

/// Sets (sealed, bound to the account) or removes an account's second factor.
pub async fn set_totp(
    db: impl PgExecutor<'_>,
    sealer: &wisehosting_crypto::Sealer,
    admin_id: i64,
    secret: Option<&[u8]>,
) -> Result<(), StoreError> {
    let sealed = secret.map(|s| sealer.seal(s, totp_aad(&admin_id.to_string()))).transpose()?;
    sqlx::query("UPDATE admin_accounts SET totp_sealed = $2, totp_last_step = NULL WHERE id = $1")
        .bind(admin_id)
        .bind(sealed)
        .execute(db)
        .await?;
    Ok(())
}

/// Opens an account's sealed second-factor secret.
pub fn open_totp(
    sealer: &wisehosting_crypto::Sealer,
    admin_id: i64,
    sealed: &str,
) -> Result<Vec<u8>, wisehosting_crypto::SealError> {
    sealer.open(sealed, totp_aad(&admin_id.to_string()))
}

/// Records `step` as used; false when it (or a later one) was used already, so of parallel
/// sign-ins with one code exactly one wins.
pub async fn use_totp_step(db: impl PgExecutor<'_>, admin_id: i64, step: u64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE admin_accounts SET totp_last_step = $2
         WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(admin_id)
    .bind(step as i64)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
