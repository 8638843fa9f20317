//! The `users` and `sessions` tables. Session tokens are stored as sha256 hex only.

use sqlx::PgPool;
use wisehosting_crypto::{random_token, sha256_hex};

/// Sessions last 30 days from sign-in, whatever the activity (SPEC §8).
pub const SESSION_DAYS: i32 = 30;

/// Locks the user's row until the transaction ends: plan limits are counted under it, so two
/// requests at once cannot both pass one.
pub async fn lock(tx: &mut sqlx::PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(user_id).execute(&mut *tx).await?;
    Ok(())
}

/// What `/api/me` shows of a user.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

/// Sets the user's theme (`system`, `light` or `dark`; the column's CHECK holds the list).
pub async fn set_theme(db: &PgPool, user_id: i64, theme: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET theme = $2, updated_at = now() WHERE id = $1")
        .bind(user_id)
        .bind(theme)
        .execute(db)
        .await?;
    Ok(())
}

/// Finds the user with this email (case-insensitive) or creates one (the dev login).
pub async fn upsert_by_email(db: &PgPool, email: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO users (email) VALUES ($1) ON CONFLICT (lower(email)) DO UPDATE SET updated_at = now() RETURNING id",
    )
    .bind(email)
    .fetch_one(db)
    .await
}

/// The account an identity signed in to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignedIn {
    pub user_id: i64,
    pub totp_enabled: bool,
    pub disabled: bool,
}

/// Why an identity could not sign in.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Another account (another identity, or one made before sign-in existed) has the email.
    #[error("another account uses this email address")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Finds the account of (`issuer`, `subject`) or creates one; its email follows the provider's
/// and its name too when the provider sends one.
pub async fn sign_in_identity(
    db: impl sqlx::PgExecutor<'_>,
    issuer: &str,
    subject: &str,
    email: &str,
    name: &str,
) -> Result<SignedIn, IdentityError> {
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    sqlx::query_as(
        "INSERT INTO users (email, name, oidc_issuer, oidc_subject) VALUES ($1, $2, $3, $4)
         ON CONFLICT (oidc_issuer, oidc_subject) DO UPDATE
           SET email = EXCLUDED.email,
               name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE users.name END,
               updated_at = now()
         RETURNING id AS user_id, totp_enabled, disabled_at IS NOT NULL AS disabled",
    )
    .bind(email)
    .bind(&name)
    .bind(issuer)
    .bind(subject)
    .fetch_one(db)
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) { IdentityError::EmailTaken } else { IdentityError::Db(e) }
    })
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
    /// True when the session was last marked seen over a minute ago.
    pub stale_seen: bool,
}

pub async fn session_user(db: &PgPool, token: &str) -> Result<Option<SessionUser>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.user_id, s.id AS session_id, u.email, u.plan, s.last_seen_at < now() - interval '1 minute' AS stale_seen
         FROM sessions s JOIN users u ON u.id = s.user_id
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

/// Marks the session seen now, at most once a minute (a busy client costs no write per
/// request).
pub async fn touch_session(db: &PgPool, session_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1 AND last_seen_at < now() - interval '1 minute'")
        .bind(session_id)
        .execute(db)
        .await?;
    Ok(())
}

/// A live session as the account page lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_seen_at: chrono::DateTime<chrono::Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The user's live sessions, newest first.
pub async fn live_sessions(db: &PgPool, user_id: i64) -> Result<Vec<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at, last_seen_at, ip, user_agent FROM sessions
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY id DESC",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Revokes one of the user's live sessions; false when the user has no such session.
pub async fn revoke_own_session(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    session_id: i64,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(session_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(revoked.rows_affected() > 0)
}

/// Revokes every live session of the user but `keep`; how many.
pub async fn revoke_other_sessions(
    db: impl sqlx::PgExecutor<'_>,
    user_id: i64,
    keep: i64,
) -> Result<u64, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(user_id)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(revoked.rows_affected())
}

/// Deletes sessions revoked or expired more than 30 days ago (SPEC §8: the account page and
/// an investigation can still see them until then).
pub async fn prune_sessions(db: &PgPool) -> Result<u64, sqlx::Error> {
    let pruned = sqlx::query(
        "DELETE FROM sessions WHERE coalesce(revoked_at, expires_at) < now() - interval '30 days'",
    )
    .execute(db)
    .await?;
    Ok(pruned.rows_affected())
}

pub async fn revoke_session(db: impl sqlx::PgExecutor<'_>, session_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(session_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets a user's plan (the operators' billing role); false when there is no such user.
pub async fn set_plan(db: impl sqlx::PgExecutor<'_>, user_id: i64, plan: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET plan = $2, updated_at = now() WHERE id = $1")
        .bind(user_id)
        .bind(plan)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A user's plan's name (a push deploys under its owner's plan).
pub async fn plan_of(db: impl sqlx::PgExecutor<'_>, user_id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT plan FROM users WHERE id = $1").bind(user_id).fetch_one(db).await
}
