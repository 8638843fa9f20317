//! The `users` and `sessions` tables. Session tokens are stored as sha256 hex only.

use sqlx::PgPool;
use wisehosting_crypto::{random_token, sha256_hex};

/// Sessions last 30 days from sign-in, whatever the activity (SPEC §8).
pub const SESSION_DAYS: i32 = 30;

/// Finds the user with this email (case-insensitive) or creates one.
/// Locks the user's row until the transaction ends: plan limits are counted under it, so two
/// requests at once cannot both pass one.
pub async fn lock(tx: &mut sqlx::PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(user_id).execute(&mut *tx).await?;
    Ok(())
}

/// What `/api/me` shows of a user.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Profile {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub theme: String,
    pub totp_enabled: bool,
}

pub async fn profile(db: &PgPool, user_id: i64) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as("SELECT id, email, name, theme, totp_enabled FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
}

pub async fn upsert_by_email(db: &PgPool, email: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO users (email) VALUES ($1) ON CONFLICT (lower(email)) DO UPDATE SET updated_at = now() RETURNING id",
    )
    .bind(email)
    .fetch_one(db)
    .await
}

/// Opens a session and returns the raw token for the cookie (never stored).
pub async fn create_session(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<String, sqlx::Error> {
    let token = random_token("whs_");
    sqlx::query(
        "INSERT INTO sessions (user_id, token_hash, ip, user_agent, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))",
    )
    .bind(user_id)
    .bind(sha256_hex(token.as_bytes()))
    .bind(ip)
    .bind(user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
    .bind(SESSION_DAYS)
    .execute(db)
    .await?;
    Ok(token)
}

/// The signed-in user behind a raw session token, if the session is live.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionUser {
    pub user_id: i64,
    pub session_id: i64,
    pub email: String,
    /// The user's plan's name (`users.plan`).
    pub plan: String,
}

pub async fn session_user(db: &PgPool, token: &str) -> Result<Option<SessionUser>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.user_id, s.id AS session_id, u.email, u.plan FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(db)
    .await
}

/// True while the session may still be used: not revoked, not expired, its user enabled.
pub async fn session_live(db: &PgPool, session_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL)",
    )
    .bind(session_id)
    .fetch_one(db)
    .await
}

pub async fn revoke_session(db: impl sqlx::PgExecutor<'_>, session_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(session_id)
        .execute(db)
        .await?;
    Ok(())
}
