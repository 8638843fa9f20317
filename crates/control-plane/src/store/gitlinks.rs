//! `git_links` (a user's linked git provider accounts, tokens sealed) and `git_link_states`
//! (each link begun: its `state`, hashed, bound to the session that began it).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use wisehosting_crypto::{Aad, Sealer, sha256_hex};
use wisehosting_proto::job::GitProvider;

use super::StoreError;

/// How long a link begun may take to come back from the provider.
pub const STATE_MINUTES: i32 = 10;

/// Records the `state` of a link begun by `session_id`; drops states that expired.
pub async fn begin(
    db: impl PgExecutor<'_> + Copy,
    state: &str,
    session_id: i64,
    provider: GitProvider,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM git_link_states WHERE created_at < now() - make_interval(mins => $1)")
        .bind(STATE_MINUTES)
        .execute(db)
        .await?;
    sqlx::query("INSERT INTO git_link_states (state_hash, session_id, provider) VALUES ($1, $2, $3)")
        .bind(sha256_hex(state.as_bytes()))
        .bind(session_id)
        .bind(provider.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Uses up `state` if this session began it for this provider within the time allowed.
/// Another session's state is left alone (and answers false).
pub async fn take_state(
    db: impl PgExecutor<'_>,
    state: &str,
    session_id: i64,
    provider: GitProvider,
) -> Result<bool, StoreError> {
    let taken: Option<i32> = sqlx::query_scalar(
        "DELETE FROM git_link_states
         WHERE state_hash = $1 AND session_id = $2 AND provider = $3
           AND created_at >= now() - make_interval(mins => $4)
         RETURNING 1",
    )
    .bind(sha256_hex(state.as_bytes()))
    .bind(session_id)
    .bind(provider.as_str())
    .bind(STATE_MINUTES)
    .fetch_optional(db)
    .await?;
    Ok(taken.is_some())
}

/// Tokens from a provider, opened.
#[derive(Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// A linked account as the user sees it (no token).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LinkView {
    /// `github`, `gitlab`, `bitbucket` or `codeberg`.
    pub provider: String,
    /// The account's name at the provider.
    pub login: String,
    pub linked_at: DateTime<Utc>,
}

/// A linked account with its tokens opened.
#[derive(Debug, Clone)]
pub struct Link {
    pub provider: GitProvider,
    pub login: String,
    pub tokens: Tokens,
}

fn aad<'a>(column: &'static str, row: &'a str) -> Aad<'a> {
    Aad { table: "git_links", column, row }
}

fn row_key(user_id: i64, provider: GitProvider) -> String {
    format!("{user_id}:{provider}")
}

fn seal(
    sealer: &Sealer,
    user_id: i64,
    provider: GitProvider,
    tokens: &Tokens,
) -> Result<(String, Option<String>), StoreError> {
    let row = row_key(user_id, provider);
    let access = sealer.seal(tokens.access.as_bytes(), aad("access_token_sealed", &row))?;
    let refresh = tokens
        .refresh
        .as_ref()
        .map(|r| sealer.seal(r.as_bytes(), aad("refresh_token_sealed", &row)))
        .transpose()?;
    Ok((access, refresh))
}

/// Links (or links again) the user's account at `provider`.
pub async fn upsert(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    provider: GitProvider,
    login: &str,
    tokens: &Tokens,
) -> Result<(), StoreError> {
    let (access, refresh) = seal(sealer, user_id, provider, tokens)?;
    sqlx::query(
        "INSERT INTO git_links (user_id, provider, login, access_token_sealed, refresh_token_sealed, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, provider) DO UPDATE SET login = EXCLUDED.login,
             access_token_sealed = EXCLUDED.access_token_sealed,
             refresh_token_sealed = EXCLUDED.refresh_token_sealed,
             expires_at = EXCLUDED.expires_at, linked_at = now(), refreshed_at = NULL",
    )
    .bind(user_id)
    .bind(provider.as_str())
    .bind(login)
    .bind(access)
    .bind(refresh)
    .bind(tokens.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores refreshed tokens (a provider may or may not rotate the refresh token).
pub async fn update_tokens(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    provider: GitProvider,
    tokens: &Tokens,
) -> Result<(), StoreError> {
    let (access, refresh) = seal(sealer, user_id, provider, tokens)?;
    sqlx::query(
        "UPDATE git_links SET access_token_sealed = $3, refresh_token_sealed = $4, expires_at = $5,
             refreshed_at = now()
         WHERE user_id = $1 AND provider = $2",
    )
    .bind(user_id)
    .bind(provider.as_str())
    .bind(access)
    .bind(refresh)
    .bind(tokens.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    login: String,
    access_token_sealed: String,
    refresh_token_sealed: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

fn opened(sealer: &Sealer, user_id: i64, provider: GitProvider, row: Row) -> Result<Link, StoreError> {
    let key = row_key(user_id, provider);
    let open = |sealed: &str, column| -> Result<String, StoreError> {
        Ok(String::from_utf8_lossy(&sealer.open(sealed, aad(column, &key))?).into_owned())
    };
    let access = open(&row.access_token_sealed, "access_token_sealed")?;
    let refresh = row.refresh_token_sealed.as_deref().map(|r| open(r, "refresh_token_sealed")).transpose()?;
    Ok(Link { provider, login: row.login, tokens: Tokens { access, refresh, expires_at: row.expires_at } })
}

/// The user's link to `provider`, locked for the rest of the transaction when `lock` (a
/// refresh must not run twice: providers rotate refresh tokens).
pub async fn get(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    provider: GitProvider,
    lock: bool,
) -> Result<Option<Link>, StoreError> {
    let sql = format!(
        "SELECT login, access_token_sealed, refresh_token_sealed, expires_at FROM git_links
         WHERE user_id = $1 AND provider = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row: Option<Row> =
        sqlx::query_as(&sql).bind(user_id).bind(provider.as_str()).fetch_optional(db).await?;
    row.map(|r| opened(sealer, user_id, provider, r)).transpose()
}

/// The user's linked accounts, by provider.
pub async fn list(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<LinkView>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT provider, login, linked_at FROM git_links WHERE user_id = $1 ORDER BY provider",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Unlinks; the link removed (for revoking its token), if there was one.
pub async fn delete(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    provider: GitProvider,
) -> Result<Option<Link>, StoreError> {
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM git_links WHERE user_id = $1 AND provider = $2
         RETURNING login, access_token_sealed, refresh_token_sealed, expires_at",
    )
    .bind(user_id)
    .bind(provider.as_str())
    .fetch_optional(db)
    .await?;
    row.map(|r| opened(sealer, user_id, provider, r)).transpose()
}
