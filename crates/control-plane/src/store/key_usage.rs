//! The `key_usage` table: seal counts per column-encryption key version, persisted so the
//! sealer's per-key limit survives restarts. A crash loses at most the last flush interval's
//! count, far below the limit's margin.

use sqlx::PgExecutor;

/// The persisted count of `version` (0 when none).
pub async fn load(db: impl PgExecutor<'_>, version: u32) -> Result<u64, sqlx::Error> {
    let seals: Option<i64> = sqlx::query_scalar("SELECT seals FROM key_usage WHERE key_version = $1")
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .fetch_optional(db)
        .await?;
    Ok(seals.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// Records `seals` for `version`, never lowering what is stored.
pub async fn save(db: impl PgExecutor<'_>, version: u32, seals: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO key_usage (key_version, seals) VALUES ($1, $2)
         ON CONFLICT (key_version) DO UPDATE SET seals = GREATEST(key_usage.seals, EXCLUDED.seals), updated_at = now()",
    )
    .bind(i32::try_from(version).unwrap_or(i32::MAX))
    .bind(i64::try_from(seals).unwrap_or(i64::MAX))
    .execute(db)
    .await
    .map(|_| ())
}
