//! Sign-ins in flight: `oidc_logins` (state, nonce and PKCE verifier, bound to the browser that
//! began the sign-in) and `login_challenges` (waiting for the second factor). Both are used
//! once and expire in minutes; [`prune`] deletes what is left.

use sqlx::PgExecutor;
use wisehosting_crypto::sha256_hex;

/// How long a sign-in may take at the provider.
pub const OIDC_LOGIN_MINUTES: i32 = 10;
/// How long the second step may take (the `wh_2fa` cookie's life).
pub const CHALLENGE_MINUTES: i32 = 5;

/// Keeps a sign-in begun by the browser holding `browser_token`.
pub async fn begin_oidc(
    db: impl PgExecutor<'_>,
    state: &str,
    browser_token: &str,
    nonce: &str,
    pkce_verifier: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_logins (state_hash, browser_hash, nonce, pkce_verifier, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(mins => $5))",
    )
    .bind(sha256_hex(state.as_bytes()))
    .bind(sha256_hex(browser_token.as_bytes()))
    .bind(nonce)
    .bind(pkce_verifier)
    .bind(OIDC_LOGIN_MINUTES)
    .execute(db)
    .await?;
    Ok(())
}

/// The nonce and PKCE verifier of the sign-in with this `state`, begun by this browser and
/// not expired; the row is consumed. `None` for a state that is unknown, used, expired, or
/// another browser's.
pub async fn take_oidc(
    db: impl PgExecutor<'_>,
    state: &str,
    browser_token: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM oidc_logins WHERE state_hash = $1 AND browser_hash = $2 AND expires_at > now()
         RETURNING nonce, pkce_verifier",
    )
    .bind(sha256_hex(state.as_bytes()))
    .bind(sha256_hex(browser_token.as_bytes()))
    .fetch_optional(db)
    .await
}

/// Opens a second-factor challenge; returns the raw token for the `wh_2fa` cookie.
pub async fn open_challenge(
    db: impl PgExecutor<'_>,
    user_id: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<String, sqlx::Error> {
    let token = wisehosting_crypto::random_token("wh2_");
    sqlx::query(
        "INSERT INTO login_challenges (token_hash, user_id, ip, user_agent, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(mins => $5))",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(user_id)
    .bind(ip)
    .bind(user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
    .bind(CHALLENGE_MINUTES)
    .execute(db)
    .await?;
    Ok(token)
}

/// A live challenge: who is signing in and from where.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Challenge {
    pub id: i64,
    pub user_id: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The live challenge behind a `wh_2fa` token, its user enabled.
pub async fn challenge(db: impl PgExecutor<'_>, token: &str) -> Result<Option<Challenge>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.user_id, c.ip, c.user_agent FROM login_challenges c JOIN users u ON u.id = c.user_id
         WHERE c.token_hash = $1 AND c.expires_at > now() AND u.disabled_at IS NULL",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(db)
    .await
}

/// Ends a challenge (its second step passed); false when it was already ended.
pub async fn close_challenge(db: impl PgExecutor<'_>, id: i64) -> Result<bool, sqlx::Error> {
    let closed = sqlx::query("DELETE FROM login_challenges WHERE id = $1").bind(id).execute(db).await?;
    Ok(closed.rows_affected() > 0)
}

/// Deletes expired sign-ins and challenges; how many.
pub async fn prune(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let logins = sqlx::query("DELETE FROM oidc_logins WHERE expires_at < now()").execute(db).await?;
    let challenges = sqlx::query("DELETE FROM login_challenges WHERE expires_at < now()").execute(db).await?;
    Ok(logins.rows_affected() + challenges.rows_affected())
}
