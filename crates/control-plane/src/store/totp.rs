//! Second factors on the `users` row (`totp_sealed`, `totp_enabled`, `totp_pending_since`,
//! `totp_last_step`) and `totp_recovery_codes`.
//!
//! A secret is sealed at rest. An enrolment is pending until confirmed with a code and is
//! pruned after [`PENDING_HOURS`]. A step is accepted once: [`use_step`] moves
//! `totp_last_step` forward by a conditional update, so of parallel requests with one code
//! exactly one wins. Wrong codes are counted here too (`totp_failures` in the minute from
//! `totp_failures_since`), so the limit holds across restarts and control planes.

use sqlx::{PgConnection, PgExecutor, PgPool};
use wisehosting_crypto::{Aad, Sealer, sha256_hex};

use super::StoreError;

/// An enrolment not confirmed within this many hours is dropped.
pub const PENDING_HOURS: i32 = 1;

fn aad(user_id: &str) -> Aad<'_> {
    Aad { table: "users", column: "totp_sealed", row: user_id }
}

/// Starts (or restarts) a pending enrolment with `secret`. Conflict when 2FA is already on.
pub async fn begin_enrolment(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    secret: &[u8],
) -> Result<(), StoreError> {
    let sealed = sealer.seal(secret, aad(&user_id.to_string()))?;
    let started = sqlx::query(
        "UPDATE users SET totp_sealed = $2, totp_pending_since = now(), updated_at = now()
         WHERE id = $1 AND NOT totp_enabled",
    )
    .bind(user_id)
    .bind(sealed)
    .execute(db)
    .await?;
    if started.rows_affected() == 0 {
        return Err(StoreError::Conflict(
            "two-factor authentication is already on; turn it off first to enrol a new device".into(),
        ));
    }
    Ok(())
}

/// Whether 2FA is on and the secret (opened): pending or enabled, as asked.
async fn secret(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
    enabled: bool,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sealed: Option<String> = sqlx::query_scalar(
        "SELECT totp_sealed FROM users WHERE id = $1 AND totp_enabled = $2
         AND (totp_enabled OR totp_pending_since > now() - make_interval(hours => $3))",
    )
    .bind(user_id)
    .bind(enabled)
    .bind(PENDING_HOURS)
    .fetch_optional(db)
    .await?
    .flatten();
    Ok(sealed.map(|s| sealer.open(&s, aad(&user_id.to_string()))).transpose()?)
}

/// The secret of a pending (not yet confirmed) enrolment.
pub async fn pending_secret(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    secret(db, sealer, user_id, false).await
}

/// The secret of enabled 2FA; `None` when 2FA is off.
pub async fn enabled_secret(
    db: impl PgExecutor<'_>,
    sealer: &Sealer,
    user_id: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    secret(db, sealer, user_id, true).await
}

/// Turns 2FA on (the enrolment confirmed with the code of `step`), replacing the recovery
/// codes by `recovery_hashes`. False when there was no pending enrolment any more.
pub async fn confirm(
    tx: &mut PgConnection,
    user_id: i64,
    step: u64,
    recovery_hashes: &[String],
) -> Result<bool, sqlx::Error> {
    let confirmed = sqlx::query(
        "UPDATE users SET totp_enabled = TRUE, totp_pending_since = NULL, totp_last_step = $2, updated_at = now()
         WHERE id = $1 AND NOT totp_enabled AND totp_sealed IS NOT NULL",
    )
    .bind(user_id)
    .bind(step as i64)
    .execute(&mut *tx)
    .await?;
    if confirmed.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM totp_recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO totp_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])")
        .bind(user_id)
        .bind(recovery_hashes)
        .execute(&mut *tx)
        .await?;
    Ok(true)
}

/// Records `step` as used; false when it (or a later one) was used already.
pub async fn use_step(db: impl PgExecutor<'_>, user_id: i64, step: u64) -> Result<bool, sqlx::Error> {
    let used = sqlx::query(
        "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_enabled
         AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user_id)
    .bind(step as i64)
    .execute(db)
    .await?;
    Ok(used.rows_affected() > 0)
}

/// Uses one recovery code (given normalised); false when the user has no such unused code.
pub async fn use_recovery_code(
    db: impl PgExecutor<'_>,
    user_id: i64,
    code: &str,
) -> Result<bool, sqlx::Error> {
    let used = sqlx::query(
        "UPDATE totp_recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(sha256_hex(code.as_bytes()))
    .execute(db)
    .await?;
    Ok(used.rows_affected() > 0)
}

/// Unused recovery codes left.
pub async fn recovery_codes_left(db: impl PgExecutor<'_>, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM totp_recovery_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// Turns 2FA off: secret, recovery codes and pending challenges gone.
pub async fn disable(tx: &mut PgConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET totp_enabled = FALSE, totp_sealed = NULL, totp_pending_since = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM totp_recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM login_challenges WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    Ok(())
}

/// Seconds until the user may try a code again, when they sent `limit` wrong codes in the
/// current minute; `None` while they may try.
pub async fn wrong_code_wait(
    db: impl PgExecutor<'_>,
    user_id: i64,
    limit: u32,
) -> Result<Option<u64>, sqlx::Error> {
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM totp_failures_since + interval '1 minute' - now())::float8 FROM users
         WHERE id = $1 AND totp_failures >= $2 AND totp_failures_since > now() - interval '1 minute'",
    )
    .bind(user_id)
    .bind(limit as i32)
    .fetch_optional(db)
    .await?;
    Ok(wait.map(|secs| secs.ceil().max(1.0) as u64))
}

/// Counts a wrong code: the minute starts at the first wrong code and the count with it.
pub async fn count_wrong_code(db: impl PgExecutor<'_>, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET
            totp_failures = CASE WHEN totp_failures_since > now() - interval '1 minute' THEN totp_failures + 1 ELSE 1 END,
            totp_failures_since = CASE WHEN totp_failures_since > now() - interval '1 minute' THEN totp_failures_since ELSE now() END
         WHERE id = $1",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Drops enrolments left pending for over [`PENDING_HOURS`]; how many.
pub async fn prune_pending(db: &PgPool) -> Result<u64, sqlx::Error> {
    let pruned = sqlx::query(
        "UPDATE users SET totp_sealed = NULL, totp_pending_since = NULL
         WHERE NOT totp_enabled AND totp_pending_since < now() - make_interval(hours => $1)",
    )
    .bind(PENDING_HOURS)
    .execute(db)
    .await?;
    Ok(pruned.rows_affected())
}
