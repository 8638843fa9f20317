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
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit_events (admin_id, actor, action, target_type, target_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(admin_id)
    .bind(actor)
    .bind(action)
    .bind(target.0)
    .bind(target.1)
    .bind(detail)
    .execute(db)
    .await
    .map(drop)
}
