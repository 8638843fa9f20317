//! The `api_tokens` table: tokens for scripts and the CLI, stored as sha256 hex only.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use wisehosting_crypto::{random_token, sha256_hex};

use crate::identity::scope::Scope;

/// The prefix every API token starts with.
pub const TOKEN_PREFIX: &str = "wht_";
/// Live tokens one user may hold.
pub const MAX_PER_USER: i64 = 50;

/// Creates a token; returns its id and the raw token (shown once, never stored).
pub async fn create(
    db: impl PgExecutor<'_>,
    user_id: i64,
    name: &str,
    scopes: &[Scope],
    expires_in_days: Option<i32>,
) -> Result<(i64, String), sqlx::Error> {
    let token = random_token(TOKEN_PREFIX);
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let id = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5)) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(sha256_hex(token.as_bytes()))
    .bind(&scopes)
    .bind(expires_in_days)
    .fetch_one(db)
    .await?;
    Ok((id, token))
}

/// Live (not revoked) tokens the user holds, expired ones included until they are pruned.
pub async fn count_live(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
}

/// A token as the account page lists it: never its value.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The user's tokens that are not revoked, newest first.
pub async fn list(db: &PgPool, user_id: i64) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, scopes, created_at, expires_at, last_used_at FROM api_tokens
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Revokes one of the user's tokens; false when the user has no such live token.
pub async fn revoke(db: impl PgExecutor<'_>, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(revoked.rows_affected() > 0)
}

/// The user behind a live token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenUser {
    pub user_id: i64,
    pub token_id: i64,
    pub email: String,
    pub plan: String,
    pub scopes: Vec<String>,
    /// True when the token was last marked used over a minute ago.
    pub stale_used: bool,
}

pub async fn token_user(db: &PgPool, token: &str) -> Result<Option<TokenUser>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.user_id, t.id AS token_id, u.email, u.plan, t.scopes,
                coalesce(t.last_used_at < now() - interval '1 minute', TRUE) AS stale_used
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
           AND u.disabled_at IS NULL",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(db)
    .await
}

/// True while the token may still be used: not revoked, not expired, its user enabled.
pub async fn token_live(db: &PgPool, token_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
           AND u.disabled_at IS NULL)",
    )
    .bind(token_id)
    .fetch_one(db)
    .await
}

/// Marks the token used now, at most once a minute.
pub async fn touch(db: &PgPool, token_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = $1
         AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(token_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes tokens revoked or expired more than 30 days ago; how many.
pub async fn prune(db: &PgPool) -> Result<u64, sqlx::Error> {
    let pruned = sqlx::query(
        "DELETE FROM api_tokens WHERE coalesce(revoked_at, expires_at) < now() - interval '30 days'",
    )
    .execute(db)
    .await?;
    Ok(pruned.rows_affected())
}
